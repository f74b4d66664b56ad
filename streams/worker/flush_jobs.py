"""A flush job's parts, assembled from what processing produced since the last job (no I/O): the Kafka
records (dead letters, reroutes, device observations, watermark beacons), the source offsets to commit,
the changelog records (the partitions' meta records stamped for the alert fence) and the raw messages.
:meth:`streams.worker.pipeline.Pipeline._take_job` puts them together into a
:class:`streams.worker.flush.FlushJob`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Protocol

from schemas.dead_letters import dead_letter_key, dead_letter_record
from schemas.segments import encode_change
from sinks.clickhouse import RawMessage
from streams.config.settings import Settings
from streams.engine.devices import DeviceObservations, DevicePartition, obs_encoder, obs_records
from streams.engine.partition import Outputs, UserPartition
from streams.engine.routing import Record
from streams.engine.state import SEP
from streams.kafka.topics import device_topic, reroute_topic
from streams.worker.delivery import OutRecord

# a partition's meta record is stamped with the take time of every job that changes it, and at least
# this often otherwise: a restart reads back the alerts sent since the earliest stamp (streams/worker/fence.py)
STAMP_REFRESH_MS = 10_000


class Message(Record, Protocol):
    timestamp: int  # Kafka's, epoch ms


def kafka_records(settings: Settings, out: Outputs, users: Mapping[int, UserPartition],
                  device_home: Callable[[str], int], beacons: MutableMapping[int, int],
                  partitions: int) -> list[OutRecord]:
    """The job's Kafka outputs: dead letters, reroutes, segment changes, device observations and, from every user
    partition whose flushed watermark moved, a beacon to every device partition (``beacons``: the
    watermark last reported per source partition, updated)."""
    records: list[OutRecord] = []
    dlq, reroute, devices = settings.dlq_topic, reroute_topic(settings), device_topic(settings)
    records += [(dlq, dl.partition, dead_letter_key(dl.key), dead_letter_record(dl)) for dl in out.dead_letters]
    records += [(reroute, p, key, value) for p, key, value in out.reroutes]
    segments = settings.segments_topic  # keyed by user id (SPEC section 7): the default partitioner
    records += [(segments, None, change.kafka_key, encode_change(change)) for change in out.segment_changes]
    for (app_id, device_id, source), obs in out.device_obs.items():
        device_key = f"{app_id}{SEP}{device_id}"
        up = users[source]
        home, key = device_home(device_key), device_key.encode()
        batch = DeviceObservations(app_id, device_id, obs, source, up.flushed_watermark, up.watermark)
        records += [(devices, home, key, value) for value in obs_records(batch)]  # bounded records
    # every user partition reports its watermark to every device partition, so the device
    # watermark (their minimum) advances even where a source had no device events
    for source, up in users.items():
        if up.flushed_watermark >= 0 and up.flushed_watermark != beacons.get(source):
            beacons[source] = up.flushed_watermark
            beacon = obs_encoder.encode(DeviceObservations("", "", [], source, up.flushed_watermark))
            records += [(devices, p, None, beacon) for p in range(partitions)]
    return records


def commit_offsets(pending: Sequence[Message]) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """The source offsets to commit (after the last message taken, per partition) and the first offset
    taken per partition."""
    offsets: dict[tuple[str, int], int] = {}
    first: dict[tuple[str, int], int] = {}
    for msg in pending:
        tp = (msg.topic, msg.partition)
        if msg.offset >= offsets.get(tp, -1):
            offsets[tp] = msg.offset + 1
        first.setdefault(tp, msg.offset)
    return offsets, first


def changelog_records(users: Mapping[int, UserPartition], devices: Mapping[int, DevicePartition],
                      changelogs: tuple[str, str], stamp: int) -> list[OutRecord]:
    """The changed states of every partition for the tables' changelogs, and the meta records of the
    partitions stamped for the alert fence (``stamp``: streams/worker/fence.py); a user partition's
    watermark is flushed with them."""
    changelog: list[OutRecord] = []
    users_cl, devices_cl = changelogs
    for p, up in users.items():
        drained = up.drain()
        changelog += [(users_cl, p, k, v) for k, v in drained]
        if drained or up.meta_dirty or stamp - up.meta.alerts_after >= STAMP_REFRESH_MS:
            up.meta.alerts_after, up.meta_dirty = stamp, True
        meta = up.drain_meta()
        if meta is not None:
            changelog.append((users_cl, p, *meta))
        up.flushed_watermark = up.watermark
    for p, dp in devices.items():
        if dp.dirty or dp.meta_dirty or stamp - dp.meta.alerts_after >= STAMP_REFRESH_MS:
            dp.meta.alerts_after, dp.meta_dirty = stamp, True
        changelog += [(devices_cl, p, k, v) for k, v in dp.drain()]
    return changelog


def raw_messages(pending: Sequence[Message], topics: tuple[str, ...]) -> list[RawMessage]:
    """Raw storage: the messages of the events topic and the other source topics (``topics``) as they came."""
    return [(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value) for m in pending if m.topic in topics]
