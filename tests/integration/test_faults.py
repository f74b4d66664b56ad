"""Fault injection on the real broker and the real ClickHouse engine: kill it, cut the broker,
take ClickHouse away, move partitions between workers — then everything must still be exact
(tests/faultcheck.py: aggregates, alerts, accounting). Each test is seeded and stops what it starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from streams.devtools import local_kafka as localkafka
from streams.devtools.generator import WEIGHTS, GenConfig, History, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import consumer_lag, stop_worker, wait_for_lag_zero
from streams.kafka.offsets import committed_offsets
from streams.kafka.topics import prepare_topics
from tests.conftest import Deployment, free_port, make_deployment
from tests.faultcheck import check_all, write_config
from tests.procs import process_tree

pytestmark = pytest.mark.integration

LAG_TIMEOUT_S = float(os.environ.get("VITALS_TEST_LAG_TIMEOUT", "420"))


def poll(condition, timeout_s: float, what: str, every_s: float = 0.5) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise TimeoutError(f"{what} did not happen within {timeout_s:.0f}s")


def prepare(deployment: Deployment, tmp_path: Path, seed: int, events: int = 40_000, partitions: int = 8,
            first: int | None = None, weights: tuple[int, ...] = WEIGHTS, **processing: float | str
            ) -> tuple[History, int]:
    """Generate a history and produce it (only its ``first`` messages when given: see ``produce_rest``)."""
    deployment.env["VITALS_CONFIG"] = str(write_config(tmp_path / "vitals.toml", partitions, **processing))
    n = asyncio.run(prepare_topics(deployment.settings))
    cfg = GenConfig(users=1200, days=14, events=events, seed=seed, batch=1, partitions=n, unkeyed_rate=0.0,
                    dup_rate=0.02, invalid_rate=0.005, weights=weights)
    history = generate(cfg)
    asyncio.run(produce_history(deployment.settings, replace(history, messages=history.messages[:first])))
    return history, n


def produce_rest(deployment: Deployment, history: History, first: int) -> None:
    asyncio.run(produce_history(deployment.settings, replace(history, messages=history.messages[first:])))


def progressed(deployment: Deployment, total: int, at_least: int) -> bool:
    try:
        return total - asyncio.run(consumer_lag(deployment.settings)) >= at_least
    except Exception:  # the group may not exist yet
        return False


def worker_child(supervisor_pid: int) -> int | None:
    tree = process_tree(supervisor_pid)
    return tree[1] if len(tree) > 1 else None


def finish(deployment: Deployment, history: History, *workers) -> None:  # type: ignore[no-untyped-def]
    try:
        wait_for_lag_zero(deployment.settings, workers[0], len(history.messages), timeout_s=LAG_TIMEOUT_S,
                          progress=False)
    finally:
        for w in workers:
            stop_worker(w)


# personas (streams/devtools/generator.py PERSONAS): more churners, hollow users, bots and device farms than usual
DENSE = (22, 8, 6, 18, 8, 12, 13, 13)
PLANNED = [["batch", 4], ["taken", 2], ["kafka", 3], ["clickhouse", 2], ["inserted", 3], ["changelog", 2],
           ["recovery", 1], ["batch", 9], ["taken", 5], ["kafka", 1], ["clickhouse", 5], ["inserted", 1],
           ["changelog", 6], ["recovery", 2]]


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_22_kills_planned_and_random_lose_no_alert(deployment: Deployment, tmp_path: Path, store: str) -> None:
    """Two planned crashes at every stage of a flush (and, restoring the whole changelog, during
    recovery), then SIGKILLs at random points — 22 deaths — over a history dense in bursts, device
    farms and day rules; the supervisor restarts the worker every time. Every alert of the oracle
    comes (tests/faultcheck.py) and duplicates stay rare: the alert fence holds back what a replay
    fires again (streams/worker/fence.py)."""
    # small fetches and flushes: many passes through every crash point before the backlog is done
    history, partitions = prepare(deployment, tmp_path, seed=21, events=50_000, weights=DENSE, store=store,
                                  batch_max_messages=500, flush_max_rows=2000)
    # RocksDB restores only the changelog tail, which may be empty: no crash planned in recovery
    planned = [entry for entry in PLANNED if store == "memory" or entry[0] != "recovery"]
    plan = tmp_path / "faults.json"
    plan.write_text(json.dumps(planned))
    worker = deployment.worker("crashy", {"VITALS_FAULTS_FILE": str(plan)})
    kills = 22 - len(planned)
    try:
        poll(lambda: json.loads(plan.read_text()) == [], 600, "the planned crashes")
        rng = random.Random(7)
        killed = 0
        while killed < kills:  # and SIGKILL the worker process at random points
            poll(lambda: worker_child(worker.pid) is not None, 60, "a restarted worker")
            time.sleep(rng.uniform(4.0, 9.0))  # startup takes a few seconds: most land mid-stream
            child = worker_child(worker.pid)
            if child is not None:  # (None: it is being restarted)
                os.kill(child, signal.SIGKILL)
                killed += 1
        left = len(history.messages) - (asyncio.run(consumer_lag(deployment.settings)))
    except BaseException:
        stop_worker(worker)
        raise
    finish(deployment, history, worker)
    log = (tmp_path / "crashy.log").read_text(errors="replace")
    assert log.count("fault injection: dying at") == len(planned), "every planned crash happened"
    assert log.count("worker exited with code") >= 22, "the supervisor restarted the worker after each death"
    if store == "memory":
        assert "changelog records a fetch at a time" in log, \
            "restarts restored the tables in bulk (streams/worker/restore.py)"
    check_all(deployment, history, partitions, [Path(deployment.env["VITALS_DATA_DIR"])])
    from tests.integration.test_alerts_oracle import read_alerts

    got, duplicates = read_alerts(deployment)
    assert {a[2] for a in got} >= {"fake.burst", "fake.device_farm", "churn.activity_drop", "fake.hollow_activity"}
    print(f"\n{store}: 22 deaths, {duplicates} duplicate alerts of {len(got)} ({100 * duplicates / len(got):.2f}%, "
          f"{duplicates / 22:.1f} per death); {left} of {len(history.messages)} messages committed at the last kill")
    assert duplicates <= 0.05 * len(got), f"{duplicates} duplicates of {len(got)} alerts"


def test_crashes_around_the_outcome_gates_keep_outcome_counts_exact(deployment: Deployment, tmp_path: Path) -> None:
    """Crashes on each side of the event outcome gates (streams/worker/outcome_gates.py): after the rows
    are in ClickHouse (gate not durable: the restarted worker's row replaces the lost one), after the
    gate but before the states (the replay's outcomes are not counted again although its states say
    nothing of them), after the states (a plain replay). The counts stay exact (tests/faultcheck.py)."""
    history, partitions = prepare(deployment, tmp_path, seed=26, events=15_000, batch_max_messages=300,
                                  flush_max_rows=1500)
    plan = tmp_path / "faults.json"
    plan.write_text(json.dumps([["inserted", 2], ["gated", 2], ["changelog", 2], ["gated", 4], ["inserted", 3]]))
    worker = deployment.worker("gates", {"VITALS_FAULTS_FILE": str(plan)})
    try:
        poll(lambda: json.loads(plan.read_text()) == [], 600, "the planned crashes")
    except BaseException:
        stop_worker(worker)
        raise
    finish(deployment, history, worker)
    assert (tmp_path / "gates.log").read_text(errors="replace").count("fault injection: dying at") == 5
    check_all(deployment, history, partitions, [Path(deployment.env["VITALS_DATA_DIR"])])


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    directory = tmp_path / "kafka"
    bootstrap = localkafka.start(directory)
    try:
        yield directory, bootstrap
    finally:
        localkafka.stop(directory, kill=True)


def test_broker_down_30s_worker_resumes_on_its_own(own_broker: tuple[Path, str], tmp_path: Path) -> None:
    directory, bootstrap = own_broker
    deployment = make_deployment(bootstrap, tmp_path)
    history, partitions = prepare(deployment, tmp_path, seed=22)
    worker = deployment.worker("w")
    try:
        poll(lambda: progressed(deployment, len(history.messages), 3000), 120, "first commits")
        localkafka.stop(directory, kill=True)  # SIGKILL the broker mid-run
        time.sleep(30)  # the fault: the broker stays down for 30 s
        assert worker.poll() is None
        localkafka.start(directory)
    except BaseException:
        stop_worker(worker)
        raise
    finish(deployment, history, worker)
    check_all(deployment, history, partitions, [Path(deployment.env["VITALS_DATA_DIR"])])


class HangingListener:
    """Accepts TCP connections and never answers (a ClickHouse that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def scrape(deployment: Deployment, port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_clickhouse_unavailable_pauses_commits_nothing_then_exactly_once(deployment: Deployment,
                                                                          tmp_path: Path) -> None:
    cap = 300_000  # >= flush_max_rows (250k by default)
    history, partitions = prepare(deployment, tmp_path, seed=23, events=30_000, sink_buffer_cap_rows=cap)
    topic = deployment.settings.events_topic

    def nothing_committed() -> bool:
        committed = asyncio.run(committed_offsets(deployment.settings.kafka, deployment.settings.app_id, topic))
        return not any(committed.values())

    refusing = free_port()  # nothing listens there
    port = free_port()
    worker = deployment.worker("refused", {"VITALS_CLICKHOUSE_DSN": f"http://127.0.0.1:{refusing}/",
                                           "VITALS_METRICS_PORT": str(port)})
    try:
        def retrying() -> bool:
            try:
                text = scrape(deployment, port)
            except OSError:
                return False
            return metric(text, 'vitals_sink_retries_total{sink="user_activity_daily"}') >= 3

        poll(retrying, 120, "ClickHouse write retries")
        text = scrape(deployment, port)
        assert metric(text, "vitals_sink_buffered_rows") <= cap
        assert metric(text, "vitals_sink_rows_total") == 0
        assert nothing_committed(), "offsets were committed past data ClickHouse never got"
    finally:
        worker.send_signal(signal.SIGKILL)  # supervisor: its worker dies with it
        worker.wait()

    hanging = HangingListener()
    worker = deployment.worker("hanging", {"VITALS_CLICKHOUSE_DSN": f"http://127.0.0.1:{hanging.port}/"})
    try:
        poll(lambda: len(hanging.accepted) >= 1, 120, "a connection to the hanging ClickHouse")
        assert worker.poll() is None and nothing_committed()
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        hanging.close()

    worker = deployment.worker("healthy")  # the embedded engine again
    finish(deployment, history, worker)
    check_all(deployment, history, partitions, [Path(deployment.env["VITALS_DATA_DIR"])])
    log = (tmp_path / "refused.log").read_text(errors="replace")
    assert "sink user_activity_daily write failed" in log


def test_second_worker_joins_first_is_killed_and_restarted(deployment: Deployment, tmp_path: Path) -> None:
    history, partitions = prepare(deployment, tmp_path, seed=24)
    total = len(history.messages)
    dirs = [tmp_path / "w1", tmp_path / "w2"]

    def start(i: int):  # type: ignore[no-untyped-def]
        env = {"VITALS_DATA_DIR": str(dirs[i]), "VITALS_METRICS_PORT": str(free_port())}
        return deployment.worker(f"w{i + 1}", env)

    w1 = start(0)
    w2 = None
    try:
        poll(lambda: progressed(deployment, total, 2000), 120, "first commits")
        w2 = start(1)
        poll(lambda: progressed(deployment, total, 8000), 180, "progress with two workers")
        w1.send_signal(signal.SIGKILL)
        w1.wait()
        poll(lambda: progressed(deployment, total, 14000), 180, "progress after the kill")
        w1 = start(0)
    except BaseException:
        for w in (w1, w2):
            if w is not None:
                stop_worker(w)
        raise
    finish(deployment, history, w2, w1)
    check_all(deployment, history, partitions, dirs)
