"""``vitals collect`` throughput: events/s through the HTTP collector with SDK-sized batches (20-100 events
per request, as segment-analytics-python's ``/v1/batch`` bodies, a few concurrent clients), the collector
pinned to ONE core (taskset), next to a plain aiokafka producer's rate on the same core in the same run
(the same records: per-user arrays, ``acks=all``, idempotent; and one event per record).

    python -m bench.collect [--seconds 10] [--clients 8] [--users 20000] [--gzip] [--dir .vitals/bench]
                            [--json out.json]

A local broker is started in a fresh directory and removed afterwards. The load generator runs on the other
core. Short on purpose: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson

from bench.workdir import fresh_run_dir, remove_run_dir
from schemas.formats import default_mapping
from streams.collect.bodies import parse_json, segment_envelope
from streams.collect.convert import Target, convert
from streams.config.settings import load_settings
from streams.devtools import local_kafka as localkafka
from streams.kafka.client import new_producer

WRITE_KEY = "wk_bench"
NAMES = ["Signed In", "Order Completed", "Product Viewed", "content_post", "comment", "Product Shared"]
TARGET_EVENTS_PER_S = 20_000


def sdk_bodies(count: int, users: int, seed: int) -> list[tuple[bytes, int]]:
    """``count`` request bodies as segment-analytics-python sends them, each with 20-100 track events."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies = []
    for _ in range(count):
        n = rng.randint(20, 100)
        batch = []
        for _ in range(n):
            name = rng.choice(NAMES)
            ts = (now - timedelta(seconds=rng.randrange(86_400))).isoformat(timespec="milliseconds")
            props: dict[str, object] = {"revenue": rng.randrange(1, 100) / 4} if name == "Order Completed" else {
                "plan": "pro", "path": "/home"}
            batch.append({"type": "track", "event": name, "userId": f"user-{rng.randrange(users)}",
                          "anonymousId": None, "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                          "timestamp": ts, "properties": props, "integrations": {},
                          "context": {"library": {"name": "analytics-python", "version": "2.4.0"},
                                      "device": {"id": f"dev-{rng.randrange(users)}"}}})
        bodies.append((orjson.dumps({"batch": batch, "sentAt": now.isoformat(), "writeKey": WRITE_KEY}), n))
    return bodies


async def drive(url: str, bodies: Sequence[tuple[bytes, int]], clients: int, seconds: float,
                zipped: bool) -> tuple[int, int, float, list[float]]:
    """(events acknowledged, requests, elapsed s, latencies) of ``clients`` posting bodies for ``seconds``."""
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    if zipped:
        headers["Content-Encoding"] = "gzip"
    payloads = [(gzip.compress(b, 1) if zipped else b, n) for b, n in bodies]
    done = [0, 0]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        k = i
        while time.perf_counter() < deadline:
            body, _ = payloads[k % len(payloads)]
            k += clients
            started = time.perf_counter()
            async with session.post(url + "/v1/batch", data=body, headers=headers) as resp:
                answer = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"collector answered {resp.status}: {answer[:200]!r}")
            latencies.append(time.perf_counter() - started)
            done[0] += orjson.loads(answer)["accepted"]
            done[1] += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    return done[0], done[1], time.perf_counter() - started, latencies


