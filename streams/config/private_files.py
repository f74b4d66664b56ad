"""Users' personal data stays its owner's: the data directory 0700, every file vitals (and the embedded
ClickHouse engine, Faust, RocksDB, the local Kafka it starts) creates readable by its user only.

``vitals`` sets the process umask to 077 before it does anything (``streams.cli.main``); the children it
starts inherit it. The engine's directory is narrowed when it is opened, files an earlier version left
group- or world-readable included (:func:`narrow_tree`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def private_process() -> None:
    """Files and directories this process (and its children) creates: owner only."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: str | Path) -> Path:
    """The data directory, created (or narrowed) to its owner only (0700): it holds users' personal data
    (state, the embedded ClickHouse)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def narrow_tree(root: str | Path) -> int:
    """Take group and other permissions off every file and directory under ``root`` (symlinks are left
    alone); returns how many were changed."""
    changed = 0
    for directory, dirs, files in os.walk(root):
        names = [os.path.join(directory, n) for n in (*dirs, *files)]
        for name in names if directory != str(root) else [directory, *names]:
            try:
                mode = os.lstat(name).st_mode
            except FileNotFoundError:  # removed meanwhile (a merge of parts)
                continue
            if mode & 0o077 and not stat.S_ISLNK(mode):
                os.chmod(name, stat.S_IMODE(mode) & ~0o077)
                changed += 1
    return changed
