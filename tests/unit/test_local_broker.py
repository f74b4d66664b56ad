"""One local broker address everywhere (issue 26, items 1 and 4), without Kafka: which bootstrap the settings
get when none is configured (streams/config/local_broker.py), the port ``vitals kafka start`` gives the
broker and when it refuses (streams/devtools/local_kafka.py, deploy/kafka/kafka.sh), and the run records
``--run`` reads (streams/cli/runs.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.cli import main as vitals
from streams.cli import runs
from streams.config import local_broker
from streams.config.settings import ConfigError, Settings, load_settings
from streams.devtools import local_kafka


@pytest.fixture(autouse=True)
def unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    """No bootstrap in this process's environment (whatever the shell running the tests has)."""
    for name in ("VITALS_KAFKA_BOOTSTRAP", "VITALS_CONFIG", "VITALS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def settings_in(data_dir: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """A command's settings (from the process's environment) with ``data_dir`` as its data directory."""
    monkeypatch.setenv("VITALS_DATA_DIR", str(data_dir))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.fixture
def fake_broker() -> Iterator[subprocess.Popen[bytes]]:
    """A live process with the broker's main class on its command line, as kafka.sh starts one."""
    proc = subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(120)", "kafka.Kafka"])
    try:
        deadline = time.monotonic() + 30
        while b"kafka.Kafka" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # until it has exec'd
            assert time.monotonic() < deadline, "the stand-in broker did not start"
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process (this test) listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def record_broker(data_dir: Path, port: int, pid: int | None = None) -> Path:
    """A broker directory as kafka.sh leaves it: made for ``port``, running as ``pid`` if given."""
    directory = data_dir / "kafka"
    directory.mkdir(parents=True)
    (directory / "server.properties").write_text(f"listeners=PLAINTEXT://127.0.0.1:{port}\n")
    (directory / "bootstrap").write_text(f"127.0.0.1:{port}\n")
    if pid is not None:
        (directory / "kafka.pid").write_text(f"{pid}\n")
    return directory


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_running_recorded_broker_is_used_and_said_once(tmp_path: Path, fake_broker: subprocess.Popen[bytes],
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    record_broker(tmp_path, 53001, fake_broker.pid)
    settings = settings_in(tmp_path, monkeypatch)
    assert settings.kafka.bootstrap == "127.0.0.1:53001"
    assert local_broker.origin("127.0.0.1:53001") == "recorded"
    capsys.readouterr()
    local_broker.announce(settings.kafka.bootstrap)
    local_broker.announce(settings.kafka.bootstrap)
    said = capsys.readouterr().err.splitlines()
    assert said == [f"vitals: Kafka at 127.0.0.1:53001 (the local broker recorded in {tmp_path}/kafka/bootstrap)"]


@pytest.mark.parametrize("pid", ["dead", "not a broker", None])
def test_a_recorded_broker_that_is_not_running_is_not_used(
        tmp_path: Path, pid: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead process, a live process that is not a broker (a stale pid file after a reboot), no pid file."""
    number = {"dead": dead_pid(), "not a broker": os.getpid(), None: None}[pid]
    record_broker(tmp_path, 53002, number)
    settings = settings_in(tmp_path, monkeypatch)
    assert settings.kafka.bootstrap == local_broker.DEFAULT_BOOTSTRAP
    found = local_broker.discover(tmp_path)
    assert found.origin == "default" and "is not running" in found.note


def test_nothing_recorded_gives_the_default_and_says_so(tmp_path: Path) -> None:
    found = local_broker.discover(tmp_path)
    assert found.bootstrap == "127.0.0.1:9092" and found.origin == "default"
    assert found.note == ("vitals: Kafka at 127.0.0.1:9092 (the default: no kafka.bootstrap or VITALS_KAFKA_BOOTSTRAP "
                          f"configured, no local broker recorded in {tmp_path}/kafka/bootstrap)")


def test_a_configured_bootstrap_is_never_replaced(
        tmp_path: Path, fake_broker: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    record_broker(tmp_path, 53003, fake_broker.pid)
    assert settings_in(tmp_path, monkeypatch).kafka.bootstrap == "127.0.0.1:53003"  # the recorded one runs
    config = tmp_path / "vitals.toml"
    config.write_text('[kafka]\nbootstrap = "kafka.example:9094"\n')
    assert settings_in(tmp_path, monkeypatch, VITALS_CONFIG=str(config)).kafka.bootstrap == "kafka.example:9094"
    from_env = settings_in(tmp_path, monkeypatch, VITALS_KAFKA_BOOTSTRAP="kafka.example:9093")
    assert from_env.kafka.bootstrap == "kafka.example:9093"
    assert local_broker.origin("kafka.example:9093") is None
    # an explicit environment (a test's, a child's settings) is what it says: nothing is discovered
    assert load_settings(env={"VITALS_DATA_DIR": str(tmp_path)}).kafka.bootstrap == "127.0.0.1:9092"


def test_the_broker_takes_the_port_asked_for_when_free(tmp_path: Path) -> None:
    port = local_kafka.free_port()
    plan = local_kafka.plan_start(tmp_path / "kafka", port)
    assert (plan.port, plan.running, plan.note) == (port, False, None)


def test_a_port_another_process_holds_is_refused(tmp_path: Path, held_port: int) -> None:
    with pytest.raises(local_kafka.BrokerRefused, match=f"port {held_port} is taken by another process"):
        local_kafka.plan_start(tmp_path / "kafka", held_port)


def test_without_a_port_9092_else_a_free_port_said_plainly(
        tmp_path: Path, held_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default port stands in for 9092 (this machine's 9092 may be anyone's)."""
    monkeypatch.setattr(local_kafka, "DEFAULT_PORT", held_port)
    plan = local_kafka.plan_start(tmp_path / "kafka")
    assert plan.port != held_port and local_kafka.port_free(plan.port)
    assert plan.note is not None and f"port {held_port} is taken by another process" in plan.note
    assert f"gets port {plan.port} instead" in plan.note
    free = local_kafka.free_port()
    monkeypatch.setattr(local_kafka, "DEFAULT_PORT", free)
    assert local_kafka.plan_start(tmp_path / "kafka") == local_kafka.StartPlan(free, running=False)


def test_a_directory_keeps_the_port_it_was_made_for(tmp_path: Path, held_port: int) -> None:
    made = local_kafka.free_port()
    directory = record_broker(tmp_path, made)
    assert local_kafka.plan_start(directory) == local_kafka.StartPlan(made, running=False)
    assert local_kafka.plan_start(directory, made) == local_kafka.StartPlan(made, running=False)
    with pytest.raises(local_kafka.BrokerRefused) as refused:
        local_kafka.plan_start(directory, made + 1)
    said = str(refused.value)
    assert f"made for port {made}, not {made + 1}" in said and "--dir" in said and "delete" in said
    taken = record_broker(tmp_path / "other", held_port)
    with pytest.raises(local_kafka.BrokerRefused, match=f"port {held_port}, which .* was made for, is taken"):
        local_kafka.plan_start(taken)


def test_a_running_broker_is_not_started_again(tmp_path: Path, fake_broker: subprocess.Popen[bytes]) -> None:
    directory = record_broker(tmp_path, 53004, fake_broker.pid)
    assert local_kafka.plan_start(directory) == local_kafka.StartPlan(53004, running=True)
    assert local_kafka.start_planned(directory)[0] == "127.0.0.1:53004"
    with pytest.raises(local_kafka.BrokerRefused, match="made for port 53004, not 53005"):
        local_kafka.plan_start(directory, 53005)


def test_the_cli_refuses_in_one_line_with_exit_2(
        tmp_path: Path, held_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert vitals(["kafka", "start", "--dir", str(tmp_path / "a"), "--port", str(held_port)]) == 2
    assert capsys.readouterr().err == (f"vitals kafka: port {held_port} is taken by another process: "
                                       "choose another --port\n")
    made = record_broker(tmp_path / "b", 53006)
    assert vitals(["kafka", "start", "--dir", str(made), "--port", "53007"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "made for port 53006, not 53007" in err


def test_the_script_refuses_another_port_for_a_directory(tmp_path: Path) -> None:
    """deploy/kafka/kafka.sh run directly: a directory made for one port is not started on another."""
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / ".complete").touch()  # no Maven, and no java is reached
    directory = record_broker(tmp_path, 53008)
    done = subprocess.run(["bash", str(local_kafka.SCRIPT), "start", str(directory), "53009"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "VITALS_KAFKA_LIBS": str(libs)})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "made for 127.0.0.1:53008, not port 53009" in done.stderr


def test_kafka_status_says_running_or_not(
        tmp_path: Path, fake_broker: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]) -> None:
    assert vitals(["kafka", "status", "--dir", str(tmp_path / "none")]) == 1
    assert "no local broker" in capsys.readouterr().err
    directory = record_broker(tmp_path, 53010, fake_broker.pid)
    assert vitals(["kafka", "status", "--dir", str(directory)]) == 0
    out = capsys.readouterr()
    assert out.out == "127.0.0.1:53010\n" and f"pid {fake_broker.pid}" in out.err
    (directory / "kafka.pid").write_text(f"{dead_pid()}\n")
    assert vitals(["kafka", "status", "--dir", str(directory)]) == 1
    assert "not running" in capsys.readouterr().err


def test_each_run_has_its_own_names_and_directory(tmp_path: Path) -> None:
    first, first_dir = runs.new_run(tmp_path, now=0)
    second, second_dir = runs.new_run(tmp_path, now=0)  # the same second: still apart
    assert (first, second) == ("19700101-000000", "19700101-000000-2")
    assert first_dir != second_dir and first_dir.is_dir() and second_dir.is_dir()
    a, b = runs.run_values(first, first_dir), runs.run_values(second, second_dir)
    assert not set(a.values()) & set(b.values())
    assert {a["VITALS_EVENTS_TOPIC"], a["VITALS_ALERTS_TOPIC"], a["VITALS_DLQ_TOPIC"]} == {
        f"vitals-run-{first}.events", f"vitals-run-{first}.alerts", f"vitals-run-{first}.events.dlq"}
    assert a["VITALS_CLICKHOUSE_DSN"] == f"chdb://{first_dir}/clickhouse"


def test_run_option_reads_a_recorded_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="no run recorded"):
        runs.find(tmp_path, "latest")
    ids = []
    for now in (0, 60):
        run_id, run_dir = runs.new_run(tmp_path, now=now)
        runs.record(run_dir, runs.run_values(run_id, run_dir))
        ids.append(run_id)
    assert runs.find(tmp_path, "latest") == tmp_path / "runs" / ids[1]
    assert runs.find(tmp_path, ids[0]) == tmp_path / "runs" / ids[0]
    for bad in ("nope", "../runs", ".."):
        with pytest.raises(ConfigError):
            runs.find(tmp_path, bad)
    for name in runs.RUN_VARS:  # this process's environment, as it was, after the test
        monkeypatch.setenv(name, "mine")
    monkeypatch.delenv("VITALS_CLICKHOUSE_DSN")
    monkeypatch.setenv("VITALS_CLICKHOUSE_DSN_FILE", str(tmp_path / "dsn"))
    monkeypatch.setenv("VITALS_KAFKA_BOOTSTRAP", "before")
    runs.apply(ids[0], str(tmp_path), "127.0.0.1:53011")  # the broker found in the data dir, not the run's
    settings = load_settings()
    assert settings.kafka.bootstrap == "127.0.0.1:53011"
    assert settings.app_id == f"vitals-run-{ids[0]}" and settings.data_dir == str(tmp_path / "runs" / ids[0])
    assert settings.alerts_topic == f"vitals-run-{ids[0]}.alerts"
    assert "VITALS_CLICKHOUSE_DSN_FILE" not in os.environ
    assert capsys.readouterr().err == f"vitals: run {ids[0]} ({tmp_path / 'runs' / ids[0]})\n"


def test_the_script_ignores_a_stale_pid_file(tmp_path: Path) -> None:
    """After a reboot kafka.pid can name another live process: kafka.sh neither takes it for the broker (and
    skips the start) nor stops it. A fake ``java`` stands in for the broker (tests/unit/test_kafka_script.py)."""
    from tests.unit.test_kafka_script import FAKE_JAVA

    bin_dir, log, libs = tmp_path / "bin", tmp_path / "log", tmp_path / "libs"
    for d in (bin_dir, log, libs):
        d.mkdir()
    (libs / ".complete").touch()
    (bin_dir / "java").write_text(FAKE_JAVA)
    (bin_dir / "java").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log),
           "VITALS_KAFKA_LIBS": str(libs)}
    other = subprocess.Popen(["sleep", "120"])  # not a broker
    try:
        directory = tmp_path / "kafka"
        directory.mkdir()
        (directory / "kafka.pid").write_text(f"{other.pid}\n")
        port = local_kafka.free_port()
        script = str(local_kafka.SCRIPT)
        done = subprocess.run(["bash", script, "start", str(directory), str(port)], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == f"127.0.0.1:{port}"
        broker = int((directory / "kafka.pid").read_text())
        assert broker != other.pid and local_broker.broker_pid(directory) == broker
        subprocess.run(["bash", script, "stop", str(directory)], env=env, check=True, timeout=60)
        assert local_broker.broker_pid(directory) is None
        (directory / "kafka.pid").write_text(f"{other.pid}\n")
        subprocess.run(["bash", script, "stop", str(directory)], env=env, check=True, timeout=60)
        assert other.poll() is None, "kafka.sh stopped a process that is not its broker"
        assert not (directory / "kafka.pid").exists()
    finally:
        other.kill()
        other.wait()
