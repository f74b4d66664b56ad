"""A Kafka message of a mapped format (SPEC 8: one Segment or PostHog event, or a JSON array of them, as
RudderStack's Kafka destination writes) decoded into section 1's events, with section 1's message-level checks
and reasons: :class:`FormatDecoder`. The JSON is read once per message (orjson), then each event converted in
one loop. Pure: the caller gives the Kafka record's timestamp.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    Event,
    Invalid,
    Reason,
    _Bad,
    _event_slices,
    _parse,
    check_unicode,
)
from schemas.formats.convert import NotActivity, Rejected, to_event
from schemas.formats.fast import segment_fast, segment_fast_applies
from schemas.formats.mapping import FormatMapping

# what a message came to: its events at their index in it (None where it held an invalid event or one that is
# not activity), the invalid ones, and the kinds of those not activity
Decoded = tuple[list[Event | None], list[Invalid], list[str]]


@dataclass(frozen=True)
class FormatDecoder:
    """The messages of one source topic of format ``fmt``: ``default_app_id`` the source's tenant, ``apps``
    PostHog's api keys and tokens to app ids."""

    fmt: str
    mapping: FormatMapping
    default_app_id: str = "default"
    apps: Mapping[str, str] = field(default_factory=dict)
    fast: bool = field(init=False, default=False)  # segment_fast may take the regular events

    def __post_init__(self) -> None:
        object.__setattr__(self, "fast", self.fmt == "segment" and segment_fast_applies(self.mapping))

    def __call__(self, value: bytes | None, now_ms: int) -> Decoded:
        """Decode one message value; ``now_ms`` the record's timestamp (section 1: ``ts`` at most a day
        ahead of it). Never raises on bad input."""
        if value is None or len(value) == 0:
            return [], [Invalid(Reason.NOT_JSON, "empty message value", value or b"", None)], []
        if len(value) > MAX_BATCH_BYTES:
            return [], [Invalid(Reason.BATCH_TOO_LARGE, "message larger than 1 MiB", value, None)], []
        try:
            doc, exact = _parse(value)
        except ValueError:
            return [], [Invalid(Reason.NOT_JSON, "message value is not UTF-8 JSON", value, None)], []
        if type(doc) is dict:
            if len(value) > MAX_EVENT_BYTES:
                return [], [Invalid(Reason.EVENT_TOO_LARGE, "event larger than 64 KiB", value, None)], []
            return self._one(doc, exact, value, now_ms)
        if type(doc) is not list:
            return [], [Invalid(Reason.NOT_OBJECT, "message must be an event object or an array", value, None)], []
        if not doc:
            return [], [Invalid(Reason.EMPTY_BATCH, "a batch must hold 1..1000 events", value, None)], []
        if len(doc) > MAX_BATCH_EVENTS:
            return [], [Invalid(Reason.BATCH_TOO_LONG, "a batch must hold 1..1000 events", value, None)], []
        return self._many(doc, exact, value, now_ms)

    def _convert(self, obj: object, exact: bool, now_ms: int) -> Event | NotActivity | Rejected:
        if not exact:
            try:
                check_unicode(obj)
            except _Bad as bad:
                return Rejected(bad.reason, bad.message)
        elif self.fast:
            event = segment_fast(obj, now_ms, self.mapping.event_types, self.default_app_id)
            if event is not None:
                return event
        return to_event(obj, self.fmt, self.mapping, now_ms, default_app_id=self.default_app_id, apps=self.apps)

    def _one(self, obj: object, exact: bool, value: bytes, now_ms: int) -> Decoded:
        result = self._convert(obj, exact, now_ms)
        if type(result) is Event:
            return [result], [], []
        if type(result) is NotActivity:
            return [None], [], [result.kind]
        assert type(result) is Rejected
        return [], [Invalid(result.reason, result.message, value, None)], []

    def _many(self, doc: list[object], exact: bool, value: bytes, now_ms: int) -> Decoded:
        events: list[Event | None] = []
        invalid: list[Invalid] = []
        kinds: list[str] = []
        rejected: list[tuple[int, Rejected]] = []
        fast, types, app, slow = self.fast and exact, self.mapping.event_types, self.default_app_id, self._convert
        for index, obj in enumerate(doc):
            result: Event | NotActivity | Rejected | None = segment_fast(obj, now_ms, types, app) if fast else None
            if result is None:
                result = slow(obj, exact, now_ms)
            if type(result) is Event:
                events.append(result)
                continue
            events.append(None)
            if type(result) is NotActivity:
                kinds.append(result.kind)
            else:
                rejected.append((index, result))  # type: ignore[arg-type]
        slices = _event_slices(value) if rejected or len(value) > MAX_EVENT_BYTES else None
        for index, bad in rejected:
            assert slices is not None
            invalid.append(Invalid(bad.reason, bad.message, _original(slices, index, value), index))
        if len(value) > MAX_EVENT_BYTES:  # an event of the batch may be oversize on its own
            assert slices is not None
            for index, event in enumerate(events):
                if event is not None and len(_original(slices, index, value)) > MAX_EVENT_BYTES:
                    events[index] = None
                    invalid.append(Invalid(Reason.EVENT_TOO_LARGE, "event larger than 64 KiB", slices[index], index))
            invalid.sort(key=lambda inv: inv.index or 0)
        return events, invalid, kinds


def _original(slices: list[bytes], index: int, value: bytes) -> bytes:
    return slices[index] if index < len(slices) else value


def count_kinds(kinds: list[str], fmt: str, into: Counter[tuple[str, str]]) -> None:
    """Add a message's not-activity kinds to ``into`` ((format, kind) -> events)."""
    for kind in kinds:
        into[(fmt, kind)] += 1
