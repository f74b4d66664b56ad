"""``vitals views [--print]``: create (or print) the analyst views in ClickHouse."""

from __future__ import annotations

import argparse

from streams.config.settings import load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = sub.add_parser("views", help="create (or replace) the analyst views in ClickHouse; --print shows the SQL")
    v.add_argument("--print", action="store_true", dest="print_sql")
    v.set_defaults(func=cmd_views)


def cmd_views(args: argparse.Namespace) -> int:
    from sinks.clickhouse import ClickHouse
    from sinks.views import ensure_views, view_ddl

    settings = load_settings()
    ch = ClickHouse(settings.effective_clickhouse_dsn, ca_cert=settings.clickhouse_ca,
                    verify=settings.clickhouse_verify)
    if args.print_sql:  # for the configured database; nothing is opened
        print(";\n\n".join(view_ddl(ch.database)) + ";")
        return 0
    try:
        ch.ensure_schema()
        ensure_views(ch)
    finally:
        ch.close()
    return 0
