"""ClickHouse sink: the client (:class:`ClickHouse`), and the per-user daily aggregates and raw messages as
Native-format blocks (alerts: :mod:`sinks.alerts`; segment changes: :mod:`sinks.segments`).

The same code talks to the embedded engine (``chdb:///dir``) or a server (``http(s)://``).

Exactness under crash and replay: ``user_activity_daily`` rows are *cumulative* (the user's
counters for that day as the state holds them) in a ``ReplacingMergeTree(version)`` with
``version = events``, which only grows as events are applied; re-writing a row after a replay
writes the same values with the same version, so ``FINAL`` returns each (app_id, user_id, day)
once with exact counts. Retried inserts also carry a deterministic
``insert_deduplication_token`` (a hash of the batch), which the table honours through
``non_replicated_deduplication_window``.

Inserts into the partitioned tables are split by month (:mod:`sinks.partitions`), so that none
touches more partitions than ClickHouse takes in one insert; errors are classified by their code
(:mod:`sinks.errors`): retried while they can pass, raised as :class:`ClickHouseRefused` when not.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from schemas.time_units import DAY_MS
from sinks import native_format as native
from sinks.base import BatchingSink, Row, SinkBackpressure
from sinks.columns import ActivityColumns
from sinks.errors import ClickHouseRefused, classify
from sinks.partitions import PARTITION_LIMIT_SETTING, split
from sinks.schema import schema_ddl
from streams.config.clickhouse_dsn import database_of, qualified, without_database
from streams.config.errors import ConfigError
from streams.config.private_files import narrow_tree, private_dir
from streams.config.secrets import redact_dsn

ACTIVITY_COLUMNS = [
    "app_id",
    "user_id",
    "day",
    "events",
    "logins",
    "payments",
    "payment_amount",
    "content_posts",
    "social",
    "complaints",
    "version",
]

# (topic, partition, offset, Kafka timestamp in ms, key, value): a message of the events topic
RawMessage = tuple[str, int, int, int, bytes | None, bytes | None]



def client_kwargs(dsn: str, *, ca_cert: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``clickhouse_connect.get_client`` (no I/O).

    An ``https://`` DSN means TLS (``secure=True``, certificate verified unless ``verify`` is off,
    against ``ca_cert`` when given) whatever the port; ``http://`` means plain HTTP. clickhouse-connect
    itself infers TLS from the port only. User and password are percent-decoded from the DSN and
    sent by clickhouse-connect as an HTTP Basic header, never in the URL. The DSN's database
    (:func:`streams.config.clickhouse_dsn.database_of`) is not among them: the client gets it once connected, as
    its default for unqualified names (vitals qualifies its own), so a database not created yet
    does not fail the connection.
    """
    if dsn.startswith("chdb:"):
        return {"dsn": without_database(dsn)}
    parts = urlsplit(dsn)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported ClickHouse DSN scheme {parts.scheme!r}")
    secure = parts.scheme == "https"
    kwargs: dict[str, Any] = {
        "interface": parts.scheme,
        "secure": secure,
        "host": parts.hostname or "localhost",
        "port": parts.port or (8443 if secure else 8123),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else "",
        "connect_timeout": 5,
        "send_receive_timeout": 30,
        "autogenerate_session_id": False,
    }
    if secure:
        kwargs["verify"] = verify
        if ca_cert and verify:
            kwargs["ca_cert"] = ca_cert
    for key, value in parse_qsl(parts.query):  # extra client options or settings in the DSN
        key = "username" if key == "user" else key
        if key == "database":
            continue
        if key in ("username", "password") and not kwargs[key]:
            kwargs[key] = value  # credentials given as parameters rather than in the userinfo
        else:
            kwargs.setdefault(key, value)
    return kwargs


def embedded_dir(dsn: str) -> str | None:
    """The directory of a ``chdb:///dir`` DSN (None for a server, or chdb in memory)."""
    parts = urlsplit(dsn)
    if parts.scheme != "chdb" or parts.netloc or parts.path in ("", ":memory:"):
        return None
    return parts.path


