"""Rows the embedded ClickHouse (chdb) can never take, on the real broker: a row that violates a
CHECK constraint of the test's own database and a day past ClickHouse's Date (2149-06-06) are
dead-lettered with their reason and source offsets, every other row is written, the offsets are
committed and the worker goes on. A refusal of every row (a table of an older schema) stops the
worker once, with one line and exit code 78, and its supervisor does not restart it."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import jsonschema
import orjson
import pytest

from schemas import SCHEMA_DIR
from streams.devtools.generator import Message
from streams.devtools.produce import send_messages
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.engine.partitioner import PartitionCache
from streams.kafka.client import new_producer, start_admin
from streams.kafka.topics import prepare_topics
from streams.ops.exit_codes import REFUSED as EXIT_REFUSED
from tests.conftest import Deployment, free_port
from tests.faultcheck import write_config
from tests.integration.test_faults import metric, poll, scrape

pytestmark = pytest.mark.integration

PARTITIONS = 4
DAY_MS = 86_400_000
FAR = int(datetime.datetime(2204, 1, 1, tzinfo=datetime.UTC).timestamp() * 1000)  # past Date's 2149-06-06


def setup(deployment: Deployment, tmp_path: Path, *statements: str) -> None:
    """Topics, and the test's own database as the worker will find it (the engine is one process per
    directory: set up in a child that exits before the worker starts)."""
    deployment.env["VITALS_CONFIG"] = str(write_config(tmp_path / "vitals.toml", PARTITIONS, flush_interval_s=0.5))
    asyncio.run(prepare_topics(deployment.settings))
    script = ("import sys\nfrom sinks.clickhouse import ClickHouse\n"
              "ch = ClickHouse(sys.argv[1])\nclient = ch.client()\n"
              "for statement in sys.argv[2:]:\n    client.command(statement, use_database=False)\nch.close()\n")
    subprocess.run([sys.executable, "-P", "-c", script, deployment.settings.effective_clickhouse_dsn, *statements],
                   env=deployment.env, check=True, timeout=300)


def accept_future_timestamps(deployment: Deployment) -> None:
    """Kafka 4 refuses a record stamped more than an hour ahead (``message.timestamp.after.max.ms``);
    Kafka 3 brokers, and a topic configured so, take any."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def run() -> None:
        admin = await start_admin(deployment.settings.kafka)
        try:
            await admin.alter_configs([ConfigResource(
                ConfigResourceType.TOPIC, deployment.settings.events_topic,
                {"message.timestamp.after.max.ms": str(2**63 - 1)})])
        finally:
            await admin.close()

    asyncio.run(run())


def event(user: str, n: int, ts: int) -> dict[str, object]:
    return {"event_id": f"{user}-{n}", "user_id": user, "type": "page_view", "ts": ts}


def produce(deployment: Deployment, messages: list[Message]) -> None:
    async def run() -> None:
        producer = new_producer(deployment.settings.kafka)
        await producer.start()
        try:
            await asyncio.gather(*await send_messages(producer, deployment.settings.events_topic, messages))
        finally:
            await producer.stop()

    asyncio.run(run())


