"""Security on the real broker (issue 6, part 6): the local Kafka with a SASL_SSL listener (a
generated CA and broker certificate, SCRAM-SHA-512 credentials written at format time); a real
worker processes a generated history end to end through it; the password never shows in its log
or errors; a wrong password fails loudly and clearly; nothing but the metrics port listens."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from sinks import endpoint
from sinks.base import SinkBackpressure
from sinks.clickhouse import ClickHouse, embedded_dir
from streams.devtools import local_kafka as localkafka
from streams.devtools.generator import GenConfig, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from tests.conftest import Deployment, make_deployment
from tests.oracle import expected_daily, expected_dlq_reasons
from tests.procs import listening_ports, wait_for

pytestmark = pytest.mark.integration

QUERY = ("SELECT app_id, user_id, toString(day), events, logins, payments, toString(payment_amount), "
         "content_posts, social, complaints FROM vitals.user_activity_daily FINAL")


@dataclass
class SecureKafka:
    bootstrap: str
    ca: Path
    user: str
    password: str
    password_file: Path

    def env(self, password_file: Path | None = None) -> dict[str, str]:
        return {
            "VITALS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "VITALS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "VITALS_KAFKA_SASL_USERNAME": self.user,
            "VITALS_KAFKA_SASL_PASSWORD_FILE": str(password_file or self.password_file),
            "VITALS_KAFKA_SSL_CAFILE": str(self.ca),
        }


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    base = tmp_path_factory.mktemp("secure-kafka")
    password = secrets.token_urlsafe(24)
    password_file = base / "kafka-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    directory = base / "kafka"
    env = dict(os.environ, VITALS_KAFKA_SCRAM_USER="vitals-worker", VITALS_KAFKA_SCRAM_PASSWORD_FILE=str(password_file))
    done = subprocess.run(["bash", str(localkafka.SCRIPT), "start", str(directory)], env=env, check=True,
                          capture_output=True, text=True, timeout=600)
    try:
        bootstrap = done.stdout.strip().splitlines()[-1]
        yield SecureKafka(bootstrap, directory / "tls" / "ca.pem", "vitals-worker", password, password_file)
    finally:
        localkafka.stop(directory)
    for log in (directory / "server.log", directory / "format.log"):
        assert password not in log.read_text(errors="replace"), f"the broker's {log.name} shows the password"


def secure_deployment(secure_kafka: SecureKafka, tmp_path: Path) -> Deployment:
    deployment = make_deployment(secure_kafka.bootstrap, tmp_path)
    deployment.env.update(secure_kafka.env())
    return deployment


def test_worker_end_to_end_over_sasl_ssl(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    deployment = secure_deployment(secure_kafka, tmp_path)
    settings = deployment.settings
    assert settings.kafka.sasl_password == secure_kafka.password  # read from the _FILE variable
    cfg = GenConfig(users=300, days=8, events=8_000, seed=11, batch=10, dup_rate=0.02, invalid_rate=0.01,
                    unkeyed_rate=0.01)
    cfg.partitions = asyncio.run(prepare_topics(settings))
    history = generate(cfg)
    asyncio.run(produce_history(settings, history))
    worker = deployment.worker("secure")
    try:
        # Faust's web server is off: the only listening sockets are the metrics endpoint and the read-only
        # query endpoint on the embedded ClickHouse (sinks/query_server.py), both on loopback
        engine_dir = embedded_dir(settings.effective_clickhouse_dsn)
        assert engine_dir is not None
        served = wait_for(lambda: worker.poll() is None and endpoint.read_live(engine_dir), 120, "the query endpoint")
        expected = {("127.0.0.1", settings.metrics_port), ("127.0.0.1", served.port)}
        wait_for(lambda: worker.poll() is None and listening_ports(worker.pid) == expected, 120, "the metrics listener")
        wait_for_lag_zero(settings, worker, len(history.messages), timeout_s=600, progress=False)
        assert listening_ports(worker.pid) == expected
    finally:
        stop_worker(worker)

    expected = expected_daily(history)
    got = {}
    for app, user, day, *values in deployment.query(QUERY):
        got[(app, user, day)] = (values[0], values[1], values[2], Decimal(values[3]), *values[4:])
    assert got == expected
    dlq = [orjson.loads(r.value) for r in deployment.read(settings.dlq_topic)]  # read over SASL_SSL too
    assert Counter(r["reason"] for r in dlq) == expected_dlq_reasons(history)

    log = (tmp_path / "secure.log").read_text(errors="replace")
    assert "SASL_SSL" in log and "sasl_password='***'" in log  # the settings were logged, redacted
    assert secure_kafka.password not in log


def test_wrong_password_fails_loudly_without_the_secret(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(16)
    wrong_file = tmp_path / "wrong-password"
    wrong_file.write_text(wrong)
    deployment = make_deployment(secure_kafka.bootstrap, tmp_path)
    deployment.env.update(secure_kafka.env(password_file=wrong_file))
    worker = deployment.worker("wrong")
    try:
        code = worker.wait(timeout=180)
    finally:
        stop_worker(worker)
    log = (tmp_path / "wrong.log").read_text(errors="replace")
    assert code == 2, log[-3000:]
    assert "configuration error" in log and "rejected the credentials of user 'vitals-worker'" in log, log[-3000:]
    assert wrong not in log and secure_kafka.password not in log


def test_untrusted_broker_certificate_fails_clearly(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(other_ca), "-subj", "/CN=not the broker's CA", "-days", "1"],
                   check=True, capture_output=True, timeout=60)
    deployment = make_deployment(secure_kafka.bootstrap, tmp_path)
    deployment.env.update(secure_kafka.env() | {"VITALS_KAFKA_SSL_CAFILE": str(other_ca)})
    worker = deployment.worker("untrusted")
    try:
        code = worker.wait(timeout=180)
    finally:
        stop_worker(worker)
    log = (tmp_path / "untrusted.log").read_text(errors="replace")
    assert code == 2 and "TLS handshake with Kafka" in log and "certificate" in log, log[-3000:]
    assert secure_kafka.password not in log


class TLSListener:
    """A TLS endpoint with the broker's certificate that records what a client sends, then closes.
    No ClickHouse server is available here (Debian's is too old for clickhouse-connect), so this
    checks the client's side of the wire: TLS on a non-default port, the CA and the credentials."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.handshake_errors: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TLSListener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    self.requests.append(data)
                    tls.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except (ssl.SSLError, OSError) as exc:
                self.handshake_errors.append(type(exc).__name__)
                conn.close()


def test_clickhouse_https_tls_ca_and_credentials(secure_kafka: SecureKafka) -> None:
    tls = secure_kafka.ca.parent
    password = "ch-" + secrets.token_urlsafe(16)
    with TLSListener(tls / "broker.pem", tls / "broker.key") as server:
        # https on a port clickhouse-connect would not guess TLS for; trusted through our CA
        ch = ClickHouse(f"https://vitals:{password}@127.0.0.1:{server.port}/vitals", ca_cert=str(secure_kafka.ca))
        with pytest.raises(SinkBackpressure) as caught:
            ch.ensure_schema()
        wait_for(lambda: server.requests, 30, "a request over TLS")
        request = server.requests[0]
        expected_auth = b"Basic " + base64.b64encode(f"vitals:{password}".encode())
        assert expected_auth in request, request[:500]  # credentials only in a header, inside TLS
        assert password.encode() not in request.split(b"\r\n")[0]  # never in the URL
        for text in (str(caught.value), repr(caught.value), str(caught.value.cause), repr(ch)):
            assert password not in text, text

        # the same listener is not trusted without our CA: the handshake fails, nothing is sent
        seen = len(server.requests)
        untrusted = ClickHouse(f"https://vitals:{password}@127.0.0.1:{server.port}/vitals")
        with pytest.raises(SinkBackpressure) as refused:
            untrusted.ensure_schema()
        assert len(server.requests) == seen
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value.cause)
        assert password not in str(refused.value.cause)


def test_clickhouse_refused_port_error_has_no_password() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    password = "ch-" + secrets.token_urlsafe(16)
    ch = ClickHouse(f"http://vitals:{password}@127.0.0.1:{port}/vitals")
    with pytest.raises(SinkBackpressure) as caught:
        ch.ensure_schema()
    for text in (str(caught.value), repr(caught.value), str(caught.value.cause), repr(caught.value.cause)):
        assert password not in text


def test_worker_log_never_shows_the_clickhouse_password(deployment: Deployment) -> None:
    password = "ch-" + secrets.token_urlsafe(16)
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again: connections are refused
    deployment.env["VITALS_CLICKHOUSE_DSN"] = f"http://vitals:{password}@127.0.0.1:{port}/vitals"
    (deployment.base / "data").mkdir(exist_ok=True)
    worker = deployment.worker("ch-refused")
    log_path = deployment.base / "ch-refused.log"
    try:
        wait_for(lambda: "Connection refused" in log_path.read_text(errors="replace"), 120,
                 "a refused ClickHouse write")
    finally:
        stop_worker(worker)
    log = log_path.read_text(errors="replace")
    assert "vitals:***@127.0.0.1" in log and password not in log
