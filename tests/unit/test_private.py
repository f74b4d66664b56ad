"""Owner-only files (issue 24, item 8): the data directory, and a tree narrowed in place."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from streams.config.private_files import narrow_tree, private_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_tree_left_readable_is_narrowed_and_links_are_left_alone(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours to change")
    outside.chmod(0o644)
    root = tmp_path / "engine"
    (root / "store" / "part").mkdir(parents=True)
    for d in (root, root / "store", root / "store" / "part"):
        d.chmod(0o755)
    data = root / "store" / "part" / "data.bin"
    data.write_bytes(b"personal")
    data.chmod(0o664)
    secret = root / "store" / "mine"
    secret.write_text("x")
    secret.chmod(0o600)
    (root / "link").symlink_to(outside)
    assert narrow_tree(root) == 4  # three directories and one file; the 0600 file and the link unchanged
    assert [mode(p) for p in (root, root / "store", root / "store" / "part", data, secret)] == [
        0o700, 0o700, 0o700, 0o600, 0o600]
    assert mode(outside) == 0o644
    assert narrow_tree(root) == 0


def test_the_data_directory_and_what_vitals_creates_are_its_users(tmp_path: Path) -> None:
    assert mode(private_dir(tmp_path / "new" / "data")) == 0o700
    # the vitals command sets its umask first: a file it (or a child) creates is 0600
    probe = ("import os, sys; from streams import cli; os.umask(0o022); cli.main(['rules', '--json']); "
             "open(sys.argv[1], 'w').close(); os.mkdir(sys.argv[2])")
    subprocess.run([sys.executable, "-P", "-c", probe, str(tmp_path / "f"), str(tmp_path / "d")], check=True,
                   env={**os.environ, "VITALS_DATA_DIR": str(tmp_path / "x")}, capture_output=True, timeout=120)
    assert (mode(tmp_path / "f"), mode(tmp_path / "d")) == (0o600, 0o700)
