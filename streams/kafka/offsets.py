"""Offsets: a topic's end offsets, a consumer group's committed offsets and its lag."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.settings import KafkaSettings
from streams.kafka.client import client_kwargs, start_admin
from streams.kafka.topics import topic_partitions


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    n = await topic_partitions(kafka, topic) or 0
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)
    try:
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in range(n)]
        offsets = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: off for tp, off in offsets.items()}
    finally:
        # aiokafka's coordinator task can surface a CancelledError while stopping a consumer
        # without a group; the offsets are already read
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


async def group_offsets(kafka: KafkaSettings, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets, per (topic, partition)."""
    admin = await start_admin(kafka)
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        await admin.close()


async def committed_offsets(kafka: KafkaSettings, group: str, topic: str) -> dict[int, int]:
    return {p: offset for (t, p), offset in (await group_offsets(kafka, group)).items() if t == topic}


async def group_lag(kafka: KafkaSettings, group: str, topic: str) -> int:
    ends = await end_offsets(kafka, topic)
    committed = await committed_offsets(kafka, group, topic)
    return sum(end - committed.get(p, 0) for p, end in ends.items())
