"""``vitals query "SQL"``: one query on the configured ClickHouse; a table on a terminal, JSON lines otherwise.

On the embedded ClickHouse a running worker answers it (sinks/reader.py). A SQL error is one line on
stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streams.cli import runs
from streams.config.settings import Settings, load_settings
from streams.ops import exit_codes


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from streams.report.rows import FORMATS

    q = sub.add_parser("query", help="run SQL on the configured ClickHouse (also while a worker runs on it)")
    q.add_argument("sql")
    q.add_argument("--format", choices=FORMATS, default=None,
                   help="table on a terminal, else jsonl (one JSON object per row); csv and tsv have a header line")
    runs.add_option(q)
    q.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    """Run one SQL query on the configured ClickHouse and print the rows."""
    from streams.report import rows as out

    fmt = args.format or ("table" if sys.stdout.isatty() else "jsonl")
    try:
        names, rows = run_query(load_settings(), args.sql)
    except QueryFailed as exc:
        print(f"vitals query: {exc}", file=sys.stderr)
        return exit_codes.FAILED_COMMAND
    out.write(fmt, names, rows, sys.stdout)
    return exit_codes.OK


class QueryFailed(Exception):
    """The query did not run: why, in one line."""


def run_query(settings: Settings, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of ``sql`` on the configured ClickHouse. Raises :class:`QueryFailed`."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    from sinks.base import SinkBackpressure, SinkInvalid
    from sinks.reader import EngineBusy, open_reader
    from streams.report.rows import error_line

    ch = None
    try:
        ch = open_reader(settings)
        return ch.query_columns(sql)
    except EngineBusy as exc:
        raise QueryFailed(str(exc)) from None
    except OperationalError as exc:
        if exc.code is None:  # the connection, not the query
            raise QueryFailed(f"ClickHouse did not answer: {error_line(exc)}") from None
        raise QueryFailed(error_line(exc)) from None
    except DatabaseError as exc:  # the engine refused the SQL: syntax, unknown table or column, readonly
        raise QueryFailed(error_line(exc)) from None
    except SinkInvalid as exc:  # refused credentials
        raise QueryFailed(str(exc).splitlines()[0]) from None
    except SinkBackpressure as exc:  # cannot connect
        why = f" ({type(exc.cause).__name__}: {exc.cause})" if exc.cause is not None else ""
        raise QueryFailed(f"ClickHouse did not answer{why}") from None
    finally:
        if ch is not None:
            ch.close()
