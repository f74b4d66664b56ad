"""Per-app configuration: overridable thresholds, partition-wide settings rejected loudly."""

from __future__ import annotations

import pytest

from streams.settings import ConfigError, load_settings


def test_app_overrides_merge_with_the_defaults() -> None:
    settings = load_settings(env={}, apps={"shop": {"rules": {"burst_events_per_minute": 300}}})
    assert settings.rules_for("shop").burst_events_per_minute == 300
    assert settings.rules_for("other").burst_events_per_minute == settings.rules.burst_events_per_minute


def test_per_app_lateness_is_rejected_since_the_watermark_is_per_partition() -> None:
    with pytest.raises(ConfigError, match="allowed_lateness_s is partition-wide"):
        load_settings(env={}, apps={"shop": {"rules": {"allowed_lateness_s": 60}}})


def test_unknown_store_fails_at_startup() -> None:
    with pytest.raises(ConfigError, match="memory or rocksdb"):
        load_settings(env={}, processing={"store": "leveldb"})
    assert load_settings(env={}, processing={"store": "rocksdb"}).processing.store == "rocksdb"
