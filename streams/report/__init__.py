"""Results read back for people: the HTML report, one user's state, the effective thresholds.

* ``html`` — the self-contained HTML report (``vitals report``)
* ``data`` — what the report shows, read from ClickHouse, the DLQ and device topics, the worker's counters
* ``charts`` — inline SVG charts (pure functions)
* ``inspection`` — one user's state, open episodes and last alerts from Kafka (``vitals inspect``)
* ``thresholds`` — the effective rule thresholds per app (``vitals rules``)
* ``rows`` — a query's rows as a table, JSON lines, CSV or TSV, and its error in one line (``vitals query``)
"""
