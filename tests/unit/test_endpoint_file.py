"""The file a worker offers its query endpoint through (sinks/endpoint.py): its owner's only, written whole,
removed only while it is still the worker's own, ignored once its process is gone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from sinks import endpoint
from sinks.endpoint import Endpoint


def test_written_whole_and_private(tmp_path: Path) -> None:
    mine = Endpoint("127.0.0.1", 4242, endpoint.new_token(), os.getpid())
    path = endpoint.write(str(tmp_path), mine)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == [endpoint.FILE_NAME]  # no temporary file left
    assert endpoint.read(str(tmp_path)) == mine == endpoint.read_live(str(tmp_path))
    assert mine.token not in repr(mine)


def test_removed_only_while_it_is_still_ours(tmp_path: Path) -> None:
    old = Endpoint("127.0.0.1", 1, "old", os.getpid())
    new = Endpoint("127.0.0.1", 2, "new", os.getpid())
    endpoint.write(str(tmp_path), old)
    endpoint.write(str(tmp_path), new)  # a newer worker's
    endpoint.remove(str(tmp_path), old)
    assert endpoint.read(str(tmp_path)) == new
    endpoint.remove(str(tmp_path), new)
    assert endpoint.read(str(tmp_path)) is None
    endpoint.remove(str(tmp_path), new)  # already gone: nothing to do


def test_a_dead_workers_or_a_foreign_file_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-I", "-c", "pass"])
    gone.wait()
    endpoint.write(str(tmp_path), Endpoint("127.0.0.1", 1, "t", gone.pid))
    assert endpoint.read(str(tmp_path)) is not None and endpoint.read_live(str(tmp_path)) is None
    Path(endpoint.path_in(str(tmp_path))).write_text('{"host": "127.0.0.1"}')
    assert endpoint.read(str(tmp_path)) is None
    Path(endpoint.path_in(str(tmp_path))).write_text("not json")
    assert endpoint.read(str(tmp_path)) is None
