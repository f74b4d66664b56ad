"""``vitals rules``: the effective thresholds, defaults and per-app overrides."""

from __future__ import annotations

import argparse
import sys

import orjson

from streams.config.settings import load_settings
from streams.report.thresholds import effective, table


def run_rules(args: argparse.Namespace) -> int:
    columns = effective(load_settings(), args.app)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(columns, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(table(columns))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rules", help="print the effective rule thresholds per app")
    p.add_argument("--app", action="append", default=[], help="also show this app id (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_rules)
