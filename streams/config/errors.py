"""The one error a bad configuration raises (:class:`ConfigError`), at startup, never later."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad configuration: raised at startup, never later. ``key``, when given, is the setting's dotted
    TOML key (``kafka.bootstrap``), so the message can be completed with where its value came from
    (:class:`streams.config.sources.Sources`). ``vitals`` prints it as one line and exits with code 2."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
