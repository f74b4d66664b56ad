"""Inline SVG charts for the offline HTML report: pure functions from numbers to markup.

Every chart is an ``<svg class="chart">``; each drawn data mark carries ``class="mark"`` so a
browser check can tell a chart that drew something from an empty one. An empty data set gives a
``<div class="chart empty">`` saying so instead of an empty frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
W, H = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 44
TICK, LEGEND = 10, 11  # font sizes (px) of .tick and .legend in html.CSS
ROW = 16  # a legend row
NARROW, WIDE = frozenset("ijlt.,:;'|!()[] -fr1I"), frozenset("mwMW@%")


def text_width(text: str, size: float) -> float:
    """A generous estimate of ``text``'s width in a sans-serif font of ``size`` px (measured
    fonts stay below it: DejaVu Sans averages 0.55-0.6 em; the browser test measures)."""
    return size * sum(0.45 if c in NARROW else 1.0 if c in WIDE else 0.82 if c.isupper() else 0.66 for c in text)


def fit_text(text: str, size: float, room: float) -> str:
    """``text``, cut in the middle with an ellipsis to fit ``room`` px (both ends tell ids apart:
    a device id's start, the app id at its end)."""
    if text_width(text, size) <= room:
        return text
    head, tail = text[: len(text) // 2], text[len(text) // 2 :]
    while (head or tail) and text_width(head + "…" + tail, size) > room:
        if len(head) >= len(tail):
            head = head[:-1]
        else:
            tail = tail[1:]
    return head + "…" + tail


def _label(x: float, y: float, text: str, cls: str, size: float, room: float, anchor: str = "start") -> str:
    """A text element cut to ``room`` px; the whole text as its tooltip when cut."""
    shown = fit_text(text, size, room)
    tip = f"<title>{escape(text)}</title>" if shown != text else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}">{tip}{escape(shown)}</text>'


def _fmt(v: float, percent: bool = False) -> str:
    if percent:
        return f"{100 * v:.0f}%" if round(100 * v, 1) == round(100 * v) else f"{100 * v:.1f}%"
    if abs(v) >= 1_000_000_000:
        return f"{v / 1_000_000_000:.1f}B"
    if abs(v) >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:.2f}".rstrip("0").rstrip(".")  # 37.5, 0.25


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(v))) / 10 if v >= 1 else 1.0
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * magnitude:
            return step * magnitude
    return v


def empty(title: str, why: str) -> str:
    return f'<div class="chart empty" data-title="{escape(title)}">{escape(why)}</div>'


def _frame(title: str, body: list[str], width: int = W, height: int = H) -> str:
    return (
        f'<svg class="chart" data-title="{escape(title)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _y_ticks(y_max: float, percent: bool) -> list[str]:
    return [_fmt(y_max * i / 4, percent) for i in range(5)]


def _left(y_max: float, percent: bool) -> float:
    """The plot's left edge: room for the widest y tick label."""
    return max(LEFT, max(text_width(t, TICK) for t in _y_ticks(y_max, percent)) + 12)


def _y_axis(y_max: float, plot_h: float, percent: bool, left: float, right: float) -> list[str]:
    out = []
    for i, text in enumerate(_y_ticks(y_max, percent)):
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(text)}</text>')
    return out


def _x_room(labels: Sequence[str]) -> float:
    """The widest x label with a gap: the least distance between two labels shown."""
    return max((text_width(lab, TICK) for lab in labels), default=0.0) + 8


def _x_labels(labels: Sequence[str], xs: Sequence[float], y: float) -> list[str]:
    """Labels thinned to every k-th so that none overlaps the next; the last (the latest day) always shown."""
    if not labels:
        return []
    spacing = (xs[-1] - xs[0]) / (len(xs) - 1) if len(xs) > 1 else 1.0
    step = max(1, math.ceil(_x_room(labels) / spacing))
    shown = range(len(labels) - 1, -1, -step)
    return [f'<text x="{xs[i]:.1f}" y="{y:.1f}" text-anchor="middle" class="tick">{escape(labels[i])}</text>'
            for i in sorted(shown)]


