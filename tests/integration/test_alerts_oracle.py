"""Alerts from a real worker on the real broker equal the independent oracle's: every expected
alert present, none unexpected, ids stable — also across SIGKILLs of the worker.

Excluded explicitly (ambiguous in the spec): events delivered on a partition other than their
user's (their position after rerouting depends on timing), so these histories are keyed by user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import SCHEMA_DIR
from schemas.events import Event, _Bad, validate
from streams.devtools.generator import GenConfig, History, Message, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.engine.partitioner import home_partition
from streams.kafka.topics import prepare_topics
from tests.histories import histories
from tests.oracle_rules import expected_alerts

pytestmark = pytest.mark.integration

Alert = tuple[str, str, str, str, int]


def delivered(history: History) -> list[tuple[int, Event]]:
    """Valid events as the worker sees them (its wall-clock bound on ts included)."""
    now_ms = int(time.time() * 1000)
    out = []
    for m in history.messages:
        try:
            doc = json.loads(m.value)
        except (ValueError, UnicodeDecodeError):
            continue
        for item in doc if isinstance(doc, list) else [doc]:
            with contextlib.suppress(_Bad):
                out.append((m.partition, validate(item, now_ms)))
    return out


ALERT_SCHEMA = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "alert.schema.json").read_text()))


def read_alerts(deployment) -> tuple[set[Alert], int]:  # type: ignore[no-untyped-def]
    """The alerts on the topic, each checked against SPEC section 4 (schemas/alert.schema.json,
    keyed by its user, or its device for fake.device_farm)."""
    raw = deployment.read(deployment.settings.alerts_topic)
    records = [orjson.loads(r.value) for r in raw]
    for record, a in zip(raw, records, strict=True):
        ALERT_SCHEMA.validate(a)
        assert record.key == (a["user_id"] or a["device_id"]).encode(), (record.key, a)
    got = {(a["alert_id"], a["status"], a["rule"], a["user_id"] or a["device_id"], a["episode_start"])
           for a in records}
    return got, len(records) - len(got)


def assert_same(expected: set[Alert], got: set[Alert]) -> None:
    missing, unexpected = expected - got, got - expected
    assert not missing and not unexpected, (
        f"{len(missing)} missing e.g. {sorted(missing)[:3]}; {len(unexpected)} unexpected e.g. {sorted(unexpected)[:3]}"
    )


def process(deployment, history: History, kills: int = 0, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    settings_ = deployment.settings
    asyncio.run(produce_history(settings_, history))
    rng = random.Random(seed)
    for i in range(kills):
        worker = deployment.worker(f"killed{i}")
        time.sleep(rng.uniform(4.0, 9.0))  # fault injection: kill at a random point of the run
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    worker = deployment.worker("final")
    try:
        timeout_s = float(os.environ.get("VITALS_TEST_LAG_TIMEOUT", "300"))
        wait_for_lag_zero(settings_, worker, len(history.messages), timeout_s=timeout_s, progress=False)
    finally:
        stop_worker(worker)


def test_generated_history_alerts_equal_oracle(deployment) -> None:  # type: ignore[no-untyped-def]
    partitions = asyncio.run(prepare_topics(deployment.settings))
    cfg = GenConfig(users=400, days=16, events=20_000, seed=11, batch=5, partitions=partitions, unkeyed_rate=0.0,
                    dup_rate=0.02, invalid_rate=0.005)
    history = generate(cfg)
    process(deployment, history)
    expected = expected_alerts(delivered(history), partitions)
    got, duplicates = read_alerts(deployment)
    assert {a[2] for a in expected} >= {"churn.no_login_72h", "churn.activity_drop", "fake.hollow_activity",
                                        "fake.burst", "fake.device_farm"}
    assert_same(expected, got)
    assert duplicates == 0
    stored = {(r[0], r[1]) for r in deployment.query("SELECT alert_id, status FROM vitals.alerts FINAL")}
    assert stored == {(a[0], a[1]) for a in expected}


def test_sigkill_restarts_lose_no_alert_and_keep_ids(deployment) -> None:  # type: ignore[no-untyped-def]
    from tests.faultcheck import write_config

    # as in the fault tests: dead members leave the group after 6 s, quick restarts
    deployment.env["VITALS_CONFIG"] = str(write_config(deployment.base / "vitals.toml"))
    partitions = asyncio.run(prepare_topics(deployment.settings))
    cfg = GenConfig(users=1500, days=14, events=60_000, seed=5, batch=1, partitions=partitions, unkeyed_rate=0.0)
    history = generate(cfg)
    process(deployment, history, kills=3, seed=3)
    got, _duplicates = read_alerts(deployment)  # duplicates allowed (at least once), same ids
    assert_same(expected_alerts(delivered(history), partitions), got)
    # no partition was left behind by the restarts' rebalances (README, "No partition is left behind")
    logs = deployment.base.glob("*.log")
    stalls = [log.name for log in logs if "consumption stalled" in log.read_text(errors="replace")]
    assert stalls == [], f"the lag watchdog found a stalled partition: {stalls}"


def _history_from_events(events: list[Event], partitions: int) -> History:
    msgs = []
    for i, e in enumerate(events):
        doc = {"event_id": e.event_id, "user_id": e.user_id, "type": e.type, "ts": e.ts, "app_id": e.app_id}
        if e.device_id:
            doc["device_id"] = e.device_id
        if e.type == "payment":
            doc["amount"] = e.amount
        key = e.user_id.encode()
        msgs.append(Message(home_partition(key, partitions), key, orjson.dumps(doc), i))
    return History(GenConfig(partitions=partitions), msgs, {})


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(histories(max_users=6, max_steps=40), st.integers(0, 10**6))
def test_hypothesis_histories_through_real_worker(kafka_bootstrap, tmp_path_factory, events, salt) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_deployment

    deployment = make_deployment(kafka_bootstrap, tmp_path_factory.mktemp("hyp"))
    partitions = asyncio.run(prepare_topics(deployment.settings))
    history = _history_from_events(events, partitions)
    process(deployment, history)
    got, _ = read_alerts(deployment)
    assert_same(expected_alerts(delivered(history), partitions), got)
