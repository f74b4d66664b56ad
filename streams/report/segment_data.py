"""The report's segment figures (SPEC section 7), read from the segment views (sinks/segment_views.py),
summed over the apps like the rest of the report."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol


class Reader(Protocol):
    def table(self, name: str) -> str: ...

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


@dataclass
class SegmentData:
    sizes: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # dimension -> segment -> day -> users
    # dimension -> (previous, segment) -> (users moved over the period, the average share of previous moving a day)
    migrations: dict[str, dict[tuple[str, str], tuple[int, float | None]]] = field(default_factory=dict)
    # entry day -> entered, converted, pending
    conversion: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # day -> opened, recalled, opened_holdout, recalled_holdout; then the same four without fake-flagged users
    recall: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # day -> dau, dau_clean, cohort, retained, cohort_clean, retained_clean
    clean: dict[str, tuple[int, int, int, int, int, int]] = field(default_factory=dict)


def read_segment_data(ch: Reader) -> SegmentData:
    q, t = ch.query, ch.table
    out = SegmentData()
    sizes: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for day, dim, seg, users in q(f"SELECT day, dimension, segment, sum(users) FROM {t('segment_sizes_daily')} "
                                  "GROUP BY day, dimension, segment ORDER BY day"):
        sizes[str(dim)][str(seg)][str(day)] = int(users)
    out.sizes = {d: dict(s) for d, s in sizes.items()}
    moved: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    for dim, prev, seg, n in q(f"SELECT dimension, previous, segment, sum(moved) FROM {t('segment_migrations')} "
                               "GROUP BY dimension, previous, segment"):
        moved[str(dim)][(str(prev), str(seg))] = int(n)
    for dim, cells in moved.items():
        out.migrations[dim] = {key: (n, _daily_share(n, out.sizes.get(dim, {}).get(key[0], {})))
                               for key, n in sorted(cells.items())}
    out.conversion = {str(d): (int(e), int(c), int(p)) for d, e, c, p in q(
        f"SELECT entry_day, sum(entered), sum(converted), sum(pending) FROM {t('high_potential_conversion')} "
        "GROUP BY entry_day ORDER BY entry_day")}
    out.recall = {str(d): tuple(int(v) for v in rest) for d, *rest in q(
        f"SELECT day, sum(opened), sum(recalled), sum(opened_holdout), sum(recalled_holdout), sum(opened_clean), "
        f"sum(recalled_clean), sum(opened_holdout_clean), sum(recalled_holdout_clean) "
        f"FROM {t('recall_uplift')} GROUP BY day ORDER BY day")}
    out.clean = {str(d): tuple(int(v) for v in rest) for d, *rest in q(  # type: ignore[misc]
        f"SELECT day, sum(dau), sum(dau_clean), sum(cohort), sum(retained), sum(cohort_clean), sum(retained_clean) "
        f"FROM {t('active_users_clean')} GROUP BY day ORDER BY day")}
    return out


def _daily_share(moved: int, previous_sizes: dict[str, int]) -> float | None:
    """``moved`` over the previous segment's size summed over the days before each day of the period (its
    users exposed to moving, day by day): the average share of the segment that moved a day."""
    days = sorted(previous_sizes)
    if not days:
        return None
    exposure = sum(previous_sizes.get(str(date.fromisoformat(d) - timedelta(days=1)), 0) for d in days)
    return moved / exposure if exposure else None
