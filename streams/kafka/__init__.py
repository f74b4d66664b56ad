"""Kafka plumbing shared by the worker, the commands and the tests (aiokafka).

* ``reachable`` — before clients start: the bootstrap hosts resolve and a broker accepts connections (waited for)
* ``client`` — clients with the configured TLS/SASL: admin, producer, batched sends, refused logins explained
* ``topics`` — topic names (public, internal, changelogs), their creation, ``prepare_topics`` before a start
* ``offsets`` — end offsets, a group's committed offsets and lag
* ``read`` — reading topics back (whole, or since a time) and the alert fence's source
"""
