"""What a pipeline needs from the consumer that feeds it, as one small protocol handed to its constructor.

The Faust app's is :class:`streams.worker.app.FaustSource`; a unit test's is an in-memory fake
(tests/unit/test_pipeline_flush.py). Nothing is set on the pipeline after it is built.
"""

from __future__ import annotations

from typing import Protocol

from streams.ops.faults import Faults

TopicPartition = tuple[str, int]


class Source(Protocol):
    """The consumer side of a pipeline: where partitions start, seeks, commits, and what to do on failure."""

    faults: Faults  # crash points of the fault-injection tests (inert unless VITALS_FAULTS_FILE)

    def accepting(self) -> bool:
        """False while a rebalance settles: fetches taken before its seek come again after it."""
        ...

    def queued_bytes(self) -> int:
        """Bytes of the fetches queued ahead of the agents (the memory budget's ``fetched``)."""
        ...

    def seeks(self) -> int:
        """The consumer's seeks to the committed offsets completed so far."""
        ...

    async def start_offset(self, tp: TopicPartition) -> int:
        """Where a partition starts once a rebalance settled: its committed offset (or the earliest)."""
        ...

    async def reseek(self) -> None:
        """Seek the consumer to the committed offsets (after a gap: the missing range comes again)."""
        ...

    async def commit(self, offsets: dict[TopicPartition, int]) -> bool:
        """Commit exactly these source offsets (a flush job's, once everything up to them is durable)."""
        ...

    def failed(self, exc: BaseException) -> None:
        """A flush job failed (not an outage: those are retried inside it): its outputs may be lost, so
        the worker must not commit past them (the app exits for a fresh worker)."""
        ...
