"""Rows ClickHouse can never take, dead-lettered instead of stopping the worker for ever.

A sink whose batch is refused for the values of some rows finds those rows by halving the batch
(:meth:`sinks.base.BatchingSink.flush`, classified by code in :mod:`sinks.errors`) and writes the
others. A ``user_activity_daily`` row for a day past ClickHouse's ``Date`` (2149-06-06: a clock far
in the future, with a record timestamp as far) cannot even be encoded; it is taken out before the
insert (:func:`activity_block`). Each such row becomes one record of the dead-letter topic
(schemas/dlq.schema.json) with reason ``sink_refused``:

* ``sink``: the table, the ClickHouse error code (null for a value refused before sending) and its name;
* ``original_*``: the row as JSON (a ``raw_messages`` row: the message's bytes as they came), not an
  event: it is not to be replayed to the events topic as it is;
* ``source``: the source partition the row came from and the last offset of it in the flush that
  wrote the row (a ``raw_messages`` row: the message's own offset); ``source_offsets``: every range of
  that partition in the flush (first and last offset per topic).

The flush delivers them before it commits, and counts them in ``vitals_sink_refused_rows_total{table,
reason}`` (the reason: the error's name, from a fixed set) and ``vitals_dlq_records_total{reason}``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from schemas.alerts import Alert, encode_alert
from schemas.dead_letters import DeadLetter, dead_letter_doc, dead_letter_key
from schemas.events import Invalid, Reason
from schemas.segments import SegmentChange, encode_change
from sinks.base import Refused, SinkInvalid
from sinks.columns import ActivityColumns
from sinks.late import COUNTERS
from streams.engine.state import SEP
from streams.engine.store import StateStore, activity_rows

TopicPartition = tuple[str, int]
OutRecord = tuple[str, int | None, bytes | None, bytes]

MAX_DATE_DAY = 65535  # ClickHouse's Date: days since 1970-01-01 as UInt16 (up to 2149-06-06)
_EPOCH = datetime.date(1970, 1, 1).toordinal()


class DateOutOfRange(SinkInvalid):
    """A row's day past ClickHouse's ``Date``: refused before it is sent."""

    about_rows = True
    name = "DATE_OUT_OF_RANGE"


def activity_block(dirty_rows: dict[tuple[bytes, int, str, str, int], None], stores: dict[int, StateStore],
                   build: Callable[[dict[tuple[bytes, int, str, str, int], None], dict[int, StateStore]],
                                   ActivityColumns]) -> tuple[ActivityColumns, list[Refused[Any]]]:
    """The changed rows as the activity sink's block (``build``: :func:`streams.engine.partition.activity_columns`),
    and the rows whose day no ``Date`` holds, refused (looked for only when the block overflows)."""
    try:
        return build(dirty_rows, stores), []
    except OverflowError:
        beyond = {k: None for k in dirty_rows if not 0 <= k[1] <= MAX_DATE_DAY}
        if not beyond:
            raise
    kept = {k: None for k in dirty_rows if k not in beyond}
    error = DateOutOfRange("a day past 2149-06-06, the last ClickHouse's Date holds")
    return build(kept, stores), [Refused([row], error) for row in activity_rows(beyond, stores)]


@dataclass(frozen=True)
class RowCopy:
    """What a dead letter keeps of a refused row."""

    original: bytes  # the row as JSON; a raw_messages row: the message's value
    key: bytes | None  # the record's key: the user (or device) id; a raw_messages row: the message's key
    home: tuple[str, str] | None  # ("user", user id) or ("device", app id SEP device id): its partition
    exact: tuple[str, int, int] | None = None  # a raw_messages row: (topic, partition, offset)


def _day(day: int) -> str:
    try:
        return datetime.date.fromordinal(_EPOCH + day).isoformat()
    except (ValueError, OverflowError):
        return str(day)


def row_copy(table: str, batch: Sequence[Any]) -> RowCopy:
    """A refused batch of one row of ``table`` (as its sink buffers it) for the dead letter."""
    item = batch[0]
    if table == "user_activity_daily":
        row = item.to_rows()[0] if isinstance(item, ActivityColumns) else item
        app_id, user_id, day, events, logins, payments, micros, posts, social, complaints = row
        doc = {"app_id": app_id, "user_id": user_id, "day": _day(day), "events": events, "logins": logins,
               "payments": payments, "payment_amount": str(Decimal(micros).scaleb(-6)), "content_posts": posts,
               "social": social, "complaints": complaints}
        return RowCopy(orjson.dumps(doc), user_id.encode(), ("user", user_id))
    if table == "alerts":
        alert: Alert = item
        if alert.user_id is None:
            return RowCopy(encode_alert(alert), (alert.device_id or "").encode(),
                           ("device", f"{alert.app_id}{SEP}{alert.device_id}"))
        return RowCopy(encode_alert(alert), alert.user_id.encode(), ("user", alert.user_id))
    if table == "segment_changes":
        change: SegmentChange = item
        return RowCopy(encode_change(change), change.user_id.encode(), ("user", change.user_id))
    if table == "raw_messages":
        topic, partition, offset, _ts, key, value = item
        return RowCopy(value or b"", key, None, (topic, partition, offset))
    if table == "late_events":
        app_id, user_id, day, event_hash, counts = item
        values: list[object] = list(counts)
        values[3] = str(Decimal(counts[3]).scaleb(-6))  # payment_amount, in micros in the state
        doc = {"app_id": app_id, "user_id": user_id, "day": _day(day), "event_hash": event_hash,
               **dict(zip(COUNTERS, values, strict=True))}
        return RowCopy(orjson.dumps(doc), user_id.encode(), ("user", user_id))
    return RowCopy(orjson.dumps({"row": repr(item)}), None, None)


@dataclass
class Refusals:
    """Refused rows as dead-letter records, with the source offsets of the flush that wrote them."""

    dlq_topic: str
    user_topics: tuple[str, ...]  # the events and reroute topics: a user's partition in both
    device_topic: str
    user_home: Callable[[str], int]
    device_home: Callable[[str], int]

    def records(self, refused: Sequence[tuple[str, Refused[Any]]],
                ranges: dict[TopicPartition, tuple[int, int]], now_ms: int) -> list[OutRecord]:
        """One dead-letter record per refused row of (table, refusal); ``ranges``: the flush's first and
        last offset per source topic partition."""
        out: list[OutRecord] = []
        for table, refusal in refused:
            copy = row_copy(table, refusal.batch)
            topics, partition = self._home(copy)
            spans = sorted(((t, p, first, last) for (t, p), (first, last) in ranges.items()
                            if p == partition and t in topics), key=lambda span: topics.index(span[0]))
            if copy.exact is not None:
                topic, partition, offset = copy.exact
            elif spans:
                topic, offset = spans[0][0], spans[0][3]
            else:  # no message of that partition in the flush (not expected): named, without an offset
                topic, offset = topics[0], -1
            error = refusal.error
            what = f"error {error.code} {error.name}" if error.code is not None else error.name
            invalid = Invalid(Reason.SINK_REFUSED, f"ClickHouse refused this row of {table} ({what}): {error}",
                              copy.original, None)
            doc = dead_letter_doc(DeadLetter(invalid, topic, partition, offset, copy.key), now_ms)
            doc["sink"] = {"table": table, "code": error.code, "name": error.name}
            doc["source_offsets"] = [{"topic": t, "partition": p, "first": first, "last": last}
                                     for t, p, first, last in spans]
            out.append((self.dlq_topic, partition, dead_letter_key(copy.key), orjson.dumps(doc)))
        return out

    def _home(self, copy: RowCopy) -> tuple[tuple[str, ...], int]:
        if copy.exact is not None:
            return (copy.exact[0],), copy.exact[1]
        kind, subject = copy.home or ("user", "")
        if kind == "device":
            return (self.device_topic,), self.device_home(subject)
        return self.user_topics, self.user_home(subject)
