"""What the report shows, read from ClickHouse (the analyst views, the event outcome counts), the DLQ
and device-observation topics, and (for a database without outcome counts) the worker's counters. Each
source that cannot be read leaves a note, not a crash."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sinks.clickhouse import ClickHouse
from sinks.reader import ServedClickHouse, open_reader
from sinks.views import RECALL_WINDOW_MS, ensure_views
from streams.config.secrets import redact_dsn
from streams.config.settings import Settings
from streams.ops.metrics_snapshot import event_outcomes
from streams.report.segment_data import SegmentData, read_segment_data


@dataclass
class DeviceRow:
    app_id: str
    device_id: str
    distinct_users: int
    busiest_day_users: int
    flagged: bool


@dataclass
class ReportData:
    generated_at: str
    source: str
    database: str = "vitals"  # the DSN's (streams/config/clickhouse_dsn.py)
    apps: list[str] = field(default_factory=list)
    days: list[str] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    active: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # day -> (dau, wau, mau)
    retention: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)  # cohort -> offset -> size, kept
    ladder: dict[str, dict[str, int]] = field(default_factory=dict)  # rule -> day -> users
    recall: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # day -> flagged, in, later, not
    fake: dict[str, dict[str, int]] = field(default_factory=dict)  # rule -> day -> flagged users
    fake_share: dict[str, tuple[int, int]] = field(default_factory=dict)  # day -> (active, flagged)
    alerts_by_rule: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule -> (opened, resolved)
    devices: list[DeviceRow] = field(default_factory=list)
    devices_source: str = ""
    dlq: Counter[str] | None = None
    outcomes: dict[tuple[str, str], float] | None = None  # (outcome, reason) -> events
    outcomes_source: str = ""  # where the outcome counts come from, for the chart's caption
    segments: SegmentData = field(default_factory=SegmentData)  # SPEC section 7 (streams/report/segment_data.py)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth a line on stderr too (``vitals report``)


def _day(v: Any) -> str:
    return str(v)


def read_clickhouse(ch: ClickHouse, data: ReportData) -> None:
    q, t = ch.query, ch.table
    events, users, payers, amount = q(
        "SELECT sum(events), uniqExact(app_id, user_id), uniqExactIf((app_id, user_id), payments > 0), "
        f"sum(payment_amount) FROM {t('user_activity_daily')} FINAL"
    )[0]
    data.totals = {"events": int(events or 0), "users": int(users or 0), "payers": int(payers or 0),
                   "revenue": float(amount or 0)}
    data.apps = [r[0] for r in q(f"SELECT DISTINCT app_id FROM {t('user_activity_daily')} ORDER BY app_id")]
    rows = q(f"SELECT day, sum(dau), sum(wau), sum(mau) FROM {t('active_users_daily')} GROUP BY day ORDER BY day")
    data.active = {_day(d): (int(a), int(w), int(m)) for d, a, w, m in rows}
    data.days = list(data.active)
    retention: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for cohort, offset, size, kept in q(
        f"SELECT cohort_day, day_offset, sum(cohort_size), sum(retained) FROM {t('retention_cohorts')} "
        "GROUP BY cohort_day, day_offset ORDER BY cohort_day, day_offset"
    ):
        retention[_day(cohort)][int(offset)] = (int(size), int(kept))
    data.retention = dict(retention)
    ladder: dict[str, dict[str, int]] = defaultdict(dict)
    for day, rule, n in q(f"SELECT day, rule, sum(users) FROM {t('churn_ladder_daily')} GROUP BY day, rule"):
        ladder[rule][_day(day)] = int(n)
    data.ladder = dict(ladder)
    data.recall = {
        _day(d): (int(a), int(b), int(c), int(e))
        for d, a, b, c, e in q(
            "SELECT day, sum(flagged), sum(back_in_window), sum(back_later), sum(not_back) "
            f"FROM {t('recall_outcomes')} GROUP BY day ORDER BY day"
        )
    }
    fake: dict[str, dict[str, int]] = defaultdict(dict)
    for day, rule, n in q(f"SELECT day, rule, sum(flagged_users) FROM {t('fake_flags_daily')} GROUP BY day, rule"):
        fake[rule][_day(day)] = int(n)
    data.fake = dict(fake)
    data.fake_share = {
        _day(d): (int(a), int(f))
        for d, a, f in q(
            f"SELECT day, sum(active_users), sum(flagged_users) FROM {t('fake_activity_share')} "
            "GROUP BY day ORDER BY day"
        )
    }
    data.alerts_by_rule = {
        rule: (int(o), int(r))
        for rule, o, r in q(
            f"SELECT rule, countIf(status = 'open'), countIf(status = 'resolved') FROM {t('alerts')} FINAL "
            "GROUP BY rule ORDER BY rule"
        )
    }


def read_outcomes(ch: ClickHouse, data: ReportData) -> None:
    """Events per (outcome, reason) from the ``event_outcomes`` view (sinks/outcomes.py); nothing when the
    table holds no counts (a database written by a version without it)."""
    rows = ch.query(f"SELECT outcome, reason, sum(events) FROM {ch.table('event_outcomes')} GROUP BY outcome, reason")
    if rows:
        data.outcomes = {(str(o), str(r)): float(n) for o, r, n in rows}
        data.outcomes_source = f"ClickHouse ({ch.table('event_outcomes')}), every event the workers processed"


def flagged_devices(ch: ClickHouse) -> dict[tuple[str, str], int]:
    """Devices flagged by ``fake.device_farm`` -> the users the rule named (capped at its threshold)."""
    t = ch.table
    rows = ch.query(
        f"SELECT app_id, device_id, max(length(user_ids)) FROM {t('alerts')} FINAL "
        "WHERE rule = 'fake.device_farm' AND status = 'open' GROUP BY app_id, device_id"
    )
    return {(a, str(d)): int(n) for a, d, n in rows}


async def device_users(settings: Settings) -> dict[tuple[str, str], dict[int, set[str]]]:
    """(app_id, device_id) -> day -> distinct users, from the worker's device-observation topic."""
    from streams.engine.devices import BadObservations, decode_observations
    from streams.kafka.read import read_topic
    from streams.kafka.topics import device_topic

    seen: dict[tuple[str, str], dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for record in await read_topic(settings.kafka, device_topic(settings)):
        try:
            batch = decode_observations(record.value)
        except BadObservations:  # not vitals' (the worker dead-lettered it)
            continue
        for day, user, _ts in batch.obs:
            seen[(batch.app_id, batch.device_id)][day].add(user)
    return seen


async def dlq_reasons(settings: Settings) -> Counter[str]:
    from streams.kafka.read import read_topic

    return Counter(orjson.loads(r.value)["reason"] for r in await read_topic(settings.kafka, settings.dlq_topic))


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs each refused connection itself; the report says once what it could not read."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_kafka(settings: Settings, flagged: dict[tuple[str, str], int], data: ReportData, top: int = 15) -> None:
    from aiokafka.errors import KafkaConnectionError

    from streams.kafka.client import diagnose_connection

    seen: dict[tuple[str, str], dict[int, set[str]]] = {}
    with _quiet_aiokafka():
        reachable = True
        try:
            data.dlq = asyncio.run(asyncio.wait_for(dlq_reasons(settings), 120))
        except KafkaConnectionError:  # no broker answered: the device read would not either
            if settings.kafka.security_protocol != "PLAINTEXT":
                asyncio.run(diagnose_connection(settings.kafka))  # refused TLS or login: ConfigError, one line
            reachable = False
            unreachable = f"Kafka at {settings.kafka.bootstrap} not reachable"
            data.notes.append(f"{unreachable}: no dead letters or device observations")
            data.warnings.append(f"{unreachable}: the report leaves out dead letters and device observations "
                                 "(--no-kafka skips Kafka)")
        except Exception as exc:  # the report still renders: say what is missing
            data.notes.append(f"dead-letter topic {settings.dlq_topic} not readable ({type(exc).__name__})")
        if reachable:
            seen = _device_users_or_note(settings, data)
    if seen:
        ranked = sorted(
            ((key, len(set().union(*days.values())), max(len(u) for u in days.values())) for key, days in seen.items()),
            key=lambda t: (-t[1], t[0]),
        )[:top]
        data.devices = [DeviceRow(a, d, n, busiest, (a, d) in flagged) for (a, d), n, busiest in ranked]
        data.devices_source = (
            "distinct users per device over the whole history, from the worker's device-observation topic "
            "(ClickHouse holds no device-level data; observations more than 2 days behind the watermark are "
            "not recorded there)"
        )
    elif flagged:
        ranked_flagged = sorted(flagged.items(), key=lambda t: (-t[1], t[0]))[:top]
        data.devices = [DeviceRow(a, d, n, n, True) for (a, d), n in ranked_flagged]
        data.devices_source = (
            "devices flagged by fake.device_farm with the users the alert names (ClickHouse holds no "
            "device-level data, and the device-observation topic was not readable: counts stop at the threshold)"
        )


def _device_users_or_note(settings: Settings, data: ReportData) -> dict[tuple[str, str], dict[int, set[str]]]:
    try:
        return asyncio.run(asyncio.wait_for(device_users(settings), 300))
    except Exception as exc:  # the report still renders: say what is missing
        data.notes.append(f"device-observation topic not readable ({type(exc).__name__})")
        return {}


def collect(settings: Settings, metrics_file: Path | None, use_kafka: bool = True,
            kafka_down: str | None = None) -> ReportData:
    """What the report shows; ``kafka_down`` (why Kafka cannot be reached) skips Kafka as ``use_kafka`` false."""
    data = ReportData(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        source=redact_dsn(settings.effective_clickhouse_dsn),
    )
    ch = open_reader(settings)  # a running worker's endpoint on the embedded engine (sinks/reader.py)
    data.database = ch.database
    try:
        if isinstance(ch, ServedClickHouse):  # the worker made the tables and views; its endpoint reads only
            data.source += " (read through the running worker)"
        else:
            ch.ensure_schema()
            ensure_views(ch)
        read_clickhouse(ch, data)
        read_outcomes(ch, data)
        try:
            data.segments = read_segment_data(ch)
        except Exception as exc:  # a worker of an earlier version serving: its database has no segment views
            data.notes.append(f"segment views not readable ({type(exc).__name__})")
        flagged = flagged_devices(ch)
    finally:
        ch.close()
    if use_kafka and not kafka_down:
        read_kafka(settings, flagged, data)
    else:
        data.notes.append(f"{kafka_down}; no dead letters or device observations" if kafka_down else
                          "Kafka not read (--no-kafka): no dead letters or device observations")
        read_kafka_free = sorted(flagged.items(), key=lambda t: (-t[1], t[0]))[:15]
        data.devices = [DeviceRow(a, d, n, n, True) for (a, d), n in read_kafka_free]
        data.devices_source = "devices flagged by fake.device_farm with the users the alert names"
    if data.outcomes is None and metrics_file is not None and metrics_file.exists():  # counted before event_outcomes
        data.outcomes = event_outcomes(metrics_file.read_text())
        data.outcomes_source = f"the worker's vitals_events_total counters at the end of its run ({metrics_file})"
    elif data.outcomes is None:
        data.notes.append("no event outcome counts (duplicates, late events) in ClickHouse's event_outcomes")
    return data


__all__ = ["RECALL_WINDOW_MS", "DeviceRow", "ReportData", "collect"]
