"""The topics vitals uses: their names (public, internal, the tables' changelogs), their creation and
partition counts, checked before a worker or a producer starts (:func:`prepare_topics`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.config.settings import ConfigError, KafkaSettings, Settings
from streams.kafka.client import start_admin


async def topic_partitions(kafka: KafkaSettings, topic: str) -> int | None:
    return (await partition_counts(kafka, [topic])).get(topic)


async def partition_counts(kafka: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """Partitions of each of ``topics`` that exists (one admin client for all)."""
    admin = await start_admin(kafka)
    try:
        # describing a missing topic is a metadata request, which auto-creates it with the
        # broker's default partition count where auto-creation is on: look it up first
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t in existing]
        counts: dict[str, int] = {}
        for entry in await admin.describe_topics(wanted) if wanted else []:
            if entry.get("error_code", 0) == 0 and entry.get("partitions"):
                counts[entry["topic"]] = len(entry["partitions"])
        return counts
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, partitions: int) -> None:
    """Create the public and internal topics vitals uses (idempotent)."""
    kafka = settings.kafka
    names = [
        settings.events_topic,
        settings.alerts_topic,
        settings.segments_topic,
        settings.dlq_topic,
        reroute_topic(settings),
        device_topic(settings),
        *source_topics(settings),
    ]
    # the tables' changelogs too: Faust would create them as the worker starts, racing its own
    # consumer's first metadata request; a topic that request missed stays unknown to the
    # group's assignor until the next metadata refresh (5 minutes), so its partitions are not
    # assigned and a table partition that moves meanwhile is not recovered
    compacted = {changelog_topic(settings, table) for table in TABLES}
    admin = await start_admin(kafka)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, partitions, kafka.replication_factor,
                            topic_configs={"cleanup.policy": "compact"} if n in compacted else None)
                   for n in [*names, *sorted(compacted)] if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            await _wait_for_leaders(admin, [t.name for t in missing])
    finally:
        await admin.close()


async def _wait_for_leaders(admin: Any, topics: list[str], timeout_s: float = 30.0) -> None:
    """Until every partition of the just-created ``topics`` has a leader (bounded): a producer that starts
    before would log a ``NotLeaderForPartitionError ... retrying`` line per partition, alarming for nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        entries = await admin.describe_topics(topics)
        if all(e.get("error_code", 0) == 0 and e.get("partitions")
               and all(p.get("leader", -1) >= 0 for p in e["partitions"]) for e in entries):
            return
        await asyncio.sleep(0.1)


TABLES = ("users", "devices")  # the Faust tables of streams/worker/app.py


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


def source_topics(settings: Settings) -> tuple[str, ...]:
    """The additional source topics (``[[input.sources]]``, SPEC 8): read beside the events topic, partitioned
    like it, every event sent to its user's partition through the reroute topic."""
    return tuple(source.topic for source in settings.input.sources)


def reroute_topic(settings: Settings) -> str:
    return f"{settings.app_id}-reroute"


def device_topic(settings: Settings) -> str:
    return f"{settings.app_id}-device-obs"


async def prepare_topics(settings: Settings) -> int:
    """The events topic's partition count once every topic a worker uses exists with at least as many
    partitions (run before a worker, a generator or a replay starts)."""
    try:
        existing = await asyncio.wait_for(topic_partitions(settings.kafka, settings.events_topic), 60)
    except TimeoutError:
        raise ConfigError(f"Kafka at {settings.kafka.bootstrap} did not answer within 60 s") from None
    partitions = existing or settings.kafka.partitions
    await ensure_topics(settings, partitions)
    # records go to these topics' partitions by source partition: fewer partitions than the
    # events topic would fail every flush that reaches past them
    outputs = [settings.dlq_topic, reroute_topic(settings), device_topic(settings)]
    for topic, found in (await partition_counts(settings.kafka, outputs)).items():
        if found < partitions:
            raise ConfigError(f"topic {topic} has {found} partitions, fewer than the {partitions} of "
                              f"{settings.events_topic}: add partitions to it (kafka-topics --alter)")
    # a source topic's partition p is read with the events topic's p (one consumer group, co-assigned)
    for topic, found in (await partition_counts(settings.kafka, list(source_topics(settings)))).items():
        if found != partitions:
            raise ConfigError(f"input source topic {topic} has {found} partitions, not the {partitions} of "
                              f"{settings.events_topic}: a source topic is partitioned like the events topic")
    return partitions