def _legend_rows(names: Sequence[str], left: float, width: float) -> list[list[tuple[str, float]]]:
    """The legend flowed into rows within ``left``..``width - RIGHT``: (name, x) per entry."""
    rows: list[list[tuple[str, float]]] = [[]]
    x, room = left, width - RIGHT - left
    for name in names:
        item = 14 + min(text_width(name, LEGEND), room - 14)
        if rows[-1] and x + item > width - RIGHT:
            rows.append([])
            x = left
        rows[-1].append((name, x))
        x += item + 14
    return rows if rows[0] else []


def _legend(rows: list[list[tuple[str, float]]], top: float, width: float) -> list[str]:
    out, k = [], 0
    for r, row in enumerate(rows):
        y = top + r * ROW
        for name, x in row:
            color = PALETTE[k % len(PALETTE)]
            k += 1
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" fill="{color}" class="legend-key"/>')
            out.append(_label(x + 14, y + 9, name, "legend", LEGEND, width - RIGHT - x - 14))
    return out


class _Layout:
    """Where a chart with a y axis, day labels under it and a legend below puts things."""

    def __init__(self, labels: Sequence[str], names: Sequence[str], y_max: float, percent: bool) -> None:
        self.left = _left(y_max, percent)
        self.right = W - max(RIGHT, _x_room(labels[-1:]) / 2)  # the last label centred on the last point
        self.plot_w, self.plot_h = self.right - self.left, H - TOP - BOTTOM
        self.legend = _legend_rows(names, self.left, W)
        self.height = H + ROW * max(0, len(self.legend) - 1)
        self.axis_bottom = TOP + self.plot_h

    def decorations(self, labels: Sequence[str], xs: Sequence[float]) -> list[str]:
        return _x_labels(labels, xs, self.axis_bottom + 16) + _legend(self.legend, self.axis_bottom + 26, W)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    percent: bool = False,
    threshold: float | None = None,
    y_max: float | None = None,
) -> str:
    """One line per series over shared x labels (days); ``None`` values leave a gap.
    ``threshold`` draws a dashed rule."""
    known = [v for values in series.values() for v in values if v is not None]
    if not labels or not known:
        return empty(title, "no data")
    top = y_max if y_max is not None else _nice_max(max(known))
    lay = _Layout(labels, list(series), top, percent)
    plot_w, plot_h = lay.plot_w, lay.plot_h
    n = len(labels)
    xs = [lay.left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2) for i in range(n)]
    body = _y_axis(top, plot_h, percent, lay.left, lay.right)
    for k, (_name, values) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for x, v in zip(xs, values, strict=True):
            if v is None:
                runs.append([])
            else:
                runs[-1].append((x, TOP + plot_h - plot_h * min(v, top) / top))
        for run in runs:
            if len(run) == 1:
                body.append(f'<circle class="mark" cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="3" fill="{color}"/>')
            elif run:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                body.append(f'<polyline class="mark" points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
    if threshold is not None:
        y = TOP + plot_h - plot_h * min(threshold, top) / top
        body.append(f'<line x1="{lay.left:.1f}" x2="{lay.right:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="threshold"/>')
        body.append(f'<text x="{lay.right:.1f}" y="{max(y - 4, TOP):.1f}" text-anchor="end" '
                    f'class="threshold-label">{_fmt(threshold, percent)}</text>')
    body += lay.decorations(labels, xs)
    return _frame(title, body, height=lay.height)


def bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], *,
              percent: bool = False) -> str:
    """Stacked bars per x label, one colour per series."""
    totals = [sum(v[i] for v in series.values()) for i in range(len(labels))]
    if not labels or not series or max(totals, default=0) <= 0:
        return empty(title, "no data")
    top = _nice_max(max(totals))
    lay = _Layout(labels, list(series), top, percent)
    lay.right = W - RIGHT  # the bars are centred in their slots: the last label has half a slot
    lay.plot_w = lay.right - lay.left
    plot_w, plot_h = lay.plot_w, lay.plot_h
    slot = plot_w / len(labels)
    bar_w = max(1.0, slot * 0.75)
    body = _y_axis(top, plot_h, percent, lay.left, lay.right)
    xs = [lay.left + slot * (i + 0.5) for i in range(len(labels))]
    for i, x in enumerate(xs):
        y: float = TOP + plot_h
        for k, values in enumerate(series.values()):
            h = plot_h * values[i] / top
            if h <= 0:
                continue
            y -= h
            body.append(f'<rect class="mark" x="{x - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                        f'height="{h:.1f}" fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(labels[i])}: '
                        f"{_fmt(values[i], percent)}</title></rect>")
    body += lay.decorations(labels, xs)
    return _frame(title, body, height=lay.height)


