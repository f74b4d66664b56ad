"""``vitals worker`` runs the Faust worker in a child process and restarts it when it dies.

Crash-only recovery: whatever stops a worker (the lag watchdog's exit, a Faust crash on a lost
broker, an out-of-memory kill), a fresh process resumes from the committed offsets and the
changelogs, so nothing is lost and nothing is counted twice. Configuration errors (exit 2) and a
ClickHouse that refuses the sink's writes whatever the rows (exit 78: a table, grant or setting to
fix; a fresh worker would fail the same way) are not retried (the codes: ``streams.ops.exit_codes``).
SIGTERM/SIGINT/SIGUSR1 are forwarded; if the supervisor itself dies, the kernel kills the child (PR_SET_PDEATHSIG), so a
worker never outlives the process that was started.
Kubernetes and compose restart the container too; the supervisor just makes it faster and
keeps the metrics port and logs in one place.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from streams.ops.exit_codes import FINAL

log = logging.getLogger("vitals.supervisor")

CHILD_ENV = "VITALS_SUPERVISED"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def backoff(restarts: int, initial_s: float = 1.0, max_s: float = 30.0) -> float:
    return min(max_s, initial_s * (2 ** max(0, restarts - 1)))


def supervise(argv: Sequence[str], healthy_after_s: float = 120.0, max_backoff_s: float = 30.0) -> int:
    """Run ``argv`` (the worker) until it exits on purpose; return its exit code."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum != signal.SIGUSR1:
            stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, forward)
    restarts = 0
    env = dict(os.environ, **{CHILD_ENV: "1"})
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    while True:
        started = time.monotonic()
        child = subprocess.Popen(list(argv), env=env, preexec_fn=preexec)
        code = child.wait()
        if stopping or code in FINAL:
            return code if code >= 0 else 128 - code
        restarts = 1 if time.monotonic() - started >= healthy_after_s else restarts + 1
        delay = backoff(restarts, max_s=max_backoff_s)
        log.error("worker exited with code %d; starting a new one in %.0fs (restart %d)", code, delay, restarts)
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return code if code >= 0 else 128 - code
