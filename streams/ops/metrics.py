"""Prometheus metrics of a vitals worker. Labels are bounded sets only: outcome/reason codes,
rule names, statuses, sink names, partitions and app labels (:class:`AppLabels`: configured apps
by name, every other app as ``other``) — never user or device ids, never a raw app id."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from schemas.alerts import EPISODE_RULES
from sinks.outcomes import labels as outcome_labels

if TYPE_CHECKING:
    from streams.engine.devices import DevicePartition
    from streams.engine.partition import UserPartition
    from streams.engine.store import Outputs

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OTHER_APP = "other"


class AppLabels:
    """The one mapping of app ids to metric label values, used by every metric with an app label
    (``vitals_events_total``, ``vitals_alerts_total``, the product gauges): ``default`` and the apps
    configured under ``[apps.<name>]`` keep their name, any other app id (and an unreadable one,
    "") is ``other``. A tenant flood of 100k app ids thus adds no series."""

    __slots__ = ("configured",)

    def __init__(self, configured: Iterable[str]) -> None:
        self.configured = frozenset(("default", *configured))

    def __call__(self, app_id: str) -> str:
        return app_id if app_id in self.configured else OTHER_APP

    @property
    def values(self) -> tuple[str, ...]:
        """Every label value an app can get."""
        return (*sorted(self.configured), OTHER_APP)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.messages = Counter(
            "vitals_messages_consumed_total", "Kafka messages consumed from the events topic", ["topic"], registry=r
        )
        self.events = Counter(
            "vitals_events_total",
            "Events by app and outcome (accepted, duplicate, late, invalid; app: 'default' or an app configured "
            "under [apps.*], else 'other')",
            ["app", "outcome", "reason"],
            registry=r,
        )
        self.dlq = Counter(
            "vitals_dlq_records_total",
            "Records written to the dead-letter topic (internal_undecodable: a record of an internal topic)",
            ["reason"], registry=r,
        )
        self.rerouted = Counter(
            "vitals_events_rerouted_total", "Events forwarded to their user's partition", registry=r
        )
        self.not_activity = Counter(
            "vitals_events_not_activity_total",
            "Events of a mapped input format that are not activity (Segment identify/group/alias, PostHog $identify, "
            "$set, ...): counted, not applied; kind: the message type or event name, else other",
            ["format", "kind"], registry=r,
        )
        self.processing = Histogram(
            "vitals_processing_latency_seconds",
            "Time from a batch's arrival in the worker to its state updated",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "vitals_commit_latency_seconds",
            "Time from a batch's arrival to its offsets being safe to commit (flushed)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.alert_latency = Histogram(
            "vitals_alert_emit_latency_seconds",
            "Time from the arrival of the batch deciding an alert to its delivery",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts = Counter(
            "vitals_alerts_total", "Alerts emitted (app: 'default' or an app configured under [apps.*], else 'other')",
            ["app", "rule", "status"], registry=r,
        )
        self.segment_changes = Counter(
            "vitals_segment_changes_total", "Segment changes published (SPEC section 7; app as in vitals_alerts_total)",
            ["app", "dimension", "segment"], registry=r)
        self.alerts_held_back = Counter(
            "vitals_alerts_held_back_total",
            "Alerts a replay fired again that were on the alerts topic already, not sent twice (the alert fence)",
            registry=r,
        )
        self.open_episodes = Gauge("vitals_open_episodes", "Open alert episodes held in state", ["rule"], registry=r)
        self.watermark = Gauge(
            "vitals_watermark_seconds", "Partition watermark (event time, epoch seconds)", ["partition"], registry=r
        )
        self.event_time_lag = Gauge(
            "vitals_event_time_lag_seconds", "Wall clock minus the partition watermark", ["partition"], registry=r
        )
        self.consumer_lag = Gauge(
            "vitals_consumer_lag_messages", "Messages behind the end of the events topic", ["partition"], registry=r
        )
        self.sink_rows = Counter("vitals_sink_rows_total", "Rows written to a sink", ["sink"], registry=r)
        self.sink_batches = Counter("vitals_sink_batches_total", "Batches written to a sink", ["sink"], registry=r)
        self.sink_failures = Counter(
            "vitals_sink_failures_total", "Failed sink writes (each retry counts)", ["sink"], registry=r
        )
        self.sink_retries = Counter("vitals_sink_retries_total", "Sink write retries", ["sink"], registry=r)
        self.sink_refused = Counter(
            "vitals_sink_refused_rows_total",
            "Rows ClickHouse refused on their own, dead-lettered (reason sink_refused); reason: the error's name",
            ["table", "reason"], registry=r,
        )
        self.sink_batch_rows = Histogram(
            "vitals_sink_batch_rows",
            "Rows per sink batch",
            ["sink"],
            buckets=(1, 10, 100, 1000, 10_000, 100_000, 1_000_000),
            registry=r,
        )
        self.flush_latency = Histogram(
            "vitals_sink_flush_seconds", "Duration of a sink flush", ["sink"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.buffered_rows = Gauge("vitals_sink_buffered_rows", "Rows waiting to be flushed", registry=r)
        self.buffer_cap = Gauge("vitals_sink_buffer_cap_rows", "Configured cap of buffered rows", registry=r)
        self.users = Gauge("vitals_state_users", "Users held in state on this worker", registry=r)
        self.deadlines = Gauge("vitals_state_deadlines", "Entries in the absence-deadline index", registry=r)
        self.devices = Gauge("vitals_state_device_keys", "Device keys held in state on this worker", registry=r)
        self.rebalances = Counter("vitals_rebalances_total", "Partition assignments received", registry=r)
        self.stale_dropped = Counter(
            "vitals_out_of_order_messages_total",
            "Messages left for redelivery: fetched before a rebalance's seek, seen already, or after a gap",
            registry=r,
        )
        self.flush_waits = Counter(
            "vitals_flush_waits_total",
            "Times processing waited for the running flush job (flush_max_rows outputs buffered)",
            registry=r,
        )
        self.recovery = Histogram(
            "vitals_recovery_seconds",
            "Time to rebuild indexes from recovered state",
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.assigned = Gauge("vitals_assigned_partitions", "Event partitions assigned to this worker", registry=r)
        # product figures per app label: for app_id="other", pooled over every app not configured
        # (each at its own last closed day D): DAU summed, the ratios over the pooled users
        self.dau = Gauge(
            "vitals_product_dau",
            "Daily active users of the last closed day (app_id 'other': summed over the apps not configured)",
            ["app_id"],
            registry=r,
        )
        self.retention = Gauge(
            "vitals_product_next_day_retention_ratio",
            "Share of users first seen on D-1 active on D (last closed day; app_id 'other': retained users over "
            "cohort users, pooled over the apps not configured)",
            ["app_id"],
            registry=r,
        )
        self.complaint_rate = Gauge(
            "vitals_product_complaint_rate_ratio",
            "Users with a complaint on D / users active on D (last closed day; app_id 'other': pooled over the "
            "apps not configured)",
            ["app_id"],
            registry=r,
        )
        # the configured product thresholds (rules.retention_alert_below, complaint_rate_alert_above,
        # per app): the shipped alerting rules compare the figures above with them
        self.retention_threshold = Gauge(
            "vitals_product_next_day_retention_alert_below",
            "Next-day retention below this share alerts (rules.retention_alert_below; app_id 'other': the default)",
            ["app_id"],
            registry=r,
        )
        self.complaint_threshold = Gauge(
            "vitals_product_complaint_rate_alert_above",
            "Complaint rate above this share alerts (rules.complaint_rate_alert_above; app_id 'other': the default)",
            ["app_id"],
            registry=r,
        )
        self.gc_seconds = Histogram(
            "vitals_gc_seconds",
            "Duration of a paced full garbage collection (processing.gc_paced: every gc_full_interval_s)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.watchdog = Counter("vitals_watchdog_restarts_total", "Consumer restarts by the lag watchdog", registry=r)
        self.up = Gauge("vitals_worker_up", "1 while the worker is running", registry=r)
        self.memory_budget_ratio = Gauge(
            "vitals_memory_budget_used_ratio",
            "Bytes held in flight (queued fetches, processed messages and outputs, the flush job) / "
            "processing.memory_budget_mb; at 1 consumption pauses",
            registry=r,
        )
        self.memory_budget_bytes = Gauge(
            "vitals_memory_budget_bytes", "processing.memory_budget_mb, in bytes", registry=r)

    def init_series(self, sinks: tuple[str, ...], rules: tuple[str, ...], apps: tuple[str, ...] = ("default",)) -> None:
        """Create the bounded label sets at 0 so dashboards and rules see series from the start."""
        for sink in sinks:
            for family in (self.sink_rows, self.sink_batches, self.sink_failures, self.sink_retries):
                family.labels(sink)
        for app in apps:
            for rule in rules:
                for status in ("open", "resolved"):
                    self.alerts.labels(app, rule, status)
            for outcome in ("accepted", "duplicate", "late"):
                self.events.labels(app, outcome, "")

    def record_outputs(self, out: Outputs, app_label: AppLabels, topic: str) -> None:
        """What a durable flush job's messages came to: outcomes per app (``invalid:<reason>`` also a
        dead letter; ``dlq:<reason>`` a dead letter that is no event), alerts, messages of ``topic``.
        Counts are summed per label first: a flush of 100k apps touches a handful of series."""
        events: Tally[tuple[str, str, str]] = Tally()
        for (app_id, outcome), n in out.by_app().items():
            if outcome.startswith("dlq:"):
                self.dlq.labels(outcome[4:]).inc(n)
            elif outcome == "rerouted":
                self.rerouted.inc(n)
            else:  # named as in the event_outcomes table (sinks/outcomes.py)
                named = outcome_labels(outcome)
                if named is not None:
                    events[(app_label(app_id), *named)] += n
                    if named[0] == "invalid":
                        self.dlq.labels(named[1]).inc(n)
        for labels, n in events.items():
            self.events.labels(*labels).inc(n)
        alerts = Tally((app_label(a.app_id), a.rule, a.status) for a in out.alerts)
        for labels, n in alerts.items():
            self.alerts.labels(*labels).inc(n)
        changes = Tally((app_label(c.app_id), c.dimension, c.segment) for c in out.segment_changes)
        for labels, n in changes.items():  # bounded: apps as above, 3 dimensions, 12 segments
            self.segment_changes.labels(*labels).inc(n)
        self.messages.labels(topic).inc(out.messages)
        for (fmt, kind), n in out.not_activity.items():
            self.not_activity.labels(fmt, kind).inc(n)

    def observe_partitions(self, users: Mapping[int, UserPartition], devices: Mapping[int, DevicePartition],
                           buffered_rows: int, now: float) -> None:
        """The gauges of a worker's partitions: open episodes per rule, devices, watermarks and event-time
        lag per partition, users and deadlines held, outputs buffered for the next flush."""
        users_held = deadlines = 0
        episodes: Tally[str] = Tally()
        for up in users.values():
            episodes.update(up.open_episodes)
        for rule in EPISODE_RULES:
            self.open_episodes.labels(rule).set(episodes[rule])
        self.devices.set(sum(len(dp.dirty) for dp in devices.values()))
        for p, up in users.items():
            wm = up.watermark
            if wm >= 0:
                self.watermark.labels(str(p)).set(wm / 1000)
                self.event_time_lag.labels(str(p)).set(now - wm / 1000)
            u, d = up.state_size()
            users_held += u
            deadlines += d
        self.users.set(users_held)
        self.deadlines.set(deadlines)
        self.buffered_rows.set(buffered_rows)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
