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
* drops a message above it (a gap). Whether the gap is filled by a seek is told by the consumer's
  *seek count* (:attr:`streams.worker.consumer.LeanConsumer.seeks`, seeks to the committed offsets
  completed so far) and the count each fetch carries, taken when its fetch began:

  - a fetch that began before the latest seek may hold records fetched before it: the range comes
    again from the committed offset (never past the expected one: only processed messages are
    committed), so the message is dropped and nothing asked;
  - otherwise the gap is in what the consumer fetches now, and a seek back to the committed offset
    is asked once (the pipeline flushes, commits and seeks);
  - a gap still there in a fetch that began after that seek is in the log itself (transaction
    markers, retention, compaction): stepped over.

No clock: how long a loaded machine takes to process what was queued before a seek changes
nothing (with a time limit, records fetched before the seek but processed after it were once
stepped over as a gap, and the range in between lost). Pure bookkeeping: offsets in, decisions
out; the pipeline does the I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

TopicPartition = tuple[str, int]


@dataclass
class InOrder:
    start_offset: Callable[[TopicPartition], Awaitable[int]]  # where a partition starts in this generation
    seeks: Callable[[], int] = lambda: 0  # the consumer's seeks to the committed offsets completed so far
    next_offset: dict[TopicPartition, int] = field(default_factory=dict)
    # a gap seen in a fetch that began after every seek: a seek asked when the count stood at this
    asked: dict[TopicPartition, int] = field(default_factory=dict)
    dropped: int = 0
    # gaps in the log stepped over since the pipeline last took them: (partition, expected, offset)
    stepped: list[tuple[TopicPartition, int, int]] = field(default_factory=list)

    def new_generation(self) -> None:
        """A rebalance: Faust seeks every partition to its committed offset; start over from there."""
        self.next_offset.clear()
        self.asked.clear()

    async def select(self, messages: Sequence[Any], fetched_after: int) -> tuple[list[Any], bool]:
        """The messages (``topic``, ``partition``, ``offset``) to process, in order, and whether a
        seek back to the committed offsets is needed. ``fetched_after``: the consumer's seek count
        when the fetch that brought them began."""
        keep: list[Any] = []
        seek = False
        for msg in messages:
            tp = (msg.topic, msg.partition)
            expected = self.next_offset.get(tp)
            if expected is None:
                expected = self.next_offset[tp] = await self.start_offset(tp)
            if msg.offset < expected:
                self.dropped += 1
                continue
            if msg.offset > expected:
                asked = self.asked.get(tp)
                if fetched_after < self.seeks():  # fetched before a seek: it comes again
                    self.dropped += 1
                    continue
                if asked is None or fetched_after <= asked:  # a seek not asked yet, or still to come
                    if asked is None:
                        self.asked[tp] = self.seeks()
                        seek = True
                    self.dropped += 1
                    continue
                self.stepped.append((tp, expected, msg.offset))  # the seek did not fill it: not in the log
            keep.append(msg)
            self.next_offset[tp] = msg.offset + 1
            self.asked.pop(tp, None)
        return keep, seek
