"""Configuration errors are configuration errors: the bootstrap servers parsed, unknown ``VITALS_*``
variables and TOML keys refused with the nearest known name, every error naming the setting and where
its value came from; the metrics port and the broker checked at startup (real sockets on localhost);
the supervisor not restarting a worker that exited with the configuration code."""

from __future__ import annotations

import errno
import io
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config.bootstrap import Server, parse_bootstrap
from streams.config.env_names import OTHER_VARIABLES, check_env_names, known_env_names
from streams.config.settings import ConfigError, KafkaSettings, Sources, load_settings
from streams.kafka.reachable import wait_for_kafka
from streams.ops.exit_codes import CONFIG
from streams.ops.ports import bind_error, check_metrics_port

ROOT = Path(__file__).resolve().parents[2]


def test_bootstrap_lists_that_parse() -> None:
    assert parse_bootstrap("127.0.0.1:9092") == [Server("127.0.0.1", 9092)]
    assert parse_bootstrap(" kafka-0.kafka:9093, kafka_1:9093 ") == [Server("kafka-0.kafka", 9093),
                                                                      Server("kafka_1", 9093)]
    assert parse_bootstrap("[::1]:9092") == [Server("::1", 9092)]
    assert str(Server("::1", 9092)) == "[::1]:9092" and str(Server("h", 1)) == "h:1"


