"""The RocksDB store never gets ahead of its changelog (streams/worker/local_state.py): the engine's writes
wait in a partition's pending writes until the flush job has delivered their changelog records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

rocksdict = pytest.importorskip("rocksdict")

from streams.worker.local_state import LocalTable, RocksPartition  # noqa: E402


class FakeStore:
    """Faust's RocksDB store as vitals uses it: a real database per partition, persisted offsets."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dbs: dict[int, Any] = {}
        self.offsets: dict[TP, int] = {}

    def _db_for_partition(self, partition: int) -> Any:
        db = self.dbs.get(partition)
        if db is None:
            db = self.dbs[partition] = rocksdict.Rdict(str(self.base / f"p{partition}"),
                                                       options=rocksdict.Options(raw_mode=True))
        return db

    def _visible_keys(self, db: Any) -> Any:
        return db.keys()

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.offsets[tp] = offset

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = FakeStore(tmp_path)
    yield s
    s.close()


def test_writes_wait_until_their_changelog_records_are_delivered(store: FakeStore) -> None:
    table = LocalTable(store, "users-changelog")
    part = table.partition(3)
    assert isinstance(part, RocksPartition) and table.partition(3) is part
    part[b"a"] = b"1"
    part[b"b"] = b"2"
    db = store._db_for_partition(3)
    assert db.get(b"a") is None, "the database is written before the changelog"
    assert part.get(b"a") == b"1" and part[b"b"] == b"2" and sorted(part) == [b"a", b"b"]
    job = [("users-changelog", 3, b"a", b"1"), ("users-changelog", 3, b"b", b"2"), ("other", 3, b"x", b"9")]
    part[b"a"] = b"1-next"  # the next job's state, written while this one is delivered
    table.persisted(job, {3: 41})
    assert bytes(db[b"a"]) == b"1" and bytes(db[b"b"]) == b"2" and db.get(b"x") is None
    assert part.pending == {b"a": b"1-next"}, "a newer write stays pending"
    assert part[b"a"] == b"1-next"
    assert store.offsets == {TP("users-changelog", 3): 41}


def test_deletions_wait_too(store: FakeStore) -> None:
    table = LocalTable(store, "c")
    part = table.partition(0)
    part[b"k"] = b"v"
    table.persisted([("c", 0, b"k", b"v")], {0: 1})
    assert part.pop(b"k") == b"v"
    assert part.get(b"k") is None and b"k" not in list(part)
    assert bytes(store._db_for_partition(0)[b"k"]) == b"v", "deleted before its tombstone was delivered"
    with pytest.raises(KeyError):
        part[b"k"]
    table.persisted([("c", 0, b"k", None)], {0: 2})
    assert store._db_for_partition(0).get(b"k") is None and part.pending == {}


def test_memory_store_is_the_mapping_itself() -> None:
    class Memory:
        data: dict[bytes, bytes] = {}

    table = LocalTable(Memory(), "c")
    assert not table.rocksdb and table.partition(5) is Memory.data
    table.persisted([("c", 5, b"k", b"v")], {5: 1})  # nothing to do
