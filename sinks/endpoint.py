"""The file through which a worker on the embedded ClickHouse offers its read-only query endpoint.

A worker that holds the embedded engine (``chdb:///dir``: one process at a time) serves read-only
queries on loopback (:mod:`sinks.query_server`) and writes where and how to reach them into
``<dir>/vitals-endpoint.json``: host, port, a random token required with every request, its pid.
The file is its owner's only (0600, written whole, then renamed into place) and removed at a clean
exit. A worker killed without cleaning up leaves it behind: :func:`read_live` ignores a file whose
process is gone (:mod:`sinks.reader` then opens the engine itself).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass

import orjson

FILE_NAME = "vitals-endpoint.json"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    token: str
    pid: int

    def __repr__(self) -> str:  # never the token
        return f"Endpoint({self.host}:{self.port}, pid {self.pid})"


def path_in(engine_dir: str) -> str:
    return os.path.join(engine_dir, FILE_NAME)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write(engine_dir: str, endpoint: Endpoint) -> str:
    """Write ``endpoint`` into ``engine_dir`` (0600, atomically); its path."""
    path = path_in(engine_dir)
    tmp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps({"host": endpoint.host, "port": endpoint.port, "token": endpoint.token,
                               "pid": endpoint.pid}))
    os.replace(tmp, path)
    return path


def remove(engine_dir: str, endpoint: Endpoint) -> None:
    """Remove the file if it still names ``endpoint`` (a newer worker's is left alone)."""
    if read(engine_dir) == endpoint:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path_in(engine_dir))


def read(engine_dir: str) -> Endpoint | None:
    """The endpoint the file names, or None (no file, or not one a worker wrote)."""
    try:
        with open(path_in(engine_dir), "rb") as fh:
            doc = orjson.loads(fh.read())
        return Endpoint(str(doc["host"]), int(doc["port"]), str(doc["token"]), int(doc["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not a worker of ours
        return False
    return True


def read_live(engine_dir: str) -> Endpoint | None:
    """The endpoint the file names if its process still runs, else None."""
    endpoint = read(engine_dir)
    return endpoint if endpoint is not None and alive(endpoint.pid) else None
