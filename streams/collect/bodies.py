"""A collector request's body read (pure): bounded gzip, JSON, and the events it holds with their original
bytes, in the shapes the Segment and PostHog SDKs send (SPEC section 8). Anything it cannot read is a
:class:`BadRequest` with the HTTP status and a machine-readable code; nothing here raises otherwise."""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec
import orjson

MAX_BODY_BYTES = 1 << 20  # 1 MiB, as sent and once decompressed (SPEC section 8)
MAX_EVENTS = 10_000  # a 1 MiB body holds fewer real events; a body of tiny objects stops here (413)


class BadRequest(Exception):
    """A request the collector answers with ``status`` (400, 401, 413, 415) and a reason ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def too_large(what: str) -> BadRequest:
    return BadRequest(413, "body_too_large", f"{what} larger than {MAX_BODY_BYTES} bytes")


def decompress(body: bytes, encoding: str | None) -> bytes:
    """The body as sent (``Content-Encoding`` identity, gzip or deflate), never more than MAX_BODY_BYTES
    decompressed: a gzip bomb stops at the bound, with 413, having inflated at most that much."""
    if len(body) > MAX_BODY_BYTES:
        raise too_large("body")
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise BadRequest(415, "unsupported_encoding", "Content-Encoding must be gzip, deflate or identity")
    inflater = zlib.decompressobj(wbits=31 if coding != "deflate" else 15)
    out = bytearray()
    data = body
    try:
        while True:  # gzip members one after another are one stream (RFC 1952)
            chunk = inflater.decompress(data, MAX_BODY_BYTES + 1 - len(out))
            out += chunk
            if len(out) > MAX_BODY_BYTES:
                raise too_large("decompressed body")
            if inflater.eof:
                rest = inflater.unused_data
                if coding == "deflate" or not rest.strip(b"\0"):
                    break
                inflater, data = zlib.decompressobj(wbits=31), rest
                continue
            data = inflater.unconsumed_tail  # input held back by the output bound, or none
            if not data and not chunk:
                raise BadRequest(400, "bad_encoding", "compressed body is truncated")
    except zlib.error:
        raise BadRequest(400, "bad_encoding", f"body is not valid {coding}") from None
    return bytes(out)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes) -> object:
    """The JSON document; JSON that orjson refuses (integers beyond 64 bits, lone surrogate escapes) read by
    the standard library, so that only the events holding such values are dead-lettered, not the request."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data.decode(), parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadRequest(400, "not_json", "body is not UTF-8 JSON") from None


@dataclass(slots=True)
class Envelope:
    """The events of one request: each decoded, its original bytes on demand, the request's key (write key
    or token, when the body gives one) and its ``sentAt``/``sent_at``."""

    events: list[object]
    body: bytes  # the decompressed body, for the events' original bytes
    path: tuple[str, ...]  # where the events are in the body: () the body, ("batch",) its batch array
    key: str | None = None
    sent_at: object = None
    _originals: list[bytes] | None = field(default=None, repr=False)

    def original(self, index: int) -> bytes:
        """Event ``index``'s bytes as they came (their JSON re-encoded where the body cannot be sliced)."""
        if self._originals is None:
            self._originals = _slices(self.body, self.path, len(self.events))
        found = self._originals[index] if index < len(self._originals) else None
        return found if found is not None else orjson.dumps(self.events[index])


_raw_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


def _slices(body: bytes, path: tuple[str, ...], count: int) -> list[bytes]:
    try:
        value = body
        for name in path:
            value = bytes(_raw_object.decode(value)[name])
        if not path and count == 1 and value.lstrip()[:1] == b"{":
            return [value.strip()]
        return [bytes(raw) for raw in _raw_list.decode(value)]
    except (msgspec.DecodeError, KeyError, RecursionError, ValueError):
        return []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def segment_envelope(doc: object, body: bytes, single_type: str | None) -> Envelope:
    """``POST /v1/batch`` (``{"batch": [...], "sentAt": ...}``) or a single call (``/v1/track``: the
    message itself; its ``type`` the route's when it names none)."""
    if not isinstance(doc, dict):
        raise BadRequest(400, "not_object", "body must be a JSON object")
    key = _text(doc.get("writeKey"))
    if single_type is None:
        batch = doc.get("batch")
        if not isinstance(batch, list):
            raise BadRequest(400, "no_batch", "body must hold a 'batch' array")
        return Envelope(batch, body, ("batch",), key, doc.get("sentAt"))
    if "type" not in doc:
        doc = {**doc, "type": single_type}
    return Envelope([doc], body, (), key, doc.get("sentAt"))


def posthog_envelope(doc: object, body: bytes) -> Envelope:
    """``/batch/`` (``{"api_key": ..., "batch": [...], "sent_at": ...}``), ``/capture/`` and ``/e/``: an
    event, an object with a ``batch``, or an array of events; or the JavaScript SDK's form body
    (``data=<base64 JSON>``), read by :func:`form_body` first."""
    if isinstance(doc, list):
        return Envelope(doc, body, ())
    if not isinstance(doc, dict):
        raise BadRequest(400, "not_object", "body must be a JSON object or array")
    key = _text(doc.get("api_key")) or _text(doc.get("token"))
    if "batch" in doc:
        batch = doc["batch"]
        if not isinstance(batch, list):
            raise BadRequest(400, "no_batch", "'batch' must be an array")
        return Envelope(batch, body, ("batch",), key, doc.get("sent_at"))
    return Envelope([doc], body, (), key, doc.get("sent_at"))


def form_body(data: bytes) -> bytes:
    """The JSON of a form-encoded PostHog body (``data=<base64>``, as posthog-js may send)."""
    from urllib.parse import parse_qs

    try:
        fields = parse_qs(data.decode("ascii"), strict_parsing=False)
        value = fields["data"][0]
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value
                                else None)
    except (UnicodeDecodeError, KeyError, IndexError, binascii.Error, ValueError):
        raise BadRequest(400, "bad_form", "form body must hold data=<base64 JSON>") from None


def posthog_event_key(event: object) -> str | None:
    """An event's own project token: its ``api_key``, ``token`` or ``properties.token``."""
    if not isinstance(event, Mapping):
        return None
    key = _text(event.get("api_key")) or _text(event.get("token"))
    if key is None:
        props = event.get("properties")
        if isinstance(props, Mapping):
            key = _text(props.get("token"))
    return key


def basic_user(authorization: str | None) -> str | None:
    """The user of an HTTP Basic ``Authorization`` header (Segment's write key), or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded.partition(":")[0] or None
