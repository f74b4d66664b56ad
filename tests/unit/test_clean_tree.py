"""The guard of tests/conftest.py: a test session that changes the checkout fails, loudly; files that were
already changed before the session, ignored files, and a tree that is not a git checkout do not fail it.
Each case runs pytest in a subprocess on a small git repository of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, tree_changes

CONFTEST = "from tests.conftest import pytest_sessionfinish, pytest_sessionstart  # noqa: F401\n"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True, timeout=60)


def make_repo(path: Path) -> Path:
    path.mkdir()
    (path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (path / ".gitignore").write_text("ignored/\n__pycache__/\n")
    (path / "kept.txt").write_text("committed\n")
    (path / "conftest.py").write_text(CONFTEST)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


def run_session(project: Path, test_body: str) -> subprocess.CompletedProcess[str]:
    test = "from pathlib import Path\n\n\ndef test_it():\n    root = Path(__file__).parent\n"
    (project / "test_it.py").write_text(f"{test}    {test_body}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")} | {"PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)]
    done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    (project / "test_it.py").unlink()
    return done


def test_tree_changes_lists_modified_and_untracked_paths_not_ignored_ones(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert tree_changes(repo) == set()
    (repo / "kept.txt").write_text("changed\n")
    (repo / "new.txt").write_text("new\n")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "state").write_text("x")
    assert tree_changes(repo) == {"kept.txt", "new.txt"}
    (repo / "sub").mkdir()
    assert tree_changes(repo / "sub") is None  # a folder inside a checkout is not its top
    plain = tmp_path / "plain"
    plain.mkdir()
    assert tree_changes(plain) is None


@pytest.mark.parametrize("write", ["(root / 'leak.txt').write_text('x')", "(root / 'kept.txt').write_text('y')"])
def test_a_session_that_changes_the_checkout_fails_loudly(tmp_path: Path, write: str) -> None:
    repo = make_repo(tmp_path / "repo")
    done = run_session(repo, write)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "checkout changed by the tests" in done.stdout and "1 passed" in done.stdout, done.stdout
    changed = "leak.txt" if "leak" in write else "kept.txt"
    assert f"  {changed}" in done.stdout.splitlines()


def test_files_changed_before_the_session_ignored_files_and_non_checkouts_pass(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "kept.txt").write_text("the developer's edit\n")
    (repo / "draft.txt").write_text("the developer's new file\n")
    done = run_session(repo, "(root / 'kept.txt').write_text('again'); (root / 'ignored').mkdir(); "
                             "(root / 'ignored' / 'x').write_text('x'); (root / 'draft.txt').write_text('more')")
    assert done.returncode == 0, done.stdout + done.stderr
    plain = tmp_path / "plain"  # an unpacked sdist: no git
    plain.mkdir()
    (plain / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (plain / "conftest.py").write_text(CONFTEST)
    done = run_session(plain, "(root / 'leak.txt').write_text('x')")
    assert done.returncode == 0 and (plain / "leak.txt").exists(), done.stdout + done.stderr
