"""``vitals report``: the HTML report from ClickHouse and the DLQ topic (the worker's counters for a database
without event outcome counts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.report.html import write_report


def run_report(args: argparse.Namespace) -> int:
    from streams.config.settings import load_settings
    from streams.ops.metrics_snapshot import snapshot_path
    from streams.report.data import collect

    settings = load_settings()
    out = Path(args.out) if args.out else Path(settings.data_dir) / "report.html"
    metrics = Path(args.metrics) if args.metrics else snapshot_path(settings.data_dir)
    data = collect(settings, metrics, use_kafka=not args.no_kafka)
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
    p.set_defaults(func=run_report)
