"""Kafka's default partitioner (murmur2 on the key, as the Java client and aiokafka): the home partition
of a user id or a device key. In C where the engine's extension is built (streams/engine/c/partitioner.c),
else in Python (pure: no Kafka client)."""

from __future__ import annotations

import struct
from typing import Any

_WORDS = [struct.Struct(f"<{n}I").unpack_from for n in range(64)]


def murmur2_32_py(data: bytes) -> int:
    """Kafka's murmur2 (unsigned), as ``aiokafka.partitioner.murmur2`` computes it, about twice as
    fast: the 4-byte words unpacked at once, fewer masks (``murmur2_32`` is the C one where the
    extension is built)."""
    length = len(data)
    m = 0x5BD1E995
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in _WORDS[words](data) if words < 64 else struct.unpack_from(f"<{words}I", data):
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ (((k ^ (k >> 24)) * m) & 0xFFFFFFFF)
    extra = length & 3
    if extra:
        tail = length - extra
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


try:
    from streams.engine._engine import elsewhere as _elsewhere_c
    from streams.engine._engine import home_partition as _home_c
    from streams.engine._engine import murmur2 as murmur2_32
except ImportError:  # the C extension is not built
    murmur2_32 = murmur2_32_py
    _home_c = _elsewhere_c = None


def home_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka)."""
    return (murmur2_32(key) & 0x7FFFFFFF) % partitions


class PartitionCache:
    """user id -> home partition: murmur2 in C where the extension is built (no cache needed),
    else cached (bounded), as murmur2 in pure Python costs microseconds."""

    def __init__(self, partitions: int, limit: int = 1_000_000) -> None:
        self.partitions = partitions
        self.limit = limit
        self._cache: dict[str, int] = {}

    def __call__(self, user_id: str) -> int:
        if _home_c is not None:
            return _home_c(user_id, self.partitions)
        p = self._cache.get(user_id)
        if p is None:
            if len(self._cache) >= self.limit:
                self._cache.clear()
            p = self._cache[user_id] = home_partition(user_id.encode(), self.partitions)
        return p

    def elsewhere(self, events: list[Any], partition: int) -> list[tuple[int, int]]:
        """(index, home partition) of the events (``Event``, or None: skipped) of one message
        whose user lives on another partition than ``partition``; the loop in C where built (the
        C loop needs ``streams.engine.partition`` imported: it tells the extension the ``Event`` type)."""
        if _elsewhere_c is not None:
            return _elsewhere_c(events, partition, self.partitions)  # type: ignore[no-any-return]
        out = []
        user: str | None = None
        p = partition
        for index, event in enumerate(events):
            if event is None:
                continue
            if event.user_id != user:
                user = event.user_id
                p = self(user)
            if p != partition:
                out.append((index, p))
        return out


