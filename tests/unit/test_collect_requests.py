"""The collector's pure parts (streams/collect/bodies.py, convert.py) and its settings: bounded gzip, the
shapes the SDKs send, keys, per-user arrays within SPEC 1's limits, dead letters with the original bytes."""

from __future__ import annotations

import base64
import gzip
import json
import tracemalloc
import zlib
from pathlib import Path

import jsonschema
import orjson
import pytest

from schemas.events import MAX_BATCH_EVENTS, decode_message_reference
from schemas.formats import default_mapping
from streams.collect.bodies import (
    MAX_BODY_BYTES,
    BadRequest,
    basic_user,
    decompress,
    form_body,
    parse_json,
    posthog_envelope,
    posthog_event_key,
    segment_envelope,
)
from streams.collect.convert import MAX_RECORD_BYTES, Target, convert, user_arrays
from streams.config.settings import ConfigError, load_settings

NOW = 1_796_000_000_000  # 2026-12
TARGET = Target("ev", "dlq", "collect:/v1/batch")


def status(fn, *args):  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest) as caught:
        fn(*args)
    return caught.value.status, caught.value.code


def test_decompress_bounds_the_output_not_only_the_input() -> None:
    data = b'{"batch": []}'
    assert decompress(data, None) == decompress(gzip.compress(data), "gzip") == decompress(zlib.compress(data),
                                                                                            "deflate") == data
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip") == b"abcd"  # two members
    exact = b"x" * MAX_BODY_BYTES
    assert decompress(gzip.compress(exact), "gzip") == exact
    bomb = gzip.compress(b"\0" * (512 << 20), 9)  # 512 MiB in ~500 KiB
    tracemalloc.start()
    try:
        assert status(decompress, bomb, "gzip") == (413, "body_too_large")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_BODY_BYTES
    assert status(decompress, b"x" * (MAX_BODY_BYTES + 1), None) == (413, "body_too_large")
    assert status(decompress, gzip.compress(b"x" * 1000)[:-12], "gzip") == (400, "bad_encoding")
    assert status(decompress, b"not gzip", "gzip") == (400, "bad_encoding")
    assert status(decompress, data, "br") == (415, "unsupported_encoding")


def test_bodies_as_the_sdks_send_them() -> None:
    body = orjson.dumps({"batch": [{"type": "track"}, {"type": "page"}], "sentAt": "s", "writeKey": "wk"})
    env = segment_envelope(parse_json(body), body, None)
    assert env.events == [{"type": "track"}, {"type": "page"}] and env.key == "wk" and env.sent_at == "s"
    assert env.original(1) == b'{"type":"page"}'
    single = segment_envelope({"event": "x"}, b'{"event": "x"}', "track")
    assert single.events == [{"event": "x", "type": "track"}] and single.original(0) == b'{"event": "x"}'
    assert status(segment_envelope, [1], b"[1]", None) == (400, "not_object")
    assert status(segment_envelope, {"batch": 3}, b"", None) == (400, "no_batch")
    ph = posthog_envelope({"api_key": "k", "batch": [{"event": "e"}], "sent_at": "t"}, b"")
    assert ph.key == "k" and ph.sent_at == "t" and ph.events == [{"event": "e"}]
    assert posthog_envelope([{"event": "e"}], b'[{"event":"e"}]').events == [{"event": "e"}]
    assert posthog_envelope({"token": "t", "event": "e"}, b"").key == "t"
    assert posthog_event_key({"properties": {"token": "p"}}) == "p" and posthog_event_key(3) is None
    assert form_body(b"data=" + base64.b64encode(b'{"a":1}')) == b'{"a":1}'
    assert status(form_body, b"nothing=1") == (400, "bad_form")
    assert status(parse_json, b"{") == (400, "not_json")
    assert basic_user("Basic " + base64.b64encode(b"wk:").decode()) == "wk"
    assert basic_user("Bearer x") is None and basic_user("Basic !!!") is None and basic_user(None) is None


def segment_event(i: int, user: str = "u1", **extra: object) -> dict[str, object]:
    return {"type": "track", "event": "Order Completed", "userId": user, "messageId": f"m{i}",
            "timestamp": "2026-11-01T10:00:00Z", "properties": {"revenue": 2.5}, **extra}


