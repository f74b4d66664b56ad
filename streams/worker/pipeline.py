"""Batch orchestration between the Faust agents, the engine and the sinks.

Agents hand over the Kafka records of one fetch (raw bytes). The pipeline decodes them, runs the
engine per partition and, when a flush is due (size or time bounded), takes a snapshot of the
outputs — a :class:`streams.worker.flush.FlushJob` — that the flusher makes durable and commits in the
background (see :mod:`streams.worker.flush` for the order and the guarantees) while the next batches
are processed; one job runs at a time, and past ``flush_max_rows`` buffered outputs processing
waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping, Sequence

from aiokafka import AIOKafkaProducer

from schemas.alerts import Alert, encode_alert
from sinks.alerts import AlertSink
from sinks.base import RetryPolicy
from sinks.clickhouse import ActivitySink, RawMessage, RawSink
from sinks.late import LateSink
from sinks.outcomes import OutcomeSink
from sinks.segments import SegmentSink
from streams.config.settings import Settings
from streams.engine.devices import DevicePartition, decoded_observations
from streams.engine.partition import Outputs, RulesByApp, StateStore, UserPartition, activity_columns
from streams.engine.partitioner import PartitionCache, key_partitioner
from streams.engine.routing import SLICE_BYTES, apply_records, input_decoders, slices
from streams.kafka.topics import device_topic, reroute_topic, source_topics
from streams.ops.metrics import AppLabels, Metrics
from streams.ops.paced_gc import PacedCollector
from streams.worker.budget import MB, OUTPUT_BYTES, MemoryBudget, message_bytes
from streams.worker.delivery import InFlight
from streams.worker.fence import FenceSource, ReplayFence
from streams.worker.flush import Flusher, FlushJob
from streams.worker.flush_jobs import Message, changelog_records, commit_offsets, kafka_records, raw_messages
from streams.worker.local_state import LocalTable
from streams.worker.ordering import InOrder
from streams.worker.outcome_gates import OutcomeGates
from streams.worker.partitions import fence_partitions, partition_keys, resume_offsets
from streams.worker.refusals import Refusals, activity_block
from streams.worker.source import Source

log = logging.getLogger("vitals.pipeline")


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        partitions: int,
        users_data: MutableMapping[bytes, bytes],
        devices_data: MutableMapping[bytes, bytes],
        changelogs: tuple[str, str],
        activity: ActivitySink,
        alert_sink: AlertSink,
        metrics: Metrics,
        producer_factory: Callable[[], AIOKafkaProducer],
        source: Source,
        clock: Callable[[], float] = time.time,
        raw_sink: RawSink | None = None,
        late_sink: LateSink | None = None,
        fence_source: FenceSource | None = None,
        outcome_sink: OutcomeSink | None = None,
        segment_sink: SegmentSink | None = None,
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        self.users_data = users_data
        self.devices_data = devices_data
        self.user_changelog, self.device_changelog = changelogs
        self.user_table = LocalTable(users_data, self.user_changelog)
        self.device_table = LocalTable(devices_data, self.device_changelog)
        self.activity = activity
        self.alert_sink = alert_sink
        self.metrics = metrics
        self.clock = clock
        self.rules = RulesByApp(settings)
        self.decoders = input_decoders(settings)  # the source topics of a mapped input format (SPEC 8)
        self.sources = source_topics(settings)  # more source topics: every event rerouted (docs/inputs.md)
        self.app_label = AppLabels(settings.apps)  # metric label values of app ids (bounded)
        native = settings.processing.native_engine  # the C extensions, or their Python twins
        self.home = PartitionCache(partitions, native=native)  # user id -> partition
        self.device_home = PartitionCache(partitions, native=native)  # device key (app id, SEP, device id) -> partition
        self.users: dict[int, UserPartition] = {}
        self.devices: dict[int, DevicePartition] = {}
        self.assigned: set[int] = set()
        self.out = Outputs()
        self.beacons: dict[int, int] = {}  # source partition -> watermark last reported to devices
        self.pending: list[Message] = []
        # the memory budget (streams/worker/budget.py): bytes of the pending messages, and of the running job
        self.budget = MemoryBudget(settings.processing.memory_budget_mb * MB)
        metrics.memory_budget_bytes.set(self.budget.limit)
        self.pending_bytes = 0
        # the consumer side (streams/worker/source.py): commits, start offsets, seeks, failure handling
        self.source = source
        self.alerts_inflight = InFlight()
        self.alert_started: list[tuple[float, int]] = []  # batch start, alerts sent from it
        self.batch_started: list[float] = []
        self.last_flush = clock()
        self.lock = asyncio.Lock()
        self.job: asyncio.Future[None] | None = None  # the flush job running in the background
        self.faults = source.faults  # crash points of the fault-injection tests; inert by default
        self.flusher = Flusher(
            metrics, activity, alert_sink, raw_sink, producer_factory,
            (self.user_table, self.device_table),
            RetryPolicy(settings.processing.sink_retry_initial_s, settings.processing.sink_retry_max_s),
            self._record, clock, late_sink,
            commit_offsets=source.commit, faults=source.faults,
            refusals=Refusals(settings.dlq_topic, (settings.events_topic, reroute_topic(settings)),
                              device_topic(settings), self.home, self.device_home),
            partition_of=key_partitioner(native), outcome_sink=outcome_sink, segment_sink=segment_sink,
        )
        # what the event_outcomes table counted of each partition (streams/worker/outcome_gates.py)
        self.gates = OutcomeGates(settings.events_topic, reroute_topic(settings), source_topics(settings))
        # messages are taken per partition in offset order, once per consumer generation
        self.order = InOrder(source.start_offset, seeks=source.seeks)
        self.collector: PacedCollector | None = None  # set by the worker with processing.gc_paced
        # alerts a replay fires again that are on the alerts topic already (streams/worker/fence.py), read from
        # ``fence_source``; None: no fence (every replayed alert is sent again)
        self.fence = ReplayFence(fence_source)

    # ---- lifecycle ------------------------------------------------------------------------
    @property
    def flush_started(self) -> float | None:
        """When the running flush job started (None: none running)."""
        return self.flusher.started

    async def stop(self) -> None:
        self.flusher.stopping = True  # a job retrying an outage gives up
        try:
            await self._wait_job()
        except Exception as exc:  # stopping anyway; the next worker replays from the committed offsets
            log.warning("flush job failed while stopping: %s", type(exc).__name__)
        await self.fence.close()
        await self.flusher.stop()

    async def on_revoked(self) -> None:
        """Before partitions move: make everything processed so far durable and acknowledged,
        so state in memory and the changelogs agree whoever owns a partition next."""
        await self.flush()

    def on_assigned(self, partitions: set[int]) -> None:
        """Keep partitions we still own (flushed on revoke), drop the others; new ones are
        rebuilt from the recovered table on their first batch."""
        self.metrics.rebalances.inc()
        for p in [p for p in self.users if p not in partitions]:
            del self.users[p]
            self.beacons.pop(p, None)
            self.gates.forget(p)
            self.user_table.release(p)
        for p in [p for p in self.devices if p not in partitions]:
            del self.devices[p]
            self.device_table.release(p)
        for p in self.users:  # kept: what a refused commit leaves behind comes again, counted already
            self.gates.rearm(p)
        self.assigned = set(partitions)
        self.fence.forget(self.assigned)
        self.metrics.assigned.set(len(self.assigned))
        self.order.new_generation()

    async def _build_partitions(self, events: Sequence[Message]) -> None:
        """Rebuild the indexes of every assigned partition (and of any this batch is from) not
        built yet from the recovered table, in one pass, each knowing the events-topic offset it
        resumes from (see :meth:`UserPartition.load`)."""
        todo = {p for p in self.assigned if p not in self.users}
        todo.update(msg.partition for msg in events if msg.partition not in self.users)
        if not todo:
            return
        started = time.perf_counter()
        resume = await resume_offsets(events, todo, self.settings.events_topic, self.order)
        self.assigned |= todo
        keys = partition_keys(todo, self.user_table, self.users_data, self.home)
        total = 0
        stamps = []
        for p, part_keys in keys.items():
            store = StateStore(self.user_table.partition(p))
            up = self.users[p] = UserPartition(p, store, self.rules, reroute_topic(self.settings),
                                               native=self.settings.processing.native_engine)
            total += up.load(part_keys, resume[p])
            await self.gates.load(p, store.data, self.order.start_offset)
            stamps.append(up.meta.alerts_after)
        stamps += [self.device_partition(p).meta.alerts_after for p in keys if p not in self.devices]
        await self._fence(stamps, set(keys))
        self.metrics.recovery.observe(time.perf_counter() - started)
        log.info(
            "rebuilt indexes of %d partitions (%d users) in %.2fs", len(keys), total, time.perf_counter() - started
        )

    async def _fence(self, stamps: Sequence[int], partitions: set[int]) -> None:
        """Hold back the alerts a replay of these partitions would send again (streams/worker/fence.py)."""
        fence_partitions(self.fence, stamps, partitions)

    def device_partition(self, p: int) -> DevicePartition:
        dp = self.devices.get(p)
        if dp is None:
            data = self.device_table.partition(p)
            dp = self.devices[p] = DevicePartition(p, data, self.rules, self.partitions)
        return dp

    # ---- batches ------------------------------------------------------------------------
    async def _in_order(self, events: Sequence[Message], seeks: int) -> tuple[Sequence[Message], bool]:
        """The messages to process now (see :mod:`streams.worker.ordering`) and whether to seek afterwards."""
        order = self.order
        if not self.source.accepting():  # fetched before the rebalance's seek: they come again after it
            self.metrics.stale_dropped.inc(len(events))
            return [], False
        before = order.dropped
        keep, seek = await order.select(events, seeks)
        self.metrics.stale_dropped.inc(order.dropped - before)
        for (topic, p), expected, offset in order.stepped:
            log.warning("%s[%d]: offsets %d to %d are not in the log (still missing after a seek back): "
                        "stepped over", topic, p, expected, offset - 1)
        order.stepped.clear()
        return keep, seek

    async def _seek_back(self) -> None:
        """Make everything processed durable and committed, then have the consumer fetch again
        from the committed offsets (after a gap: the missing range comes again, in order)."""
        await self.flush()
        gaps = ", ".join(f"{t}[{p}]" for t, p in sorted(self.order.asked))
        log.info("a gap in the offsets of %s: seeking back to the committed offsets", gaps or "a partition")
        await self.source.reseek()

    async def on_user_batch(self, events: Sequence[Message], seeks: int) -> None:
        """One fetch of the events and reroute topics; ``seeks``: the consumer's seek count when the
        fetch began (:class:`streams.worker.consumer.Fetched`)."""
        events, seek = await self._in_order(events, seeks)
        if events:
            await self._user_batch(events)
        if seek:
            await self._seek_back()

    async def on_device_batch(self, events: Sequence[Message], seeks: int) -> None:
        events, seek = await self._in_order(events, seeks)
        if events:
            await self._device_batch(events)
        if seek:
            await self._seek_back()

    async def _user_batch(self, events: Sequence[Message]) -> None:
        async with self.lock:
            await self._build_partitions(events)
            for chunk in slices(events, SLICE_BYTES):
                await self._user_slice(chunk)
                # let the running flush job (and the consumer's commits) go on between slices: a
                # fetch can hold a second of work, and a job needs several turns of the loop
                await asyncio.sleep(0)
                await self._maybe_flush_locked()

    async def _user_slice(self, events: Sequence[Message]) -> None:
        started = self.clock()
        out = self.out
        n_alerts = len(out.alerts)
        # decoded, routed to their users' partitions and applied there (the engine: one way down); after a
        # restart, the outcomes of messages the event_outcomes table counted already are kept apart
        self.gates.apply(events, out, lambda records: apply_records(
            records, int(started * 1000), self.home, out, self.users, self.settings.processing.native_engine,
            reroute_topic(self.settings), self.decoders, self.sources))
        out.messages += len(events)
        self.pending.extend(events)
        self.pending_bytes += message_bytes(events)
        self.faults.hit("batch")
        self.batch_started.append(started)
        self.metrics.processing.observe(self.clock() - started)
        if len(out.alerts) > n_alerts:
            await self._send_alerts(out.alerts[n_alerts:], started)

    async def _device_batch(self, events: Sequence[Message]) -> None:
        async with self.lock:
            new = {msg.partition for msg in events} - self.devices.keys()
            await self._fence([self.device_partition(p).meta.alerts_after for p in sorted(new)], new)
            started = self.clock()
            alerts: list[Alert] = []
            for p, batch in decoded_observations(events, self.partitions, self.out):
                self.device_partition(p).apply(batch, alerts)
            self.pending.extend(events)
            self.pending_bytes += message_bytes(events)
            if alerts:
                self.out.alerts.extend(alerts)
                await self._send_alerts(alerts, started)
        await self.maybe_flush()

    async def _send_alerts(self, alerts: Sequence[Alert], started: float) -> None:
        """Alerts leave at once (latency); the flush waits for their acknowledgement before acking.
        Those a replay fired again that are on the topic already are held back (streams/worker/fence.py)."""
        before = self.fence.suppressed
        alerts = await self.fence.to_send(alerts)
        self.metrics.alerts_held_back.inc(self.fence.suppressed - before)
        if not alerts:
            return
        topic = self.settings.alerts_topic
        records = [(topic, None, a.kafka_key, encode_alert(a)) for a in alerts]
        self.alerts_inflight.extend(await self.flusher.send(records))
        self.alert_started.append((started, len(alerts)))

    # ---- flush ----------------------------------------------------------------------------
    def buffered(self) -> int:
        """Outputs waiting for the next flush job (rows, alerts, segment changes, dead letters, reroutes, raw
        messages)."""
        out = self.out
        raw = len(self.pending) if self.flusher.raw_sink is not None else 0  # raw storage's rows
        return (len(out.dirty_rows) + len(out.alerts) + len(out.dead_letters) + len(out.reroutes) + len(out.cold)
                + len(out.segment_changes) + raw)

    def flush_due(self) -> bool:
        if not self.pending:
            return False
        if self.buffered() >= self.settings.processing.flush_max_rows or self._held().flush_due():
            return True
        return self.clock() - self.last_flush >= self.settings.processing.flush_interval_s

    def _held(self) -> MemoryBudget:
        """The memory budget with what is held now (streams/worker/budget.py), shown as a gauge."""
        budget = self.budget
        budget.fetched = self.source.queued_bytes()
        budget.processed = self.pending_bytes + OUTPUT_BYTES * self.buffered()
        self.metrics.memory_budget_ratio.set(budget.ratio)
        return budget

    async def maybe_flush(self) -> None:
        """Start a flush job when one is due. Jobs run one at a time in the background while
        batches go on being processed; past ``flush_max_rows`` buffered outputs processing waits
        for the running job (backpressure: a ClickHouse or Kafka outage holds the batch)."""
        async with self.lock:
            await self._maybe_flush_locked()

    async def _maybe_flush_locked(self) -> None:
        if self.job is not None and not self.job.done():
            if self.buffered() < self.settings.processing.flush_max_rows and not self._held().full():
                return
            self.metrics.flush_waits.inc()  # a slow sink or an outage holds processing: consumption pauses
        await self._wait_job()
        if self.flush_due():
            job = self._take_job()
            if job is not None:
                self.job = asyncio.ensure_future(self.flusher.run(job))
                self.job.add_done_callback(self._job_done)

    async def flush(self) -> None:
        """Make everything processed so far durable and committed, and wait for it (a revoke, a
        seek back, shutdown)."""
        async with self.lock:
            await self._wait_job()
            job = self._take_job()
            if job is not None:
                await self.flusher.run(job)
                self._collect()

    def _collect(self) -> None:
        """A paced full garbage collection, when one is due, once a job is done: its outputs are
        freed by then, so the collector does not walk them (streams/ops/paced_gc.py)."""
        if self.collector is not None:
            self.collector.after_flush()

    async def _wait_job(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            await job  # a failed job raises here
            self.budget.job = 0

    def _job_done(self, job: asyncio.Future[None]) -> None:
        if not job.cancelled() and job.exception() is None:
            self.budget.job = 0  # its outputs are durable and freed
            self._collect()
        if job.cancelled() or job.exception() is None or self.flusher.stopping:
            return
        exc = job.exception()
        if exc is not None:
            self.source.failed(exc)  # outputs of processed messages may be lost: the app exits the worker

    def _take_job(self) -> FlushJob | None:
        """Everything produced since the last job, in its final form (its parts: streams/worker/flush_jobs.py);
        the pipeline starts afresh."""
        self.last_flush = self.clock()
        if not self.pending:
            return None
        held = self._held().processed
        out, settings = self.out, self.settings
        # Kafka outputs first: the device observations carry the watermarks flushed before this job
        records = kafka_records(settings, out, self.users, self.device_home, self.beacons, self.partitions)
        # ClickHouse rows: the changed (user, day) counters as the state holds them now (a day no
        # ClickHouse Date holds: refused, dead-lettered by the job)
        native = settings.processing.native_engine
        rows, refused = activity_block(out.dirty_rows, {p: up.store for p, up in self.users.items()},
                                       lambda dirty, stores: activity_columns(dirty, stores, native))
        offsets, first = commit_offsets(self.pending)
        taken_ms = int(time.time() * 1000)  # the producer's clock, which stamps the alerts
        # event outcome counts, and what they counted for the changelog (streams/worker/outcome_gates.py)
        outcome_rows, gates = self.gates.take(out, offsets, self.users, self.user_changelog, taken_ms)
        # changelogs; the partitions' meta records stamped for the alert fence (streams/worker/fence.py)
        stamp = self.fence.stamp(offsets, taken_ms)
        changelog = changelog_records(self.users, self.devices, (self.user_changelog, self.device_changelog), stamp)
        raw: list[RawMessage] = []
        if self.flusher.raw_sink is not None:  # raw storage: the events topic's messages as they came
            raw = raw_messages(self.pending, (settings.events_topic, *self.sources))
        job = FlushJob(records, self.alerts_inflight, self.alert_started, rows, list(out.alerts), changelog,
                       offsets, out, self.batch_started, raw, list(out.cold), first,
                       [("user_activity_daily", r) for r in refused], outcome_rows, gates)
        self.out, self.alerts_inflight, self.alert_started = Outputs(), InFlight(), []
        self.budget.job = held  # one job at a time: what it holds until it is durable
        self.pending, self.batch_started, self.pending_bytes = [], [], 0
        self.faults.hit("taken")
        return job

    def _record(self, out: Outputs) -> None:
        """A durable job's outcomes, alerts and messages in the metrics."""
        self.metrics.record_outputs(out, self.app_label, self.settings.events_topic)

    def state_lines(self) -> list[str]:
        """The pipeline's state for the stall dump (counts only)."""
        job = self.job
        return [f"pipeline: pending messages={len(self.pending)} buffered outputs={self.buffered()} "
                f"lock held={self.lock.locked()} job={'none' if job is None else 'done' if job.done() else 'running'} "
                f"flush started={self.flush_started}"]

    def snapshot_gauges(self) -> None:
        self.metrics.observe_partitions(self.users, self.devices, len(self.out.dirty_rows) + len(self.out.alerts),
                                        self.clock())
