"""A ``vitals worker`` in a child process: started, stopped, waited on until the group's lag is 0 (``vitals run``,
``vitals replay``, the tests); ``vitals report`` in a process of its own."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka.errors import KafkaError

from streams.config.settings import Settings
from streams.devtools.progress import Progress
from streams.kafka.offsets import end_offsets
from streams.kafka.topics import device_topic, reroute_topic, source_topics


async def lag_by_partition(settings: Settings) -> dict[tuple[str, int], int]:
    """Messages not yet committed by the worker group, per topic partition (events and internal)."""
    from streams.kafka.offsets import committed_offsets

    lags: dict[tuple[str, int], int] = {}
    for topic in (settings.events_topic, reroute_topic(settings), device_topic(settings), *source_topics(settings)):
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
