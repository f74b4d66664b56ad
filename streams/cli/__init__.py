"""The ``vitals`` command: :func:`main` parses the command line and runs one command, each a module here.

* ``worker`` — one worker, supervised (cli/worker.py)
* ``kafka`` — the local single-node Kafka (cli/kafka.py)
* ``generate`` — a generated history into the events topic (cli/generate.py)
* ``query`` — one SQL query on the configured ClickHouse (cli/query.py)
* ``run`` — the whole job locally, with a summary and the report (cli/run.py)
* ``report`` — the HTML report (cli/report.py)
* ``replay`` — the events topic reprocessed under a new app id (cli/replay.py)
* ``inspect`` — one user's state and last alerts (cli/inspect.py)
* ``rules`` — the effective thresholds per app (cli/rules.py)
* ``views`` — the analyst views in ClickHouse (cli/views.py)
* ``collect`` — the HTTP collector: Segment and PostHog SDKs into the events topic (cli/collect.py)
* ``runs`` — the runs of ``vitals run``: their directories and settings, ``--run`` on query, report, inspect

Each command module has ``add_parser(sub)``; the modules a command needs beyond its parser load when it runs.
"""

from __future__ import annotations

import argparse
import sys

from streams.config.private_files import private_process
from streams.config.settings import ConfigError
from streams.ops import exit_codes


def build_parser() -> argparse.ArgumentParser:
    from streams.cli import collect, generate, inspect, kafka, query, replay, report, rules, run, views, worker

    parser = argparse.ArgumentParser(prog="vitals", description="Real-time user behaviour tracking on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (worker, kafka, generate, query, run, report, replay, inspect, rules, views, collect):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    private_process()  # whatever vitals writes (state, the embedded ClickHouse, logs, reports): its user's only
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "run", None):  # query, report, inspect --run ID: that run's data (cli/runs.py)
            from streams.cli import runs
            from streams.config.settings import load_settings

            settings = load_settings()
            runs.apply(args.run, settings.data_dir, settings.kafka.bootstrap)
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"vitals: configuration error: {exc}", file=sys.stderr)
        return exit_codes.CONFIG


