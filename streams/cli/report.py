"""``vitals report``: the HTML report from ClickHouse and the DLQ topic (the worker's counters for a database
without event outcome counts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.cli import runs
from streams.report.html import write_report


def run_report(args: argparse.Namespace) -> int:
    from sinks.reader import EngineBusy
    from streams.config.settings import Sources, load_settings
    from streams.kafka.reachable import not_reachable
    from streams.ops import exit_codes
    from streams.ops.metrics_snapshot import snapshot_path
    from streams.report.data import collect

    sources = Sources()
    settings = load_settings(sources=sources)
    kafka_down = None
    if not args.no_kafka:  # Kafka down: the report from ClickHouse, without its two Kafka parts (not a wait)
        kafka_down = not_reachable(settings.kafka, sources.cite("kafka.bootstrap"))  # unresolvable: ConfigError
        if kafka_down:
            print(f"vitals report: {kafka_down}; the report leaves out dead letters and device observations "
                  "(start Kafka, or pass --no-kafka)", file=sys.stderr)
    out = Path(args.out) if args.out else Path(settings.data_dir) / "report.html"
    metrics = Path(args.metrics) if args.metrics else snapshot_path(settings.data_dir)
    try:
        data = collect(settings, metrics, use_kafka=not args.no_kafka, kafka_down=kafka_down)
    except EngineBusy as exc:
        print(f"vitals report: {exc}", file=sys.stderr)
        return exit_codes.FAILED_COMMAND
    for warning in data.warnings:
        print(f"vitals report: {warning}", file=sys.stderr)
    path = write_report(data, settings.rules, out).resolve()
    print(path)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report with charts from ClickHouse")
    p.add_argument("--out", default=None, help="the HTML file (default <data dir>/report.html)")
    p.add_argument("--metrics", default=None,
                   help="a scrape of the worker's /metrics, read only when ClickHouse holds no event outcome "
                        "counts (default <data dir>/worker-metrics.prom if present)")
    p.add_argument("--no-kafka", action="store_true", help="do not read the DLQ and device-observation topics")
    runs.add_option(p)
    p.set_defaults(func=run_report)
