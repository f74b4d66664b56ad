"""A fetch's records of the events and reroute topics, decoded and routed to the partition of
users each event belongs to (pure: no Kafka, no state).

Invalid events become dead letters. An event whose user lives on another partition (a producer
that keyed it wrongly) is sent there through the reroute topic; its place in its message is kept
(None), so the events that stay keep their index, which their replay position is built from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from schemas.events import Event, decode_message
from streams.engine import DeadLetter, MessageEvents, Outputs, event_json


class Record(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


R = TypeVar("R", bound=Record)


def route(records: Sequence[Record], now_ms: int, home: Callable[[str], int], out: Outputs
          ) -> dict[int, list[MessageEvents]]:
    """Per source partition, its messages' events for ``UserPartition.apply``, in order; dead
    letters, reroutes and their outcomes go to ``out``."""
    per_partition: dict[int, list[MessageEvents]] = {}
    for msg in records:
        decoded, invalid = decode_message(msg.value, now_ms)
        for inv in invalid:
            out.dead_letters.append(DeadLetter(inv, msg.topic, msg.partition, msg.offset, msg.key))
            out.outcomes[("", "invalid:" + inv.reason)] += 1
        partition = msg.partition
        kept: list[Event | None] = decoded  # type: ignore[assignment]
        user: str | None = None
        p = partition
        for index, event in enumerate(decoded):
            if event.user_id != user:
                user = event.user_id
                p = home(user)
            if p != partition:
                if kept is decoded:
                    kept = list(decoded)
                kept[index] = None
                out.reroutes.append((p, user.encode(), event_json(event)))
                out.outcomes[(event.app_id, "rerouted")] += 1
        messages = per_partition.get(partition)
        if messages is None:
            messages = per_partition[partition] = []
        messages.append((msg.topic, msg.offset, msg.key, kept))
    return per_partition


SLICE_BYTES = 1 << 19  # a fetch is processed in slices of about this many bytes of messages


def slices(messages: Sequence[R], limit: int) -> list[Sequence[R]]:
    """``messages`` in consecutive slices, each ending with the message whose value brings it to
    ``limit`` bytes (the last one may hold less)."""
    out: list[Sequence[R]] = []
    start = size = 0
    for i, msg in enumerate(messages):
        size += len(msg.value or b"")
        if size >= limit:
            out.append(messages[start : i + 1])
            start, size = i + 1, 0
    if start < len(messages):
        out.append(messages[start:])
    return out
