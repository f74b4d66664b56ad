"""The real ``vitals worker`` (supervised, as users start it) for each common mistake: exit code 2 with
one line on stderr naming the setting and its source, no traceback, no restart loop. And a broker that
is not up: the waiting line, then exit code 2 after ``kafka.startup_wait_s``. No broker is needed: each
mistake is found before Kafka is used."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.ops.exit_codes import CONFIG
from tests.conftest import free_port

pytestmark = pytest.mark.integration

BOUND_S = 30.0  # each run returns well within this (it takes about a second)


def run(tmp_path: Path, env: dict[str, str], toml: str | None = None,
        command: tuple[str, ...] = ("worker",)) -> tuple[subprocess.CompletedProcess[str], float]:
    """``python -m streams.cli COMMAND`` with a clean VITALS_* environment, its own data dir and a free
    metrics port, plus ``env`` (and ``toml`` as the config file)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_")}
    base.update(VITALS_DATA_DIR=str(tmp_path / "data"), VITALS_METRICS_PORT=str(free_port()))
    if toml is not None:
        (tmp_path / "vitals.toml").write_text(toml)
        base["VITALS_CONFIG"] = str(tmp_path / "vitals.toml")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", *command], env=base | env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=BOUND_S * 2)
    return done, time.monotonic() - started


def assert_one_line(done: subprocess.CompletedProcess[str], elapsed: float, *names: str) -> str:
    assert done.returncode == CONFIG, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitals: configuration error: "), done.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert elapsed < BOUND_S
    return lines[0]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process would hold: bound and listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_bootstrap_port_that_is_no_number(tmp_path: Path) -> None:
    done, elapsed = run(tmp_path, {"VITALS_KAFKA_BOOTSTRAP": "127.0.0.1:notaport"})
    assert_one_line(done, elapsed, "kafka.bootstrap = '127.0.0.1:notaport' (from VITALS_KAFKA_BOOTSTRAP)",
                    "port 'notaport' is not a number")


def test_a_bootstrap_host_that_does_not_resolve(tmp_path: Path) -> None:
    # startup_wait_s 0: a resolver that cannot answer at all (EAI_AGAIN, waited for) fails at once too
    done, elapsed = run(tmp_path, {"VITALS_KAFKA_BOOTSTRAP": "nosuchhost.invalid:9092"},
                        "[kafka]\nstartup_wait_s = 0\n")
    assert_one_line(done, elapsed, "nosuchhost.invalid", "(from VITALS_KAFKA_BOOTSTRAP)")


def test_a_metrics_port_held_by_another_process(tmp_path: Path, held_port: int) -> None:
    done, elapsed = run(tmp_path, {"VITALS_METRICS_PORT": str(held_port)})
    assert_one_line(done, elapsed, f"metrics port {held_port} (from VITALS_METRICS_PORT) is already in use")


def test_a_misspelled_variable(tmp_path: Path) -> None:
    done, elapsed = run(tmp_path, {"VITALS_METRIC_PORT": "9465"})
    assert_one_line(done, elapsed, "unknown environment variable VITALS_METRIC_PORT",
                    "did you mean VITALS_METRICS_PORT?")


def test_an_unknown_key_in_the_config_file(tmp_path: Path) -> None:
    done, elapsed = run(tmp_path, {}, '[kafka]\nbootstrp = "127.0.0.1:9092"\n')
    assert_one_line(done, elapsed, f"config file {tmp_path / 'vitals.toml'}: unknown key kafka.bootstrp",
                    "did you mean kafka.bootstrap?")


def test_a_broker_not_up_is_waited_for_then_a_configuration_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done, elapsed = run(tmp_path, {"VITALS_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}, "[kafka]\nstartup_wait_s = 2\n")
    assert done.returncode == CONFIG, done.stderr
    assert "Traceback" not in done.stderr
    *waiting, last = done.stderr.splitlines()
    assert waiting == [f"vitals: waiting for Kafka at 127.0.0.1:{port} (from VITALS_KAFKA_BOOTSTRAP): "
                       "connection refused; retrying"]  # one line: the next would come after 10 s
    assert last.startswith(f"vitals: configuration error: Kafka at 127.0.0.1:{port} (from VITALS_KAFKA_BOOTSTRAP) "
                           "is not reachable: connection refused (waited 2 s")
    assert 2 <= elapsed < BOUND_S


# `report` does without Kafka: the report is written without its Kafka parts (test_quiet_outputs.py)
@pytest.mark.parametrize("command", [("generate",), ("replay",), ("inspect", "u1")])
def test_the_other_commands_that_use_kafka_give_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    port = free_port()
    done, elapsed = run(tmp_path, {"VITALS_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}, "[kafka]\nstartup_wait_s = 0\n",
                        command)
    assert_one_line(done, elapsed, f"Kafka at 127.0.0.1:{port} (from VITALS_KAFKA_BOOTSTRAP) is not reachable")