@pytest.mark.parametrize(("value", "problem"), [
    ("127.0.0.1:notaport", "port 'notaport' is not a number"),
    (":9092", "':9092' has no host"),
    ("kafka", "'kafka' has no port"),
    ("kafka:0", "port 0 is out of range"),
    ("kafka:65536", "port 65536 is out of range"),
    ("kafka:+1", "port '+1' is not a number"),
    ("kafka:\u00b2", "is not a number"),  # a digit to str.isdigit, not to a port
    ("a:1,,b:2", "an empty entry"),
    ("a:1,", "an empty entry"),
    ("", "no server given"),
    ("kafka://broker:9092", "without a scheme"),
    ("::1:9092", "[address]:port"),
    ("[::1]9092", "[address]:port"),
    ("[nope]:9092", "not an IPv6 address"),
    ("foo bar:9092", "host 'foo bar' is not a host name"),
    ("-x:9092", "host '-x' is not a host name"),
])
def test_bootstrap_lists_that_do_not(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_bootstrap(value)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "vitals.toml"
    path.write_text(text)
    return str(path)


def test_a_bad_bootstrap_names_the_setting_its_value_and_its_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as from_env:
        load_settings(env={"VITALS_KAFKA_BOOTSTRAP": "127.0.0.1:notaport"})
    assert str(from_env.value) == ("kafka.bootstrap = '127.0.0.1:notaport' (from VITALS_KAFKA_BOOTSTRAP): "
                                   "port 'notaport' is not a number")
    assert from_env.value.key == "kafka.bootstrap"
    path = write(tmp_path, '[kafka]\nbootstrap = "broker:99999"\n')
    with pytest.raises(ConfigError, match=re.escape(f"kafka.bootstrap = 'broker:99999' (from {path}): port 99999")):
        load_settings(env={"VITALS_CONFIG": path})
    with pytest.raises(ConfigError, match=re.escape("kafka.bootstrap = 'x' (set by the command): 'x' has no port")):
        load_settings(env={}, kafka__bootstrap="x")


def test_sources_of_each_kind(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret\n")
    path = write(tmp_path, 'app_id = "a"\n[kafka]\nbootstrap = "k:1"\n[apps.shop.rules]\nburst_events_per_minute = 3\n')
    sources = Sources()
    load_settings(env={"VITALS_CONFIG": path, "VITALS_KAFKA_BOOTSTRAP": "k:2", "VITALS_CLICKHOUSE_PASSWORD_FILE":
                       str(tmp_path / "pw")}, sources=sources, data_dir=str(tmp_path))
    assert sources.origin("app_id") == f"from {path}" and sources.cite("app_id") == f"from app_id in {path}"
    assert sources.origin("kafka.bootstrap") == "from VITALS_KAFKA_BOOTSTRAP"  # the environment wins over the file
    assert sources.cite("kafka.bootstrap") == "from VITALS_KAFKA_BOOTSTRAP"
    assert sources.origin("clickhouse_password") == "from VITALS_CLICKHOUSE_PASSWORD_FILE"
    assert sources.origin("apps.shop.rules.burst_events_per_minute") == f"from {path}"
    assert sources.origin("data_dir") == "set by the command"
    assert sources.origin("metrics_port") == "the default"
    assert sources.cite("metrics_port") == "the default metrics_port"
    sources.record("metrics_port", "other", "the port the replay chose")
    assert sources.origin("metrics_port") == "the port the replay chose"
    assert sources.cite("metrics_port") == "metrics_port: the port the replay chose"


@pytest.mark.parametrize(("toml", "expected"), [
    ('[kafka]\npartitions = "many"\n', "kafka.partitions (from {path}): Expected `int`, got `str`"),
    ("[kafka]\npartitions = 0\n", "kafka.partitions must be >= 1 (from {path})"),
    ("[kafka]\nstartup_wait_s = -1\n", "kafka.startup_wait_s must be a number of seconds >= 0 (from {path})"),
    ("metrics_port = 70000\n", "metrics_port out of range (0-65535): 70000 (from {path})"),
    ("[rules]\nhollow_window_d = 0\n", "rules.hollow_window_d must be >= 1, got 0 (from {path})"),
    ("[apps.shop.rules]\nburst_events_per_minute = -1\n", "(from {path})"),
    ('[processing]\nstore = "disk"\n', "processing.store must be memory or rocksdb, got 'disk' (from {path})"),
])
def test_bad_values_in_the_file_name_the_key_and_the_file(tmp_path: Path, toml: str, expected: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"VITALS_CONFIG": path})
    assert expected.format(path=path) in str(caught.value)


def test_bad_values_in_the_environment_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=re.escape("metrics_port = 'x' (from VITALS_METRICS_PORT): not a number")):
        load_settings(env={"VITALS_METRICS_PORT": "x"})
    with pytest.raises(ConfigError, match=re.escape("metrics_port out of range (0-65535): 70000 (from "
                                                    "VITALS_METRICS_PORT)")):
        load_settings(env={"VITALS_METRICS_PORT": "70000"})
    with pytest.raises(ConfigError, match=re.escape("processing.store must be memory or rocksdb, got 'disk' "
                                                    "(from VITALS_STORE)")):
        load_settings(env={"VITALS_STORE": "disk"})


def test_an_unknown_variable_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"VITALS_METRIC_PORT": "9465"})
    assert str(caught.value).startswith(
        "unknown environment variable VITALS_METRIC_PORT (did you mean VITALS_METRICS_PORT?)")
    with pytest.raises(ConfigError) as several:
        check_env_names({"VITALS_BOOTSTRAP": "k:1", "VITALS_NOTHING_LIKE_IT": "1", "OTHER_THING": "1"})
    assert str(several.value).startswith("unknown environment variables VITALS_BOOTSTRAP (did you mean "
                                         "VITALS_KAFKA_BOOTSTRAP?), VITALS_NOTHING_LIKE_IT: unset them")


