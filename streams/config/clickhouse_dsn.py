"""The ClickHouse database vitals writes and reads: the DSN's (SPEC section 5), ``vitals`` by default.

* ``http(s)://user:pass@host:port/db``: the path's first segment, else a ``database`` query parameter;
* ``chdb:///dir``: the path is the engine's directory, so only a ``?database=`` parameter names one;
* neither: ``vitals``.

Every statement vitals runs names its tables through :func:`qualified` (``db.table``). A name is a
plain identifier (letters, digits, underscores; checked when the settings load), so it is never
quoted. ``vitals replay`` writes into a database of its own, ``<live database>_replay`` unless told
otherwise (:func:`replay_database`), so a replay against a server never touches the live tables.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

DEFAULT_DATABASE = "vitals"
REPLAY_SUFFIX = "_replay"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")


def check_name(database: str) -> str:
    """``database`` if it is a plain identifier, else ValueError (not quoting it: read from a DSN whose
    password was not percent-encoded, it may be a piece of the password)."""
    if not _NAME.fullmatch(database):
        raise ValueError("the ClickHouse database name may hold letters, digits and underscores only "
                         "(not starting with a digit)")
    return database


def named_database(dsn: str) -> str | None:
    """The database a DSN names itself (ValueError if not a plain identifier), None if none."""
    parts = urlsplit(dsn)
    name = ""
    if parts.scheme != "chdb":
        name = unquote(parts.path.strip("/").split("/")[0])
    if not name:
        name = dict(parse_qsl(parts.query)).get("database", "")
    return check_name(name) if name else None


def database_of(dsn: str) -> str:
    """The database of a DSN: the one it names (ValueError if not a plain identifier), or ``vitals``."""
    return named_database(dsn) or DEFAULT_DATABASE


def qualified(database: str, name: str) -> str:
    """A table's or view's name in ``database``: the one place statements get their names from."""
    return f"{database}.{name}"


def with_database(dsn: str, database: str) -> str:
    """The DSN naming ``database`` instead (in the path of an http(s) DSN, as a parameter of a chdb one)."""
    check_name(database)
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        return _with_query(dsn, [*_query_without_database(dsn), ("database", database)])
    query = urlencode(_query_without_database(dsn))
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, query, parts.fragment))


def without_database(dsn: str) -> str:
    """A DSN without its ``database`` parameter (a chdb DSN's: clickhouse-connect would ``USE`` it on
    connecting, before vitals has created it)."""
    return _with_query(dsn, _query_without_database(dsn))


def _query_without_database(dsn: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in parse_qsl(urlsplit(dsn).query, keep_blank_values=True) if k != "database"]


def _with_query(dsn: str, query: list[tuple[str, str]]) -> str:
    """``dsn`` with another query string, the rest as written (``chdb:///dir`` keeps its empty host)."""
    head, _, rest = dsn.partition("?")
    fragment = rest.partition("#")[2] if rest else dsn.partition("#")[2]
    head = head.partition("#")[0]
    return head + (f"?{urlencode(query)}" if query else "") + (f"#{fragment}" if fragment else "")


def location(dsn: str) -> tuple[str, ...]:
    """Where a DSN's data lives, whatever its credentials and database: (scheme, host, port) of a
    server, ("chdb", directory) of the embedded engine."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        return ("chdb", os.path.realpath(parts.path))
    secure = parts.scheme == "https"
    return ("server", (parts.hostname or "localhost").lower(), str(parts.port or (8443 if secure else 8123)))


def replay_database(live: str, given: str | None = None) -> str:
    """A replay's database: ``given`` if any, else ``<live>_replay``."""
    return check_name(given or live + REPLAY_SUFFIX)
