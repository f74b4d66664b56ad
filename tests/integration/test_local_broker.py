"""A newcomer's first hour on one local broker (issue 26, items 1 and 4), through the ``vitals`` command in a
fresh directory: ``vitals kafka start`` records its address and the next command uses it; the refusals;
``vitals run`` twice on that broker, each summary its own run's only, the broker left running; a run with no
broker running starts the recorded one and stops it."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.config.settings import load_settings
from streams.kafka.offsets import end_offsets
from tests.conftest import free_port, jsonl_rows

pytestmark = pytest.mark.integration

SUMMARY = re.compile(r"events counted \(deduplicated\): ([\d,]+)\s+users: ([\d,]+)\s+days: (\d+)")


def vitals(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_") or k == "VITALS_KAFKA_LIBS"}
    return subprocess.run([sys.executable, "-P", "-m", "streams.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A fresh working directory; its local broker is stopped after the test, whatever happened."""
    try:
        yield tmp_path
    finally:
        vitals(tmp_path, "kafka", "stop")


def counts(out: str) -> tuple[int, int, int]:
    found = SUMMARY.search(out)
    assert found, out
    events, users, days = (int(g.replace(",", "")) for g in found.groups())
    return events, users, days


def run_id_of(err: str) -> str:
    found = re.search(r"^vitals run (\S+): app id", err, re.M)
    assert found, err
    return found.group(1)


def generated(users: int, events: int, days: int = 21) -> tuple[int, int]:
    """Events and users of the history ``vitals run`` generates with these sizes (the generator is deterministic;
    its events are exactly those asked for, duplicates and invalid ones included)."""
    from streams.devtools.generator import GenConfig, generate

    history = generate(GenConfig(users=users, events=events, days=days, seed=1, batch=1, partitions=8))
    user_ids: set[str] = set()
    for message in history.messages:
        try:
            doc = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            continue
        for event in doc if isinstance(doc, list) else [doc]:
            if isinstance(event, dict) and isinstance(event.get("user_id"), str):
                user_ids.add(event["user_id"])
    return history.n_events, len(user_ids)


def query(cwd: Path, run: str, sql: str) -> list[object]:
    done = vitals(cwd, "query", "--run", run, sql)
    assert done.returncode == 0, done.stderr
    return jsonl_rows(done.stdout)


def test_one_local_broker_from_start_to_two_runs(home: Path) -> None:
    port = free_port()
    started = vitals(home, "kafka", "start", "--port", str(port))
    assert started.returncode == 0, started.stderr
    bootstrap = f"127.0.0.1:{port}"
    assert started.stdout.strip() == bootstrap
    assert (home / ".vitals/kafka/bootstrap").read_text().strip() == bootstrap
    pid = (home / ".vitals/kafka/kafka.pid").read_text().strip()

    # the next command finds it and says so
    status = vitals(home, "kafka", "status")
    assert (status.returncode, status.stdout.strip()) == (0, bootstrap), status.stderr
    produced = vitals(home, "generate", "--users", "20", "--events", "200")
    assert produced.returncode == 0, produced.stderr
    assert (f"vitals: Kafka at {bootstrap} (the local broker recorded in .vitals/kafka/bootstrap)\n"
            in produced.stderr)
    settings = load_settings(env={"VITALS_KAFKA_BOOTSTRAP": bootstrap})
    assert sum(asyncio.run(end_offsets(settings.kafka, settings.events_topic)).values()) > 0

    # refusals: one line, exit 2
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        refused = vitals(home, "kafka", "start", "--dir", str(home / "other"), "--port", str(taken))
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == f"vitals kafka: port {taken} is taken by another process: choose another --port\n"
    other = free_port()
    refused = vitals(home, "kafka", "start", "--port", str(other))
    assert (refused.returncode, refused.stdout, refused.stderr.count("\n")) == (2, "", 1), refused.stderr
    assert f".vitals/kafka holds a broker made for port {port}, not {other}" in refused.stderr

    # two runs on the running broker: each its own
    first = vitals(home, "run", "--users", "300", "--events", "3000", "--no-report")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"Kafka at {bootstrap} (the local broker of .vitals/kafka, left running)" in first.stderr
    second = vitals(home, "run", "--users", "500", "--events", "5000", "--days", "7")
    assert second.returncode == 0, second.stderr[-3000:]
    (e1, u1, d1), (e2, u2, d2) = counts(first.stdout), counts(second.stdout)
    print(first.stdout, first.stderr, second.stdout, second.stderr, sep="\n")  # shown when the test fails
    (n1, users1), (n2, users2) = generated(300, 3000), generated(500, 5000, 7)
    # deduplicated: at most what was generated, and most of it; the first run's events are not in the second's
    assert 0.9 * n1 < e1 <= n1 and 0.9 * users1 < u1 <= users1 and d1 <= 22, first.stdout
    assert 0.9 * n2 < e2 <= n2 and 0.9 * users2 < u2 <= users2 and d2 <= 8, second.stdout
    assert e2 < n1 + 0.9 * n2  # what the second run would count with the first's mixed in
    run1, run2 = run_id_of(first.stderr), run_id_of(second.stderr)
    assert run1 != run2
    assert (home / f".vitals/runs/{run2}/report.html").is_file()
    sql = "SELECT sum(events), uniqExact(app_id, user_id) FROM user_activity_daily FINAL"
    assert query(home, run1, sql) == [[e1, u1]]
    assert query(home, "latest", sql) == [[e2, u2]]
    app, user = query(home, run1, "SELECT app_id, user_id FROM user_activity_daily FINAL ORDER BY user_id LIMIT 1")[0]
    inspected = vitals(home, "inspect", str(user), "--app", str(app), "--run", run1, "--json")
    assert inspected.returncode == 0 and orjson.loads(inspected.stdout)["found"], inspected.stderr
    status = vitals(home, "kafka", "status")
    assert status.returncode == 0 and f"pid {pid}," in status.stderr, status.stderr  # the same broker, still up

    # no broker running: the run starts the recorded one (its port) and stops it
    assert vitals(home, "kafka", "stop").returncode == 0
    third = vitals(home, "run", "--users", "50", "--events", "500", "--no-report")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "starting the local Kafka broker in .vitals/kafka (stopped at the end" in third.stderr
    e3, u3, _ = counts(third.stdout)
    n3, users3 = generated(50, 500)
    assert 0.9 * n3 < e3 <= n3 and 0.9 * users3 < u3 <= users3, third.stdout
    assert (home / ".vitals/kafka/bootstrap").read_text().strip() == bootstrap
    assert vitals(home, "kafka", "status").returncode == 1
