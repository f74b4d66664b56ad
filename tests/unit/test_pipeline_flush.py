"""The pipeline and the flusher driven with in-memory fakes: a fake producer whose sends return
futures, a fake ClickHouse behind the real sinks, a fake consumer side (streams/worker/source.py) and
a fake alerts topic for the fence. No broker, no ClickHouse: the order a flush job makes things
durable in, and what it must not commit."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from schemas.alerts import Alert
from sinks.alerts import AlertSink
from sinks.clickhouse import ActivitySink
from streams.config.settings import Settings, load_settings
from streams.engine.state import PartitionMeta, encode
from streams.engine.store import meta_key
from streams.kafka.topics import reroute_topic
from streams.ops.faults import Faults
from streams.ops.metrics import Metrics
from streams.worker.pipeline import Pipeline
from tests.records import Rec

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PARTITIONS = 2
Log = list[tuple[str, Any]]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """An async test, run on a loop of its own."""

    @functools.wraps(test)
    def sync() -> None:
        asyncio.run(test())

    return sync




@dataclass
class Meta:
    partition: int
    offset: int


class Batch:
    def __init__(self) -> None:
        self.n = 0

    def append(self, key: bytes | None, value: bytes | None, timestamp: int | None) -> object:
        self.n += 1
        return object()


class FakeProducer:
    """Sends are acknowledged at once (a resolved future), each recorded in ``log`` in order."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.ends: dict[tuple[str, int], int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def create_batch(self) -> Batch:
        return Batch()

    def _ack(self, topic: str, partition: int, n: int) -> asyncio.Future[Meta]:
        first = self.ends.get((topic, partition), 0)
        self.ends[(topic, partition)] = first + n
        fut: asyncio.Future[Meta] = asyncio.get_running_loop().create_future()
        fut.set_result(Meta(partition, first))
        return fut

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> asyncio.Future[Meta]:
        self.log.append(("kafka", topic))
        return self._ack(topic, partition, batch.n)

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[Meta]:
        self.log.append(("kafka", topic))
        return self._ack(topic, partition or 0, 1)


class FakeClickHouse:
    """What the real sinks call; ``fail``: every write raises (a refusal that is no outage)."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.fail = False

    def insert_native(self, table: str, columns: list[str], block: bytes, token: str, partitions: int = 1) -> None:
        self._write(table)

    def insert(self, table: str, columns: Any, data: Any, token: str) -> None:
        self._write(table)

    def _write(self, table: str) -> None:
        if self.fail:
            raise RuntimeError(f"{table}: the write failed")
        self.log.append(("clickhouse", table))


@dataclass
class FakeSource:
    """The consumer side (streams.worker.source.Source) in memory."""

    log: Log
    faults: Faults = field(default_factory=Faults)
    failures: list[BaseException] = field(default_factory=list)
    reseeks: int = 0

    def accepting(self) -> bool:
        return True

    def queued_bytes(self) -> int:
        return 0

    def seeks(self) -> int:
        return 0

    async def start_offset(self, tp: tuple[str, int]) -> int:
        return 0

    async def reseek(self) -> None:
        self.reseeks += 1

    async def commit(self, offsets: dict[tuple[str, int], int]) -> bool:
        self.log.append(("commit", dict(offsets)))
        return True

    def failed(self, exc: BaseException) -> None:
        self.failures.append(exc)


@dataclass
class FakeAlertsTopic:
    """The fence's view of the alerts topic: what it holds, and where the source topics end."""

    records: list[tuple[bytes | None, int]]
    ends: dict[tuple[str, int], int]

    async def alerts_since(self, since_ms: int | None, per_partition: int) -> list[tuple[bytes | None, int]]:
        return self.records

    async def replay_ends(self, partitions: set[int]) -> dict[tuple[str, int], int]:
        return self.ends


@dataclass
class Rig:
    settings: Settings
    pipeline: Pipeline
    source: FakeSource
    ch: FakeClickHouse
    log: Log


def rig(fence: FakeAlertsTopic | None = None, **overrides: Any) -> Rig:
    settings = load_settings(env={}, **overrides)
    log: Log = []
    ch = FakeClickHouse(log)
    source = FakeSource(log)
    pipeline = Pipeline(settings, PARTITIONS, {}, {}, ("users-changelog", "devices-changelog"),
                        ActivitySink(ch, 10_000), AlertSink(ch, 10_000), Metrics(),  # type: ignore[arg-type]
                        lambda: FakeProducer(log), source,  # type: ignore[arg-type,return-value]
                        clock=lambda: T0 / 1000, fence_source=fence)
    pipeline.on_assigned({0, 1})
    return Rig(settings, pipeline, source, ch, log)


def event(user: str, n: int, ts: int = T0, etype: str = "view") -> bytes:
    return orjson.dumps({"event_id": f"{user}-{n}", "user_id": user, "type": etype, "ts": ts})


def home_records(r: Rig, user: str, count: int, start: int = 0) -> list[Rec]:
    """``count`` messages of one event each of ``user``, on its home partition, from offset ``start``."""
    p = r.pipeline.home(user)
    return [Rec(r.settings.events_topic, p, start + i, user.encode(), event(user, start + i), T0) for i in range(count)]


def kinds(log: Log) -> list[str]:
    """The log's steps in order, consecutive repeats folded: kafka, clickhouse, commit."""
    out: list[str] = []
    for kind, _ in log:
        if not out or out[-1] != kind:
            out.append(kind)
    return out


