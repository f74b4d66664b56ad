"""Operating a worker: what it exposes, what watches it, what restarts it.

* ``metrics`` — the Prometheus metrics (bounded labels only)
* ``metrics_snapshot`` — a worker's counters kept after it stops (read by the report for a database
  without event outcome counts)
* ``gauges`` — gauges read from outside the worker: lag from the broker, product figures from ClickHouse
* ``watchdog`` — the lag watchdog (exit 75 when a partition's committed offset stops moving)
* ``supervisor`` — ``vitals worker``'s supervisor: the worker in a child process, restarted when it dies
* ``ports`` — the metrics port checked at startup (in use by another process: a configuration error)
* ``exit_codes`` — every exit code of ``vitals`` and its worker, and those a worker is not restarted after
* ``diagnostics`` — the stall dump (SIGUSR1): await chains, the consumer's bookkeeping, the pipeline's state
* ``paced_gc`` — garbage collection at the pipeline's pace
* ``faults`` — crash points for the fault-injection tests (off unless ``VITALS_FAULTS_FILE``)
"""
