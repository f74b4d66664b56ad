"""Segment changes from a real worker on the real broker equal the brute-force oracle's
(tests/oracle_segments.py): every change on the segments topic, none unexpected, each record valid
against schemas/segment.schema.json and keyed by its user, ids stable — also across SIGKILLs of the
worker and with two workers sharing the partitions.

As in test_alerts_oracle: histories keyed by user (a rerouted event's position depends on timing).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from collections import defaultdict

import jsonschema
import orjson
import pytest

from schemas import SCHEMA_DIR
from schemas.events import Event
from schemas.segments import change_id
from streams.devtools.generator import GenConfig, History, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from tests.integration.test_alerts_oracle import delivered
from tests.oracle_segments import segment_changes

pytestmark = pytest.mark.integration

Row = tuple[str, str, str, str, str | None, int, int]
SCHEMA = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "segment.schema.json").read_text()))


def expected_changes(history: History) -> set[Row]:
    """The oracle per partition over the valid events in delivery order, a redelivered event id counted once
    (the oracle takes unique ids; the generator's duplicates come within the dedup horizon)."""
    by_part: dict[int, list[Event]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    for part, event in delivered(history):
        ident = (event.app_id, event.user_id, event.event_id)
        if ident not in seen:
            seen.add(ident)
            by_part[part].append(event)
    return {row for events in by_part.values() for row in segment_changes(events)}


def read_changes(deployment) -> tuple[set[Row], int]:  # type: ignore[no-untyped-def]
    raw = deployment.read(deployment.settings.segments_topic)
    got: set[Row] = set()
    for record in raw:
        c = orjson.loads(record.value)
        SCHEMA.validate(c)
        assert record.key == c["user_id"].encode()
        assert c["change_id"] == change_id(c["app_id"], c["user_id"], c["dimension"], c["segment"], c["changed_at"])
        got.add((c["app_id"], c["user_id"], c["dimension"], c["segment"], c["previous"], c["changed_at"],
                 c["triggered_at"]))
    return got, len(raw) - len(got)


def assert_same(expected: set[Row], got: set[Row]) -> None:
    missing, unexpected = expected - got, got - expected
    assert not missing and not unexpected, (
        f"{len(missing)} missing e.g. {sorted(missing, key=repr)[:3]}; "
        f"{len(unexpected)} unexpected e.g. {sorted(unexpected, key=repr)[:3]}")


def history(partitions: int, seed: int, batch: int, users: int = 400, events: int = 24_000) -> History:
    return generate(GenConfig(users=users, days=45, events=events, seed=seed, batch=batch, partitions=partitions,
                              unkeyed_rate=0.0, dup_rate=0.02, invalid_rate=0.002))


def finish(deployment, hist: History, workers: list) -> None:  # type: ignore[no-untyped-def]
    try:
        timeout_s = float(os.environ.get("VITALS_TEST_LAG_TIMEOUT", "300"))
        wait_for_lag_zero(deployment.settings, workers[0], len(hist.messages), timeout_s=timeout_s, progress=False)
    finally:
        for worker in workers:
            stop_worker(worker)


def test_segments_topic_equals_oracle(deployment) -> None:  # type: ignore[no-untyped-def]
    partitions = asyncio.run(prepare_topics(deployment.settings))
    hist = history(partitions, seed=21, batch=5)
    asyncio.run(produce_history(deployment.settings, hist))
    finish(deployment, hist, [deployment.worker("w0")])
    expected = expected_changes(hist)
    assert {(r[2], r[3]) for r in expected} >= {("lifecycle", "new"), ("lifecycle", "returning"),
                                               ("lifecycle", "dormant"), ("value", "low")}
    got, duplicates = read_changes(deployment)
    assert_same(expected, got)
    assert duplicates == 0


def test_sigkills_and_two_workers_lose_no_change_and_keep_ids(deployment) -> None:  # type: ignore[no-untyped-def]
    from tests.faultcheck import write_config

    deployment.env["VITALS_CONFIG"] = str(write_config(deployment.base / "vitals.toml"))
    partitions = asyncio.run(prepare_topics(deployment.settings))
    hist = history(partitions, seed=8, batch=1, users=800, events=40_000)
    asyncio.run(produce_history(deployment.settings, hist))
    rng = random.Random(4)
    for i in range(2):
        worker = deployment.worker(f"killed{i}")
        time.sleep(rng.uniform(4.0, 9.0))  # fault injection: kill at a random point of the run
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    # then two workers share the partitions to the end
    finish(deployment, hist, [deployment.worker("a"), deployment.worker("b")])
    got, _duplicates = read_changes(deployment)  # at least once: duplicates allowed, with the same ids
    assert_same(expected_changes(hist), got)
