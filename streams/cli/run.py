"""``vitals run``: the whole job on one machine, on defaults (a local Kafka, a worker, generated traffic),
and what it found (a summary and the HTML report).

Each run is self-contained: its own app id, topics and embedded ClickHouse in ``<data dir>/runs/<run id>/``
(cli/runs.py), kept after it. It uses the configured Kafka, else the running local broker (left running),
else starts the local broker in ``<data dir>/kafka`` and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from streams.cli import runs
from streams.config import local_broker
from streams.config.settings import Settings, load_settings
from streams.devtools import local_kafka
from streams.devtools.generator import GenConfig, default_users, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import start_worker, stop_worker, wait_for_lag_zero, write_report_subprocess
from streams.ops import exit_codes
from streams.ops.metrics_snapshot import save_snapshot, snapshot_path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("run", help="the whole job locally: Kafka, a worker, generated traffic, a summary")
    r.add_argument("--users", type=int, default=None,
                   help="default: EVENTS / (12 + DAYS), room for every persona's story")
    r.add_argument("--days", type=int, default=21)
    r.add_argument("--events", type=int, default=300_000)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--dir", default=None,
                   help="the data directory (default: the configured one, ./.vitals): the run goes in <dir>/runs/")
    r.add_argument("--no-report", action="store_true", help="skip the HTML report at the end")
    r.set_defaults(func=run_local)


def _broker(base_settings: Settings, base: Path) -> tuple[str, Path | None]:
    """The Kafka to use, and the local broker's directory when this run starts it (and so stops it)."""
    bootstrap = base_settings.kafka.bootstrap
    if local_broker.origin(bootstrap) is None:  # configured
        print(f"vitals run: Kafka at {bootstrap} (configured)", file=sys.stderr)
        return bootstrap, None
    directory = local_broker.broker_dir(base)
    running = local_broker.running_bootstrap(directory)
    if running is not None:
        print(f"vitals run: Kafka at {running} (the local broker of {local_broker.shown(directory)}, left running)",
              file=sys.stderr)
        return running, None
    print(f"vitals run: starting the local Kafka broker in {local_broker.shown(directory)} (stopped at the end; "
          "first time: Maven resolves the jars)...", file=sys.stderr)
    bootstrap, plan = local_kafka.start_planned(directory)
    if plan.note:
        print(f"vitals run: {plan.note}", file=sys.stderr)
    return bootstrap, directory


def run_local(args: argparse.Namespace) -> int:
    base_settings = load_settings()
    base = Path(args.dir or base_settings.data_dir).resolve()
    run_id, run_dir = runs.new_run(base)
    values = runs.run_values(run_id, run_dir)
    print(f"vitals run {run_id}: app id {values['VITALS_APP_ID']}, data in {run_dir}", file=sys.stderr)
    try:
        bootstrap, started = _broker(base_settings, base)
    except local_kafka.BrokerRefused as exc:
        print(f"vitals run: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    except subprocess.CalledProcessError as exc:
        print(f"vitals run: the local broker did not start: {local_kafka.script_failure(exc)}", file=sys.stderr)
        return exit_codes.FAILED_COMMAND
    local_broker.said(bootstrap)
    env = dict(os.environ, **values, VITALS_KAFKA_BOOTSTRAP=bootstrap, VITALS_METRICS_PORT=str(local_kafka.free_port()))
    for name in values:  # the run's values, not a file's that the environment names
        env.pop(f"{name}_FILE", None)
    runs.record(run_dir, values)
    settings = load_settings(env=env)
    worker = None
    try:
        from streams.kafka.topics import prepare_topics

        partitions = asyncio.run(prepare_topics(settings))
        log_path = run_dir / "worker.log"
        worker = start_worker(env, log_path)
        print(f"worker started (pid {worker.pid}, metrics on :{settings.metrics_port}, log {log_path})",
              file=sys.stderr)
        cfg = GenConfig(users=args.users or default_users(args.events, args.days), days=args.days,
                        events=args.events, seed=args.seed, batch=args.batch, partitions=partitions)
        history = generate(cfg)
        print(f"generated {history.describe()}", file=sys.stderr)
        if history.story_cut:
            print(f"vitals run: {history.story_cut}", file=sys.stderr)
        asyncio.run(produce_history(settings, history, progress=True))
        wait_for_lag_zero(settings, worker, len(history.messages))
        save_snapshot(settings.metrics_host, settings.metrics_port, snapshot_path(settings.data_dir))
        stop_worker(worker)
        worker = None
        from streams.devtools.run_summary import print_summary

        print_summary(settings, history)
        if not getattr(args, "no_report", False):
            report = write_report_subprocess(env, run_dir / "report.html")
            print(f"\nreport: {report}")
    finally:
        if worker is not None:
            stop_worker(worker)
        if started is not None:
            local_kafka.stop(started)
    elsewhere = base != Path(base_settings.data_dir).resolve()  # --dir: the commands look there when told
    _say_where(run_id, run_dir, started, f"VITALS_DATA_DIR={base} " if elsewhere else "")
    return exit_codes.OK


def _say_where(run_id: str, run_dir: Path, stopped: Path | None, prefix: str) -> None:
    print(f"\nvitals run {run_id}: kept in {run_dir} (report.html, worker.log, its ClickHouse)", file=sys.stderr)
    print(f'  query it:  {prefix}vitals query --run {run_id} "SELECT rule, count() FROM alerts FINAL GROUP BY rule"',
          file=sys.stderr)
    print(f"  report:    {prefix}vitals report --run {run_id}   (--run latest: the newest run)", file=sys.stderr)
    if stopped is not None:
        print(f"  the local broker this run started is stopped; report and inspect read the run's topics: start it "
              f"again first with {prefix}vitals kafka start", file=sys.stderr)
