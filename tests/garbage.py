"""Hypothesis strategies for garbage message values (issue 6, part 5): random bytes, deep nesting,
huge strings, wrong types, non-UTF-8, NaN/Infinity, timestamps far in the past and future,
mixed with valid events. Shared by the decoder fuzz tests and the worker fuzz test.

Includes what once crashed the worker: ``props`` nested deeper than orjson encodes (255 levels;
accepted, then re-serialised for reroutes) and invalid messages of several MB (their DLQ record
must stay under the message size limit). Huge values stop at 3.8 MB."""

from __future__ import annotations

import orjson
from hypothesis import strategies as st

NOW_MS = 1_767_225_600_000  # 2026-01-01, the unit tests' wall clock
DAY_MS = 86_400_000
GOOD_TEMPLATE: dict[str, object] = {"event_id": "g1", "user_id": "gu1", "type": "view", "ts": NOW_MS - 1000}


def deep(levels: int) -> object:
    """``levels`` nested lists (built without recursion)."""
    value: object = []
    for _ in range(max(0, levels - 1)):
        value = [value]
    return value


def deep_text(levels: int, inner: bytes = b"") -> bytes:
    return b"[" * levels + inner + b"]" * levels


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def timestamps(now_ms: int) -> st.SearchStrategy[object]:
    """Event times: valid ones and far past/future, ill-typed or unparsable ones."""
    return st.one_of(
        st.integers(now_ms - 20 * DAY_MS, now_ms - 1000),
        st.sampled_from([0, -1, 946_684_799_999, now_ms + 30 * DAY_MS, 2**63 - 1, -(2**63), 253_402_300_800_000]),
        st.sampled_from(["1970-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00-12:00",
                         "2026-01-01T00:00:00", "2026-02-30T00:00:00Z", "yesterday", "", "T"]),
        st.floats() | st.booleans() | st.lists(st.integers(-(2**63), 2**64 - 1), max_size=2),
    )


# NaN, Infinity and out-of-range literals are not JSON; producers still send them
BAD_LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"nan", b"undefined", b"0x10", b"01"]


@st.composite
def events(draw: st.DrawFn, now_ms: int = NOW_MS, users: tuple[str, ...] = ("gu1", "gu2", "gu3")) -> dict[str, object]:
    """An event object, valid or broken in one or more fields."""
    doc: dict[str, object] = {
        "event_id": f"g{draw(st.integers(0, 10**9))}",
        "user_id": draw(st.sampled_from(users)),
        "type": draw(st.sampled_from(["view", "login", "payment", "like", "content_post", "complaint", "weird"])),
        "ts": draw(st.integers(now_ms - 10 * DAY_MS, now_ms - 1000)),
    }
    if doc["type"] == "payment":
        doc["amount"] = draw(st.integers(0, 500))
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(["event_id", "user_id", "type", "ts", "app_id", "device_id", "amount", "props",
                                      "drop", "extra"]))
        if field == "drop":
            doc.pop(draw(st.sampled_from(sorted(doc))), None)
        elif field == "ts":
            doc["ts"] = draw(timestamps(now_ms))
        elif field == "extra":
            doc[draw(st.text(max_size=8))] = draw(json_values)
        else:
            doc[field] = draw(json_values | st.text(min_size=60, max_size=300) | st.just(""))
    return doc


@st.composite
def garbage_values(draw: st.DrawFn, now_ms: int = NOW_MS, users: tuple[str, ...] = ("gu1", "gu2", "gu3"),
                   huge: bool = True) -> bytes:
    """One Kafka message value of any kind."""
    kind = draw(st.sampled_from(["bytes", "json", "event", "batch", "literal", "non_utf8", "deep", "huge",
                                 "truncated", "mixed_batch"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return orjson.dumps(draw(json_values))
    if kind == "event":
        return orjson.dumps(draw(events(now_ms, users)))
    if kind in ("batch", "mixed_batch"):
        items: list[object] = draw(st.lists(events(now_ms, users), min_size=0, max_size=12))
        if kind == "mixed_batch":
            items += draw(st.lists(json_values, max_size=3))
        return orjson.dumps(items)
    text = orjson.dumps(draw(events(now_ms, users)))
    if kind == "literal":  # replace the ts value (or add amount) with a non-JSON literal
        literal = draw(st.sampled_from(BAD_LITERALS))
        return text[:-1] + b',"amount":' + literal + b"}"
    if kind == "non_utf8":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + \
            text[at:]
    if kind == "deep":
        levels = draw(st.sampled_from([100, 255, 256, 1000, 1023, 1024, 1025, 3000]))
        where = draw(st.sampled_from(["whole", "field", "item", "props"]))
        if where == "whole":
            return deep_text(levels)
        if where == "props":  # a valid event when the whole stays within orjson's 1024 levels
            return text[:-1] + b',"props":{"x":' + deep_text(levels - 2) + b"}}"
        if where == "field":
            return text[:-1] + b',"nested":' + deep_text(levels - 1) + b"}"
        return b"[" + text + b"," + deep_text(levels - 1) + b"]"
    if kind == "huge":
        size = draw(st.sampled_from([70_000, 200_000, 1_100_000, 3_800_000] if huge else [70_000, 200_000]))
        field = draw(st.sampled_from(["user_id", "props", "blob"]))
        filler = "x" * size
        doc = orjson.loads(text)
        doc[field] = {"s": filler} if field == "props" else filler
        return orjson.dumps(draw(st.sampled_from([doc, [doc]])))
    # truncated: a valid-looking message cut short
    return text[: draw(st.integers(0, max(0, len(text) - 1)))]
