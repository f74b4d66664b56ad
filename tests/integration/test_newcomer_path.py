"""The first hour (issue 26): a newcomer's path from clone to answers, on a fresh virtual environment with
a non-editable install of the repository (``installed_vitals``: tests/venvs.py), in a working directory
outside the checkout, with the venv's ``vitals`` command and no vitals settings in the environment:

1. ``vitals kafka start`` (the default port when 9092 is free, else ``--port`` of a free port);
2. ``vitals worker`` in the background, no bootstrap configured: it uses the broker ``kafka start``
   recorded;
3. ``vitals generate`` (small), then ``vitals query`` while the worker runs, polled until the count of
   events is the oracle's (tests/oracle.py on the same seeded history);
4. ``vitals report``; Ctrl-C stops the worker cleanly;
5. ``vitals run`` twice with different small sizes: each summary exact for its own run, and the broker of
   step 1 still up;
6. the mistakes: a bootstrap ``127.0.0.1:notaport``, ``nosuchhost.invalid:9092``, a metrics port in use,
   ``VITALS_METRIC_PORT=1`` (misspelled), an unknown TOML key: each a one-line configuration error on
   stderr, exit code 2, no traceback, no restart loop;
7. ``vitals kafka stop``, then ``vitals kafka start --port P`` on the directory made for another port: the
   same kind of error.

Each step's failure says what the newcomer would have seen: the command, its exit code and the tail of
its stderr. The parts that depend on other commands' interface details (where the broker is recorded, the
worker's "up" line, ``vitals query``'s JSON lines, ``vitals run``'s summary line) are the small helpers
right below. Only the metrics port is always set (a free port, as the default 9464 may be another test's):
a newcomer's machine has it free. Everything the test starts is stopped at the end (module fixture).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from tests.conftest import free_port
from tests.procs import wait_for
from tests.venvs import Installed, clean_env

pytestmark = pytest.mark.integration

# the sizes of the newcomer's runs: small, and different from each other
GENERATE = {"users": 200, "days": 7, "events": 3000, "seed": 7}
RUNS = [{"users": 120, "days": 5, "events": 1500, "seed": 3}, {"users": 160, "days": 6, "events": 2500, "seed": 4}]
# UInt32: a 64-bit integer could be printed as a JSON string
EVENTS_SQL = "SELECT toUInt32(sum(events)) AS events FROM vitals.user_activity_daily FINAL"
MISTAKE_TIMEOUT_S = 120  # a mistake must end the command well before this (no restart loop, no endless wait)


# --- the interface details of other commands, in one place ---------------------------------------------

def recorded_bootstrap(home: Path) -> str | None:
    """Where ``vitals kafka start`` records its broker: ``<data dir>/kafka/bootstrap`` (data dir ./.vitals)."""
    path = home / ".vitals" / "kafka" / "bootstrap"
    return path.read_text().strip() if path.is_file() else None


def worker_is_up(log: str) -> bool:
    """The worker's log line once it consumes."""
    return "assigned event partitions" in log


def query_rows(stdout: bytes) -> list[dict[str, object]]:
    """``vitals query``'s output when not on a terminal: JSON lines, one object a row, keyed by column name."""
    rows = [orjson.loads(line) for line in stdout.splitlines() if line.strip()]
    assert all(isinstance(row, dict) for row in rows), (
        f"vitals query printed rows that are not JSON objects keyed by column name: {stdout[:300]!r}")
    return rows


def summary_events(stdout: str) -> int | None:
    """The count of events in ``vitals run``'s summary."""
    found = re.search(r"events counted \(deduplicated\): ([\d,]+)", stdout)
    return int(found.group(1).replace(",", "")) if found else None


