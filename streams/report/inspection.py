"""``vitals inspect USER_ID``: one user's current state, open episodes and last alerts.

The state is the latest record for the user's key in the users table's changelog
(``<app_id>-users-changelog``, partition = the user's home partition, which the pipeline writes
once per changed key per flush). The alerts come from the alerts topic. Both are read from Kafka,
so this works while workers run (the embedded ClickHouse is locked by the worker then). The user's
segments (SPEC section 7) come from ClickHouse (:func:`read_segments`: ``user_segments FINAL`` and the last
rows of ``segment_changes FINAL``), through ``sinks.reader.open_reader`` (a running worker's endpoint on
the embedded engine).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import alerts as A
from schemas.alerts import Alert, decode_alert
from streams.config.clickhouse_dsn import qualified
from streams.config.settings import Settings
from streams.engine.partitioner import home_partition
from streams.engine.state import (
    AMOUNT_MICROS,
    COMPLAINTS,
    DAY_MS,
    EVENTS,
    LOGINS,
    NONE,
    PAYMENTS,
    POSTS,
    SOCIAL,
    PartitionMeta,
    UserState,
    decode_meta,
    decode_user,
    user_key,
)
from streams.engine.store import meta_key  # the engine's per-partition record
from streams.kafka.client import client_kwargs
from streams.kafka.read import read_topic
from streams.kafka.topics import changelog_topic, topic_partitions


@dataclass
class Found:
    partition: int
    offset: int | None = None
    state: UserState | None = None
    deleted: bool = False
    meta: PartitionMeta | None = None
    alerts: list[Alert] = field(default_factory=list)
    segments: dict[str, Any] | None = None  # read_segments' answer; None: not read
    segments_error: str | None = None  # why they could not be read


class Reader(Protocol):
    database: str

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


def read_segments(ch: Reader, app_id: str, user_id: str, last_changes: int = 10) -> dict[str, Any]:
    """The user's current segment per dimension (``user_segments FINAL``: segment and since when) and their
    last ``last_changes`` changes (``segment_changes FINAL``, newest first)."""
    who = {"app": app_id, "user": user_id}
    current = ch.query(f"SELECT toString(dimension), toString(segment), changed_at FROM "
                       f"{qualified(ch.database, 'user_segments')} FINAL WHERE app_id = %(app)s AND user_id = %(user)s "
                       "ORDER BY dimension", who)
    changes = ch.query(f"SELECT toString(dimension), toString(segment), previous, changed_at, triggered_at, "
                       f"evidence FROM {qualified(ch.database, 'segment_changes')} FINAL WHERE app_id = %(app)s AND "
                       f"user_id = %(user)s ORDER BY changed_at DESC, segment = 'converted' DESC, dimension "
                       f"LIMIT {int(last_changes)}", who)
    return {
        "current": {dim: {"segment": seg, "since": iso(at)} for dim, seg, at in current},
        "last_changes": [{"dimension": dim, "segment": seg, "previous": prev, "changed_at": iso(at),
                          "triggered_at": iso(trig), "evidence": orjson.loads(ev) if ev else None}
                         for dim, seg, prev, at, trig, ev in changes],
    }


async def latest_records(settings: Settings, topic: str, partition: int, keys: set[bytes],
                         timeout_s: float = 120) -> dict[bytes, tuple[int, bytes | None]]:
    """The last (offset, value) of each key in one partition (values None for tombstones)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings.kafka), enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
    out: dict[bytes, tuple[int, bytes | None]] = {}
    try:
        await consumer.start()  # inside: a failed start is stopped too
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while await consumer.position(tp) < end:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic}[{partition}] did not finish in {timeout_s}s")
            for recs in (await consumer.getmany(tp, timeout_ms=500, max_records=50_000)).values():
                for r in recs:
                    if r.key in keys:
                        out[r.key] = (r.offset, r.value)
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
    return out


