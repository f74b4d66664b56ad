"""The worker's memory budget for what it holds in flight, in bytes (pure: no I/O).

Counting outputs or messages does not bound memory: 250,000 buffered outputs are 25 MB of small
events but 250 GB of 1 MiB messages. So the pipeline counts the bytes it holds between Kafka and
durability against ``processing.memory_budget_mb``:

* ``fetched``: the messages of the fetches queued for the agents;
* ``processed``: the messages processed since the last flush job was taken (raw storage keeps their
  bytes until the job is durable) and the outputs they made;
* ``job``: the flush job in progress, its outputs in the sinks' buffers until ClickHouse and Kafka
  have them (retried through an outage).

A flush is due once ``processed`` reaches a quarter of the budget; processing waits for the running
job while everything held reaches the budget, so the agent takes no further fetch, its queue stays
full and the consumer fetches nothing more: consumption pauses, nothing is dropped.
``vitals_memory_budget_used_ratio`` shows how close it is.

Sizes are what the messages' keys and values take plus a fixed charge per message and per output: an
estimate of what Python holds for them, not an exact count of the heap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

MB = 1 << 20
OUTPUT_BYTES = 256  # charged per buffered output (a row, an alert, a dead letter, a reroute, a record)
MESSAGE_BYTES = 200  # charged per message beyond its key and value (the consumer record, its events)


class Sized(Protocol):
    key: bytes | None
    value: bytes | None


def message_bytes(messages: Iterable[Sized]) -> int:
    """What messages take, as the budget counts them."""
    total = 0
    for m in messages:
        total += MESSAGE_BYTES + len(m.value or b"") + len(m.key or b"")
    return total


@dataclass(slots=True)
class MemoryBudget:
    """Bytes held in flight by one worker, by stage, against ``limit``."""

    limit: int
    fetched: int = 0
    processed: int = 0
    job: int = 0

    def __post_init__(self) -> None:
        if self.limit <= 0:
            raise ValueError("the memory budget must be positive")

    @property
    def used(self) -> int:
        return self.fetched + self.processed + self.job

    @property
    def ratio(self) -> float:
        return self.used / self.limit

    def flush_due(self) -> bool:
        """What was processed since the last flush reached a quarter of the budget."""
        return self.processed * 4 >= self.limit

    def full(self) -> bool:
        """Everything held reached the budget: processing waits for the running job."""
        return self.used >= self.limit
