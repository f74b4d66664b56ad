"""The ClickHouse database is the DSN's, ``vitals`` by default (issue 24, item 7): every statement the
sinks, the views, the report, the run summary and the product gauges send names it, and none names
``vitals.`` when the DSN says otherwise."""

from __future__ import annotations

import re
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.alerts import Alert
from sinks.alerts import AlertSink
from sinks.clickhouse import ActivitySink, ClickHouse, RawSink
from sinks.columns import ActivityColumns
from sinks.late import LateSink
from sinks.views import view_ddl
from streams.config.clickhouse_dsn import (
    database_of,
    location,
    qualified,
    replay_database,
    with_database,
    without_database,
)
from streams.config.settings import ConfigError, load_settings


@pytest.mark.parametrize(("dsn", "database"), [
    ("chdb:///var/lib/vitals/clickhouse", "vitals"),
    ("chdb:///var/lib/vitals/clickhouse?database=analytics", "analytics"),
    ("http://u:p@ch:8123/analytics", "analytics"),
    ("https://u:p@ch/analytics/", "analytics"),
    ("http://ch:8123/", "vitals"),
    ("http://ch:8123", "vitals"),
    ("http://ch:8123/?database=other_1", "other_1"),
    ("http://ch:8123/path_db?database=query_db", "path_db"),  # the path wins, as clickhouse-connect reads it
])
def test_the_database_is_the_dsns(dsn: str, database: str) -> None:
    assert database_of(dsn) == database
    assert ClickHouse(dsn).database == database


@pytest.mark.parametrize("dsn", ["http://ch:8123/my-db", "http://ch:8123/1db", "chdb:///x?database=a.b",
                                 "http://ch:8123/%60x%60"])
def test_a_database_name_that_is_not_a_plain_identifier_fails_at_startup(dsn: str) -> None:
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        database_of(dsn)
    with pytest.raises(ConfigError, match="clickhouse_dsn: the ClickHouse database name"):
        load_settings(env={"VITALS_CLICKHOUSE_DSN": dsn})


def test_dsns_with_another_database_keep_everything_else() -> None:
    assert with_database("chdb:///d/ch", "r") == "chdb:///d/ch?database=r"
    assert with_database("chdb:///d/ch?database=a&x=1", "r") == "chdb:///d/ch?x=1&database=r"
    assert with_database("https://u:p%40w@ch:9440/live?compress=lz4", "r") == "https://u:p%40w@ch:9440/r?compress=lz4"
    assert with_database("http://ch:8123/?database=live", "r") == "http://ch:8123/r"
    assert without_database("chdb:///d/ch?database=a") == "chdb:///d/ch"
    assert without_database("chdb:///d/ch") == "chdb:///d/ch"
    with pytest.raises(ValueError):
        with_database("chdb:///d/ch", "x; DROP TABLE y")
    assert location("https://a:b@CH:9440/x") == location("https://c@ch:9440/y?database=z")
    assert location("http://ch/x") != location("https://ch/x")
    assert location("chdb:///d/../d/ch?database=r") == location("chdb:///d/ch")
    assert replay_database("vitals") == "vitals_replay" and replay_database("live", "mine") == "mine"


