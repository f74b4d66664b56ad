"""The Faust app: topics, tables and thin agents around :class:`streams.worker.pipeline.Pipeline`.

* ``ingest`` consumes the events topic and the internal reroute topic (same partitioning), in
  batches, with manual acks: the pipeline acks after its flush made everything durable.
* ``devices`` consumes device observations regrouped by device (internal topic) for
  ``fake.device_farm``.
* The ``users`` and ``devices`` tables hold encoded state; their changelogs are written by the
  pipeline once per changed key per flush and replayed by Faust on recovery/rebalance.
* Faust's web server is disabled: per-user tables are personal data.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import faust
from faust.tables.manager import TableManager
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from sinks.alerts import AlertSink
from sinks.base import UNCAPPED, SinkInvalid
from sinks.clickhouse import ActivitySink, ClickHouse, RawSink
from sinks.late import LateSink
from sinks.outcomes import OutcomeSink
from sinks.segments import SegmentSink
from streams.config.settings import Settings
from streams.kafka.client import new_producer, ssl_context
from streams.kafka.read import KafkaFenceSource
from streams.kafka.topics import TABLES, changelog_topic, device_topic, reroute_topic, source_topics
from streams.ops import exit_codes, gauges
from streams.ops.faults import Faults
from streams.ops.metrics import Metrics
from streams.ops.segment_gauges import SegmentGauges
from streams.ops.watchdog import Watchdog
from streams.worker.consumer import Fetched, LeanConsumer, LeanTransport, RoutedChannel
from streams.worker.local_state import close_on_revoke
from streams.worker.pipeline import Pipeline
from streams.worker.restore import clear_end_signal_on_start

log = logging.getLogger("vitals.app")


class FaustApp(faust.App):
    """Faust's app on :class:`streams.worker.consumer.LeanTransport`: the topics in ``lean_routes`` reach
    their agents a fetch at a time (see :mod:`streams.worker.consumer`)."""

    lean_routes: dict[str, RoutedChannel]
    _settled: asyncio.Event | None = None
    on_sigusr1: Callable[[], None] | None = None  # the operator's dump (see build_app)

    async def on_first_start(self) -> None:
        """Install the SIGUSR1 dump before the consumer starts: a worker stuck while it joins
        the group or recovers its tables is when an operator needs it (an app task would only
        install it once the app is up, and until then the signal went to mode's own handler)."""
        await super().on_first_start()
        if self.on_sigusr1 is not None:
            import signal

            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.on_sigusr1)

    def _new_transport(self) -> Any:
        return LeanTransport(self.conf.broker_consumer, self)

    @property
    def settled(self) -> asyncio.Event:
        """Set while no rebalance is in progress (created on first use, not at import)."""
        if self._settled is None:
            self._settled = asyncio.Event()
            if not self.rebalancing:
                self._settled.set()
        return self._settled

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        self.settled.clear()

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        self.settled.set()

    async def wait_settled(self, generation: int) -> bool:
        """Wait for the rebalance in progress, if any, to end (tables recovered, partitions sought to
        their committed offsets); False when the consumer generation moved on from ``generation``.

        Faust resumes the flow before it ends the rebalance, so a fetch can reach an agent while
        the app still says it is rebalancing: dropping it would leave it unprocessed with nothing
        left to fetch (the read position is past it), so the agent waits for the end instead."""
        while self.rebalancing and self.consumer_generation_id == generation:
            await self.settled.wait()
        return self.consumer_generation_id == generation


@dataclass
class VitalsApp:
    app: faust.App
    pipeline: Pipeline
    metrics: Metrics
    clickhouse: ClickHouse
    faults: Faults


def _credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    ctx = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username, password=kafka.sasl_password, mechanism=kafka.sasl_mechanism, ssl_context=ctx
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def queued_bytes(channels: Iterable[Any]) -> int:
    """Bytes of the fetches queued for the agents (a put goes to the queue of each agent iterating a
    channel; a rebalance empties them), as the memory budget counts them."""
    total = 0
    for channel in channels:
        for subscriber in list(getattr(channel, "_subscribers", ())):
            total += sum(getattr(f, "size", 0) for f in list(getattr(subscriber.queue, "_queue", ())))
    return total


