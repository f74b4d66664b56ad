"""Persistent local state (Faust's RocksDB store, written per partition by vitals): a worker killed
mid-run restarts from its local databases plus the changelog tail, and results stay exact."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from streams.kafka_io import changelog_topic, end_offsets
from streams.runner import stop_worker
from tests.conftest import Deployment
from tests.faultcheck import check_all
from tests.integration.test_faults import finish, poll, prepare, produce_rest, progressed

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
