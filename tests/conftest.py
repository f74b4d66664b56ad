"""Shared fixtures: the real local Kafka broker (session-wide) and worker processes; and the guard that
the tests leave the checkout as they found it (nothing modified, nothing new beside ignored files)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.config.settings import Settings, load_settings
from streams.devtools import local_kafka as localkafka
from tests.venvs import Installed, copy_as_cloned, install_fresh

ROOT = Path(__file__).resolve().parents[1]
_TREE_BEFORE = pytest.StashKey[set[str] | None]()


def tree_changes(root: Path = ROOT) -> set[str] | None:
    """``git status --porcelain`` of the checkout at ``root``: each modified, deleted or untracked path
    (not ignored ones: .venv, .vitals, caches), or None where ``root`` is not the top of a git work tree
    (an unpacked sdist, a copy) or git cannot say."""
    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return None

    top = git("rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
        return None  # not a checkout, or a folder inside another project's checkout
    status = git("status", "--porcelain", "--untracked-files=all", "--no-renames")
    if status is None or status.returncode != 0:
        return None
    return {line[3:] for line in status.stdout.splitlines() if line.strip()}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_TREE_BEFORE] = tree_changes(session.config.rootpath)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests changed the checkout: a path modified, deleted or created that was
    clean before the session (paths already changed before it are the developer's, and not judged)."""
    before = session.config.stash.get(_TREE_BEFORE, None)
    after = tree_changes(session.config.rootpath) if before is not None else None
    if before is None or after is None or not after - before:
        return
    paths = sorted(after - before)
    report = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"the tests changed the checkout ({session.config.rootpath}): `git status --porcelain` shows, new"
             " since the session started:", *(f"  {path}" for path in paths),
             "a test must write under tmp_path, never into the repository"]
    if report is not None:
        report.write_sep("=", "checkout changed by the tests", red=True, bold=True)
        for line in lines:
            report.write_line(line, red=True)
    else:
        print("\n".join(lines), file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts the local Kafka (the ``kafka_bootstrap`` fixture, also through ``deployment``)
    carries the ``integration`` marker, so ``-m "not integration"`` never starts a broker."""
    unmarked = [item.nodeid for item in items if "kafka_bootstrap" in getattr(item, "fixturenames", ())
                and item.get_closest_marker("integration") is None]
    if unmarked:
        raise pytest.UsageError(f"tests that start Kafka without the integration marker: {', '.join(unmarked)}")


def jsonl_rows(stdout: bytes | str) -> list[list[object]]:
    """``vitals query``'s JSON lines (one object per row) as lists of values in column order."""
    return [json.loads(line, object_pairs_hook=lambda pairs: [v for _, v in pairs])
            for line in stdout.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("kafka")
    bootstrap = localkafka.start(directory)
    try:
        yield bootstrap
    finally:
        localkafka.stop(directory)


@dataclass
class Deployment:
    """One isolated vitals deployment: its own app id, topics and data dir on the shared broker."""

    env: dict[str, str]
    base: Path

    @property
    def settings(self) -> Settings:
        return load_settings(env=self.env)

    def worker(self, name: str = "w0", extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = dict(self.env, **(extra_env or {}))
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115
        return subprocess.Popen([sys.executable, "-P", "-m", "streams.cli", "worker", "--loglevel", "INFO"], env=env,
                                stdout=log, stderr=log)

    def query(self, sql: str) -> list[list[object]]:
        done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", "query", sql], env=self.env, check=True,
                              capture_output=True, timeout=300)
        return jsonl_rows(done.stdout)

    def read(self, topic: str) -> list[object]:
        from streams.kafka.read import read_topic

        return asyncio.run(read_topic(self.settings.kafka, topic))


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Deployment:
    return make_deployment(kafka_bootstrap, tmp_path)


def make_deployment(kafka_bootstrap: str, tmp_path: Path) -> Deployment:
    app_id = f"t{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_")}
    env.update({
        "VITALS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "VITALS_APP_ID": app_id,
        "VITALS_EVENTS_TOPIC": f"{app_id}.events",
        "VITALS_ALERTS_TOPIC": f"{app_id}.alerts",
        "VITALS_DLQ_TOPIC": f"{app_id}.events.dlq",
        "VITALS_SEGMENTS_TOPIC": f"{app_id}.segments",
        "VITALS_DATA_DIR": str(tmp_path / "data"),
        "VITALS_METRICS_PORT": str(free_port()),
    })
    return Deployment(env, tmp_path)


@pytest.fixture(scope="session")
def installed_vitals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """vitals as a newcomer installs it, once per session: the repository as a fresh clone has it, and
    ``pip install .`` (not editable) into a fresh venv outside the checkout (tests/venvs.py)."""
    base = tmp_path_factory.mktemp("installed")
    source = copy_as_cloned(base / "clone")
    installed = install_fresh(base / "venv", source)
    shutil.rmtree(source)  # the installed copy must not need its source
    print(f"fresh venv and pip install . (not editable): {installed.install_s:.0f} s", file=sys.stderr)
    try:
        yield installed
    finally:
        shutil.rmtree(base, ignore_errors=True)  # the venv is large (the chdb engine)