class FaustSource:
    """The pipeline's consumer side (:class:`streams.worker.source.Source`) on the Faust app's consumer."""

    def __init__(self, app: FaustApp, channels: Sequence[Any], faults: Faults) -> None:
        self.app = app
        self.channels = channels  # the agents' fetch channels, whose queued bytes the memory budget counts
        self.faults = faults

    def accepting(self) -> bool:
        return not self.app.rebalancing

    def queued_bytes(self) -> int:
        return queued_bytes(self.channels)

    @property
    def consumer(self) -> LeanConsumer:
        return cast(LeanConsumer, self.app.consumer)  # the transport's (LeanTransport)

    def seeks(self) -> int:
        return self.consumer.seeks

    async def start_offset(self, tp: tuple[str, int]) -> int:
        """Where a partition starts once a rebalance settled: the committed offset Faust sought to."""
        consumer = self.consumer
        committed = consumer._committed_offset.get(TP(*tp))
        if committed is not None:
            return int(committed)
        earliest = await consumer.earliest_offsets(TP(*tp))  # nothing committed yet (or 0)
        return int(earliest.get(TP(*tp), 0) or 0)

    async def reseek(self) -> None:
        await self.consumer.perform_seek()

    async def commit(self, offsets: dict[tuple[str, int], int]) -> bool:
        """Commit exactly these offsets (the pipeline's flushed positions), bypassing Faust's acks."""
        return bool(await self.consumer._commit({TP(topic, p): o for (topic, p), o in offsets.items()}))

    def failed(self, exc: BaseException) -> None:
        die(exc)


def die(exc: BaseException) -> NoReturn:
    """Crash-only: a failure inside processing or a flush job (not an outage: those are
    retried) may have lost outputs of processed messages. Faust would restart the agent and
    let later flushes commit past them; exiting makes the next worker process them again from
    the committed offsets (the supervisor restarts it). But ClickHouse refusing the writes
    whatever the rows (rows refused on their own are dead-lettered by the flush) would refuse a
    fresh worker too: that stops, with the refusal in one line and an exit code the supervisor
    does not restart."""
    if isinstance(exc, SinkInvalid):
        log.critical("stopping (exit code %d, not restarted): %s", exit_codes.REFUSED, exc)
        logging.shutdown()
        os._exit(exit_codes.REFUSED)
    log.critical("processing failed, exiting for a fresh worker: %r", exc, exc_info=exc)
    logging.shutdown()
    os._exit(exit_codes.FAILED)


def build_app(settings: Settings, partitions: int, metrics: Metrics | None = None) -> VitalsApp:
    """Build (not start) the Faust app: the app, its tables and topics, the pipeline, its agents and timers.
    No I/O here."""
    ProducerBuffer.max_messages = 10_000  # a class attribute in Faust (see NOTES), not a setting
    metrics = metrics or Metrics()
    proc = settings.processing
    app = _faust_app(settings, partitions)
    users, devices = _tables(app, settings, partitions)
    user_fetches, device_fetches = _fetch_channels(app, settings, partitions)
    faults = Faults.from_env(os.environ)
    _recovery_faults((users, devices), faults)
    ch = ClickHouse(
        settings.effective_clickhouse_dsn, ca_cert=settings.clickhouse_ca, verify=settings.clickhouse_verify
    )
    cap = proc.sink_buffer_cap_rows
    metrics.buffer_cap.set(cap)
    pipeline = Pipeline(
        settings,
        partitions,
        users.data,
        devices.data,
        (users.changelog_topic.get_topic_name(), devices.changelog_topic.get_topic_name()),
        ActivitySink(ch, cap),
        # a job's alerts, already held by the job: a day close, or a watermark jump past many absence
        # deadlines, may decide one per user of the partition at once; each insert is bounded in rows and bytes
        AlertSink(ch, UNCAPPED),
        metrics,
        lambda: new_producer(settings.kafka),
        FaustSource(app, (user_fetches, device_fetches), faults),
        # a job's raw messages: below flush_max_rows (<= cap) when a flush is due, plus the fetch
        # that got them there
        raw_sink=RawSink(ch, cap + proc.batch_max_messages) if settings.clickhouse_raw_messages else None,
        late_sink=LateSink(ch, cap),
        fence_source=KafkaFenceSource(settings),
        outcome_sink=OutcomeSink(ch, cap),
        # a job's segment changes, likewise; each insert is cut to a bounded size (sinks/segments.py)
        segment_sink=SegmentSink(ch, UNCAPPED),
    )
    _agents(app, pipeline, metrics, user_fetches, device_fetches)
    _timers(app, pipeline, settings, metrics, ch)
    _rebalances_and_signals(app, pipeline, settings)
    return VitalsApp(app, pipeline, metrics, ch, faults)


