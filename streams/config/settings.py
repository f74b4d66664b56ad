"""One typed settings object, built once at startup from a TOML file and the environment.

Precedence: defaults < TOML file (``VITALS_CONFIG``) < environment variables (SPEC section 5).
Unknown keys and ill-typed values raise :class:`ConfigError` with the offending path.
Thresholds of SPEC section 3 live in :class:`RuleSettings`; ``[apps.<app_id>.rules]`` overrides
them per tenant.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

from streams.config import local_broker
from streams.config.bootstrap import parse_bootstrap
from streams.config.clickhouse_dsn import database_of
from streams.config.collect import CollectSettings
from streams.config.env_names import ENV_KEYS, SECRET_FILE_KEYS, check_env_names
from streams.config.errors import ConfigError
from streams.config.inputs import InputSettings
from streams.config.secrets import host_and_port, read_secret_file, redact_dsn, unquote_or_none
from streams.config.segments import SegmentSettings, merged
from streams.config.sources import Sources, explain
from streams.config.unknown_keys import check_file_keys

# windows and counts a rule cannot work with at 0
AT_LEAST_ONE = frozenset({"no_login_short_h", "no_login_long_d", "no_interaction_d", "activity_drop_window_d",
                          "hollow_window_d", "hollow_post_window_d", "burst_events_per_minute", "device_farm_users"})


# the device-farm threshold's ceiling: a device's state holds fewer user ids than this per day (each up to 512
# bytes of UTF-8) for the few days it keeps, and its alert lists them: its records stay under 512 KiB (SPEC 4)
MAX_DEVICE_FARM_USERS = 100


class RuleSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Every threshold of SPEC section 3 (defaults as in the spec)."""

    allowed_lateness_s: int = 3600
    # an event's time moves stream time at most this far past its Kafka record's timestamp (SPEC 2)
    max_clock_skew_s: int = 300
    dedup_horizon_s: int = 86_400
    no_login_short_h: int = 72
    no_login_long_d: int = 90
    no_interaction_d: int = 60
    activity_drop_min_base: int = 10
    activity_drop_ratio: float = 0.7
    activity_drop_window_d: int = 7
    hollow_window_d: int = 30
    hollow_min_active_days: int = 10
    hollow_max_payment: float = 100.0
    hollow_post_window_d: int = 7
    hollow_posts_below: int = 3
    hollow_social_below: int = 10
    burst_events_per_minute: int = 100
    device_farm_users: int = 5
    retention_alert_below: float = 0.18
    complaint_rate_alert_above: float = 0.03
    # the days of counters the app's [segments] windows read (filled in by Settings.rules_for: setting it
    # only makes the state keep more days)
    segment_days_needed: int = 0

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"rules.{name} must be a number >= 0, got {value}", key=f"rules.{name}")
            if name in AT_LEAST_ONE and value < 1:
                raise ConfigError(f"rules.{name} must be >= 1, got {value}", key=f"rules.{name}")
        for name in ("retention_alert_below", "complaint_rate_alert_above"):
            if getattr(self, name) > 1:
                raise ConfigError(f"rules.{name} is a share of users: 0..1, got {getattr(self, name)}",
                                  key=f"rules.{name}")
        if self.device_farm_users > MAX_DEVICE_FARM_USERS:  # the users of a device-day are held and listed
            raise ConfigError(f"rules.device_farm_users must be <= {MAX_DEVICE_FARM_USERS}, "
                              f"got {self.device_farm_users}", key="rules.device_farm_users")
        if self.hollow_window_d < self.hollow_post_window_d:
            raise ConfigError("rules.hollow_post_window_d must not exceed rules.hollow_window_d",
                              key="rules.hollow_post_window_d")
        if self.retention_days_needed > 400:
            raise ConfigError("rule windows longer than 400 days are not supported")

    @property
    def retention_days_needed(self) -> int:
        """Days of per-day counters the rules look back over (the state keeps this many)."""
        return max(2 * self.activity_drop_window_d, self.hollow_window_d, self.segment_days_needed) + 2


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    partitions: int = 8  # used when vitals creates the topics
    replication_factor: int = 1
    # how long a worker (or a command) starting waits for a broker that refuses connections (kafka/reachable.py)
    startup_wait_s: float = 120.0

    def __post_init__(self) -> None:
        if self.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError(f"kafka.security_protocol: unknown protocol {self.security_protocol!r}",
                              key="kafka.security_protocol")
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ConfigError("kafka: SASL needs sasl_mechanism, sasl_username and sasl_password")
        if self.sasl_mechanism is not None and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"kafka.sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}",
                              key="kafka.sasl_mechanism")
        if self.partitions < 1:
            raise ConfigError("kafka.partitions must be >= 1", key="kafka.partitions")
        if not 0 <= self.startup_wait_s < float("inf"):
            raise ConfigError("kafka.startup_wait_s must be a number of seconds >= 0", key="kafka.startup_wait_s")

    def __repr__(self) -> str:  # never print the password
        return (
            f"KafkaSettings(bootstrap={self.bootstrap!r}, security_protocol={self.security_protocol!r}, "
            f"sasl_mechanism={self.sasl_mechanism!r}, sasl_username={self.sasl_username!r}, "
            f"sasl_password={'***' if self.sasl_password else None!r}, ssl_cafile={self.ssl_cafile!r})"
        )

    def __rich_repr__(self) -> Any:  # msgspec's default would yield every field, the password too
        yield "bootstrap", self.bootstrap
        yield "security_protocol", self.security_protocol


class ProcessingSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    batch_max_messages: int = 5000  # most messages one fetch hands over (Kafka max.poll.records)
    fetch_queue: int = 2  # fetches queued for each agent ahead of its processing (the consumer waits beyond)
    flush_interval_s: float = 1.0
    flush_max_rows: int = 250_000
    # bytes held in flight (queued fetches, processed messages and outputs, the flush job: streams/worker/budget.py);
    # at the budget consumption pauses. The default leaves a 2 GiB container room for the state and engine
    memory_budget_mb: int = 512
    sink_buffer_cap_rows: int = 500_000
    sink_retry_initial_s: float = 0.2
    sink_retry_max_s: float = 10.0
    lag_watchdog_s: float = 120.0  # exit (and be restarted) if a lagging partition's commit stalls this long; 0: off
    restart_backoff_max_s: float = 30.0  # the supervisor's longest wait between restarts of a dying worker
    session_timeout_s: float = 15.0  # a dead worker's partitions move after this
    store: str = "memory"  # memory | rocksdb (local state survives restarts; needs the rocksdict package)
    # garbage collection at the pipeline's pace (streams/ops/paced_gc.py): Python's automatic collector
    # off, a full collection after a flush job every gc_full_interval_s
    gc_paced: bool = True
    gc_full_interval_s: float = 60.0
    # without gc_paced: allocations between young-generation collections (Python's default is 700;
    # 0 keeps it)
    gc_gen0_threshold: int = 50_000
    # how long a thread holds the GIL while another waits for it (Python's default is 5 ms): the
    # consumer and the ClickHouse threads each wait that long per turn behind a busy engine
    gil_switch_interval_ms: float = 1.0
    # the engine's per-event loop and the event decoder's first pass in C (streams/engine/c/,
    # schemas/_decode.c, built by pip install); false: in Python (and msgspec)
    native_engine: bool = True
    # segments (SPEC section 7): off only to measure what they cost (bench.run); alerts then carry no segment
    segments: bool = True

    def __post_init__(self) -> None:
        if self.batch_max_messages < 1 or self.flush_max_rows < 1:
            raise ConfigError("processing: batch sizes must be >= 1")
        if self.memory_budget_mb < 16:
            raise ConfigError(f"processing.memory_budget_mb must be >= 16, got {self.memory_budget_mb}",
                              key="processing.memory_budget_mb")
        if not 1 <= self.fetch_queue <= 64:
            raise ConfigError("processing.fetch_queue must be in [1, 64]",
                              key="processing.fetch_queue")
        if self.sink_buffer_cap_rows < self.flush_max_rows:
            raise ConfigError("processing.sink_buffer_cap_rows must be >= flush_max_rows",
                              key="processing.sink_buffer_cap_rows")
        if self.gc_gen0_threshold < 0:
            raise ConfigError("processing.gc_gen0_threshold must be >= 0",
                              key="processing.gc_gen0_threshold")
        if not 0 < self.gc_full_interval_s < float("inf"):
            raise ConfigError("processing.gc_full_interval_s must be a positive number of seconds",
                              key="processing.gc_full_interval_s")
        if not 0 < self.gil_switch_interval_ms <= 100:
            raise ConfigError("processing.gil_switch_interval_ms must be in (0, 100]",
                              key="processing.gil_switch_interval_ms")
        if self.store not in ("memory", "rocksdb"):
            raise ConfigError(f"processing.store must be memory or rocksdb, got {self.store!r}", key="processing.store")
        if self.store == "rocksdb":
            import importlib.util

            if importlib.util.find_spec("rocksdict") is None:
                raise ConfigError("processing.store = rocksdb needs the rocksdict package (vitals[rocksdb])",
                                  key="processing.store")


