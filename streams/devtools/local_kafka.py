"""Start and stop the local single-node Kafka of deploy/kafka/kafka.sh (real Apache Kafka)."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
