"""Start and stop the local single-node Kafka of deploy/kafka/kafka.sh (real Apache Kafka), and the port
``vitals kafka start`` gives it (:func:`plan_start`): 9092 when free, the port asked for, or the one its
directory was made for; refused (:class:`BrokerRefused`) when that port is taken or the directory was made
for another."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.config import local_broker
from streams.config.local_broker import DEFAULT_PORT


def find_script() -> Path:
    """kafka.sh: an installed copy's, which the build put in the package next to this module
    (``streams/devtools/deploy/kafka/kafka.sh`` with ``../retry.sh``: setup.py), else the checkout's
    deploy/kafka/kafka.sh (an editable install, the tests), its single source."""
    here = Path(__file__).resolve().parent
    installed = here / "deploy" / "kafka" / "kafka.sh"
    return installed if installed.is_file() else here.parents[1] / "deploy" / "kafka" / "kafka.sh"


SCRIPT = find_script()


def start(directory: Path, port: int | None = None, extra_props: Path | None = None) -> str:
    """Start (formatting on first use) and return host:port once the broker is up."""
    env = None
    if extra_props is not None:
        import os

        env = dict(os.environ, VITALS_KAFKA_EXTRA_PROPS=str(extra_props))
    args = ["bash", str(SCRIPT), "start", str(directory)] + ([str(port)] if port else [])
    done = subprocess.run(args, check=True, capture_output=True, text=True, env=env, timeout=600)
    return done.stdout.strip().splitlines()[-1]


def stop(directory: Path, kill: bool = False) -> None:
    subprocess.run(
        ["bash", str(SCRIPT), "kill" if kill else "stop", str(directory)], check=True, capture_output=True, timeout=120
    )


class BrokerRefused(Exception):
    """The broker cannot start as asked: said to the user in one line (exit code 2)."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``host:port`` now (as the broker does, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class StartPlan:
    port: int
    running: bool  # the directory's broker already runs (on this port): nothing to start
    note: str | None = None  # to say before starting (a port other than the one expected)


def plan_start(directory: Path, asked: int | None = None) -> StartPlan:
    """The port the broker of ``directory`` gets; :class:`BrokerRefused` when it cannot have the one it needs."""
    shown = local_broker.shown(directory)
    if asked is not None and not 0 < asked < 65536:
        raise BrokerRefused(f"--port {asked} is not a TCP port (1-65535)")
    recorded = local_broker.recorded_port(directory) if (directory / "server.properties").is_file() else None
    if asked is not None and recorded is not None and asked != recorded:
        raise BrokerRefused(
            f"{shown} holds a broker made for port {recorded}, not {asked}: start it without --port (it takes "
            f"{recorded}), or give --dir another directory for a broker on {asked}, or delete {shown} (its topics "
            "go with it)")
    if recorded is not None and local_broker.broker_pid(directory) is not None:
        return StartPlan(recorded, running=True)
    if recorded is not None:
        if not port_free(recorded):
            raise BrokerRefused(f"port {recorded}, which {shown} was made for, is taken by another process: stop "
                                "that process, or give --dir another directory")
        return StartPlan(recorded, running=False)
    if asked is not None:
        if not port_free(asked):
            raise BrokerRefused(f"port {asked} is taken by another process: choose another --port")
        return StartPlan(asked, running=False)
    if port_free(DEFAULT_PORT):
        return StartPlan(DEFAULT_PORT, running=False)
    port = free_port()
    return StartPlan(port, running=False, note=(
        f"port {DEFAULT_PORT} is taken by another process: the local broker gets port {port} instead (recorded "
        f"in {shown}/bootstrap, where vitals commands find it)"))


def script_failure(exc: subprocess.CalledProcessError) -> str:
    """What kafka.sh said last on its stderr when it failed (why it did)."""
    said = (exc.stderr or "").strip().splitlines() if isinstance(exc.stderr, str) else []
    return said[-1] if said else f"deploy/kafka/kafka.sh exited with {exc.returncode}"


def start_planned(directory: Path, asked: int | None = None) -> tuple[str, StartPlan]:
    """:func:`plan_start`, then :func:`start` on the planned port unless the broker already runs."""
    plan = plan_start(directory, asked)
    if plan.running:
        return local_broker.recorded_bootstrap(directory) or f"127.0.0.1:{plan.port}", plan
    return start(directory, plan.port), plan
