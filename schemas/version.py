"""The vitals version (also in pyproject.toml): stamped on every dead-letter record (``vitals_version``)."""

VERSION = "0.1.0"
