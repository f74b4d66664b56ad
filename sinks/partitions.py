"""Inserts split by the target table's partition key, so that none can fail on the input's shape.

ClickHouse refuses an INSERT whose rows fall into more than ``max_partitions_per_insert_block``
partitions (default 100) with error 252, and a retry of the same rows fails the same way: a flush of
ten years of monthly backfill (Kafka records that keep their original timestamps) stalled the sink
for good. Both partitioned tables the sinks write are ``PARTITION BY toYYYYMM(...)``
(``user_activity_daily`` by ``day``, ``raw_messages`` by the Kafka ``timestamp``; ``alerts`` has no
partition key), so a batch is planned by month:

* within :data:`MAX_PARTITIONS` months from its earliest to its latest row (the usual case: a flush
  touches one or two months), it goes as one insert, exactly as before: a ``min``/``max`` over the
  key column is all the extra work;
* beyond, its rows are ordered by key (a C-level sort of indices); if they still hold at most
  :data:`MAX_PARTITIONS` distinct months the batch goes whole, else it is cut into groups of at most
  :data:`MAX_PARTITIONS` consecutive months holding rows, one insert each.

Each insert carries ``max_partitions_per_insert_block = PARTITION_LIMIT_SETTING`` (twice the
groups' size), so a server profile with a lower limit cannot refuse a group either. A group's
deduplication token is the batch's token and its month range: the same batch, retried or replayed,
gives the same groups with the same tokens, and ClickHouse drops the ones it already has.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

MAX_PARTITIONS = 50  # months (partitions) one insert of the sinks may touch
PARTITION_LIMIT_SETTING = 100  # max_partitions_per_insert_block sent with each insert (2x margin)
LAST_MONTH = 999_912  # toYYYYMM of a DateTime64 saturates at December 9999 (checked on chdb 26)


def month_of_day(day: int) -> int:
    """``toYYYYMM`` of a day number (days since 1970-01-01, UTC): proleptic Gregorian, as ClickHouse."""
    z = day + 719_468  # days since 0000-03-01 (H. Hinnant's civil_from_days)
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return min(year * 100 + month, LAST_MONTH)


def first_day_of(month: int) -> int:
    """The day number of the first day of a ``YYYYMM`` month (the inverse of :func:`month_of_day`)."""
    year, m = divmod(month, 100)
    year -= m <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


def next_month(month: int) -> int:
    return month + 1 if month % 100 < 12 else (month // 100 + 1) * 100 + 1


def months_spanned(first: int, last: int) -> int:
    """How many months from ``first`` to ``last`` (``YYYYMM``), both included."""
    return (last // 100 - first // 100) * 12 + last % 100 - first % 100 + 1


@dataclass(frozen=True, slots=True)
class Group:
    """The rows of one insert: ``rows`` are indices into the batch (None: the whole batch as it is)
    whose keys fall in the months ``first``..``last``, at most ``partitions`` distinct ones."""

    first: int
    last: int
    partitions: int
    rows: list[int] | None = None

    def token(self, batch_token: str) -> str:
        """This insert's ``insert_deduplication_token``: the batch's own for a whole batch, else the
        batch's and the group's months (a function of the batch alone, so a replay gives the same)."""
        return batch_token if self.rows is None else f"{batch_token}-{self.first}-{self.last}"


def split(keys: Sequence[int], unit: int = 1, limit: int = MAX_PARTITIONS) -> list[Group]:
    """The inserts of a batch whose rows have partition keys ``keys`` (day numbers for ``unit`` 1,
    epoch milliseconds for :data:`DAY_MS`; never negative), none touching more than ``limit`` months.

    One :class:`Group` without rows when the batch touches at most ``limit`` months (told by
    ``min``/``max`` alone when they are at most ``limit`` months apart); else groups of consecutive
    months holding rows, in month order, each listing its rows in key order (stable: equal keys keep
    the batch's order). Every row is in exactly one group.
    """
    if not keys:
        return []
    first, last = month_of_day(min(keys) // unit), month_of_day(max(keys) // unit)
    span = months_spanned(first, last)
    if span <= limit:
        return [Group(first, last, span)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    ordered = list(map(keys.__getitem__, order))
    runs: list[tuple[int, int, int]] = []  # (month, start, end) in ``ordered``
    start = 0
    while start < len(ordered):
        month = month_of_day(ordered[start] // unit)
        if month >= LAST_MONTH:
            end = len(ordered)  # December 9999 and everything past it: one partition
        else:
            end = bisect_left(ordered, first_day_of(next_month(month)) * unit, start)
        runs.append((month, start, end))
        start = end
    if len(runs) <= limit:  # far apart but few: the batch as it is touches few enough partitions
        return [Group(first, last, len(runs))]
    groups = []
    for i in range(0, len(runs), limit):
        chunk = runs[i:i + limit]
        groups.append(Group(chunk[0][0], chunk[-1][0], len(chunk), order[chunk[0][1]:chunk[-1][2]]))
    return groups
