"""Records of the internal topics that vitals did not write (issue 23, part 7): a device-observation
or reroute record that does not decode becomes a dead letter (``internal_undecodable``, with its
source position and original bytes, in the DLQ record format), counted in the metrics, instead of
an exception that stopped the worker at every restart. Pure: no Kafka."""

from __future__ import annotations

import base64
import contextlib
import json

import jsonschema
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas import SCHEMA_DIR
from schemas.dead_letters import dead_letter_doc
from schemas.events import Reason
from streams.engine.devices import (
    BadObservations,
    DeviceObservations,
    decode_observations,
    decoded_observations,
    obs_encoder,
)
from streams.engine.partition import Outputs
from streams.engine.partitioner import PartitionCache
from streams.engine.routing import route
from streams.ops.metrics import AppLabels, Metrics
from tests.garbage import garbage_values
from tests.records import Rec

SCHEMA = json.loads((SCHEMA_DIR / "dlq.schema.json").read_text())
DEVICES, REROUTE, EVENTS = "vitals-device-obs", "vitals-reroute", "vitals.events"
PARTITIONS = 4
T0 = 1_767_225_600_000
DAY = 86_400_000
GOOD = obs_encoder.encode(DeviceObservations("shop", "dev-1", [(T0 // DAY, "u1", T0)], 2, T0 - 5000, T0))
BEACON = obs_encoder.encode(DeviceObservations("", "", [], 1, T0))


def obs(*fields: object) -> bytes:
    return msgspec.msgpack.encode(list(fields))


WRONG = [
    (b"", "empty"),
    (None, "a tombstone"),
    (b"\xc1", "not msgpack"),
    (b'{"app_id": "shop"}', "JSON"),
    (GOOD[: len(GOOD) // 2], "truncated"),
    (GOOD + b"\x00", "trailing bytes"),
    (msgspec.msgpack.encode({"app_id": "shop"}), "a map"),
    (obs("shop", "dev", "not a list"), "wrong type"),
    (obs("shop", "dev", [[T0 // DAY, "u1"]]), "short observation"),
    (obs("shop", "dev", [[T0 // DAY, "", T0]]), "empty user id"),
    (obs("shop", "dev", [[T0 // DAY, "u" * 129, T0]]), "user id too long"),
    (obs("a" * 65, "dev", [[T0 // DAY, "u1", T0]]), "app id too long"),
    (obs("shop", "dev", [[2**62, "u1", T0]]), "a day far beyond int64 milliseconds"),
    (obs("shop", "dev", [[T0 // DAY, "u1", 2**64 - 1]]), "a time beyond int64"),
    (obs("shop", "dev", [[T0 // DAY, "u1", 5]]), "a time before 2000"),
    (obs("shop", "dev", [], 0, 2**63 - 1), "a watermark beyond the bounds"),
    (obs("shop", "dev", [], PARTITIONS), "a source partition that does not exist"),
    (obs("shop", "dev", [], -2), "a negative source"),
    (obs("", "dev", [[T0 // DAY, "u1", T0]]), "observations without an app id"),
    (obs("shop", "", [[T0 // DAY, "u1", T0]]), "observations without a device id"),
]


def test_what_vitals_writes_decodes() -> None:
    assert decode_observations(GOOD, PARTITIONS).obs == [(T0 // DAY, "u1", T0)]
    assert decode_observations(BEACON, PARTITIONS).source_watermark == T0
    assert decode_observations(obs("shop", "dev", [[T0 // DAY, "u1", T0]])).source == -1  # an older sender


@pytest.mark.parametrize(("value", "what"), WRONG, ids=[w for _, w in WRONG])
def test_records_vitals_cannot_have_written_are_refused(value: bytes | None, what: str) -> None:
    with pytest.raises(BadObservations):
        decode_observations(value, PARTITIONS)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200) | garbage_values(huge=False) | st.builds(lambda n: GOOD[:n], st.integers(0, len(GOOD))))
def test_any_bytes_either_decode_or_are_refused(value: bytes) -> None:
    with contextlib.suppress(BadObservations):  # anything else raised fails the test
        decode_observations(value, PARTITIONS)


def test_an_undecodable_device_record_is_dead_lettered_with_its_position_and_counted() -> None:
    records = [Rec(DEVICES, 1, 10, b"shop\x1fdev-1", GOOD), Rec(DEVICES, 3, 7, b"k", b"\xc1garbage"),
               Rec(DEVICES, 1, 11, None, BEACON), Rec(DEVICES, 2, 0, None, None)]
    out = Outputs()
    decoded = decoded_observations(records, PARTITIONS, out)
    assert [(p, b.device_id) for p, b in decoded] == [(1, "dev-1"), (1, "")]
    assert [(d.topic, d.partition, d.offset, d.key, d.invalid.original, d.invalid.index, d.invalid.reason)
            for d in out.dead_letters] == [(DEVICES, 3, 7, b"k", b"\xc1garbage", None, Reason.INTERNAL_UNDECODABLE),
                                           (DEVICES, 2, 0, None, b"", None, Reason.INTERNAL_UNDECODABLE)]
    assert out.dead_letters[0].invalid.message.startswith(f"{DEVICES}: not device observations")
    doc = dead_letter_doc(out.dead_letters[0], now_ms=T0)
    jsonschema.validate(doc, SCHEMA)
    assert (doc["reason"], doc["source"]["topic"], doc["source"]["partition"], doc["source"]["offset"]) == (
        "internal_undecodable", DEVICES, 3, 7)
    assert base64.b64decode(doc["original_b64"]) == b"\xc1garbage"

    # counted as dead letters, not as events (a device observation is no event)
    metrics = Metrics()
    metrics.record_outputs(out, AppLabels([]), EVENTS)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(metrics.registry).decode()) for s in f.samples}
    assert samples[("vitals_dlq_records_total", (("reason", "internal_undecodable"),))] == 2
    assert not [k for k in samples if k[0] == "vitals_events_total"]


def test_an_undecodable_reroute_record_is_dead_lettered_as_internal_with_the_decoders_reason() -> None:
    """The reroute topic holds events vitals re-serialised from valid ones: a record there that the
    event decoder refuses is ``internal_undecodable`` (the decoder's reason in the message), while
    the same bytes on the events topic keep the decoder's reason."""
    home = PartitionCache(PARTITIONS)
    user = next(u for u in (f"u{i}" for i in range(100)) if home(u) == 0)
    valid = orjson.dumps({"event_id": "e1", "user_id": user, "type": "view", "ts": T0})
    batch = b"[" + valid + b',{"event_id":"e2"}]'
    records = [Rec(REROUTE, 0, 0, user.encode(), valid), Rec(REROUTE, 0, 1, None, b"\xff\x00 not json"),
               Rec(REROUTE, 0, 2, None, batch), Rec(EVENTS, 0, 5, None, b"\xff\x00 not json")]
    out = Outputs()
    routed = route(records, T0 + 1000, home, out, internal_topic=REROUTE)
    assert [(topic, offset, [e.event_id if e else None for e in events]) for topic, offset, _, events, _ in routed[0]] \
        == [(REROUTE, 0, ["e1"]), (REROUTE, 1, []), (REROUTE, 2, ["e1", None]), (EVENTS, 5, [])]
    assert [(d.topic, d.offset, d.invalid.reason, d.invalid.index) for d in out.dead_letters] == [
        (REROUTE, 1, "internal_undecodable", None), (REROUTE, 2, "internal_undecodable", 1),
        (EVENTS, 5, "not_json", None)]
    assert out.dead_letters[0].invalid.message == f"{REROUTE}: not_json: message value is not UTF-8 JSON"
    assert out.dead_letters[1].invalid.message.startswith(f"{REROUTE}: missing_field: ")
    assert out.dead_letters[0].invalid.original == b"\xff\x00 not json"
    for d in out.dead_letters:
        jsonschema.validate(dead_letter_doc(d, now_ms=T0), SCHEMA)
    assert dict(out.by_app()) == {("", "invalid:internal_undecodable"): 2, ("", "invalid:not_json"): 1}
