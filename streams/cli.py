"""The ``vitals`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streams.private import private_dir, private_process
from streams.settings import ConfigError, ProcessingSettings, Settings, load_settings

if TYPE_CHECKING:  # the worker's modules load with the command that needs them
    from streams.metrics import Metrics
    from streams.pipeline import Pipeline

log = logging.getLogger("vitals")


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


async def _prestart(settings: Settings) -> int:
    from streams.kafka_io import device_topic, ensure_topics, partition_counts, reroute_topic, topic_partitions

    try:
        existing = await asyncio.wait_for(topic_partitions(settings.kafka, settings.events_topic), 60)
    except TimeoutError:
        raise ConfigError(f"Kafka at {settings.kafka.bootstrap} did not answer within 60 s") from None
    partitions = existing or settings.kafka.partitions
    await ensure_topics(settings, partitions)
    # records go to these topics' partitions by source partition: fewer partitions than the
    # events topic would fail every flush that reaches past them
    outputs = [settings.dlq_topic, reroute_topic(settings), device_topic(settings)]
    for topic, found in (await partition_counts(settings.kafka, outputs)).items():
        if found < partitions:
            raise ConfigError(f"topic {topic} has {found} partitions, fewer than the {partitions} of "
                              f"{settings.events_topic}: add partitions to it (kafka-topics --alter)")
    return partitions


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()  # a bad configuration stops here, before any process is started
    _setup_logging(args.loglevel)
    from streams.supervisor import CHILD_ENV, supervise

    if os.environ.get(CHILD_ENV) != "1" and not args.no_supervise:
        return supervise([sys.executable, "-P", "-m", "streams.cli", "worker", "--loglevel", args.loglevel],
                         max_backoff_s=settings.processing.restart_backoff_max_s)
    log.info("starting worker: %r", settings)
    private_dir(settings.data_dir)  # local state (and chdb's default home)
    partitions = asyncio.run(_prestart(settings))
    from faust import Worker

    from streams.app import build_app

    vitals = build_app(settings, partitions)
    vitals.faults.load()
    from sinks.base import SinkBackpressure, SinkInvalid
    from sinks.views import view_ddl
    from streams.supervisor import EXIT_REFUSED

    vitals.clickhouse.extra_ddl = view_ddl(vitals.clickhouse.database)
    try:
        vitals.clickhouse.ensure_schema()
    except SinkBackpressure as exc:  # unavailable, not misconfigured: the sink retries with backoff
        log.warning("ClickHouse unavailable at startup (%s); writes will retry", type(exc.cause).__name__)
    except SinkInvalid as exc:  # refused credentials, grants: a fresh worker would be refused the same
        log.critical("stopping (exit code %d, not restarted): %s", EXIT_REFUSED, exc)
        return EXIT_REFUSED
    vitals.metrics.serve(settings.metrics_host, settings.metrics_port)
    vitals.metrics.up.set(1)
    from schemas.alerts import RULES

    vitals.metrics.init_series(("user_activity_daily", "alerts"), RULES, vitals.pipeline.app_label.values)
    log.info("metrics on http://%s:%d/metrics, %d partitions", settings.metrics_host, settings.metrics_port, partitions)
    worker = Worker(vitals.app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False)
    _tune_runtime(settings.processing, vitals.pipeline, vitals.metrics)
    worker.execute_from_commandline()
    return 0


def _tune_runtime(proc: ProcessingSettings, pipeline: Pipeline, metrics: Metrics) -> None:
    """Everything imported and built so far lives as long as the worker: out of the collector's
    sight (``gc.freeze``); then garbage collection at the pipeline's pace (``gc_paced``) or young
    collections less often, if configured; the GIL handed over sooner to the consumer and sink
    threads."""
    import gc

    from streams.collector import PacedCollector

    sys.setswitchinterval(proc.gil_switch_interval_ms / 1000)
    gc.collect()
    gc.freeze()
    if proc.gc_paced:
        pipeline.collector = PacedCollector(proc.gc_full_interval_s, metrics.gc_seconds)
        pipeline.collector.start()
    elif proc.gc_gen0_threshold:
        gc.set_threshold(proc.gc_gen0_threshold, *gc.get_threshold()[1:])


def cmd_kafka(args: argparse.Namespace) -> int:
    from streams import localkafka

    directory = Path(args.dir)
    if args.action == "start":
        print(localkafka.start(directory, args.port))
    else:
        localkafka.stop(directory)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from streams.generator import GenConfig, generate
    from streams.produce import produce_history

    settings = load_settings()
    cfg = GenConfig(
        users=args.users,
        days=args.days,
        events=args.events,
        seed=args.seed,
        batch=args.batch,
        partitions=asyncio.run(_prestart(settings)),
        hostile=args.hostile,
        hostile_scale=args.scale,
    )
    print(f"generating about {cfg.events:,} events of {cfg.users:,} users over {cfg.days} days"
          f"{f' with hostile input (scale {cfg.hostile_scale:g})' if cfg.hostile else ''}...", file=sys.stderr)
    history = generate(cfg)
    print(f"producing {len(history.messages):,} messages to {settings.events_topic}", file=sys.stderr)
    asyncio.run(produce_history(settings, history, progress=True))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Run one SQL query on the configured ClickHouse and print the rows as JSON lines."""
    import orjson

    from sinks.clickhouse import ClickHouse

    settings = load_settings()
    ch = ClickHouse(settings.effective_clickhouse_dsn, ca_cert=settings.clickhouse_ca,
                    verify=settings.clickhouse_verify)
    try:
        for row in ch.query(args.sql):
            sys.stdout.buffer.write(orjson.dumps(list(row), default=str) + b"\n")
    finally:
        ch.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitals", description="Real-time user behaviour tracking on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run one worker (more can join the same consumer group)")
    w.add_argument("--loglevel", default=os.environ.get("VITALS_LOGLEVEL", "INFO"))
    w.add_argument("--no-supervise", action="store_true",
                   help="run the worker in this process (no restart when it dies)")
    w.set_defaults(func=cmd_worker)
    k = sub.add_parser("kafka", help="start or stop the local single-node Kafka")
    k.add_argument("action", choices=["start", "stop"])
    k.add_argument("--dir", default=".vitals/kafka")
    k.add_argument("--port", type=int, default=None)
    k.set_defaults(func=cmd_kafka)
    g = sub.add_parser("generate", help="produce a generated event history into the events topic")
    g.add_argument("--users", type=int, default=20_000)
    g.add_argument("--days", type=int, default=21)
    g.add_argument("--events", type=int, default=300_000)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--batch", type=int, default=1, help="events per message (1 = single-event messages)")
    g.add_argument("--hostile", action="store_true",
                   help="mix in hostile but valid input: a hot user, a steady bot, a device of 100k users, "
                        "100k app ids, ten years of backfill, offline phones, a fast clock (streams/hostile.py)")
    g.add_argument("--scale", type=float, default=1.0, help="size of the hostile input (1 = full size)")
    g.set_defaults(func=cmd_generate)
    q = sub.add_parser("query", help="run SQL on the configured ClickHouse, print JSON lines")
    q.add_argument("sql")
    q.set_defaults(func=cmd_query)
    r = sub.add_parser("run", help="the whole job locally: Kafka, a worker, generated traffic, a summary")
    r.add_argument("--users", type=int, default=20_000)
    r.add_argument("--days", type=int, default=21)
    r.add_argument("--events", type=int, default=300_000)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--dir", default=".vitals")
    r.add_argument("--no-report", action="store_true", help="skip the HTML report at the end")
    r.set_defaults(func=cmd_run)
    from streams import inspection, replay, report, thresholds

    report.add_parser(sub)
    replay.add_parser(sub)
    inspection.add_parser(sub)
    thresholds.add_parser(sub)
    v = sub.add_parser("views", help="create (or replace) the analyst views in ClickHouse; --print shows the SQL")
    v.add_argument("--print", action="store_true", dest="print_sql")
    v.set_defaults(func=cmd_views)
    return parser


def cmd_views(args: argparse.Namespace) -> int:
    from sinks.clickhouse import ClickHouse
    from sinks.views import ensure_views, view_ddl

    settings = load_settings()
    ch = ClickHouse(settings.effective_clickhouse_dsn, ca_cert=settings.clickhouse_ca,
                    verify=settings.clickhouse_verify)
    if args.print_sql:  # for the configured database; nothing is opened
        print(";\n\n".join(view_ddl(ch.database)) + ";")
        return 0
    try:
        ch.ensure_schema()
        ensure_views(ch)
    finally:
        ch.close()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from streams.runner import run_local

    return run_local(args)


def main(argv: list[str] | None = None) -> int:
    private_process()  # whatever vitals writes (state, the embedded ClickHouse, logs, reports): its user's only
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"vitals: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

