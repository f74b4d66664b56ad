"""Sink interfaces, after Quix Streams' BaseSink/BatchingSink and Arroyo's two signals.

A sink receives rows with :meth:`BaseSink.add` and makes them durable with
:meth:`BaseSink.flush`. :class:`BatchingSink` owns the buffer and leaves only
:meth:`BatchingSink.write` to each sink. A failed write never clears the buffer: the rows stay
until a write succeeds. Two signals leave a sink:

* :class:`SinkBackpressure` — rejected, retry later: the caller pauses consumption;
* :class:`SinkInvalid` — can never be written. When the refusal is about the rows' values
  (``about_rows``: a constraint, a value the column cannot hold), :meth:`BatchingSink.flush` writes
  halves of the batch until the rows refused on their own are found, writes the others and keeps
  the refused ones (:meth:`BatchingSink.take_refused`) for the caller to dead-letter. Otherwise
  (the table, the grants, the settings: nothing can pass) it is raised: the worker must stop.
"""

from __future__ import annotations

import abc
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

Row = TypeVar("Row")
Item = TypeVar("Item")


class SinkBackpressure(Exception):
    """The sink cannot take data now; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, cause: BaseException | None = None) -> None:
        super().__init__(f"sink rejected the batch, retry in {retry_after:.2f}s")
        self.retry_after = retry_after
        self.cause = cause


class SinkInvalid(Exception):
    """The batch holds data the sink can never accept (schema mismatch and the like).
    ``about_rows``: the refusal is about the values of some rows, so other rows of the same batch
    can pass; ``name`` a bounded name of the reason (a metric label)."""

    about_rows: bool = False
    code: int | None = None
    name: str = "invalid"


@dataclass(frozen=True)
class Refused(Generic[Row]):
    """A batch of one row that the sink refused on its own, and why."""

    batch: Sequence[Row]
    error: SinkInvalid


class BaseSink(abc.ABC, Generic[Row]):
    name: str = "sink"

    @abc.abstractmethod
    def add(self, row: Row) -> None: ...

    @abc.abstractmethod
    def flush(self) -> int:
        """Write everything added so far; return the number of rows written."""


@dataclass
class RetryPolicy:
    initial_s: float = 0.2
    max_s: float = 10.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * (2**attempt))
        return base * (1 - self.jitter / 2 + rng.random() * self.jitter)


# the cap of a sink whose rows a flush job already holds (alerts, segment changes: a day close can decide
# one per user of a partition at once): the buffer is the job's, what is bounded is each insert
UNCAPPED = 1 << 62


def runs(rows: Sequence[Item], size: Callable[[Item], int], max_rows: int, max_bytes: int) -> Iterator[Sequence[Item]]:
    """``rows`` cut into runs of at most ``max_rows`` rows and about ``max_bytes`` bytes, ``size`` telling a
    row's bytes (a run holds at least one row, so a row beyond ``max_bytes`` alone makes a run)."""
    start, total = 0, 0
    for i, row in enumerate(rows):
        n = size(row)
        if i > start and (i - start >= max_rows or total + n > max_bytes):
            yield rows[start:i]
            start, total = i, 0
        total += n
    if start < len(rows):
        yield rows[start:]


class BatchingSink(BaseSink[Row]):
    """Owns the buffer; subclasses implement :meth:`write` for one batch. The cap counts rows: an
    item of the buffer is one row unless :meth:`rows_in` says it holds more (a chunk of columns)."""

    # rows refused on their own in one flush beyond which the refusal is taken for the table's, not
    # the rows' (every row refused): the flush raises instead of writing the batch a row at a time
    max_refused = 1000

    def __init__(self, cap_rows: int) -> None:
        self.buffer: list[Row] = []
        self.cap_rows = cap_rows
        self._rows = 0
        self._refused: list[Refused[Row]] = []

    def rows_in(self, item: Row) -> int:
        return 1

    def split(self, batch: Sequence[Row]) -> tuple[Sequence[Row], Sequence[Row]] | None:
        """The batch in two halves by rows, or None when it holds one row."""
        if len(batch) < 2:
            return None
        half = len(batch) // 2
        return batch[:half], batch[half:]

    def take_refused(self) -> list[Refused[Row]]:
        """The rows refused on their own by the flushes since the last call (to dead-letter them)."""
        refused, self._refused = self._refused, []
        return refused

    def add(self, row: Row) -> None:
        n = self.rows_in(row)
        if self._rows + n > self.cap_rows:
            raise SinkBackpressure(0.1)
        self.buffer.append(row)
        self._rows += n

    def extend(self, rows: Sequence[Row]) -> None:
        n = sum(map(self.rows_in, rows))
        if self._rows + n > self.cap_rows:
            raise SinkBackpressure(0.1)
        self.buffer.extend(rows)
        self._rows += n

    @property
    def buffered(self) -> int:
        return self._rows

    @abc.abstractmethod
    def write(self, batch: Sequence[Row]) -> None:
        """Write one batch durably or raise SinkBackpressure / SinkInvalid."""

    def flush(self) -> int:
        """Write the buffer; rows refused on their own are kept for :meth:`take_refused`. Returns the
        rows written. Raises SinkBackpressure (the buffer stays: a retry writes it again, halves
        already written included, which the tables' deduplication absorbs) or a SinkInvalid that is
        not about the rows."""
        if not self.buffer:
            return 0
        batch, rows = self.buffer, self._rows
        refused: list[Refused[Row]] = []
        self._write_or_bisect(batch, refused)  # raises: the buffer stays as it is
        self._refused.extend(refused)
        self.buffer = []
        self._rows = 0
        return rows - sum(self.rows_in(item) for r in refused for item in r.batch)

    def _write_or_bisect(self, batch: Sequence[Row], refused: list[Refused[Row]]) -> None:
        try:
            self.write(batch)
        except SinkInvalid as exc:
            if not exc.about_rows:
                raise
            halves = self.split(batch)
            if halves is not None:
                for half in halves:
                    self._write_or_bisect(half, refused)
                return
            if len(refused) >= self.max_refused:
                raise TooManyRefused(self.name, self.max_refused, exc) from exc
            refused.append(Refused(batch, exc))


class TooManyRefused(SinkInvalid):
    """More rows of one flush refused on their own than a sink dead-letters: the table, not the rows."""

    def __init__(self, sink: str, limit: int, last: SinkInvalid) -> None:
        super().__init__(f"{sink}: more than {limit} rows of one flush refused, each on its own; the last "
                         f"refusal: {last}")
        self.code = last.code
        self.name = last.name


class Flushable(Protocol):
    """What :func:`flush_with_retry` flushes: a sink, or a stand-in for one (a planned outage)."""

    def flush(self) -> int: ...


def flush_with_retry(
    sink: Flushable,
    policy: RetryPolicy,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_retry: Callable[[int, BaseException], None] = lambda attempt, exc: None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> int:
    """Flush, retrying backpressure with exponential backoff and jitter until it succeeds.

    Runs in a worker thread (never on the event loop). Returns rows written; raises
    SinkInvalid at once, or the last SinkBackpressure if ``should_stop`` turns true.
    """
    rng = rng or random.Random()
    attempt = 0
    while True:
        try:
            return sink.flush()
        except SinkBackpressure as exc:
            if should_stop():
                raise
            on_retry(attempt, exc)
            sleep(max(exc.retry_after, policy.delay(attempt, rng)))
            attempt += 1
