"""``vitals run``: the whole job on one machine, on defaults, and what it found."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka.errors import KafkaError

from streams import localkafka
from streams.generator import GenConfig, generate
from streams.kafka_io import device_topic, end_offsets, reroute_topic
from streams.produce import produce_history
from streams.progress import Progress
from streams.settings import Settings, load_settings
from streams.worker_metrics import save_snapshot, snapshot_path


async def lag_by_partition(settings: Settings) -> dict[tuple[str, int], int]:
    """Messages not yet committed by the worker group, per topic partition (events and internal)."""
    from streams.kafka_io import committed_offsets

    lags: dict[tuple[str, int], int] = {}
    for topic in (settings.events_topic, reroute_topic(settings), device_topic(settings)):
        ends = await end_offsets(settings.kafka, topic)
        committed = await committed_offsets(settings.kafka, settings.app_id, topic)
        for p, end in ends.items():
            if end - committed.get(p, 0):
                lags[(topic, p)] = end - committed.get(p, 0)
    return lags


async def consumer_lag(settings: Settings) -> int:
    return sum((await lag_by_partition(settings)).values())


def wait_for_lag_zero(
    settings: Settings,
    worker: subprocess.Popen[bytes] | None,
    total: int,
    timeout_s: float = 1800,
    progress: bool = True,
) -> None:
    shown = Progress("process", total=total, unit="msg", enabled=progress)
    deadline = time.monotonic() + timeout_s
    stable = 0
    while time.monotonic() < deadline:
        if worker is not None and worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}")
        try:
            lag = asyncio.run(consumer_lag(settings))
        except KafkaError:  # coordinator not ready yet (fresh broker, group just created)
            time.sleep(0.5)
            continue
        shown.update(max(0, total - lag), extra=f"lag {lag:,}")
        stable = stable + 1 if lag == 0 else 0
        if stable >= 2:  # twice in a row: internal topics fed by the last flush are drained too
            shown.done()
            return
        time.sleep(0.5)
    detail = asyncio.run(lag_by_partition(settings))
    raise TimeoutError(f"lag did not reach 0 within {timeout_s:.0f}s: {detail}")


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child process
    return subprocess.Popen([sys.executable, "-P", "-m", "streams.cli", "worker"], env=env, stdout=log, stderr=log)


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def write_report_subprocess(env: dict[str, str], out: Path, timeout_s: float = 600) -> Path:
    """``vitals report`` in its own process (the embedded ClickHouse allows one engine per process)."""
    done = subprocess.run(
        [sys.executable, "-P", "-m", "streams.cli", "report", "--out", str(out)],
        env=env, check=True, stdout=subprocess.PIPE, timeout=timeout_s,
    )
    return Path(done.stdout.decode().strip().splitlines()[-1])


def run_local(args: argparse.Namespace) -> int:
    base = Path(args.dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    print(f"vitals run: working in {base}", file=sys.stderr)
    print("starting the local Kafka broker (first time: Maven resolves the jars)...", file=sys.stderr)
    bootstrap = localkafka.start(base / "kafka")
    env = dict(os.environ, VITALS_KAFKA_BOOTSTRAP=bootstrap, VITALS_DATA_DIR=str(base / "data"))
    env.setdefault("VITALS_METRICS_PORT", "9464")
    env.setdefault("VITALS_APP_ID", f"vitals-run-{int(time.time())}")
    env.setdefault("VITALS_EVENTS_TOPIC", f"{env['VITALS_APP_ID']}.events")
    settings = load_settings(env=env)
    worker = None
    try:
        from streams.cli import _prestart

        partitions = asyncio.run(_prestart(settings))
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
        from streams.summary import print_summary

        print_summary(settings, history)
        if not getattr(args, "no_report", False):
            report = write_report_subprocess(env, base / "report.html")
            print(f"\nreport: {report}")
    finally:
        if worker is not None:
            stop_worker(worker)
        localkafka.stop(base / "kafka")
    return 0
