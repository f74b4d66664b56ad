"""``vitals inspect USER_ID``: one user's state from the users changelog, open episodes, last alerts, and
their segments (current and last changes) from ClickHouse."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from streams.cli import runs
from streams.config.settings import Settings, Sources, load_settings
from streams.ops import exit_codes
from streams.report.inspection import as_dict, find_user, print_text, read_segments


def run_inspect(args: argparse.Namespace) -> int:
    from streams.kafka.reachable import wait_for_kafka

    sources = Sources()
    settings = load_settings(sources=sources)
    wait_for_kafka(settings.kafka, sources)
    try:
        found = asyncio.run(find_user(settings, args.app, args.user_id, args.alerts))
    except LookupError as exc:
        print(f"vitals inspect: {exc}", file=sys.stderr)
        return exit_codes.FAILED_COMMAND
    found.segments, found.segments_error = _segments(settings, args.app, args.user_id, args.alerts)
    doc = as_dict(found, args.app, args.user_id, settings.rules_for(args.app).allowed_lateness_s * 1000)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print_text(doc)
    return 0 if doc["found"] else 3


def _segments(settings: Settings, app_id: str, user_id: str, last: int) -> tuple[dict[str, Any] | None, str | None]:
    """The user's segments from ClickHouse, or why they could not be read (the rest of inspect still shows)."""
    from sinks.reader import open_reader

    try:
        ch = open_reader(settings)
    except Exception as exc:  # EngineBusy, unreachable: one line, not a failed inspect
        return None, str(exc) or type(exc).__name__
    try:
        return read_segments(ch, app_id, user_id, last), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        ch.close()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("inspect", help="one user's current state, open episodes, segments and last alerts")
    p.add_argument("user_id")
    p.add_argument("--app", default="default", help="the event app_id (default: default)")
    p.add_argument("--alerts", type=int, default=10, help="how many of the last alerts (and segment changes) to show")
    p.add_argument("--json", action="store_true")
    runs.add_option(p)
    p.set_defaults(func=run_inspect)
