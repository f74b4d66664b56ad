"""The runs of ``vitals run``: each in a directory of its own, ``<data dir>/runs/<run id>/``, with its own app id,
topics and embedded ClickHouse, recorded in its ``run.env``; ``--run ID`` (or ``--run latest``) on ``vitals
query``, ``report`` and ``inspect`` reads a run's data (:func:`apply`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from streams.config.private_files import private_dir
from streams.config.settings import ConfigError

RUNS = "runs"
LATEST = "latest"  # <data dir>/runs/latest holds the newest run's id
RECORD = "run.env"
# what a run sets (and records): everything that names its data; no secrets
RUN_VARS = ("VITALS_APP_ID", "VITALS_EVENTS_TOPIC", "VITALS_ALERTS_TOPIC", "VITALS_DLQ_TOPIC",
            "VITALS_SEGMENTS_TOPIC", "VITALS_DATA_DIR", "VITALS_CLICKHOUSE_DSN")


def new_run(data_dir: Path, now: float | None = None) -> tuple[str, Path]:
    """A new run's id (its UTC start time) and its directory, created (its owner's only)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    runs = data_dir / RUNS
    run_id, n = stamp, 1
    while (runs / run_id).exists():
        n += 1
        run_id = f"{stamp}-{n}"
    private_dir(runs)
    (runs / run_id).mkdir(mode=0o700)
    return run_id, runs / run_id


def run_values(run_id: str, run_dir: Path) -> dict[str, str]:
    """The settings of a run: its app id (the changelogs and internal topics follow it), topics and data."""
    app_id = f"vitals-run-{run_id}"
    return {
        "VITALS_APP_ID": app_id,
        "VITALS_EVENTS_TOPIC": f"{app_id}.events",
        "VITALS_ALERTS_TOPIC": f"{app_id}.alerts",
        "VITALS_DLQ_TOPIC": f"{app_id}.events.dlq",
        "VITALS_SEGMENTS_TOPIC": f"{app_id}.segments",
        "VITALS_DATA_DIR": str(run_dir),
        "VITALS_CLICKHOUSE_DSN": f"chdb://{run_dir}/clickhouse",
    }


def record(run_dir: Path, values: dict[str, str]) -> None:
    """``run.env`` in the run's directory, and the run as the latest."""
    (run_dir / RECORD).write_text("".join(f"{k}={values[k]}\n" for k in RUN_VARS))
    latest = run_dir.parent / LATEST
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(run_dir.name + "\n")
    tmp.replace(latest)


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=None, metavar="ID",
                        help="read a run of `vitals run` (its id, or latest) instead of the configured data")


def find(data_dir: Path, run: str) -> Path:
    """The directory of run ``run`` (an id, or ``latest``) under ``data_dir``; ConfigError if there is none."""
    runs = data_dir / RUNS
    if run == LATEST:
        try:
            run = (runs / LATEST).read_text().strip()
        except OSError:
            raise ConfigError(f"--run latest: no run recorded in {runs} (vitals run makes one)") from None
    if not run or "/" in run or run.startswith("."):
        raise ConfigError(f"--run {run!r}: not a run id")
    if not (runs / run / RECORD).is_file():
        known = sorted(p.name for p in runs.glob("*") if (p / RECORD).is_file()) if runs.is_dir() else []
        raise ConfigError(f"--run {run}: no such run in {runs}" + (f" (runs: {', '.join(known[-5:])})" if known
                                                                     else ""))
    return runs / run


def apply(run: str, data_dir: str, bootstrap: str) -> None:
    """This process's settings become run ``run``'s: its recorded VITALS_* values override the environment's.
    ``bootstrap`` (the configured one, or the local broker's found in ``data_dir``) stays: the run's data
    directory holds no broker."""
    run_dir = find(Path(data_dir), run)
    os.environ["VITALS_KAFKA_BOOTSTRAP"] = bootstrap
    for line in (run_dir / RECORD).read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name in RUN_VARS:
            os.environ[name] = value
            os.environ.pop(f"{name}_FILE", None)
    print(f"vitals: run {run_dir.name} ({run_dir})", file=sys.stderr)
