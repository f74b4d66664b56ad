"""One Segment-Spec or PostHog-capture event object to a SPEC-section-1 event (SPEC section 8's mapping).

:func:`to_event` gives the :class:`~schemas.events.Event` the worker applies (section 1's checks, made in
``schemas.events.validate``'s order with its reasons; the tests check that ``validate`` accepts every result);
:func:`to_vitals` the same as a JSON-able dict, for the collector. Not activity (Segment's identify/group/alias,
PostHog's $identify/$set/...) is a :class:`NotActivity`; what cannot be converted a :class:`Rejected` with its
reason. Never raises on any decoded JSON value (ValueError for a format other than segment and posthog). Pure:
no I/O, no clock.

A field is present when its value is neither null nor an empty string (RudderStack sends ``"userId": ""`` for
anonymous users), so ``userId`` falls back to ``anonymousId`` then. A payment's ``amount`` must be valid
(``bad_amount``, ``missing_amount``); on another type it is carried only when it is a valid amount (a product event's
``properties.total`` that is not a number does not cost the event). ``props``: the source's ``properties``
object (raw storage), when it is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import (
    _RFC3339,
    MAX_FUTURE_MS,
    MAX_PAYMENT_AMOUNT,
    MIN_TS_MS,
    Event,
    Reason,
    _Bad,
    parse_ts,
)
from schemas.formats.mapping import NOT_ACTIVITY_KINDS, PAGE_VIEW, SEGMENT_PAGE_TYPES, FormatMapping, Path

_fromisoformat = datetime.fromisoformat
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
NO_CLOCK_MS = 1 << 62  # to_vitals has no clock: "ts ahead of the record" is the reader's check
_EMPTY: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class NotActivity:
    """An event that is not activity; ``kind`` (a metric label) is the message type or $-event name among
    the defaults' (NOT_ACTIVITY_KINDS), else ``"other"``."""

    kind: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that cannot be converted: section 1's reason and a message naming the source field."""

    reason: Reason
    message: str


def _first(obj: dict[str, Any], paths: tuple[Path, ...]) -> Any:
    """The value of the first path of ``paths`` present in ``obj`` (not null, not ""); None if none."""
    for path in paths:
        value: Any = obj
        for key in path:
            value = value.get(key) if type(value) is dict else None
        if value is not None and value != "":
            return value
    return None


def ts_ms(value: object) -> int:
    """``schemas.events.parse_ts`` (the same result, the same _Bad), faster on the RFC 3339 strings SDKs send:
    a string the reference's pattern matches is read by ``datetime.fromisoformat`` (C), which refuses what
    the reference refuses among them (hour 24, a leap second, an offset of a day: those go to the reference)."""
    if type(value) is str and len(value) <= 64 and _RFC3339.fullmatch(value) is not None and (
            value[-1] in "Zz" or value[-2:] < "60"):
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            return parse_ts(value)
        if parsed.tzinfo is not None:
            return (parsed - _EPOCH) // _MS
    return parse_ts(value)


def _string(value: object, name: str, limit: int) -> Rejected | None:
    if type(value) is not str:
        return Rejected(Reason.BAD_TYPE, f"{name} must be a string")
    if not 0 < len(value) <= limit:
        return Rejected(Reason.BAD_LENGTH, f"{name} must have 1..{limit} characters")
    return None


def _names(paths: tuple[Path, ...]) -> str:
    return " or ".join(repr(".".join(p)) for p in paths) or "(no path configured)"


def _event_type(obj: dict[str, Any], fmt: str, mapping: FormatMapping) -> str | NotActivity | Rejected:
    if fmt == "segment":
        mtype = obj.get("type")
        if mtype is None:
            return Rejected(Reason.MISSING_FIELD, "required field 'type' is missing")
        if type(mtype) is not str:
            return Rejected(Reason.BAD_TYPE, "'type' must be a string")
        if mtype in mapping.not_activity:
            return NotActivity(mtype if mtype in NOT_ACTIVITY_KINDS else "other")
        if mtype in SEGMENT_PAGE_TYPES:
            return PAGE_VIEW
        if mtype != "track":
            return Rejected(Reason.BAD_TYPE, "'type' must be track, page, screen, identify, group or alias")
    elif fmt != "posthog":  # the caller's mistake, not the input's
        raise ValueError(f"{fmt!r} is not a mapped input format (segment, posthog)")
    name = obj.get("event")
    if name is None:
        return Rejected(Reason.MISSING_FIELD, "required field 'event' is missing")
    if type(name) is not str:
        return Rejected(Reason.BAD_TYPE, "'event' must be a string")
    if fmt == "posthog" and name in mapping.not_activity:
        return NotActivity(name if name in NOT_ACTIVITY_KINDS else "other")
    return mapping.event_types.get(name, name)


