"""Garbage in (issue 6, part 5): fuzz the decoder with hypothesis. Whatever the bytes, every
record is either accepted as a valid event or dead-lettered with a reason code, the original
bytes and its index; no exception escapes."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_FUTURE_MS,
    MAX_PAYMENT_AMOUNT,
    MIN_TS_MS,
    Event,
    Reason,
    _parse,
    decode_message,
)
from streams.engine.store import event_json
from tests.garbage import GOOD_TEMPLATE, NOW_MS, deep_text, garbage_values

WHOLE = {Reason.NOT_JSON, Reason.NOT_OBJECT, Reason.EMPTY_BATCH, Reason.BATCH_TOO_LONG, Reason.BATCH_TOO_LARGE}
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_event(e: Event) -> None:
    """An accepted event satisfies SPEC section 1 and can be keyed and partitioned."""
    assert type(e.event_id) is str and 0 < len(e.event_id) <= 128
    assert type(e.user_id) is str and 0 < len(e.user_id) <= 128
    assert type(e.type) is str and 0 < len(e.type) <= 64
    assert type(e.app_id) is str and 0 < len(e.app_id) <= 64
    assert e.device_id is None or (type(e.device_id) is str and 0 < len(e.device_id) <= 128)
    assert type(e.ts) is int and MIN_TS_MS <= e.ts <= NOW_MS + MAX_FUTURE_MS
    assert math.isfinite(e.amount) and 0 <= e.amount <= MAX_PAYMENT_AMOUNT
    assert e.type != "payment" or e.amount is not None
    assert e.props is None or type(e.props) is dict
    for text in (e.event_id, e.user_id, e.app_id, e.device_id or "x"):
        text.encode("utf-8")  # keys and partitioning encode them: no lone surrogates
    copy = event_json(e)  # what a reroute or a beyond_retention dead letter carries
    (again,), invalid = decode_message(copy, NOW_MS)
    assert not invalid and event_json(again) == copy


def check_accounting(value: bytes) -> tuple[list[Event], list]:
    """Decode without exceptions and account for every record of the message."""
    events, invalid = decode_message(value, NOW_MS)
    for e in events:
        check_event(e)
    for inv in invalid:
        assert isinstance(inv.reason, Reason) and inv.message
        assert isinstance(inv.original, bytes)
    whole = [i for i in invalid if i.index is None]
    if whole:  # the whole message is dead-lettered, with its exact bytes
        assert len(invalid) == 1 and not events and invalid[0].original == value
        return events, invalid
    doc = _parse(value)[0]  # orjson's reading, or the standard library's where orjson refuses
    items = doc if isinstance(doc, list) else [doc]
    if isinstance(doc, list):
        assert 1 <= len(doc) <= MAX_BATCH_EVENTS and len(value) <= MAX_BATCH_BYTES
        indexes = [i.index for i in invalid]
        assert len(set(indexes)) == len(indexes) and all(0 <= i < len(doc) for i in indexes)
        for inv in invalid:  # the exact original bytes of that element (compared as bytes: nesting may be deep)
            assert inv.original in value and type(_parse(inv.original)[0]) is type(doc[inv.index])
    assert len(events) + len(invalid) == len(items)
    return events, invalid


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(value: bytes) -> None:
    events, invalid = check_accounting(value)
    assert events or invalid


@FUZZ
@given(st.lists(garbage_values(), min_size=1, max_size=30))
def test_generated_garbage_messages(values: list[bytes]) -> None:
    for value in values:
        check_accounting(value)


@FUZZ
@given(st.lists(st.sampled_from([b"{", b"[", b'{"a":', b'"x",', b"1,"]), min_size=1, max_size=1100))
def test_unbalanced_and_truncated_nesting(parts: list[bytes]) -> None:
    (_, (inv,)) = decode_message(b"".join(parts), NOW_MS)
    assert inv.reason == Reason.NOT_JSON


@pytest.mark.parametrize("depth", [10, 254, 256, 600, 1000, 1023, 1024, 5000])
@pytest.mark.parametrize("shape", ["props", "field", "batch-item", "whole"])
def test_deep_nesting(depth: int, shape: str) -> None:
    good = orjson.dumps(GOOD_TEMPLATE)
    if shape == "props":  # a valid event whose props nest `depth` levels (message: depth + 2)
        value = b"[" + good[:-1] + b',"props":{"x":' + deep_text(depth - 3) + b"}}]"
    elif shape == "field":
        value = b"[" + good[:-1] + b',"user_id":' + deep_text(depth - 2) + b"}]"
    elif shape == "batch-item":
        value = b"[" + good + b"," + deep_text(depth - 1) + b"]"
    else:
        value = deep_text(depth)
    events, invalid = check_accounting(value)
    if depth > 1024:
        assert not events and [i.reason for i in invalid] == [Reason.NOT_JSON]
    elif shape == "props":
        assert len(events) == 1 and not invalid
    elif shape == "batch-item":
        assert len(events) == 1 and [(i.index, i.reason) for i in invalid] == [(1, Reason.NOT_OBJECT)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":NaN}', Reason.NOT_JSON),
        (b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":Infinity}', Reason.NOT_JSON),
        (b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":-Infinity}', Reason.NOT_JSON),
        # JSON that orjson refuses: read by the standard library, the event judged on its values
        (b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":1e400}', Reason.BAD_AMOUNT),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":1e400}', Reason.BAD_TYPE),
        (b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":1e308}', Reason.BAD_AMOUNT),
        # beyond 64 bits orjson reads a float; with no fraction it is still an integer (JSON Schema)
        (b'{"event_id":"e","user_id":"u","type":"view","ts":18446744073709551616}', Reason.TS_OUT_OF_RANGE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000.5}', Reason.BAD_TYPE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":-9223372036854775808}', Reason.TS_OUT_OF_RANGE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":9223372036854775807}', Reason.TS_OUT_OF_RANGE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"0001-01-01T00:00:00+14:00"}', Reason.TS_OUT_OF_RANGE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"9999-12-31T23:59:59-23:59"}', Reason.TS_OUT_OF_RANGE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"9999-12-31T23:59:59.999999+00:00"}',
         Reason.TS_OUT_OF_RANGE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"1999-12-31T23:59:59.999Z"}', Reason.TS_OUT_OF_RANGE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"2026-01-01T00:00:00+25:00"}', Reason.BAD_TS),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"2026-13-01T00:00:00Z"}', Reason.BAD_TS),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"T\\u0000"}', Reason.BAD_TS),
        (b'{"event_id":"\\ud800","user_id":"u","type":"view","ts":1767225500000}', Reason.NOT_JSON),
        (b'{"event_id":"e","user_id":"\xff\xfe","type":"view","ts":1767225500000}', Reason.NOT_JSON),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000}\x00', Reason.NOT_JSON),
        (b'\xef\xbb\xbf{"event_id":"e","user_id":"u","type":"view","ts":1767225500000}', Reason.NOT_JSON),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"device_id":""}', Reason.BAD_LENGTH),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"app_id":null}', Reason.BAD_TYPE),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":"x"}', Reason.BAD_TYPE),
        (b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":true}', Reason.BAD_AMOUNT),
        (b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":[1]}', Reason.BAD_AMOUNT),
        (b'{"event_id":["e"],"user_id":"u","type":"view","ts":1767225500000}', Reason.BAD_TYPE),
        (b'{"event_id":"e","user_id":{"id":"u"},"type":"view","ts":1767225500000}', Reason.BAD_TYPE),
        (b'{"event_id":"e","user_id":"u","type":7,"ts":1767225500000}', Reason.BAD_TYPE),
        (b'"just a string"', Reason.NOT_OBJECT),
        (b"null", Reason.NOT_OBJECT),
        (b"[null]", Reason.NOT_OBJECT),
    ],
)
def test_nan_infinity_extreme_numbers_timestamps_and_encodings(raw: bytes, expected: Reason) -> None:
    events, invalid = check_accounting(raw)
    assert not events and [i.reason for i in invalid] == [expected]


@pytest.mark.parametrize("size", [MAX_EVENT_BYTES - 200, MAX_EVENT_BYTES + 1, MAX_BATCH_BYTES - 100,
                                  4 * MAX_BATCH_BYTES])
def test_huge_strings(size: int) -> None:
    for field in ("user_id", "type", "props", "unknown"):
        value = {"x": "é" * (size // 2)} if field == "props" else "é" * (size // 2)
        single = orjson.dumps(GOOD_TEMPLATE | {field: value})
        check_accounting(single)
        batch = orjson.dumps([GOOD_TEMPLATE, GOOD_TEMPLATE | {field: value}, GOOD_TEMPLATE])
        events, _ = check_accounting(batch)
        if len(batch) <= MAX_BATCH_BYTES:
            assert len(events) >= 2


@FUZZ
@given(st.integers(-(2**63), 2**63 - 1))
def test_any_integer_timestamp(ts: int) -> None:
    events, invalid = check_accounting(orjson.dumps(GOOD_TEMPLATE | {"ts": ts}))
    assert bool(events) == (MIN_TS_MS <= ts <= NOW_MS + MAX_FUTURE_MS)
    if invalid:
        assert invalid[0].reason == Reason.TS_OUT_OF_RANGE


@FUZZ
@given(st.datetimes(timezones=st.timezones()))
def test_any_rfc3339_timestamp(moment) -> None:  # type: ignore[no-untyped-def]
    text = moment.isoformat()
    if moment.utcoffset() is None or "T" not in text:
        return
    events, invalid = check_accounting(orjson.dumps(GOOD_TEMPLATE | {"ts": text}))
    assert events or invalid[0].reason in (Reason.TS_OUT_OF_RANGE, Reason.BAD_TS)


@FUZZ
@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63 - 1))
def test_any_amount(amount: float) -> None:
    events, _ = check_accounting(orjson.dumps(GOOD_TEMPLATE | {"type": "payment", "amount": amount}))
    assert bool(events) == (0 <= amount <= MAX_PAYMENT_AMOUNT)


def test_accepted_events_can_be_rerouted() -> None:
    """Props deeper than orjson encodes (255 levels) are re-serialised for reroutes and
    beyond_retention dead letters, and the copy decodes to the same event."""
    good = orjson.dumps(GOOD_TEMPLATE)
    (event,), _ = decode_message(b"[" + good[:-1] + b',"props":{"x":' + deep_text(300) + b"}}]", NOW_MS)
    assert orjson.loads(event_json(event))["event_id"] == GOOD_TEMPLATE["event_id"]
    assert decode_message(event_json(event), NOW_MS) == ([event], [])
    # the deepest props the decoder accepts (orjson: 1024 levels in all)
    (deepest,), _ = decode_message(good[:-1] + b',"props":{"x":' + deep_text(1021) + b"}}", NOW_MS)
    (again,), invalid = decode_message(event_json(deepest), NOW_MS)
    assert not invalid and event_json(again) == event_json(deepest)  # (== on the props would recurse too deep)


def test_json_orjson_refuses_dead_letters_only_the_events_holding_it() -> None:
    """SPEC section 1: in a batch only the invalid events are dead-lettered; a message is
    dead-lettered whole only if it is not JSON at all. A number beyond the double range or a lone
    surrogate escape is JSON, which orjson refuses: the standard library reads the message."""
    good = b'{"event_id":"a","user_id":"u","type":"view","ts":1767225500000}'
    surrogate = b'{"event_id":"b","user_id":"u","type":"view","ts":1767225500000,"props":{"k":"\\udc00"}}'
    huge = b'{"event_id":"c","user_id":"u","type":"view","ts":1767225500000,"props":{"k":1e400}}'
    events, invalid = check_accounting(b"[" + good + b", " + surrogate + b"," + huge + b"]")
    assert [e.event_id for e in events] == ["a", "c"]
    assert [(i.index, i.reason, i.original) for i in invalid] == [(1, Reason.NOT_JSON, surrogate)]
