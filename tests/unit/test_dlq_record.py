"""The dead-letter record (schemas/dlq.schema.json) stays small enough for one Kafka message
whatever the input, and still identifies the whole original; and ``dumps_deep`` (the re-serialiser
of events whose props orjson cannot encode). Pure: no I/O besides reading the schema."""

from __future__ import annotations

import base64
import hashlib
import json

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import SCHEMA_DIR
from schemas.dead_letters import (
    KEY_MAX_BYTES,
    MAX_RECORD_BYTES,
    ORIGINAL_B64_MAX_BYTES,
    ORIGINAL_TEXT_MAX_BYTES,
    DeadLetter,
    dead_letter_key,
    dead_letter_record,
)
from schemas.events import Invalid, Reason
from streams.engine.deepjson import dumps_deep

SCHEMA = json.loads((SCHEMA_DIR / "dlq.schema.json").read_text())
BROKER_DEFAULT_MAX_MESSAGE = 1_048_588  # Kafka's default message.max.bytes


def record(original: bytes, key: bytes | None = b"u1", reason: Reason = Reason.NOT_JSON) -> dict:
    dl = DeadLetter(Invalid(reason, "message value is not UTF-8 JSON", original, None), "vitals.events", 3, 42, key)
    raw = dead_letter_record(dl, now_ms=1_700_000_000_000)
    assert len(raw) + len(dead_letter_key(key) or b"") <= MAX_RECORD_BYTES < BROKER_DEFAULT_MAX_MESSAGE
    doc = orjson.loads(raw)
    jsonschema.validate(doc, SCHEMA)
    assert doc["original_size"] == len(original)
    assert doc["original_sha256"] == hashlib.sha256(original).hexdigest()
    kept = base64.b64decode(doc["original_b64"])
    assert original.startswith(kept)
    assert doc["original_truncated"] == (kept != original)
    assert doc["source"] == doc["source"] | {"topic": "vitals.events", "partition": 3, "offset": 42, "index": None}
    return doc


def test_small_original_is_kept_whole_as_base64_and_text() -> None:
    original = b'{"event_id":"e","ts":"nope"}'
    doc = record(original)
    assert base64.b64decode(doc["original_b64"]) == original and doc["original_text"] == original.decode()
    assert doc["original_truncated"] is False
    assert doc["source"]["key_b64"] == base64.b64encode(b"u1").decode() and "key_truncated" not in doc["source"]


def test_non_utf8_original_has_no_text() -> None:
    doc = record(b"\xff\xfe{}")
    assert doc["original_text"] is None and base64.b64decode(doc["original_b64"]) == b"\xff\xfe{}"


@pytest.mark.parametrize("size", [ORIGINAL_TEXT_MAX_BYTES, ORIGINAL_TEXT_MAX_BYTES + 1])
def test_text_only_up_to_the_event_size_limit(size: int) -> None:
    original = b"x" * size
    doc = record(original)
    assert doc["original_text"] == (original.decode() if size <= ORIGINAL_TEXT_MAX_BYTES else None)
    assert base64.b64decode(doc["original_b64"]) == original and not doc["original_truncated"]


@pytest.mark.parametrize("size", [ORIGINAL_B64_MAX_BYTES, ORIGINAL_B64_MAX_BYTES + 1, 1_100_000, 3_800_000,
                                  16 << 20])
def test_large_original_is_cut_to_a_prefix_with_its_size_and_hash(size: int) -> None:
    original = (b'{"pad":"' + b"y" * size)[:size]
    doc = record(original, reason=Reason.BATCH_TOO_LARGE)
    assert doc["original_text"] is None
    assert doc["original_truncated"] is (size > ORIGINAL_B64_MAX_BYTES)
    assert base64.b64decode(doc["original_b64"]) == original[:ORIGINAL_B64_MAX_BYTES]


def test_worst_case_text_escaping_and_huge_key_stay_under_the_cap() -> None:
    # every byte a control character: 6 bytes each in original_text ("\u0001")
    doc = record(b"\x01" * ORIGINAL_TEXT_MAX_BYTES, key=b"k" * (3 << 20))
    assert doc["original_text"] is not None and not doc["original_truncated"]
    assert doc["source"]["key_truncated"] is True and doc["source"]["key_size"] == 3 << 20
    assert base64.b64decode(doc["source"]["key_b64"]) == b"k" * KEY_MAX_BYTES


def test_dead_letter_key() -> None:
    assert dead_letter_key(None) is None
    assert dead_letter_key(b"u1") == b"u1"
    assert dead_letter_key(b"k" * KEY_MAX_BYTES) == b"k" * KEY_MAX_BYTES
    assert dead_letter_key(b"k" * (KEY_MAX_BYTES + 1)) is None


def test_no_key() -> None:
    assert record(b"[]", key=None)["source"]["key_b64"] is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([0, ORIGINAL_TEXT_MAX_BYTES - 10, ORIGINAL_B64_MAX_BYTES - 10]),
       st.none() | st.binary(max_size=10))
def test_any_original(body: bytes, pad: int, key: bytes | None) -> None:
    record(b" " * pad + body, key=key)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_dumps_deep_is_orjson_where_orjson_works(value: object) -> None:
    assert dumps_deep(value) == orjson.dumps(value)


@pytest.mark.parametrize("depth", [255, 1023, 5000])
def test_dumps_deep_has_no_depth_limit(depth: int) -> None:
    value: object = {"a": [1, "x\n\u00e9", None, True, 2.5]}
    expected = orjson.dumps(value)
    for i in range(depth):
        value = [value] if i % 2 else {"k": value, "n": i}
        expected = b"[" + expected + b"]" if i % 2 else b'{"k":' + expected + b',"n":%d}' % i
    assert dumps_deep(value) == expected
    if depth < 1000:
        assert orjson.loads(expected) == value


def test_dumps_deep_huge_integer_and_bad_key() -> None:
    assert dumps_deep({"n": [2**70]}) == b'{"n":[1180591620717411303424]}'
    with pytest.raises(TypeError):
        dumps_deep({1: "x"})