async def plain_producer(bootstrap: str, topic: str, bodies: Sequence[tuple[bytes, int]], clients: int,
                         seconds: float, arrays: bool) -> tuple[int, float]:
    """Events/s of a plain aiokafka producer (acks=all, idempotent) writing the collector's records for the same
    requests (converted beforehand, not timed), ``clients`` requests' worth in flight at once."""
    settings = load_settings(env={"VITALS_KAFKA_BOOTSTRAP": bootstrap})
    target = Target(topic, topic + ".dlq", "bench")
    now = int(time.time() * 1000)
    prepared = []
    for body, n in bodies:
        env = segment_envelope(parse_json(body), body, None)
        out = convert(env, "segment", default_mapping("segment"), target, now, app_ids=["bench"] * n, apps={})
        if arrays:
            prepared.append((out.records, out.accepted))
        else:
            singles = [(t, k, orjson.dumps(e)) for t, k, v in out.records for e in orjson.loads(v)]
            prepared.append((singles, out.accepted))
    producer = new_producer(settings.kafka, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    events = [0]
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        k = i
        while time.perf_counter() < deadline:
            records, n = prepared[k % len(prepared)]
            k += clients
            futures = [await producer.send(t, v, key=key) for t, key, v in records]
            await asyncio.gather(*futures)
            events[0] += n

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(i) for i in range(clients)))
    finally:
        await producer.stop()
    return events[0], time.perf_counter() - started


def pin(cores: set[int]) -> None:
    if hasattr(os, "sched_setaffinity") and cores <= os.sched_getaffinity(0):
        os.sched_setaffinity(0, cores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.collect", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--gzip", action="store_true", help="the clients send gzip bodies (Content-Encoding)")
    parser.add_argument("--dir", type=Path, default=Path(".vitals/bench-collect"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args(argv)
    work = fresh_run_dir(args.dir)
    bootstrap = localkafka.start(work / "kafka", localkafka.free_port())
    collector: subprocess.Popen[bytes] | None = None
    try:
        port = localkafka.free_port()
        config = work / "collect.toml"
        config.write_text(f'[collect]\napps = {{"{WRITE_KEY}" = "bench"}}\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_")}
        env.update(VITALS_KAFKA_BOOTSTRAP=bootstrap, VITALS_APP_ID="bench", VITALS_EVENTS_TOPIC="bench.events",
                   VITALS_DLQ_TOPIC="bench.events.dlq", VITALS_ALERTS_TOPIC="bench.alerts", VITALS_CONFIG=str(config),
                   VITALS_DATA_DIR=str(work / "data"), VITALS_COLLECT_PORT=str(port))
        with open(work / "collect.log", "ab") as log:
            collector = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-P", "-m", "streams.cli", "collect",
                                          "--loglevel", "WARNING"], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if collector.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "collect.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        bodies = sdk_bodies(400, args.users, seed=5)
        pin({1})  # the load generator on the other core
        asyncio.run(drive(url, bodies[:20], args.clients, 1.0, args.gzip))  # warm-up
        events, requests, elapsed, lat = asyncio.run(drive(url, bodies, args.clients, args.seconds, args.gzip))
        lat.sort()
        collect_rate = events / elapsed
        pin({0})  # the plain producer on the collector's core, the collector idle
        p_events, p_elapsed = asyncio.run(plain_producer(bootstrap, "bench.plain", bodies, args.clients,
                                                         args.seconds, arrays=True))
        s_events, s_elapsed = asyncio.run(plain_producer(bootstrap, "bench.single", bodies, args.clients,
                                                         args.seconds, arrays=False))
        figures = {
            "collect_events_per_s": round(collect_rate), "collect_requests_per_s": round(requests / elapsed),
            "events_per_request": round(events / max(requests, 1), 1), "clients": args.clients, "gzip": args.gzip,
            "request_p50_ms": round(lat[len(lat) // 2] * 1000, 1), "request_p99_ms": round(
                lat[int(len(lat) * 0.99)] * 1000, 1),
            "aiokafka_arrays_events_per_s": round(p_events / p_elapsed),
            "aiokafka_single_events_per_s": round(s_events / s_elapsed),
            "target_events_per_s": TARGET_EVENTS_PER_S, "target_met": collect_rate >= TARGET_EVENTS_PER_S,
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0 if figures["target_met"] else 1
    finally:
        if collector is not None and collector.poll() is None:
            collector.terminate()
            collector.wait(60)
        localkafka.stop(work / "kafka", kill=True)
        remove_run_dir(work, args.keep_data)


if __name__ == "__main__":
    sys.exit(main())
