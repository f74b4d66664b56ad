"""``vitals replay``'s ClickHouse (issue 24, items 7 and 8): a database of its own by default, never the
live tables, and no password taken from its command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from streams import cli
from streams.cli.replay import add_parser, replay_env
from streams.config.clickhouse_dsn import database_of
from streams.config.settings import ConfigError, load_settings

SECRET = "s3cr3t-pw"
LIVE = f"https://vitals:{SECRET}@ch.example:8443/vitals"


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["replay", "--app-id", "r1", *argv])


def env_for(live: dict[str, str], *argv: str) -> dict[str, str]:
    base = load_settings(env=live)
    return replay_env(base, args(*argv), environ=live)


def test_against_the_live_server_the_replay_writes_its_own_database(tmp_path: Path) -> None:
    live = {"VITALS_CLICKHOUSE_DSN": LIVE, "VITALS_DATA_DIR": str(tmp_path)}
    env = env_for(live)
    assert env["VITALS_CLICKHOUSE_DSN"] == f"https://vitals:{SECRET}@ch.example:8443/vitals_replay"
    assert database_of(load_settings(env=env).effective_clickhouse_dsn) == "vitals_replay"
    custom = {**live, "VITALS_CLICKHOUSE_DSN": "http://ch.example:8123/?database=analytics"}
    assert env_for(custom)["VITALS_CLICKHOUSE_DSN"] == "http://ch.example:8123/analytics_replay"
    assert env_for(live, "--clickhouse-database", "scratch")["VITALS_CLICKHOUSE_DSN"].endswith(":8443/scratch")


def test_the_live_database_on_the_live_server_is_refused(tmp_path: Path) -> None:
    live = {"VITALS_CLICKHOUSE_DSN": LIVE, "VITALS_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="live database"):
        env_for(live, "--clickhouse-database", "vitals")
    with pytest.raises(ConfigError, match="live database"):
        env_for(live, "--clickhouse-dsn", "https://vitals@CH.example:8443/vitals")  # the password from the env
    # the same name on another server is another database
    other = env_for(live, "--clickhouse-dsn", "https://replayer@other.example/vitals")
    assert other["VITALS_CLICKHOUSE_DSN"] == "https://replayer@other.example/vitals"
    with pytest.raises(ConfigError, match="letters, digits"):
        env_for(live, "--clickhouse-database", "a-b")


def test_the_embedded_replay_gets_its_own_directory_and_database(tmp_path: Path) -> None:
    env = env_for({"VITALS_DATA_DIR": str(tmp_path)})
    replay_dir = (tmp_path / "replays" / "r1").resolve()
    assert env["VITALS_CLICKHOUSE_DSN"] == f"chdb://{replay_dir}/clickhouse?database=vitals_replay"
    assert env["VITALS_DATA_DIR"] == str(replay_dir)


def test_a_password_on_the_command_line_is_refused_and_never_echoed(tmp_path: Path) -> None:
    live = {"VITALS_DATA_DIR": str(tmp_path)}
    for dsn in (f"http://u:{SECRET}@ch:8123/x", f"http://ch:8123/x?password={SECRET}"):
        with pytest.raises(ConfigError, match="--clickhouse-dsn-file") as refused:
            env_for(live, "--clickhouse-dsn", dsn)
        assert SECRET not in str(refused.value)
    assert env_for(live, "--clickhouse-dsn", "http://u@ch:8123/x")["VITALS_CLICKHOUSE_DSN"] == "http://u@ch:8123/x"


def test_the_dsn_from_a_file_or_the_environment(tmp_path: Path) -> None:
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(f"http://u:{SECRET}@ch:8123/mine\n")
    live = {"VITALS_DATA_DIR": str(tmp_path)}
    env = env_for(live, "--clickhouse-dsn-file", str(dsn_file))
    assert env["VITALS_CLICKHOUSE_DSN"] == f"http://u:{SECRET}@ch:8123/mine"  # the database it names
    # the live DSN from a file (a Kubernetes secret): the replay's is passed whole, the file variable dropped
    live_file = tmp_path / "live"
    live_file.write_text(f"http://u:{SECRET}@ch:8123/vitals")
    env = env_for({**live, "VITALS_CLICKHOUSE_DSN_FILE": str(live_file)})
    assert "VITALS_CLICKHOUSE_DSN_FILE" not in env
    assert env["VITALS_CLICKHOUSE_DSN"] == f"http://u:{SECRET}@ch:8123/vitals_replay"
    load_settings(env=env)  # a valid configuration for the replay's worker
    with pytest.raises(ConfigError, match="not both"):
        env_for(live, "--clickhouse-dsn-file", str(dsn_file), "--clickhouse-dsn", "http://ch/x")


def test_the_command_exits_2_without_showing_the_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for name in [k for k in os.environ if k.startswith("VITALS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VITALS_DATA_DIR", str(tmp_path))
    umask = os.umask(0o022)
    try:
        code = cli.main(["replay", "--clickhouse-dsn", f"https://u:{SECRET}@ch.example/x"])
    finally:
        assert os.umask(umask) == 0o077  # vitals keeps what it writes to its user (streams/config/private_files.py)
    err = capsys.readouterr().err
    assert code == 2 and "holds a password" in err and SECRET not in err and "u:***@ch.example" in err