PARTITION_WIDE = frozenset({"allowed_lateness_s", "max_clock_skew_s"})  # the watermark is per partition, not per app


class AppOverride(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    rules: dict[str, Any] = {}
    segments: dict[str, Any] = {}


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    app_id: str = "vitals"
    events_topic: str = "vitals.events"
    alerts_topic: str = "vitals.alerts"
    dlq_topic: str = "vitals.events.dlq"
    segments_topic: str = "vitals.segments"
    clickhouse_dsn: str = ""  # default: chdb:///<data_dir>/clickhouse
    clickhouse_user: str | None = None  # override the DSN's user (http(s) only)
    clickhouse_password: str | None = None  # override the DSN's password (http(s) only)
    clickhouse_ca: str | None = None
    clickhouse_verify: bool = True
    # raw storage: every message of the events topic, as it arrived, in ``raw_messages``
    clickhouse_raw_messages: bool = True
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    data_dir: str = "./.vitals"
    kafka: KafkaSettings = KafkaSettings()
    processing: ProcessingSettings = ProcessingSettings()
    rules: RuleSettings = RuleSettings()
    segments: SegmentSettings = SegmentSettings()
    apps: dict[str, AppOverride] = {}
    input: InputSettings = InputSettings()  # SPEC 8: the events topic's format, more source topics
    collect: CollectSettings = CollectSettings()  # vitals collect (streams/config/collect.py)

    def __post_init__(self) -> None:
        if not (0 <= self.metrics_port < 65536):
            raise ConfigError(f"metrics_port out of range (0-65535): {self.metrics_port}", key="metrics_port")
        for name in ("app_id", "events_topic", "alerts_topic", "dlq_topic", "segments_topic"):
            if not getattr(self, name):
                raise ConfigError(f"{name} must not be empty", key=name)
        dsn = self.clickhouse_dsn
        if dsn:
            parts = urlsplit(dsn)
            if parts.scheme not in ("chdb", "http", "https"):
                raise ConfigError("clickhouse_dsn must be chdb:///dir or http(s)://user:pass@host:port/db",
                                  key="clickhouse_dsn")
            if parts.scheme != "chdb" and not host_and_port(parts):  # no DSN in the message: it may hold a password
                raise ConfigError("clickhouse_dsn: no valid host:port; percent-encode special characters "
                                  "(@ : / ? #) in its user and password", key="clickhouse_dsn")
            try:
                database_of(dsn)
            except ValueError as exc:
                raise ConfigError(f"clickhouse_dsn: {exc}", key="clickhouse_dsn") from None
        for app, override in self.apps.items():
            # time is per partition, shared by every app on it: these cannot differ per app
            shared = sorted(PARTITION_WIDE & override.rules.keys())
            if shared:
                raise ConfigError(f"apps.{app}.rules: {', '.join(shared)} is partition-wide; set it in [rules] only")
            self.rules_for(app) if override.rules else None
            self.segments_for(app)
        self.input.check_topics(self.events_topic, (self.alerts_topic, self.dlq_topic, self.segments_topic,
                                                    f"{self.app_id}-reroute", f"{self.app_id}-device-obs"))

    @property
    def effective_clickhouse_dsn(self) -> str:
        """The DSN the sink uses; ``clickhouse_user``/``clickhouse_password`` are merged into an http(s)
        DSN (percent-encoded). Holds the secret: print only through :func:`redact_dsn`."""
        dsn = self.clickhouse_dsn or f"chdb://{Path(self.data_dir).resolve()}/clickhouse"
        parts = urlsplit(dsn)
        if parts.scheme not in ("http", "https") or (self.clickhouse_user is None and self.clickhouse_password is None):
            return dsn
        user = self.clickhouse_user if self.clickhouse_user is not None else unquote_or_none(parts.username)
        password = self.clickhouse_password if self.clickhouse_password is not None else unquote_or_none(parts.password)
        userinfo = quote(user or "default", safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        netloc = f"{userinfo}@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def rules_for(self, app_id: str | None) -> RuleSettings:
        """The app's rules (``[apps.<app_id>.rules]`` over ``[rules]``; None: an app not configured),
        keeping the days its segments read."""
        override = self.apps.get(app_id) if app_id is not None else None
        days = (self.segments if app_id is None else self.segments_for(app_id)).days_needed
        rules = self.rules
        if override is not None and override.rules:
            merged = msgspec.to_builtins(self.rules) | dict(override.rules)
            try:
                rules = msgspec.convert(merged, RuleSettings)
            except msgspec.ValidationError as exc:
                raise ConfigError(f"apps.{app_id}.rules: {exc}", key=f"apps.{app_id}.rules") from exc
        if rules.retention_days_needed < days + 2:  # the segment windows read further back than the rules
            rules = msgspec.structs.replace(rules, segment_days_needed=days)
        return rules

    def segments_for(self, app_id: str) -> SegmentSettings:
        override = self.apps.get(app_id)
        return self.segments if override is None else merged(self.segments, override.segments,
                                                              f"apps.{app_id}.segments")

    def __repr__(self) -> str:
        return (
            f"Settings(app_id={self.app_id!r}, events_topic={self.events_topic!r}, "
            f"clickhouse_dsn={redact_dsn(self.effective_clickhouse_dsn)!r}, kafka={self.kafka!r})"
        )

    def __rich_repr__(self) -> Any:  # msgspec's default would yield every field, secrets too
        yield "app_id", self.app_id
        yield "clickhouse_dsn", redact_dsn(self.effective_clickhouse_dsn)
        yield "kafka", self.kafka


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def load_settings(env: Mapping[str, str] | None = None, config_file: str | None = None, *,
                  sources: Sources | None = None, **overrides: Any) -> Settings:
    """Build the settings: file, then environment, then explicit keyword overrides. ``sources``, if given,
    is filled with where each value came from (for the errors found later, at startup)."""
    from_process, env = env is None, os.environ if env is None else env
    sources = Sources() if sources is None else sources
    check_env_names(env)
    tree: dict[str, Any] = {}
    path = config_file or env.get("VITALS_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                tree = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        check_file_keys(tree, Settings, path, {(AppOverride, "rules"): RuleSettings})
        sources.record_tree(tree, "file", path)
    env = dict(env)
    for name in SECRET_FILE_KEYS:
        file_var = f"{name}_FILE"
        if file_var in env:
            if name in env:
                raise ConfigError(f"set {name} or {file_var}, not both")
            env[name] = read_secret_file(file_var, env[file_var])
            sources.record(".".join(ENV_KEYS[name]), "env", file_var)
    for name, target in ENV_KEYS.items():
        if name in env:
            raw: Any = env[name]
            if f"{name}_FILE" not in env:
                sources.record(".".join(target), "env", name)
            if target in (("metrics_port",), ("collect", "port")):
                try:
                    raw = int(raw)
                except ValueError:
                    raise ConfigError(f"{'.'.join(target)} = {raw!r} (from {name}): not a number",
                                      key=".".join(target)) from None
            _set_path(tree, target, raw)
    for key, value in overrides.items():
        _set_path(tree, tuple(key.split("__")), value)
        sources.record(key.replace("__", "."), "argument", "")
    if from_process:  # unconfigured: the running local broker's; an explicit env (a test's) is what it says
        found = local_broker.fill_bootstrap(tree, Settings().data_dir)
        if found is not None and found.origin == "recorded":
            sources.record("kafka.bootstrap", "other", "the broker `vitals kafka start` recorded")
    try:
        settings = msgspec.convert(tree, Settings)
    except msgspec.ValidationError as exc:
        raise explain(exc, sources) from None
    try:
        parse_bootstrap(settings.kafka.bootstrap)
    except ValueError as exc:
        raise ConfigError(f"kafka.bootstrap = {settings.kafka.bootstrap!r} ({sources.origin('kafka.bootstrap')}): "
                          f"{exc}", key="kafka.bootstrap") from None
    for name, path in (("kafka.ssl_cafile", settings.kafka.ssl_cafile), ("clickhouse_ca", settings.clickhouse_ca)):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"{name}: cannot read {path} ({sources.origin(name)})", key=name)
    if settings.processing.native_engine:
        import importlib.util

        for module, source in (("streams.engine._engine", "streams/engine/c/"),
                               ("schemas._decode", "schemas/_decode.c")):
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"processing.native_engine: the C extension {module} ({source}) is not built; "
                                  "install vitals with pip (it needs a C compiler and Python's headers) or set it "
                                  "false")
    return settings