def _faust_app(settings: Settings, partitions: int) -> FaustApp:
    proc = settings.processing
    store = "memory://" if proc.store == "memory" else "rocksdb://"  # a database per table partition in datadir
    return FaustApp(
        settings.app_id,
        broker=[f"kafka://{hp.strip()}" for hp in settings.kafka.bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store=store,
        datadir=str(Path(settings.data_dir) / "faust"),
        topic_partitions=partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        stream_buffer_maxsize=proc.batch_max_messages * 2,
        broker_max_poll_records=proc.batch_max_messages,
        consumer_max_fetch_size=8 << 20,  # per partition: keep whole fetches buffered ahead of processing
        producer_linger_ms=5,
        producer_max_batch_size=1 << 20,
        producer_max_request_size=8 << 20,
        table_standby_replicas=0,
        broker_session_timeout=proc.session_timeout_s,
        broker_heartbeat_interval=max(1.0, proc.session_timeout_s / 5),
        stream_wait_empty=False,
        logging_config=None,
    )


def _tables(app: FaustApp, settings: Settings, partitions: int) -> tuple[Any, Any]:
    """The users and devices tables (encoded state; the pipeline writes their changelogs)."""
    users, devices = tables = [app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes)
                               for name in TABLES]
    for name, table in zip(TABLES, tables, strict=True):
        if table.changelog_topic.get_topic_name() != changelog_topic(settings, name):  # created before start
            raise RuntimeError(f"Faust names the {name} changelog {table.changelog_topic.get_topic_name()!r}")
        close_on_revoke(table.data)
    clear_end_signal_on_start(cast(TableManager, app.tables).recovery)  # see streams/worker/restore.py
    return users, devices


def _fetch_channels(app: FaustApp, settings: Settings, partitions: int) -> tuple[RoutedChannel, RoutedChannel]:
    """The source and device-observation topics, and the channels their fetches reach the agents on."""
    source, device_obs = (app.topic(*names, partitions=partitions, key_type=bytes, value_type=bytes,
                                    key_serializer="raw", value_serializer="raw")
                          for names in ((settings.events_topic, reroute_topic(settings), *source_topics(settings)),
                                        (device_topic(settings),)))
    # the consumer subscribes to these topics and hands their records over a fetch at a time (to agents
    # whose queues a rebalance's end does not clear: streams/worker/consumer.py)
    user_fetches, device_fetches = (RoutedChannel(app, maxsize=settings.processing.fetch_queue) for _ in range(2))
    app.lean_routes = {t: user_fetches for t in source.topics} | {t: device_fetches for t in device_obs.topics}
    for topic in (source, device_obs):
        app.topics.add(topic)
    return user_fetches, device_fetches


def _recovery_faults(tables: Sequence[Any], faults: Faults) -> None:
    """Crash points of the fault tests, also while tables recover."""
    if faults.path is None:
        return
    for table in tables:
        apply_batch = table.apply_changelog_batch

        def recovering(batch: Any, _apply: Any = apply_batch) -> None:
            faults.hit("recovery")
            _apply(batch)

        table.apply_changelog_batch = recovering


def _agents(app: FaustApp, pipeline: Pipeline, metrics: Metrics, user_fetches: RoutedChannel,
            device_fetches: RoutedChannel) -> None:
    """Thin agents: each current fetch to the pipeline; any failure is fatal (:func:`die`)."""

    async def current(fetched: Fetched) -> bool:
        """Whether a fetch is of the current consumer generation, once a rebalance in progress has
        ended. One from an earlier generation comes again: each assignment seeks to the committed
        offsets."""
        if await app.wait_settled(fetched.generation):
            return True
        metrics.stale_dropped.inc(len(fetched.records))
        return False

    def fetch_agent(handle: Callable[[Sequence[Any], int], Awaitable[None]]) -> Callable[[faust.StreamT[Fetched]], Any]:
        """A thin agent: each current fetch's records (and seek count) to ``handle``; any failure is fatal."""

        async def agent(stream: faust.StreamT[Fetched]) -> None:
            async for fetched in stream:
                if await current(fetched):
                    try:
                        await handle(fetched.records, fetched.seeks)
                    except Exception as exc:
                        die(exc)

        return agent

    app.agent(user_fetches, name="ingest")(fetch_agent(pipeline.on_user_batch))
    app.agent(device_fetches, name="device_farm")(fetch_agent(pipeline.on_device_batch))


