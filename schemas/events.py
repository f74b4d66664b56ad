"""Decoding and validation of tracked events (SPEC section 1).

``decode_message`` turns one Kafka message value into valid :class:`Event` objects and
:class:`Invalid` records (one per bad event, or one for the whole message). It never raises on
bad input. Reasons are machine-readable codes chosen where the check fails, never derived from
an exception's text.

Two paths give the same result. The fast path decodes the message straight into ``Event``
structs with msgspec, whose type constraints are the schema's, and takes only what it can decide
exactly as the reference would: anything it rejects or cannot vouch for (other fields, a field
that is ``null``, string timestamps, a payment of 0, oversize messages, integers orjson would
turn into floats) goes to the reference path (orjson + ``validate``), which alone chooses reasons
and original bytes.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, NoReturn

import msgspec
import orjson
from msgspec import Meta

MAX_EVENT_BYTES = 64 * 1024
MAX_BATCH_BYTES = 1024 * 1024
MAX_BATCH_EVENTS = 1000
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_MS = 86_400_000
MAX_PAYMENT_AMOUNT = 1e9  # per event; sums stay exact as int64 micro-units
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

ENGAGEMENT_EXCLUDED = frozenset({"login", "logout"})
SOCIAL_TYPES = frozenset({"comment", "like", "share", "follow"})


class Reason(enum.StrEnum):
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    EMPTY_BATCH = "empty_batch"
    BATCH_TOO_LONG = "batch_too_long"
    BATCH_TOO_LARGE = "batch_too_large"
    EVENT_TOO_LARGE = "event_too_large"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_LENGTH = "bad_length"
    BAD_TS = "bad_ts"
    TS_OUT_OF_RANGE = "ts_out_of_range"
    BAD_AMOUNT = "bad_amount"
    MISSING_AMOUNT = "missing_amount"
    BEYOND_RETENTION = "beyond_retention"
    # a record of an internal topic (<app_id>-reroute, <app_id>-device-obs) that does not decode:
    # vitals wrote none such, so the message says which decoder refused it and why
    INTERNAL_UNDECODABLE = "internal_undecodable"
    # no input's fault: a row ClickHouse refused on its own (streams/worker/refusals.py), as JSON
    SINK_REFUSED = "sink_refused"


class Event(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A valid event. The annotations are the fast decoder's checks (the reference path's
    ``validate`` makes the same ones, plus those that need the clock or the other fields)."""

    event_id: Annotated[str, Meta(min_length=1, max_length=128)]
    user_id: Annotated[str, Meta(min_length=1, max_length=128)]
    type: Annotated[str, Meta(min_length=1, max_length=64)]
    ts: Annotated[int, Meta(ge=MIN_TS_MS)]
    app_id: Annotated[str, Meta(min_length=1, max_length=64)] = "default"
    # None when absent. Typed without None so that the fast decoder refuses an explicit null (a
    # bad type: the reference path decides) without scanning the message for one.
    device_id: Annotated[str, Meta(min_length=1, max_length=128)] = None  # type: ignore[assignment]
    amount: Annotated[float, Meta(ge=0, le=MAX_PAYMENT_AMOUNT)] = 0.0
    props: dict[str, Any] = None  # type: ignore[assignment]


@dataclass(slots=True)
class Invalid:
    reason: Reason
    message: str
    original: bytes
    index: int | None  # position within a batch message; None for a whole message


