"""The worker's query endpoint (sinks/query_server.py) and the readers' choice of client (sinks/reader.py), on
the real embedded engine, without Kafka: limits enforced by the engine, a long query beside the sink's
inserts, a stale endpoint file, an engine held by a process that does not serve queries."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from sinks import endpoint
from sinks.clickhouse import ActivitySink, ClickHouse
from sinks.columns import ActivityColumns
from sinks.query_server import LIMITS, QueryServer
from sinks.reader import EngineBusy, ServedClickHouse, open_reader
from streams.config.settings import load_settings

pytestmark = pytest.mark.integration

LONG_SQL = "SELECT sum(cityHash64(number)) FROM numbers(4000000000)"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ClickHouse]:
    ch = ClickHouse(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    ch.ensure_schema()
    try:
        yield ch
    finally:
        ch.close()


def _client(server: QueryServer) -> object:
    e = server.endpoint
    return clickhouse_connect.get_client(host=e.host, port=e.port, username="vitals", password=e.token,
                                         autogenerate_session_id=False, send_receive_timeout=120)


def test_limits_are_the_engines(engine: ClickHouse) -> None:
    server = QueryServer(engine.client().path, limits={**LIMITS, "max_execution_time": "1",
                                                       "max_result_bytes": str(1 << 20)}).start()
    client = _client(server)
    try:
        with pytest.raises(DatabaseError) as slow:
            client.query(LONG_SQL)  # type: ignore[attr-defined]
        assert slow.value.code == 159  # TIMEOUT_EXCEEDED
        with pytest.raises(DatabaseError) as lift:
            client.query("SELECT 1 SETTINGS max_execution_time = 100")  # type: ignore[attr-defined]
        assert lift.value.code == 164  # READONLY
        with pytest.raises(DatabaseError) as big:
            client.query("SELECT number FROM numbers(10000000)")  # type: ignore[attr-defined]
        assert big.value.code == 396  # TOO_MANY_ROWS_OR_BYTES
        for _ in range(3):  # each connection: none answers with what a failed query left behind
            assert client.query("SELECT 1").result_rows == [(1,)]  # type: ignore[attr-defined]
    finally:
        client.close()  # type: ignore[attr-defined]
        server.stop()
    assert endpoint.read(server.engine_dir) is None


def _insert_latencies(ch: ClickHouse, rounds: int, day0: int) -> list[float]:
    sink, took = ActivitySink(ch, 10_000), []
    for i in range(rounds):
        rows = [("default", f"u{j}", day0 + i % 20, j + 1, 1, 0, 0, 0, 0, 0) for j in range(2_000)]
        start = time.perf_counter()
        sink.write([ActivityColumns.from_rows(rows)])
        took.append(time.perf_counter() - start)
    return took


def test_a_long_query_does_not_hold_up_the_sinks_inserts(engine: ClickHouse) -> None:
    server = QueryServer(engine.client().path).start()
    client = _client(server)
    try:
        alone = _insert_latencies(engine, 20, 20_000)
        failed: list[BaseException] = []

        def long_query() -> None:
            try:
                client.query(LONG_SQL)  # type: ignore[attr-defined]
            except BaseException as exc:  # reported below
                failed.append(exc)

        thread = threading.Thread(target=long_query)
        thread.start()
        time.sleep(0.5)  # the query under way (a head start, not a condition: checked below)
        beside = _insert_latencies(engine, 20, 20_100)
        assert thread.is_alive(), "the long query ended before the inserts: nothing was measured"
        thread.join(120)
        assert not failed, failed
        print(f"insert of 2000 rows: alone max {max(alone) * 1000:.0f} ms, "
              f"beside a long query max {max(beside) * 1000:.0f} ms")
        assert max(beside) < max(2.0, 10 * max(alone))
        assert engine.query("SELECT count() FROM vitals.user_activity_daily")[0][0] == 40 * 2_000
    finally:
        client.close()  # type: ignore[attr-defined]
        server.stop()


def test_a_stale_endpoint_file_is_ignored(tmp_path: Path) -> None:
    settings = load_settings(env={"VITALS_DATA_DIR": str(tmp_path / "data")})
    engine_dir = str(tmp_path / "data" / "clickhouse")
    os.makedirs(engine_dir)
    gone = subprocess.Popen([sys.executable, "-I", "-c", "pass"])
    gone.wait()
    endpoint.write(engine_dir, endpoint.Endpoint("127.0.0.1", 9, "t", gone.pid))  # a killed worker's
    assert endpoint.read(engine_dir) is not None and endpoint.read_live(engine_dir) is None
    ch = open_reader(settings)
    try:
        assert not isinstance(ch, ServedClickHouse)
        assert ch.query("SELECT count() FROM user_activity_daily") == [(0,)]  # opened here, schema made
    finally:
        ch.close()


def test_an_engine_held_by_a_process_that_does_not_serve_is_one_line(tmp_path: Path) -> None:
    engine_dir = tmp_path / "data" / "clickhouse"
    holder = subprocess.Popen(
        [sys.executable, "-I", "-c", "import chdb, sys; c = chdb.connect(sys.argv[1]); print('held', flush=True); "
         "sys.stdin.read()", str(engine_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_")}
        env["VITALS_DATA_DIR"] = str(tmp_path / "data")
        with pytest.raises(EngineBusy):
            open_reader(load_settings(env=env))
        done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", "query", "SELECT 1"], env=env,
                              capture_output=True, timeout=120)
        err = done.stderr.decode()
        assert done.returncode == 1 and err.count("\n") == 1 and "held by another process" in err, err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)


def test_a_reader_resetting_its_connection_prints_no_traceback(engine: ClickHouse,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    """A `vitals query` process that ends with its keep-alive connection open resets it: the worker's
    stderr must not get socketserver's traceback for that (the newcomer saw three per session)."""
    import socket
    import struct

    server = QueryServer(engine.client().path).start()
    try:
        for _ in range(3):
            with socket.create_connection((server.endpoint.host, server.endpoint.port), timeout=10) as s:
                s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(1024).startswith(b"HTTP/1.1 200")
                s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nSELECT")  # cut mid-body
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        with socket.create_connection((server.endpoint.host, server.endpoint.port), timeout=10) as s:
            s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 200")  # still serving
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err
