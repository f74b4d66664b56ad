"""Garbage in, on a real worker (issue 6, part 5): hypothesis-generated garbage (random bytes, deep
nesting, huge strings, wrong types, non-UTF-8, NaN/Infinity, far past/future timestamps) mixed
with a generated history goes to the events topic. After lag 0: every record is accounted for
(accepted + late + duplicates + dead-lettered = records in), the DLQ topic holds each invalid
record with its reason, source and original bytes, the valid history's aggregates are exact, the
worker never stopped and its memory stayed bounded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import jsonschema
import orjson
import pytest
from aiokafka.admin import NewTopic
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from schemas import SCHEMA_DIR
from schemas.events import decode_message
from schemas.time_units import DAY_MS
from streams.config.settings import ConfigError
from streams.devtools.generator import GenConfig, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.engine.partitioner import home_partition
from streams.kafka.client import new_producer, send_many, start_admin
from streams.kafka.topics import prepare_topics
from tests.conftest import Deployment
from tests.garbage import garbage_values
from tests.oracle import expected_daily
from tests.procs import process_tree, rss_kb, scrape, total

pytestmark = pytest.mark.integration

GARBAGE_USERS = ("gu1", "gu2", "gu3", "u0000001")  # one of them also in the generated history
RSS_GROWTH_LIMIT_KB = 256 * 1024
QUERY = ("SELECT app_id, user_id, toString(day), events, logins, payments, toString(payment_amount), "
         "content_posts, social, complaints FROM vitals.user_activity_daily FINAL")


def draw_garbage(seed_: int, now_ms: int, partitions: int, examples: int = 12) -> list[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) garbage messages, deterministic for a seed (hypothesis, no shrinking)."""
    keys = st.sampled_from([None, b"gu1", b"gu2", b"u0000001", b"\xff\xfe", b"someone-else"])
    message = st.tuples(st.integers(0, partitions - 1), keys, garbage_values(now_ms, GARBAGE_USERS))
    drawn: list[tuple[int, bytes | None, bytes]] = []

    @seed(seed_)
    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(message, min_size=10, max_size=30))
    def collect(items: list[tuple[int, bytes | None, bytes]]) -> None:
        drawn.extend(items)

    collect()
    return drawn


def produce(deployment: Deployment, records: list[tuple[int, bytes | None, bytes]]) -> None:
    async def run() -> None:
        producer = new_producer(deployment.settings.kafka)
        await producer.start()
        try:
            await asyncio.gather(*await send_many(producer, deployment.settings.events_topic, records))
        finally:
            await producer.stop()

    asyncio.run(run())


