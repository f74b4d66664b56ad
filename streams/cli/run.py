"""``vitals run``: the whole job on one machine, on defaults (a local Kafka, a worker, generated traffic),
and what it found (a summary and the HTML report)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from streams.config.settings import load_settings
from streams.devtools import local_kafka
from streams.devtools.generator import GenConfig, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import start_worker, stop_worker, wait_for_lag_zero, write_report_subprocess
from streams.ops.metrics_snapshot import save_snapshot, snapshot_path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="the whole job locally: Kafka, a worker, generated traffic, a summary")
    r.add_argument("--users", type=int, default=20_000)
    r.add_argument("--days", type=int, default=21)
    r.add_argument("--events", type=int, default=300_000)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--dir", default=".vitals")
    r.add_argument("--no-report", action="store_true", help="skip the HTML report at the end")
    r.set_defaults(func=run_local)


def run_local(args: argparse.Namespace) -> int:
    base = Path(args.dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    print(f"vitals run: working in {base}", file=sys.stderr)
    print("starting the local Kafka broker (first time: Maven resolves the jars)...", file=sys.stderr)
    bootstrap = local_kafka.start(base / "kafka")
    env = dict(os.environ, VITALS_KAFKA_BOOTSTRAP=bootstrap, VITALS_DATA_DIR=str(base / "data"))
    env.setdefault("VITALS_METRICS_PORT", "9464")
    env.setdefault("VITALS_APP_ID", f"vitals-run-{int(time.time())}")
    env.setdefault("VITALS_EVENTS_TOPIC", f"{env['VITALS_APP_ID']}.events")
    settings = load_settings(env=env)
    worker = None
    try:
        from streams.kafka.topics import prepare_topics

        partitions = asyncio.run(prepare_topics(settings))
        worker = start_worker(env, base / "worker.log")
        print(
            f"worker started (pid {worker.pid}, metrics on :{settings.metrics_port}, log {base / 'worker.log'})",
            file=sys.stderr,
        )
        cfg = GenConfig(
            users=args.users,
            days=args.days,
            events=args.events,
            seed=args.seed,
            batch=args.batch,
            partitions=partitions,
        )
        history = generate(cfg)
        print(
            f"generated {history.n_events:,} events of {cfg.users:,} users over {cfg.days} days "
            f"in {len(history.messages):,} messages",
            file=sys.stderr,
        )
        asyncio.run(produce_history(settings, history, progress=True))
        wait_for_lag_zero(settings, worker, len(history.messages))
        save_snapshot(settings.metrics_host, settings.metrics_port, snapshot_path(settings.data_dir))
        stop_worker(worker)
        worker = None
        from streams.devtools.run_summary import print_summary

        print_summary(settings, history)
        if not getattr(args, "no_report", False):
            report = write_report_subprocess(env, base / "report.html")
            print(f"\nreport: {report}")
    finally:
        if worker is not None:
            stop_worker(worker)
        local_kafka.stop(base / "kafka")
    return 0