def run_report_path(stdout: str) -> Path | None:
    """The report ``vitals run`` wrote: its path is printed last."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    found = re.search(r"(/\S+\.html)\s*$", lines[-1]) if lines else None
    return Path(found.group(1)) if found else None


def expected_events(users: int, days: int, events: int, seed: int) -> int:
    """The oracle: the valid, deduplicated events of the history ``vitals generate``/``vitals run`` produce with
    these options (topics of 8 partitions, the local broker's default)."""
    from streams.devtools.generator import GenConfig, generate
    from tests.oracle import expected_daily

    history = generate(GenConfig(users=users, days=days, events=events, seed=seed, partitions=8))
    return sum(counts[0] for counts in expected_daily(history).values())


def options(sizes: dict[str, int]) -> list[str]:
    return [arg for key, value in sizes.items() for arg in (f"--{key}", str(value))]


# --- running commands as the newcomer ------------------------------------------------------------------

@dataclass
class Newcomer:
    home: Path  # the working directory, outside the checkout
    installed: Installed
    metrics_port: int
    timings: dict[str, float] = field(default_factory=dict)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = clean_env() | {"VITALS_METRICS_PORT": str(self.metrics_port)} | extra
        env["PATH"] = f"{self.installed.venv / 'bin'}:{env['PATH']}"
        return env

    def vitals(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None,
               step: str | None = None) -> subprocess.CompletedProcess[bytes]:
        """``vitals ARGS`` in the home directory, to its end (killed, with its group, past ``timeout``)."""
        argv = [self.installed.bin("vitals"), *args]
        began = time.monotonic()
        proc = subprocess.Popen(argv, cwd=self.home, env=env or self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"still running after {timeout:.0f} s (killed): {said(argv, None, err)}") from None
        finally:
            if step:
                self.timings[step] = time.monotonic() - began
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def background(self, log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen([self.installed.bin("vitals"), *args], cwd=self.home, env=env or self.env(),
                                    stdout=out, stderr=out, start_new_session=True)
        self.started.append(proc)
        return proc


def said(argv: list[str], code: int | None, stderr: bytes | str, lines: int = 15) -> str:
    """What the newcomer saw: the command, its exit code and the tail of its stderr."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    shown = " ".join(["vitals", *argv[1:]])
    status = "is still running" if code is None else f"exited {code}"
    return f"`{shown}` {status}; stderr ends:\n{tail or '(nothing)'}"


def ok(done: subprocess.CompletedProcess[bytes]) -> str:
    assert done.returncode == 0, said(done.args, done.returncode, done.stderr)
    assert b"Traceback" not in done.stderr, said(done.args, done.returncode, done.stderr, 40)
    return done.stdout.decode()


def accepts_connections(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return True
    except OSError:
        return False


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, wait_s: float = 90) -> int:
    """``sig`` to the process's group (Ctrl-C in a terminal reaches the whole group), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            return proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"`vitals` (pid {proc.pid}) did not stop in {wait_s:.0f} s of {sig!r}") from None
        except ProcessLookupError:
            pass
    return int(proc.wait())


@pytest.fixture(scope="module")
def newcomer(installed_vitals: Installed, tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[Newcomer]:
    home = tmp_path_factory.mktemp("newcomer")
    person = Newcomer(home, installed_vitals, free_port())
    person.timings["fresh venv + pip install . (not editable)"] = installed_vitals.install_s
    try:
        yield person
    finally:
        for proc in person.started:
            with contextlib.suppress(AssertionError):
                stop_group(proc, signal.SIGTERM, 60)
        for pid_file in sorted(home.rglob("kafka.pid")):  # every broker the commands started, where they said
            with contextlib.suppress(AssertionError):
                person.vitals("kafka", "stop", "--dir", str(pid_file.parent), timeout=120)
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        lines = [f"  {name:<64} {seconds:7.1f} s" for name, seconds in person.timings.items()]
        text = "\nthe newcomer's path, timings:\n" + "\n".join(lines)
        (home / "timings.txt").write_text(text)
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            print(text, file=sys.stderr)


@dataclass
class Broker:
    args: list[str]  # how `vitals kafka start` was called
    bootstrap: str  # the last line it printed
    printed: list[str]  # every line of its stdout


@pytest.fixture(scope="module")
def broker(newcomer: Newcomer) -> Broker:
    """Step 1: ``vitals kafka start``, on 9092 when it is free (the default), else on a free port the test picks.
    Its jars resolved afresh from the installed pom.xml (Maven's local repository makes that quick)."""
    args = ["kafka", "start"] if port_is_free(9092) else ["kafka", "start", "--port", str(free_port())]
    env = newcomer.env(VITALS_KAFKA_LIBS=str(newcomer.home.parent / f"{newcomer.home.name}-kafka-libs"))
    done = newcomer.vitals(*args, env=env, step="vitals " + " ".join(args) + " (jars resolved afresh)")
    printed = ok(done).strip().splitlines()
    assert printed, said(done.args, done.returncode, done.stderr)
    assert accepts_connections(printed[-1]), f"vitals kafka start printed {printed}; nothing accepts connections there"
    return Broker(args, printed[-1], printed)


@pytest.fixture(scope="module")
def worker(newcomer: Newcomer, broker: Broker) -> subprocess.Popen[bytes]:
    """Step 2: ``vitals worker`` in the background, no bootstrap configured."""
    log = newcomer.home / "worker.log"
    began = time.monotonic()
    proc = newcomer.background(log, "worker")

    def up() -> bool:
        text = log.read_text(errors="replace")
        if proc.poll() is not None:
            raise AssertionError(said(["vitals", "worker"], proc.returncode, text))
        return worker_is_up(text)

    try:
        wait_for(up, 180, "the worker's partition assignment")
    except AssertionError as exc:
        log_text = log.read_text(errors="replace")
        raise AssertionError(f"{exc}\n{said(['vitals', 'worker'], proc.poll(), log_text)}") from None
    newcomer.timings["vitals worker: up (partitions assigned)"] = time.monotonic() - began
    return proc


def test_the_install_carries_the_local_kafka_inside_the_package(newcomer: Newcomer) -> None:
    """kafka.sh and what it reads next to itself live in the installed package (found wherever pip put it:
    a venv, ``--user``, ``--prefix``), not in ``<prefix>/share`` data files."""
    done = subprocess.run([newcomer.installed.bin("python"), "-P", "-c",
                           "from streams.devtools.local_kafka import SCRIPT; print(SCRIPT)"],
                          cwd=newcomer.home, env=newcomer.env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    script = Path(done.stdout.strip())
    assert script.parts[-5:] == ("streams", "devtools", "deploy", "kafka", "kafka.sh"), script
    assert script.resolve().is_relative_to(newcomer.installed.venv.resolve()), script
    assert {p.name for p in script.parent.iterdir()} >= {"kafka.sh", "pom.xml", "log4j2.properties"}
    assert (script.parent.parent / "retry.sh").is_file()
    assert not (newcomer.installed.venv / "share" / "vitals-stream").exists()


def test_kafka_start_takes_the_default_port_or_the_one_given(broker: Broker) -> None:
    port = broker.args[-1] if "--port" in broker.args else "9092"
    # the address alone on stdout (Maven's output, the first time, goes elsewhere): a script can take it
    assert broker.printed == [f"127.0.0.1:{port}"], f"`vitals {' '.join(broker.args)}` printed {broker.printed}"


def test_kafka_start_records_its_broker(newcomer: Newcomer, broker: Broker) -> None:
    assert recorded_bootstrap(newcomer.home) == broker.bootstrap, (
        f"vitals kafka start printed {broker.bootstrap} but recorded {recorded_bootstrap(newcomer.home)!r}")
    again = newcomer.vitals("kafka", "start", step="vitals kafka start (again: already running)")
    assert ok(again).strip().splitlines()[-1:] == [broker.bootstrap], (
        "a second `vitals kafka start` did not name the running broker")


def test_generate_then_query_while_the_worker_runs(newcomer: Newcomer, worker: subprocess.Popen[bytes]) -> None:
    expected = expected_events(**GENERATE)
    ok(newcomer.vitals("generate", *options(GENERATE), step=f"vitals generate {options(GENERATE)}"))
    began = time.monotonic()
    last: list[str] = []

    def counted() -> bool:
        assert worker.poll() is None, said(["vitals", "worker"], worker.returncode,
                                           (newcomer.home / "worker.log").read_text(errors="replace"))
        done = newcomer.vitals("query", EVENTS_SQL, timeout=120)
        if done.returncode != 0:
            last[:] = [said(done.args, done.returncode, done.stderr)]
            return False
        rows = query_rows(done.stdout)
        last[:] = [f"vitals query printed {rows}"]
        return rows == [{"events": expected}]

    try:
        wait_for(counted, 300, f"vitals query to count {expected} events", every_s=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last answer: {last[0] if last else 'none'}") from None
    newcomer.timings["vitals query: until the count is right"] = time.monotonic() - began


def test_report_while_the_worker_runs(newcomer: Newcomer, worker: subprocess.Popen[bytes]) -> None:
    done = newcomer.vitals("report", step="vitals report")
    printed = ok(done).strip().splitlines()
    assert printed, said(done.args, done.returncode, done.stderr)
    path = Path(printed[-1])
    assert path.is_file() and path.resolve().is_relative_to(newcomer.home.resolve()), f"report at {printed[-1]}"
    assert "<html" in path.read_text(errors="replace")[:2000].lower()


def test_ctrl_c_stops_the_worker_cleanly(newcomer: Newcomer, worker: subprocess.Popen[bytes]) -> None:
    code = stop_group(worker, signal.SIGINT)
    log = (newcomer.home / "worker.log").read_text(errors="replace")
    assert code == 0, said(["vitals", "worker"], code, log, 30)
    first = log.find("Traceback")
    assert first < 0, ("the worker's terminal showed tracebacks (a newcomer sees them while it runs), the first:\n"
                       + "\n".join(log[first:].splitlines()[:20]))


@pytest.mark.parametrize("sizes", RUNS, ids=["first", "second"])
def test_run_summarises_its_own_run(newcomer: Newcomer, broker: Broker, sizes: dict[str, int]) -> None:
    expected = expected_events(**sizes)
    # a free metrics port of its own: the background worker's may still be held
    done = newcomer.vitals("run", *options(sizes), env=newcomer.env(VITALS_METRICS_PORT=str(free_port())),
                           step=f"vitals run {options(sizes)}")
    stdout = ok(done)
    assert summary_events(stdout) == expected, (
        f"vitals run's summary counts {summary_events(stdout)} events, its own run has {expected}:\n"
        f"{stdout[:1500]}")
    report = run_report_path(stdout)
    assert report is not None and report.is_file(), f"vitals run's last line names no report: {stdout[-300:]}"
    assert accepts_connections(broker.bootstrap), (
        f"vitals run stopped the broker `vitals kafka start` had started ({broker.bootstrap})")


MISTAKES = {
    "bootstrap 127.0.0.1:notaport": {"VITALS_KAFKA_BOOTSTRAP": "127.0.0.1:notaport"},
    "bootstrap nosuchhost.invalid:9092": {"VITALS_KAFKA_BOOTSTRAP": "nosuchhost.invalid:9092"},
    "metrics port in use": {},  # the test holds the port
    "VITALS_METRIC_PORT=1 (misspelled)": {"VITALS_METRIC_PORT": "1"},
    "unknown TOML key": {},  # VITALS_CONFIG names a file with one
}


CONFIG_ERROR = "vitals: configuration error: "


def assert_config_error(done: subprocess.CompletedProcess[bytes], prefix: str = CONFIG_ERROR) -> None:
    """A configuration error as the docs promise it: one line on stderr (nothing else), ``prefix`` first
    (docs/configuration.md, "Exit codes"), exit code 2."""
    lines = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    what = said(done.args, done.returncode, done.stderr, 40)
    assert done.returncode == 2, what
    assert len(lines) == 1 and lines[0].startswith(prefix), what


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_is_one_line_and_exit_2(newcomer: Newcomer, broker: Broker, mistake: str) -> None:
    extra = dict(MISTAKES[mistake])
    held = None
    if mistake == "metrics port in use":
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        held.listen()
        extra["VITALS_METRICS_PORT"] = str(held.getsockname()[1])
    if mistake == "unknown TOML key":
        config = newcomer.home / "vitals.toml"
        config.write_text("metrics_prot = 9100\n")
        extra["VITALS_CONFIG"] = str(config)
    try:
        done = newcomer.vitals("worker", env=newcomer.env(**extra), timeout=MISTAKE_TIMEOUT_S,
                               step=f"mistake: {mistake}")
    finally:
        if held is not None:
            held.close()
    assert_config_error(done)


def test_kafka_start_on_a_directory_made_for_another_port(newcomer: Newcomer, broker: Broker) -> None:
    ok(newcomer.vitals("kafka", "stop", step="vitals kafka stop"))
    assert not accepts_connections(broker.bootstrap), f"vitals kafka stop left the broker at {broker.bootstrap} up"
    port = free_port()
    while broker.bootstrap.endswith(f":{port}"):
        port = free_port()
    done = newcomer.vitals("kafka", "start", "--port", str(port), timeout=MISTAKE_TIMEOUT_S,
                           step="mistake: vitals kafka start --port (another port)")
    assert_config_error(done, prefix="vitals kafka: ")  # docs/local.md: a one-line message, exit code 2
    assert not accepts_connections(f"127.0.0.1:{port}") and not accepts_connections(broker.bootstrap), (
        "a broker was started all the same")
