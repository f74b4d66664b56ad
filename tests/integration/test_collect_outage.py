"""The broker killed (SIGKILL) in the middle of SDK traffic through ``vitals collect``: the collector answers
503 while Kafka is away, the real Segment and PostHog SDKs retry, and once the broker is back nothing is
lost and every redelivered event is counted once (the worker dedups by event_id)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from streams.devtools import local_kafka as localkafka
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from tests.collect_helpers import (
    SDKs,
    assert_rows_equal,
    daily_rows,
    make_plan,
    metric_sum,
    metrics_text,
    start_collector,
)
from tests.conftest import make_deployment
from tests.procs import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    directory = tmp_path / "kafka"
    bootstrap = localkafka.start(directory)
    try:
        yield directory, bootstrap
    finally:
        localkafka.stop(directory, kill=True)


def test_broker_killed_during_sdk_traffic_loses_nothing(own_broker: tuple[Path, str], tmp_path: Path) -> None:
    directory, bootstrap = own_broker
    deployment = make_deployment(bootstrap, tmp_path)
    collector = start_collector(deployment)
    plan = make_plan(seed=29, events=6000, now=datetime.now(UTC))
    sdks = SDKs(collector.url)
    done = threading.Event()

    def traffic() -> None:  # the SDKs queue calls and upload in their own threads; paced, not waited on
        try:
            for start in range(0, len(plan.calls), 100):
                sdks.send(plan.calls[start:start + 100])
                if done.wait(0.05):
                    return
        finally:
            done.set()

    sender = threading.Thread(target=traffic, daemon=True)
    try:
        sender.start()
        accepted = lambda: metric_sum(metrics_text(collector), "vitals_collect_events_total",  # noqa: E731
                                      outcome="accepted")
        wait_for(lambda: accepted() >= 500, 120, "the first events acknowledged")
        localkafka.stop(directory, kill=True)  # mid-traffic
        wait_for(lambda: metric_sum(metrics_text(collector), "vitals_collect_requests_total", code="503") >= 5, 120,
                 "503s while the broker is down")
        assert not collector.healthy()
        localkafka.start(directory)
        wait_for(collector.healthy, 120, "the collector healthy again")
        sender.join(600)
        sdks.flush()  # every queued call uploaded (retried until acknowledged)
        assert not sdks.errors, sdks.errors[:3]
        text = metrics_text(collector)
        assert metric_sum(text, "vitals_collect_requests_total", code="500") == 0
    finally:
        done.set()
        sdks.close()
        assert collector.stop() == 0, collector.log.read_text()[-3000:]

    worker = deployment.worker()
    try:
        wait_for_lag_zero(deployment.settings, worker, 0, timeout_s=600, progress=False)
    finally:
        stop_worker(worker)
    assert_rows_equal(plan.expected(), daily_rows(deployment))
    # the plan sends some events twice itself; retried requests may have repeated more: each counted once above
    copies = Counter(e["event_id"] for r in deployment.read(deployment.settings.events_topic)
                     for e in orjson.loads(r.value))
    assert len(copies) == len({s.event_id for s in plan.calls if s.vitals_type is not None})
    written = sum(copies.values())
    print(f"events written {written}, distinct {len(copies)}, repeated {written - len(copies)}")