async def find_user(settings: Settings, app_id: str, user_id: str, last_alerts: int = 10) -> Found:
    topic = changelog_topic(settings, "users")
    partitions = await topic_partitions(settings.kafka, topic)
    if not partitions:
        raise LookupError(f"no changelog topic {topic}: is VITALS_APP_ID the worker's app id?")
    p = home_partition(user_id.encode(), partitions)
    key = user_key(app_id, user_id)
    latest = await latest_records(settings, topic, p, {key, meta_key(p)})
    found = Found(p)
    if key in latest:
        found.offset, raw = latest[key]
        found.deleted = raw is None
        found.state = decode_user(raw) if raw is not None else None
    if latest.get(meta_key(p), (0, None))[1] is not None:
        found.meta = decode_meta(latest[meta_key(p)][1])  # type: ignore[arg-type]
    alerts = []
    for r in await read_topic(settings.kafka, settings.alerts_topic):
        try:
            alert = decode_alert(r.value)
        except msgspec.DecodeError:
            continue
        if alert.app_id == app_id and (alert.user_id == user_id or user_id in (alert.user_ids or [])):
            alerts.append(alert)
    alerts.sort(key=lambda a: (a.triggered_at, a.status == "resolved"))
    found.alerts = alerts[-last_alerts:]
    return found


def iso(ms: int) -> str:
    if ms == NONE:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_str(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, UTC).strftime("%Y-%m-%d") if day != NONE else "-"


def as_dict(found: Found, app_id: str, user_id: str, lateness_ms: int) -> dict[str, Any]:
    s = found.state
    doc: dict[str, Any] = {"app_id": app_id, "user_id": user_id, "partition": found.partition,
                           "changelog_offset": found.offset, "found": s is not None}
    if found.meta is not None and found.meta.stream_time != NONE:
        doc["partition_watermark"] = iso(found.meta.stream_time - lateness_ms)
    if s is not None:
        doc.update(
            first_seen=iso(s.first_ts),
            last_login=iso(s.last_login),
            last_engagement=iso(s.last_engage),
            last_active_day=day_str(s.last_active_day),
            open_episodes={rule: iso(start) for rule, start in zip(A.EPISODE_RULES, s.open, strict=True)
                           if start != NONE},
            days={
                day_str(d): {"events": c[EVENTS], "logins": c[LOGINS], "payments": c[PAYMENTS],
                             "payment_amount": c[AMOUNT_MICROS] / 1_000_000, "content_posts": c[POSTS],
                             "social": c[SOCIAL], "complaints": c[COMPLAINTS]}
                for d, c in sorted(s.days.items())
            },
            burst_alert_days=[day_str(d) for d in sorted(s.burst_days)],
            dedup_ids_held=sum(len(v) for v in s.dedup.values()),
        )
    if found.segments is not None:
        doc["segments"] = found.segments
    if found.segments_error is not None:
        doc["segments_error"] = found.segments_error
    doc["last_alerts"] = [msgspec.to_builtins(a) for a in found.alerts]
    return doc


def print_text(doc: dict[str, Any]) -> None:
    print(f"user {doc['user_id']} (app {doc['app_id']}): changelog partition {doc['partition']}, "
          f"offset {doc['changelog_offset']}")
    if "partition_watermark" in doc:
        print(f"  partition watermark   {doc['partition_watermark']}")
    if not doc["found"]:
        print("  no state: never seen, or pruned")
    else:
        for k in ("first_seen", "last_login", "last_engagement", "last_active_day"):
            print(f"  {k.replace('_', ' '):<21} {doc[k]}")
        episodes = doc["open_episodes"]
        print("  open episodes         " + (", ".join(f"{r} since {t}" for r, t in episodes.items()) or "none"))
        print(f"  dedup ids held        {doc['dedup_ids_held']}")
        print("  days held in state (events logins payments amount posts social complaints):")
        for day, c in doc["days"].items():
            print(f"    {day}  {c['events']:>5} {c['logins']:>3} {c['payments']:>3} {c['payment_amount']:>10.2f} "
                  f"{c['content_posts']:>3} {c['social']:>4} {c['complaints']:>3}")
    if "segments" in doc:
        current = doc["segments"]["current"]
        print("  segments              " + (", ".join(f"{d} {c['segment']} since {c['since']}"
                                                      for d, c in current.items()) or "none"))
        print(f"  last segment changes ({len(doc['segments']['last_changes'])}):")
        for c in doc["segments"]["last_changes"]:
            print(f"    {c['changed_at']}  {c['dimension']:<9} {c['previous'] or '-'} -> {c['segment']}")
    elif "segments_error" in doc:
        print(f"  segments              not read: {doc['segments_error']}")
    print(f"  last alerts ({len(doc['last_alerts'])}):")
    for a in doc["last_alerts"]:
        print(f"    {iso(a['triggered_at'])}  {a['status']:<8} {a['rule']:<26} episode {iso(a['episode_start'])}  "
              f"{a['alert_id']}")
