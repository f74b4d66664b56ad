"""Reading topics back: every record of a topic, the records since a time, and the alert fence's
source (what a worker that rebuilds partitions reads from the alerts topic)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.settings import KafkaSettings, Settings
from streams.kafka.client import client_kwargs, running
from streams.kafka.offsets import end_offsets, group_offsets
from streams.kafka.topics import device_topic, reroute_topic, topic_partitions


async def read_since(kafka: KafkaSettings, topic: str, since_ms: int | None, per_partition: int,
                     timeout_s: float = 60) -> list[tuple[bytes | None, int]]:
    """(value, timestamp) of ``topic``'s records with a timestamp at or after ``since_ms`` (None: from the
    beginning), at most the last ``per_partition`` of each partition, up to the end offsets at call time."""
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
                                fetch_max_bytes=64 << 20)
    values: list[tuple[bytes | None, int]] = []
    async with running(consumer):
        parts = [TopicPartition(topic, p) for p in range(await topic_partitions(kafka, topic) or 0)]
        if not parts:
            return values
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: max(0, since_ms) for tp in parts})
            starts = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in parts}
        remaining = set()
        for tp in parts:
            start = max(starts[tp], ends[tp] - per_partition)
            if start < ends[tp]:
                consumer.seek(tp, start)
                remaining.add(tp)
        consumer.pause(*(set(parts) - remaining))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while remaining:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic} did not finish in {timeout_s}s")
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=50_000)
            for tp, recs in batch.items():
                values.extend((r.value, r.timestamp) for r in recs if r.offset < ends[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    return values


class KafkaFenceSource:
    """What the alert fence reads (streams/worker/fence.py FenceSource), from the worker's topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def alerts_since(self, since_ms: int | None, per_partition: int) -> list[tuple[bytes | None, int]]:
        return await read_since(self.settings.kafka, self.settings.alerts_topic, since_ms, per_partition)

    async def replay_ends(self, partitions: set[int]) -> dict[tuple[str, int], int]:
        settings = self.settings
        committed = await group_offsets(settings.kafka, settings.app_id)
        ends: dict[tuple[str, int], int] = {}
        for topic in (settings.events_topic, reroute_topic(settings), device_topic(settings)):
            ends.update({(topic, p): end for p, end in (await end_offsets(settings.kafka, topic)).items()
                         if p in partitions and committed.get((topic, p), 0) < end})
        return ends


async def read_topic(kafka: KafkaSettings, topic: str, timeout_s: float = 120) -> list[Any]:
    """Every record currently in ``topic`` (from the beginning to the end offsets at call time)."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(kafka),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    records: list[Any] = []
    async with running(consumer):
        parts = [TopicPartition(topic, p) for p in range(await topic_partitions(kafka, topic) or 0)]
        if not parts:
            return records
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        remaining = {tp for tp, end in ends.items() if end > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while remaining:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic} did not finish in {timeout_s}s")
            batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for recs in batch.values():
                records.extend(recs)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    return records
