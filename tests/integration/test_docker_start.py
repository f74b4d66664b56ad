"""The Docker image's build and start-up, reproduced without a Docker engine (issue 24, item 4).

The Dockerfile is read, not restated: its ``.dockerignore``d build context, ``WORKDIR``, ``COPY``
lines, ``ENV``, the ``pip install`` and import check of its ``RUN`` step, its ``HEALTHCHECK`` and its
``ENTRYPOINT``/``CMD``. The source tree is copied as ``COPY`` does, installed into a fresh virtual
environment (no system site-packages; the image's system Python), the build's import check is run
in ``WORKDIR`` and ``vitals worker`` is started there against the test broker: it must come up
(metrics answer, healthcheck passes, partitions assigned) and stop cleanly on SIGTERM. Again from a
folder holding a stray ``tomllib.py`` that leaves a marker file when imported: it must not be.

Each case first shows its trap is real: in ``WORKDIR`` a plain ``python -c`` imports the source
``streams/`` (no C extension: the import fails), in the stray folder it runs ``tomllib.py``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Deployment, make_deployment
from tests.procs import wait_for
from tests.venvs import clean_env, dockerignore_patterns, ignored, install_fresh

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Image:
    """What the Dockerfile says, and its build reproduced: the venv stands for the image's Python."""

    workdir: Path  # the copy of WORKDIR
    venv: Path
    env: dict[str, str]  # ENV
    check: list[str]  # the RUN step's import check
    health: list[str]  # HEALTHCHECK CMD
    start: list[str]  # ENTRYPOINT + CMD
    install_s: float

    def python_argv(self, argv: list[str]) -> list[str]:
        """``argv`` with the image's ``python``/``vitals`` taken from the venv."""
        head = argv[0]
        return [str(self.venv / "bin" / head), *argv[1:]] if head in ("python", "vitals") else argv


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def copy_context(sources: list[str], dest: str, workdir: Path, patterns: list[str]) -> None:
    """``COPY sources... dest`` from the build context (ROOT) into ``workdir``."""
    target = workdir / dest
    for source in sources:
        src = ROOT / source
        to = target / src.name if dest.endswith("/") else target
        if src.is_file():
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, to)
            continue
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and not ignored(rel, patterns):
                out = to / path.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    base = tmp_path_factory.mktemp("image")
    patterns = dockerignore_patterns()
    workdir: Path | None = None
    env: dict[str, str] = {}
    check: list[str] = []
    health: list[str] = []
    entry: list[str] = []
    cmd: list[str] = []
    install: list[str] = []
    for word, args in instructions((ROOT / "Dockerfile").read_text()):
        if word == "WORKDIR":
            workdir = base / args.lstrip("/")
            workdir.mkdir(parents=True)
        elif word == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(args)))
        elif word == "COPY":
            assert workdir is not None, "COPY before WORKDIR"
            *sources, dest = shlex.split(args)
            copy_context(sources, dest, workdir, patterns)
        elif word == "RUN":
            for step in args.split("&&"):
                argv = shlex.split(step)
                if argv[:2] == ["pip", "install"]:
                    install = [a for a in argv[2:] if a != "--no-cache-dir"]
                elif argv and argv[0] == "python":
                    check = argv
        elif word == "HEALTHCHECK":
            health = shlex.split(args.partition(" CMD ")[2])
        elif word == "ENTRYPOINT":
            entry = json.loads(args)
        elif word == "CMD":
            cmd = json.loads(args)
    assert workdir is not None and install and check and health and entry, "the Dockerfile's steps were not found"
    assert not list(workdir.rglob("*.so")), "the build context holds extensions built in place"
    venv = base / "venv"
    # the pip cache is kept (the image drops it: --no-cache-dir) so that reruns are fast
    *pip_args, spec = install
    install_s = install_fresh(venv, workdir, spec, pip_args=tuple(pip_args)).install_s
    print(f"fresh venv and pip install {' '.join(install)}: {install_s:.0f} s", file=sys.stderr)
    try:
        yield Image(workdir, venv, env, check, health, entry + cmd, install_s)
    finally:
        shutil.rmtree(base, ignore_errors=True)  # the venv is large (the chdb engine)


def run_env(image: Image, deployment: Deployment) -> dict[str, str]:
    """The container's environment: the image's ENV, the deployment's broker, topics, data dir and port
    (the metrics endpoint on loopback here, not on every interface), the image's Python first on PATH."""
    deploy = {k: v for k, v in deployment.env.items() if k.startswith("VITALS_")}
    env = clean_env() | image.env | deploy | {"VITALS_METRICS_HOST": "127.0.0.1"}
    env["PATH"] = f"{image.venv / 'bin'}:{env['PATH']}"
    return env


def start_and_stop(image: Image, deployment: Deployment, cwd: Path, name: str) -> str:
    """``ENTRYPOINT CMD`` in ``cwd``: up (metrics, healthcheck, assignment), then SIGTERM; its log."""
    env = run_env(image, deployment)
    log_path = deployment.base / f"{name}.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(image.python_argv(image.start), cwd=cwd, env=env, stdout=log, stderr=log)
    try:
        def up() -> bool:
            if worker.poll() is not None:
                raise AssertionError(f"the worker exited with {worker.returncode}:\n{log_path.read_text()[-3000:]}")
            return "assigned event partitions" in log_path.read_text(errors="replace")

        wait_for(up, 180, "the worker's partition assignment")
        health = subprocess.run(image.python_argv(image.health), cwd=cwd, env=env, capture_output=True, timeout=30)
        assert health.returncode == 0, health.stderr.decode()[-2000:]
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(90)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            raise AssertionError(f"the worker did not stop on SIGTERM:\n{log_path.read_text()[-3000:]}") from None
    text = log_path.read_text(errors="replace")
    assert code == 0, f"exit {code}:\n{text[-3000:]}"
    return text


def test_the_build_check_imports_the_installed_package(image: Image) -> None:
    plain = subprocess.run([str(image.venv / "bin" / "python"), "-c", "import streams.engine._engine"],
                           cwd=image.workdir, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert plain.returncode != 0 and "streams.engine._engine" in plain.stderr  # the trap: the source tree shadows
    check = subprocess.run(image.python_argv(image.check), cwd=image.workdir, env=clean_env(), capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    print(f"fresh venv install: {image.install_s:.0f} s", file=sys.stderr)


def test_the_worker_starts_in_workdir_and_stops_on_sigterm(image: Image, kafka_bootstrap: str,
                                                           tmp_path: Path) -> None:
    deployment = make_deployment(kafka_bootstrap, tmp_path)
    log = start_and_stop(image, deployment, image.workdir, "workdir")
    assert "metrics on http://127.0.0.1" in log


def test_a_stray_tomllib_in_the_current_directory_never_runs(image: Image, kafka_bootstrap: str,
                                                             tmp_path: Path) -> None:
    stray = tmp_path / "stray"
    stray.mkdir()
    marker = tmp_path / "stray-ran"
    (stray / "tomllib.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('stray tomllib')\n")
    subprocess.run([str(image.venv / "bin" / "python"), "-c", "import tomllib"], cwd=stray, env=clean_env(),
                   capture_output=True, timeout=60)
    assert marker.exists()  # the trap: a plain python in this folder runs it
    marker.unlink()
    deployment = make_deployment(kafka_bootstrap, tmp_path)
    start_and_stop(image, deployment, stray, "stray")
    assert not marker.exists(), "the worker imported tomllib.py from its current directory"
