"""``vitals collect`` end to end with the real Segment and PostHog SDKs (segment-analytics-python, posthog)
on the real broker: a worker consumes what the collector wrote, and ``user_activity_daily FINAL`` equals an
independent computation from what the SDKs were asked to send; unconvertible events are in the DLQ."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime

import orjson
import pytest

from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from tests.collect_helpers import (
    POSTHOG_KEY,
    SEGMENT_KEY,
    SDKs,
    assert_rows_equal,
    daily_rows,
    make_plan,
    metric_sum,
    metrics_text,
    post,
    start_collector,
)
from tests.conftest import Deployment
from tests.procs import wait_for

pytestmark = pytest.mark.integration


def test_sdks_through_the_collector_equal_the_independent_aggregates(deployment: Deployment) -> None:
    collector = start_collector(deployment)
    try:
        plan = make_plan(seed=28, events=3000, now=datetime.now(UTC))
        plain, zipped = SDKs(collector.url), SDKs(collector.url, gzip=True)
        try:
            half = len(plan.calls) // 2
            plain.send(plan.calls[:half])
            zipped.send(plan.calls[half:])
            plain.flush()
            zipped.flush()
        finally:
            plain.close()
            zipped.close()
        assert not plain.errors and not zipped.errors, (plain.errors + zipped.errors)[:3]

        # events a collector cannot convert go to the DLQ, answered 200 with the counts
        auth = {"Authorization": "Basic " + base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()}
        bad = {"batch": [{"type": "track", "event": "x", "messageId": "no-user", "timestamp": "2026-01-01T00:00:00Z"},
                         {"type": "track", "event": "Order Completed", "userId": "u", "messageId": "neg",
                          "timestamp": "2026-01-01T00:00:00Z", "properties": {"revenue": -5}},
                         {"type": "track", "event": "x", "userId": "u", "messageId": "future",
                          "timestamp": "2999-01-01T00:00:00Z"}]}
        status, counts = post(collector.url + "/v1/batch", gzip.compress(orjson.dumps(bad)),
                              {**auth, "Content-Encoding": "gzip", "Content-Type": "application/json"})
        assert status == 200 and counts and counts["accepted"] == 0 and counts["dead_lettered"] == 3, counts

        text = metrics_text(collector)
        assert metric_sum(text, "vitals_collect_events_total", outcome="not_activity") == sum(
            1 for s in plan.calls if s.vitals_type is None)
        assert metric_sum(text, "vitals_collect_requests_total", code="500") == 0
    finally:
        assert collector.stop() == 0, collector.log.read_text()[-3000:]

    worker = deployment.worker()
    try:
        wait_for_lag_zero(deployment.settings, worker, 0, timeout_s=600, progress=False)
    finally:
        stop_worker(worker)
    assert_rows_equal(plan.expected(), daily_rows(deployment))

    dead = [orjson.loads(r.value) for r in deployment.read(deployment.settings.dlq_topic)]
    assert sorted(d["reason"] for d in dead) == ["bad_amount", "missing_field", "ts_out_of_range"]
    for d in dead:
        assert d["source"]["topic"] == "collect:/v1/batch" and d["source"]["index"] in (0, 1, 2)
        original = orjson.loads(base64.b64decode(d["original_b64"]))
        assert original == bad["batch"][d["source"]["index"]]


def test_requests_it_cannot_take_are_answered_4xx(deployment: Deployment) -> None:
    collector = start_collector(deployment)
    try:
        url = collector.url
        good = orjson.dumps({"batch": []})
        assert post(url + "/v1/batch", good)[0] == 401  # no write key
        wrong = {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()}
        assert post(url + "/v1/batch", good, wrong)[0] == 401
        assert post(url + "/batch/", orjson.dumps({"api_key": "nope", "batch": [{"event": "x"}]}))[0] == 401
        auth = {"Authorization": "Basic " + base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode()}
        status, body = post(url + "/v1/batch", b"{not json", auth)
        assert status == 400 and body and body["code"] == "not_json"
        assert post(url + "/v1/batch", b"x" * (1 << 20 + 1), auth)[0] == 413
        bomb = gzip.compress(b" " * (64 << 20))  # 64 MiB of spaces in ~64 KiB
        assert post(url + "/v1/batch", bomb, {**auth, "Content-Encoding": "gzip"})[0] == 413
        assert post(url + "/v1/batch", b"{}", {**auth, "Content-Encoding": "br"})[0] == 415
        assert post(url + "/v1/batch", good, auth) == (200, {"status": "ok", "accepted": 0, "dead_lettered": 0,
                                                              "not_activity": 0, "records": 0})
        wait_for(lambda: collector.healthy(), 30, "health")
        assert collector.proc.poll() is None
    finally:
        assert collector.stop() == 0


def test_sigterm_mid_traffic_loses_nothing_acknowledged(deployment: Deployment) -> None:
    """SIGTERM while clients post: the collector stops accepting, finishes the requests in flight, flushes
    and exits 0; every event of every request answered 200 is in the events topic."""
    import threading
    import urllib.error

    collector = start_collector(deployment)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{SEGMENT_KEY}:".encode()).decode(),
            "Content-Encoding": "gzip"}
    acknowledged: list[str] = []
    answered = threading.Semaphore(0)
    lock = threading.Lock()

    def client(c: int) -> None:
        for r in range(10_000):
            ids = [f"c{c}-r{r}-e{i}" for i in range(50)]
            batch = [{"type": "track", "event": "Signed In", "userId": f"u{c}-{i % 7}", "messageId": m,
                      "timestamp": datetime.now(UTC).isoformat()} for i, m in enumerate(ids)]
            try:
                status, _ = post(collector.url + "/v1/batch", gzip.compress(orjson.dumps({"batch": batch})), auth)
            except (urllib.error.URLError, ConnectionError, OSError):
                return  # refused or reset: not acknowledged, the SDK would retry
            if status != 200:
                return
            with lock:
                acknowledged.extend(ids)
            answered.release()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(4)]
    try:
        for t in threads:
            t.start()
        for _ in range(40):  # some requests answered before the signal
            assert answered.acquire(timeout=60)
        collector.proc.terminate()
        assert collector.proc.wait(60) == 0, collector.log.read_text()[-3000:]
    finally:
        collector.stop()
    for t in threads:
        t.join(60)
    written = {e["event_id"] for r in deployment.read(deployment.settings.events_topic) for e in orjson.loads(r.value)}
    missing = set(acknowledged) - written
    assert len(acknowledged) >= 40 * 50 and not missing, f"{len(missing)} acknowledged events missing"


def test_posthog_js_bodies_gzip_in_the_query_and_base64_forms(deployment: Deployment) -> None:
    collector = start_collector(deployment)
    try:
        event = {"event": "$pageview", "distinct_id": "js-user", "uuid": "js-1", "api_key": POSTHOG_KEY,
                 "timestamp": datetime.now(UTC).isoformat(), "properties": {"$device_id": "d"}}
        zipped = gzip.compress(orjson.dumps([event]))
        status, counts = post(collector.url + "/e/?compression=gzip-js", zipped, {"Content-Type": "text/plain"})
        assert status == 200 and counts and counts["accepted"] == 1, counts
        form = b"data=" + base64.b64encode(orjson.dumps({**event, "uuid": "js-2"}))
        status, counts = post(collector.url + "/capture/", form,
                              {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200 and counts and counts["accepted"] == 1, counts
    finally:
        assert collector.stop() == 0
