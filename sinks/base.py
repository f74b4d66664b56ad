"""Sink interfaces, after Quix Streams' BaseSink/BatchingSink and Arroyo's two signals.

A sink receives rows with :meth:`BaseSink.add` and makes them durable with
:meth:`BaseSink.flush`. :class:`BatchingSink` owns the buffer and leaves only
:meth:`BatchingSink.write` to each sink. A failed write never clears the buffer: the rows stay
until a write succeeds. Two signals leave a sink:

* :class:`SinkBackpressure` — rejected, retry later: the caller pauses consumption;
* :class:`SinkInvalid` — these rows can never be written: dead-letter them.
"""

from __future__ import annotations

import abc
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Row = TypeVar("Row")


class SinkBackpressure(Exception):
    """The sink cannot take data now; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, cause: BaseException | None = None) -> None:
        super().__init__(f"sink rejected the batch, retry in {retry_after:.2f}s")
        self.retry_after = retry_after
        self.cause = cause


class SinkInvalid(Exception):
    """The batch holds data the sink can never accept (schema mismatch and the like)."""


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


class BatchingSink(BaseSink[Row]):
    """Owns the buffer; subclasses implement :meth:`write` for one batch. The cap counts rows: an
    item of the buffer is one row unless :meth:`rows_in` says it holds more (a chunk of columns)."""

    def __init__(self, cap_rows: int) -> None:
        self.buffer: list[Row] = []
        self.cap_rows = cap_rows
        self._rows = 0

    def rows_in(self, item: Row) -> int:
        return 1

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
        if not self.buffer:
            return 0
        batch, rows = self.buffer, self._rows
        self.write(batch)  # raises: the buffer stays as it is
        self.buffer = []
        self._rows = 0
        return rows


def flush_with_retry(
    sink: BaseSink[Row],
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