def test_kubernetes_service_links_are_not_taken_for_typos() -> None:
    """A pod gets these for a Service named vitals-worker (deploy/k8s) or vitals in its namespace."""
    links = {"VITALS_WORKER_SERVICE_HOST": "10.0.0.1", "VITALS_WORKER_SERVICE_PORT": "9464",
             "VITALS_WORKER_SERVICE_PORT_METRICS": "9464", "VITALS_WORKER_PORT": "tcp://10.0.0.1:9464",
             "VITALS_WORKER_PORT_9464_TCP": "tcp://10.0.0.1:9464", "VITALS_WORKER_PORT_9464_TCP_PROTO": "tcp",
             "VITALS_WORKER_PORT_9464_TCP_PORT": "9464", "VITALS_WORKER_PORT_9464_TCP_ADDR": "10.0.0.1",
             "VITALS_SERVICE_HOST": "10.0.0.2", "VITALS_SERVICE_PORT": "80", "VITALS_PORT": "tcp://10.0.0.2:80",
             "VITALS_PORT_80_TCP": "tcp://10.0.0.2:80"}
    check_env_names(links)
    with pytest.raises(ConfigError, match="VITALS_METRIC_PORT "):  # not a service's: no VITALS_METRIC_SERVICE_HOST
        check_env_names(links | {"VITALS_METRIC_PORT": "9465"})
    with pytest.raises(ConfigError, match="VITALS_WORKER_SERVICE_HOST"):  # half a set is no service link
        check_env_names({"VITALS_WORKER_SERVICE_HOST": "10.0.0.1"})


def test_every_known_variable_is_accepted() -> None:
    check_env_names(dict.fromkeys(known_env_names(), "x"))
    assert "VITALS_KAFKA_SASL_PASSWORD_FILE" in known_env_names() and "VITALS_CONFIG" in known_env_names()


def repository_variables() -> Iterator[tuple[str, str]]:
    """(file, name) of every VITALS_* name the code, scripts and deployment files of the repository use."""
    suffixes = {".py", ".sh", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".json"}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    misspelled_on_purpose = {"streams/config/env_names.py", "tests/unit/test_config_errors.py",
                             "tests/integration/test_config_errors.py", "tests/integration/test_newcomer_path.py"}
    for name in set(tracked.splitlines()) - misspelled_on_purpose:
        path = ROOT / name
        if (path.suffix in suffixes or path.name in {"Dockerfile", "run"}) and path.is_file():
            for found in re.findall(r"\bVITALS_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace")):
                yield name, found


def test_the_registry_holds_every_variable_the_repository_reads() -> None:
    """A VITALS_* variable used anywhere and missing from streams/config/env_names.py would stop vitals."""
    found = list(repository_variables())
    assert len({name for _, name in found}) > 20  # the scan sees the repository
    known = known_env_names()
    missing = sorted({(file, name) for file, name in found if name not in known})
    assert not missing, f"add these to streams/config/env_names.py: {missing}"
    assert all(reader for reader in OTHER_VARIABLES.values())


@pytest.mark.parametrize(("toml", "problem"), [
    ('[kafka]\nbootstrp = "k:1"\n', "unknown key kafka.bootstrp (did you mean kafka.bootstrap?)"),
    ('bootstrap = "k:1"\n', "unknown key bootstrap (did you mean kafka.bootstrap?)"),  # a key out of its table
    ('[kafka]\nstore = "rocksdb"\n', "unknown key kafka.store (did you mean processing.store?)"),
    ("[apps.shop.rules]\nburst_per_minute = 3\n",
     "unknown key apps.shop.rules.burst_per_minute (did you mean apps.shop.rules.burst_events_per_minute?)"),
    ("[apps.shop]\nrulez = {}\n", "unknown key apps.shop.rulez (did you mean apps.shop.rules?)"),
    ("[kafkaa]\nbootstrap = 'k:1'\n", "unknown key kafkaa (did you mean kafka?)"),
    ("zzz = 1\n[processing]\nflush_intervall_s = 2\n",
     "unknown keys zzz, processing.flush_intervall_s (did you mean processing.flush_interval_s?)"),
])
def test_an_unknown_key_in_the_file_names_the_file_its_path_and_the_nearest_key(
        tmp_path: Path, toml: str, problem: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"VITALS_CONFIG": path})
    assert str(caught.value) == f"config file {path}: {problem}"


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_metrics_port_in_use_is_a_configuration_error(listening: socket.socket) -> None:
    port = listening.getsockname()[1]
    sources = Sources()
    settings = load_settings(env={"VITALS_METRICS_PORT": str(port)}, sources=sources)
    with pytest.raises(ConfigError) as caught:
        check_metrics_port(settings, sources)
    assert str(caught.value).startswith(
        f"metrics port {port} (from VITALS_METRICS_PORT) is already in use by another process")
    check_metrics_port(load_settings(env={"VITALS_METRICS_PORT": "0"}), Sources())  # any free port
    check_metrics_port(load_settings(env={"VITALS_METRICS_PORT": str(closed_port())}), Sources())


