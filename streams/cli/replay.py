"""``vitals replay``: reprocess the events topic from its start in a new consumer group with fresh
state, by running one worker under another app id (the Faust group and the prefix of its internal
and changelog topics) on the same events topic, until it has caught up.

Time is event time only (SPEC section 2) and alert ids hash (event app_id, rule, subject, episode
start), so the replay decides the same alerts with the same ids as live processing did. Its
outputs go elsewhere by default so downstream consumers see nothing twice: alerts and dead
letters to ``<replay app id>.alerts`` / ``.events.dlq``, local state and the embedded ClickHouse
under ``<data dir>/replays/<replay app id>``, and the ClickHouse tables into a database of their own
(``<live database>_replay``, ``vitals_replay`` by default) on whichever ClickHouse the replay uses:
against the live server it never writes into the live tables (refused if told to). Options point
them anywhere else.

The replay's DSN is the configured one (``VITALS_CLICKHOUSE_DSN`` or its ``_FILE``), or read from
``--clickhouse-dsn-file``; ``--clickhouse-dsn`` on the command line, which ``ps`` shows to every user
of the machine, is refused if it holds a password.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from pathlib import Path

from streams.config.clickhouse_dsn import database_of, location, named_database, replay_database, with_database
from streams.config.private_files import private_dir
from streams.config.secrets import read_secret_file, redact_dsn
from streams.config.settings import ConfigError, Settings, Sources, load_settings
from streams.kafka.offsets import end_offsets
from streams.ops import exit_codes
from streams.ops.metrics_snapshot import save_snapshot, snapshot_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replay_env(base: Settings, args: argparse.Namespace, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the replay worker: the live configuration with the replay's overrides."""
    env = dict(os.environ if environ is None else environ)
    app_id = args.app_id or f"{base.app_id}-replay-{int(time.time())}"
    if app_id == base.app_id:
        raise ConfigError(f"replay needs an app id other than the live one ({app_id!r}): its group and state")
    data_dir = args.data_dir or str(Path(base.data_dir).resolve() / "replays" / app_id)
    env.update(
        VITALS_APP_ID=app_id,
        VITALS_EVENTS_TOPIC=base.events_topic,
        VITALS_ALERTS_TOPIC=args.alerts_topic or f"{app_id}.alerts",
        VITALS_DLQ_TOPIC=args.dlq_topic or f"{app_id}.events.dlq",
        VITALS_SEGMENTS_TOPIC=f"{app_id}.segments",
        VITALS_DATA_DIR=data_dir,
        VITALS_METRICS_PORT=str(args.metrics_port or _free_port()),
        VITALS_KAFKA_BOOTSTRAP=base.kafka.bootstrap,  # the live one's, found in the live data dir if not configured
    )
    env.pop("VITALS_CLICKHOUSE_DSN_FILE", None)  # the replay's DSN is passed whole, in the environment
    env["VITALS_CLICKHOUSE_DSN"] = replay_dsn(base, args, data_dir)
    return env


def _given_dsn(args: argparse.Namespace) -> str | None:
    """The DSN given to the replay: from ``--clickhouse-dsn-file``, or ``--clickhouse-dsn`` if it holds no
    secret (on a command line every user of the machine can read it)."""
    if args.clickhouse_dsn_file:
        if args.clickhouse_dsn:
            raise ConfigError("give --clickhouse-dsn or --clickhouse-dsn-file, not both")
        return read_secret_file("--clickhouse-dsn-file", args.clickhouse_dsn_file)
    if args.clickhouse_dsn and redact_dsn(args.clickhouse_dsn) != args.clickhouse_dsn:
        raise ConfigError(
            f"--clickhouse-dsn {redact_dsn(args.clickhouse_dsn)} holds a password, which a command line shows to "
            "every user of this machine (ps): put the DSN in a file readable by you only (--clickhouse-dsn-file) "
            "or in VITALS_CLICKHOUSE_DSN, or the password in VITALS_CLICKHOUSE_PASSWORD(_FILE)")
    return args.clickhouse_dsn or None


