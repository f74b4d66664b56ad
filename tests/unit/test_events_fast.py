"""The fast decoder (msgspec, typed) and the reference decoder (orjson + validate) agree on
every message: the same events with the same values and types, the same dead letters."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Event, Invalid, _decode_fast, decode_message, decode_message_reference
from tests.garbage import GOOD_TEMPLATE, NOW_MS, garbage_values, json_values
from tests.garbage import events as event_docs

DIFF = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _event(e: Event) -> str:
    # repr tells 1 from 1.0 and keeps the order of props
    return repr((e.event_id, e.user_id, e.type, e.ts, e.app_id, e.device_id, e.amount, e.props))


def _invalid(i: Invalid) -> tuple[object, ...]:
    return (i.reason, i.message, i.original, i.index)


def assert_same(value: bytes) -> None:
    events, invalid = decode_message(value, NOW_MS)
    ref_events, ref_invalid = decode_message_reference(value, NOW_MS)
    assert [_event(e) for e in events] == [_event(e) for e in ref_events]
    assert [_invalid(i) for i in invalid] == [_invalid(i) for i in ref_invalid]


@DIFF
@given(garbage_values(huge=False))
def test_garbage(value: bytes) -> None:
    assert_same(value)


@DIFF
@given(st.lists(event_docs(), min_size=1, max_size=20), st.booleans())
def test_events_and_batches(docs: list[dict[str, object]], batch: bool) -> None:
    assert_same(orjson.dumps(docs if batch else docs[0]))


@DIFF
@given(json_values, st.sampled_from(["event_id", "user_id", "type", "ts", "app_id", "device_id", "amount", "props"]))
def test_any_value_in_any_field(value: object, field: str) -> None:
    assert_same(orjson.dumps(GOOD_TEMPLATE | {field: value}))
    assert_same(orjson.dumps(GOOD_TEMPLATE | {"type": "payment", "amount": 1, field: value}))


@DIFF
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?", fullmatch=True))
def test_number_literals(literal: str) -> None:
    """Float and integer parsing agree (amounts, props), including huge integers."""
    good = orjson.dumps(GOOD_TEMPLATE | {"type": "payment"})[:-1]
    assert_same(good + b',"amount":' + literal.encode() + b"}")
    assert_same(good + b',"amount":1,"props":{"n":' + literal.encode() + b',"l":[' + literal.encode() + b"]}}")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"device_id":null}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":null}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":0}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":-0.0}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"zz":"\xff"}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"zz":1e400}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"\xff":1}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"a":18446744073709551616}}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"a":[-9223372036854775809]}}',
        b'{"event_id":"a","event_id":"b","user_id":"u","type":"view","ts":1767225500000}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000.0}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":"2026-01-01T00:00:00Z"}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":18446744073709551616}',
        b'[{"event_id":"e","user_id":"u","type":"view","ts":1767225500000}]',
        b"[" + b",".join([orjson.dumps(GOOD_TEMPLATE | {"props": {"x": "y" * 40_000}})] * 3) + b"]",
        b"[" + b",".join([orjson.dumps(GOOD_TEMPLATE | {"props": {"x": "y" * 70_000}})] * 2) + b"]",
    ],
)
def test_edge_cases(raw: bytes) -> None:
    assert_same(raw)


def test_fast_path_takes_ordinary_messages() -> None:
    single = orjson.dumps(GOOD_TEMPLATE | {"app_id": "a", "device_id": "d", "props": {"k": [1, 2.5, "x"]}})
    assert _decode_fast(single, NOW_MS) is not None
    assert _decode_fast(orjson.dumps([GOOD_TEMPLATE] * 1000), NOW_MS) is not None
    assert _decode_fast(orjson.dumps([GOOD_TEMPLATE | {"type": "payment", "amount": 2}] * 500), NOW_MS) is not None
