"""The report's segment sections (SPEC section 7): segment sizes over days, the migration matrix, the
high-potential conversion against practice's 38%, the 72-hour recall by holdout with the campaign's uplift,
and DAU / next-day retention raw and without fake-flagged users. A section whose data is empty (no segment
changes yet, no holdout) says so in a line instead of drawing an empty chart."""

from __future__ import annotations

from html import escape

from schemas.segments import DIMENSIONS
from sinks.segment_views import PRACTICE_HP_CONVERSION
from streams.engine.segments import LIFECYCLE_SEGMENTS, POTENTIAL_SEGMENTS, VALUE_SEGMENTS
from streams.report import charts
from streams.report.charts import section, short_day
from streams.report.segment_data import SegmentData

ORDER = dict(zip(DIMENSIONS, (LIFECYCLE_SEGMENTS, VALUE_SEGMENTS, POTENTIAL_SEGMENTS), strict=True))

CSS = """
table.matrix td{min-width:64px}
table.matrix td.cell{background:hsl(217,80%,var(--l))}
"""


def _ordered(dimension: str, names: list[str]) -> list[str]:
    known = ORDER.get(dimension, ())
    return [s for s in known if s in names] + sorted(s for s in names if s not in known)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def sizes_sections(s: SegmentData) -> str:
    out = []
    for dim in DIMENSIONS:
        by_seg = s.sizes.get(dim)
        if not by_seg:
            continue
        days = sorted({d for values in by_seg.values() for d in values})
        series = {seg: [float(by_seg[seg].get(d, 0)) for d in days] for seg in _ordered(dim, list(by_seg))}
        out.append(section(f"Segments: {dim}", charts.line_chart(f"Users per {dim} segment",
                                                                  [short_day(d) for d in days], series),
                            "Users in each segment at the end of the day (segment_sizes_daily)."))
    return "".join(out)


def matrix_section(s: SegmentData) -> str:
    tables = []
    for dim in DIMENSIONS:
        cells = s.migrations.get(dim)
        if not cells:
            continue
        rows = _ordered(dim, sorted({p for p, _ in cells}))
        cols = _ordered(dim, sorted({n for _, n in cells}))
        head = "".join(f"<th>{escape(c)}</th>" for c in cols)
        body = []
        for p in rows:
            tds = []
            for c in cols:
                moved, share = cells.get((p, c), (0, None))
                if not moved:
                    tds.append("<td></td>")
                    continue
                light = 95 - 35 * min(1.0, (share or 0.0) * 5)  # text stays readable
                tds.append(f'<td class="cell" style="--l:{light:.0f}%" title="{escape(p)} → {escape(c)}">'
                           f"{moved:,}<br><small>{_pct(share)}/day</small></td>")
            body.append(f"<tr><th>{escape(p)}</th>{''.join(tds)}</tr>")
        tables.append(f'<h3>{escape(dim)}</h3><table class="matrix" data-dimension="{escape(dim)}">'
                      f"<tr><th>from \\ to</th>{head}</tr>{''.join(body)}</table>")
    if not tables:
        return section("Segment migrations", "<p class=\"note\">no migrations yet</p>")
    return section("Segment migrations", "".join(tables),
                    "Users moved from the row's segment to the column's over the period, and the share of the "
                    "row's segment that moved, per day on average (segment_migrations).", wide=True)


def conversion_section(s: SegmentData) -> str:
    days = sorted(s.conversion)
    entered, converted, pending = (sum(s.conversion[d][i] for d in days) for i in range(3))
    if not entered:
        return section("High-potential conversion", '<p class="note">no user entered high_potential yet</p>')
    rates = {"converted within 30 days": [s.conversion[d][1] / s.conversion[d][0] for d in days]}
    chart = charts.line_chart("High-potential conversion vs 38%", [short_day(d) for d in days], rates, percent=True,
                              y_max=1.0, threshold=PRACTICE_HP_CONVERSION)
    return section("High-potential conversion", chart,
                    f"Per entry day; dashed: practice's {100 * PRACTICE_HP_CONVERSION:.0f}%. {entered:,} entered, "
                    f"{converted:,} ({_pct(converted / entered)}) converted, {pending:,} still within their 30 days "
                    "(high_potential_conversion).")


def recall_section(s: SegmentData) -> str:
    days = sorted(s.recall)
    o, r, oh, rh = (sum(s.recall[d][i] for d in days) for i in range(4))  # raw; [4:8] without fake-flagged
    if not o + oh:
        return section("72-hour recall by holdout", '<p class="note">no churn.no_login_72h episode yet</p>')
    series: dict[str, list[float | None]] = {
        "contacted": [s.recall[d][1] / s.recall[d][0] if s.recall[d][0] else None for d in days],
        "holdout": [s.recall[d][3] / s.recall[d][2] if s.recall[d][2] else None for d in days]}
    chart = charts.line_chart("72-hour recall rate: contacted vs holdout", [short_day(d) for d in days], series,
                              percent=True, y_max=1.0)
    return section("72-hour recall by holdout", chart,
                    "Episodes opened per day and the share whose user logged in again within 72 h: "
                    + _recall_figures(o, r, oh, rh) + "; without fake-flagged users: "
                    + _recall_figures(*(sum(s.recall[d][i] for d in days if len(s.recall[d]) > 4)
                                        for i in range(4, 8))) + " (recall_uplift).")


def _recall_figures(o: int, r: int, oh: int, rh: int) -> str:
    rate, rate_h = (r / o if o else None), (rh / oh if oh else None)
    uplift = f"{100 * (rate - rate_h):+.1f} points" if rate is not None and rate_h is not None else "n/a (no holdout)"
    return f"contacted {r:,}/{o:,} ({_pct(rate)}), holdout {rh:,}/{oh:,} ({_pct(rate_h)}), uplift {uplift}"


def clean_sections(s: SegmentData) -> str:
    days = sorted(s.clean)
    if not days:
        return ""
    labels = [short_day(d) for d in days]
    dau = {"DAU": [float(s.clean[d][0]) for d in days],
           "DAU without fake-flagged": [float(s.clean[d][1]) for d in days]}
    retention: dict[str, list[float | None]] = {
        "next-day": [s.clean[d][3] / s.clean[d][2] if s.clean[d][2] else None for d in days],
        "next-day without fake-flagged": [s.clean[d][5] / s.clean[d][4] if s.clean[d][4] else None for d in days]}
    note = "Users flagged by any fake.* rule in the 30 days ending on the day left out (active_users_clean)."
    return section("DAU: raw and without fake-flagged users", charts.line_chart(
        "DAU raw vs fake-excluded", labels, dau), note) + section(
        "Next-day retention: raw and without fake-flagged users", charts.line_chart(
            "Next-day retention raw vs fake-excluded", labels, retention, percent=True, y_max=1.0), note)


def segment_sections(s: SegmentData) -> str:
    """Every segment section, or nothing when no segment view has data (a database before segments)."""
    if not (s.sizes or s.migrations or s.conversion or s.recall or s.clean):
        return ""
    return (sizes_sections(s) + matrix_section(s) + conversion_section(s) + recall_section(s)
            + clean_sections(s))
