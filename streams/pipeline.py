"""Batch orchestration between the Faust agents, the engine and the sinks.

Agents hand over batches of Faust events (raw bytes). The pipeline decodes them, runs the
engine per partition and, on flush (size or time bounded), makes the outputs durable in this
order before acknowledging the source messages:

1. alerts, dead letters, rerouted events and device observations delivered to Kafka;
2. aggregate rows and alerts written to ClickHouse (off the event loop, retried with backoff);
3. changed state written to the tables' changelogs (one record per changed key) and delivered;
4. source messages acknowledged, so Faust may commit their offsets.

A crash anywhere before 4 replays the batch: outputs are idempotent (cumulative rows, stable
alert ids, dedup of replayed events by the state), so nothing is lost and counts stay exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.alerts import Alert, encode_alert
from schemas.events import decode_message
from sinks.base import RetryPolicy, flush_with_retry
from sinks.clickhouse import ActivitySink, AlertSink, ClickHouse
from sinks.kafka import dead_letter_key, dead_letter_record
from streams.delivery import InFlight, OutRecord, deliver, retriable, send_records
from streams.devices import DeviceObservations, DevicePartition, obs_decoder, obs_encoder
from streams.engine import EPISODE_RULES, DeadLetter, Outputs, RulesByApp, StateStore, UserPartition, event_json
from streams.faults import Faults
from streams.kafka_io import PartitionCache, device_topic, home_partition, reroute_topic
from streams.localstate import is_rocksdb, partition_data, partition_keys, record_persisted
from streams.metrics import Metrics
from streams.ordering import InOrder
from streams.settings import Settings
from streams.state import SEP, split_key

log = logging.getLogger("vitals.pipeline")


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class SourceEvent(Protocol):
    message: Message
    value: Any

    def ack(self) -> bool: ...


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        self.users_data = users_data
        self.devices_data = devices_data
        self.user_changelog, self.device_changelog = changelogs
        self.activity = activity
        self.alert_sink = alert_sink
        self.metrics = metrics
        self.clock = clock
        self.rules = RulesByApp(settings)
        self.home = PartitionCache(partitions)
        self.users: dict[int, UserPartition] = {}
        self.devices: dict[int, DevicePartition] = {}
        self.assigned: set[int] = set()
        self.out = Outputs()
        self.beacons: dict[int, int] = {}  # source partition -> watermark last reported to devices
        self.pending: list[SourceEvent] = []
        self.alerts_inflight = InFlight()
        self.alert_started: list[tuple[float, int]] = []  # batch start, alerts sent from it
        self.batch_started: list[float] = []
        self.last_flush = clock()
        self.lock = asyncio.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitals-sink")
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self.retry = RetryPolicy(settings.processing.sink_retry_initial_s, settings.processing.sink_retry_max_s)
        self.stopping = False
        self.flushes = 0
        self.flush_started: float | None = None  # set while a flush is in progress (maybe retrying)
        self.faults = Faults()  # crash points of the fault-injection tests; inert by default
        self.commit_offsets: Callable[[dict[tuple[str, int], int]], Awaitable[bool]] | None = None
        self.commits = 0
        # set by the app: messages are taken per partition in offset order, once per generation
        self.order: InOrder | None = None
        self.accepting: Callable[[], bool] = lambda: True  # False while a rebalance settles
        self.reseek: Callable[[], Awaitable[None]] | None = None  # seek the consumer to the committed offsets

    # ---- lifecycle ------------------------------------------------------------------------
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

    async def _send(self, records: Sequence[OutRecord]) -> InFlight:
        """Hand records to Kafka; if the broker is unreachable they wait in flight for :meth:`_deliver`."""
        if not records:
            return InFlight()
        try:
            return await send_records(await self.producer(), records)
        except KafkaError as exc:
            if not retriable(exc):
                raise
            return InFlight([(list(records), None)], exc)

    async def _deliver(self, inflight: InFlight) -> dict[tuple[str, int], int]:
        def on_retry(attempt: int, exc: BaseException) -> None:
            self.metrics.sink_failures.labels("kafka").inc()
            self.metrics.sink_retries.labels("kafka").inc()
            log.warning("Kafka delivery failed (attempt %d, %d records): %s; retrying", attempt + 1,
                        len(inflight), type(exc).__name__)

        return await deliver(self.producer, inflight, self.retry, should_stop=lambda: self.stopping,
                             on_retry=on_retry)

    async def stop(self) -> None:
        self.stopping = True
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self.executor.shutdown(wait=False, cancel_futures=True)

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
        for p in [p for p in self.devices if p not in partitions]:
            del self.devices[p]
        self.assigned = set(partitions)
        self.metrics.assigned.set(len(self.assigned))
        if self.order is not None:
            self.order.new_generation()

    async def _build_partitions(self, events: Sequence[SourceEvent]) -> None:
        """Rebuild the indexes of every assigned partition (and of any this batch is from) not
        built yet from the recovered table, in one pass, each knowing the events-topic offset it
        resumes from (see :meth:`UserPartition.load`)."""
        todo = {p for p in self.assigned if p not in self.users}
        todo.update(ev.message.partition for ev in events if ev.message.partition not in self.users)
        if not todo:
            return
        started = time.perf_counter()
        resume = await self._resume_offsets(todo, events)
        self.assigned |= todo
        keys: dict[int, list[bytes]] = {p: [] for p in todo}
        if is_rocksdb(self.users_data):
            keys = {p: partition_keys(self.users_data, p, self.home) for p in keys}
        else:  # one dict holds every partition: one pass
            for key in list(self.users_data.keys()):
                if key[:1] == b"\x00":
                    continue
                bucket = keys.get(self.home(split_key(key)[1]))
                if bucket is not None:
                    bucket.append(key)
        total = 0
        for p, part_keys in keys.items():
            store = StateStore(partition_data(self.users_data, p))
            up = self.users[p] = UserPartition(p, store, self.rules, reroute_topic(self.settings))
            total += up.load(part_keys, resume[p])
        self.metrics.recovery.observe(time.perf_counter() - started)
        log.info(
            "rebuilt indexes of %d partitions (%d users) in %.2fs", len(keys), total, time.perf_counter() - started
        )

    async def _resume_offsets(self, partitions: set[int], events: Sequence[SourceEvent]) -> dict[int, int | None]:
        """Per partition, the first events-topic offset not processed yet: the lowest in this
        batch, else the next one expected in this generation (None: unknown, from the start)."""
        topic = self.settings.events_topic
        resume: dict[int, int | None] = {}
        for ev in events:
            msg = ev.message
            if msg.topic == topic and msg.partition in partitions:
                first = resume.get(msg.partition)
                resume[msg.partition] = msg.offset if first is None else min(first, msg.offset)
        for p in partitions - resume.keys():
            offset = None
            if self.order is not None:
                offset = self.order.next_offset.get((topic, p))
                if offset is None:
                    offset = await self.order.start_offset((topic, p))
            resume[p] = offset
        return resume

    def device_partition(self, p: int) -> DevicePartition:
        dp = self.devices.get(p)
        if dp is None:
            data = partition_data(self.devices_data, p)
            dp = self.devices[p] = DevicePartition(p, data, self.rules, self.partitions)
        return dp

    # ---- batches ------------------------------------------------------------------------
    async def _in_order(self, events: Sequence[SourceEvent]) -> tuple[Sequence[SourceEvent], bool]:
        """The messages to process now (see :mod:`streams.ordering`) and whether to seek afterwards."""
        if self.order is None:
            return events, False
        if not self.accepting():  # fetched before the rebalance's seek: they come again after it
            self.metrics.stale_dropped.inc(len(events))
            return [], False
        before = self.order.dropped
        keep, seek = await self.order.select(events)
        self.metrics.stale_dropped.inc(self.order.dropped - before)
        return keep, seek

    async def _seek_back(self) -> None:
        """Make everything processed durable and committed, then have the consumer fetch again
        from the committed offsets (after a gap: the missing range comes again, in order)."""
        await self.flush()
        log.info("a gap in a partition's offsets: seeking back to the committed offsets (%d messages left)",
                 self.order.dropped if self.order else 0)
        if self.reseek is not None:
            await self.reseek()
        if self.order is not None:
            self.order.seeked()

    async def on_user_batch(self, events: Sequence[SourceEvent]) -> None:
        events, seek = await self._in_order(events)
        if events:
            await self._user_batch(events)
        if seek:
            await self._seek_back()

    async def on_device_batch(self, events: Sequence[SourceEvent]) -> None:
        events, seek = await self._in_order(events)
        if events:
            await self._device_batch(events)
        if seek:
            await self._seek_back()

    async def _user_batch(self, events: Sequence[SourceEvent]) -> None:
        async with self.lock:
            await self._build_partitions(events)
            started = self.clock()
            now_ms = int(started * 1000)
            out = self.out
            per_partition: dict[int, list[Any]] = {}
            home = self.home
            n_alerts = len(out.alerts)
            for ev in events:
                msg = ev.message
                decoded, invalid = decode_message(ev.value, now_ms)
                for inv in invalid:
                    out.dead_letters.append(DeadLetter(inv, msg.topic, msg.partition, msg.offset, msg.key))
                    out.outcomes["invalid:" + inv.reason] += 1
                items = per_partition.get(msg.partition)
                if items is None:
                    items = per_partition[msg.partition] = []
                for index, event in enumerate(decoded):
                    p = home(event.user_id)
                    if p == msg.partition:
                        items.append((event, msg.topic, msg.partition, msg.offset, msg.key, index))
                    else:
                        out.reroutes.append((p, event.user_id.encode(), event_json(event)))
                        out.outcomes["rerouted"] += 1
            for p, items in per_partition.items():
                if items:
                    up = self.users[p]
                    before = len(out.alerts)
                    up.apply(items, out)
                    up.count_episodes(out.alerts[before:])
            out.messages += len(events)
            self.pending.extend(events)
            self.faults.hit("batch")
            self.batch_started.append(started)
            self.metrics.processing.observe(self.clock() - started)
            if len(out.alerts) > n_alerts:
                await self._send_alerts(out.alerts[n_alerts:], started)
        await self.maybe_flush()

    async def _device_batch(self, events: Sequence[SourceEvent]) -> None:
        async with self.lock:
            started = self.clock()
            alerts: list[Alert] = []
            for ev in events:
                batch = obs_decoder.decode(ev.value)
                self.device_partition(ev.message.partition).apply(batch, alerts)
            self.pending.extend(events)
            if alerts:
                self.out.alerts.extend(alerts)
                await self._send_alerts(alerts, started)
        await self.maybe_flush()

    async def _send_alerts(self, alerts: Sequence[Alert], started: float) -> None:
        """Alerts leave at once (latency); the flush waits for their acknowledgement before acking."""
        topic = self.settings.alerts_topic
        self.alerts_inflight.extend(await self._send([(topic, None, a.kafka_key, encode_alert(a)) for a in alerts]))
        self.alert_started.append((started, len(alerts)))

    # ---- flush ----------------------------------------------------------------------------
    def flush_due(self) -> bool:
        out = self.out
        if not self.pending:
            return False
        if len(out.dirty_rows) + len(out.alerts) >= self.settings.processing.flush_max_rows:
            return True
        return self.clock() - self.last_flush >= self.settings.processing.flush_interval_s

    async def maybe_flush(self) -> None:
        if self.flush_due():
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            if not self.pending:
                self.last_flush = self.clock()
                return
            self.flush_started = self.clock()
            try:
                await self._flush_locked()
            finally:
                self.flush_started = None

    async def _flush_locked(self) -> None:
        out, metrics, settings = self.out, self.metrics, self.settings
        # 1. Kafka outputs
        records: list[OutRecord] = []
        dlq, reroute, devices = settings.dlq_topic, reroute_topic(settings), device_topic(settings)
        records += [(dlq, dl.partition, dead_letter_key(dl.key), dead_letter_record(dl)) for dl in out.dead_letters]
        records += [(reroute, p, key, value) for p, key, value in out.reroutes]
        for (app_id, device_id, source), obs in out.device_obs.items():
            key = f"{app_id}{SEP}{device_id}".encode()
            wm = self.users[source].flushed_watermark if source in self.users else -1
            value = obs_encoder.encode(DeviceObservations(app_id, device_id, obs, source, wm))
            records.append((devices, home_partition(key, self.partitions), key, value))
        # every user partition reports its watermark to every device partition, so the device
        # watermark (their minimum) advances even where a source had no device events
        for source, up in self.users.items():
            if up.flushed_watermark >= 0 and up.flushed_watermark != self.beacons.get(source):
                self.beacons[source] = up.flushed_watermark
                beacon = obs_encoder.encode(DeviceObservations("", "", [], source, up.flushed_watermark))
                records += [(devices, p, None, beacon) for p in range(self.partitions)]
        inflight = await self._send(records)
        inflight.extend(self.alerts_inflight)
        self.alerts_inflight = InFlight()
        await self._deliver(inflight)
        self.faults.hit("kafka")
        now = self.clock()
        for started, n in self.alert_started:
            for _ in range(n):
                metrics.alert_latency.observe(now - started)
        self.alert_started.clear()
        # 2. ClickHouse
        rows = []
        for key, day in out.dirty_rows:
            up = self.users.get(self.home(split_key(key)[1]))
            state = up.store.get(key) if up is not None else None
            counters = state.days.get(day) if state is not None else None
            if counters is not None:
                app_id, user_id = split_key(key)
                rows.append((app_id, user_id, day, *counters))
        self.activity.extend(rows)
        self.alert_sink.extend(out.alerts)
        loop = asyncio.get_running_loop()
        for sink in (self.activity, self.alert_sink):
            n = sink.buffered
            if not n:
                continue
            t0 = time.perf_counter()
            await loop.run_in_executor(self.executor, self._flush_sink, sink)
            metrics.flush_latency.labels(sink.name).observe(time.perf_counter() - t0)
            metrics.sink_rows.labels(sink.name).inc(n)
            metrics.sink_batches.labels(sink.name).inc()
            metrics.sink_batch_rows.labels(sink.name).observe(n)
        self.faults.hit("inserted")
        # 3. changelogs
        changelog: list[tuple[int, bytes, bytes]] = []
        device_changelog: list[tuple[int, bytes, bytes]] = []
        for p, up in self.users.items():
            changelog += [(p, k, v) for k, v in up.drain()]
            meta = up.drain_meta()
            if meta is not None:
                changelog.append((p, *meta))
            up.flushed_watermark = up.watermark
        for p, dp in self.devices.items():
            device_changelog += [(p, k, v) for k, v in dp.drain()]
        users_cl, devices_cl = self.user_changelog, self.device_changelog
        written = await self._deliver(await self._send(
            [(users_cl, p, k, v) for p, k, v in changelog] + [(devices_cl, p, k, v) for p, k, v in device_changelog]
        ))
        for data, topic in ((self.users_data, users_cl), (self.devices_data, devices_cl)):
            record_persisted(data, topic, {p: off for (t, p), off in written.items() if t == topic})
        self.faults.hit("changelog")
        # 4. commit the source offsets: everything up to here is durable
        await self._commit_pending()
        self._record(out)
        now = self.clock()
        for started in self.batch_started:
            metrics.end_to_end.observe(now - started)
        self.batch_started.clear()
        self.pending.clear()
        out.clear()
        self.last_flush = now
        self.flushes += 1

    async def _commit_pending(self) -> None:
        """Commit, per source partition, the offset after the last message flushed.

        Messages of a partition reach the pipeline in offset order and all of them are made
        durable by the flush, so "last flushed + 1" never skips an unprocessed message; a
        message seen twice (Faust re-delivers what it fetched before seeking to the committed
        offset after a rebalance) is a replay the state skips. The pipeline commits itself
        rather than acking each message to Faust: Faust's per-message ack bookkeeping loses
        acks of messages delivered while a rebalance's seek is in flight and then never commits
        that partition again (see README, "What vitals promises").
        """
        if self.commit_offsets is None:  # no consumer (tests of the pipeline alone): ack instead
            for ev in self.pending:
                ev.ack()
            return
        offsets: dict[tuple[str, int], int] = {}
        for ev in self.pending:
            msg = ev.message
            tp = (msg.topic, msg.partition)
            if msg.offset >= offsets.get(tp, -1):
                offsets[tp] = msg.offset + 1
        if offsets:
            await self.commit_offsets(offsets)
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
        return flush_with_retry(sink, self.retry, should_stop=lambda: self.stopping, on_retry=on_retry)

    def _record(self, out: Outputs) -> None:
        m = self.metrics
        for outcome, n in out.outcomes.items():
            if outcome.startswith("invalid:"):
                reason = outcome.split(":", 1)[1]
                m.events.labels("invalid", reason).inc(n)
                m.dlq.labels(reason).inc(n)
            elif outcome == "rerouted":
                m.rerouted.inc(n)
            elif outcome == "replayed":
                m.events.labels("duplicate", "replay").inc(n)
            else:
                m.events.labels(outcome, "").inc(n)
        for alert in out.alerts:
            m.alerts.labels(self.app_label(alert.app_id), alert.rule, alert.status).inc()
        m.messages.labels(self.settings.events_topic).inc(out.messages)

    def app_label(self, app_id: str) -> str:
        """Metric label for an app: configured apps by name, any other as 'other' (bounded cardinality)."""
        return app_id if app_id == "default" or app_id in self.settings.apps else "other"

    async def refresh_product_gauges(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, product_gauges, self.activity.ch, self.metrics)

    async def source_offsets(self) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """Committed and end offsets of every partition of the source topics (events, reroute, device obs)."""
        from streams.kafka_io import committed_offsets, end_offsets

        kafka, group = self.settings.kafka, self.settings.app_id
        committed: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for topic in (self.settings.events_topic, reroute_topic(self.settings), device_topic(self.settings)):
            ends.update({(topic, p): end for p, end in (await end_offsets(kafka, topic)).items()})
            committed.update({(topic, p): c for p, c in (await committed_offsets(kafka, group, topic)).items()})
        return committed, ends

    async def refresh_lag(
        self, committed: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
    ) -> None:
        """Consumer lag per assigned partition of the events topic (end offset - committed)."""
        topic = self.settings.events_topic
        for p in self.assigned:
            lag = ends.get((topic, p), 0) - committed.get((topic, p), 0)
            self.metrics.consumer_lag.labels(str(p)).set(max(0, lag))

    def snapshot_gauges(self) -> None:
        now = self.clock()
        users = deadlines = 0
        episodes: Counter[str] = Counter()
        for up in self.users.values():
            episodes.update(up.open_episodes)
        for rule in EPISODE_RULES:
            self.metrics.open_episodes.labels(rule).set(episodes[rule])
        self.metrics.devices.set(sum(len(dp.dirty) for dp in self.devices.values()))
        for p, up in self.users.items():
            wm = up.watermark
            if wm >= 0:
                self.metrics.watermark.labels(str(p)).set(wm / 1000)
                self.metrics.event_time_lag.labels(str(p)).set(now - wm / 1000)
            u, d = up.state_size()
            users += u
            deadlines += d
        self.metrics.users.set(users)
        self.metrics.deadlines.set(deadlines)
        self.metrics.buffered_rows.set(len(self.out.dirty_rows) + len(self.out.alerts))




PRODUCT_SQL = """
SELECT app_id, countIf(has_d) AS dau, countIf(has_d AND complained) AS complainers,
       countIf(first_day = d - 1) AS cohort, countIf(first_day = d - 1 AND has_d) AS retained
FROM (
    SELECT u.app_id AS app_id, u.user_id AS user_id, min(u.day) AS first_day, max(u.day = l.d) AS has_d,
           max(u.day = l.d AND u.complaints > 0) AS complained, any(l.d) AS d
    FROM vitals.user_activity_daily AS u FINAL
    INNER JOIN (SELECT app_id, max(day) - 1 AS d FROM vitals.user_activity_daily GROUP BY app_id) AS l
        ON u.app_id = l.app_id
    WHERE u.day <= l.d
    GROUP BY u.app_id, u.user_id
)
GROUP BY app_id
"""


def product_gauges(ch: ClickHouse, metrics: Metrics) -> None:
    """DAU, next-day retention and complaint rate of the last closed day, per app (from ClickHouse)."""
    for app_id, dau, complainers, cohort, retained in ch.query(PRODUCT_SQL):
        metrics.dau.labels(app_id).set(dau)
        metrics.complaint_rate.labels(app_id).set(complainers / dau if dau else 0.0)
        if cohort:
            metrics.retention.labels(app_id).set(retained / cohort)
