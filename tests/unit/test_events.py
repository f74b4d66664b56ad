"""Decoding and validation of tracked events (SPEC section 1), without I/O."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import SCHEMA_DIR
from schemas.events import MAX_EVENT_BYTES, Reason, decode_message, parse_ts

NOW = 1_767_225_600_000  # 2026-01-01
GOOD = {"event_id": "e1", "user_id": "u1", "type": "login", "ts": NOW - 1000}


def one(doc: object) -> tuple[list, list]:
    return decode_message(orjson.dumps(doc), NOW)


def reason(doc: object) -> str:
    events, invalid = one(doc)
    assert not events and len(invalid) == 1
    return invalid[0].reason


def test_valid_event_with_defaults() -> None:
    (event,), invalid = one(GOOD)
    assert not invalid
    assert (event.app_id, event.device_id, event.amount) == ("default", None, 0.0)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"user_id": None}, Reason.MISSING_FIELD),
        ({"user_id": 5}, Reason.BAD_TYPE),
        ({"user_id": ""}, Reason.BAD_LENGTH),
        ({"event_id": "x" * 129}, Reason.BAD_LENGTH),
        ({"type": "t" * 65}, Reason.BAD_LENGTH),
        ({"ts": 1.5}, Reason.BAD_TYPE),
        ({"ts": True}, Reason.BAD_TYPE),
        ({"ts": "2026-01-01T00:00:00"}, Reason.BAD_TS),
        ({"ts": "yesterday"}, Reason.BAD_TS),
        ({"ts": 946_684_799_999}, Reason.TS_OUT_OF_RANGE),
        ({"ts": NOW + 86_400_001}, Reason.TS_OUT_OF_RANGE),
        ({"type": "payment"}, Reason.MISSING_AMOUNT),
        ({"type": "payment", "amount": -0.01}, Reason.BAD_AMOUNT),
        ({"type": "payment", "amount": "5"}, Reason.BAD_AMOUNT),
        ({"app_id": "a" * 65}, Reason.BAD_LENGTH),
        ({"device_id": 3}, Reason.BAD_TYPE),
        ({"props": [1]}, Reason.BAD_TYPE),
    ],
)
def test_invalid_event_reasons(patch: dict, expected: Reason) -> None:
    doc = {k: v for k, v in (GOOD | patch).items() if v is not None}
    assert reason(doc) == expected


def test_edges_accepted() -> None:
    assert one(GOOD | {"ts": 946_684_800_000})[0]
    assert one(GOOD | {"ts": NOW + 86_400_000})[0]
    assert one(GOOD | {"type": "payment", "amount": 0})[0]
    assert one(GOOD | {"type": "brand_new_type"})[0]


def test_rfc3339_with_offset() -> None:
    assert parse_ts("2026-01-01T01:00:00+01:00") == NOW
    assert parse_ts("2026-01-01T00:00:00.123Z") == NOW + 123
    assert parse_ts("2026-01-01t00:00:00.1239z") == NOW + 123  # lower-case t and z; sub-ms truncated
    assert parse_ts("2025-12-31T23:59:60Z") == NOW  # a leap second: the ms after 23:59:59.999
    assert parse_ts("2026-01-01T05:29:60.5+05:30") == NOW + 500
    assert parse_ts(float(NOW)) == NOW  # a JSON number with no fraction is an integer (JSON Schema)


@pytest.mark.parametrize("text", [
    "2026-01-01T00:00:00+0000", "2026-01-01T00:00:00+00", "2026-01-01T00:00:00+01:00:30", "2026-01-01T00Z",
    "20260101T000000Z", "2026-W01-4T00:00:00Z", "2026-01-01T00:00:00,5Z", "2026-01-01T00:00:00.Z",
    "2026-01-01 00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T12:00:60Z", "2026-02-30T00:00:00Z",
    "2026-01-01T00:00:00+24:00",
])
def test_not_rfc3339_rejected(text: str) -> None:
    """ISO 8601 forms that ``datetime.fromisoformat`` takes but RFC 3339 does not."""
    assert one(GOOD | {"ts": text})[1][0].reason == Reason.BAD_TS


def test_batch_only_invalid_events_dead_lettered_with_exact_bytes() -> None:
    raw = b'[{"event_id":"a","user_id":"u","type":"view","ts":%d}, {"event_id":"b" , "user_id":"u","type":"x"}]' % NOW
    events, invalid = decode_message(raw, NOW)
    assert [e.event_id for e in events] == ["a"]
    assert invalid[0].index == 1 and invalid[0].reason == Reason.MISSING_FIELD
    assert invalid[0].original == b'{"event_id":"b" , "user_id":"u","type":"x"}'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", Reason.NOT_JSON),
        (b"\xff\xfe", Reason.NOT_JSON),
        (b'{"a": NaN}', Reason.NOT_JSON),
        (b"[]", Reason.EMPTY_BATCH),
        (b"42", Reason.NOT_OBJECT),
        (orjson.dumps([GOOD] * 1001), Reason.BATCH_TOO_LONG),
        (b"[" + b" " * (1 << 20) + b"]", Reason.BATCH_TOO_LARGE),
        (orjson.dumps(GOOD | {"props": {"x": "y" * MAX_EVENT_BYTES}}), Reason.EVENT_TOO_LARGE),
    ],
)
def test_whole_message_dead_lettered(raw: bytes, expected: Reason) -> None:
    events, invalid = decode_message(raw, NOW)
    assert not events and [i.reason for i in invalid] == [expected] and invalid[0].index is None
    assert invalid[0].original == raw


def test_oversize_event_inside_batch() -> None:
    big = GOOD | {"event_id": "big", "props": {"x": "y" * MAX_EVENT_BYTES}}
    events, invalid = one([GOOD, big])
    assert [e.event_id for e in events] == ["e1"]
    assert [(i.index, i.reason) for i in invalid] == [(1, Reason.EVENT_TOO_LARGE)]


# ---- the JSON Schema file and the validator agree --------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**62) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=5,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.text(min_size=0, max_size=3) | json_values,
        "user_id": st.text(min_size=0, max_size=3) | json_values,
        "type": st.sampled_from(["login", "payment", "view", ""]) | json_values,
        "ts": st.integers(946_684_000_000, NOW) | st.sampled_from(["2026-01-01T00:00:00Z", "nope"]) | json_values,
        "amount": st.floats(-1, 1e3, allow_nan=False) | json_values,
        "app_id": st.text(min_size=0, max_size=3) | json_values,
        "props": st.dictionaries(st.text(max_size=3), st.integers(-1000, 1000), max_size=2) | json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(events)
def test_json_schema_agrees_with_validator(doc: dict) -> None:
    import jsonschema

    schema = json.loads((SCHEMA_DIR / "event.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    schema_ok = validator.is_valid(doc)
    ours, _ = one(doc)
    if isinstance(doc.get("ts"), int | float) and doc["ts"] > NOW + 86_400_000:
        return  # the wall-clock bound is the worker's alone
    assert bool(ours) == schema_ok, (doc, list(validator.iter_errors(doc))[:1])
