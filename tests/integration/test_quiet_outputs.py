"""What a newcomer sees on stderr and in logs: ``vitals generate --events N`` writes N events and says
how many messages; ``vitals report`` with Kafka unreachable writes the
report and says so in one line (no resource warnings, no traceback, no aiokafka log lines), with
Kafka reachable it prints nothing on stderr, and a worker whose stderr goes to a file while its
stdout is a terminal logs no escape codes."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import Deployment, free_port
from tests.procs import wait_for

# aiokafka's "Unclosed AIOKafkaConsumer" is a ResourceWarning: shown by the development mode
NOISY = {"PYTHONDEVMODE": "1", "PYTHONWARNINGS": "always"}


def test_report_with_kafka_unreachable_is_written_with_one_warning_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_")}
    env.update(NOISY, VITALS_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}", VITALS_DATA_DIR=str(tmp_path / "data"))
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", "report", "--out", str(out)], env=env,
                          capture_output=True, timeout=300, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out.resolve()) and out.exists()
    for noise in ("Unclosed", "ResourceWarning", "Traceback", "Unable connect"):
        assert noise not in done.stderr, done.stderr
    down = f"Kafka at 127.0.0.1:{port} (from VITALS_KAFKA_BOOTSTRAP) is not reachable: connection refused"
    assert done.stderr.splitlines() == [
        f"vitals report: {down}; the report leaves out dead letters and device observations (start Kafka, or "
        "pass --no-kafka)"
    ]
    html = out.read_text()
    assert f"{down}; no dead letters or device observations" in html
    assert 'class="chart' in html  # the ClickHouse parts are still drawn (empty here)


def _drain(fd: int) -> None:
    """Read what the worker writes to its terminal until it closes (a full pty would block it)."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:  # EIO once the last writer is gone
        pass


@pytest.mark.integration
def test_worker_log_has_no_escape_codes_with_stdout_on_a_terminal(deployment: Deployment) -> None:
    """``vitals worker 2>worker.log`` typed in a terminal: stdout is a tty, stderr a file."""
    log_path = deployment.base / "worker.log"
    master, slave = pty.openpty()
    drain = threading.Thread(target=_drain, args=(master,), daemon=True)
    drain.start()
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-P", "-m", "streams.cli", "worker"], env=deployment.env,
                                  stdout=slave, stderr=log)
    os.close(slave)
    try:
        wait_for(lambda: "assigned event partitions" in log_path.read_text(errors="replace"), 180,
                 "the worker to be assigned its partitions")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
        drain.join(30)  # ends when the terminal has no writer left
        os.close(master)
    text = log_path.read_bytes()
    assert b"INFO" in text and b"\x1b[" not in text, text[-2000:]

    # and the report, with this Kafka reachable (its topics read, its clients closed): quiet too
    out = deployment.base / "report.html"
    done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", "report", "--out", str(out)],
                          env=dict(deployment.env, **NOISY), capture_output=True, timeout=300, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "not reachable" not in out.read_text()


@pytest.mark.integration
def test_generate_writes_exactly_the_events_asked_for(deployment: Deployment) -> None:
    from streams.devtools.generator import _events_of

    done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", "generate", "--events", "3000", "--users", "100",
                           "--days", "4", "--batch", "5"], env=dict(deployment.env, **NOISY), capture_output=True,
                          timeout=300, text=True)
    assert done.returncode == 0, done.stderr
    records = deployment.read(deployment.settings.events_topic)
    assert sum(len(_events_of(r.value)) for r in records) == 3000
    for noise in ("Unclosed", "ResourceWarning", "Traceback", "\x1b"):
        assert noise not in done.stderr, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("wrote 3,000 events (") and last.endswith(
        f" of 100 users over 4 days in {len(records):,} messages to {deployment.settings.events_topic}"), last
