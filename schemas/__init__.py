"""Event, alert and dead-letter schemas: JSON Schema files plus their Python models."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).parent

__all__ = ["SCHEMA_DIR"]
