"""The directory a bench run keeps its broker and workers in: fresh per run, removed after it (a
run writes several GB: the topics, the workers' ClickHouse data and state)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def fresh_run_dir(base: Path) -> Path:
    """``base/run-<pid>``, new and empty; what runs that were killed left under ``base`` goes."""
    for stale in base.glob("run-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = base.resolve() / f"run-{os.getpid()}"
    work.mkdir(parents=True)
    return work


def remove_run_dir(work: Path, keep: bool) -> None:
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
