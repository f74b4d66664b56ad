"""Recovery benchmark: how long a restarted worker takes to get 1 million users' state back.

    .venv/bin/python -m bench.recovery --users 1000000

Starts its own local Kafka, writes realistic encoded user states (one day of activity each,
built by the real engine) to the users changelog of a fresh app, each on its user's home
partition, plus one event per partition, then starts a real worker and times it from process
start until it has processed those events: Faust's changelog recovery, then vitals' index
rebuild. Prints the phases and writes JSON to bench/results/recovery.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson

from bench.workdir import fresh_run_dir, remove_run_dir
from streams.config.settings import Settings, load_settings
from streams.devtools import local_kafka as localkafka
from streams.engine.partitioner import PartitionCache
from streams.engine.state import split_key
from streams.kafka.client import new_producer
from streams.kafka.topics import changelog_topic
from streams.worker.delivery import InFlight, deliver, send_records

REBUILT = re.compile(r"rebuilt indexes of \d+ partitions \((\d+) users\)")
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def build_states(data: dict[bytes, bytes], partitions: int) -> list[tuple[int, bytes, bytes]]:
    """The users' records of a table's data (``bench.states.day_of_activity``), each with its home
    partition."""
    home = PartitionCache(partitions)
    return [(home(split_key(k)[1]), k, v) for k, v in data.items() if k[:1] != b"\x00"]


async def write_changelog(settings: Settings, records: list[tuple[int, bytes, bytes]]) -> None:
    from sinks.base import RetryPolicy

    producer = new_producer(settings.kafka)
    await producer.start()
    try:
        topic = changelog_topic(settings, "users")
        for start in range(0, len(records), 100_000):
            chunk = records[start : start + 100_000]
            inflight: InFlight = await send_records(producer, [(topic, p, k, v) for p, k, v in chunk])

            async def get() -> object:
                return producer

            await deliver(get, inflight, RetryPolicy())
    finally:
        await producer.stop()


def start_and_time(env: dict[str, str], log_path: Path, users: int) -> dict[str, object]:
    """Start a worker, wait until it rebuilt its indexes of ``users`` users, stop it; the phases'
    durations."""
    started = time.time()
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-P", "-m", "streams.cli", "worker", "--no-supervise"], env=env,
                                  stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 900
        rebuilt = None
        while time.monotonic() < deadline and rebuilt is None:
            for line in log_path.read_text(errors="replace").splitlines():
                m = REBUILT.search(line)
                if m and int(m.group(1)) >= users:
                    rebuilt = line
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}; see {log_path}")
            time.sleep(0.5)
        if rebuilt is None:
            raise TimeoutError(f"no index rebuild within 900 s; see {log_path}")
    finally:
        worker.terminate()
        try:
            worker.wait(120)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    lines = log_path.read_text(errors="replace").splitlines()
    restoring = next((stamp(x) for x in lines if "Restoring state from changelog" in x), None)
    restored = next((stamp(x) for x in lines if "Done reading from changelog topics" in x), None)
    ready = stamp(rebuilt)
    assert ready is not None
    return {
        "start_to_ready_s": round(ready - started, 2),
        "changelog_read_s": round(restored - restoring, 2) if restoring and restored else 0.0,
        "index_rebuild": rebuilt.split("] ")[-1].strip(),
    }


def stamp(line: str) -> float | None:
    m = STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None


def measure_recovery(bootstrap: str, work: Path, users: int, partitions: int = 8, store: str = "memory",
                     data: dict[bytes, bytes] | None = None) -> dict[str, object]:
    """Write ``users`` users' states (``data``, else a day of activity each) to the users changelog
    of a fresh app on the broker at ``bootstrap``, then time a worker's start until it is ready
    (with ``store = "rocksdb"``, a second start too: local databases plus the changelog tail).
    Working files go under ``work``."""
    from bench.states import day_of_activity
    from streams.devtools.generator import GenConfig, History, Message
    from streams.devtools.produce import produce_history
    from streams.kafka.topics import prepare_topics

    app_id = f"rec{int(time.time())}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_")}
    env.update(VITALS_KAFKA_BOOTSTRAP=bootstrap, VITALS_APP_ID=app_id, VITALS_EVENTS_TOPIC=f"{app_id}.events",
               VITALS_ALERTS_TOPIC=f"{app_id}.alerts", VITALS_DLQ_TOPIC=f"{app_id}.dlq",
               VITALS_SEGMENTS_TOPIC=f"{app_id}.segments", VITALS_DATA_DIR=str(work / app_id), VITALS_METRICS_PORT="0")
    if store == "rocksdb":
        config = work / f"{app_id}.toml"
        config.write_text('[processing]\nstore = "rocksdb"\n')
        env["VITALS_CONFIG"] = str(config)
    settings = load_settings(env=env)
    asyncio.run(prepare_topics(settings))
    t = time.perf_counter()
    records = build_states(data if data is not None else day_of_activity(users), partitions)
    print(f"built {len(records):,} user states in {time.perf_counter() - t:.1f}s "
          f"({sum(len(v) for _, _, v in records) / len(records):.0f} B each)", file=sys.stderr)
    t = time.perf_counter()
    asyncio.run(write_changelog(settings, records))
    print(f"wrote the changelog in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    result: dict[str, object] = {"users": len(records), "partitions": partitions, "store": store}
    for run in ("first start", "restart")[: 2 if store == "rocksdb" else 1]:
        probes = [Message(p, b"probe", orjson.dumps({"event_id": f"{run}{p}", "user_id": "probe", "type": "view",
                                                      "ts": 1_767_312_000_000}), 0) for p in range(partitions)]
        asyncio.run(produce_history(settings, History(GenConfig(partitions=partitions), probes, {})))
        result[run] = start_and_time(env, work / f"{app_id}-{run.replace(' ', '-')}.log", len(records))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.recovery")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--dir", default=".vitals/bench-recovery", help="runs work in DIR/run-<pid>")
    parser.add_argument("--keep-data", action="store_true", help="keep the run's broker and worker data")
    parser.add_argument("--json", default="bench/results/recovery.json")
    parser.add_argument("--store", choices=["memory", "rocksdb"], default="memory",
                        help="rocksdb: also restart once more, from the local databases plus the changelog tail")
    args = parser.parse_args(argv)
    work = fresh_run_dir(Path(args.dir))
    bootstrap = localkafka.start(work / "kafka")
    try:
        result = measure_recovery(bootstrap, work, args.users, args.partitions, args.store)
    finally:
        localkafka.stop(work / "kafka")
        remove_run_dir(work, args.keep_data)
    print(json.dumps(result, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
