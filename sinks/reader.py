"""The ClickHouse that ``vitals query`` and ``vitals report`` read: the right client for the configuration.

* A server DSN (``http(s)://``): that server.
* The embedded engine (``chdb:///dir``) while a worker runs on it: the worker's read-only endpoint
  (:mod:`sinks.query_server`), found through the file it keeps in the engine's directory
  (:mod:`sinks.endpoint`), with clickhouse-connect's HTTP client: :class:`ServedClickHouse`.
* The embedded engine otherwise: opened here, as the worker would, its tables and views created if
  missing (a stale endpoint file, left by a worker that was killed, is ignored). If another process
  still holds the directory (a worker too old to serve queries, or another command reading it),
  :class:`EngineBusy` says so in one line.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from sinks import endpoint as endpoint_file
from sinks.clickhouse import ClickHouse, EngineInUse, embedded_dir
from sinks.endpoint import Endpoint
from sinks.views import view_ddl
from streams.config.clickhouse_dsn import database_of
from streams.config.settings import Settings

PING_TIMEOUT_S = 2.0
QUERY_TIMEOUT_S = 120  # beyond the endpoint's own limit on a query (max_execution_time)


class EngineBusy(Exception):
    """The embedded engine is held by a process that does not serve queries."""


class ServedClickHouse(ClickHouse):
    """A running worker's endpoint: reads only. Its schema and views are the worker's (made at its startup)."""

    def __init__(self, served: Endpoint, database: str) -> None:
        super().__init__(f"http://{served.host}:{served.port}/{database}")  # no credentials in the DSN
        self.served = served

    def client(self) -> Any:
        if self._client is None:
            import clickhouse_connect
            import urllib3

            self._client = clickhouse_connect.get_client(
                host=self.served.host, port=self.served.port, username="vitals", password=self.served.token,
                # a pool of its own: no proxy from the environment sees the token on its way to loopback
                pool_mgr=urllib3.PoolManager(num_pools=1, maxsize=2),
                connect_timeout=5, send_receive_timeout=QUERY_TIMEOUT_S, autogenerate_session_id=False,
                query_retries=0,
            )
            self._client.database = self.database
        return self._client

    def ensure_schema(self) -> None:
        """Nothing to do: the worker created the database, tables and views before it served queries."""


@contextlib.contextmanager
def _engine_stderr_held() -> Iterator[None]:
    """What the engine writes to the process's stderr (fd 2) while it opens: written out after, if it
    opened; dropped if not (the engine's own lines about a locked directory, which :class:`EngineBusy`
    says in one line)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        opened = False
        try:
            yield
            opened = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if opened and held.seek(0) == 0 and (data := held.read()):
                os.write(2, data)


def answers(served: Endpoint, timeout_s: float = PING_TIMEOUT_S) -> bool:
    """Whether ``served`` answers ``/ping`` (a worker that is still starting or stopping may not)."""
    conn = http.client.HTTPConnection(served.host, served.port, timeout=timeout_s)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def open_reader(settings: Settings) -> ClickHouse:
    """The configured ClickHouse, opened for reading (see the module's docstring). Raises
    :class:`EngineBusy` when the embedded engine is held by a process that does not serve queries."""
    dsn = settings.effective_clickhouse_dsn
    engine_dir = embedded_dir(dsn)
    if engine_dir is not None:
        served = endpoint_file.read_live(engine_dir)
        if served is not None and answers(served):
            return ServedClickHouse(served, database_of(dsn))
    ch = ClickHouse(dsn, ca_cert=settings.clickhouse_ca, verify=settings.clickhouse_verify)
    if engine_dir is not None:
        ch.extra_ddl = view_ddl(ch.database)
        try:  # the local engine gets its tables and views, as a worker makes them: a fresh one answers too
            with _engine_stderr_held():
                ch.ensure_schema()
        except EngineInUse as exc:
            with contextlib.suppress(Exception):
                ch.close()
            raise EngineBusy(
                f"the embedded ClickHouse {exc.directory} is held by another process that does not serve queries "
                "(a vitals command reading it, or a worker that is starting, stopping or older than this "
                "version): try again when it is done"
            ) from None
    return ch
