"""One generated history through a real worker (real broker, embedded ClickHouse), then: the analyst
views equal the Python recomputation, the HTML report draws every chart in headless Chromium with
no text outside its chart and no overlapping labels, ``vitals replay`` yields the same alert ids,
``vitals inspect`` shows the state the worker holds, ``vitals rules`` the configured thresholds.

The report's screenshot goes to the test's temporary directory; ``VITALS_DOCS_SCREENSHOT=1``
also copies it to docs/report.png (the tracked one, on purpose):

    VITALS_DOCS_SCREENSHOT=1 .venv/bin/python -m pytest tests/integration/test_report_replay.py -k chromium

The history is keyed by user (no mis-keyed events): a rerouted event's position depends on timing,
so it may be applied at another watermark in a replay (see test_alerts_oracle.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.devtools.generator import GenConfig, History, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from streams.ops.metrics_snapshot import save_snapshot, snapshot_path
from tests import oracle_views as ov
from tests.browser import browse, layout_problems
from tests.conftest import Deployment, make_deployment
from tests.oracle import expected_daily, valid_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Live:
    deployment: Deployment
    history: History
    alerts: list[dict[str, Any]]

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
        done = subprocess.run([sys.executable, "-P", "-m", "streams.cli", *args], env=env or self.deployment.env,
                              capture_output=True, timeout=timeout)
        assert done.returncode in (0, 3), done.stderr.decode()[-3000:]
        return done.stdout.decode()


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Live:
    deployment = make_deployment(kafka_bootstrap, tmp_path_factory.mktemp("report"))
    settings = deployment.settings
    partitions = asyncio.run(prepare_topics(settings))
    cfg = GenConfig(users=500, days=24, events=20_000, seed=21, batch=5, partitions=partitions, unkeyed_rate=0.0,
                    apps=("default", "shop"))
    history = generate(cfg)
    asyncio.run(produce_history(settings, history))
    worker = deployment.worker()
    try:
        wait_for_lag_zero(settings, worker, len(history.messages), timeout_s=600, progress=False)
        assert save_snapshot(settings.metrics_host, settings.metrics_port, snapshot_path(settings.data_dir))
    finally:
        stop_worker(worker)
    alerts = [orjson.loads(r.value) for r in deployment.read(settings.alerts_topic)]
    return Live(deployment, history, alerts)


def _rows(live: Live, sql: str) -> list[list[Any]]:
    return live.deployment.query(sql)


def test_views_equal_python_recomputation(live: Live) -> None:
    daily = expected_daily(live.history)
    _by_app, last_day = ov.active_days(daily)

    got_active = {(a, d): (dau, wau, mau) for a, d, dau, wau, mau, _s in _rows(
        live, "SELECT app_id, toString(day), dau, wau, mau, stickiness FROM vitals.active_users_daily")}
    assert got_active == ov.active_users(daily)

    got_ret = {(a, c, k): (n, r) for a, c, k, n, r in _rows(
        live, "SELECT app_id, toString(cohort_day), day_offset, cohort_size, retained FROM vitals.retention_cohorts")}
    expected_ret = ov.retention(daily)
    assert got_ret == expected_ret
    assert any(k == 7 for _a, _c, k in expected_ret) and any(r < n for n, r in expected_ret.values())

    got_ladder = {(a, d, rule): n for a, d, rule, n in _rows(
        live, "SELECT app_id, toString(day), rule, users FROM vitals.churn_ladder_daily")}
    expected_ladder = ov.churn_ladder(live.alerts, last_day)
    assert got_ladder == expected_ladder and expected_ladder

    got_recall = {(a, d): tuple(v) for a, d, *v in _rows(
        live, "SELECT app_id, toString(day), flagged, back_in_window, back_later, not_back "
              "FROM vitals.recall_outcomes")}
    expected_recall = ov.recall(live.alerts)
    assert got_recall == expected_recall
    assert sum(v[1] for v in expected_recall.values()) > 0  # some users did come back within 72 h

    got_fake = {(a, d, rule): (f, u) for a, d, rule, f, u in _rows(
        live, "SELECT app_id, toString(day), rule, flags, flagged_users FROM vitals.fake_flags_daily")}
    expected_fake = ov.fake_flags(live.alerts)
    assert got_fake == expected_fake
    assert {k[2] for k in expected_fake} == {"fake.hollow_activity", "fake.burst", "fake.device_farm"}

    got_share = {(a, d): (n, f) for a, d, n, f, _s in _rows(
        live, "SELECT app_id, toString(day), active_users, flagged_users, share FROM vitals.fake_activity_share")}
    assert got_share == ov.fake_share(daily, live.alerts)


def test_report_draws_every_chart_in_chromium(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    printed = live.cli("report", "--out", str(out)).strip()
    assert Path(printed) == out.resolve() and out.exists()
    html = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the report must not load anything"
    n_charts = html.count('class="chart"') + html.count('class="chart empty"')
    assert n_charts >= 11

    dom = browse(out, "--window-size=1300,1000", "--virtual-time-budget=5000", "--dump-dom").stdout.decode()
    drawn = re.findall(r'<svg class="chart" data-title="([^"]+)"[^>]*data-drawn="(\w+)"', dom)
    assert len(drawn) == n_charts, f"charts not all drawn as SVG: {drawn}"
    assert all(state == "ok" for _title, state in drawn), drawn
    assert f'data-charts="{n_charts}/{n_charts}"' in dom
    height = int(re.search(r'data-height="(\d+)"', dom).group(1))  # type: ignore[union-attr]

    for width in (1300, 700):
        problems, texts = layout_problems(out, tmp_path, width)
        assert texts > 100 and problems == [], f"{width}px wide: " + "\n".join(problems)

    shot = tmp_path / "report.png"
    browse(out, f"--window-size=1300,{min(height + 20, 8000)}", f"--screenshot={shot}")
    assert shot.stat().st_size > 50_000
    if os.environ.get("VITALS_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "report.png")


def _alert_ids(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(a["alert_id"], a["status"]) for a in records}


def test_replay_yields_the_same_alert_ids_and_aggregates(live: Live) -> None:
    d = live.deployment
    app_id = f"{d.settings.app_id}-replay"
    out = live.cli("replay", "--app-id", app_id, "--quiet", "--timeout", "600")
    info = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert info["app_id"] == app_id
    replayed = [orjson.loads(r.value) for r in d.read(info["alerts_topic"])]
    assert _alert_ids(replayed) == _alert_ids(live.alerts) and replayed
    assert len(replayed) == len(_alert_ids(replayed))  # no duplicates either
    # the replay's tables are in a database of its own (in its own embedded engine here)
    assert info["clickhouse_database"] == "vitals_replay" and info["clickhouse_dsn"].endswith("?database=vitals_replay")
    env = dict(d.env, VITALS_APP_ID=app_id, VITALS_DATA_DIR=info["data_dir"],
               VITALS_CLICKHOUSE_DSN=info["clickhouse_dsn"])
    sql = ("SELECT app_id, user_id, toString(day), events, toString(payment_amount) FROM {}.user_activity_daily "
           "FINAL ORDER BY 1, 2, 3")
    assert Deployment(env, d.base).query(sql.format("vitals_replay")) == d.query(sql.format("vitals"))
    # the event outcome counts too (sinks/outcomes.py), per app, day, outcome and reason, and the report
    # made after both workers stopped draws them from ClickHouse
    sql = "SELECT app_id, toString(day), outcome, reason, events FROM {}.event_outcomes ORDER BY 1, 2, 3, 4"
    live_counts = d.query(sql.format("vitals"))
    assert Deployment(env, d.base).query(sql.format("vitals_replay")) == live_counts
    assert {(o, r) for _a, _d, o, r, _n in live_counts} >= {("accepted", ""), ("duplicate", ""),
                                                             ("invalid", "not_json")}
    assert sum(n for *_, n in live_counts) == len(valid_events(live.history)) + sum(
        len(m.expect_invalid) for m in live.history.messages)
    report = d.base / "no-counters.html"  # no scrape of the worker's counters: ClickHouse has them
    live.cli("report", "--no-kafka", "--out", str(report), "--metrics", str(d.base / "none.prom"))
    html = report.read_text()
    assert "From ClickHouse (vitals.event_outcomes)" in html and "no event outcome counts" not in html
    accepted = sum(n for _a, _d, o, _r, n in live_counts if o == "accepted")
    assert f"<td>accepted</td><td>{accepted:,}</td>" in html


def test_inspect_shows_the_users_state_and_alerts(live: Live) -> None:
    by_alert: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in live.alerts:
        by_alert[a["alert_id"]].append(a)
    still_open = [v[0] for v in by_alert.values()
                  if v[0]["rule"] == "churn.no_login_72h" and {a["status"] for a in v} == {"open"}]
    assert still_open
    alert = min(still_open, key=lambda a: a["user_id"])
    user, app = alert["user_id"], alert["app_id"]
    doc = orjson.loads(live.cli("inspect", user, "--app", app, "--json"))
    assert doc["found"] and doc["user_id"] == user
    assert "churn.no_login_72h" in doc["open_episodes"]
    assert alert["alert_id"] in {a["alert_id"] for a in doc["last_alerts"]}
    daily = expected_daily(live.history)
    for day, counters in doc["days"].items():
        expected = daily[(app, user, day)]
        assert (counters["events"], counters["logins"], Decimal(str(counters["payment_amount"]))) == (
            expected[0], expected[1], expected[3])
    text = live.cli("inspect", user, "--app", app)
    assert "churn.no_login_72h since" in text and user in text


def test_rules_prints_effective_thresholds_per_app(live: Live, tmp_path: Path) -> None:
    config = tmp_path / "vitals.toml"
    config.write_text("[rules]\nburst_events_per_minute = 120\n\n[apps.shop.rules]\nburst_events_per_minute = 300\n")
    env = dict(live.deployment.env, VITALS_CONFIG=str(config))
    doc = orjson.loads(live.cli("rules", "--json", "--app", "default", env=env))
    assert doc["(default)"]["burst_events_per_minute"] == 120
    assert doc["shop"]["burst_events_per_minute"] == 300
    assert doc["default"]["burst_events_per_minute"] == 120
    assert doc["shop"]["no_login_short_h"] == 72
    text = live.cli("rules", env=env)
    assert re.search(r"burst_events_per_minute\s+120\s+300\*", text)
