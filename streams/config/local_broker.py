"""The local broker of ``vitals kafka start``, found by the commands that are not told where Kafka is.

``vitals kafka start`` records the broker's address in ``<data_dir>/kafka/bootstrap`` and its process id in
``<data_dir>/kafka/kafka.pid`` (deploy/kafka/kafka.sh). When neither ``VITALS_KAFKA_BOOTSTRAP`` nor the
config file's ``kafka.bootstrap`` is set, :func:`discover` gives that address while its process runs, else
the default; the first Kafka client of a process says once, on stderr, which it used and why
(:func:`announce`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PORT = 9092
KAFKA_SUBDIR = "kafka"  # <data_dir>/kafka: the local broker's directory
BROKER_MAIN_CLASS = "kafka.Kafka"  # on a running broker's command line (deploy/kafka/kafka.sh)


@dataclass(frozen=True)
class Found:
    """Where the settings' bootstrap came from, when the configuration did not give one."""

    bootstrap: str
    origin: str  # "recorded": the running local broker's; "default": nothing configured or recorded
    note: str  # what is said on stderr


def broker_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / KAFKA_SUBDIR


def recorded_bootstrap(directory: Path) -> str | None:
    """The address kafka.sh recorded in ``directory`` (made for that port), if any."""
    try:
        text = (directory / "bootstrap").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def recorded_port(directory: Path) -> int | None:
    bootstrap = recorded_bootstrap(directory)
    if bootstrap is None:
        return None
    _, _, port = bootstrap.rpartition(":")
    return int(port) if port.isdigit() else None


def broker_pid(directory: Path) -> int | None:
    """The process id in ``directory/kafka.pid`` if that process runs and is a Kafka broker.

    Where ``/proc`` shows the process's command line, it must name the broker's main class: after a
    reboot the id in a stale pid file can belong to any other process."""
    try:
        pid = int((directory / "kafka.pid").read_text().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # another user's process: not the broker this user's directory records
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:  # no /proc (macOS) or the process just ended
        return pid if not Path("/proc/self").exists() else None
    except OSError:
        return pid
    return pid if BROKER_MAIN_CLASS.encode() in cmdline.split(b"\0") else None


def running_bootstrap(directory: Path) -> str | None:
    """The recorded address of the broker in ``directory`` while its process runs."""
    return recorded_bootstrap(directory) if broker_pid(directory) is not None else None


def discover(data_dir: str | Path) -> Found:
    """What to use when no bootstrap is configured: the running local broker of ``<data_dir>/kafka``,
    else the default."""
    directory = broker_dir(data_dir)
    record = shown(directory / "bootstrap")
    bootstrap = running_bootstrap(directory)
    if bootstrap is not None:
        return Found(bootstrap, "recorded", f"vitals: Kafka at {bootstrap} (the local broker recorded in {record})")
    why = (f"the local broker of {shown(directory)} is not running" if recorded_bootstrap(directory)
           else f"no local broker recorded in {record}")
    return Found(DEFAULT_BOOTSTRAP, "default",
                 f"vitals: Kafka at {DEFAULT_BOOTSTRAP} (the default: no kafka.bootstrap or VITALS_KAFKA_BOOTSTRAP "
                 f"configured, {why})")


_found: dict[str, Found] = {}  # bootstrap -> how this process's settings came to it (unconfigured only)
_announced: set[str] = set()


def remember(found: Found) -> None:
    """Noted by ``load_settings`` for :func:`origin` and :func:`announce`."""
    _found[found.bootstrap] = found


def origin(bootstrap: str) -> str | None:
    """``"recorded"`` or ``"default"`` when this process's settings found ``bootstrap`` unconfigured; None
    when it was configured."""
    found = _found.get(bootstrap)
    return found.origin if found is not None else None


def announce(bootstrap: str) -> None:
    """Say once per process, on stderr, where an unconfigured bootstrap came from (nothing for a configured one)."""
    found = _found.get(bootstrap)
    if found is None or bootstrap in _announced:
        return
    _announced.add(bootstrap)
    print(found.note, file=sys.stderr, flush=True)


def said(bootstrap: str) -> None:
    """The caller has said itself where this process's Kafka is: :func:`announce` stays quiet about it."""
    _announced.add(bootstrap)


def shown(path: Path) -> str:
    """``path`` relative to the working directory when under it (as a user typed it), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def fill_bootstrap(tree: dict[str, Any], default_data_dir: str) -> Found | None:
    """``load_settings``' hook: a configuration tree without ``kafka.bootstrap`` gets :func:`discover`'s
    (remembered for :func:`origin` and :func:`announce`). A tree of the wrong shape is left for validation."""
    kafka = tree.setdefault("kafka", {})
    data_dir = tree.get("data_dir", default_data_dir)
    if not isinstance(kafka, dict) or "bootstrap" in kafka or not isinstance(data_dir, str):
        return None
    found = discover(data_dir)
    remember(found)
    kafka["bootstrap"] = found.bootstrap
    return found
