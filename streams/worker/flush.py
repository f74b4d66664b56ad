"""The flush stage: makes what processing produced durable, in order, then commits the source
offsets.

The pipeline takes a :class:`FlushJob` under its lock: a snapshot of everything produced since
the last one, already in its final form (Kafka records, ClickHouse rows built from the state as
it stood, changelog entries encoded, the offsets to commit). The :class:`Flusher` runs it in the
background while the pipeline goes on processing (one job at a time, in the order they were
taken):

1. alerts, dead letters, rerouted events and device observations delivered to Kafka;
2. aggregate rows, alerts, segment changes, raw messages and event outcome counts written to ClickHouse (off the event
   loop, retried with backoff); rows ClickHouse refuses on their own are dead-lettered
   (:mod:`streams.worker.refusals`), the others written;
3. changed state written to the tables' changelogs and delivered (first, and apart, what the event
   outcome rows of step 2 counted: streams/worker/outcome_gates.py);
4. the source offsets committed: everything up to them is durable.

A crash anywhere before 4 replays the job's messages: outputs are idempotent (cumulative rows,
stable alert ids, replays recognised by position), so nothing is lost and counts stay exact.
Jobs never overlap each other: records of one job reach each topic partition before the next
job's (changelog order), and offsets are committed in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.alerts import Alert
from sinks.alerts import AlertSink
from sinks.base import Refused, RetryPolicy, flush_with_retry
from sinks.clickhouse import ActivitySink, RawMessage, RawSink
from sinks.columns import ActivityColumns
from sinks.late import ColdEvent, LateSink
from sinks.outcomes import OutcomeRow, OutcomeSink
from sinks.segments import SegmentSink
from streams.engine.partitioner import home_partition
from streams.engine.store import Outputs
from streams.ops.faults import OUTAGES, Faults
from streams.ops.metrics import Metrics
from streams.worker.delivery import InFlight, OutRecord, deliver, retriable, send_records
from streams.worker.local_state import LocalTable
from streams.worker.refusals import Refusals

log = logging.getLogger("vitals.flush")

TopicPartition = tuple[str, int]


@dataclass
class FlushJob:
    """What one flush makes durable, taken from the pipeline at one instant."""

    records: list[OutRecord]  # dead letters, reroutes, device observations and watermark beacons
    alerts_inflight: InFlight  # alerts sent as they fired, acknowledgements pending
    alert_started: list[tuple[float, int]]  # (batch start, alerts it sent), for the latency metric
    rows: ActivityColumns  # the changed (user, day) counters
    alerts: list[Alert]
    changelog: list[OutRecord]  # (changelog topic, partition, key, encoded state)
    offsets: dict[TopicPartition, int]  # the source offsets to commit (last flushed + 1)
    out: Outputs  # outcome counters and alerts, recorded in the metrics once durable
    batch_started: list[float] = field(default_factory=list)
    raw: list[RawMessage] = field(default_factory=list)  # the events topic's messages (raw storage)
    cold: list[ColdEvent] = field(default_factory=list)  # events older than the state's days (sinks/late.py)
    first_offsets: dict[TopicPartition, int] = field(default_factory=dict)  # the first message flushed
    refused: list[tuple[str, Refused[Any]]] = field(default_factory=list)  # (table, row) refused before sending
    outcomes: list[OutcomeRow] = field(default_factory=list)  # event outcome counts (sinks/outcomes.py)
    gates: list[OutRecord] = field(default_factory=list)  # what they counted, for the changelog (outcome_gates.py)


class Flusher:
    """Runs flush jobs one at a time on the worker's producer and sinks."""

    def __init__(
        self,
        metrics: Metrics,
        activity: ActivitySink,
        alert_sink: AlertSink,
        raw_sink: RawSink | None,
        producer_factory: Callable[[], AIOKafkaProducer],
        tables: Sequence[LocalTable],  # the tables whose changelogs the jobs write
        retry: RetryPolicy,
        record: Callable[[Outputs], None],
        clock: Callable[[], float] = time.time,
        late_sink: LateSink | None = None,
        *,
        commit_offsets: Callable[[dict[TopicPartition, int]], Awaitable[bool]] | None = None,
        faults: Faults | None = None,
        refusals: Refusals | None = None,
        partition_of: Callable[[bytes, int], int] = home_partition,
        outcome_sink: OutcomeSink | None = None,
        segment_sink: SegmentSink | None = None,
    ) -> None:
        self.metrics = metrics
        self.activity = activity
        self.alert_sink = alert_sink
        self.raw_sink = raw_sink
        self.late_sink = late_sink
        self.outcome_sink = outcome_sink
        self.segment_sink = segment_sink
        # in this order: the late events' rows add to the rows the same flush wrote from state
        self.sinks: tuple[ActivitySink | AlertSink | SegmentSink | RawSink | LateSink | OutcomeSink, ...] = (
            activity, alert_sink, *((segment_sink,) if segment_sink is not None else ()),
            *((raw_sink,) if raw_sink is not None else ()),
            *((late_sink,) if late_sink is not None else ()), *((outcome_sink,) if outcome_sink is not None else ()))
        self.tables = tables
        self.retry = retry
        self.record = record
        self.clock = clock
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitals-sink")
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self.stopping = False
        self.faults = faults or Faults()  # crash points of the fault-injection tests; inert by default
        self.commit_offsets = commit_offsets  # the consumer's commit (None: a job with offsets fails)
        self.refusals = refusals  # refused rows to dead-letter records (None: a refusal fails the job)
        self.partition_of = partition_of  # a keyed record's partition (Kafka's default partitioner)
        self.started: float | None = None  # set while a job runs (maybe retrying)
        self.flushes = 0
        self.commits = 0

    # ---- Kafka ----------------------------------------------------------------------------
    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._producer_factory()
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def send(self, records: Sequence[OutRecord]) -> InFlight:
        """Hand records to Kafka; if the broker is unreachable they wait in flight for :meth:`deliver`."""
        if not records:
            return InFlight()
        try:
            return await send_records(await self.producer(), records, self.partition_of)
        except KafkaError as exc:
            if not retriable(exc):
                raise
            return InFlight([(list(records), None)], exc)

    async def deliver(self, inflight: InFlight) -> dict[TopicPartition, int]:
        def on_retry(attempt: int, exc: BaseException) -> None:
            self.metrics.sink_failures.labels("kafka").inc()
            self.metrics.sink_retries.labels("kafka").inc()
            log.warning("Kafka delivery failed (attempt %d, %d records): %s; retrying", attempt + 1,
                        len(inflight), type(exc).__name__)

        return await deliver(self.producer, inflight, self.retry, should_stop=lambda: self.stopping,
                             on_retry=on_retry, partition_of=self.partition_of)

    # ---- jobs -----------------------------------------------------------------------------
    async def stop(self) -> None:
        self.stopping = True
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, job: FlushJob) -> None:
        """Make the job durable, then commit its offsets."""
        self.started = self.clock()
        try:
            await self._durable(job)
        finally:
            self.started = None

    async def _durable(self, job: FlushJob) -> None:
        metrics = self.metrics
        # 1. Kafka outputs
        inflight = await self.send(job.records)
        inflight.extend(job.alerts_inflight)
        await self.deliver(inflight)
        self.faults.hit("kafka")
        now = self.clock()
        for started, n in job.alert_started:
            for _ in range(n):
                metrics.alert_latency.observe(now - started)
        # 2. ClickHouse
        if job.rows.rows:
            self.activity.add(job.rows)
        self.alert_sink.extend(job.alerts)
        if self.segment_sink is not None and job.out.segment_changes:
            self.segment_sink.extend(job.out.segment_changes)
        if self.raw_sink is not None:
            self.raw_sink.extend(job.raw)
        if job.cold:
            if self.late_sink is None:  # never dropped silently
                raise RuntimeError("events older than the state's days, and no late-events sink to count them")
            self.late_sink.extend(job.cold)
        if job.outcomes and self.outcome_sink is not None:
            self.outcome_sink.extend(job.outcomes)
        loop = asyncio.get_running_loop()
        refused = list(job.refused)
        for sink in self.sinks:
            n = sink.buffered
            if not n:
                continue
            t0 = time.perf_counter()
            rows_written = await loop.run_in_executor(self.executor, self._flush_sink, sink)
            metrics.flush_latency.labels(sink.name).observe(time.perf_counter() - t0)
            metrics.sink_rows.labels(sink.name).inc(rows_written)
            metrics.sink_batches.labels(sink.name).inc()
            metrics.sink_batch_rows.labels(sink.name).observe(n)
            refused += [(sink.name, r) for r in sink.take_refused()]
        if refused:
            await self._dead_letter(job, refused)
        self.faults.hit("inserted")
        # 3. changelogs: what the outcome rows counted (before the states: streams/worker/outcome_gates.py),
        # then the changed states
        if job.gates:
            await self._changelog(job.gates)
        self.faults.hit("gated")
        await self._changelog(job.changelog)
        self.faults.hit("changelog")
        # 4. commit the source offsets: everything up to them is durable
        await self._commit(job)
        self.record(job.out)
        now = self.clock()
        for started in job.batch_started:
            metrics.end_to_end.observe(now - started)
        self.flushes += 1

    async def _changelog(self, records: list[OutRecord]) -> None:
        written = await self.deliver(await self.send(records))
        for table in self.tables:  # a RocksDB store is written now, never ahead of its changelog
            topic = table.changelog
            table.persisted(records, {p: off for (t, p), off in written.items() if t == topic})

    async def _dead_letter(self, job: FlushJob, refused: list[tuple[str, Refused[Any]]]) -> None:
        """The rows ClickHouse refused on their own, to the dead-letter topic (delivered before the
        commit) and counted."""
        if self.refusals is None:
            raise RuntimeError("rows refused by ClickHouse, and no dead-letter topic to send them to")
        ranges = {tp: (job.first_offsets.get(tp, end - 1), end - 1) for tp, end in job.offsets.items()}
        records = self.refusals.records(refused, ranges, int(self.clock() * 1000))
        await self.deliver(await self.send(records))
        for table, refusal in refused:
            self.metrics.sink_refused.labels(table, refusal.error.name).inc()
        self.metrics.dlq.labels("sink_refused").inc(len(refused))
        log.error("ClickHouse refused %d rows on their own (%s); dead-lettered with reason sink_refused, "
                  "the others written", len(refused), ", ".join(sorted({f"{t}: {r.error.name}" for t, r in refused})))

    async def _commit(self, job: FlushJob) -> None:
        """Commit, per source partition, the offset after the last message flushed.

        Messages of a partition reach the pipeline in offset order and all of them are made
        durable by the flush, so "last flushed + 1" never skips an unprocessed message; a
        message seen twice (Faust re-delivers what it fetched before seeking to the committed
        offset after a rebalance) is a replay the state skips. The pipeline commits itself
        rather than acking each message to Faust: Faust's per-message ack bookkeeping loses
        acks of messages delivered while a rebalance's seek is in flight and then never commits
        that partition again (see docs/guarantees.md).
        """
        if job.offsets:
            if self.commit_offsets is None:
                raise RuntimeError("the flusher has no consumer to commit source offsets to")
            await self.commit_offsets(job.offsets)
            self.commits += 1

    def _flush_sink(self, sink: Any) -> int:
        def on_retry(attempt: int, exc: BaseException) -> None:
            self.metrics.sink_failures.labels(sink.name).inc()
            self.metrics.sink_retries.labels(sink.name).inc()
            log.warning(
                "sink %s write failed (attempt %d): %s; retrying",
                sink.name,
                attempt + 1,
                type(getattr(exc, "cause", None) or exc).__name__,
            )

        self.faults.hit("clickhouse")
        # a planned outage (fault tests) refuses the writes as ClickHouse down would
        target = PlannedOutage(sink, self.faults) if self.faults.point in OUTAGES else sink
        return flush_with_retry(target, self.retry, should_stop=lambda: self.stopping, on_retry=on_retry)


class PlannedOutage:
    """A sink whose writes fail as in a ClickHouse outage while the fault plan's outage lasts."""

    def __init__(self, sink: Any, faults: Faults) -> None:
        self.sink, self.faults = sink, faults

    def flush(self) -> int:
        self.faults.outage("clickhouse_outage")
        return int(self.sink.flush())
