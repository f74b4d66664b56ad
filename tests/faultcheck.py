"""What every fault test checks afterwards: aggregates, alerts and accounting, exactly.

* ``user_activity_daily FINAL`` equals the batch recomputation (tests/oracle.py), row by row;
* the alerts on the alerts topic equal the rules oracle (tests/oracle_rules.py): none missing,
  none unexpected, ids stable (re-emissions after a crash carry the same id);
* every input event is accounted for: consumed = accepted + duplicates + dead-lettered, with the
  dead letters read back from the DLQ topic (distinct by source position, as a re-sent dead
  letter is the same record);
* raw storage (``raw_messages FINAL``) holds every message of the events topic, none twice.

With several workers on the embedded engine each worker has its own ClickHouse; their rows are
merged as ``ReplacingMergeTree(version)`` does (the highest version of a key wins), which is what
one shared server would return with ``FINAL``.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from streams.devtools.generator import History
from tests.conftest import Deployment, jsonl_rows
from tests.oracle import expected_daily, expected_dlq_reasons, valid_events

ROWS = ("SELECT app_id, user_id, toString(day), events, logins, payments, toString(payment_amount), "
        "content_posts, social, complaints, version FROM vitals.user_activity_daily")


def write_config(path: Path, partitions: int = 8, **processing: float | str) -> Path:
    """A TOML config for fault tests: short session timeout and watchdog, quick restarts."""
    values = {"session_timeout_s": 6.0, "lag_watchdog_s": 30.0, "restart_backoff_max_s": 2.0, **processing}
    lines = ["[kafka]", f"partitions = {partitions}", "", "[processing]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]  # a JSON string or number is TOML too
    path.write_text("\n".join(lines) + "\n")
    return path


def query_dir(deployment: Deployment, data_dir: Path, sql: str) -> list[list[Any]]:
    env = dict(deployment.env, VITALS_DATA_DIR=str(data_dir))
    env.pop("VITALS_CLICKHOUSE_DSN", None)
    done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", "query", sql], env=env, check=True,
                          capture_output=True, timeout=300)
    return jsonl_rows(done.stdout)


def merged_final(deployment: Deployment, data_dirs: list[Path]) -> dict[tuple[str, str, str], tuple[Any, ...]]:
    best: dict[tuple[str, str, str], tuple[int, tuple[Any, ...]]] = {}
    for data_dir in data_dirs:
        if not (data_dir / "clickhouse").exists():
            continue
        for app, user, day, events, logins, payments, amount, posts, social, complaints, version in query_dir(
            deployment, data_dir, ROWS
        ):
            key = (app, user, day)
            row = (events, logins, payments, Decimal(amount), posts, social, complaints)
            if key not in best or version > best[key][0]:
                best[key] = (version, row)
    return {k: row for k, (_, row) in best.items()}


def check_aggregates(got: dict[tuple[str, str, str], tuple[Any, ...]], history: History) -> None:
    expected = expected_daily(history)
    missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
    assert not missing, f"{len(missing)} rows missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected rows, e.g. {sorted(extra)[:3]}"
    wrong = [(k, expected[k], got[k]) for k in expected if expected[k] != got[k]]
    assert not wrong, f"{len(wrong)} rows differ (expected, got), e.g. {wrong[:3]}"


def check_alerts(deployment: Deployment, history: History, partitions: int) -> None:
    from tests.integration.test_alerts_oracle import assert_same, delivered, read_alerts
    from tests.oracle_rules import expected_alerts

    got, _duplicates = read_alerts(deployment)  # at least once: re-emissions allowed, same ids
    assert_same(expected_alerts(delivered(history), partitions), got)


def check_accounting(deployment: Deployment, history: History, accepted: int) -> None:
    """consumed = accepted (ClickHouse) + duplicates (oracle) + dead-lettered (DLQ topic, distinct)."""
    records = [orjson.loads(r.value) for r in deployment.read(deployment.settings.dlq_topic)]
    distinct = {(r["source"]["topic"], r["source"]["partition"], r["source"]["offset"], r["source"]["index"]): r
                for r in records}
    dead = Counter(r["reason"] for r in distinct.values())
    assert dead == expected_dlq_reasons(history)
    valid = valid_events(history)
    duplicates = len(valid) - len({(e.app_id, e.user_id, e.event_id) for e in valid})
    consumed = len(valid) + sum(len(m.expect_invalid) for m in history.messages)
    assert accepted + duplicates + sum(dead.values()) == consumed


def check_all(deployment: Deployment, history: History, partitions: int, data_dirs: list[Path]) -> None:
    got = merged_final(deployment, data_dirs)
    check_aggregates(got, history)
    check_alerts(deployment, history, partitions)
    check_accounting(deployment, history, sum(row[0] for row in got.values()))
    check_raw(deployment, data_dirs)
    check_outcomes(deployment, history, data_dirs)


OUTCOME_ROWS = ("SELECT partition, seq, version, arrayMap(d -> toString(d), day), app_id, outcome, reason, events "
                "FROM vitals.event_outcome_flushes FINAL")


def merged_outcomes(deployment: Deployment, data_dirs: list[Path]) -> Counter[tuple[str, str, str, str]]:
    """(app_id, day, outcome, reason) -> events of ``event_outcomes``; rows of several embedded databases
    merged as ``ReplacingMergeTree(version)`` does on one server (per (partition, seq), the highest version)."""
    best: dict[tuple[int, int], tuple[int, list[Any]]] = {}
    for data_dir in data_dirs:
        if (data_dir / "clickhouse").exists():
            for partition, seq, version, *arrays in query_dir(deployment, data_dir, OUTCOME_ROWS):
                if (partition, seq) not in best or version > best[(partition, seq)][0]:
                    best[(partition, seq)] = (version, arrays)
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for _version, (days, apps, outcomes, reasons, events) in best.values():
        for entry in zip(apps, days, outcomes, reasons, events, strict=True):
            counts[entry[:4]] += entry[4]
    return counts


def check_outcomes(deployment: Deployment, history: History, data_dirs: list[Path]) -> None:
    """``event_outcomes`` counts every event once, crashes and replays whatever: per (app, day), the
    accepted and late events are the distinct valid events and the duplicates the other copies (the
    batch recomputation, tests/oracle.py); per (day of the record, reason), the invalid events are the
    dead letters (distinct by source position); none counted as a replay."""
    got = merged_outcomes(deployment, data_dirs)
    kept: Counter[tuple[str, str]] = Counter()
    for (app, _user, day), row in expected_daily(history).items():
        kept[(app, day)] += row[0]
    copies: Counter[tuple[str, str]] = Counter()
    for e in valid_events(history):
        copies[(e.app_id, str(datetime.date(1970, 1, 1) + datetime.timedelta(days=e.ts // 86_400_000)))] += 1
    stamps = {(r.partition, r.offset): r.timestamp  # type: ignore[attr-defined]
              for r in deployment.read(deployment.settings.events_topic)}
    dead: Counter[tuple[str, str]] = Counter()
    topic = deployment.settings.events_topic
    for r in {(d["source"]["partition"], d["source"]["offset"], d["source"]["index"]): d for d in (
            orjson.loads(x.value) for x in deployment.read(deployment.settings.dlq_topic))
            if d["source"]["topic"] == topic}.values():
        day = datetime.date(1970, 1, 1) + datetime.timedelta(days=stamps[(r["source"]["partition"],
                                                                        r["source"]["offset"])] // 86_400_000)
        dead[(str(day), r["reason"])] += 1
    accepted: Counter[tuple[str, str]] = Counter()
    duplicates: Counter[tuple[str, str]] = Counter()
    invalid: Counter[tuple[str, str]] = Counter()
    for (app, day, outcome, reason), n in got.items():
        assert reason != "replay", f"{n} events of {app} on {day} counted as replays"
        if outcome in ("accepted", "late"):
            accepted[(app, day)] += n
        elif outcome == "duplicate":
            duplicates[(app, day)] += n
        else:
            assert outcome == "invalid", outcome
            invalid[(day, reason)] += n
    assert accepted == kept, ("accepted and late events differ", sorted((accepted - kept).items())[:3],
                              sorted((kept - accepted).items())[:3])
    assert duplicates == copies - kept, "duplicates differ"
    assert invalid == dead, ("invalid events differ", invalid, dead)


def check_raw(deployment: Deployment, data_dirs: list[Path]) -> None:
    """Several workers on the embedded engine each have a database; a message both processed is in
    both (one shared server would hold it once), so the union is compared."""
    stored: set[tuple[int, int, int]] = set()
    for data_dir in data_dirs:
        if (data_dir / "clickhouse").exists():
            rows = Counter(tuple(r) for r in query_dir(
                deployment, data_dir, "SELECT partition, offset, length(value) FROM vitals.raw_messages FINAL"))
            assert not [r for r, n in rows.items() if n > 1], "FINAL returned a message twice"
            stored |= rows.keys()  # type: ignore[arg-type]
    produced = {(m.partition, m.offset, len(m.value or b""))  # type: ignore[attr-defined]
                for m in deployment.read(deployment.settings.events_topic)}
    assert stored == produced, (len(stored), len(produced), sorted(produced - stored)[:3],
                                sorted(stored - produced)[:3])
