"""The report's layout in headless Chromium, measured by the browser: every text of every chart
inside its SVG, no two tick labels and no two legend entries of a chart overlapping — on reports
with many days, long app and device ids, big numbers, and on a short one, at a wide and a narrow
window. (A report from a real worker's history gets the same check in test_report_replay.py.)"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from schemas.alerts import CHURN_RULES, FAKE_RULES
from streams.config.settings import RuleSettings
from streams.report.data import DeviceRow, ReportData
from streams.report.html import write_report
from streams.report.segment_data import SegmentData
from tests.browser import layout_problems


def report_data(days: int, apps: list[str], scale: int, seed: int = 1) -> ReportData:
    rng = random.Random(seed)
    day_list = [(date(2026, 1, 1) + timedelta(days=i)).isoformat() for i in range(days)]
    d = ReportData(generated_at="2026-12-05 10:00 UTC", source="chdb:///data/ch", apps=apps, days=day_list)
    d.totals = {"events": 1234 * scale * days, "users": 37 * scale, "payers": 3 * scale, "revenue": 98765.43 * scale}
    d.active = {x: (rng.randint(5, 9) * scale, rng.randint(10, 20) * scale, 37 * scale) for x in day_list}
    d.retention = {c: {k: (10 * scale, rng.randint(0, 10 * scale)) for k in range(1, min(15, days - i))}
                   for i, c in enumerate(day_list)}
    d.ladder = {r: {x: rng.randint(0, 4 * scale) for x in day_list} for r in CHURN_RULES}
    d.recall = {x: (4 * scale, rng.randint(0, scale), rng.randint(0, scale), scale) for x in day_list[3:]}
    d.fake = {r: {x: rng.randint(0, scale) for x in day_list} for r in FAKE_RULES}
    d.fake_share = {x: (10 * scale, rng.randint(0, 2 * scale)) for x in day_list}
    d.alerts_by_rule = {r: (rng.randint(0, 99 * scale), rng.randint(0, 9 * scale)) for r in CHURN_RULES + FAKE_RULES}
    d.devices = [DeviceRow(apps[i % len(apps)], f"device-{i:03d}-" + "f" * (i % 4 * 12), 60 - i, 6, i % 3 == 0)
                 for i in range(15)]
    d.dlq = Counter({"not_json": 3 * scale, "missing_field": scale, "bad_amount_or_a_much_longer_reason": 2})
    d.outcomes = {("accepted", ""): 9e5 * scale, ("duplicate", ""): 5e3 * scale, ("late", ""): 123.0,
                  ("invalid", "not_json"): 3.0 * scale, ("invalid", "bad_ts"): 1.0}
    d.segments = segment_data(day_list, scale, rng)
    return d


def segment_data(days: list[str], scale: int, rng: random.Random) -> SegmentData:
    """Every segment of every dimension over the days, a full migration matrix, conversions (the recent
    entry days pending), recall with and without a holdout, DAU and retention raw and fake-excluded."""
    from streams.engine.segments import LIFECYCLE_SEGMENTS, POTENTIAL_SEGMENTS, VALUE_SEGMENTS

    s = SegmentData()
    for dim, segs in (("lifecycle", LIFECYCLE_SEGMENTS), ("value", VALUE_SEGMENTS), ("potential", POTENTIAL_SEGMENTS)):
        s.sizes[dim] = {seg: {x: rng.randint(0, 9 * scale) for x in days} for seg in segs}
        s.migrations[dim] = {(a, b): (rng.randint(1, 99 * scale), rng.random() / 5) for a in segs for b in segs
                             if a != b}
    s.conversion = {x: (3 * scale, rng.randint(0, 3 * scale), scale if i > len(days) - 30 else 0)
                    for i, x in enumerate(days)}
    s.recall = {x: (4 * scale, rng.randint(0, 4 * scale), scale, rng.randint(0, scale), 3 * scale, scale, scale, 0)
                for x in days[1:]}
    s.clean = {x: (9 * scale, 8 * scale, 2 * scale, scale, 2 * scale, rng.randint(0, scale)) for x in days}
    return s


SEGMENT_CHARTS = ("Users per lifecycle segment", "Users per value segment", "Users per potential segment",
                  "High-potential conversion vs 38%", "72-hour recall rate: contacted vs holdout",
                  "DAU raw vs fake-excluded", "Next-day retention raw vs fake-excluded")


LONG_APPS = ["com.example.an-app-whose-bundle-id-is-long.ios", "com.example.an-app-whose-bundle-id-is-long.android",
             "web"]


@pytest.mark.parametrize("days,apps,scale", [
    (120, LONG_APPS, 25_000),  # four months, long app ids (the device list names them), millions
    (3, ["default"], 1),  # a first run's few days and small numbers
    (24, ["default", "shop"], 40),  # what the integration test's history looks like
])
def test_report_texts_stay_inside_and_apart(days: int, apps: list[str], scale: int, tmp_path: Path) -> None:
    out = write_report(report_data(days, apps, scale), RuleSettings(), tmp_path / "report.html")
    page = out.read_text()
    assert all(f'<svg class="chart" data-title="{t}"' in page for t in SEGMENT_CHARTS)
    assert page.count('<table class="matrix"') == 3
    for width in (1300, 700):  # two charts a row, and one
        problems, texts = layout_problems(out, tmp_path, width)
        assert texts > 50, "the check measured too few texts"
        assert problems == [], f"{width}px wide: " + "\n".join(problems)
