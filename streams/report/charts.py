"""Inline SVG charts for the offline HTML report: pure functions from numbers to markup.

Every chart is an ``<svg class="chart">``; each drawn data mark carries ``class="mark"`` so a
browser check can tell a chart that drew something from an empty one. An empty data set gives a
``<div class="chart empty">`` saying so instead of an empty frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
W, H = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 44


def _fmt(v: float, percent: bool = False) -> str:
    if percent:
        return f"{100 * v:.0f}%" if round(100 * v, 1) == round(100 * v) else f"{100 * v:.1f}%"
    if abs(v) >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:.2f}"


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


def _y_axis(y_max: float, plot_h: float, percent: bool, width: int = W) -> list[str]:
    out = []
    for i in range(5):
        v = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(v, percent)}</text>')
    return out


def _x_labels(labels: Sequence[str], xs: Sequence[float], height: int = H) -> list[str]:
    step = max(1, len(labels) // 8)
    return [
        f'<text x="{x:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle" class="tick">{escape(lab)}</text>'
        for i, (lab, x) in enumerate(zip(labels, xs, strict=True))
        if i % step == 0 or i == len(labels) - 1
    ]


def _legend(names: Sequence[str], height: int = H) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{height - 7}" class="legend">{escape(name)}</text>')
        x += 22 + 7 * len(name)
    return out


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
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    n = len(labels)
    xs = [LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2) for i in range(n)]
    body = _y_axis(top, plot_h, percent)
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
        body.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="threshold"/>')
        body.append(f'<text x="{W - RIGHT}" y="{y - 4:.1f}" text-anchor="end" class="threshold-label">'
                    f"{_fmt(threshold, percent)}</text>")
    body += _x_labels(labels, xs) + _legend(list(series))
    return _frame(title, body)


def bar_chart(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], *,
              percent: bool = False) -> str:
    """Stacked bars per x label, one colour per series."""
    totals = [sum(v[i] for v in series.values()) for i in range(len(labels))]
    if not labels or not series or max(totals, default=0) <= 0:
        return empty(title, "no data")
    top = _nice_max(max(totals))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(labels)
    bar_w = max(1.0, slot * 0.75)
    body = _y_axis(top, plot_h, percent)
    xs = [LEFT + slot * (i + 0.5) for i in range(len(labels))]
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
    body += _x_labels(labels, xs) + _legend(list(series))
    return _frame(title, body)


def hbar_chart(title: str, items: Sequence[tuple[str, float]], *, highlight: set[str] | None = None) -> str:
    """Horizontal bars, largest first (top-N lists); ``highlight`` names get the alert colour."""
    if not items:
        return empty(title, "no data")
    highlight = highlight or set()
    row, label_w = 22, 150
    height = TOP + row * len(items) + 24
    top = max(v for _, v in items) or 1
    plot_w = W - label_w - RIGHT - 50
    body = []
    for i, (name, value) in enumerate(items):
        y = TOP + i * row
        w = max(1.0, plot_w * value / top)
        color = PALETTE[3] if name in highlight else PALETTE[0]
        body.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" class="tick">{escape(name)}</text>')
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
    for i, name in enumerate(rows):
        y = top + cell_h * i
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
