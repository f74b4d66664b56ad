"""Each source partition's messages are processed once, in offset order, per consumer generation.

Faust resumes the stream partitions before its seek to the committed offsets has finished after
a rebalance, so a worker can be handed messages fetched from wherever the consumer stood, and
then the same range again from the committed offset. Applying a later range before an earlier
one lets the partition's watermark run ahead of events not yet applied (an absence deadline
firing before an earlier login is counted), and the per-user replay positions would then take
the earlier events for replays. So the pipeline keeps, per source partition, the next offset it
expects — the committed offset once the rebalance has settled — and:

* takes a message at exactly that offset;
* drops a message below it (already processed in this generation);
* drops a message above it (a gap) and asks once for a seek back to the committed offset,
  which the pipeline performs after flushing, so the missing range comes again, in order. A gap
  still there ``settle_s`` after that seek is in the log itself (transaction markers, retention)
  and is stepped over.

Pure bookkeeping: offsets in, decisions out; the pipeline does the I/O.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

TopicPartition = tuple[str, int]


@dataclass
class InOrder:
    start_offset: Callable[[TopicPartition], Awaitable[int]]  # where a partition starts in this generation
    clock: Callable[[], float] = time.monotonic
    settle_s: float = 5.0
    next_offset: dict[TopicPartition, int] = field(default_factory=dict)
    asked: set[TopicPartition] = field(default_factory=set)  # a seek was asked for, not done yet
    seeked_at: dict[TopicPartition, float] = field(default_factory=dict)  # seek done, no progress since
    dropped: int = 0

    def new_generation(self) -> None:
        """A rebalance: Faust seeks every partition to its committed offset; start over from there."""
        self.next_offset.clear()
        self.asked.clear()
        self.seeked_at.clear()

    def seeked(self) -> None:
        """The pipeline has flushed and sought every partition back to its committed offset."""
        now = self.clock()
        for tp in self.asked:
            self.seeked_at[tp] = now
        self.asked.clear()

    async def select(self, messages: Sequence[Any]) -> tuple[list[Any], bool]:
        """The messages (``topic``, ``partition``, ``offset``) to process, in order, and whether a
        seek back to the committed offsets is needed."""
        keep: list[Any] = []
        seek = False
        for msg in messages:
            tp = (msg.topic, msg.partition)
            expected = self.next_offset.get(tp)
            if expected is None:
                expected = self.next_offset[tp] = await self.start_offset(tp)
            if msg.offset == expected or (
                msg.offset > expected and tp in self.seeked_at and self.clock() - self.seeked_at[tp] >= self.settle_s
            ):  # in order, or a gap that a seek did not fill: the log has no records there
                keep.append(msg)
                self.next_offset[tp] = msg.offset + 1
                self.seeked_at.pop(tp, None)
            elif msg.offset < expected:
                self.dropped += 1
            else:
                self.dropped += 1
                if tp not in self.asked and tp not in self.seeked_at:
                    self.asked.add(tp)
                    seek = True
        return keep, seek
