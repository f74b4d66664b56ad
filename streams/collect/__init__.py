"""``vitals collect``: the HTTP collector of SPEC section 8 (Segment's and PostHog's ingestion APIs in front
of the events topic), a service beside the worker.

* ``bodies`` — a request's body read: bounded gzip, JSON, the events and their original bytes (pure)
* ``convert`` — the events through the section 8 mapping and section 1's validation into Kafka records:
  per-user arrays keyed by user id, dead letters with their reasons (pure)
* ``delivery`` — the idempotent ``acks=all`` producer, acknowledgements awaited, Kafka up or down
* ``metrics`` — its Prometheus metrics (bounded labels)
* ``server`` — the aiohttp routes, ``/health``, ``/metrics``, graceful shutdown
* ``service`` — the whole service started from the settings (``vitals collect``)
"""
