"""Looking at the numbers while a worker makes them (issue 26, item 3): a real worker on the embedded
ClickHouse (which one process at a time can open) consumes a generated history; while it runs,
``vitals query``, ``vitals report`` and ``vitals inspect`` answer in processes of their own, through
the worker's read-only endpoint; the endpoint refuses writes and requests without its token; once the
worker has stopped, ``vitals query`` opens the engine itself again."""

from __future__ import annotations

import asyncio
import base64
import http.client
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import clickhouse_connect
import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from sinks import endpoint
from sinks.clickhouse import embedded_dir, embedded_dir_in_use
from streams.devtools.generator import GenConfig, History, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from tests.conftest import Deployment, make_deployment
from tests.oracle import expected_daily, valid_events
from tests.procs import wait_for

pytestmark = pytest.mark.integration

EVENTS_SQL = "SELECT sum(events) FROM user_activity_daily FINAL"


@dataclass
class Running:
    deployment: Deployment
    history: History
    worker: subprocess.Popen[bytes]
    engine_dir: str

    @property
    def events(self) -> int:
        return sum(counters[0] for counters in expected_daily(self.history).values())

    def cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-P", "-m", "streams.cli", *args], env=self.deployment.env,
                              capture_output=True, timeout=300)

    def assert_running(self) -> None:
        assert self.worker.poll() is None, "the worker exited"
        assert embedded_dir_in_use(self.deployment.settings.effective_clickhouse_dsn) == self.engine_dir


@pytest.fixture(scope="module")
def running(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    deployment = make_deployment(kafka_bootstrap, tmp_path_factory.mktemp("chserve"))
    settings = deployment.settings
    partitions = asyncio.run(prepare_topics(settings))
    history = generate(GenConfig(users=200, days=4, events=3_000, seed=26, batch=5, partitions=partitions,
                                 unkeyed_rate=0.0))
    asyncio.run(produce_history(settings, history))
    engine_dir = embedded_dir(settings.effective_clickhouse_dsn)
    assert engine_dir is not None
    worker = deployment.worker()
    try:
        wait_for_lag_zero(settings, worker, len(history.messages), timeout_s=600, progress=False)
        wait_for(lambda: endpoint.read_live(engine_dir), 60, "the worker's endpoint file")
        yield Running(deployment, history, worker, os.path.realpath(engine_dir))
    finally:
        stop_worker(worker)


def test_query_answers_while_the_worker_runs(running: Running) -> None:
    running.assert_running()
    assert running.deployment.query(EVENTS_SQL) == [[running.events]]
    done = running.cli("query", "--format", "table", "SELECT sum(events) AS events, count() > 0 AS any_rows "
                       "FROM user_activity_daily FINAL")
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert lines[0].split() == ["events", "any_rows"] and lines[2].split() == [str(running.events), "1"]
    assert lines[-1] == "(1 row)"


def test_a_sql_error_is_one_line_and_exit_1(running: Running) -> None:
    running.assert_running()
    for sql, name in (("SELEC 1", "SYNTAX_ERROR"), ("SELECT nope FROM user_activity_daily", "UNKNOWN_IDENTIFIER"),
                      ("SELECT 1 FROM no_such_table", "UNKNOWN_TABLE")):
        done = running.cli("query", sql)
        err = done.stderr.decode()
        assert done.returncode == 1 and done.stdout == b"", err
        assert err.count("\n") == 1 and err.startswith("vitals query: ") and name in err, err


def test_report_while_the_worker_runs(running: Running, tmp_path: Path) -> None:
    running.assert_running()
    out = tmp_path / "report.html"
    done = running.cli("report", "--no-kafka", "--out", str(out))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    html = out.read_text()
    assert "read through the running worker" in html
    assert f"{running.events:,}" in html  # the total of events


def test_inspect_while_the_worker_runs(running: Running) -> None:
    running.assert_running()
    event = valid_events(running.history)[0]
    done = running.cli("inspect", event.user_id, "--app", event.app_id, "--json")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    doc = orjson.loads(done.stdout)
    assert doc["found"] and doc["user_id"] == event.user_id
    # the segments, from ClickHouse through the running worker's endpoint (the engine is the worker's)
    assert "segments_error" not in doc and set(doc["segments"]) == {"current", "last_changes"}, doc.get(
        "segments_error")


def _post(served: endpoint.Endpoint, sql: str, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
    conn = http.client.HTTPConnection(served.host, served.port, timeout=30)
    try:
        conn.request("POST", "/", body=sql.encode(), headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("X-ClickHouse-Exception-Code"), response.read()
    finally:
        conn.close()


def test_the_endpoint_refuses_writes_and_requests_without_the_token(running: Running) -> None:
    running.assert_running()
    served = endpoint.read_live(running.engine_dir)
    assert served is not None and served.host == "127.0.0.1"
    assert stat.S_IMODE(os.stat(endpoint.path_in(running.engine_dir)).st_mode) == 0o600
    client = clickhouse_connect.get_client(host=served.host, port=served.port, username="vitals",
                                           password=served.token, autogenerate_session_id=False)
    try:
        assert client.query("SELECT sum(events) FROM vitals.user_activity_daily FINAL").result_rows == [
            (running.events,)]
        for statement in ("INSERT INTO vitals.alerts (alert_id) VALUES ('x')", "DROP TABLE vitals.alerts",
                          "ALTER TABLE vitals.user_activity_daily DELETE WHERE 1", "SET readonly = 0",
                          "SELECT 1 SETTINGS max_execution_time = 0"):
            with pytest.raises(DatabaseError) as refused:
                client.command(statement)
            assert refused.value.code == 164, statement  # READONLY, from the engine
        assert client.query("SELECT count() FROM vitals.alerts").result_rows[0][0] >= 0  # still there
    finally:
        client.close()
    status, code, _ = _post(served, "SELECT 1", {})
    assert (status, code) == (403, "516")
    wrong = base64.b64encode(b"vitals:" + b"x" * len(served.token)).decode()
    status, code, _ = _post(served, "SELECT 1", {"Authorization": f"Basic {wrong}"})
    assert (status, code) == (403, "516")
    status, code, body = _post(served, "SELECT 41 + 1", {"X-ClickHouse-Key": served.token})
    assert (status, code, body) == (200, None, b"42\n")
    running.assert_running()
    assert running.deployment.query(EVENTS_SQL) == [[running.events]]


def test_after_the_worker_stops_query_opens_the_engine(running: Running) -> None:
    assert stop_worker(running.worker) == 0
    assert not os.path.exists(endpoint.path_in(running.engine_dir))  # removed at the clean exit
    assert running.deployment.query(EVENTS_SQL) == [[running.events]]
