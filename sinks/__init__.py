"""Outputs of vitals: ClickHouse tables and Kafka topics."""
