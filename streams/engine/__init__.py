"""The per-partition processing engine: pure and synchronous (no Kafka, no Faust, no ClickHouse, no clock).

* ``partition`` — ``UserPartition``: a partition of users; watermark, dedup, state updates, rule firing
  (``_apply_py``, and its C twin in ``c/``)
* ``watermark`` — what the watermark triggers: absence deadlines it passes, UTC days it closes
* ``partition_indexes`` — what a partition keeps indexed next to its state and rebuilds on recovery
* ``indexes`` — the deadline heap, the last-active-day index and the segments' change-day index
* ``rules`` — the rules of SPEC section 3 as pure functions over a user's or device's state
* ``segments`` — the segments of SPEC section 7 (lifecycle, value, potential) as pure transitions over a
  user's state, and the day a segment of theirs can change next (not wired into the partition yet)
* ``holdout`` — what an alert says about its user (SPEC 4, 7): control group, priority, ``context``; the
  recall playbook's steps
* ``state`` — per-user and per-device state and its msgpack encoding (one changelog record per key)
* ``store`` — the state store, the outputs collected between flushes, per-app rule settings
* ``dedup`` — a hot user's event ids beyond what one state record holds (sealed segments)
* ``devices`` — ``DevicePartition``: the device-farm rule's partition logic
* ``routing`` — a fetch's records decoded, validated and routed to their users' partitions
* ``partitioner`` — Kafka's murmur2 partitioner: a user's or device's home partition
* ``deepjson`` — JSON encoding without a nesting limit
* ``firing`` — what an event fires on the spot (an episode ended, a burst), shared by both loops
* ``extensions`` — the facade of the C extensions: loaded and configured once, ``BUILT``, and a table of
  each C file, its Python twin and the test comparing them
* ``c/`` — the C extension ``streams.engine._engine``: the per-event loop, the activity columns, the
  changelog drain, the partitioner (the Python twins where it is not built or ``processing.native_engine``
  is false)
"""
