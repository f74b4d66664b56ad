"""Configuration and the process's ground rules, the bottom layer (imports nothing else of vitals).

* ``settings`` — the typed settings object: defaults < TOML file < environment; ``ConfigError``
* ``clickhouse_dsn`` — the ClickHouse database a DSN names, qualified table names, the replay's database
* ``local_broker`` — the local broker of ``vitals kafka start``, used when no bootstrap is configured
* ``private_files`` — the umask and the data directory: users' personal data readable by its owner only
"""
