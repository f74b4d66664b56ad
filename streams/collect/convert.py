"""A request's events converted (pure): each through the SPEC section 8 mapping and section 1's validation
(``schemas.formats.to_event``, with the clock) into the Kafka records the collector writes — the valid events
in per-user arrays keyed by user id, each event that cannot be converted as a dead-letter record with its
reason and original bytes — and the counts the response and the metrics give."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from schemas.dead_letters import DeadLetter, dead_letter_record
from schemas.events import MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, Event, Invalid, Reason, _Bad
from schemas.formats import FormatMapping, NotActivity, Rejected, event_doc, to_event
from streams.collect.bodies import Envelope

KafkaRecord = tuple[str, bytes | None, bytes]  # (topic, key, value)
# a record's value stays below the broker's default message.max.bytes (1,048,588) with room for its overhead
MAX_RECORD_BYTES = MAX_BATCH_BYTES - 48 * 1024


@dataclass(slots=True)
class Converted:
    """The records of one request, and what became of its events."""

    records: list[KafkaRecord] = field(default_factory=list)
    accepted: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)  # by reason
    not_activity: Counter[str] = field(default_factory=Counter)  # by kind (identify, $set, ...)

    def counts(self) -> dict[str, int]:
        return {"accepted": self.accepted, "dead_lettered": sum(self.dead_lettered.values()),
                "not_activity": sum(self.not_activity.values()), "records": len(self.records)}


@dataclass(frozen=True, slots=True)
class Target:
    """Where converted events go: the topics, and the ``source.topic`` named in dead letters."""

    events_topic: str
    dlq_topic: str
    source: str  # "collect:/v1/batch": the route the event came in on


def encode(event: Event) -> bytes:
    """A valid event as SPEC section 1's JSON (``ts`` as epoch milliseconds: the worker's fast decoder takes
    it as it is); ``schemas.events._Bad`` when it is larger than an event may be."""
    encoded = orjson.dumps(event_doc(event))
    if len(encoded) > MAX_EVENT_BYTES:
        raise _Bad(Reason.EVENT_TOO_LARGE, "event larger than 64 KiB once converted")
    return encoded


def user_arrays(topic: str, by_user: Mapping[str, list[bytes]]) -> list[KafkaRecord]:
    """Each user's events as JSON arrays keyed by the user id, cut at 1000 events and MAX_RECORD_BYTES."""
    records: list[KafkaRecord] = []
    for user, events in by_user.items():
        key = user.encode()
        start, size = 0, 2
        for i, encoded in enumerate(events):
            if i > start and (i - start >= MAX_BATCH_EVENTS or size + len(encoded) + 1 > MAX_RECORD_BYTES):
                records.append((topic, key, b"[" + b",".join(events[start:i]) + b"]"))
                start, size = i, 2
            size += len(encoded) + 1
        records.append((topic, key, b"[" + b",".join(events[start:]) + b"]"))
    return records


def convert(envelope: Envelope, fmt: str, mapping: FormatMapping, target: Target, now_ms: int, *,
            app_ids: list[str], apps: Mapping[str, str]) -> Converted:
    """``app_ids[i]``: the app of event i (from the write key or token the request or the event carries)."""
    out = Converted()
    by_user: dict[str, list[bytes]] = {}
    for index, obj in enumerate(envelope.events):
        result = to_event(obj, fmt, mapping, now_ms, apps=apps, app_id=app_ids[index], sent_at=envelope.sent_at)
        if isinstance(result, NotActivity):
            out.not_activity[result.kind] += 1
            continue
        if isinstance(result, Rejected):
            reason, message = result.reason, result.message
        else:
            try:
                encoded = encode(result)
            except _Bad as bad:
                reason, message = bad.reason, bad.message
            except TypeError:  # orjson's: a lone surrogate escape, or props nested deeper than it writes
                reason, message = Reason.NOT_JSON, "event cannot be written as UTF-8 JSON (a lone surrogate " \
                    "escape, or nested too deep)"
            else:
                by_user.setdefault(result.user_id, []).append(encoded)
                out.accepted += 1
                continue
        invalid = Invalid(reason, message, envelope.original(index), index)
        dead = DeadLetter(invalid, target.source, -1, -1, None, fmt)
        out.records.append((target.dlq_topic, None, dead_letter_record(dead, now_ms)))
        out.dead_lettered[str(reason)] += 1
    out.records[:0] = user_arrays(target.events_topic, by_user)
    return out
