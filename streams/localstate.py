"""Where a table partition's state lives on this worker: Faust's memory store or its RocksDB store.

vitals writes state once per flush, outside any Faust event, so it never goes through the
store's mapping interface for RocksDB (Faust's RocksDB store finds the partition of a write from
the "current event" it is processing). Instead each table partition is addressed explicitly:

* memory store: one dict holds every partition (keys are unique across partitions);
* RocksDB store: one database per partition (``store._db_for_partition``). After vitals has
  delivered a partition's changelog records, it records their last offset as the store's
  persisted offset, so a restarted worker reads only the changelog tail past it.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from faust.types import TP


def is_rocksdb(store: Any) -> bool:
    return hasattr(store, "_db_for_partition")


class RocksPartition(MutableMapping[bytes, bytes]):
    """One partition of a Faust RocksDB store, as a mapping."""

    def __init__(self, store: Any, partition: int) -> None:
        self.store = store
        self.partition = partition

    @property
    def db(self) -> Any:
        return self.store._db_for_partition(self.partition)

    def __getitem__(self, key: bytes) -> bytes:
        value = self.db.get(key)
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def get(self, key: bytes, default: Any = None) -> Any:
        value = self.db.get(key)
        return default if value is None else bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.db.delete(key)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.store._visible_keys(self.db))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def partition_data(store: Any, partition: int) -> MutableMapping[bytes, bytes]:
    """The mapping holding ``partition``'s state. For Faust's memory store: the dict it keeps every
    partition in, directly (its mapping interface adds a Python-level call per read, and a raised
    KeyError per key it does not hold; it has no hooks on writes)."""
    if is_rocksdb(store):
        return RocksPartition(store, partition)
    data = getattr(store, "data", None)
    return data if type(data) is dict else store


def partition_keys(store: Any, partition: int, home: Any) -> list[bytes]:
    """Keys of user records on ``partition`` (records whose key starts with a NUL byte are metadata)."""
    if is_rocksdb(store):
        return [bytes(k) for k in RocksPartition(store, partition) if k[:1] != b"\x00"]
    from streams.state import split_key

    return [k for k in list(store.keys()) if k[:1] != b"\x00" and home(split_key(k)[1]) == partition]


def close_on_revoke(store: Any) -> None:
    """Make a Faust RocksDB store close a partition's database when the partition is revoked.

    Faust only drops its reference (the close is commented out in faust-streaming), so the
    database keeps its file lock and re-opening the partition when it comes back to this worker
    fails ("lock hold by current process") until Faust gives up and crashes.
    """
    if not is_rocksdb(store):
        return

    def revoke_partitions(table: Any, tps: Any) -> None:
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                db = store._dbs.pop(tp.partition, None)
                if db is not None:
                    db.close()

    store.revoke_partitions = revoke_partitions


def record_persisted(store: Any, changelog: str, last_offsets: dict[int, int]) -> None:
    """Tell a RocksDB store which changelog offsets its partitions now contain (no-op in memory)."""
    if is_rocksdb(store):
        for partition, offset in last_offsets.items():
            store.set_persisted_offset(TP(changelog, partition), offset)

