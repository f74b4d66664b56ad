"""Configuration and the process's ground rules, the bottom layer (imports nothing else of vitals).

* ``settings`` — the typed settings object: defaults < TOML file < environment
* ``errors`` — ``ConfigError``: one line and exit code 2, naming the setting (its ``key``)
* ``sources`` — where each setting's value came from (default, TOML file, variable), for the errors
* ``env_names`` — the registry of every ``VITALS_*`` variable; an unknown one refused with the nearest name
* ``unknown_keys`` — keys of the TOML file that are no setting, with the nearest known key
* ``bootstrap`` — the Kafka bootstrap servers setting parsed (``host:port[,...]``)
* ``clickhouse_dsn`` — the ClickHouse database a DSN names, qualified table names, the replay's database
* ``local_broker`` — the local broker of ``vitals kafka start``, used when no bootstrap is configured
* ``private_files`` — the umask and the data directory: users' personal data readable by its owner only
"""
