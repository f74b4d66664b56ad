"""``vitals rules``: the effective thresholds of SPEC sections 3 and 7, per app (defaults merged with
``[apps.<app_id>.rules]`` and ``[apps.<app_id>.segments]`` overrides from the configuration)."""

from __future__ import annotations

import msgspec
import orjson

from streams.config.segments import SegmentSettings
from streams.config.settings import Settings

DEFAULT = "(default)"


def effective(settings: Settings, apps: list[str] | None = None) -> dict[str, dict[str, object]]:
    """Column name -> threshold name -> value: the defaults, then each configured or named app."""
    names = [*settings.apps, *[a for a in apps or [] if a not in settings.apps]]
    out: dict[str, dict[str, object]] = {DEFAULT: msgspec.to_builtins(settings.rules_for(None))
                                         | _segments(settings.segments)}
    for app in names:
        out[app] = msgspec.to_builtins(settings.rules_for(app)) | _segments(settings.segments_for(app))
    return out


def _segments(segments: SegmentSettings) -> dict[str, object]:
    """The ``[segments]`` settings (SPEC section 7) as ``segments.<key>``; the lists as compact JSON."""
    return {f"segments.{k}": v if not isinstance(v, list | tuple) else orjson.dumps(v).decode()
            for k, v in msgspec.to_builtins(segments).items()}


def table(columns: dict[str, dict[str, object]]) -> str:
    """A text table; values that differ from the defaults are marked with ``*``."""
    base = columns[DEFAULT]
    headers = ["threshold", *columns]
    rows = []
    for name, default in base.items():
        cells = [name]
        for col, values in columns.items():
            v = values[name]
            cells.append(f"{v}*" if col != DEFAULT and v != default else str(v))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if len(columns) > 1:
        lines.append("* overridden for this app")
    return "\n".join(lines)
