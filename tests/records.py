"""A Kafka record as the routing and the pipeline read it, for tests without a broker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = -1  # Kafka's (none: the wall clock judges "too far in the future", stream time is not capped)