def test_worker_accounts_for_every_garbage_record(deployment: Deployment) -> None:
    settings_ = deployment.settings
    partitions = asyncio.run(prepare_topics(settings_))
    cfg = GenConfig(users=300, days=6, events=6_000, seed=5, batch=10, invalid_rate=0.0, dup_rate=0.02,
                    unkeyed_rate=0.01, partitions=partitions)
    history = generate(cfg)
    history_end = cfg.start_ms + cfg.days * DAY_MS
    rounds = [draw_garbage(s, history_end, partitions) for s in (101, 202)]
    # props nested deeper than orjson encodes, on a partition that is not the user's home (rerouted)
    # and far behind the watermark (counted through the late-events ledger): both re-serialise the event
    other = (home_partition(b"gu2", partitions) + 1) % partitions
    for i, ts in enumerate((history_end - DAY_MS, history_end - 40 * DAY_MS)):
        deep = {"event_id": f"deep{i}", "user_id": "gu2", "type": "view", "ts": ts}
        rounds[0].append((other, b"gu1", orjson.dumps(deep)[:-1] + b',"props":{"x":' + b"[" * 600 + b"]" * 600 + b"}}"))
    asyncio.run(produce_history(settings_, history))
    worker = deployment.worker("garbage")
    total_msgs = len(history.messages)
    rss: list[int] = []
    try:
        wait_for_lag_zero(settings_, worker, total_msgs, timeout_s=600, progress=False)
        rss.append(rss_kb(worker.pid))
        processes = process_tree(worker.pid)  # a supervised worker is a child process
        for garbage in rounds:  # two rounds of the same kind: memory must not grow with garbage seen
            produce(deployment, garbage)
            total_msgs += len(garbage)
            wait_for_lag_zero(settings_, worker, total_msgs, timeout_s=600, progress=False)
            rss.append(rss_kb(worker.pid))
        assert worker.poll() is None and process_tree(worker.pid) == processes, "the worker stopped or restarted"
        samples, exposition = scrape(settings_.metrics_port)
    finally:
        stop_worker(worker)

    # what went in, as the decoder judges each message (the worker's clock bound included)
    produced = deployment.read(settings_.events_topic)
    assert len(produced) == total_msgs
    now_ms = max(r.timestamp for r in produced) + 60_000
    valid, invalid = 0, Counter[str]()
    user_ids: set[str] = set()
    for r in produced:
        events, bad = decode_message(r.value, now_ms)
        valid += len(events)
        invalid.update(str(i.reason) for i in bad)
        user_ids.update(e.user_id for e in events)
    assert sum(invalid.values()) > 50 and valid > 6_000, (valid, invalid)  # the garbage was varied

    # the worker's accounting: every record accepted, late, duplicate or dead-lettered
    accepted = total(samples, "vitals_events_total", outcome="accepted")
    late = total(samples, "vitals_events_total", outcome="late")
    duplicate = total(samples, "vitals_events_total", outcome="duplicate")
    dead: Counter[str] = Counter()
    for (n, ls), v in samples.items():
        labels = dict(ls)
        if n == "vitals_events_total" and labels["outcome"] == "invalid" and v:
            dead[labels["reason"]] += v
    assert dead == dict(invalid), (dead, invalid)  # lateness is never a reason to dead-letter (SPEC 2)
    assert accepted + late + duplicate == valid
    dlq_metric = {ls[0][1]: v for (n, ls), v in samples.items() if n == "vitals_dlq_records_total" and v}
    assert dlq_metric == dict(invalid)
    rerouted = total(samples, "vitals_events_rerouted_total")
    assert total(samples, "vitals_messages_consumed_total") == len(produced) + rerouted

    # the DLQ topic: one schema-valid record per dead letter, pointing at its source message
    schema = json.loads((SCHEMA_DIR / "dlq.schema.json").read_text())
    by_position = {(r.partition, r.offset): r.value for r in produced}
    dlq = [orjson.loads(r.value) for r in deployment.read(settings_.dlq_topic)]
    assert Counter(d["reason"] for d in dlq) == Counter(dlq_metric)
    for d in dlq:
        jsonschema.validate(d, schema)
        original = base64.b64decode(d["original_b64"])
        source = d["source"]
        assert source["topic"] == settings_.events_topic
        message = by_position[(source["partition"], source["offset"])]
        if d["original_truncated"]:  # a large original: a prefix, its size and hash
            assert source["index"] is None and message.startswith(original) and len(message) == d["original_size"]
            assert hashlib.sha256(message).hexdigest() == d["original_sha256"]
            continue
        assert original == message if source["index"] is None else original in message

    # aggregates: the generated history exactly; every counted event is in ClickHouse
    rows = deployment.query(QUERY)
    got = {(a, u, d): (v[0], v[1], v[2], Decimal(v[3]), *v[4:]) for a, u, d, *v in rows}
    generated_users = set(history.personas) - set(GARBAGE_USERS)
    assert {k: v for k, v in got.items() if k[1] in generated_users} == {
        k: v for k, v in expected_daily(history).items() if k[1] in generated_users}
    # every counted event is in ClickHouse: those the state counted, and the late-events ledger's (events
    # older than the state's days: a copy of one of those the state cannot remember counts once there)
    beyond = total(samples, "vitals_events_total", outcome="late", reason="beyond_state")
    [(ledger,)] = deployment.query("SELECT sum(events) FROM vitals.late_events FINAL")
    assert sum(v[0] for v in got.values()) == accepted + late - beyond + ledger
    assert 0 < ledger <= beyond
    old_day = str(date(1970, 1, 1) + timedelta(days=(history_end - 40 * DAY_MS) // DAY_MS))
    assert got[("default", "gu2", old_day)][0] == 1  # the 40-day-old rerouted event, counted

    print(f"records: valid {valid}, invalid {dict(invalid)}; worker: accepted {accepted}, late {late}, "
          f"duplicate {duplicate}, beyond the state's days {beyond} ({ledger} in the ledger), rerouted {rerouted}; "
          f"RSS kB {rss}")
    # bounded memory; no user ids (not even garbage ones) in metric labels
    assert rss[-1] - rss[1] < RSS_GROWTH_LIMIT_KB, f"RSS grew with garbage: {rss} kB"
    labels = {v for (_, ls), _v in samples.items() for _k, v in ls}
    assert not labels & user_ids, labels & user_ids
    assert "vitals_events_total" in exposition
    log = (deployment.base / "garbage.log").read_text(errors="replace")
    assert "Traceback" not in log and "worker exited" not in log, log[-3000:]


def test_invalid_message_near_the_size_limit_is_dead_lettered(deployment: Deployment) -> None:
    """A DLQ record used to carry the original bytes twice (base64 and text): an invalid message
    of 3.8 MB (the local broker takes 8 MiB) made a record larger than the producer's limit, and
    the worker crashed on it after every restart. The record now holds a capped prefix, the size
    and the hash of the original, well under a broker's default 1 MB limit."""
    settings_ = deployment.settings
    asyncio.run(prepare_topics(settings_))
    big = b'{"event_id":"e","user_id":"u","type":"view","ts":"not a time","pad":"' + b"x" * 3_800_000 + b'"}'
    produce(deployment, [(0, b"u", big)])
    worker = deployment.worker("big")
    try:
        wait_for_lag_zero(settings_, worker, 1, timeout_s=45, progress=False)
    finally:
        stop_worker(worker)
    records = deployment.read(settings_.dlq_topic)
    dlq = [orjson.loads(r.value) for r in records]
    assert [d["reason"] for d in dlq] == ["batch_too_large"]
    assert len(records[0].value) < 1_000_000
    (d,) = dlq
    jsonschema.validate(d, json.loads((SCHEMA_DIR / "dlq.schema.json").read_text()))
    assert d["original_truncated"] is True and d["original_text"] is None
    assert d["original_size"] == len(big) and d["original_sha256"] == hashlib.sha256(big).hexdigest()
    assert big.startswith(base64.b64decode(d["original_b64"]))
    source = d["source"]
    assert (source["topic"], source["partition"], source["index"]) == (settings_.events_topic, 0, None)
    assert [r.value for r in deployment.read(settings_.events_topic)
            if (r.partition, r.offset) == (0, source["offset"])] == [big]


def test_a_dlq_topic_with_fewer_partitions_than_the_events_topic_stops_the_worker_at_startup(
        deployment: Deployment) -> None:
    """Dead letters go to the DLQ partition of their source partition: an operator-made DLQ topic
    with fewer partitions would fail every flush holding one (the worker restarting forever), so
    the worker refuses to start and names the topic, with the configuration-error exit code."""
    settings_ = deployment.settings

    async def create_small_dlq() -> None:
        admin = await start_admin(settings_.kafka)
        try:
            await admin.create_topics([NewTopic(settings_.dlq_topic, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(create_small_dlq())
    with pytest.raises(ConfigError, match=f"topic {settings_.dlq_topic} has 2 partitions"):
        asyncio.run(prepare_topics(settings_))
    done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", "worker", "--no-supervise"], env=deployment.env,
                          capture_output=True, timeout=120)
    assert done.returncode == 2 and b"fewer than the" in done.stderr, done.stderr[-2000:]
