"""Secrets (issue 6, part 6): read from the environment or files, never printed; ClickHouse client
arguments for credentials and TLS built without I/O."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import quote

import pytest

from sinks.clickhouse import ClickHouse, client_kwargs
from streams.config.clickhouse_dsn import database_of
from streams.config.secrets import redact_dsn
from streams.config.settings import ConfigError, load_settings
from streams.kafka.client import client_kwargs as kafka_kwargs

SECRET = "s3cr:t/p@ss?w#rd"  # characters that need percent-encoding in a DSN
SASL = {
    "VITALS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "VITALS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "VITALS_KAFKA_SASL_USERNAME": "vitals",
}


def test_kafka_password_from_env_or_file_and_never_in_repr(tmp_path: Path) -> None:
    secret_file = tmp_path / "kafka-password"
    secret_file.write_text(SECRET + "\n")  # secret files usually end with a newline
    from_env = load_settings(env=SASL | {"VITALS_KAFKA_SASL_PASSWORD": SECRET})
    from_file = load_settings(env=SASL | {"VITALS_KAFKA_SASL_PASSWORD_FILE": str(secret_file)})
    assert from_env.kafka.sasl_password == from_file.kafka.sasl_password == SECRET
    for s in (from_env, from_file):
        for text in (repr(s), str(s), repr(s.kafka), str(s.kafka), repr(list(s.__rich_repr__()))):
            assert SECRET not in text
        assert "sasl_password='***'" in repr(s.kafka)


def test_secret_file_errors_name_the_variable_not_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="VITALS_KAFKA_SASL_PASSWORD_FILE: cannot read"):
        load_settings(env=SASL | {"VITALS_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(env=SASL | {"VITALS_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "empty")})
    (tmp_path / "pw").write_text(SECRET)
    with pytest.raises(ConfigError, match="not both") as caught:
        load_settings(env=SASL | {"VITALS_KAFKA_SASL_PASSWORD": SECRET,
                                  "VITALS_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "pw")})
    assert SECRET not in str(caught.value)


def test_sasl_needs_complete_credentials_and_a_known_mechanism() -> None:
    with pytest.raises(ConfigError, match="SASL needs"):
        load_settings(env=SASL)
    with pytest.raises(ConfigError, match="sasl_mechanism must be one of") as caught:
        load_settings(env=SASL | {"VITALS_KAFKA_SASL_MECHANISM": "SCRAM-MD5", "VITALS_KAFKA_SASL_PASSWORD": SECRET})
    assert SECRET not in str(caught.value)


def test_kafka_client_kwargs_for_sasl_ssl() -> None:
    kafka = load_settings(env=SASL | {"VITALS_KAFKA_SASL_PASSWORD": SECRET}).kafka
    kwargs = kafka_kwargs(kafka)  # no CA file: the system's CAs
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("vitals", SECRET)
    ctx = kwargs["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    sasl_plain = load_settings(env=SASL | {"VITALS_KAFKA_SASL_PASSWORD": SECRET,
                                           "VITALS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}).kafka
    assert "ssl_context" not in kafka_kwargs(sasl_plain)
    plain = load_settings(env={}).kafka
    assert kafka_kwargs(plain) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("https://u:p%40ss@ch.example:9440/db", "https://u:***@ch.example:9440/db"),
        ("http://u:pw@[::1]:8123/", "http://u:***@[::1]:8123/"),
        ("http://:pw@host/x", "http://:***@host/x"),
        ("http://u@host/x", "http://u@host/x"),
        ("http://host:8123/x?password=pw&compress=lz4", "http://host:8123/x?password=***&compress=lz4"),
        ("chdb:///var/lib/vitals/clickhouse", "chdb:///var/lib/vitals/clickhouse"),
        ("http://u:pw@host:notaport/x", "http://u:***@host:notaport/x"),
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_clickhouse_password_from_env_file_or_dsn(tmp_path: Path) -> None:
    (tmp_path / "ch").write_text(SECRET + "\n")
    base = {"VITALS_CLICKHOUSE_DSN": "https://reader:old@ch.example:9440/vitals"}
    variants = [
        load_settings(env=base | {"VITALS_CLICKHOUSE_USER": "vitals", "VITALS_CLICKHOUSE_PASSWORD": SECRET}),
        load_settings(env=base | {"VITALS_CLICKHOUSE_USER": "vitals", "VITALS_CLICKHOUSE_PASSWORD_FILE":
                                  str(tmp_path / "ch")}),
    ]
    (tmp_path / "dsn").write_text("https://vitals:s3cr%3At%2Fp%40ss%3Fw%23rd@ch.example:9440/vitals\n")
    variants.append(load_settings(env={"VITALS_CLICKHOUSE_DSN_FILE": str(tmp_path / "dsn")}))
    for settings in variants:
        kwargs = client_kwargs(settings.effective_clickhouse_dsn, ca_cert="/etc/ca.pem")
        assert (kwargs["username"], kwargs["password"]) == ("vitals", SECRET)
        assert (kwargs["host"], kwargs["port"]) == ("ch.example", 9440) and "database" not in kwargs
        assert database_of(settings.effective_clickhouse_dsn) == "vitals"
        assert SECRET not in repr(settings)
        assert "vitals:***@ch.example:9440" in repr(settings)


def test_clickhouse_client_kwargs_tls() -> None:
    https = client_kwargs("https://u:pw@ch.example:9440/vitals", ca_cert="/etc/ca.pem")
    # https means TLS on any port (clickhouse-connect alone infers TLS from ports 443/8443 only)
    assert https["interface"] == "https" and https["secure"] is True
    assert https["verify"] is True and https["ca_cert"] == "/etc/ca.pem"
    assert "dsn" not in https  # credentials go as arguments (HTTP Basic header), not in a URL
    default_port = client_kwargs("https://ch.example/vitals")
    assert default_port["port"] == 8443 and default_port["username"] is None and default_port["password"] == ""
    insecure = client_kwargs("https://ch.example/vitals", ca_cert="/etc/ca.pem", verify=False)
    assert insecure["verify"] is False and "ca_cert" not in insecure
    plain = client_kwargs("http://u:pw@ch.example:8443/vitals?compress=lz4")
    assert plain["interface"] == "http" and plain["secure"] is False and "verify" not in plain
    assert plain["compress"] == "lz4"
    assert client_kwargs("chdb:///tmp/x") == {"dsn": "chdb:///tmp/x"}
    # the database is vitals' to create and name (streams/config/clickhouse_dsn.py): never the client's at connect time
    assert client_kwargs("chdb:///tmp/x?database=other") == {"dsn": "chdb:///tmp/x"}
    # credentials as query parameters, where the userinfo has none (it wins where it has them)
    query = client_kwargs("http://ch.example:8123/?user=u&password=s3cret&database=vitals")
    assert (query["username"], query["password"]) == ("u", "s3cret") and "database" not in query
    both = client_kwargs("http://u:pw@ch.example:8123/db?password=other&user=x")
    assert (both["username"], both["password"]) == ("u", "pw") and "database" not in both
    with pytest.raises(ValueError, match="scheme"):
        client_kwargs("ftp://u:pw@host/x")


def test_clickhouse_repr_redacts() -> None:
    ch = ClickHouse(f"https://vitals:{quote(SECRET, safe='')}@ch.example:9440/vitals", ca_cert="/etc/ca.pem")
    assert "s3cr" not in repr(ch) and "vitals:***@ch.example" in repr(ch)
    # misread (the password not percent-encoded), its pieces look like a database name: refused unquoted
    with pytest.raises(ConfigError) as refused:
        ClickHouse(f"https://vitals:{SECRET.replace('@', '%40')}@ch.example:9440/vitals")
    assert "s3cr" not in str(refused.value) and "p@ss" not in str(refused.value) and "vitals:***@" in str(refused.value)


def test_redact_dsn_with_unencoded_password() -> None:
    dsn = "https://vitals:s3cr:t/p@ss?w#rd@ch.example:9440/vitals?password=x&token=y"
    redacted = redact_dsn(dsn)
    assert redacted == "https://vitals:***@ch.example:9440/vitals?password=***&token=***"


@pytest.mark.parametrize("dsn", ["http://vitals:Secr3t#x@ch:8123/vitals", "http://vitals:Secr3t/x@ch:8123/db",
                                 "https://vitals:Secr3t?x@ch/db", "http:///db"])
def test_a_dsn_with_an_unencoded_password_fails_at_startup_without_showing_it(dsn: str) -> None:
    """urlsplit reads such a password as the port: clickhouse-connect's error then quoted it."""
    with pytest.raises(ConfigError, match="percent-encode") as raised:
        load_settings(env={"VITALS_CLICKHOUSE_DSN": dsn})
    assert "Secr3t" not in str(raised.value)
    assert load_settings(env={"VITALS_CLICKHOUSE_DSN": "http://vitals:Secr3t%23x@ch:8123/vitals"})


def test_unreadable_ca_files_fail_at_startup_naming_the_setting(tmp_path: Path) -> None:
    for env, name in (({"VITALS_KAFKA_SSL_CAFILE": str(tmp_path / "no.pem")}, "kafka.ssl_cafile"),
                      ({"VITALS_CLICKHOUSE_CA": str(tmp_path / "no.pem")}, "clickhouse_ca")):
        with pytest.raises(ConfigError, match=f"{name}: cannot read"):
            load_settings(env=env)


def test_the_data_directory_is_its_owners_only(tmp_path: Path) -> None:
    from streams.config.private_files import private_dir

    assert private_dir(tmp_path / "new" / "data").stat().st_mode & 0o777 == 0o700
    wide = tmp_path / "wide"
    wide.mkdir(mode=0o755)
    assert private_dir(wide).stat().st_mode & 0o777 == 0o700
