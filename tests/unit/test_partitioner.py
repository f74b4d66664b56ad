"""The home partition of a key is Kafka's default partitioner's: murmur2 as aiokafka computes it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Event
from streams.engine import extensions
from streams.engine.partitioner import PartitionCache, home_partition, murmur2_32, murmur2_32_py


@given(st.binary(max_size=300))
def test_murmur2_is_aiokafkas(data: bytes) -> None:
    _engine = extensions.engine()  # C (RuntimeError where the extensions are not built)
    expected = murmur2(data) & 0xFFFFFFFF
    assert murmur2_32(data) == expected
    assert murmur2_32_py(data) == expected
    assert _engine.murmur2(data) == expected  # C, where the extension is built (else this fails)


@given(st.text(min_size=1, max_size=128), st.integers(min_value=1, max_value=64))
def test_home_partition_is_the_default_partitioners(user: str, partitions: int) -> None:
    key = user.encode()
    expected = (murmur2(key) & 0x7FFFFFFF) % partitions
    assert home_partition(key, partitions) == expected
    assert PartitionCache(partitions)(user) == expected
    assert PartitionCache(partitions, native=False)(user) == expected
    assert extensions.engine().home_partition(user, partitions) == expected


@given(st.lists(st.one_of(st.none(), st.sampled_from(["u1", "u2", "é", "日本", "user-7"])), max_size=30),
       st.integers(min_value=1, max_value=12), st.data())
def test_elsewhere_names_the_events_of_users_homed_on_another_partition(
        users: list[str | None], partitions: int, data: st.DataObject) -> None:
    """The C loop and the Python loop of ``PartitionCache.elsewhere`` agree with the partitioner."""
    partition = data.draw(st.integers(0, partitions - 1))
    events: list[Event | None] = [None if u is None else Event(f"e{i}", u, "view", 1_800_000_000_000)
                                  for i, u in enumerate(users)]
    expected = [(i, p) for i, u in enumerate(users)
                if u is not None and (p := home_partition(u.encode(), partitions)) != partition]
    assert PartitionCache(partitions, native=True).elsewhere(events, partition) == expected  # C
    assert PartitionCache(partitions, native=False).elsewhere(events, partition) == expected  # Python