def test_bind_errors_are_told_apart_by_errno() -> None:
    settings = load_settings(env={})
    in_use = bind_error(OSError(errno.EADDRINUSE, "whatever the text"), settings, Sources())
    assert in_use is not None and in_use.key == "metrics_port" and "the default metrics_port" in str(in_use)
    not_here = bind_error(OSError(errno.EADDRNOTAVAIL, "x"), settings, Sources())
    assert not_here is not None and not_here.key == "metrics_host"
    assert bind_error(OSError(errno.EIO, "Address already in use"), settings, Sources()) is None


def kafka_at(bootstrap: str, wait_s: float) -> KafkaSettings:
    return KafkaSettings(bootstrap=bootstrap, startup_wait_s=wait_s)


def test_a_listening_broker_is_not_waited_for(listening: socket.socket) -> None:
    out = io.StringIO()
    wait_for_kafka(kafka_at(f"127.0.0.1:{closed_port()},127.0.0.1:{listening.getsockname()[1]}", 0), Sources(), out)
    assert out.getvalue() == ""


def test_a_refusing_broker_is_waited_for_then_a_configuration_error() -> None:
    port = closed_port()
    now = [0.0]
    out = io.StringIO()
    with pytest.raises(ConfigError) as caught:
        wait_for_kafka(kafka_at(f"127.0.0.1:{port}", 25), Sources(), out, clock=lambda: now[0],
                       sleep=lambda s: now.__setitem__(0, now[0] + s))
    line = f"vitals: waiting for Kafka at 127.0.0.1:{port} (the default kafka.bootstrap): connection refused; retrying"
    assert out.getvalue().splitlines() == [line] * 3  # at 0, 10 and 20 s of 25
    assert str(caught.value).startswith(f"Kafka at 127.0.0.1:{port} (the default kafka.bootstrap) is not reachable: "
                                        "connection refused (waited 25 s, kafka.startup_wait_s)")
    out = io.StringIO()
    with pytest.raises(ConfigError):
        wait_for_kafka(kafka_at(f"127.0.0.1:{port}", 0), Sources(), out)
    assert out.getvalue() == ""  # no wait: no waiting line


def test_a_host_that_does_not_resolve_is_a_configuration_error_at_once() -> None:
    sources = Sources()
    sources.record("kafka.bootstrap", "env", "VITALS_KAFKA_BOOTSTRAP")
    with pytest.raises(ConfigError, match=re.escape("Kafka host 'nosuchhost.invalid' (from VITALS_KAFKA_BOOTSTRAP) "
                                                    "does not resolve")):
        wait_for_kafka(kafka_at("nosuchhost.invalid:9092", 60), sources, io.StringIO())


def test_the_supervisor_does_not_restart_a_worker_with_a_configuration_error() -> None:
    code = f"import sys; print('vitals: configuration error: the line', file=sys.stderr); sys.exit({CONFIG})"
    done = subprocess.run([sys.executable, "-P", "-c", "import sys; from streams.ops.supervisor import supervise; "
                           f"sys.exit(supervise([sys.executable, '-I', '-c', {code!r}]))"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == CONFIG
    assert done.stderr == "vitals: configuration error: the line\n"  # once, passed through, nothing else
