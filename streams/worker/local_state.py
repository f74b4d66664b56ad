"""Where a table partition's state lives on this worker: Faust's memory store or its RocksDB store.

vitals writes state once per flush, outside any Faust event, so it never goes through the
store's mapping interface for RocksDB (Faust's RocksDB store finds the partition of a write from
the "current event" it is processing). Instead each table partition is addressed explicitly:

* memory store: one dict holds every partition (keys are unique across partitions);
* RocksDB store: one database per partition (``store._db_for_partition``). The database never
  gets ahead of its changelog: a state the engine writes waits in the partition's ``pending``
  writes (read through them) until the flush job carrying it has delivered its changelog record;
  then the job writes it to the database and records the record's offset as the store's persisted
  offset, so a restarted worker reads only the changelog tail past it. (Written at once, a crash
  between the write and the delivery left the database ahead: the restart on the same volume took
  the replayed events for applied and never wrote them to the changelog, and whichever worker
  restored the partition from the changelog next got a stale state.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, Final

from faust.types import TP


def is_rocksdb(store: Any) -> bool:
    return hasattr(store, "_db_for_partition")


_ABSENT: Final = object()


class RocksPartition(MutableMapping[bytes, bytes]):
    """One partition of a Faust RocksDB store, as a mapping whose writes wait in :attr:`pending`
    (None: a deletion) until :meth:`persist` writes them, once their changelog records are
    delivered; reads see the pending writes first."""

    def __init__(self, store: Any, partition: int) -> None:
        self.store = store
        self.partition = partition
        self.pending: dict[bytes, bytes | None] = {}

    @property
    def db(self) -> Any:
        return self.store._db_for_partition(self.partition)

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        if self.pending:
            value = self.pending.get(key, _ABSENT)
            if value is not _ABSENT:
                return default if value is None else value
        value = self.db.get(key)
        return default if value is None else bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        self.pending[key] = None

    def __iter__(self) -> Iterator[bytes]:
        pending = self.pending
        for key in self.store._visible_keys(self.db):
            key = bytes(key)
            if key not in pending:
                yield key
        yield from (key for key, value in list(pending.items()) if value is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def persist(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Write these delivered changelog records (key, value; None: deleted) to the database; a
        pending write they carry is done (a later one, of the next job, stays pending)."""
        db, pending = self.db, self.pending
        for key, value in records:
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
            if key in pending and pending[key] == value:
                del pending[key]


class LocalTable:
    """A Faust table's local store addressed by partition, and its changelog topic."""

    def __init__(self, store: Any, changelog: str) -> None:
        self.store = store
        self.changelog = changelog
        self.rocksdb = is_rocksdb(store)
        self._partitions: dict[int, RocksPartition] = {}

    def partition(self, partition: int) -> MutableMapping[bytes, bytes]:
        """The mapping holding ``partition``'s state. For Faust's memory store: the dict it keeps
        every partition in, directly (its mapping interface adds a Python-level call per read, and
        a raised KeyError per key it does not hold; it has no hooks on writes)."""
        if self.rocksdb:
            part = self._partitions.get(partition)
            if part is None:
                part = self._partitions[partition] = RocksPartition(self.store, partition)
            return part
        data = getattr(self.store, "data", None)
        return data if type(data) is dict else self.store

    def keys(self, partition: int, home: Any) -> list[bytes]:
        """Keys of user records on ``partition`` (records whose key starts with a NUL byte are metadata)."""
        if self.rocksdb:
            return [k for k in self.partition(partition) if k[:1] != b"\x00"]
        from streams.engine.state import split_key

        return [k for k in list(self.store.keys()) if k[:1] != b"\x00" and home(split_key(k)[1]) == partition]

    def release(self, partition: int) -> None:
        """A partition that left this worker (flushed on revoke: nothing pending)."""
        self._partitions.pop(partition, None)

    def persisted(self, records: Iterable[tuple[str, int | None, bytes | None, bytes | None]],
                  last_offsets: dict[int, int]) -> None:
        """A flush job's changelog records (topic, partition, key, value) are delivered, the last
        at ``last_offsets`` per partition: a RocksDB store writes this table's records and then
        records those offsets as persisted (the memory store holds them already)."""
        if not self.rocksdb:
            return
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for topic, partition, key, value in records:
            if topic == self.changelog and partition is not None and key is not None:
                by_partition.setdefault(partition, []).append((key, value))
        for partition, kv in by_partition.items():
            part = self.partition(partition)
            assert isinstance(part, RocksPartition)
            part.persist(kv)
        for partition, offset in last_offsets.items():
            self.store.set_persisted_offset(TP(self.changelog, partition), offset)


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


