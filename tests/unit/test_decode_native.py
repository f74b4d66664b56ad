"""The C decoder (schemas/_decode.c): whatever it accepts, it decodes exactly as the reference
decoder does; what it cannot vouch for it leaves to the other paths (None); and it does take the
messages producers usually write (else the fast path would never run)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import events as E
from schemas.events import decode_message, decode_message_reference
from streams.engine import extensions
from tests.garbage import GOOD_TEMPLATE, NOW_MS, garbage_values
from tests.garbage import events as event_docs

DIFF = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def native(value: bytes) -> list[E.Event] | None:
    decode = extensions.decoder()  # RuntimeError where the extensions are not built
    assert decode is not None
    return decode(value, NOW_MS)


def _event(e: E.Event) -> str:
    return repr((e.event_id, e.user_id, e.type, e.ts, e.app_id, e.device_id, e.amount, e.props))


def assert_agrees(value: bytes) -> bool:
    """C's events equal the reference's when C decides; True when it did."""
    events = native(value)
    if events is None:
        return False
    ref_events, ref_invalid = decode_message_reference(value, NOW_MS)
    assert ref_invalid == []
    assert [_event(e) for e in events] == [_event(e) for e in ref_events]
    return True


def test_built() -> None:
    assert extensions.BUILT, "pip install builds schemas/_decode.c"


@DIFF
@given(garbage_values(huge=False))
def test_garbage(value: bytes) -> None:
    assert_agrees(value)


def _spaced(docs: list[dict[str, object]], space: str) -> bytes:
    """JSON with ``space`` around every token (all four JSON whitespace characters occur)."""
    text = orjson.dumps(docs).decode()
    out, in_str, escaped = [], False, False
    for ch in text:
        if in_str:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        out.append(space + ch + space if ch in "[]{}:," else ch)
    return (space + "".join(out) + space).encode()


@DIFF
@given(st.lists(event_docs(), min_size=1, max_size=20), st.booleans(), st.sampled_from(["", " ", "\n\t", " \r\n "]))
def test_events_and_batches(docs: list[dict[str, object]], batch: bool, space: str) -> None:
    assert_agrees(_spaced(docs if batch else docs[0], space))  # type: ignore[arg-type]


def _typical(i: int) -> dict[str, object]:
    event: dict[str, object] = GOOD_TEMPLATE | {"event_id": f"e{i:010d}", "user_id": "u0001234", "app_id": "shop",
                                                 "device_id": "d-u0001234", "type": ["view", "login", "like"][i % 3]}
    if i % 7 == 0:
        event |= {"type": "payment", "amount": round(0.5 + i * 0.37, 2)}
    if i % 11 == 0:
        event["props"] = {"screen": "home", "v": i, "l": [1, 2.5, "x", None, True], "n": {"é": -(2**63)}}
    return event


def test_takes_ordinary_messages() -> None:
    batch = [_typical(i) for i in range(100)]
    for value in (orjson.dumps(batch), orjson.dumps(batch[3]), orjson.dumps(batch, option=orjson.OPT_INDENT_2),
                  orjson.dumps([GOOD_TEMPLATE] * 1000), orjson.dumps(GOOD_TEMPLATE | {"user_id": "é" * 128})):
        assert assert_agrees(value), value[:200]


def test_repeated_strings_are_shared() -> None:
    """A message's user, app, device and types are made once (the saving over msgspec)."""
    events = native(orjson.dumps([_typical(i) for i in range(6)]))
    assert events is not None
    assert len({id(e.user_id) for e in events}) == 1
    assert len({id(e.device_id) for e in events}) == 1
    assert len({id(e.app_id) for e in events}) == 1
    assert len({id(e.event_id) for e in events}) == 6
    assert {e.type for e in events} == {"payment", "view", "login", "like"}


GOOD = orjson.dumps(GOOD_TEMPLATE)[:-1]  # an event without its closing brace


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b"\xef\xbb\xbf" + GOOD + b"}",  # a byte order mark
        GOOD + b"}x",
        GOOD + b"}}",
        b"[" + GOOD + b"}",
        b"[" + GOOD + b"},]",
        b"[" + b",".join([GOOD + b"}"] * 1001) + b"]",
        b"[" + GOOD + b',"props":{"x":"' + b"y" * 70_000 + b'"}},' + GOOD + b"}]",
        b'{"event_id":"e","user_id":"u\\u0041","type":"view","ts":1767225500000}',
        b'{"event\\u005fid":"e","user_id":"u","type":"view","ts":1767225500000}',
        b'{"event_id":"e","event_id":"e","user_id":"u","type":"view","ts":1767225500000}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"other":1}',
        b'{"event_id":"e","user_id":"u","type":"view"}',
        b'{"event_id":"","user_id":"u","type":"view","ts":1767225500000}',
        b'{"event_id":"e","user_id":"u\xff","type":"view","ts":1767225500000}',
        b'{"event_id":"e","user_id":"u\xed\xa0\x80","type":"view","ts":1767225500000}',  # a UTF-8 surrogate
        b'{"event_id":"e","user_id":"u\x01","type":"view","ts":1767225500000}',
        b'{"event_id":"e","user_id":"' + "é".encode() * 129 + b'","type":"view","ts":1767225500000}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":01767225500000}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000.0}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000e0}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":-1767225500000}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":"2026-01-01T00:00:00Z"}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1000}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":9767225500000}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000000000000}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":0}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":-0.0}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":-1}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":01}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":1.}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":1e}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":1e10}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":"1"}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"device_id":null}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"app_id":7}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":null}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":[1]}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"a":1,}}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"a":"}"}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"a":18446744073709551616}}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"a":[-9223372036854775809]}}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"x":' + b"[" * 300 + b"]" * 300
        + b"}}",
    ],
)
def test_leaves_to_the_reference(raw: bytes) -> None:
    """Messages C does not take (None); decode_message still gives the reference's answer."""
    assert native(raw) is None
    assert decode_message(raw, NOW_MS, extensions.decoder()) == decode_message(raw, NOW_MS)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":1e9}',
        b'{"event_id":"e","user_id":"u","type":"payment","ts":1767225500000,"amount":0.1E-1}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"amount":0}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"a":"}\\"{","b":[{}]}}',
        b'{"event_id":"e","user_id":"u","type":"view","ts":1767225500000,"props":{"a":18446744073709551615}}',
        b'{"event_id":"' + b"e" * 128 + b'","user_id":"u","type":"' + b"t" * 64 + b'","ts":1767225500000}',
    ],
)
def test_takes_edge_values(raw: bytes) -> None:
    assert assert_agrees(raw)