def hbar_chart(title: str, items: Sequence[tuple[str, float]], *, highlight: set[str] | None = None) -> str:
    """Horizontal bars, largest first (top-N lists); ``highlight`` names get the alert colour."""
    if not items:
        return empty(title, "no data")
    highlight = highlight or set()
    row = 22
    # names take what they need up to 45% of the width (longer ones are cut, whole in their tooltip)
    label_w = min(W * 0.45, max(text_width(name, TICK) for name, _ in items) + 12)
    height = TOP + row * len(items) + 24
    top = max(v for _, v in items) or 1
    plot_w = W - label_w - RIGHT - max(text_width(_fmt(v), TICK) for _, v in items) - 8
    body = []
    for i, (name, value) in enumerate(items):
        y = TOP + i * row
        w = max(1.0, plot_w * value / top)
        color = PALETTE[3] if name in highlight else PALETTE[0]
        body.append(_label(label_w - 6, y + 15, name, "tick", TICK, label_w - 8, anchor="end"))
        body.append(f'<rect class="mark" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>')
        body.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" class="tick">{_fmt(value)}</text>')
    return _frame(title, body, height=height)


def heatmap(
    title: str,
    rows: Sequence[str],
    cols: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    threshold: float,
    marked_cols: Sequence[int] = (),
) -> str:
    """Shares 0..1 as a blue scale; cells below ``threshold`` get a red outline, ``marked_cols``
    (column indexes) a header underline. ``None`` cells (not observable yet) stay blank."""
    if not rows or not cols:
        return empty(title, "no data")
    cell_w = max(14.0, min(34.0, (W - 90) / len(cols)))
    cell_h = max(10.0, min(22.0, 420 / len(rows)))
    left, top = 84, 30
    width = int(left + cell_w * len(cols) + 12)
    height = int(top + cell_h * len(rows) + 40)
    body = []
    for j, col in enumerate(cols):
        x = left + cell_w * (j + 0.5)
        cls = "tick strong" if j in marked_cols else "tick"
        body.append(f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle" class="{cls}">{escape(col)}</text>')
        if j in marked_cols:
            body.append(f'<line x1="{x - cell_w / 2 + 1:.1f}" x2="{x + cell_w / 2 - 1:.1f}" y1="{top - 3}" '
                        f'y2="{top - 3}" stroke="#111" stroke-width="2"/>')
    every = math.ceil(14 / cell_h)  # row labels at least 14 px apart: every k-th, the last always
    for i, name in enumerate(rows):
        y = top + cell_h * i
        if (len(rows) - 1 - i) % every == 0:
            body.append(f'<text x="{left - 6}" y="{y + cell_h * 0.7:.1f}" text-anchor="end" class="tick">'
                        f"{escape(name)}</text>")
        for j, v in enumerate(values[i]):
            if v is None:
                continue
            x = left + cell_w * j
            light = 95 - 60 * max(0.0, min(1.0, v))
            stroke = ' stroke="#dc2626" stroke-width="1.5"' if v < threshold else ""
            body.append(f'<rect class="mark" x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2:.1f}" '
                        f'height="{cell_h - 2:.1f}" fill="hsl(217,80%,{light:.0f}%)"{stroke}>'
                        f"<title>{escape(name)} {escape(cols[j])}: {100 * v:.1f}%</title></rect>")
    y = height - 22
    body.append(f'<rect x="{left}" y="{y}" width="12" height="12" fill="white" stroke="#dc2626" stroke-width="1.5"/>')
    body.append(f'<text x="{left + 18}" y="{y + 10}" class="legend">below {100 * threshold:.0f}% '
                f"(SPEC retention threshold)</text>")
    return _frame(title, body, width=max(width, 360), height=height)


def section(title: str, body: str, note: str = "", wide: bool = False) -> str:
    """One report section: its title, its body (a chart or a table) and a note under it."""
    cls = ' class="wide"' if wide else ""
    extra = f'<p class="note">{escape(note)}</p>' if note else ""
    return f"<section{cls}><h2>{escape(title)}</h2>{body}{extra}</section>"


def short_day(day: str) -> str:
    """A day's label on an axis: ``MM-DD`` of ``YYYY-MM-DD``."""
    return day[5:] if len(day) == 10 else day