def to_event(obj: object, fmt: str, mapping: FormatMapping, now_ms: int, *, default_app_id: str = "default",
             apps: Mapping[str, str] = _EMPTY, app_id: str | None = None, sent_at: object = None
             ) -> Event | NotActivity | Rejected:
    """``obj`` (one event of format ``fmt``) as a valid Event, checked as section 1 checks an event carried by
    a Kafka record with timestamp ``now_ms``. ``app_id``: an override of the event's app (the collector's write
    key); ``apps``: PostHog api keys and tokens to app ids; ``default_app_id``: the source's default tenant;
    ``sent_at``: the PostHog batch's, the time of an event without a timestamp."""
    if type(obj) is not dict:
        return Rejected(Reason.NOT_OBJECT, "an event must be a JSON object")
    etype = _event_type(obj, fmt, mapping)
    if type(etype) is not str:
        return etype  # type: ignore[return-value]
    event_id = _first(obj, mapping.event_id)
    if event_id is None:
        return Rejected(Reason.MISSING_FIELD, f"required field {_names(mapping.event_id)} is missing")
    user_id = _first(obj, mapping.user_id)
    if user_id is None:
        return Rejected(Reason.MISSING_FIELD, f"required field {_names(mapping.user_id)} is missing")
    ts = _first(obj, mapping.ts)
    if ts is None:
        if fmt == "posthog" and sent_at is not None:
            ts = sent_at
        else:
            return Rejected(Reason.MISSING_FIELD, f"required field {_names(mapping.ts)} is missing")
    # section 1's checks, in schemas.events.validate's order (tests/unit/test_formats.py compares the two)
    bad = (_string(event_id, "'event_id'", 128) or _string(user_id, "'user_id'", 128)
           or _string(etype, "'type'", 64))
    if bad is not None:
        return Rejected(bad.reason, f"{fmt}: {bad.message}")
    try:
        ms = ts_ms(ts)
    except _Bad as exc:
        return Rejected(exc.reason, f"{fmt}: {exc.message}")
    if ms < MIN_TS_MS or ms > now_ms + MAX_FUTURE_MS:
        return Rejected(Reason.TS_OUT_OF_RANGE, f"{fmt}: ts before 2000-01-01 or more than 1 day ahead of the clock")
    if app_id is None:
        app_id = _first(obj, mapping.app_id)
        if app_id is None:
            key = _first(obj, mapping.app_key)
            app_id = apps.get(key, default_app_id) if type(key) is str else default_app_id
    device_id = _first(obj, mapping.device_id)
    bad = _string(app_id, "'app_id'", 64) or (None if device_id is None else _string(device_id, "'device_id'", 128))
    if bad is not None:
        return Rejected(bad.reason, f"{fmt}: {bad.message}")
    raw = _first(obj, mapping.amount)
    amount = 0.0
    if raw is not None:
        valid = type(raw) in (int, float) and 0 <= raw <= MAX_PAYMENT_AMOUNT
        if valid:
            amount = float(raw)
        elif etype == "payment":
            return Rejected(Reason.BAD_AMOUNT, f"{fmt}: 'amount' must be a number between 0 and "
                                               f"{MAX_PAYMENT_AMOUNT:.0f}")
    elif etype == "payment":
        return Rejected(Reason.MISSING_AMOUNT, f"{fmt}: a payment needs {_names(mapping.amount)}")
    props = obj.get("properties")
    # device_id and props are None when absent: Event types them without None on purpose (see there)
    return Event(event_id, user_id, etype, ms, app_id, device_id, amount,
                 props if type(props) is dict else None)  # type: ignore[arg-type]


def event_doc(event: Event) -> dict[str, object]:
    """A valid Event as section 1's JSON object (``ts`` in epoch ms)."""
    doc: dict[str, object] = {"event_id": event.event_id, "user_id": event.user_id, "type": event.type,
                              "ts": event.ts, "app_id": event.app_id}
    if event.device_id is not None:
        doc["device_id"] = event.device_id
    if event.amount != 0.0 or event.type == "payment":
        doc["amount"] = event.amount
    if event.props is not None:
        doc["props"] = event.props
    return doc


def to_vitals(obj: object, fmt: str, mapping: FormatMapping, *, default_app_id: str = "default",
              apps: Mapping[str, str] = _EMPTY, app_id: str | None = None, sent_at: object = None
              ) -> dict[str, object] | NotActivity | Rejected:
    """``obj`` (one event of format ``fmt``) as section 1's event object (``schemas.events.validate`` accepts
    it), a NotActivity or a Rejected. Whether ``ts`` is too far ahead is left to whoever knows the time (the
    worker checks it against the record's timestamp); everything else of section 1 is checked here."""
    result = to_event(obj, fmt, mapping, NO_CLOCK_MS, default_app_id=default_app_id, apps=apps, app_id=app_id,
                      sent_at=sent_at)
    return event_doc(result) if type(result) is Event else result  # type: ignore[return-value]
