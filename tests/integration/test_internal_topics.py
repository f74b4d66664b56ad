"""Internal topics are not trusted (issue 23, part 7), on the real broker and engine: garbage produced
straight onto ``<app_id>-device-obs`` and ``<app_id>-reroute`` (not msgpack/JSON, truncated, wrong
shape, out-of-bounds values) while a worker processes a generated history. The worker never stops
or restarts and reaches lag 0 (the garbage's offsets committed); each garbage record is on the DLQ
once, ``internal_undecodable`` with its source position and original bytes, and counted; the
history's aggregates and alerts are exactly what they are without the garbage."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections import Counter
from decimal import Decimal

import jsonschema
import msgspec
import orjson
import pytest
from aiokafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from schemas import SCHEMA_DIR
from schemas.events import decode_message_reference
from schemas.time_units import DAY_MS
from streams.devtools.generator import GenConfig, History, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.engine.devices import DeviceObservations, obs_encoder
from streams.kafka.client import new_producer
from streams.kafka.offsets import committed_offsets
from streams.kafka.topics import device_topic, prepare_topics, reroute_topic
from tests.conftest import Deployment
from tests.integration.test_alerts_oracle import assert_same, delivered, read_alerts
from tests.oracle import expected_daily, expected_dlq_reasons
from tests.oracle_rules import expected_alerts
from tests.procs import process_tree, wait_for

pytestmark = pytest.mark.integration

QUERY = ("SELECT app_id, user_id, toString(day), events, logins, payments, toString(payment_amount), "
         "content_posts, social, complaints FROM vitals.user_activity_daily FINAL")
Position = tuple[str, int, int]  # topic, partition, offset


def device_garbage(day: int, ts: int, partitions: int) -> list[bytes | None]:
    good = obs_encoder.encode(DeviceObservations("default", "dev-x", [(day, "gx", ts)], 0, ts, ts))
    shape = msgspec.msgpack.encode
    return [
        b"\xc1\xc1 not msgpack", b'{"event_id":"e","user_id":"u","type":"view","ts":1}', good[: len(good) // 2],
        good + b"\x00", b"", None, shape({"app_id": "default"}), shape(["default", "dev-x", "not a list"]),
        shape(["default", "dev-x", [[day, "gx"]]]), shape(["default", "dev-x", [[2**62, "gx", ts]]]),
        shape(["default", "dev-x", [], partitions + 3, ts]), shape(["default", "dev-x", [], 0, 2**63 - 1]),
        shape(["", "dev-x", [[day, "gx", ts]]]),
    ]


def reroute_garbage(ts: int) -> list[bytes | None]:
    event = orjson.dumps({"event_id": "rx", "user_id": "gx", "type": "view", "ts": ts})
    return [
        b"\xff\xfe\x00 not json", event[: len(event) // 2], b'{"foo": 1}', b"[]", b"[1, 2",
        b'[{"event_id": "r1"}, "two"]', msgspec.msgpack.encode(["default", "dev", []]), b"", None,
    ]


async def produce_one_by_one(deployment: Deployment, topic: str, values: list[bytes | None], partitions: int
                             ) -> dict[Position, bytes | None]:
    """Each value to a partition in turn, one send at a time: the positions they landed at."""
    producer = new_producer(deployment.settings.kafka)
    await producer.start()
    try:
        at: dict[Position, bytes | None] = {}
        for i, value in enumerate(values):
            meta = await producer.send_and_wait(topic, value, key=b"garbage-%d" % i, partition=i % partitions)
            at[(topic, meta.partition, meta.offset)] = value
        return at
    finally:
        await producer.stop()


def committed(deployment: Deployment) -> int:
    """Offsets the worker's group committed on the events topic so far (0 before the group exists)."""
    settings_ = deployment.settings
    try:
        return sum(asyncio.run(committed_offsets(settings_.kafka, settings_.app_id, settings_.events_topic)).values())
    except KafkaError:
        return 0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_garbage_on_internal_topics_is_dead_lettered_and_the_worker_goes_on(deployment: Deployment) -> None:
    settings_ = deployment.settings
    partitions = asyncio.run(prepare_topics(settings_))
    cfg = GenConfig(users=400, days=12, events=16_000, seed=23, batch=5, partitions=partitions, unkeyed_rate=0.0,
                    dup_rate=0.02, invalid_rate=0.005)
    history = generate(cfg)
    half = len(history.messages) // 2
    first, second = (History(cfg, msgs, history.personas)
                     for msgs in (history.messages[:half], history.messages[half:]))
    end_ms = cfg.start_ms + cfg.days * DAY_MS
    asyncio.run(produce_history(settings_, first))
    worker = deployment.worker("internal")
    try:
        # the worker is consuming: garbage arrives on both internal topics between the two halves
        wait_for(lambda: committed(deployment), 180, "the worker's first commit")
        processes = process_tree(worker.pid)  # a supervised worker is a child process
        garbage = asyncio.run(produce_one_by_one(deployment, device_topic(settings_),
                                                 device_garbage(end_ms // DAY_MS - 1, end_ms - DAY_MS, partitions),
                                                 partitions))
        garbage |= asyncio.run(produce_one_by_one(deployment, reroute_topic(settings_),
                                                  reroute_garbage(end_ms - DAY_MS), partitions))
        asyncio.run(produce_history(settings_, second))
        wait_for_lag_zero(settings_, worker, len(history.messages) + len(garbage), timeout_s=600, progress=False)
        assert worker.poll() is None and process_tree(worker.pid) == processes, "the worker stopped or restarted"
        rerouted_dead = sum(len(decode_message_reference(v, end_ms)[1]) for (t, _, _), v in garbage.items()
                            if t == reroute_topic(settings_))
        n_dead = rerouted_dead + sum(1 for t, _, _ in garbage if t == device_topic(settings_))
        dlq_metric = ("vitals_dlq_records_total", (("reason", "internal_undecodable"),))
        samples = wait_for(lambda: (s := scrape(settings_.metrics_port)).get(dlq_metric) == n_dead and s,
                           30, f"{n_dead} internal dead letters counted")
    finally:
        stop_worker(worker)

    # every garbage record on the DLQ once, at its source position, with its original bytes
    schema = json.loads((SCHEMA_DIR / "dlq.schema.json").read_text())
    dlq = [orjson.loads(r.value) for r in deployment.read(settings_.dlq_topic)]
    for d in dlq:
        jsonschema.validate(d, schema)
    internal = [d for d in dlq if d["source"]["topic"] != settings_.events_topic]
    assert {d["reason"] for d in internal} == {"internal_undecodable"}
    positions = Counter((d["source"]["topic"], d["source"]["partition"], d["source"]["offset"]) for d in internal)
    assert set(positions) == set(garbage)
    assert sum(positions.values()) == n_dead
    for d in internal:
        source = d["source"]
        original = garbage[(source["topic"], source["partition"], source["offset"])] or b""
        got = base64.b64decode(d["original_b64"])
        assert got == original if source["index"] is None else got in original
        assert d["message"].startswith(source["topic"] + ": ")
    # the history's own dead letters are unaffected
    assert Counter(d["reason"] for d in dlq if d["source"]["topic"] == settings_.events_topic) == \
        expected_dlq_reasons(history)
    events_metric = sum(v for (n, ls), v in samples.items()
                        if n == "vitals_events_total" and ("reason", "internal_undecodable") in ls)
    assert events_metric == rerouted_dead  # a device observation is no event: counted as a dead letter only

    # the normal results: aggregates and alerts exactly as without the garbage
    got = {(a, u, d): (v[0], v[1], v[2], Decimal(v[3]), *v[4:]) for a, u, d, *v in deployment.query(QUERY)}
    assert got == expected_daily(history)
    alerts, duplicates = read_alerts(deployment)
    assert_same(expected_alerts(delivered(history), partitions), alerts)
    assert duplicates == 0
    log = (deployment.base / "internal.log").read_text(errors="replace")
    assert "Traceback" not in log and "worker exited" not in log, log[-3000:]