def embedded_dir_in_use(dsn: str) -> str | None:
    """The directory of a ``chdb:///dir`` DSN if another process holds its engine, else None.

    ClickHouse takes an exclusive ``flock`` on ``<dir>/status`` for as long as an engine has the
    directory open; chdb only reports "Error initializing EmbeddedServer". Asked after a failed
    open: a lock we cannot take means a second process on the same directory, which retrying
    never fixes (two workers sharing one data dir kept their partitions without ever committing).
    """
    parts = urlsplit(dsn)
    if parts.scheme != "chdb" or parts.netloc or not parts.path:
        return None
    try:
        fd = os.open(os.path.join(parts.path, "status"), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return parts.path
    except OSError:
        return None
    finally:
        os.close(fd)  # releases the lock if we took it
    return None


class EngineInUse(ConfigError):
    """The embedded engine's directory is held by another process (a worker, or a command reading it)."""

    def __init__(self, directory: str) -> None:
        super().__init__(
            f"the embedded ClickHouse directory {directory} is in use by another process (another worker, or a "
            "vitals command reading it); give each worker its own VITALS_DATA_DIR (several workers need a "
            "ClickHouse server DSN to share one database)"
        )
        self.directory = directory


class ClickHouse:
    """A lazily opened clickhouse-connect client; all calls from one worker thread. Its tables are in
    the DSN's database (``database``; :meth:`table` names them)."""

    def __init__(self, dsn: str, *, ca_cert: str | None = None, verify: bool = True) -> None:
        self.dsn = dsn
        try:
            self.database = database_of(dsn)
        except ValueError as exc:  # load_settings refuses such a DSN first, naming the setting
            raise ConfigError(f"the ClickHouse DSN {redact_dsn(dsn)}: {exc}") from None
        self.ca_cert = ca_cert
        self.verify = verify
        self._client: Any = None
        self._lock = threading.Lock()
        self.extra_ddl: Sequence[str] = ()  # e.g. the analyst views, created after the tables
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"ClickHouse({redact_dsn(self.dsn)!r})"

    def table(self, name: str) -> str:
        """``name`` qualified with this DSN's database."""
        return qualified(self.database, name)

    def client(self) -> Any:
        if self._client is None:
            import clickhouse_connect
            from clickhouse_connect.driver.exceptions import ClickHouseError

            kwargs = client_kwargs(self.dsn, ca_cert=self.ca_cert, verify=self.verify)
            engine_dir = embedded_dir(self.dsn)
            if engine_dir is not None:  # its owner's only, files an earlier version left readable included
                narrow_tree(private_dir(engine_dir))
            try:
                self._client = clickhouse_connect.get_client(**kwargs)
            except ClickHouseError as exc:
                in_use = embedded_dir_in_use(self.dsn)
                if in_use is not None:
                    raise EngineInUse(in_use) from None
                verdict = classify(exc)
                if verdict.code is not None and not verdict.retriable:  # e.g. refused credentials
                    raise ClickHouseRefused(f"the connection to {redact_dsn(self.dsn)}", verdict) from exc
                raise SinkBackpressure(1.0, exc) from None  # unreachable or not up yet: retried
            self._client.database = self.database  # for unqualified names (vitals query)
        return self._client

    def ensure_schema(self) -> None:
        """Create the database, tables and views if missing. Raises SinkBackpressure if the server
        cannot be reached (the sink calls this again before its first insert)."""
        with self._lock:
            self._ensure_schema_locked()

    def _ensure_schema_locked(self) -> None:
        if self._schema_ready:
            return
        client = self.client()
        try:
            for statement in (*schema_ddl(self.database), *self.extra_ddl):
                client.command(statement, use_database=False)  # qualified; the database may not exist yet
        except Exception as exc:
            verdict = classify(exc)
            if not verdict.retriable:
                raise ClickHouseRefused(f"the creation of the {self.database} schema", verdict) from exc
            self._client = None
            raise SinkBackpressure(1.0, exc) from None
        self._schema_ready = True

    def insert(self, table: str, columns: list[str], data: list[list[Any]], token: str) -> None:
        """Insert column-oriented Python values (clickhouse-connect serializes them) into a table
        without a partition key."""
        self._insert(table, 1, lambda client: client.insert(
            self.table(table), data, column_names=columns, column_oriented=True,
            settings={"insert_deduplication_token": token},
        ))

    def insert_native(self, table: str, columns: list[str], block: bytes, token: str, partitions: int = 1) -> None:
        """Insert a block already in ClickHouse's Native format (see :mod:`sinks.native_format`) whose rows
        fall into at most ``partitions`` partitions of the table (see :mod:`sinks.partitions`)."""
        self._insert(table, partitions, lambda client: client.raw_insert(
            self.table(table), columns, insert_block=block, fmt="Native",
            settings={"insert_deduplication_token": token,
                      "max_partitions_per_insert_block": PARTITION_LIMIT_SETTING},
        ))

    def insert_select(self, table: str, sql: str, parameters: dict[str, Any], partitions: int) -> None:
        """An ``INSERT INTO table ... SELECT`` whose rows fall into at most ``partitions`` partitions."""
        self._insert(table, partitions, lambda client: client.command(
            sql, parameters=parameters, settings={"max_partitions_per_insert_block": PARTITION_LIMIT_SETTING}))

    def _insert(self, table: str, partitions: int, send: Callable[[Any], object]) -> None:
        from clickhouse_connect.driver.exceptions import OperationalError

        with self._lock:
            self._ensure_schema_locked()
            try:
                send(self.client())
            except Exception as exc:
                verdict = classify(exc, partitions=partitions)
                if not verdict.retriable:
                    raise ClickHouseRefused(f"an insert into {self.table(table)}", verdict, table) from exc
                if isinstance(exc, OperationalError):  # network, timeout, server unavailable: a new client
                    self._client = None
                    raise SinkBackpressure(0.5, exc) from None
                raise SinkBackpressure(1.0, exc) from None  # the server is busy (parts, memory, queries)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self.client().query(sql, parameters=parameters).result_rows)

    def query_columns(self, sql: str, parameters: dict[str, Any] | None = None
                      ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and the rows of ``sql``."""
        with self._lock:
            result = self.client().query(sql, parameters=parameters)
            return list(result.column_names), list(result.result_rows)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class NativeSink(BatchingSink[Row]):
    """A sink whose batches go to one table as a Native-format block (:mod:`sinks.native_format`)."""

    name: str  # the table

    def __init__(self, ch: ClickHouse, cap_rows: int) -> None:
        super().__init__(cap_rows)
        self.ch = ch

    def _insert(self, rows: int, columns: list[native.Column], keys: Sequence[int], unit: int,
                take: Callable[[list[list[int]]], Iterable[list[native.Column]]]) -> None:
        """Insert ``rows`` rows given as ``columns``, whose partition keys are ``keys`` (see
        :func:`sinks.partitions.split`): as one block when they touch few enough months, else one
        block per group of months, whose columns ``take`` builds from each group's row indices."""
        data = native.block(rows, columns)
        token = hashlib.blake2b(data, digest_size=16, person=self.name.encode()[:16]).hexdigest()
        names = [name for name, _, _ in columns]
        groups = split(keys, unit)
        if len(groups) == 1 and groups[0].rows is None:  # the usual case: the batch as it is
            self.ch.insert_native(self.name, names, data, token, groups[0].partitions)
            return
        for group, group_columns in zip(groups, take([g.rows or [] for g in groups]), strict=True):
            block = native.block(len(group.rows or ()), group_columns)
            self.ch.insert_native(self.name, names, block, group.token(token), group.partitions)


class ActivitySink(NativeSink[ActivityColumns]):
    """Changed (user, day) counters; the buffer holds a flush's rows as one chunk of columns."""

    name = "user_activity_daily"

    def rows_in(self, item: ActivityColumns) -> int:
        return item.rows

    def split(self, batch: Sequence[ActivityColumns]) -> tuple[Sequence[ActivityColumns],
                                                               Sequence[ActivityColumns]] | None:
        columns = ActivityColumns.join(batch)  # halves by rows, not by the chunks buffered
        if columns.rows < 2:
            return None
        first, second = columns.take([range(columns.rows // 2), range(columns.rows // 2, columns.rows)])
        return [first], [second]

    def write(self, batch: Sequence[ActivityColumns]) -> None:
        columns = ActivityColumns.join(batch)
        if columns.rows:  # partitioned by the month of ``day``
            self._insert(columns.rows, columns.block_columns(), columns.days(), 1,
                         lambda row_sets: (part.block_columns() for part in columns.take(row_sets)))


def _raw_columns(batch: Sequence[RawMessage]) -> tuple[list[int], list[native.Column]]:
    """The Kafka timestamps (ms, the partition key; none before the epoch) and the columns of a batch."""
    topics, partitions, offsets, timestamps, keys, values = zip(*batch, strict=True)
    stamps = [max(ts, 0) for ts in timestamps]
    return stamps, [
        ("topic", "String", native.same_strings(topics)),
        ("partition", "UInt32", native.uint32(partitions)),
        ("offset", "UInt64", native.uint64(offsets)),
        ("timestamp", "DateTime64(3, 'UTC')", native.int64(stamps)),
        ("key", "String", native.byte_strings([k or b"" for k in keys])),
        ("value", "String", native.byte_strings([v or b"" for v in values])),
    ]


class RawSink(NativeSink[RawMessage]):
    """The events topic's messages, bytes as they arrived (``raw_messages``)."""

    name = "raw_messages"

    def write(self, batch: Sequence[RawMessage]) -> None:
        stamps, columns = _raw_columns(batch)  # partitioned by the month of the Kafka timestamp
        self._insert(len(batch), columns, stamps, DAY_MS,
                     lambda row_sets: (_raw_columns([batch[i] for i in rows])[1] for rows in row_sets))
