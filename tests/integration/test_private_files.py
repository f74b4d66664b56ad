"""Personal data is its owner's only (issue 24, item 8): after a worker processed a history on the real
broker and wrote its rows to the embedded ClickHouse, nothing under the data directory is readable,
writable or searchable by group or others; an engine directory an earlier version left world-readable
is narrowed when opened."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streams.devtools.generator import GenConfig, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from tests.conftest import Deployment

pytestmark = pytest.mark.integration

# the engine as an earlier vitals left it: created under the usual umask 022 (directories 0755, files 0644)
OLD_ENGINE = """
import os, sys
os.umask(0o022)
import clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
client.command("CREATE DATABASE IF NOT EXISTS vitals")
client.command("CREATE TABLE vitals.old_notes (x String) ENGINE = MergeTree ORDER BY x")
client.command("INSERT INTO vitals.old_notes VALUES ('someone''s personal data')")
client.close()
"""


def exposed(root: Path) -> list[str]:
    """Every file or directory under ``root`` (itself included) with a group or other permission bit."""
    out = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            out.append(f"{stat.filemode(mode)} {path.relative_to(root)}")
    return out


def test_nothing_under_the_data_dir_is_readable_by_others(deployment: Deployment) -> None:
    data = Path(deployment.env["VITALS_DATA_DIR"])
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # whatever the test's umask: as wide as an earlier version made it
    subprocess.run([sys.executable, "-P", "-c", OLD_ENGINE, str(data / "clickhouse")], check=True, timeout=300)
    assert len(exposed(data)) > 10  # the trap: the engine's own files are world-readable under umask 022

    settings = deployment.settings
    partitions = asyncio.run(prepare_topics(settings))
    history = generate(GenConfig(users=60, days=6, events=3_000, seed=5, batch=5, partitions=partitions))
    asyncio.run(produce_history(settings, history))
    worker = deployment.worker()
    try:
        wait_for_lag_zero(settings, worker, len(history.messages), timeout_s=600, progress=False)
    finally:
        assert stop_worker(worker) == 0
    files = [p for p in data.rglob("*") if p.is_file()]
    assert len(files) > 50, "the walk sees the engine's parts"
    assert not exposed(data), "\n".join(exposed(data)[:40])  # as the worker left it (a query narrows too)
    rows = deployment.query("SELECT count() FROM vitals.user_activity_daily FINAL")[0][0]
    assert isinstance(rows, int) and rows > 60
    assert deployment.query("SELECT count() FROM vitals.old_notes") == [[1]]  # the old data is still there
