"""``vitals query "SQL"``: one query on the configured ClickHouse, JSON lines out."""

from __future__ import annotations

import argparse
import sys

from streams.cli import runs
from streams.config.settings import load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    q = sub.add_parser("query", help="run SQL on the configured ClickHouse, print JSON lines")
    q.add_argument("sql")
    runs.add_option(q)
    q.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    """Run one SQL query on the configured ClickHouse and print the rows as JSON lines."""
    import orjson

    from sinks.clickhouse import ClickHouse

    settings = load_settings()
    ch = ClickHouse(settings.effective_clickhouse_dsn, ca_cert=settings.clickhouse_ca,
                    verify=settings.clickhouse_verify)
    try:
        for row in ch.query(args.sql):
            sys.stdout.buffer.write(orjson.dumps(list(row), default=str) + b"\n")
    finally:
        ch.close()
    return 0