def test_convert_writes_per_user_arrays_and_dead_letters_with_their_original_bytes() -> None:
    events = [segment_event(0), segment_event(1, "u2"), {"type": "identify", "userId": "u1"},
              segment_event(2, properties={"revenue": -1}), segment_event(3), {"type": "track", "event": "x"}]
    body = orjson.dumps({"batch": events})
    env = segment_envelope(parse_json(body), body, None)
    out = convert(env, "segment", default_mapping("segment"), TARGET, NOW, app_ids=["shop"] * len(events), apps={})
    assert out.counts() == {"accepted": 3, "dead_lettered": 2, "not_activity": 1, "records": 4}
    assert out.not_activity == {"identify": 1} and out.dead_lettered == {"bad_amount": 1, "missing_field": 1}
    by_key = {key: value for topic, key, value in out.records if topic == "ev"}
    assert set(by_key) == {b"u1", b"u2"}
    good, bad = decode_message_reference(by_key[b"u1"], NOW)
    assert not bad and [(e.event_id, e.app_id, e.type, e.amount) for e in good] == [
        ("m0", "shop", "payment", 2.5), ("m3", "shop", "payment", 2.5)]
    dead = [orjson.loads(value) for topic, _, value in out.records if topic == "dlq"]
    assert [d["source"]["index"] for d in dead] == [3, 5]
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "dlq.schema.json").read_text())
    for d in dead:
        jsonschema.validate(d, schema)
        assert base64.b64decode(d["original_b64"]) == orjson.dumps(events[d["source"]["index"]])
        assert d["source"]["topic"] == "collect:/v1/batch" and d["source"]["format"] == "segment"


def test_user_arrays_stay_within_section_1s_limits() -> None:
    small = [orjson.dumps({"i": i}) for i in range(2500)]
    records = user_arrays("ev", {"u": small})
    assert [len(orjson.loads(v)) for _, _, v in records] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 500]
    big = [b'"' + b"x" * 60_000 + b'"'] * 40
    records = user_arrays("ev", {"u": big})
    assert all(len(v) <= MAX_RECORD_BYTES for _, _, v in records)
    assert sum(len(orjson.loads(v)) for _, _, v in records) == 40


def test_future_timestamps_are_dead_lettered_by_the_clock() -> None:
    event = segment_event(0, timestamp="2999-01-01T00:00:00Z")
    body = orjson.dumps(event)
    env = segment_envelope(event, body, "track")
    out = convert(env, "segment", default_mapping("segment"), TARGET, NOW, app_ids=["a"], apps={})
    assert out.dead_lettered == {"ts_out_of_range": 1} and out.accepted == 0


def test_collect_settings_from_the_file_and_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "v.toml"
    config.write_text('[collect]\napps = {"wk_secret_123" = "shop"}\n')
    settings = load_settings(env={"VITALS_CONFIG": str(config), "VITALS_COLLECT_PORT": "9000",
                                  "VITALS_COLLECT_HOST": "0.0.0.0"})
    assert (settings.collect.port, settings.collect.host, settings.collect.apps) == (9000, "0.0.0.0",
                                                                                    {"wk_secret_123": "shop"})
    assert "wk_secret_123" not in repr(settings.collect)
    assert load_settings(env={}).collect.port == 8090 and load_settings(env={}).collect.host == "127.0.0.1"
    with pytest.raises(ConfigError, match="VITALS_COLLECT_PORT"):
        load_settings(env={"VITALS_COLLECT_PORT": "http"})
    config.write_text('[collect]\napps = {"wk:secret" = "shop"}\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"VITALS_CONFIG": str(config)})
    assert "wk:secret" not in str(caught.value) and "shop" in str(caught.value)
    config.write_text('[collect]\napps = {"wk" = ""}\n')
    with pytest.raises(ConfigError, match=r"collect\.apps"):
        load_settings(env={"VITALS_CONFIG": str(config)})
    config.write_text('[collect]\nport = 70000\n')
    with pytest.raises(ConfigError, match=r"collect\.port"):
        load_settings(env={"VITALS_CONFIG": str(config)})
