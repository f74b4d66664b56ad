"""Hypothesis-made requests against a running ``vitals collect`` on the real broker: random bytes, random
JSON, random gzip, event-shaped JSON with random values, wrong content types and encodings, on every route.
Never a 5xx for a bad body, never a crash: the collector is healthy afterwards and counted no 500."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.collect.server import POSTHOG_ROUTES, SEGMENT_ROUTES
from tests.collect_helpers import POSTHOG_KEY, SEGMENT_KEY, metric_sum, metrics_text, post, start_collector
from tests.conftest import Deployment

pytestmark = pytest.mark.integration

ROUTES = [*SEGMENT_ROUTES, *POSTHOG_ROUTES, "/v1/unknown", "/"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30)
FIELDS = ["type", "event", "userId", "anonymousId", "messageId", "timestamp", "originalTimestamp", "properties",
          "context", "distinct_id", "uuid", "api_key", "token", "sent_at", "sentAt"]
field_values = (st.sampled_from(["track", "page", "identify", "Order Completed", "$pageview", "$set",
                                 "2026-11-01T10:00:00Z", "u1", POSTHOG_KEY, ""])
                | json_values | st.dictionaries(st.sampled_from(["revenue", "total", "$device_id", "app", "device",
                                                                   "namespace", "id", "token"]), json_values))
events = st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=10)
shaped = st.one_of(
    st.builds(lambda b: {"batch": b}, st.lists(events, max_size=20)),
    st.builds(lambda b, k: {"api_key": k, "batch": b}, st.lists(events, max_size=20),
              st.sampled_from([POSTHOG_KEY, "nope", None])),
    events, st.lists(events, max_size=10))


def dumps(doc: object) -> bytes:  # the standard library's: integers of any size too
    return json.dumps(doc).encode()


def encode(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "deflate":
        return zlib.compress(data)
    return data


@st.composite
def requests(draw: Any) -> tuple[str, bytes, dict[str, str]]:
    route = draw(st.sampled_from(ROUTES))
    body = draw(st.one_of(
        st.binary(max_size=2048),
        json_values.map(dumps),
        shaped.map(dumps),
        shaped.map(lambda doc: b"data=" + base64.b64encode(dumps(doc))),
    ))
    coding = draw(st.sampled_from(["", "gzip", "deflate", "br", "x-garbage"]))
    if coding in ("gzip", "deflate") and draw(st.booleans()):
        body = encode(coding, body)
        if draw(st.booleans()):  # truncated or corrupted
            cut = draw(st.integers(0, max(0, len(body) - 1)))
            body = body[:cut] + draw(st.binary(max_size=8))
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", "application/octet-stream",
                                                       "application/x-www-form-urlencoded", "multipart/form-data",
                                                       ""]))}
    if coding:
        headers["Content-Encoding"] = coding
    auth = draw(st.sampled_from([None, SEGMENT_KEY, "nope", "garbage"]))
    if auth == "garbage":
        headers["Authorization"] = draw(st.text(max_size=30).filter(lambda t: t.isascii() and t.isprintable()))
    elif auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth}:".encode()).decode()
    return route, body, headers


def test_hostile_bodies_never_get_a_5xx_nor_crash_the_collector(deployment: Deployment) -> None:
    collector = start_collector(deployment)
    seen: dict[int, int] = {}
    try:
        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)
        @given(requests())
        def check(request: tuple[str, bytes, dict[str, str]]) -> None:
            route, body, headers = request
            status, answer = post(collector.url + route, body, headers)
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, (route, headers, body[:200], status, answer)

        check()
        assert collector.proc.poll() is None
        assert collector.healthy()
        text = metrics_text(collector)
        assert metric_sum(text, "vitals_collect_requests_total", code="500") == 0
        assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0, seen  # both accepted and refused bodies were tried
    finally:
        assert collector.stop() == 0, collector.log.read_text()[-3000:]