def replay_dsn(base: Settings, args: argparse.Namespace, data_dir: str) -> str:
    """The replay's ClickHouse: the given DSN, else the configured one, else the embedded engine in its
    data dir; its database ``--clickhouse-database``, else the one the given DSN names, else
    ``<live database>_replay``. Never the live database of the live ClickHouse."""
    given = _given_dsn(args)
    source = given or base.clickhouse_dsn or f"chdb://{Path(data_dir).resolve()}/clickhouse"
    live = base.effective_clickhouse_dsn
    try:
        database = replay_database(database_of(live), args.clickhouse_database or (given and named_database(given)))
        dsn = with_database(source, database)
    except ValueError as exc:
        raise ConfigError(f"replay: {exc}") from None
    if database == database_of(live) and location(dsn) == location(live):
        raise ConfigError(f"replay: {database} is the live database on the live ClickHouse; the replay writes "
                          "into a database of its own (default <live database>_replay)")
    return dsn


def run_replay(args: argparse.Namespace) -> int:
    from streams.devtools.worker_process import start_worker, stop_worker, wait_for_lag_zero
    from streams.kafka.reachable import wait_for_kafka
    from streams.kafka.topics import prepare_topics

    sources = Sources()
    base = load_settings(sources=sources)
    env = replay_env(base, args)
    settings = load_settings(env=env)
    wait_for_kafka(base.kafka, sources)  # once the arguments are checked
    private_dir(settings.data_dir)
    total = sum(asyncio.run(end_offsets(settings.kafka, settings.events_topic)).values())
    if total == 0:
        print(f"vitals replay: {settings.events_topic} is empty, nothing to replay", file=sys.stderr)
        return exit_codes.FAILED_COMMAND
    asyncio.run(prepare_topics(settings))
    log_path = Path(settings.data_dir) / "worker.log"
    print(
        f"vitals replay: {total:,} messages of {settings.events_topic} into app id {settings.app_id} "
        f"(alerts -> {settings.alerts_topic}, state and log in {settings.data_dir})",
        file=sys.stderr,
    )
    worker = start_worker(env, log_path)
    try:
        wait_for_lag_zero(settings, worker, total, timeout_s=args.timeout, progress=not args.quiet)
        save_snapshot(settings.metrics_host, settings.metrics_port, snapshot_path(settings.data_dir))
    finally:
        stop_worker(worker)
    print(f"app_id={settings.app_id}")
    print(f"alerts_topic={settings.alerts_topic}")
    print(f"dlq_topic={settings.dlq_topic}")
    print(f"data_dir={settings.data_dir}")
    dsn = redact_dsn(settings.effective_clickhouse_dsn)
    print(f"clickhouse_database={database_of(settings.effective_clickhouse_dsn)}")
    print(f"clickhouse_dsn={dsn}")  # its password, if any, as configured
    print(
        f"vitals replay: done. Report on it: VITALS_APP_ID={settings.app_id} VITALS_DATA_DIR={settings.data_dir} "
        f"VITALS_ALERTS_TOPIC={settings.alerts_topic} VITALS_DLQ_TOPIC={settings.dlq_topic} "
        f"VITALS_CLICKHOUSE_DSN='{dsn}' vitals report",
        file=sys.stderr,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="reprocess the events topic from the start in a new group with fresh state")
    p.add_argument("--app-id", default=None, help="the replay's app id (default <app_id>-replay-<time>)")
    p.add_argument("--alerts-topic", default=None, help="default <replay app id>.alerts")
    p.add_argument("--dlq-topic", default=None, help="default <replay app id>.events.dlq")
    p.add_argument("--data-dir", default=None, help="default <data dir>/replays/<replay app id>")
    p.add_argument("--clickhouse-dsn", default=None,
                   help="default: the configured DSN, or chdb in the data dir; no password here (ps shows it)")
    p.add_argument("--clickhouse-dsn-file", default=None, help="a file holding the replay's DSN (with its password)")
    p.add_argument("--clickhouse-database", default=None,
                   help="default: the database --clickhouse-dsn names, else <live database>_replay")
    p.add_argument("--metrics-port", type=int, default=None, help="default: a free port")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the replay to catch up")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run_replay)
