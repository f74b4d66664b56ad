"""``vitals report``: one self-contained HTML file (inline SVG and CSS, no network) from
:class:`streams.report.data.ReportData`.

A small inline script marks each chart ``data-drawn="ok"`` when it has drawn marks with a
non-empty box, and the body ``data-charts="ok/total"``; the browser test reads these.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from schemas.alerts import CHURN_RULES, FAKE_RULES
from streams.config.settings import RuleSettings
from streams.report import charts, segment_html
from streams.report.charts import section, short_day
from streams.report.data import ReportData

HEATMAP_OFFSETS = 14

CSS = """
body{font:14px/1.4 system-ui,"DejaVu Sans",sans-serif;margin:0;background:#f5f6f8;color:#111}
header{background:#111827;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#cbd5e1}
.kpis{display:flex;gap:28px;margin-top:10px}
.kpis b{display:block;font-size:20px}
main{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px;padding:16px 28px;max-width:1260px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
section.wide{grid-column:1/-1}
@media (max-width:1000px){main{grid-template-columns:minmax(0,1fr)}}
h2{font-size:16px;margin:0 0 6px}
p.note{color:#555;font-size:12px;margin:4px 0}
svg.chart{max-width:100%;height:auto}
.grid{stroke:#e5e7eb}
.tick{font-size:10px;fill:#444}
.strong{font-weight:700;fill:#111}
.legend{font-size:11px;fill:#222}
.threshold{stroke:#dc2626;stroke-dasharray:5 4;stroke-width:1.5}
.threshold-label{font-size:10px;fill:#dc2626}
.chart.empty{padding:40px;color:#888;text-align:center;border:1px dashed #ccc}
table{border-collapse:collapse;font-size:12px}
td,th{padding:2px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
ul.notes{color:#92400e}
"""

CHECK_SCRIPT = """
(function(){
  var all = document.querySelectorAll('.chart'), ok = 0;
  for (var i = 0; i < all.length; i++) {
    var c = all[i], drawn = 0, marks = c.querySelectorAll('.mark');
    for (var j = 0; j < marks.length; j++) { var b = marks[j].getBBox(); if (b.width > 0 || b.height > 0) drawn++; }
    c.setAttribute('data-drawn', drawn > 0 ? 'ok' : 'empty');
    c.setAttribute('data-marks', String(drawn));
    if (drawn > 0) ok++;
  }
  document.body.setAttribute('data-charts', ok + '/' + all.length);
  document.body.setAttribute('data-height', String(document.documentElement.scrollHeight));
})();
"""


def active_section(d: ReportData) -> str:
    labels = [short_day(x) for x in d.days]
    series = {name: [d.active[x][i] for x in d.days] for i, name in enumerate(("DAU", "WAU", "MAU"))}
    stick = {"DAU/MAU": [d.active[x][0] / d.active[x][2] if d.active[x][2] else 0.0 for x in d.days]}
    return section(
        "Active users", charts.line_chart("DAU, WAU, MAU", labels, series),
        "WAU: distinct users of the 7 days ending on the day; MAU: of the 30 days (partial at the start).",
    ) + section("Stickiness", charts.line_chart("Stickiness DAU/MAU", labels, stick, percent=True, y_max=1.0),
                 "DAU divided by MAU, per day.")


def retention_section(d: ReportData, threshold: float) -> str:
    cohorts = sorted(d.retention)
    offsets = list(range(1, HEATMAP_OFFSETS + 1))
    values: list[list[float | None]] = []
    for c in cohorts:
        row: list[float | None] = []
        for k in offsets:
            cell = d.retention[c].get(k)
            row.append(cell[1] / cell[0] if cell and cell[0] else None)
        values.append(row)
    heat = charts.heatmap("Retention by cohort day", [short_day(c) for c in cohorts], [f"D{k}" for k in offsets],
                          values, threshold=threshold, marked_cols=(0, 6))
    labels = [short_day(c) for c in cohorts]
    lines: dict[str, list[float | None]] = {}
    for k, name in ((1, "next-day"), (7, "7-day")):
        lines[name] = [d.retention[c][k][1] / d.retention[c][k][0] if k in d.retention[c] else None for c in cohorts]
    trend = charts.line_chart("Next-day and 7-day retention", labels, lines, percent=True, y_max=1.0,
                              threshold=threshold)
    note = (f"Rows: users first seen that day; columns: share active N days later (D1 = next-day, D7 = 7-day, "
            f"underlined). Red outline: below the {100 * threshold:.0f}% threshold. Blank: not observed yet.")
    return section("Retention cohorts", heat, note) + section(
        "Next-day and 7-day retention", trend, "By cohort day; a cohort younger than the offset has no point yet.")


def churn_section(d: ReportData) -> str:
    labels = [short_day(x) for x in d.days]
    series = {f"L{i} {r.split('.')[1]}": [d.ladder.get(r, {}).get(x, 0) for x in d.days]
              for i, r in enumerate(CHURN_RULES)}
    ladder = charts.line_chart("Churn ladder: users per level", labels, series)
    rdays = sorted(d.recall)
    back = {
        "back within 72 h": [d.recall[x][1] for x in rdays],
        "back later": [d.recall[x][2] for x in rdays],
        "not back": [d.recall[x][3] for x in rdays],
    }
    totals = [sum(d.recall[x][i] for x in rdays) for i in range(4)]
    share = f"{100 * totals[1] / totals[0]:.1f}%" if totals[0] else "n/a"
    recall = charts.bar_chart("Recall outcomes of churn.no_login_72h", [short_day(x) for x in rdays], back)
    return section("Churn ladder", ladder, "Users whose episode of each level was open at the end of the day.") + (
        section(
            "Golden 72 hours: recall outcomes",
            recall,
            f"Users flagged by churn.no_login_72h per flag day: {totals[0]:,} flagged, {totals[1]:,} ({share}) "
            f"logged in again within 72 h, {totals[2]:,} later, {totals[3]:,} not (yet).",
        )
    )


def fake_section(d: ReportData) -> str:
    labels = [short_day(x) for x in d.days]
    series = {r: [d.fake.get(r, {}).get(x, 0) for x in d.days] for r in FAKE_RULES}
    flags = charts.bar_chart("Fake-activity flags by rule", labels, series)
    share = {"flagged / active": [d.fake_share[x][1] / d.fake_share[x][0] if x in d.fake_share and
                                  d.fake_share[x][0] else 0.0 for x in d.days]}
    top = max(share["flagged / active"], default=0.0)
    share_chart = charts.line_chart("Fake-activity share", labels, share, percent=True,
                                    y_max=charts._nice_max(top * 100) / 100 if top > 0 else 1.0)
    return section("Fake-activity flags by rule", flags,
                    "Distinct users named by alerts whose episode starts that day.") + section(
        "Fake-activity share", share_chart, "Users flagged that day by any fake-activity rule / active users.")


def devices_section(d: ReportData) -> str:
    items = [(f"{r.device_id}" + (f" ({r.app_id})" if len(d.apps) > 1 else ""), float(r.distinct_users))
             for r in d.devices]
    flagged = {name for (name, _), r in zip(items, d.devices, strict=True) if r.flagged}
    chart = charts.hbar_chart("Top devices by distinct users", items, highlight=flagged)
    return section("Top devices by distinct users", chart,
                    f"Red: flagged by fake.device_farm. Source: {d.devices_source or 'none'}.")


def quality_section(d: ReportData) -> str:
    dlq = charts.hbar_chart("Dead letters by reason", sorted((d.dlq or {}).items(), key=lambda t: (-t[1], t[0]))) \
        if d.dlq else charts.empty("Dead letters by reason", "no dead letters" if d.dlq is not None else "not read")
    parts = [section("Data quality: dead letters by reason", dlq,
                      f"From the dead-letter topic: {sum((d.dlq or {}).values()):,} records.")]
    if d.outcomes is not None:
        by_outcome: dict[str, float] = {}
        for (outcome, reason), v in d.outcomes.items():
            label = outcome if not reason or outcome == "accepted" else f"{outcome}: {reason}"
            by_outcome[label] = by_outcome.get(label, 0.0) + v
        items = sorted(((k, v) for k, v in by_outcome.items() if v > 0), key=lambda t: (-t[1], t[0]))
        rows = "".join(f"<tr><td>{escape(k)}</td><td>{int(v):,}</td></tr>" for k, v in items)
        table = f"<table><tr><th>outcome</th><th>events</th></tr>{rows}</table>"
        body = charts.hbar_chart("Events by outcome", items) + table
        parts.append(section("Data quality: duplicates, late and invalid events", body,
                              f"From {d.outcomes_source or 'the worker'} "
                              "(late events are counted in the aggregates too)."))
    else:
        parts.append(section("Data quality: duplicates, late and invalid events",
                              charts.empty("Events by outcome", "no event outcome counts available")))
    return "".join(parts)


def alerts_table(d: ReportData) -> str:
    rows = "".join(
        f"<tr><td>{escape(r)}</td><td>{o:,}</td><td>{s:,}</td></tr>" for r, (o, s) in d.alerts_by_rule.items()
    )
    return f"<table><tr><th>rule</th><th>opened</th><th>resolved</th></tr>{rows}</table>"


def render(d: ReportData, rules: RuleSettings) -> str:
    span = f"{d.days[0]} to {d.days[-1]}" if d.days else "no data"
    kpis = "".join(f"<div><b>{v}</b>{escape(k)}</div>" for k, v in (
        ("events", f"{d.totals.get('events', 0):,}"), ("users", f"{d.totals.get('users', 0):,}"),
        ("payers", f"{d.totals.get('payers', 0):,}"), ("revenue", f"{d.totals.get('revenue', 0.0):,.2f}"),
        ("days", f"{len(d.days)}")))
    notes = "".join(f"<li>{escape(n)}</li>" for n in d.notes)
    body = (
        active_section(d)
        + retention_section(d, rules.retention_alert_below)
        + churn_section(d)
        + fake_section(d)
        + devices_section(d)
        + segment_html.segment_sections(d.segments)
        + quality_section(d)
        + section("Alerts by rule", alerts_table(d), f"Episodes opened and resolved ({d.database}.alerts FINAL).")
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>vitals report</title>'
        f"<style>{CSS}{segment_html.CSS}</style></head><body><header><h1>vitals report</h1>"
        f"<p>{escape(span)} · apps: {escape(', '.join(d.apps) or 'none')} · ClickHouse {escape(d.source)} · "
        f"generated {escape(d.generated_at)}</p><div class=\"kpis\">{kpis}</div></header>"
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + f"<main>{body}</main><script>{CHECK_SCRIPT}</script></body></html>"
    )


def write_report(d: ReportData, rules: RuleSettings, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(d, rules), encoding="utf-8")
    return out