def test_rows_clickhouse_refuses_are_dead_lettered_and_the_others_written(deployment: Deployment,
                                                                           tmp_path: Path) -> None:
    setup(deployment, tmp_path, "CREATE DATABASE IF NOT EXISTS vitals",
          "CREATE TABLE vitals.user_activity_daily (app_id LowCardinality(String), user_id String, day Date, "
          "events UInt64, logins UInt64, payments UInt64, payment_amount Decimal(38, 6), content_posts UInt64, "
          "social UInt64, complaints UInt64, version UInt64, CONSTRAINT no_mallory CHECK user_id != 'mallory') "
          "ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(day) ORDER BY (app_id, day, user_id)")
    home = PartitionCache(PARTITIONS)
    far_user = "clock-2204"
    users = [u for u in (f"user{i}" for i in range(60)) if home(u) != home(far_user)][:20]
    now = int(time.time() * 1000)
    expected: Counter[tuple[str, str]] = Counter()
    messages: list[Message] = []
    for round_ in range(3):  # three rounds: the refused row is written (and refused) by several flushes
        for i, user in enumerate([*users, "mallory"]):
            ts = now - (i % 3) * DAY_MS - round_ * 1000
            messages.append(Message(home(user), user.encode(), orjson.dumps(event(user, round_, ts)), ts))
            expected[(user, datetime.datetime.fromtimestamp(ts / 1000, datetime.UTC).date().isoformat())] += 1
    # a clock far in the future, its record stamped as far: valid input (SPEC section 1), a day no Date holds
    messages.append(Message(home(far_user), far_user.encode(), orjson.dumps(event(far_user, 0, FAR)), FAR, [], FAR))
    accept_future_timestamps(deployment)
    port = free_port()
    worker = deployment.worker("w0", {"VITALS_METRICS_PORT": str(port)})
    try:
        produce(deployment, messages[:-1])
        poll(lambda: "assigned event partitions" in (tmp_path / "w0.log").read_text(errors="replace"), 180,
             "the worker's assignment")
        produce(deployment, messages[-1:])
        wait_for_lag_zero(deployment.settings, worker, len(messages), timeout_s=300, progress=False)
        text = scrape(deployment, port)
        refused_rows = 'vitals_sink_refused_rows_total{reason="%s",table="user_activity_daily"}'
        assert metric(text, refused_rows % "VIOLATED_CONSTRAINT") >= 1
        assert metric(text, refused_rows % "DATE_OUT_OF_RANGE") == 1
        assert metric(text, 'vitals_dlq_records_total{reason="sink_refused"}') >= 2
    finally:
        stop_worker(worker)
    log = (tmp_path / "w0.log").read_text(errors="replace")
    assert "worker exited with code" not in log and "processing failed" not in log  # never restarted
    # every other row written, exactly (committed: lag 0 above)
    got = {(u, d): e for u, d, e in deployment.query(
        "SELECT user_id, toString(day), events FROM vitals.user_activity_daily FINAL")}
    assert got == {k: n for k, n in expected.items() if k[0] != "mallory"}
    # the refused rows dead-lettered, with the table, the error and the source offsets
    schema = json.loads((SCHEMA_DIR / "dlq.schema.json").read_text())
    docs = [orjson.loads(r.value) for r in deployment.read(deployment.settings.dlq_topic)]
    assert docs and all(d["reason"] == "sink_refused" for d in docs)
    for doc in docs:
        jsonschema.validate(doc, schema)
    refused = [d for d in docs if d["sink"]["name"] == "VIOLATED_CONSTRAINT"]
    far = [d for d in docs if d["sink"]["name"] == "DATE_OUT_OF_RANGE"]
    assert len(refused) + len(far) == len(docs) and len(far) == 1
    partition_offsets = range(sum(1 for m in messages if m.partition == home("mallory")))  # produced in order
    for doc in refused:
        row = orjson.loads(base64.b64decode(doc["original_b64"]))
        assert row["user_id"] == "mallory" and doc["sink"] == {"table": "user_activity_daily", "code": 469,
                                                               "name": "VIOLATED_CONSTRAINT"}
        source = doc["source"]
        assert (source["topic"], source["partition"]) == (deployment.settings.events_topic, home("mallory"))
        assert source["offset"] in partition_offsets  # the last of that partition in the flush
        assert any(r["first"] <= source["offset"] == r["last"] for r in doc["source_offsets"])
    # each of mallory's rows (one per day) refused at least once
    assert {orjson.loads(base64.b64decode(d["original_b64"]))["day"] for d in refused} == {
        day for user, day in expected if user == "mallory"}
    (doc,) = far
    assert doc["sink"] == {"table": "user_activity_daily", "code": None, "name": "DATE_OUT_OF_RANGE"}
    assert orjson.loads(base64.b64decode(doc["original_b64"]))["day"] == "2204-01-01"
    assert doc["source"]["partition"] == home(far_user)


def test_a_table_that_refuses_every_row_stops_the_worker_once_with_one_line(deployment: Deployment,
                                                                           tmp_path: Path) -> None:
    """A table left by an older schema (no ``version`` column): no insert can pass, whatever the rows."""
    setup(deployment, tmp_path, "CREATE DATABASE IF NOT EXISTS vitals",
          "CREATE TABLE vitals.user_activity_daily (app_id LowCardinality(String), user_id String, day Date, "
          "events UInt64, logins UInt64, payments UInt64, payment_amount Decimal(38, 6), content_posts UInt64, "
          "social UInt64, complaints UInt64) ENGINE = ReplacingMergeTree ORDER BY (app_id, day, user_id)")
    now = int(time.time() * 1000)
    home = PartitionCache(PARTITIONS)
    produce(deployment, [Message(home(u), u.encode(), orjson.dumps(event(u, 0, now)), now) for u in ("a", "b")])
    worker = deployment.worker("w0")
    try:
        code = worker.wait(300)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker kept running (or restarting) on a table that refuses every row")
    finally:
        stop_worker(worker)
    assert code == EXIT_REFUSED
    log = (tmp_path / "w0.log").read_text(errors="replace")
    stops = [line for line in log.splitlines() if "stopping (exit code 78, not restarted)" in line]
    assert len(stops) == 1 and "vitals.user_activity_daily" in stops[0] and "16 NO_SUCH_COLUMN_IN_TABLE" in stops[0]
    assert "worker exited with code" not in log  # the supervisor did not start another
