"""Fresh virtual environments with vitals installed as a user would install it (not editable): the
source copied as a fresh clone has it, a venv without system site-packages, ``pip install``, the
environment stripped of this process's venv, Python and vitals settings. Shared by the Docker start-up
test and the newcomer's path (tests/integration/test_newcomer_path.py)."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clean_env() -> dict[str, str]:
    """This process's environment without its venv, Python or vitals settings (pip's own settings and
    cache stay: reruns install from the cache)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VITALS_", "PYTHON")) and k not in ("VIRTUAL_ENV", "PATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [p.strip() for p in lines if p.strip() and not p.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` leaves ``rel`` (a path in the build context) out."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch("/".join(rel.split("/")[i:]), pattern[3:]) for i in range(rel.count("/") + 1)):
                return True
        elif fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


def copy_as_cloned(dest: Path) -> Path:
    """The repository's files as a fresh clone has them: the files git tracks (their current content), or
    where this is not a git checkout, every file the build context keeps (.dockerignore)."""
    done = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, timeout=120)
    if done.returncode == 0 and done.stdout:
        files = [ROOT / rel for rel in done.stdout.decode().split("\0") if rel]
    else:
        patterns = dockerignore_patterns()
        files = [p for p in sorted(ROOT.rglob("*")) if not ignored(p.relative_to(ROOT).as_posix(), patterns)]
    for path in files:
        if path.is_file():
            out = dest / path.relative_to(ROOT)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
    return dest


@dataclass
class Installed:
    venv: Path
    install_s: float  # the fresh venv and pip install, seconds

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def install_fresh(venv: Path, source: Path, spec: str = ".", cwd: Path | None = None,
                  pip_args: tuple[str, ...] = ()) -> Installed:
    """A fresh venv at ``venv`` and ``pip install spec`` (relative to ``source``, not editable)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-P", "-m", "venv", str(venv)], check=True, env=clean_env(), timeout=300)
    done = subprocess.run([str(venv / "bin" / "python"), "-P", "-m", "pip", "install", "-q", *pip_args, spec],
                          cwd=cwd or source, env=clean_env(), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"pip install {spec} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return Installed(venv, time.monotonic() - started)
