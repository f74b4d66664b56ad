"""Pure pieces of fault handling: the lag watchdog, delivery retries, crash plans, restart backoff."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NodeNotReadyError
from aiokafka.partitioner import murmur2

from sinks.base import RetryPolicy
from streams.ops.faults import Faults
from streams.ops.supervisor import backoff
from streams.ops.watchdog import Watchdog
from streams.worker.delivery import InFlight, OutRecord, deliver, retriable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_watchdog_flags_a_partition_whose_commit_stops_moving_with_lag() -> None:
    clock = Clock()
    dog = Watchdog(stall_s=60, clock=clock)
    tp, other = ("events", 0), ("events", 1)
    assert dog.observe({tp: 10, other: 5}, {tp: 100, other: 5}) == []
    clock.now = 59.9
    assert dog.observe({tp: 10, other: 5}, {tp: 100, other: 5}) == []
    clock.now = 60.0
    stalls = dog.observe({tp: 10, other: 5}, {tp: 100, other: 5})
    assert [(s.topic, s.partition, s.committed, s.end) for s in stalls] == [("events", 0, 10, 100)]


def test_watchdog_resets_on_progress_and_on_excuse_and_ignores_no_lag() -> None:
    clock = Clock()
    dog = Watchdog(stall_s=60, clock=clock)
    tp = ("events", 0)
    dog.observe({tp: 10}, {tp: 100})
    clock.now = 50
    dog.observe({tp: 11}, {tp: 100})  # moved: clock restarts
    clock.now = 100
    assert dog.observe({tp: 11}, {tp: 100}) == []
    dog.excuse()  # e.g. a rebalance or a flush blocked on ClickHouse
    clock.now = 150
    assert dog.observe({tp: 11}, {tp: 100}) == []
    clock.now = 400
    assert dog.observe({tp: 100}, {tp: 100}) == []  # no lag, however long
    clock.now = 1000
    assert dog.observe({tp: 100}, {tp: 100}) == []


def test_retriable_by_type() -> None:
    assert retriable(KafkaConnectionError())
    assert retriable(NodeNotReadyError())
    assert not retriable(MessageSizeTooLargeError())
    assert not retriable(ValueError())


class FlakyProducer:
    """A producer whose first ``fail`` sends are refused by a (pretend-)absent broker."""

    def __init__(self, fail: int, partitions: int = 3) -> None:
        self.fail = fail
        self.partitions = partitions
        self.delivered: list[bytes] = []
        self.placed: dict[bytes, int] = {}  # value -> partition, of what was delivered

    def create_batch(self) -> Any:
        return Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail > 0:
            self.fail -= 1
            fut.set_exception(NodeNotReadyError())
        else:
            self.delivered += batch.values
            self.placed.update(dict.fromkeys(batch.values, partition))
            fut.set_result(None)
        return fut

    async def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None) -> Any:
        batch = Batch()
        batch.append(key=key, value=value, timestamp=None)
        return await self.send_batch(batch, topic, 0)


class Batch:
    def __init__(self) -> None:
        self.values: list[bytes] = []

    def append(self, key: bytes | None, value: bytes, timestamp: int | None) -> object:
        self.values.append(value)
        return object()

    def record_count(self) -> int:
        return len(self.values)


def test_deliver_resends_failed_batches_until_acknowledged() -> None:
    from streams.worker.delivery import send_records

    placed: dict[bytes, int] = {}

    async def run() -> tuple[list[bytes], list[int]]:
        producer = FlakyProducer(fail=3)
        records: list[OutRecord] = [("t", i % 2, None, b"%d" % i) for i in range(6)] + [("a", None, b"k", b"alert")]
        inflight = await send_records(producer, records)  # type: ignore[arg-type]
        retries: list[int] = []

        async def get() -> FlakyProducer:
            return producer

        await deliver(get, inflight, RetryPolicy(0.001, 0.002), on_retry=lambda a, e: retries.append(a))
        placed.update(producer.placed)
        return producer.delivered, retries

    delivered, retries = asyncio.run(run())
    assert sorted(delivered) == sorted([b"%d" % i for i in range(6)] + [b"alert"])  # each once
    assert retries and retries[0] == 0
    # a keyed record without a partition goes where Kafka's default partitioner puts its key
    assert placed[b"alert"] == (murmur2(b"k") & 0x7FFFFFFF) % 3
    assert placed[b"3"] == 1


def test_deliver_raises_when_stopping_with_undelivered_records() -> None:
    async def run() -> None:
        async def get() -> FlakyProducer:
            return FlakyProducer(fail=10**6)

        inflight = InFlight([([("t", 0, None, b"x")], None)], NodeNotReadyError())
        await deliver(get, inflight, RetryPolicy(0.001, 0.002), should_stop=lambda: True)

    with pytest.raises(NodeNotReadyError):
        asyncio.run(run())


def test_fault_plan_is_consumed_one_crash_per_process(tmp_path: Path) -> None:
    plan = tmp_path / "faults.json"
    plan.write_text(json.dumps([["batch", 2], ["changelog", 1]]))
    faults = Faults(plan)
    faults.load()
    assert (faults.point, faults.after) == ("batch", 2)
    faults.hit("changelog")  # another point: nothing
    assert json.loads(plan.read_text()) == [["batch", 2], ["changelog", 1]]
    with pytest.raises(ValueError, match="unknown fault point"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps([["nowhere", 1]]))
        Faults(bad).load()
    idle = Faults(None)
    idle.load()
    idle.hit("batch")  # inert without a plan


def test_restart_backoff_grows_and_caps() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]


def test_embedded_clickhouse_dir_in_use_only_while_another_engine_holds_its_lock(tmp_path: Path) -> None:
    import fcntl
    import os

    from sinks.clickhouse import embedded_dir_in_use

    directory = tmp_path / "clickhouse"
    directory.mkdir()
    dsn = f"chdb://{directory}"
    assert embedded_dir_in_use(dsn) is None  # never opened
    (directory / "status").write_text("PID: 1\n")
    assert embedded_dir_in_use(dsn) is None  # left by an engine that is gone: free
    fd = os.open(directory / "status", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running engine holds
        assert embedded_dir_in_use(dsn) == str(directory)
    finally:
        os.close(fd)
    assert embedded_dir_in_use(dsn) is None
    assert embedded_dir_in_use("http://localhost:8123/vitals") is None