class _Bad(Exception):
    """Internal: carries a reason code from the check that failed."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_STR_LIMITS = {"event_id": 128, "user_id": 128, "type": 64}
_OPT_LIMITS = {"app_id": 64, "device_id": 128}


# RFC 3339 section 5.6 date-time (its "T" and "Z" in either case); second 60 for a leap second
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))", re.ASCII
)
_NOT_RFC3339 = "ts string is not an RFC 3339 date-time"


def parse_ts(value: object) -> int:
    """Event time as epoch ms from an integer (a JSON number with no fraction, as JSON Schema's
    ``integer``) or an RFC 3339 date-time string with offset. Fractions of a millisecond are
    truncated; a leap second (``23:59:60`` in UTC) is the millisecond after ``23:59:59.999``."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        raise _Bad(Reason.BAD_TYPE, "ts must be integer epoch milliseconds or an RFC 3339 string")
    match = _RFC3339.fullmatch(value) if len(value) <= 64 else None
    if match is None:
        raise _Bad(Reason.BAD_TS, _NOT_RFC3339)
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    leap = second == "60"
    try:
        offset = UTC
        if sign is not None:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError(value)
            shift = timedelta(hours=int(off_h), minutes=int(off_m))
            offset = timezone(-shift if sign == "-" else shift)
        parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), 59 if leap else int(second),
                          tzinfo=offset)
    except ValueError:
        raise _Bad(Reason.BAD_TS, _NOT_RFC3339) from None
    ms = (parsed - _EPOCH) // _MS + int((fraction or "")[:3].ljust(3, "0"))
    if leap:
        if (ms // 1000 + 1) % 86_400 != 0:  # only the last second of a UTC day can be a leap second
            raise _Bad(Reason.BAD_TS, "ts has second 60 outside a leap second (23:59:60 UTC)")
        ms += 1000
    return ms


def validate(obj: object, now_ms: int) -> Event:
    """Validate one decoded JSON value as an event; raise _Bad with the reason."""
    if type(obj) is not dict:
        raise _Bad(Reason.NOT_OBJECT, "an event must be a JSON object")
    for field, limit in _STR_LIMITS.items():
        value = obj.get(field)
        if value is None:
            raise _Bad(Reason.MISSING_FIELD, f"required field {field!r} is missing")
        if type(value) is not str:
            raise _Bad(Reason.BAD_TYPE, f"{field!r} must be a string")
        if not 0 < len(value) <= limit:
            raise _Bad(Reason.BAD_LENGTH, f"{field!r} must have 1..{limit} characters")
    if "ts" not in obj:
        raise _Bad(Reason.MISSING_FIELD, "required field 'ts' is missing")
    ts = parse_ts(obj["ts"])
    if ts < MIN_TS_MS or ts > now_ms + MAX_FUTURE_MS:
        raise _Bad(Reason.TS_OUT_OF_RANGE, "ts before 2000-01-01 or more than 1 day ahead of the clock")
    app_id = "default"
    device_id = None
    for field, limit in _OPT_LIMITS.items():
        value = obj.get(field)
        if value is None:
            if field in obj:
                raise _Bad(Reason.BAD_TYPE, f"{field!r} must be a string")
            continue
        if type(value) is not str:
            raise _Bad(Reason.BAD_TYPE, f"{field!r} must be a string")
        if not 0 < len(value) <= limit:
            raise _Bad(Reason.BAD_LENGTH, f"{field!r} must have 1..{limit} characters")
        if field == "app_id":
            app_id = value
        else:
            device_id = value
    etype = obj["type"]
    amount = 0.0
    if "amount" in obj:
        raw = obj["amount"]
        if type(raw) not in (int, float):
            raise _Bad(Reason.BAD_AMOUNT, "'amount' must be a number")
        if not 0 <= raw <= MAX_PAYMENT_AMOUNT:
            raise _Bad(Reason.BAD_AMOUNT, f"'amount' must be between 0 and {MAX_PAYMENT_AMOUNT:.0f}")
        amount = float(raw)
    elif etype == "payment":
        raise _Bad(Reason.MISSING_AMOUNT, "a payment needs 'amount'")
    props = obj.get("props")
    if (props is not None or "props" in obj) and type(props) is not dict:  # an explicit null too
        raise _Bad(Reason.BAD_TYPE, "'props' must be an object")
    # device_id and props are None when absent: Event types them without None on purpose (see there)
    return Event(obj["event_id"], obj["user_id"], etype, ts, app_id, device_id, amount, props)  # type: ignore[arg-type]


def _event_slices(value: bytes) -> list[bytes]:
    """Exact original bytes of each element of a JSON array (slow path, for dead letters)."""
    try:
        return [bytes(raw) for raw in msgspec.json.decode(value, type=list[msgspec.Raw])]
    except (msgspec.DecodeError, RecursionError):  # msgspec recurses; orjson accepts 1024 levels
        return _scan_slices(value)


def _scan_slices(value: bytes) -> list[bytes]:
    """Element bytes of a JSON array already parsed by orjson, found without recursion."""
    out: list[bytes] = []
    depth, start, in_str, escaped = 0, -1, False, False
    for i, c in enumerate(value):
        if in_str:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_str = False
        elif c == 0x22:
            in_str = True
            if depth == 1 and start < 0:
                start = i
        elif c in b"[{":
            depth += 1
            if depth == 2 and start < 0:
                start = i
        elif c in b"]}" or (c == 0x2C and depth == 1):
            if depth == 1 and start >= 0:
                out.append(value[start:i].strip())
                start = -1
            if c != 0x2C:
                depth -= 1
        elif depth == 1 and start < 0 and c not in b" \t\r\n":
            start = i
    return out


_fast_decoder = msgspec.json.Decoder(Event | Annotated[list[Event], Meta(min_length=1, max_length=MAX_BATCH_EVENTS)])
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_INT_MIN, _INT_END = -(1 << 63), 1 << 64  # orjson decodes integers outside [min, end) as floats


def _same_as_orjson(value: object) -> bool:
    """Whether props decoded by msgspec equal what orjson gives (it turns huge integers into floats)."""
    kind = type(value)
    if kind is int:
        return _INT_MIN <= value < _INT_END  # type: ignore[operator]
    if kind is dict:
        return all(_same_as_orjson(v) for v in value.values())  # type: ignore[attr-defined]
    if kind is list:
        return all(_same_as_orjson(v) for v in value)  # type: ignore[attr-defined]
    return True


def _decode_fast(value: bytes, now_ms: int) -> list[Event] | None:
    """All the events of ``value`` when every one is valid and the reference path would accept
    them with the same values; None when the reference path must decide."""
    try:
        doc = _fast_decoder.decode(value)
    except Exception:  # any decode or validation error (and RecursionError, UnicodeDecodeError)
        return None
    if isinstance(doc, list):  # an Event or a list of them
        events: list[Event] = doc
        if len(value) > MAX_EVENT_BYTES:
            try:
                if max(len(raw) for raw in _raw_list_decoder.decode(value)) > MAX_EVENT_BYTES:
                    return None
            except Exception:
                return None
    elif len(value) > MAX_EVENT_BYTES:
        return None
    else:
        events = [doc]
    limit = now_ms + MAX_FUTURE_MS
    try:
        for event in events:
            if event.ts > limit or (event.amount == 0.0 and event.type == "payment"):
                return None  # a payment of 0 may be one without an amount
            if event.props is not None and not _same_as_orjson(event.props):
                return None
    except RecursionError:
        return None
    return events


_props_decoder = msgspec.json.Decoder(dict[str, Any])  # the C decoder's props: as the typed decoder reads them


def decoder_constants() -> dict[str, Any]:
    """What the C decoder (``schemas._decode``, its Python twin :func:`_decode_fast` then
    :func:`decode_message_reference`) is configured with: the Event struct, the props decoder, the
    limits; ``streams.engine.extensions`` loads and configures it."""
    return {
        "Event": Event, "props": _props_decoder.decode, "default_app": "default", "limits": _STR_LIMITS | _OPT_LIMITS,
        "MIN_TS_MS": MIN_TS_MS, "MAX_FUTURE_MS": MAX_FUTURE_MS, "MAX_EVENT_BYTES": MAX_EVENT_BYTES,
        "MAX_BATCH_EVENTS": MAX_BATCH_EVENTS, "MAX_PAYMENT_AMOUNT": MAX_PAYMENT_AMOUNT,
    }


FirstDecoder = Callable[[bytes, int], "list[Event] | None"]  # the C decoder's decode(value, now_ms)


def decode_message(value: bytes | None, now_ms: int, first: FirstDecoder | None = None
                   ) -> tuple[list[Event], list[Invalid]]:
    """Decode one message value (an event or a batch of events). ``first``: the C decoder
    (schemas/_decode.c, from ``streams.engine.extensions.decoder``) tried first; it takes the messages
    written the usual way (None: the others) and leaves the rest here."""
    if value and len(value) <= MAX_BATCH_BYTES:
        if first is not None:
            events = first(value, now_ms)
            if events is not None:
                return events, []
        events = _decode_fast(value, now_ms)
        if events is not None:
            return events, []
    return decode_message_reference(value, now_ms)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _int_as_orjson(text: str) -> int | float:
    number = int(text)
    return number if -(2**63) <= number < 2**64 else float(number)  # as orjson reads it


def _parse(value: bytes) -> tuple[Any, bool]:
    """The JSON document in ``value`` and whether orjson read it. JSON that orjson refuses though
    it is JSON — numbers beyond the double range, lone surrogate escapes — is read by the
    standard library instead (False), so that only the events holding such values are invalid,
    not their whole batch. ValueError: not UTF-8 JSON (nor nested deeper than either reads)."""
    try:
        return orjson.loads(value), True
    except orjson.JSONDecodeError:
        pass
    try:
        text = value.decode()
        return json.loads(text, parse_constant=_no_constant, parse_int=_int_as_orjson), False
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ValueError("not UTF-8 JSON") from None


def _validate_unicode(obj: object, now_ms: int) -> Event:
    """``validate``, for an event the standard library read: its text must be Unicode (a lone
    surrogate escape reads as a str that no UTF-8 encoder takes)."""
    check_unicode(obj)
    return validate(obj, now_ms)


def check_unicode(obj: object) -> None:
    """Raise _Bad (not_json) when a value the standard library read holds a lone surrogate escape."""
    stack = [obj]
    while stack:  # no recursion: the event may nest as deep as the parser went
        item = stack.pop()
        if type(item) is str:
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    raise _Bad(Reason.NOT_JSON, "event holds a lone surrogate escape (not Unicode text)") from None
        elif type(item) is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)


