"""The per-partition processing engine: pure and synchronous (no Kafka, no Faust, no ClickHouse, no clock).

* ``partition`` — ``UserPartition``: a partition of users; watermark, dedup, state updates, rule firing
  (``_apply_py``, and its C twin in ``c/``)
* ``watermark`` — what the watermark triggers: absence deadlines it passes, UTC days it closes
* ``partition_indexes`` — what a partition keeps indexed next to its state and rebuilds on recovery
* ``indexes`` — the deadline heap and the last-active-day index
* ``rules`` — the rules of SPEC section 3 as pure functions over a user's or device's state
* ``state`` — per-user and per-device state and its msgpack encoding (one changelog record per key)
* ``store`` — the state store, the outputs collected between flushes, per-app rule settings
* ``dedup`` — a hot user's event ids beyond what one state record holds (sealed segments)
* ``devices`` — ``DevicePartition``: the device-farm rule's partition logic
* ``routing`` — a fetch's records decoded, validated and routed to their users' partitions
* ``partitioner`` — Kafka's murmur2 partitioner: a user's or device's home partition
* ``deepjson`` — JSON encoding without a nesting limit
* ``c/`` — the C extension ``streams.engine._engine``: the per-event loop, the activity columns, the
  changelog drain, the partitioner (Python where it is not built; ``processing.native_engine``)
"""
