"""The home partition of a key is Kafka's default partitioner's: murmur2 as aiokafka computes it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams import _engine
from streams.kafka_io import PartitionCache, home_partition, murmur2_32, murmur2_32_py


@given(st.binary(max_size=300))
def test_murmur2_is_aiokafkas(data: bytes) -> None:
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
    assert _engine.home_partition(user, partitions) == expected
