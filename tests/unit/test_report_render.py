"""The report's charts and HTML, from numbers (no I/O): every chart has marks, gaps and empty data
are handled, text is escaped, nothing is loaded from the network; thresholds table per app."""

from __future__ import annotations

import itertools
import re
from collections import Counter

from streams.config.settings import RuleSettings, load_settings
from streams.report import charts
from streams.report.data import DeviceRow, ReportData
from streams.report.html import render
from streams.report.thresholds import DEFAULT, effective, table

DAYS = [f"2026-01-{d:02d}" for d in range(1, 11)]


def marks(svg: str) -> int:
    return len(re.findall(r'class="mark"', svg))


def test_line_chart_draws_a_line_per_run_and_a_threshold() -> None:
    svg = charts.line_chart("t", ["a", "b", "c", "d"], {"x": [0.1, None, 0.3, 0.4], "y": [1, 2, 3, 4]},
                            percent=True, threshold=0.18)
    assert svg.startswith('<svg class="chart"')
    assert marks(svg) == 3  # x: a point, then a line; y: one line
    assert 'class="threshold"' in svg and "18%" in svg


def test_empty_data_says_so() -> None:
    assert 'class="chart empty"' in charts.line_chart("t", [], {})
    assert 'class="chart empty"' in charts.line_chart("t", ["a"], {"x": [None]})
    assert 'class="chart empty"' in charts.bar_chart("t", ["a"], {"x": [0]})
    assert 'class="chart empty"' in charts.hbar_chart("t", [])


def test_bar_heatmap_and_hbar_marks_and_escaping() -> None:
    assert marks(charts.bar_chart("t", ["a", "b"], {"x": [1, 0], "y": [2, 3]})) == 3
    heat = charts.heatmap("h", ["c1", "c2"], ["D1", "D2"], [[0.5, 0.1], [0.9, None]], threshold=0.18,
                          marked_cols=(0,))
    assert marks(heat) == 3 and heat.count('stroke="#dc2626"') == 2  # the low cell and the legend
    bars = charts.hbar_chart("t", [("<dev>", 3.0), ("b", 1.0)], highlight={"<dev>"})
    assert "&lt;dev&gt;" in bars and "<dev>" not in bars and marks(bars) == 2


def sample() -> ReportData:
    d = ReportData(generated_at="now", source="chdb:///x", apps=["default"], days=DAYS)
    d.totals = {"events": 100, "users": 10, "payers": 1, "revenue": 5.0}
    d.active = {x: (5 + i % 3, 8, 10) for i, x in enumerate(DAYS)}
    d.retention = {c: {k: (10, 10 - k) for k in range(len(DAYS) - i)} for i, c in enumerate(DAYS)}
    d.ladder = {"churn.no_login_72h": {x: i for i, x in enumerate(DAYS)}}
    d.recall = {x: (3, 2, 0, 1) for x in DAYS[3:]}
    d.fake = {"fake.burst": {DAYS[2]: 1}, "fake.hollow_activity": {x: 2 for x in DAYS}}
    d.fake_share = {x: (6, 2) for x in DAYS}
    d.alerts_by_rule = {"fake.burst": (1, 0)}
    d.devices = [DeviceRow("default", "farm-1", 6, 6, True), DeviceRow("default", "d-u1", 1, 1, False)]
    d.dlq = Counter({"not_json": 2})
    d.outcomes = {("accepted", ""): 90.0, ("duplicate", ""): 5.0, ("late", ""): 3.0, ("invalid", "not_json"): 2.0}
    return d


def test_report_has_every_chart_drawn_and_loads_nothing() -> None:
    html = render(sample(), RuleSettings())
    svgs = re.findall(r'<svg class="chart".*?</svg>', html, flags=re.S)
    assert len(svgs) == 11 and all(marks(s) > 0 for s in svgs)
    assert 'class="chart empty"' not in html
    assert not re.search(r"""(src|href)\s*=""", html)
    assert "data-drawn" in html  # the inline check script


def test_missing_sources_render_as_notes_and_empty_panels() -> None:
    d = sample()
    d.dlq, d.outcomes, d.notes = None, None, ["dead-letter topic x not readable (KafkaError)"]
    html = render(d, RuleSettings())
    assert "not readable (KafkaError)" in html and html.count('class="chart empty"') == 2


