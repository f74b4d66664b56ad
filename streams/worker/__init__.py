"""A worker: the Faust app and the stages a fetch goes through until its offsets are committed.

* ``app`` — the Faust app: topics, tables, thin agents, timers (``build_app``), and ``FaustSource``
* ``pipeline`` — ``Pipeline``: fetches in, per-partition engines, flush jobs out
* ``source`` — ``Source``: what the pipeline needs from its consumer (commit, start offsets, seeks, failure
  handling), handed to its constructor
* ``partitions`` — the user partitions rebuilt from the recovered table, with the offset each resumes from
* ``flush_jobs`` — a flush job's parts assembled from what processing produced (records, changelogs, offsets)
* ``flush`` — ``Flusher``: a job made durable in order (Kafka, ClickHouse, changelogs), then committed
* ``outcome_gates`` — what the event_outcomes table counted of each partition: its rows exact under crashes
  and replays
* ``delivery`` — Kafka outputs re-sent until acknowledged
* ``refusals`` — rows ClickHouse can never take, dead-lettered
* ``fence`` — the alert fence: alerts a replay would send again, held back
* ``consumer`` — the lean consumption path: a fetch at a time to the agents
* ``ordering`` — each source partition processed once, in offset order, per consumer generation
* ``restore`` — table recovery in bulk, a fetch at a time
* ``local_state`` — where a table partition's state lives: memory or RocksDB
* ``budget`` — the memory budget for what the worker holds in flight
"""
