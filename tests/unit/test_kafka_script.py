"""deploy/kafka/kafka.sh never puts the SCRAM password on a command line (issue 24, item 8): ``ps``
shows every process's arguments to every user of the machine. The script runs here against a fake
``java`` that records each command line it gets and what its ``@``-argument file held, with what mode.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from streams.devtools import local_kafka as localkafka

PASSWORD = "pw-" + "s3cr3t#?/@x"

FAKE_JAVA = r"""#!/usr/bin/env bash
# records its command line; for an @-file, its mode and content; acts as much of Kafka as kafka.sh needs
n=$(ls "$FAKE_LOG" | wc -l)
printf '%s\n' "$@" > "$FAKE_LOG/argv.$n"
for a in "$@"; do
  case "$a" in
    @*) stat -c '%a' "${a#@}" > "$FAKE_LOG/argfile-mode.$n"; cat "${a#@}" > "$FAKE_LOG/argfile.$n" ;;
  esac
done
case "$*" in
  *random-uuid*) echo "5599q8-JQzm8ywpw_Tya9Q" ;;
  *kafka.Kafka*) echo "Kafka Server started"  # a broker runs until stopped, its main class on its command line
    exec python3 -I -c 'import time; time.sleep(300)' kafka.Kafka ;;
esac
"""


def test_the_scram_password_goes_through_a_private_argument_file(tmp_path: Path) -> None:
    bin_dir, log, libs, broker = tmp_path / "bin", tmp_path / "log", tmp_path / "libs", tmp_path / "broker"
    for d in (bin_dir, log, libs):
        d.mkdir()
    (libs / ".complete").touch()  # no Maven: the jars count as resolved
    java = bin_dir / "java"
    java.write_text(FAKE_JAVA)
    java.chmod(0o755)
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log),
           "VITALS_KAFKA_LIBS": str(libs), "VITALS_KAFKA_SCRAM_USER": "vitals",
           "VITALS_KAFKA_SCRAM_PASSWORD_FILE": str(password_file)}
    done = subprocess.run(["bash", str(localkafka.SCRIPT), "start", str(broker)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    subprocess.run(["bash", str(localkafka.SCRIPT), "stop", str(broker)], env=env, check=True, timeout=60)

    argvs = {p.name: p.read_text() for p in log.glob("argv.*")}
    assert len(argvs) == 3  # random-uuid, format, the broker
    assert not [name for name, argv in argvs.items() if PASSWORD in argv]
    formats = [n.split(".")[1] for n, argv in argvs.items() if "@" in argv]
    assert len(formats) == 1  # the format step read its arguments from a file
    held = (log / f"argfile.{formats[0]}").read_text()
    assert "kafka.tools.StorageTool" in held and f"password={PASSWORD}]" in held and "format" in held
    assert (log / f"argfile-mode.{formats[0]}").read_text().strip() == "600"
    assert not list(broker.glob(".java-args.*")), "the argument file is removed after use"
    assert not [p for p in broker.rglob("*") if p.is_file() and PASSWORD in p.read_text(errors="replace")]
    assert stat.S_IMODE((broker / "tls" / "ca.key").stat().st_mode) == 0o600
    # the broker's files (its logs hold users' events) are its user's only; the CA certificate is public
    exposed = [p.relative_to(broker) for p in [broker, *broker.rglob("*")] if p.stat().st_mode & 0o077]
    assert exposed == [Path("tls/ca.pem")], exposed


def test_a_password_the_argument_file_cannot_carry_is_refused(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / ".complete").touch()
    password_file = tmp_path / "pw"
    password_file.write_text('a\\b')  # the java launcher's @-file would read it as an escape
    env = {**os.environ, "VITALS_KAFKA_LIBS": str(libs), "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "VITALS_KAFKA_SCRAM_USER": "vitals", "VITALS_KAFKA_SCRAM_PASSWORD_FILE": str(password_file)}
    (tmp_path / "java").write_text("#!/bin/sh\necho 5599q8-JQzm8ywpw_Tya9Q\n")
    (tmp_path / "java").chmod(0o755)
    done = subprocess.run(["bash", str(localkafka.SCRIPT), "start", str(tmp_path / "broker")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "must not hold" in done.stderr


def test_an_installed_copy_ships_the_script_and_what_it_reads() -> None:
    """``vitals kafka``/``vitals run`` outside a checkout: the build copies kafka.sh and every file it reads
    next to itself (``$here/pom.xml``, ``$here/log4j2.properties``, ``$here/../retry.sh``) into the package,
    where :func:`local_kafka.find_script` looks (a checkout uses its own deploy/). The installed copy itself
    is exercised by tests/integration/test_newcomer_path.py (a non-editable install)."""
    import ast

    root = Path(__file__).resolve().parents[2]
    setup = ast.parse((root / "setup.py").read_text())
    files = next(ast.literal_eval(node.value) for node in ast.walk(setup) if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "DEPLOY_FILES" for t in node.targets))
    assert {"kafka/kafka.sh", "kafka/pom.xml", "kafka/log4j2.properties", "retry.sh"} <= set(files)
    manifest = (root / "MANIFEST.in").read_text().split()
    assert all(f"deploy/{rel}" in manifest for rel in files), "the sdist would lack what setup.py copies"
    script = (root / "deploy/kafka/kafka.sh").read_text()
    assert {"$here/pom.xml", "$here/log4j2.properties", "$here/../retry.sh"} <= {
        w.strip('"\'') for w in script.replace("=", " ").split() if w.strip('"\'').startswith("$here/")}
    assert localkafka.find_script() == root / "deploy/kafka/kafka.sh"
