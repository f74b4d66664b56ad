"""Secrets in the configuration: a DSN's password kept out of every message (:func:`redact_dsn`), and the
``*_FILE`` variables that hand a secret over in a file rather than in the environment or on a command line
(:func:`read_secret_file`)."""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, unquote, urlencode

from streams.config.errors import ConfigError

_SECRET_QUERY_KEYS = frozenset({"password", "pass", "pwd", "secret", "token", "access_token"})


def host_and_port(parts: SplitResult) -> bool:
    """A host, and a port that is a number if any (an unencoded password reads as the port)."""
    try:
        port = parts.port
    except ValueError:
        return False
    return bool(parts.hostname) and (port is None or port > 0)


def unquote_or_none(value: str | None) -> str | None:
    return unquote(value) if value is not None else None


def redact_dsn(dsn: str) -> str:
    """The DSN with its password (userinfo and secret-looking query parameters) replaced by ``***``.

    Works on the text, so a DSN with unencoded special characters in the password (which
    ``urlsplit`` misreads) is still redacted: everything up to the last ``@`` is userinfo.
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return dsn
    userinfo, at, tail = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{tail}" if colon else f"{userinfo}@{tail}"
    head, qmark, query = rest.partition("?")
    if qmark:
        query, hash_, fragment = query.partition("#")
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
        rest = f"{head}?{query}{hash_}{fragment}"
    return f"{scheme}://{rest}"


def read_secret_file(name: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: {path} is not UTF-8 text") from None
    value = value.rstrip("\r\n")
    if not value:
        raise ConfigError(f"{name}: {path} is empty")
    return value
