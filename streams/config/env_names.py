"""Every ``VITALS_*`` environment variable something in this repository reads, in one registry, so that
a misspelled one (``VITALS_METRIC_PORT``) stops vitals with a suggestion instead of being ignored.

The settings' variables are :data:`ENV_KEYS` (each with its TOML key) and the ``_FILE`` variants of
the secrets among them (:data:`SECRET_FILE_KEYS`); :data:`OTHER_VARIABLES` are the rest, each with who
reads it. A variable read anywhere new goes here too (tests/unit/test_config_errors.py checks the
repository against this registry).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from streams.config.errors import ConfigError

PREFIX = "VITALS_"

ENV_KEYS: dict[str, tuple[str, ...]] = {
    "VITALS_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "VITALS_APP_ID": ("app_id",),
    "VITALS_EVENTS_TOPIC": ("events_topic",),
    "VITALS_ALERTS_TOPIC": ("alerts_topic",),
    "VITALS_DLQ_TOPIC": ("dlq_topic",),
    "VITALS_SEGMENTS_TOPIC": ("segments_topic",),
    "VITALS_CLICKHOUSE_DSN": ("clickhouse_dsn",),
    "VITALS_METRICS_PORT": ("metrics_port",),
    "VITALS_DATA_DIR": ("data_dir",),
    "VITALS_STORE": ("processing", "store"),  # memory | rocksdb
    "VITALS_INPUT_FORMAT": ("input", "format"),  # vitals | segment | posthog (SPEC 8)
    # secured Kafka: secrets only from the environment or the config file
    "VITALS_KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "VITALS_KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "VITALS_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "VITALS_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "VITALS_KAFKA_SSL_CAFILE": ("kafka", "ssl_cafile"),
    "VITALS_CLICKHOUSE_USER": ("clickhouse_user",),
    "VITALS_CLICKHOUSE_PASSWORD": ("clickhouse_password",),
    "VITALS_CLICKHOUSE_CA": ("clickhouse_ca",),
    "VITALS_METRICS_HOST": ("metrics_host",),
    "VITALS_COLLECT_PORT": ("collect", "port"),  # vitals collect (SPEC section 8)
    "VITALS_COLLECT_HOST": ("collect", "host"),
}

# Secrets can also come from files (Kubernetes/Docker secrets): NAME_FILE holds the value of NAME.
SECRET_FILE_KEYS = (
    "VITALS_KAFKA_SASL_USERNAME",
    "VITALS_KAFKA_SASL_PASSWORD",
    "VITALS_CLICKHOUSE_DSN",
    "VITALS_CLICKHOUSE_USER",
    "VITALS_CLICKHOUSE_PASSWORD",
)

OTHER_VARIABLES: dict[str, str] = {
    "VITALS_CONFIG": "streams/config/settings.py load_settings: the TOML file",
    "VITALS_LOGLEVEL": "streams/cli/worker.py: the default of vitals worker --loglevel",
    "VITALS_SUPERVISED": "streams/ops/supervisor.py: set in the worker process the supervisor starts",
    "VITALS_FAULTS_FILE": "streams/ops/faults.py: the crash points of the fault-injection tests",
    "VITALS_KAFKA_LIBS": "deploy/kafka/kafka.sh: where the local broker's jars are kept",
    "VITALS_KAFKA_EXTRA_PROPS": "deploy/kafka/kafka.sh (set by streams/devtools/local_kafka.py): broker properties",
    "VITALS_KAFKA_SCRAM_USER": "deploy/kafka/kafka.sh: the secured local broker's SCRAM user",
    "VITALS_KAFKA_SCRAM_PASSWORD_FILE": "deploy/kafka/kafka.sh: the secured local broker's SCRAM password",
    "VITALS_SKIP_PROMETHEUS": "deploy/setup.sh: do not install Prometheus",
    "VITALS_SKIP_CHROMIUM": "deploy/setup.sh: do not install Chromium",
    "VITALS_BENCH_LOG_DIR": "bench/run.py: keep each benchmark process's output",
    "VITALS_DOCS_SCREENSHOT": "tests/integration/test_report_replay.py: rewrite docs/report.png on purpose",
    "VITALS_HOSTILE_SCALE": "tests/integration/test_hostile.py: the size of the hostile input",
    "VITALS_TEST_LAG_TIMEOUT": "tests/integration/test_faults.py, test_alerts_oracle.py: how long to wait for lag 0",
}


def known_env_names() -> set[str]:
    """Every ``VITALS_*`` variable something in this repository reads."""
    return {*ENV_KEYS, *(f"{name}_FILE" for name in SECRET_FILE_KEYS), *OTHER_VARIABLES}


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (compared without the common prefix), if one is close."""
    by_tail = {k.removeprefix(PREFIX): k for k in known}
    close = difflib.get_close_matches(name.removeprefix(PREFIX), list(by_tail), n=1, cutoff=0.75)
    return by_tail[close[0]] if close else None


def service_links(env: Mapping[str, str]) -> set[str]:
    """The variables Kubernetes sets in a pod for each Service of its namespace (``enableServiceLinks``):
    for a Service ``vitals-worker``, ``VITALS_WORKER_SERVICE_HOST``, ``VITALS_WORKER_SERVICE_PORT[_<name>]``,
    ``VITALS_WORKER_PORT`` and ``VITALS_WORKER_PORT_<port>_TCP[_PROTO|_PORT|_ADDR]``. Recognised only
    as a set (``_SERVICE_HOST`` with ``_SERVICE_PORT``), so a lone ``VITALS_METRIC_PORT`` is still a typo."""
    services = [name.removesuffix("_SERVICE_HOST") for name in env
                if name.endswith("_SERVICE_HOST") and f"{name.removesuffix('_SERVICE_HOST')}_SERVICE_PORT" in env]
    return {name for name in env for service in services
            if name == f"{service}_SERVICE_HOST" or name == f"{service}_PORT"
            or name.startswith((f"{service}_SERVICE_PORT", f"{service}_PORT_"))}


def check_env_names(env: Mapping[str, str]) -> None:
    """ConfigError naming every ``VITALS_*`` variable of ``env`` that nothing reads, with the nearest
    known name (Kubernetes' service links are not ours, and are left alone)."""
    known = known_env_names() | service_links(env)
    unknown = sorted(name for name in env if name.startswith(PREFIX) and name not in known)
    if not unknown:
        return
    described = []
    for name in unknown:
        near = suggest(name, known)
        described.append(f"{name} (did you mean {near}?)" if near else name)
    noun, it = ("variable", "it") if len(unknown) == 1 else ("variables", "them")
    raise ConfigError(f"unknown environment {noun} {', '.join(described)}: unset {it}, or see docs/configuration.md "
                      "for the names")
