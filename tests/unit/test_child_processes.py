"""No Python process vitals starts takes code from the current directory (issue 24, item 4).

``python -m pkg`` and ``python -c`` put the current directory first on ``sys.path``, ``python
script.py`` the script's folder: a source checkout there shadows the installed package (its
``streams/`` without the built C extensions), a stray ``tomllib.py`` runs with the worker's secrets.
Every interpreter started from the code, the Dockerfile and the deploy scripts carries ``-P`` or
``-I``; the tests' own runner (``python -m pytest`` in deploy/test.sh, run in the checkout it tests)
is the one exception. tests/integration/test_docker_start.py starts the real thing.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAFE_FLAGS = {"-P", "-I"}
# the tests' runner: started in the checkout under test, whose packages it imports on purpose
ALLOWED = {("deploy/test.sh", ".venv/bin/python -m pytest -q -p no:cacheprovider \"$@\"")}


def _sources() -> list[Path]:
    here = Path(__file__).resolve()  # its examples of unsafe starts are not starts
    return [p for d in ("streams", "sinks", "schemas", "bench", "tests") for p in (ROOT / d).rglob("*.py") if p != here]


def _python_argvs(text: str) -> list[str]:
    """What follows ``sys.executable`` in each argument list of a Python source."""
    return re.findall(r"\[\s*sys\.executable\s*,\s*([^,\]]+)", text)


def test_the_check_finds_an_unsafe_start() -> None:
    assert _python_argvs('subprocess.run([sys.executable, "-m", "streams.cli"])') == ['"-m"']
    assert not _flagged('python -c "import x"') and not _flagged("/usr/bin/python3 -m venv x")
    assert _flagged("python3 -I -m venv x") and _flagged("echo no interpreter here")


def test_every_python_child_of_the_code_starts_with_p_or_i() -> None:
    found = 0
    for path in _sources():
        for first in _python_argvs(path.read_text()):
            found += 1
            assert first.strip().strip("\"'") in SAFE_FLAGS, f"{path.relative_to(ROOT)}: sys.executable, {first}"
    assert found >= 10  # the check sees the starts it is about (cli, runner, tests, bench)


def _flagged(command: str) -> bool:
    """A shell command line runs ``python``/``python3`` (any path) with -P or -I, or runs no Python."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    for i, word in enumerate(words):
        if re.fullmatch(r"(\S*/)?python3?(\.\d+)?", word):
            return bool(words[i + 1:i + 2]) and words[i + 1] in SAFE_FLAGS
    return True


def _shell_lines() -> list[tuple[str, str]]:
    lines = []
    for path in [ROOT / "Dockerfile", *sorted((ROOT / "deploy").rglob("*.sh"))]:
        text = path.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            for part in re.split(r"&&|\|\||;|\$\(|\{", line):
                if re.search(r"\bpython3?\b", part) and not part.lstrip().startswith("#"):
                    lines.append((str(path.relative_to(ROOT)), part.strip()))
    return lines


def test_every_python_of_the_dockerfile_and_deploy_scripts_starts_with_p_or_i() -> None:
    lines = _shell_lines()
    assert any("import streams.engine._engine" in line for _, line in lines)  # the Dockerfile's build check is seen
    unsafe = [(f, line) for f, line in lines if (f, line) not in ALLOWED and not _flagged(line)]
    assert not unsafe, unsafe
    assert not _flagged('python -c "import streams.engine._engine"') and _flagged('python -P -c "import x"')