def test_thresholds_per_app() -> None:
    settings = load_settings(env={}, apps={"shop": {"rules": {"burst_events_per_minute": 300}}})
    columns = effective(settings, ["web"])
    assert list(columns) == [DEFAULT, "shop", "web"]
    assert columns["shop"]["burst_events_per_minute"] == 300 and columns["web"]["burst_events_per_minute"] == 100
    text = table(columns)
    assert re.search(r"burst_events_per_minute\s+100\s+300\*\s+100$", text, flags=re.M)
    assert text.endswith("* overridden for this app")


def test_day_labels_are_thinned_apart_and_end_on_the_last_day() -> None:
    days = [f"{m:02d}-{d:02d}" for m in range(1, 5) for d in range(1, 31)]
    svg = charts.line_chart("t", days, {"x": list(range(len(days)))})
    shown = re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="middle" class="tick">([^<]+)</text>', svg)
    xs = [float(x) for x, _ in shown]
    assert shown[-1][1] == days[-1] and 5 <= len(shown) < len(days)
    assert min(b - a for a, b in itertools.pairwise(xs)) >= charts.text_width("04-30", charts.TICK) + 8
    assert xs[-1] + charts.text_width("04-30", charts.TICK) / 2 <= charts.W


def test_a_long_legend_wraps_inside_the_chart() -> None:
    names = [f"L{i} a_rather_long_rule_name_{i}" for i in range(6)]
    rows = charts._legend_rows(names, charts.LEFT, charts.W)
    assert len(rows) > 1 and [n for row in rows for n, _ in row] == names
    for row in rows:
        for name, x in row:
            assert x + 14 + charts.text_width(name, charts.LEGEND) <= charts.W - charts.RIGHT
    svg = charts.line_chart("t", ["a", "b"], {n: [1, 2] for n in names})
    assert f'height="{charts.H + charts.ROW * (len(rows) - 1)}"' in svg


def test_long_names_are_cut_in_the_middle_and_kept_whole_in_a_tooltip() -> None:
    name = "device-0123456789abcdef (com.example.an-app-whose-bundle-id-is-long.android)"
    cut = charts.fit_text(name, charts.TICK, 200)
    assert charts.text_width(cut, charts.TICK) <= 200 and "…" in cut
    assert cut.startswith("device-01") and cut.endswith("android)")
    bars = charts.hbar_chart("t", [(name, 5.0), ("short", 1.0)])
    assert f"<title>{name}</title>" in bars and ">short</text>" in bars


def test_segment_sections_draw_every_chart_and_a_database_without_segments_shows_none() -> None:
    from streams.report.segment_data import SegmentData
    from streams.report.segment_html import segment_sections

    assert segment_sections(SegmentData()) == ""
    s = SegmentData()
    s.sizes = {"lifecycle": {"new": {DAYS[0]: 3, DAYS[1]: 1}, "returning": {DAYS[1]: 2}}}
    s.migrations = {"lifecycle": {("new", "returning"): (2, 0.5)}}
    s.conversion = {DAYS[0]: (4, 1, 0), DAYS[1]: (2, 0, 2)}
    s.recall = {DAYS[0]: (4, 2, 2, 0, 3, 2, 2, 0), DAYS[1]: (0, 0, 1, 1, 0, 0, 0, 0)}
    s.clean = {DAYS[0]: (5, 4, 0, 0, 0, 0), DAYS[1]: (6, 5, 3, 2, 2, 1)}
    html = segment_sections(s)
    svgs = re.findall(r'<svg class="chart".*?</svg>', html, flags=re.S)
    assert len(svgs) == 5 and all(marks(svg) > 0 for svg in svgs) and 'class="chart empty"' not in html
    assert "2<br><small>50.0%/day</small>" in html and "0.38" not in html and ">38%<" in html
    assert "contacted 2/4 (50.0%), holdout 1/3 (33.3%), uplift +16.7 points; without fake-flagged users: " \
           "contacted 2/3 (66.7%), holdout 0/2 (0.0%), uplift +66.7 points" in html
    d = sample()
    d.segments = s
    assert len(re.findall(r'<svg class="chart"', render(d, RuleSettings()))) == 11 + 5
