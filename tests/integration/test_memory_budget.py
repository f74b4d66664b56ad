"""The memory budget (streams/worker/budget.py) on the real broker and the embedded ClickHouse: 1 MiB batch
messages stream in while ClickHouse is down for 60 s (a planned outage: every sink write refused as
retriable). Consumption pauses at the budget instead of memory growing, and once ClickHouse is back
every event is counted exactly. (With the budget raised out of reach, RSS grows by about the whole
input: +263 MB for 240 such messages.)"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request

import orjson
import pytest

from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.engine.partitioner import home_partition
from streams.kafka.client import new_producer, send_many
from streams.kafka.topics import prepare_topics
from tests.conftest import Deployment
from tests.procs import process_tree, rss_kb, wait_for

pytestmark = pytest.mark.integration

BUDGET_MB = int(os.environ.get("BUDGET_MB_OVERRIDE", "96"))  # (a larger one shows the test can fail)
# RSS beyond what the budget counts: the Kafka client's prefetched fetches, the engine warming up
ALLOWANCE_MB = 160
MESSAGES = 600  # of about 1 MiB: over six times the budget
EVENTS_PER_MESSAGE = 400
USERS = 60
OUTAGE_S = 60


def batch_message(m: int, now_ms: int) -> tuple[bytes, bytes]:
    user = f"u{m % USERS}"
    pad = "x" * 2_450
    events = [{"event_id": f"m{m}-{i}", "user_id": user, "type": "view", "ts": now_ms - 3_600_000 + m * 1000 + i,
               "props": {"pad": pad}} for i in range(EVENTS_PER_MESSAGE)]
    value = orjson.dumps(events)
    assert 1_000_000 < len(value) <= 1 << 20  # a batch of SPEC section 1's largest size
    return user.encode(), value


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line.split()[0]}


def scrape_or_empty(port: int) -> dict[str, float]:
    try:
        return scrape(port)
    except OSError:
        return {}


def test_consumption_pauses_at_the_budget_through_a_clickhouse_outage(deployment: Deployment) -> None:
    config = deployment.base / "vitals.toml"
    config.write_text(f"[processing]\nmemory_budget_mb = {BUDGET_MB}\nlag_watchdog_s = 0\n")
    deployment.env["VITALS_CONFIG"] = str(config)
    settings = deployment.settings
    partitions = asyncio.run(prepare_topics(settings))
    plan = deployment.base / "faults.json"
    plan.write_text(json.dumps([["clickhouse_outage", OUTAGE_S]]))
    worker = deployment.worker("budget", {"VITALS_FAULTS_FILE": str(plan)})
    now_ms = int(time.time() * 1000)
    messages = [batch_message(m, now_ms) for m in range(MESSAGES)]
    try:
        wait_for(lambda: scrape_or_empty(settings.metrics_port).get("vitals_assigned_partitions"), 120,
                 "the worker up with its partitions assigned")
        base_kb = rss_kb(worker.pid)
        processes = process_tree(worker.pid)

        async def produce() -> None:
            producer = new_producer(settings.kafka)
            await producer.start()
            try:
                records = [(home_partition(k, partitions), k, v) for k, v in messages]
                await asyncio.gather(*await send_many(producer, settings.events_topic, records))
            finally:
                await producer.stop()

        asyncio.run(produce())
        started = time.monotonic()
        peak_kb, ratios, consumed = base_kb, [], []
        while time.monotonic() - started < OUTAGE_S - 10:  # during the outage
            peak_kb = max(peak_kb, rss_kb(worker.pid))
            sample = scrape(settings.metrics_port)
            ratios.append(sample.get("vitals_memory_budget_used_ratio", 0.0))
            consumed.append(sum(v for k, v in sample.items() if k.startswith("vitals_messages_consumed_total")))
            time.sleep(1)
        wait_for_lag_zero(settings, worker, MESSAGES, timeout_s=300, progress=False)
        assert process_tree(worker.pid) == processes, "the worker restarted"
    finally:
        stop_worker(worker)

    grown_mb = (peak_kb - base_kb) / 1024
    print(f"RSS {base_kb // 1024} MB idle, peak +{grown_mb:.0f} MB during the outage; budget used up to "
          f"{max(ratios):.2f}; {MESSAGES} messages of 1 MiB")
    # paused, not dropped: the budget filled and stayed within bounds while ClickHouse was down
    assert max(ratios) >= 0.75, ratios
    assert grown_mb < BUDGET_MB + ALLOWANCE_MB, f"RSS grew by {grown_mb:.0f} MB with a {BUDGET_MB} MB budget"
    # every event counted once, and every message in raw storage, after the outage
    rows = deployment.query("SELECT user_id, sum(events) FROM vitals.user_activity_daily FINAL GROUP BY user_id")
    expected: dict[str, int] = {}
    for m in range(MESSAGES):
        expected[f"u{m % USERS}"] = expected.get(f"u{m % USERS}", 0) + EVENTS_PER_MESSAGE
    assert {u: int(n) for u, n in rows} == expected  # type: ignore[call-overload]
    [[raw]] = deployment.query("SELECT count() FROM vitals.raw_messages FINAL")
    assert raw == MESSAGES