def decode_message_reference(value: bytes | None, now_ms: int) -> tuple[list[Event], list[Invalid]]:
    """The reference decoder (orjson + ``validate``): reasons and original bytes come from here."""
    if value is None or len(value) == 0:
        return [], [Invalid(Reason.NOT_JSON, "empty message value", value or b"", None)]
    if len(value) > MAX_BATCH_BYTES:
        return [], [Invalid(Reason.BATCH_TOO_LARGE, "message larger than 1 MiB", value, None)]
    try:
        doc, exact = _parse(value)
    except ValueError:
        return [], [Invalid(Reason.NOT_JSON, "message value is not UTF-8 JSON", value, None)]
    check = validate if exact else _validate_unicode
    if type(doc) is dict:
        if len(value) > MAX_EVENT_BYTES:
            return [], [Invalid(Reason.EVENT_TOO_LARGE, "event larger than 64 KiB", value, None)]
        try:
            return [check(doc, now_ms)], []
        except _Bad as bad:
            return [], [Invalid(bad.reason, bad.message, value, None)]
    if type(doc) is not list:
        return [], [Invalid(Reason.NOT_OBJECT, "message must be an event object or an array", value, None)]
    if not doc:
        return [], [Invalid(Reason.EMPTY_BATCH, "a batch must hold 1..1000 events", value, None)]
    if len(doc) > MAX_BATCH_EVENTS:
        return [], [Invalid(Reason.BATCH_TOO_LONG, "a batch must hold 1..1000 events", value, None)]
    events: list[Event] = []
    invalid: list[Invalid] = []
    slices: list[bytes] | None = None
    for index, obj in enumerate(doc):
        try:
            events.append(check(obj, now_ms))
            continue
        except _Bad as bad:
            reason, message = bad.reason, bad.message
        if slices is None:
            slices = _event_slices(value)
        original = slices[index] if index < len(slices) else orjson.dumps(obj)
        invalid.append(Invalid(reason, message, original, index))
    if len(value) > MAX_EVENT_BYTES:
        # only pay for the per-event size check when the batch could hold an oversize event
        if slices is None:
            slices = _event_slices(value)
        keep: list[Event] = []
        by_index = [i for i in range(len(doc)) if i not in {x.index for x in invalid}]
        for event, index in zip(events, by_index, strict=True):
            if len(slices[index]) > MAX_EVENT_BYTES:
                invalid.append(Invalid(Reason.EVENT_TOO_LARGE, "event larger than 64 KiB", slices[index], index))
            else:
                keep.append(event)
        events = keep
    return events, invalid


def category_flags(etype: str) -> tuple[bool, bool, bool, bool, bool, bool]:
    """(login, engagement, payment, content_post, social, complaint) for an event type."""
    return (
        etype == "login",
        etype not in ENGAGEMENT_EXCLUDED,
        etype == "payment",
        etype == "content_post",
        etype in SOCIAL_TYPES,
        etype == "complaint",
    )