class Recorder:
    """A clickhouse-connect client that records every statement (and answers queries with empty rows,
    or one row of zeros where the caller unpacks one)."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.database: str | None = None

    def command(self, sql: str, parameters: Any = None, settings: Any = None, use_database: bool = True) -> None:
        self.statements.append(sql)

    def query(self, sql: str, parameters: Any = None) -> SimpleNamespace:
        self.statements.append(sql)
        single = sql.lstrip().startswith("SELECT sum(")  # the totals, unpacked as one row
        return SimpleNamespace(result_rows=[(0, 0, 0, 0)[: 3 if "uniqExact(day)" in sql else 4]] if single else [])

    def insert(self, table: str, data: Any, column_names: Any = None, column_oriented: bool = False,
               settings: Any = None) -> None:
        self.statements.append(f"INSERT INTO {table}")

    def raw_insert(self, table: str, columns: Any, insert_block: Any = None, fmt: Any = None,
                   settings: Any = None) -> None:
        self.statements.append(f"INSERT INTO {table}")

    def close(self) -> None:
        pass


def recorded(ch: ClickHouse) -> Recorder:
    client = Recorder()
    ch._client = client
    return client


def every_statement(database: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the sinks, views, report, summary and gauges send for a DSN naming ``database``."""
    from streams.devtools import run_summary as summary
    from streams.ops import gauges
    from streams.ops.metrics import AppLabels, Metrics
    from streams.report import data as report_data

    dsn = f"chdb:///nowhere/ch?database={database}"
    ch = ClickHouse(dsn)
    client = recorded(ch)
    ch.extra_ddl = view_ddl(ch.database)
    ch.ensure_schema()
    ActivitySink(ch, 10).write([ActivityColumns.from_rows([("default", "u1", 20_000, 1, 1, 0, 0, 0, 0, 0)])])
    AlertSink(ch, 10).write([Alert(alert_id="a", status="open", rule="fake.burst", level=None, app_id="default",
                                   user_id="u1", device_id=None, user_ids=None, episode_start=0, triggered_at=0,
                                   evidence={}, schema_version=1)])
    RawSink(ch, 10).write([("t", 0, 0, 0, b"k", b"v")])
    LateSink(ch, 10).write([("default", "u1", 19_000, 7, (1, 1, 0, 0, 0, 0, 0))])
    from schemas.segments import make_change
    from sinks.segments import SegmentSink
    from streams.ops.segment_gauges import SegmentGauges
    from streams.report.inspection import read_segments
    from streams.report.segment_data import read_segment_data

    SegmentSink(ch, 10).write([make_change("default", "u1", "value", "low", None, 0, 0, {})])
    read_segment_data(ch)
    read_segments(ch, "default", "u1")
    SegmentGauges(ch, Metrics(), AppLabels(())).refresh()
    data = report_data.ReportData(generated_at="now", source=dsn)
    report_data.read_clickhouse(ch, data)
    report_data.flagged_devices(ch)
    settings = SimpleNamespace(apps={})
    gauges.product_gauges(ch, Metrics(), AppLabels(settings.apps), lambda app: load_settings(env={}).rules)

    monkeypatch.setattr(summary, "ClickHouse", lambda *a, **k: ch)
    monkeypatch.setattr(summary, "dlq_reasons", lambda settings: _no_reasons())
    summary.print_summary(load_settings(env={"VITALS_CLICKHOUSE_DSN": dsn}))
    return client.statements


async def _no_reasons() -> Counter[str]:
    return Counter()


NAMES = re.compile(r"(?<!ARRAY )\b(?:FROM|JOIN|INTO|TABLE|VIEW)\s+(?:IF NOT EXISTS\s+)?([A-Za-z_][\w.]*)")


@pytest.mark.parametrize("database", ["analytics", "vitals"])
def test_every_statement_names_the_configured_database(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    statements = every_statement(database, monkeypatch)
    kinds = Counter(s.split()[0] for s in statements)
    assert kinds["CREATE"] >= 12 and kinds["INSERT"] >= 5 and kinds["SELECT"] >= 12, kinds  # all of them seen
    assert f"CREATE DATABASE IF NOT EXISTS {database}" in statements
    for statement in statements:
        if statement.startswith("CREATE DATABASE"):
            continue
        names = NAMES.findall(statement)
        assert names, statement
        for name in names:
            assert name.startswith(qualified(database, "")), f"{name!r} in: {statement}"
        if database != "vitals":
            assert not re.search(r"\bvitals\.", statement), statement


def test_the_check_sees_an_unqualified_or_literal_name() -> None:
    assert NAMES.findall("SELECT x FROM vitals.alerts FINAL ARRAY JOIN range(3) AS k") == ["vitals.alerts"]
    assert NAMES.findall("CREATE TABLE IF NOT EXISTS alerts (x UInt8)") == ["alerts"]
    assert NAMES.findall("SELECT 1 FROM (SELECT 2 FROM db.t)") == ["db.t"]
