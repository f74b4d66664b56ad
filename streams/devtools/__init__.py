"""Tools for running vitals locally and for tests and benchmarks.

* ``local_kafka`` — start and stop the single-node Kafka of deploy/kafka/kafka.sh; the port it gets
* ``generator`` — deterministic event histories with personas and faults
* ``hostile`` — hostile but valid input mixed into a history (``--hostile``)
* ``produce`` — a history produced into Kafka
* ``progress`` — progress lines for long commands
* ``worker_process`` — a ``vitals worker`` child started, stopped, and waited on until the lag is 0
* ``run_summary`` — what ``vitals run`` prints at the end
"""
