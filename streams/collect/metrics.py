"""Prometheus metrics of ``vitals collect``, served on its own port at ``/metrics``. Labels are bounded
sets only: routes (the collector's, else ``other``), status codes, formats, reasons (SPEC section 1's codes)
and not-activity kinds (the mapping's, else ``other``) — never a key, a user or an app id."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.events import Reason

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OTHER = "other"
REASONS = frozenset(str(reason) for reason in Reason)
CODES = frozenset({"200", "400", "401", "404", "405", "413", "415", "500", "503"})


class CollectMetrics:
    def __init__(self, routes: Iterable[str], not_activity_kinds: Iterable[str]) -> None:
        r = self.registry = CollectorRegistry()
        self.routes = frozenset(routes)
        self.kinds = frozenset(not_activity_kinds)
        self.requests = Counter("vitals_collect_requests_total", "HTTP requests by route and status code",
                                ["route", "code"], registry=r)
        self.events = Counter(
            "vitals_collect_events_total",
            "Events received by format and outcome: accepted (written to the events topic), dead_lettered "
            "(written to the dead-letter topic), not_activity (identify, group, alias, $set, ...: counted only)",
            ["format", "outcome"], registry=r)
        self.dead_letters = Counter("vitals_collect_dead_letters_total", "Events dead-lettered, by reason",
                                    ["reason"], registry=r)
        self.not_activity = Counter("vitals_collect_not_activity_total",
                                    "Events that are no activity (not written), by kind", ["kind"], registry=r)
        self.records = Counter("vitals_collect_records_total", "Kafka records acknowledged, by topic kind",
                               ["topic"], registry=r)
        self.latency = Histogram("vitals_collect_request_seconds", "Time to answer a request, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.produce = Histogram("vitals_collect_produce_seconds",
                                 "Time from a request's records sent to Kafka to every one acknowledged",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.kafka_up = Gauge("vitals_collect_kafka_up", "1 while Kafka accepts the collector's records, else 0",
                              registry=r)
        self.in_flight = Gauge("vitals_collect_requests_in_flight", "Requests being handled", registry=r)
        for route in (*sorted(self.routes), OTHER):  # the series exist from the start (rate() needs them)
            self.latency.labels(route)
        for fmt in ("segment", "posthog"):
            for outcome in ("accepted", "dead_lettered", "not_activity"):
                self.events.labels(fmt, outcome)
        for topic in ("events", "dlq"):
            self.records.labels(topic)

    def route(self, path: str) -> str:
        return path if path in self.routes else OTHER

    def request(self, path: str, status: int, seconds: float) -> None:
        route = self.route(path)
        code = str(status)
        self.requests.labels(route, code if code in CODES else OTHER).inc()
        self.latency.labels(route).observe(seconds)

    def outcome(self, fmt: str, accepted: int, dead: dict[str, int], not_activity: dict[str, int]) -> None:
        if accepted:
            self.events.labels(fmt, "accepted").inc(accepted)
        for reason, n in dead.items():
            self.events.labels(fmt, "dead_lettered").inc(n)
            self.dead_letters.labels(reason if reason in REASONS else OTHER).inc(n)
        for kind, n in not_activity.items():
            self.events.labels(fmt, "not_activity").inc(n)
            self.not_activity.labels(kind if kind in self.kinds else OTHER).inc(n)