@run
async def test_a_batch_is_processed_and_its_flush_job_made_durable_in_order() -> None:
    r = rig(rules__burst_events_per_minute=3)  # three events of a user in a minute: an alert
    records = home_records(r, "u1", 3)
    await r.pipeline.on_user_batch(records, 0)
    assert r.pipeline.out.messages == 3 and len(r.pipeline.pending) == 3
    alerts_sent = [what for kind, what in r.log if kind == "kafka"]
    assert alerts_sent == [r.settings.alerts_topic]  # an alert leaves at once, before any flush
    r.log.clear()
    await r.pipeline.flush()
    p = records[0].partition
    # 1. Kafka outputs (none but the alert, delivered already), 2. ClickHouse, 3. changelog, 4. commit
    assert kinds(r.log) == ["clickhouse", "kafka", "commit"]
    tables = [what for kind, what in r.log if kind == "clickhouse"]
    assert tables == ["user_activity_daily", "alerts"]
    assert {what for kind, what in r.log if kind == "kafka"} == {"users-changelog", "devices-changelog"}
    assert r.log[-1] == ("commit", {(r.settings.events_topic, p): 3})
    assert r.pipeline.flusher.commits == 1 and not r.pipeline.pending and r.source.failures == []


@run
async def test_dead_letters_and_reroutes_reach_kafka_before_clickhouse() -> None:
    r = rig()
    p = r.pipeline.home("u1")
    other = next(f"x{i}" for i in range(100) if r.pipeline.home(f"x{i}") != p)  # homed on the other partition
    topic = r.settings.events_topic
    records = [Rec(topic, p, 0, b"u1", event("u1", 0), T0), Rec(topic, p, 1, b"u1", b"{not json", T0),
               Rec(topic, p, 2, b"u1", event(other, 2), T0)]
    await r.pipeline.on_user_batch(records, 0)
    await r.pipeline.flush()
    kafka_before_clickhouse = [what for kind, what in r.log[: r.log.index(("clickhouse", "user_activity_daily"))]]
    assert set(kafka_before_clickhouse) == {r.settings.dlq_topic, reroute_topic(r.settings)}
    assert kinds(r.log) == ["kafka", "clickhouse", "kafka", "commit"]
    assert r.log[-1] == ("commit", {(topic, p): 3})


@run
async def test_a_failed_clickhouse_write_commits_nothing() -> None:
    r = rig()
    await r.pipeline.on_user_batch(home_records(r, "u1", 2), 0)
    r.ch.fail = True
    with pytest.raises(RuntimeError, match="the write failed"):
        await r.pipeline.flush()
    assert not any(kind == "commit" for kind, _ in r.log)
    assert not any(what == "users-changelog" for _, what in r.log)  # the state is not made durable either
    assert r.pipeline.flusher.commits == 0


@run
async def test_a_background_job_that_fails_is_handed_to_the_source() -> None:
    """A job taken by the flush timer fails in the background: the source's ``failed`` decides (the app
    exits the worker), and nothing is committed."""
    r = rig(processing__flush_interval_s=0.0)
    await r.pipeline.on_user_batch(home_records(r, "u1", 2), 0)
    r.ch.fail = True
    await r.pipeline.maybe_flush()
    job = r.pipeline.job
    assert job is not None
    await asyncio.wait([job])
    assert len(r.source.failures) == 1 and "the write failed" in str(r.source.failures[0])
    assert not any(kind == "commit" for kind, _ in r.log)


@run
async def test_offsets_commit_in_the_order_jobs_were_taken() -> None:
    r = rig()
    records = home_records(r, "u1", 4)
    await r.pipeline.on_user_batch(records[:2], 0)
    await r.pipeline.flush()
    await r.pipeline.on_user_batch(records[2:], 0)
    await r.pipeline.flush()
    topic, p = r.settings.events_topic, records[0].partition
    assert [what for kind, what in r.log if kind == "commit"] == [{(topic, p): 2}, {(topic, p): 4}]


@run
async def test_a_replayed_message_is_not_processed_twice() -> None:
    r = rig()
    records = home_records(r, "u1", 2)
    await r.pipeline.on_user_batch(records, 0)
    await r.pipeline.on_user_batch(records, 0)  # fetched again (a seek back): dropped in order
    assert r.pipeline.out.messages == 2


@run
async def test_the_alert_fence_holds_back_what_a_replay_sends_again() -> None:
    first = rig(rules__burst_events_per_minute=3)
    records = home_records(first, "u1", 3)
    await first.pipeline.on_user_batch(records, 0)
    (alert,) = first.pipeline.out.alerts
    # a fresh worker replays the same messages; the alert is on the topic already
    topic, p = first.settings.events_topic, records[0].partition
    fence = FakeAlertsTopic([(orjson.dumps({"alert_id": alert.alert_id, "status": alert.status}), T0)],
                            {(topic, p): 3})
    again = rig(fence, rules__burst_events_per_minute=3)
    # the partition as a flush before the burst left it: stamped (a partition never flushed is not fenced)
    again.pipeline.users_data[meta_key(p)] = encode(PartitionMeta(alerts_after=T0 - 60_000))
    await again.pipeline.on_user_batch(records, 0)
    fired: list[Alert] = again.pipeline.out.alerts
    assert [a.alert_id for a in fired] == [alert.alert_id]  # fired again, as the replay must
    assert not any(kind == "kafka" for kind, _ in again.log)  # but not sent again
    assert again.pipeline.fence.suppressed == 1
    await again.pipeline.flush()
    assert again.log[-1] == ("commit", {(topic, p): 3})
