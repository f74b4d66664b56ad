"""``vitals rules``: the effective thresholds of SPEC section 3, per app (defaults merged with
``[apps.<app_id>.rules]`` overrides from the configuration)."""

from __future__ import annotations

import msgspec

from streams.config.settings import Settings

DEFAULT = "(default)"


def effective(settings: Settings, apps: list[str] | None = None) -> dict[str, dict[str, object]]:
    """Column name -> threshold name -> value: the defaults, then each configured or named app."""
    names = [*settings.apps, *[a for a in apps or [] if a not in settings.apps]]
    out: dict[str, dict[str, object]] = {DEFAULT: msgspec.to_builtins(settings.rules)}
    for app in names:
        out[app] = msgspec.to_builtins(settings.rules_for(app))
    return out


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
