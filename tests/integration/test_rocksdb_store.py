"""Persistent local state (Faust's RocksDB store, written per partition by vitals): a worker killed
mid-run restarts from its local databases plus the changelog tail, and results stay exact."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.kafka.offsets import end_offsets
from streams.kafka.topics import changelog_topic
from tests.conftest import Deployment
from tests.faultcheck import check_all
from tests.integration.test_faults import LAG_TIMEOUT_S, finish, poll, prepare, produce_rest, progressed

pytestmark = pytest.mark.integration


def persisted_offsets(data_dir: Path, table: str) -> dict[int, int]:
    """The changelog offset recorded in each partition database of ``table``."""
    from rocksdict import AccessType, Options, Rdict

    found: dict[int, int] = {}
    for db_dir in sorted(data_dir.glob(f"**/*{table}*.db/*.db")) or sorted(data_dir.glob(f"**/*{table}*-*.db")):
        partition = int(db_dir.name.rsplit(".", 1)[0].rsplit("-", 1)[-1])
        db = Rdict(str(db_dir), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            raw = db.get(b"__faust\x00offset__")
            if raw is not None:
                found[partition] = int(bytes(raw))
        finally:
            db.close()
    return found


def test_restart_recovers_from_local_rocksdb_and_changelog_tail(deployment: Deployment, tmp_path: Path) -> None:
    # the rest of the history comes after the kill, so the second worker has partitions to load
    # even when the first one had caught up with the first part before the kill
    first = 25_000
    history, partitions = prepare(deployment, tmp_path, seed=41, store="rocksdb", first=first)
    worker = deployment.worker("first")
    try:
        poll(lambda: progressed(deployment, first, 10_000), 180, "progress")
        worker.send_signal(signal.SIGKILL)  # the supervisor and its worker: no flush, no cleanup
        worker.wait()
        produce_rest(deployment, history, first)
        worker = deployment.worker("second")
    except BaseException:
        stop_worker(worker)
        raise
    finish(deployment, history, worker)
    data_dir = Path(deployment.env["VITALS_DATA_DIR"])
    changelog = changelog_topic(deployment.settings, "users")
    ends = asyncio.run(end_offsets(deployment.settings.kafka, changelog))
    recorded = persisted_offsets(data_dir, "users")
    assert recorded, f"no RocksDB partition databases with a persisted offset under {data_dir}"
    assert all(recorded[p] == ends[p] - 1 for p in recorded), (recorded, ends)
    log = (tmp_path / "second.log").read_text(errors="replace")
    assert "rebuilt indexes of" in log
    check_all(deployment, history, partitions, [data_dir])


def local_databases(data_dir: Path, table: str) -> dict[tuple[int, bytes], bytes]:
    """Every (partition, key) -> value in the RocksDB partition databases of ``table`` (Faust's own
    bookkeeping keys left out)."""
    from rocksdict import AccessType, Options, Rdict

    found: dict[tuple[int, bytes], bytes] = {}
    for db_dir in sorted(data_dir.glob(f"**/*{table}*.db/*.db")) or sorted(data_dir.glob(f"**/*{table}*-*.db")):
        partition = int(db_dir.name.rsplit(".", 1)[0].rsplit("-", 1)[-1])
        db = Rdict(str(db_dir), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                if not bytes(key).startswith(b"__faust"):
                    found[(partition, bytes(key))] = bytes(value)
        finally:
            db.close()
    return found


def test_kill_right_after_a_flush_is_taken_then_a_move_gives_exact_state(deployment: Deployment,
                                                                         tmp_path: Path) -> None:
    """A worker killed right after a flush job was taken — its states drained, the alerts of its last
    batch still in flight — restarts on the same volume. Its databases must not be ahead of the
    changelog: were they, the replay would take the job's events for applied, so their alerts never
    came and their states never reached the changelog. Then the partitions move to a worker with an
    empty volume, which restores them from the changelog: results stay exact."""
    first, crashed = 15_000, 15_600
    history, partitions = prepare(deployment, tmp_path, seed=43, store="rocksdb", first=first)
    settings, dirs = deployment.settings, [tmp_path / "w1", tmp_path / "w2"]
    plan = tmp_path / "faults.json"
    plan.write_text(json.dumps([["taken", 1]]))

    def run(name: str, data_dir: Path, total: int, **env: str) -> None:
        worker = deployment.worker(name, {"VITALS_DATA_DIR": str(data_dir), **env})
        try:
            wait_for_lag_zero(settings, worker, total, timeout_s=LAG_TIMEOUT_S, progress=False)
        finally:
            stop_worker(worker)

    run("w1", dirs[0], first)
    # a small slice: the restarted worker's first job takes it all, so nothing later rewrites its users
    asyncio.run(produce_history(settings, replace(history, messages=history.messages[first:crashed])))
    run("w1-killed", dirs[0], crashed, VITALS_FAULTS_FILE=str(plan))
    assert "fault injection: dying at 'taken'" in (tmp_path / "w1-killed.log").read_text(errors="replace")

    changelog: dict[tuple[int, bytes], bytes | None] = {}
    for record in deployment.read(changelog_topic(settings, "users")):
        changelog[(record.partition, record.key)] = record.value  # type: ignore[attr-defined]
    local = local_databases(dirs[0], "users")
    assert local, "no RocksDB partition databases"
    ahead = [key for key, value in local.items() if changelog.get(key) != value]
    assert not ahead, f"{len(ahead)} local states differ from their changelog, e.g. {ahead[:3]}"

    produce_rest(deployment, history, crashed)
    run("w2", dirs[1], len(history.messages))
    check_all(deployment, history, partitions, dirs)
