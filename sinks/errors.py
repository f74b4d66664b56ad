"""ClickHouse errors classified by their numeric code, never by their message text.

A write that fails for a reason that can pass (the network, a timeout, an overloaded server,
merges behind inserts) is retried: the sink raises :class:`sinks.base.SinkBackpressure` and the flush
backs off while consumption pauses. One that cannot succeed however often it is retried raises
:class:`ClickHouseRefused`, a :class:`sinks.base.SinkInvalid` naming the table, the code and its name
and what to do. Two kinds:

* about the rows (:data:`ROW_REFUSALS`: a ``CHECK`` constraint, a value out of its column's range,
  a value clickhouse-connect cannot serialize): other rows of the batch can pass, so the sink finds
  the refused rows by halving the batch, writes the others, and the flush dead-letters those
  (reason ``sink_refused``, :mod:`streams.worker.refusals`);
* about the table or the server (a schema that differs from the rows, a missing table, refused
  credentials or grants, a forbidden setting): nothing can pass, so the worker stops with exit code
  78 (:data:`streams.ops.supervisor.EXIT_REFUSED`), which its supervisor does not restart: a fresh worker
  would fail the same way for ever. Codes not listed as retriable count as not retriable, so an error
  nobody foresaw is seen at once.

Where the code comes from (clickhouse-connect 1.12, chdb 4.4 / ClickHouse 26.9): every
clickhouse-connect error carries ``.code`` (and ``.name``). Over HTTP it is the server's
``X-ClickHouse-Exception-Code`` header. On the embedded path chdb raises ``chdb.ChdbError`` (a
``RuntimeError`` with only the message, no code attribute) and clickhouse-connect's chdb backend
parses the ``Code: N`` its message starts with into ``.code`` of the ``DatabaseError`` it raises
instead. So ``.code`` is read along the exception's cause chain first; only an exception from chdb
itself that reaches us unwrapped (no ``.code`` anywhere) is read for ``Code: N``, the same parse
clickhouse-connect does (:func:`error_code`).

Numbers and names as in ClickHouse's ``src/Common/ErrorCodes.cpp``, checked against the engine's own
``errorCodeToName()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sinks.base import SinkInvalid
from sinks.partitions import PARTITION_LIMIT_SETTING

TOO_MANY_PARTS = 252

# what can succeed later: retried with backoff while consumption pauses
RETRIABLE: dict[int, str] = {
    159: "TIMEOUT_EXCEEDED",
    160: "TOO_SLOW",
    173: "CANNOT_ALLOCATE_MEMORY",
    201: "QUOTA_EXPIRED",  # the quota's interval ends
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    203: "NO_FREE_CONNECTION",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    225: "NO_ZOOKEEPER",
    236: "ABORTED",
    241: "MEMORY_LIMIT_EXCEEDED",
    242: "TABLE_IS_READ_ONLY",  # a replicated table while its Keeper session is lost
    243: "NOT_ENOUGH_SPACE",  # the disk fills; the insert passes once space is freed
    252: "TOO_MANY_PARTS",  # merges behind inserts (but see :func:`classify`)
    254: "NO_ACTIVE_REPLICAS",
    279: "ALL_CONNECTION_TRIES_FAILED",
    285: "TOO_FEW_LIVE_REPLICAS",
    286: "UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE",
    319: "UNKNOWN_STATUS_OF_INSERT",  # the retry's deduplication token settles it
    364: "RECEIVED_ERROR_TOO_MANY_REQUESTS",
    373: "SESSION_IS_LOCKED",
    394: "QUERY_WAS_CANCELLED",
    425: "SYSTEM_ERROR",
    439: "CANNOT_SCHEDULE_TASK",
    473: "DEADLOCK_AVOIDED",
    999: "KEEPER_EXCEPTION",
    1000: "POCO_EXCEPTION",
}

_SCHEMA = ("the table's columns or types differ from what this version writes: compare SHOW CREATE TABLE "
           "with sinks/schema.py's DDL and migrate (or rename) the table, then restart the worker")
_MISSING = ("the table or database is missing (dropped while the worker ran?): restart the worker, which "
            "creates missing tables at startup")
_CREDENTIALS = "ClickHouse refused the credentials: check the user and password of VITALS_CLICKHOUSE_DSN"
_GRANTS = ("the ClickHouse user lacks a grant or is read-only: it needs CREATE, INSERT and SELECT on the "
           "DSN's database (default vitals), and may not be readonly = 1")
_SETTINGS = ("a settings profile forbids a setting vitals sends with each insert (insert_deduplication_token, "
             f"max_partitions_per_insert_block = {PARTITION_LIMIT_SETTING}): allow them for the vitals user")

# what cannot succeed: named, with what to do
NOT_RETRIABLE: dict[int, tuple[str, str]] = {
    **{code: (name, _SCHEMA) for code, name in (
        (6, "CANNOT_PARSE_TEXT"), (8, "THERE_IS_NO_COLUMN"), (10, "NOT_FOUND_COLUMN_IN_BLOCK"),
        (16, "NO_SUCH_COLUMN_IN_TABLE"), (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED"), (38, "CANNOT_PARSE_DATE"),
        (41, "CANNOT_PARSE_DATETIME"), (43, "ILLEGAL_TYPE_OF_ARGUMENT"), (50, "UNKNOWN_TYPE"),
        (53, "TYPE_MISMATCH"), (62, "SYNTAX_ERROR"), (69, "ARGUMENT_OUT_OF_BOUND"), (70, "CANNOT_CONVERT_TYPE"),
        (72, "CANNOT_PARSE_NUMBER"), (117, "INCORRECT_DATA"), (349, "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN"),
    )},
    60: ("UNKNOWN_TABLE", _MISSING),
    81: ("UNKNOWN_DATABASE", _MISSING),
    **{code: (name, _CREDENTIALS) for code, name in (
        (192, "UNKNOWN_USER"), (193, "WRONG_PASSWORD"), (194, "REQUIRED_PASSWORD"),
        (195, "IP_ADDRESS_NOT_ALLOWED"), (516, "AUTHENTICATION_FAILED"),
    )},
    **{code: (name, _GRANTS) for code, name in (
        (164, "READONLY"), (291, "DATABASE_ACCESS_DENIED"), (497, "ACCESS_DENIED"),
    )},
    **{code: (name, _SETTINGS) for code, name in (
        (115, "UNKNOWN_SETTING"), (452, "SETTING_CONSTRAINT_VIOLATION"), (471, "INVALID_SETTING_VALUE"),
        (472, "READONLY_SETTING"),
    )},
}
_OTHER = "not an error vitals knows to be passing: see the server's message below and its log"

_ROWS = "some rows hold values the table refuses: they are dead-lettered (reason sink_refused), the others written"
# what is about the values of some rows, not the table: the rows refused on their own are dead-lettered
ROW_REFUSALS: dict[int, str] = {
    131: "TOO_LARGE_STRING_SIZE",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    407: "DECIMAL_OVERFLOW",
    469: "VIOLATED_CONSTRAINT",  # a CHECK constraint on the table
}

_CHDB_CODE = re.compile(r"\bCode:\s*(\d+)")


@dataclass(frozen=True, slots=True)
class Verdict:
    retriable: bool
    code: int | None
    name: str  # the code's name, or the exception's type where no code was given
    advice: str = ""
    about_rows: bool = False  # not retriable, but only for some rows: the others can be written


class ClickHouseRefused(SinkInvalid):
    """ClickHouse refused a write that no retry can make pass."""

    def __init__(self, what: str, verdict: Verdict, table: str | None = None) -> None:
        error = f"error {verdict.code} {verdict.name}" if verdict.code is not None else verdict.name
        then = ("the rows refused are dead-lettered" if verdict.about_rows else
                "the worker stops without committing past it")
        super().__init__(f"ClickHouse refused {what}: {error}, which no retry can fix; {then}. {verdict.advice}")
        self.table = table
        self.code = verdict.code
        self.name = verdict.name
        self.advice = verdict.advice
        self.about_rows = verdict.about_rows


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code ``exc`` or an exception it was raised from carries (see the module's
    docstring), or None."""
    from clickhouse_connect.driver.exceptions import Error

    seen: BaseException | None = exc
    while seen is not None:  # only clickhouse-connect's: an HTTP library's ``.code`` is an HTTP status
        if isinstance(seen, Error) and isinstance(seen.code, int):
            return seen.code
        seen = seen.__cause__
    seen = exc
    while seen is not None:  # the fallback: chdb's own exception, which has no code attribute
        if type(seen).__module__.split(".")[0] == "chdb" and (match := _CHDB_CODE.search(str(seen))):
            return int(match.group(1))
        seen = seen.__cause__
    return None


