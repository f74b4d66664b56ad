"""A DSN naming another database, on the real embedded engine (issue 24, item 7): the sinks write there,
the views and the report read there, ``vitals query`` resolves unqualified names there, and no
``vitals`` database is created."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.alerts import Alert
from sinks.alerts import AlertSink
from sinks.clickhouse import ActivitySink, ClickHouse
from sinks.columns import ActivityColumns
from sinks.late import LateSink
from sinks.views import ensure_views
from streams.report.data import ReportData, read_clickhouse
from tests.conftest import jsonl_rows

pytestmark = pytest.mark.integration

ROWS = [  # app, user, day, events, logins, payments, amount micros, posts, social, complaints
    ("default", "u1", 20_000, 3, 1, 1, 12_500_000, 0, 2, 0),
    ("default", "u2", 20_001, 2, 1, 0, 0, 1, 0, 1),
]


def cli(dsn: str, *args: str) -> list[list[object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_")} | {"VITALS_CLICKHOUSE_DSN": dsn}
    done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", *args], env=env, capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return jsonl_rows(done.stdout)


def test_the_dsns_database_is_written_and_read(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'ch'}?database=analytics"
    ch = ClickHouse(dsn)
    try:
        ch.ensure_schema()
        ensure_views(ch)
        ActivitySink(ch, 10).write([ActivityColumns.from_rows(ROWS)])
        AlertSink(ch, 10).write([Alert(alert_id="a1", status="open", rule="fake.burst", level=None,
                                       app_id="default", user_id="u1", device_id=None, user_ids=None,
                                       episode_start=20_000 * 86_400_000, triggered_at=0, evidence={})])
        LateSink(ch, 10).write([("default", "u1", 19_000, 7, (1, 1, 0, 0, 0, 0, 0))])  # a day beyond the state
        data = ReportData(generated_at="now", source=dsn)
        read_clickhouse(ch, data)
        assert data.totals == {"events": 6, "users": 2, "payers": 1, "revenue": 12.5}
        assert data.alerts_by_rule == {"fake.burst": (1, 0)}
        assert data.active and data.days[0] == "2022-01-08"  # the late day is in the views too
        databases = {r[0] for r in ch.query("SELECT name FROM system.databases")}
        assert "analytics" in databases and "vitals" not in databases
        assert ch.query("SELECT currentDatabase()") == [("analytics",)]
    finally:
        ch.close()
    # another process (the engine's directory is free again): unqualified names resolve in the DSN's database
    assert cli(dsn, "query", "SELECT sum(events), toString(sum(payment_amount)) FROM user_activity_daily FINAL") == [
        [6, str(Decimal("12.5"))]]
    assert cli(dsn, "query", "SELECT count() FROM analytics.alerts FINAL") == [[1]]
    views = subprocess.run([sys.executable, "-P", "-m", "streams.cli", "views", "--print"],
                           env={**os.environ, "VITALS_CLICKHOUSE_DSN": dsn}, capture_output=True, text=True,
                           timeout=120, check=True).stdout
    assert "CREATE OR REPLACE VIEW analytics.active_users_daily" in views and "vitals." not in views
