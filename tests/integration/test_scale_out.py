"""Scale-out: three worker processes in one consumer group on 12 partitions, one joining late and
one leaving early; partitions and their state move, and the results equal a single worker's
(exact aggregates, alerts, accounting — tests/faultcheck.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from streams.devtools.worker_process import stop_worker
from tests.conftest import Deployment, free_port
from tests.integration.test_faults import finish, poll, prepare, produce_rest, progressed

pytestmark = pytest.mark.integration


def test_three_workers_twelve_partitions_join_and_leave(deployment: Deployment, tmp_path: Path) -> None:
    from tests.faultcheck import check_accounting, check_aggregates, check_alerts, merged_final

    # a third of the history first, the rest once the late worker owns partitions: however fast
    # the workers are, the late one has work, and every worker owns partitions at some point
    first = 15_000
    history, partitions = prepare(deployment, tmp_path, seed=31, events=45_000, partitions=12, first=first)
    assert partitions == 12
    total = len(history.messages)
    dirs = [tmp_path / f"w{i}" for i in range(3)]

    def start(i: int):  # type: ignore[no-untyped-def]
        env = {"VITALS_DATA_DIR": str(dirs[i]), "VITALS_METRICS_PORT": str(free_port())}
        return deployment.worker(f"w{i}", env)

    def assigned(i: int) -> bool:
        return "assigned event partitions" in (tmp_path / f"w{i}.log").read_text(errors="replace")

    workers = [start(0), start(1)]
    try:
        poll(lambda: assigned(0) and assigned(1), 180, "both first workers' assignments")
        poll(lambda: progressed(deployment, first, 6000), 180, "progress with two workers")
        stop_worker(workers[1])  # leaves early, gracefully: flushes and hands its partitions over
        workers.append(start(2))  # joins late
        poll(lambda: assigned(2), 180, "the late worker's assignment")
        produce_rest(deployment, history, first)
        poll(lambda: progressed(deployment, total, 20000), 240, "progress after the changes")
    except BaseException:
        for w in workers:
            stop_worker(w)
        raise
    finish(deployment, history, workers[2], workers[0])
    logs = [(tmp_path / f"w{i}.log").read_text(errors="replace") for i in range(3)]
    assert all("assigned event partitions" in log for log in logs), "every worker owned partitions at some point"
    assert not any("consumption stalled" in log for log in logs), "no partition left behind by a rebalance"
    assert not any("Ignoring missing topic" in log for log in logs), "every table's changelog is assigned"
    got = merged_final(deployment, dirs)
    check_aggregates(got, history)  # exact, always
    check_accounting(deployment, history, sum(row[0] for row in got.values()))
    check_alerts(deployment, history, partitions)


def test_second_worker_on_the_same_data_dir_stops_with_a_configuration_error(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The embedded ClickHouse is one process per directory. A second worker started on a data dir
    whose engine the first worker holds used to take its share of the partitions and retry its
    ClickHouse writes for ever (the watchdog excuses a blocked flush), so the group never reached
    lag 0. It must stop at startup with exit code 2, not restarted, and the first worker carry on."""
    history, _ = prepare(deployment, tmp_path, seed=32, events=4000)
    first = deployment.worker("first")
    second = None
    try:
        poll(lambda: "metrics on http" in (tmp_path / "first.log").read_text(errors="replace"), 120,
             "the first worker's ClickHouse open")
        # same VITALS_DATA_DIR; a metrics port of its own (a taken one stops a worker before its ClickHouse)
        second = deployment.worker("second", {"VITALS_METRICS_PORT": str(free_port())})
        try:
            code = second.wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail("the second worker kept running on a data dir whose engine another process holds")
        assert code == 2
        log = (tmp_path / "second.log").read_text(errors="replace")
        assert "is in use by another process" in log and "VITALS_DATA_DIR" in log
        assert "worker exited with code" not in log, "a configuration error is not restarted"
        assert first.poll() is None
    except BaseException:
        stop_worker(first)
        raise
    finally:
        if second is not None:
            stop_worker(second)
    finish(deployment, history, first)
