"""The benchmark's latency phase: event-to-alert latency at a fixed input rate.

Background traffic flows at ``rate`` events/s (in the shape measured: 100-event batch messages
of one user spread over 100 s of event time, or single-event messages; a large pool of users,
so none of them bursts), with event times at the wall clock. Every ``probe_every`` seconds a
fresh probe user sends 100 events in one UTC minute (one batch message, or 100 single
messages): the 100th event makes vitals open ``fake.burst``. The latency of a probe is the
record timestamp of the alert on the alerts topic (stamped by vitals' producer when it sends it)
minus the record timestamp of the message holding the 100th event (its arrival in Kafka).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.config.settings import Settings
from streams.engine.partitioner import home_partition
from streams.kafka.client import client_kwargs, new_producer
from streams.kafka.topics import topic_partitions

BURST = 100  # events of a probe, in one minute: the default fake.burst threshold
POOL = 200_000  # background users: each comes back rarely enough never to burst


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Traffic:
    """Message values for one shape: background and probes, event times at the wall clock."""

    def __init__(self, shape: str, partitions: int) -> None:
        self.batch = shape != "single"
        self.partitions = partitions
        self.seq = itertools.count()
        self.users = itertools.cycle(range(POOL))
        self.probes = itertools.count()

    def _event(self, user: str, ts: int) -> dict[str, Any]:
        return {"event_id": f"lt{next(self.seq)}", "user_id": user, "type": "view", "ts": ts, "app_id": "default"}

    def background(self, n_events: int) -> list[tuple[int, bytes, bytes]]:
        now = int(time.time() * 1000)
        out = []
        per_message = BURST if self.batch else 1
        for _ in range(max(0, n_events) // per_message):
            user = f"bg{next(self.users):06d}"
            key = user.encode()
            if self.batch:  # one user's last 100 s of events: at most 60 in any minute
                value = orjson.dumps([self._event(user, now - (BURST - 1 - j) * 1000) for j in range(BURST)])
            else:
                value = orjson.dumps(self._event(user, now))
            out.append((home_partition(key, self.partitions), key, value))
        return out

    def probe(self) -> tuple[str, list[tuple[int, bytes, bytes]]]:
        user = f"probe-{next(self.probes)}-{int(time.time())}"
        key = user.encode()
        p = home_partition(key, self.partitions)
        now = int(time.time() * 1000)
        events = [self._event(user, now) for _ in range(BURST)]
        if self.batch:
            return user, [(p, key, orjson.dumps(events))]
        return user, [(p, key, orjson.dumps(e)) for e in events]


async def _alerts(settings: Settings, seen: dict[str, tuple[int, float]], stop: asyncio.Event) -> None:
    """Record the first fake.burst alert of every probe user: (record timestamp, consume time)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings.kafka), enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        n = 0
        while not n and not stop.is_set():  # the topic may be new
            n = await topic_partitions(settings.kafka, settings.alerts_topic) or 0
            if not n:
                await asyncio.sleep(0.2)
        parts = [TopicPartition(settings.alerts_topic, p) for p in range(n)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for r in records:
                    alert = orjson.loads(r.value)
                    user = alert.get("user_id") or ""
                    if alert.get("rule") == "fake.burst" and user.startswith("probe-") and user not in seen:
                        seen[user] = (r.timestamp, now)
    finally:
        await consumer.stop()


async def _send(producer: AIOKafkaProducer, topic: str, records: list[tuple[int, bytes, bytes]]) -> Any:
    """Send records; return the delivery future of the last one."""
    fut = None
    for p, key, value in records:
        fut = await producer.send(topic, value, key=key, partition=p)
    return fut


async def _probe_and_wait(producer: AIOKafkaProducer, settings: Settings, traffic: Traffic,
                          seen: dict[str, tuple[int, float]], timeout_s: float) -> bool:
    user, records = traffic.probe()
    await (await _send(producer, settings.events_topic, records))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if user in seen:
            return True
        await asyncio.sleep(0.2)
    return False


async def latency_phase(settings: Settings, shape: str, partitions: int, rate: float, seconds: float,
                        probe_every: float = 0.25, warmup_s: float = 180) -> dict[str, Any]:
    """Run the phase against a worker already started on ``settings``; return the figures."""
    traffic = Traffic(shape, partitions)
    seen: dict[str, tuple[int, float]] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(_alerts(settings, seen, stop))
    producer = new_producer(settings.kafka, linger_ms=2)
    await producer.start()
    try:
        # the worker is ready when a probe's alert comes back
        started = time.monotonic()
        while not await _probe_and_wait(producer, settings, traffic, seen, 5):
            if time.monotonic() - started > warmup_s:
                raise TimeoutError("the worker did not alert on a warm-up probe")
        triggers: dict[str, asyncio.Future[Any]] = {}
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = 0
        next_probe = t0
        pending: list[asyncio.Future[Any]] = []
        while (now := loop.time()) < t0 + seconds:
            if now >= next_probe:
                user, records = traffic.probe()
                triggers[user] = await _send(producer, settings.events_topic, records)
                sent += BURST
                next_probe += probe_every
            records = traffic.background(int(rate * (now - t0)) - sent)
            if records:
                pending.append(await _send(producer, settings.events_topic, records))
                sent += len(records) * (BURST if traffic.batch else 1)
            await asyncio.sleep(0.005)
        elapsed = loop.time() - t0
        await asyncio.gather(*pending, *triggers.values())
        arrival = {user: fut.result().timestamp for user, fut in triggers.items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(u in seen for u in arrival):
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await watcher
        await producer.stop()
    latencies = [(seen[u][0] - ts) / 1000 for u, ts in arrival.items() if u in seen]
    return {
        "rate_target_events_per_s": rate,
        "rate_events_per_s": sent / elapsed,
        "seconds": elapsed,
        "probes": len(arrival),
        "alerts_missing": sum(1 for u in arrival if u not in seen),
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies, default=float("nan")),
    }