def _timers(app: FaustApp, pipeline: Pipeline, settings: Settings, metrics: Metrics, ch: ClickHouse) -> None:
    """The flush timer, the gauges and the lag watchdog."""
    proc = settings.processing

    @app.timer(interval=max(0.05, proc.flush_interval_s / 4))
    async def flush_timer() -> None:
        try:
            await pipeline.maybe_flush()
        except Exception as exc:
            die(exc)

    @app.timer(interval=2.0)
    async def state_gauges() -> None:
        pipeline.snapshot_gauges()

    watchdog = Watchdog(proc.lag_watchdog_s)
    segment_gauges = SegmentGauges(ch, metrics, pipeline.app_label)

    @app.timer(interval=10.0)
    async def slow_gauges() -> None:
        try:
            committed, ends = await gauges.source_offsets(settings)
            gauges.refresh_lag(metrics, settings.events_topic, pipeline.assigned, committed, ends)
        except Exception as exc:  # metrics must never stop the worker; say why, once per round
            log.warning("lag refresh failed: %s", type(exc).__name__)
            watchdog.excuse()  # cannot see the broker: not a stall of this worker
        else:
            check_stalls(committed, ends)
        try:
            await asyncio.get_running_loop().run_in_executor(
                pipeline.flusher.executor, gauges.product_gauges, ch, metrics, pipeline.app_label, pipeline.rules
            )
        except Exception as exc:
            log.warning("gauge refresh failed: %s", type(exc).__name__)
        try:  # segment sizes per app and dimension (streams/ops/segment_gauges.py), every minute
            await asyncio.get_running_loop().run_in_executor(pipeline.flusher.executor, segment_gauges.refresh)
        except Exception as exc:
            log.warning("segment gauge refresh failed: %s", type(exc).__name__)

    def check_stalls(committed: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]) -> None:
        if proc.lag_watchdog_s <= 0:
            return
        if app.rebalancing or getattr(app, "in_recovery", False) or pipeline.flush_started is not None:
            watchdog.excuse()
            return
        assigned = {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
        stalls = watchdog.observe(committed, {tp: end for tp, end in ends.items() if tp in assigned})
        if stalls:
            from streams.ops.diagnostics import dump

            log.error("watchdog: consumption stalled (%s); exiting with code %d for a fresh consumer",
                      ", ".join(f"{s.topic}[{s.partition}] committed {s.committed} < end {s.end} for "
                                f"{s.since_s:.0f}s" for s in stalls[:5]), exit_codes.STALLED)
            dump(app, pipeline.state_lines())
            logging.shutdown()
            os._exit(exit_codes.STALLED)  # crash-only: the supervisor restarts us from committed offsets


def _rebalances_and_signals(app: FaustApp, pipeline: Pipeline, settings: Settings) -> None:
    """Assignments and revokes to the pipeline, the SIGUSR1 dump, the pipeline stopped at shutdown."""

    @app.on_partitions_assigned.connect
    # a signal handler: (sender, /, *args, signal=..., **kwargs), as mode's SignalHandlerT types it; Faust
    # sends the assigned and revoked partitions as the first positional argument
    async def on_assigned(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        assigned: set[Any] = args[0]
        parts = {tp.partition for tp in assigned if tp.topic == settings.events_topic}
        log.info("assigned event partitions %s", sorted(parts))
        pipeline.on_assigned(parts)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0]
        log.info("partitions revoked: %d; flushing", len(revoked))
        try:
            await pipeline.on_revoked()
        except Exception as exc:
            die(exc)

    def sigusr1_dump() -> None:
        """SIGUSR1 logs every asyncio task's stack and the consumer's bookkeeping, for operators."""
        from streams.ops.diagnostics import dump

        dump(app, pipeline.state_lines())

    app.on_sigusr1 = sigusr1_dump

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        await pipeline.stop()