def classify(exc: BaseException, *, partitions: int | None = None) -> Verdict:
    """Whether retrying the write that raised ``exc`` can succeed.

    ``partitions``: how many partitions the write touched at most, when known. Code 252
    TOO_MANY_PARTS is raised for two conditions: a partition with more active parts than
    ``parts_to_throw_insert`` (merges are behind: retriable) and an insert block over
    ``max_partitions_per_insert_block`` (never passes). The sinks split their inserts to at most
    :data:`sinks.partitions.MAX_PARTITIONS` partitions and send the limit as
    :data:`~sinks.partitions.PARTITION_LIMIT_SETTING`, so a 252 on a write within that limit is the
    first; on a write known to exceed it, the second.

    Without a code: a clickhouse-connect ``OperationalError`` (network, timeout, a retried HTTP
    status) or another of its errors from the server side, or an ``OSError``, is retriable; its
    ``DataError``, ``ProgrammingError``, ``NotSupportedError`` and ``InterfaceError`` (refused by
    the client before anything was sent) are not, nor is any other exception (a bug).
    """
    from clickhouse_connect.driver import exceptions as ch

    code = error_code(exc)
    if code is None:
        name = type(exc).__name__
        if isinstance(exc, ch.OperationalError | OSError):
            return Verdict(True, None, name)
        if isinstance(exc, ch.DataError):  # a value it cannot serialize (a Date past 2149, ...)
            return Verdict(False, None, name, "clickhouse-connect refused the rows before sending them: "
                           "a value the table's column cannot hold", about_rows=True)
        if isinstance(exc, ch.ProgrammingError | ch.NotSupportedError | ch.InterfaceError):
            return Verdict(False, None, name, "clickhouse-connect refused the rows before sending them: "
                           "a type the table's column cannot hold")
        if isinstance(exc, ch.Error):
            return Verdict(True, None, name)
        return Verdict(False, None, name, "an unexpected error in the sink (a bug): see the traceback")
    if code == TOO_MANY_PARTS and partitions is not None and partitions > PARTITION_LIMIT_SETTING:
        return Verdict(False, code, RETRIABLE[code], f"the insert touched {partitions} partitions, more than "
                       f"max_partitions_per_insert_block = {PARTITION_LIMIT_SETTING}: inserts are meant to be "
                       "split by partition (sinks/partitions.py); report this as a bug")
    if code in RETRIABLE:
        return Verdict(True, code, RETRIABLE[code])
    if code in ROW_REFUSALS:
        return Verdict(False, code, ROW_REFUSALS[code], _ROWS, about_rows=True)
    name, advice = NOT_RETRIABLE.get(code, (getattr(exc, "name", None) or "UNKNOWN", _OTHER))
    return Verdict(False, code, name, advice)
