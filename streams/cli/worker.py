"""``vitals worker``: one worker, supervised (restarted in a fresh process when it dies)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING

from streams.config.private_files import private_dir
from streams.config.settings import ProcessingSettings, Sources, load_settings

if TYPE_CHECKING:  # the worker's modules load with the command that needs them
    from sinks.clickhouse import ClickHouse
    from sinks.query_server import QueryServer
    from streams.ops.metrics import AppLabels, Metrics
    from streams.worker.pipeline import Pipeline

log = logging.getLogger("vitals")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("worker", help="run one worker (more can join the same consumer group)")
    w.add_argument("--loglevel", default=os.environ.get("VITALS_LOGLEVEL", "INFO"))
    w.add_argument("--no-supervise", action="store_true",
                   help="run the worker in this process (no restart when it dies)")
    w.set_defaults(func=cmd_worker)


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.kafka.reachable import wait_for_kafka
    from streams.ops.ports import bind_error, check_metrics_port
    from streams.ops.supervisor import CHILD_ENV, supervise

    sources = Sources()
    settings = load_settings(sources=sources)  # a bad configuration stops here, before any process is started
    check_metrics_port(settings, sources)
    child = os.environ.get(CHILD_ENV) == "1"  # started by the supervisor, which waited for Kafka already
    if not child:  # once per `vitals worker`: a worker restarted later retries a broker that went away
        wait_for_kafka(settings.kafka, sources)
    _setup_logging(args.loglevel)
    if not child and not args.no_supervise:
        return supervise([sys.executable, "-P", "-m", "streams.cli", "worker", "--loglevel", args.loglevel],
                         max_backoff_s=settings.processing.restart_backoff_max_s)
    log.info("starting worker: %r", settings)
    private_dir(settings.data_dir)  # local state (and chdb's default home)
    from streams.kafka.topics import prepare_topics

    partitions = asyncio.run(prepare_topics(settings))
    from faust import Worker

    from streams.worker.app import build_app

    vitals = build_app(settings, partitions)
    vitals.faults.load()
    from sinks.base import SinkBackpressure, SinkInvalid
    from sinks.views import view_ddl
    from streams.ops import exit_codes

    vitals.clickhouse.extra_ddl = view_ddl(vitals.clickhouse.database)
    _wait_for_engine(settings.effective_clickhouse_dsn)
    try:
        vitals.clickhouse.ensure_schema()
    except SinkBackpressure as exc:  # unavailable, not misconfigured: the sink retries with backoff
        log.warning("ClickHouse unavailable at startup (%s); writes will retry", type(exc.cause).__name__)
    except SinkInvalid as exc:  # refused credentials, grants: a fresh worker would be refused the same
        log.critical("stopping (exit code %d, not restarted): %s", exit_codes.REFUSED, exc)
        return exit_codes.REFUSED
    try:
        vitals.metrics.serve(settings.metrics_host, settings.metrics_port)
    except OSError as exc:  # taken since the check at startup
        raise bind_error(exc, settings, sources) or exc from None
    queries = _serve_queries(settings.effective_clickhouse_dsn)
    vitals.metrics.up.set(1)
    from schemas.alerts import RULES

    vitals.metrics.init_series(("user_activity_daily", "alerts", "segment_changes"), RULES,
                               vitals.pipeline.app_label.values)
    _segment_sizes(vitals.clickhouse, vitals.metrics, vitals.pipeline.app_label)
    log.info("metrics on http://%s:%d/metrics, %d partitions", settings.metrics_host, settings.metrics_port, partitions)
    # our logging as configured above, not mode's: mode installs colorlog with its colour decision taken
    # from stdout, so a log on stderr redirected to a file got escape codes whenever stdout was a terminal
    worker = Worker(vitals.app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False, override_logging=False)
    worker.spinner = None  # Faust's terminal spinner (it logs "Ready" instead)
    _tune_runtime(settings.processing, vitals.pipeline, vitals.metrics)
    try:
        worker.execute_from_commandline()
    finally:
        if queries is not None:
            queries.stop()  # the endpoint file removed: the readers open the engine again
    return exit_codes.OK


def _segment_sizes(ch: ClickHouse, metrics: Metrics, labels: AppLabels) -> None:
    """The segment-size gauges read once before consumption starts, so a restarted worker exports them from
    its first scrape (the worker's slow-gauges timer refreshes them after: streams/ops/segment_gauges.py)."""
    from streams.ops.segment_gauges import SegmentGauges

    try:
        SegmentGauges(ch, metrics, labels).refresh()
    except Exception as exc:  # metrics never stop the worker; the periodic refresh tries again
        log.warning("segment sizes not read at startup (%s)", type(exc).__name__)


def _wait_for_engine(dsn: str, timeout_s: float = 20.0) -> None:
    """On the embedded ClickHouse, wait a little for a process that holds the directory to let go: a
    ``vitals query`` or ``vitals report`` opens it for seconds when no worker runs. (Another worker
    holds it for good: the open that follows then fails with a configuration error.)"""
    import time

    from sinks.clickhouse import embedded_dir_in_use

    deadline = time.monotonic() + timeout_s
    if embedded_dir_in_use(dsn) is not None:
        log.info("the embedded ClickHouse is held by another process; waiting up to %.0fs", timeout_s)
    while embedded_dir_in_use(dsn) is not None and time.monotonic() < deadline:
        time.sleep(0.2)


def _serve_queries(dsn: str) -> QueryServer | None:
    """On the embedded ClickHouse, serve read-only queries to ``vitals query`` and ``vitals report``
    (sinks/query_server.py): nobody else can open the engine while this worker holds it."""
    from sinks.clickhouse import embedded_dir
    from sinks.query_server import QueryServer

    engine_dir = embedded_dir(dsn)
    if engine_dir is None:
        return None
    try:
        return QueryServer(engine_dir).start()
    except Exception as exc:  # the worker's job goes on without it: say why
        log.warning("cannot serve queries on the embedded ClickHouse (%s: %s); vitals query and vitals report "
                    "wait until this worker stops", type(exc).__name__, exc)
        return None


def _tune_runtime(proc: ProcessingSettings, pipeline: Pipeline, metrics: Metrics) -> None:
    """Everything imported and built so far lives as long as the worker: out of the collector's
    sight (``gc.freeze``); then garbage collection at the pipeline's pace (``gc_paced``) or young
    collections less often, if configured; the GIL handed over sooner to the consumer and sink
    threads."""
    import gc

    from streams.ops.paced_gc import PacedCollector

    sys.setswitchinterval(proc.gil_switch_interval_ms / 1000)
    gc.collect()
    gc.freeze()
    if proc.gc_paced:
        pipeline.collector = PacedCollector(proc.gc_full_interval_s, metrics.gc_seconds)
        pipeline.collector.start()
    elif proc.gc_gen0_threshold:
        gc.set_threshold(proc.gc_gen0_threshold, *gc.get_threshold()[1:])
