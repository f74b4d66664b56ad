"""End to end on the real broker and the real ClickHouse engine: generated history in,
``user_activity_daily FINAL`` out, equal to the batch recomputation row by row."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import orjson
import pytest

from schemas.events import decode_message_reference
from streams.devtools.generator import GenConfig, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from tests.oracle import expected_daily, expected_dlq_reasons

pytestmark = pytest.mark.integration

QUERY = ("SELECT app_id, user_id, toString(day), events, logins, payments, toString(payment_amount), "
         "content_posts, social, complaints FROM vitals.user_activity_daily FINAL")


def run_history(deployment, cfg: GenConfig):  # type: ignore[no-untyped-def]
    settings = deployment.settings
    cfg.partitions = asyncio.run(prepare_topics(settings))
    history = generate(cfg)
    asyncio.run(produce_history(settings, history))
    worker = deployment.worker()
    try:
        wait_for_lag_zero(settings, worker, len(history.messages), timeout_s=600, progress=False)
    finally:
        stop_worker(worker)
    return history


@pytest.mark.parametrize("batch", [1, 20])
def test_aggregates_equal_batch_recomputation(deployment, batch: int) -> None:  # type: ignore[no-untyped-def]
    cfg = GenConfig(users=600, days=12, events=25_000, seed=7 + batch, batch=batch, dup_rate=0.03,
                    unkeyed_rate=0.01, invalid_rate=0.01, too_late_rate=0.002, apps=("default", "shop"))
    history = run_history(deployment, cfg)

    expected = expected_daily(history)
    got = {}
    for app, user, day, *values in deployment.query(QUERY):
        key = (app, user, day)
        assert key not in got, f"FINAL returned two rows for {key}"
        got[key] = (values[0], values[1], values[2], Decimal(values[3]), *values[4:])
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    assert not missing, f"{len(missing)} rows missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected rows, e.g. {sorted(extra)[:3]}"
    wrong = [(k, expected[k], got[k]) for k in expected if expected[k] != got[k]]
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[:3]}"

    # every invalid payload is in the DLQ with the right reason, with its source and original bytes
    records = [orjson.loads(r.value) for r in deployment.read(deployment.settings.dlq_topic)]
    assert Counter(r["reason"] for r in records) == expected_dlq_reasons(history)
    for r in records:
        assert r["source"]["topic"] == deployment.settings.events_topic
        assert r["source"]["offset"] >= 0 and r["original_b64"] and r["vitals_version"]

    # raw storage: every message of the events topic once, bytes as they came (FINAL: replays and
    # retried inserts collapse), and every valid event in the raw_events view with its fields
    produced = deployment.read(deployment.settings.events_topic)
    raw = deployment.query("SELECT partition, offset, hex(key), hex(value) FROM vitals.raw_messages FINAL")
    assert sorted(tuple(r) for r in raw) == sorted(
        (m.partition, m.offset, (m.key or b"").hex().upper(), (m.value or b"").hex().upper()) for m in produced)
    rows = Counter(tuple(r) for r in deployment.query(
        "SELECT event_id, user_id, type, ts_ms, app_id, device_id FROM vitals.raw_events"))
    valid = Counter((e.event_id, e.user_id, e.type, e.ts, e.app_id, e.device_id)
                    for m in produced for e in decode_message_reference(m.value, 1 << 62)[0])
    assert valid and not valid - rows, list((valid - rows).items())[:3]
