"""Taking partitions: where each user partition's events resume, and which keys of the recovered table
belong to it, so :meth:`streams.worker.pipeline.Pipeline._build_partitions` rebuilds every new partition
from the table in one pass; and the alerts a replay of them would send again, held back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from streams.engine.routing import Record
from streams.engine.state import split_key
from streams.worker.fence import ReplayFence
from streams.worker.local_state import LocalTable
from streams.worker.ordering import InOrder

log = logging.getLogger("vitals.pipeline")


async def resume_offsets(events: Sequence[Record], partitions: set[int], topic: str,
                         order: InOrder | None) -> dict[int, int | None]:
    """Per partition, the first events-topic offset not processed yet: the lowest in this
    batch, else the next one expected in this generation (None: unknown, from the start)."""
    resume: dict[int, int | None] = {}
    for msg in events:
        if msg.topic == topic and msg.partition in partitions:
            first = resume.get(msg.partition)
            resume[msg.partition] = msg.offset if first is None else min(first, msg.offset)
    for p in partitions - resume.keys():
        offset = None
        if order is not None:
            offset = order.next_offset.get((topic, p))
            if offset is None:
                offset = await order.start_offset((topic, p))
        resume[p] = offset
    return resume


def partition_keys(partitions: set[int], table: LocalTable, data: Mapping[bytes, bytes],
                   home: Callable[[str], int]) -> dict[int, list[bytes]]:
    """The user keys of the recovered table on each of ``partitions`` (its meta records left out)."""
    keys: dict[int, list[bytes]] = {p: [] for p in partitions}
    if table.rocksdb:
        return {p: table.keys(p, home) for p in keys}
    for key in list(data.keys()):  # one dict holds every partition: one pass
        if key[:1] == b"\x00":
            continue
        bucket = keys.get(home(split_key(key)[1]))
        if bucket is not None:
            bucket.append(key)
    return keys


def fence_partitions(fence: ReplayFence, stamps: Sequence[int], partitions: set[int]) -> None:
    """Hold back the alerts a replay of these partitions would send again (streams/worker/fence.py), read
    from the alerts topic since the earliest of their ``stamps``, in the background."""
    fence.start(stamps, partitions)
