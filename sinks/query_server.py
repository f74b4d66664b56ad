"""Read-only queries on a worker's embedded ClickHouse, served on loopback to ``vitals query``,
``vitals report`` and any ClickHouse HTTP client.

The embedded engine (``chdb:///dir``) can be opened by one process at a time, so while a worker runs
nobody else could read what it writes. The worker therefore serves queries itself:

* an HTTP server (the standard library's, in threads) on ``127.0.0.1``, an ephemeral port;
* speaking enough of ClickHouse's HTTP interface (``POST /`` with the SQL as the body or a ``query``
  parameter, ``database``, ``default_format``, ``param_<name>`` query parameters, ``GET /ping``, the
  error code in ``X-ClickHouse-Exception-Code``) that clickhouse-connect's own HTTP client works
  against it unchanged: :mod:`sinks.reader` hands the readers an ``http://`` DSN;
* a random token required with every request (HTTP Basic password, or ``X-ClickHouse-Key``), so that
  another local user cannot read the data; where to connect and the token are in a 0600 file in the
  engine's directory (:mod:`sinks.endpoint`);
* queries run on chdb connections of their own (chdb runs queries of different connections in
  parallel, and releases the GIL while it does, so a long query does not hold up the worker's inserts)
  opened with ClickHouse's ``readonly = 1``: the engine itself refuses ``INSERT``, ``ALTER``, ``DROP``,
  ``CREATE`` and any change of a setting, so the limits below cannot be lifted by a query;
* each query bounded: :data:`LIMITS` (time, result size, memory, one thread), at most
  :data:`CONNECTIONS` at a time (more wait for a free connection).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import queue
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from sinks import endpoint as endpoint_file
from sinks.endpoint import Endpoint
from sinks.errors import error_code

log = logging.getLogger("vitals.query_server")

LIMITS = {
    "readonly": "1",  # reads only, and no setting may change (these limits included)
    "max_execution_time": "60",  # seconds
    "max_result_bytes": str(64 << 20),
    "max_memory_usage": str(1 << 30),
    "max_threads": "1",  # the worker keeps the other cores
}
CONNECTIONS = 2
MAX_SQL_BYTES = 1 << 20

# request parameters of ClickHouse's HTTP interface that are not settings: taken, or ignored
_TRANSPORT = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
    "wait_end_of_query", "client_protocol_version", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "enable_http_compression", "compress", "decompress", "buffer_size",
    "quota_key", "role", "user", "password",
})
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# ClickHouse error codes this module answers with itself
UNKNOWN_EXCEPTION = 1002
NOT_IMPLEMENTED = 48
BAD_ARGUMENTS = 36
TOO_MANY_SIMULTANEOUS_QUERIES = 202
AUTHENTICATION_FAILED = 516
# HTTP statuses as ClickHouse answers them for a few codes (never 429/503/504, which clients retry)
_STATUS = {62: 400, 36: 400, 47: 404, 60: 404, 81: 404, 164: 403, 497: 403, 516: 403, 48: 501}


class QueryError(Exception):
    """A request refused or a query failed: the ClickHouse error ``code`` and the engine's message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def refusal(code: int, name: str, text: str) -> QueryError:
    """A refusal of this module's own, worded as the engine words its errors."""
    return QueryError(code, f"Code: {code}. DB::Exception: {text}. ({name})")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class QueryServer:
    """The endpoint: started by :meth:`start` (the file written), stopped by :meth:`stop` (removed)."""

    def __init__(self, engine_dir: str, *, connections: int = CONNECTIONS,
                 limits: dict[str, str] | None = None) -> None:
        import chdb

        self.engine_dir = os.path.realpath(engine_dir)  # as clickhouse-connect spells it: chdb compares paths
        self.limits = dict(limits or LIMITS)
        self.wait_s = float(self.limits.get("max_execution_time", "60")) + 5
        self._connect = lambda: chdb.connect(f"{self.engine_dir}?{urlencode(self.limits)}")
        self._pool: queue.Queue[Any] = queue.Queue()
        for _ in range(connections):
            self._pool.put(self._connect())
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.query_server = self  # type: ignore[attr-defined]
        self.endpoint = Endpoint("127.0.0.1", int(self._httpd.server_address[1]), endpoint_file.new_token(),
                                 os.getpid())
        self._thread: threading.Thread | None = None

    def start(self) -> QueryServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="vitals-query-server", daemon=True)
        self._thread.start()
        endpoint_file.write(self.engine_dir, self.endpoint)
        log.info("read-only queries served on http://%s:%d (vitals query, vitals report)",
                 self.endpoint.host, self.endpoint.port)
        return self

    def stop(self) -> None:
        endpoint_file.remove(self.engine_dir, self.endpoint)
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break

    def authorized(self, authorization: str | None, key: str | None) -> bool:
        given = key
        if given is None and authorization and authorization[:6].lower() == "basic ":
            try:
                given = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return False
        return given is not None and hmac.compare_digest(given.encode(), self.endpoint.token.encode())

    def run(self, sql: str, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """Run ``sql`` with the request parameters ``params``: the result's bytes and response headers."""
        settings = {k: v for k, v in params.items() if k not in _TRANSPORT and not k.startswith("param_")}
        binds = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        for name in settings:
            if not _SETTING_NAME.fullmatch(name):
                raise refusal(BAD_ARGUMENTS, "BAD_ARGUMENTS", f"not a setting: {name!r}")
        try:
            conn = self._pool.get(timeout=self.wait_s)
        except queue.Empty:
            raise refusal(TOO_MANY_SIMULTANEOUS_QUERIES, "TOO_MANY_SIMULTANEOUS_QUERIES",
                          "all query connections stayed busy") from None
        try:
            database = params.get("database")
            if database:
                conn.query(f"USE `{database.replace('`', '``')}`", "TabSeparated")
            for name, value in settings.items():  # the readonly engine refuses any change
                conn.query(f"SET {name} = {_quote(value)}", "TabSeparated")
            result = conn.query(sql, params.get("default_format", "TabSeparated"), params=binds)
        except RuntimeError as exc:  # the engine's error (chdb raises a ChdbError, a RuntimeError; ``chdb.ChdbError``
            # is another class): its message, the code in it
            failed = QueryError(error_code(exc) or UNKNOWN_EXCEPTION, str(exc).strip())
        except BaseException:
            self._replace(conn)
            raise
        else:
            self._pool.put(conn)
            summary = {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
                       "elapsed_ns": str(int(result.elapsed() * 1e9))}
            return bytes(result.bytes()), {"X-ClickHouse-Summary": orjson.dumps(summary).decode()}
        self._replace(conn)
        raise failed

    def _replace(self, conn: Any) -> None:
        """A connection whose query failed is not used again: after a result over ``max_result_bytes``,
        chdb 4.4 put what the failed query had produced in front of the next result on that connection."""
        conn.close()
        self._pool.put(self._connect())


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A reader that went away (its process ended with a keep-alive connection open, a reset) is no
        error of the worker's: a debug line, not the traceback on stderr of socketserver's default."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            log.debug("a reader's connection ended: %s", type(exc).__name__)
        else:
            log.warning("the query endpoint failed on a request", exc_info=exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect pools its connections
    disable_nagle_algorithm = True  # headers and body leave at once (else 40 ms per answer on loopback)
    server_version = "vitals-query-server"

    @property
    def qs(self) -> QueryServer:
        return self.server.query_server  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # not the queries: they may name users
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping":
            self._send(200, b"Ok.\n", {})
        elif url.path == "/":
            self._handle(url.query, b"")
        else:
            self._fail(404, refusal(BAD_ARGUMENTS, "BAD_ARGUMENTS", "only / and /ping are served"))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        refused = None
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Encoding"):
            refused = 501, refusal(NOT_IMPLEMENTED, "NOT_IMPLEMENTED", "send the SQL plain, with a Content-Length")
        elif length > MAX_SQL_BYTES:
            refused = 413, refusal(BAD_ARGUMENTS, "BAD_ARGUMENTS", f"a query of at most {MAX_SQL_BYTES} bytes")
        elif url.path != "/":
            refused = 404, refusal(BAD_ARGUMENTS, "BAD_ARGUMENTS", "queries are posted to /")
        if refused is not None:  # the body is not read: the connection closes after the answer
            self.close_connection = True
            self._fail(*refused)
            return
        body = self.rfile.read(length) if length else b""
        if (self.headers.get("Content-Type") or "").startswith("multipart/"):
            self._fail(501, refusal(NOT_IMPLEMENTED, "NOT_IMPLEMENTED", "form-encoded queries are not supported"))
            return
        self._handle(url.query, body)

    def _handle(self, query_string: str, body: bytes) -> None:
        if not self.qs.authorized(self.headers.get("Authorization"), self.headers.get("X-ClickHouse-Key")):
            self._fail(403, refusal(AUTHENTICATION_FAILED, "AUTHENTICATION_FAILED",
                                    f"the token of the worker's {endpoint_file.FILE_NAME} is required"))
            return
        params = dict(parse_qsl(query_string, keep_blank_values=True))
        try:
            sql = "\n".join(part for part in (params.get("query", ""), body.decode()) if part)
            data, headers = self.qs.run(sql, params)
        except UnicodeDecodeError:
            self._fail(400, refusal(BAD_ARGUMENTS, "BAD_ARGUMENTS", "the query is not UTF-8"))
        except QueryError as exc:
            self._fail(_STATUS.get(exc.code, 500), exc)
        else:
            if "query_id" in params:
                headers["X-ClickHouse-Query-Id"] = params["query_id"]
            self._send(200, data, headers)

    def _fail(self, status: int, exc: QueryError) -> None:
        self._send(status, (str(exc) + "\n").encode(), {"X-ClickHouse-Exception-Code": str(exc.code)})

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if status == 200 else "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
