"""vitals stream processing, one subpackage per concept; each lower layer knows nothing of those above it
(an import-linter contract in pyproject.toml, run by deploy/test.sh):

* ``cli`` — the ``vitals`` command, one module per command
* ``report`` — reading results back: the HTML report, ``inspect``, ``rules``
* ``devtools`` — the local Kafka, the generator, hostile input, ``vitals run``'s worker control
* ``worker`` — the Faust app and what runs in it: pipeline, flush jobs, delivery, consumption, recovery
* ``ops`` — operating a worker: metrics, gauges, the lag watchdog, the supervisor, diagnostics, fault points
* ``kafka`` — Kafka clients, topics, offsets, reading topics back
* ``engine`` — pure and synchronous processing: state, rules, indexes, watermark, routing, the C loop
* ``config`` — settings, the ClickHouse DSN, private files

Below them: ``sinks/`` (ClickHouse and its formats; it imports only ``schemas`` and ``streams.config``) and
``schemas/`` (events, alerts, dead letters).
"""
