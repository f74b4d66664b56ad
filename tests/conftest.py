"""Shared fixtures: the real local Kafka broker (session-wide) and worker processes."""

from __future__ import annotations

import asyncio
import json
import os
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
        "VITALS_DATA_DIR": str(tmp_path / "data"),
        "VITALS_METRICS_PORT": str(free_port()),
    })
    return Deployment(env, tmp_path)
