"""Two gaps between Faust and aiokafka that lost a partition's records (streams/worker/consumer.py), shown
on the real broker with aiokafka's own fetcher, and closed by what the lean consumer passes it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.worker.consumer import ActiveView, seek_to_start

pytestmark = pytest.mark.integration


async def _with_topic(bootstrap: str, body: Callable[[str, AIOKafkaConsumer], Awaitable[None]]) -> None:
    topic = f"gaps-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition in (0, 1):
            for i in range(5):
                await producer.send_and_wait(topic, f"{partition}-{i}".encode(), partition=partition)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"g-{topic}", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await body(topic, consumer)
    finally:
        await consumer.stop()


async def _prefetched(consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float = 30.0) -> None:
    """Poll until aiokafka's fetcher holds records of every one of ``tps`` (fetched, not yet returned)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not all(tp in consumer._fetcher._records for tp in tps):
        assert loop.time() < deadline, "the fetcher never held records of every partition"
        await asyncio.sleep(0.05)


def test_an_empty_partition_set_drains_every_partition_but_the_view_drains_none(kafka_bootstrap: str) -> None:
    async def body(topic: str, consumer: AIOKafkaConsumer) -> None:
        tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        await _prefetched(consumer, [tp0, tp1])
        # every partition paused in Faust: its live set of active partitions is empty
        assert await consumer._fetcher.fetched_records(ActiveView(set()), timeout=0) == {}
        only0 = await consumer._fetcher.fetched_records(ActiveView({tp0}), timeout=0)
        assert set(only0) == {tp0} and [r.offset for r in only0[tp0]] == [0, 1, 2, 3, 4]
        assert await consumer.position(tp1) == 0  # untouched: still there for when it resumes
        # what the plain empty set does (the gap): aiokafka takes it for "every partition"
        drained = await consumer._fetcher.fetched_records(set(), timeout=0)
        assert set(drained) == {tp1}
        assert await consumer.position(tp1) == 5

    asyncio.run(_with_topic(kafka_bootstrap, body))


def test_seek_to_committed_leaves_a_partition_without_a_commit_where_it_is(kafka_bootstrap: str) -> None:
    async def body(topic: str, consumer: AIOKafkaConsumer) -> None:
        tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        await _prefetched(consumer, [tp0, tp1])
        drained = await consumer._fetcher.fetched_records(ActiveView({tp0, tp1}), timeout=0)
        assert {tp: len(rs) for tp, rs in drained.items()} == {tp0: 5, tp1: 5}
        await consumer.commit({tp0: 2})  # tp1: nothing committed
        committed = await consumer.seek_to_committed()
        assert committed == {tp0: 2, tp1: None}
        assert await consumer.position(tp0) == 2
        assert await consumer.position(tp1) == 5  # the gap: dropped records of tp1 would never come again
        await seek_to_start(consumer, [tp1])  # what LeanConsumer.perform_seek adds
        assert await consumer.position(tp1) == 0

    asyncio.run(_with_topic(kafka_bootstrap, body))


def test_prestart_creates_the_tables_changelogs_compacted_before_any_worker_subscribes(deployment) -> None:  # type: ignore[no-untyped-def]
    """A changelog Faust creates as the worker starts can miss the consumer's first metadata
    request; the group's assignor then ignores it until the next refresh (5 minutes), and a
    table partition moved meanwhile is not recovered. So the worker's prestart creates them."""
    from streams.kafka.client import start_admin
    from streams.kafka.topics import TABLES, changelog_topic, prepare_topics

    settings = deployment.settings
    partitions = asyncio.run(prepare_topics(settings))

    async def described() -> dict[str, tuple[int, str]]:
        admin = await start_admin(settings.kafka)
        try:
            names = [changelog_topic(settings, t) for t in TABLES]
            counts = {e["topic"]: len(e["partitions"]) for e in await admin.describe_topics(names)}
            from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

            resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
            policies = {}
            for response in await admin.describe_configs(resources):
                for resource in response.resources:
                    entries = {entry[0]: entry[1] for entry in resource[4]}
                    policies[resource[3]] = entries["cleanup.policy"]
            return {n: (counts[n], policies[n]) for n in names}
        finally:
            await admin.close()

    assert asyncio.run(described()) == {
        f"{settings.app_id}-users-changelog": (partitions, "compact"),
        f"{settings.app_id}-devices-changelog": (partitions, "compact"),
    }
