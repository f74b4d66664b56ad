"""SPEC 8 end to end: the real Segment and PostHog Python SDKs send their batches to a capturing HTTP endpoint
here; the captured events go into an events topic read with that format (Segment also as one RudderStack-style
JSON array), a worker on the real broker and the embedded ClickHouse processes them, and
``user_activity_daily FINAL`` equals a computation made here from the captured events. Identify-like calls are
counted in ``vitals_events_not_activity_total``, not in rows; bad events are in the DLQ with reason and format."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.devtools.worker_process import stop_worker, wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from tests.conftest import Deployment
from tests.procs import scrape, total

pytestmark = pytest.mark.integration

QUERY = ("SELECT app_id, user_id, toString(day), events, logins, payments, toString(payment_amount), "
         "content_posts, social, complaints FROM vitals.user_activity_daily FINAL")
SOCIAL = {"comment", "like", "share", "follow"}
NOW = datetime.now(UTC).replace(microsecond=0)


class Capture:
    """A tiny HTTP endpoint that answers 200 to every POST and keeps the JSON bodies (gunzipped) in order."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                capture.bodies.append((self.path, json.loads(body)))
                reply = b'{"success": true, "status": 1}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _path, body in self.bodies:
            out.extend(body["batch"] if isinstance(body, dict) and "batch" in body else
                       body if isinstance(body, list) else [body])
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture() -> Iterator[Capture]:
    c = Capture()
    try:
        yield c
    finally:
        c.close()


def at(days: int, hours: int = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


def produce(deployment: Deployment, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=deployment.settings.kafka.bootstrap)
        await producer.start()
        try:
            for key, value in messages:
                await producer.send_and_wait(deployment.settings.events_topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def run_worker(deployment: Deployment, n_messages: int) -> dict[str, float]:
    """A worker to lag 0; the not-activity counts it exported, by (format, kind)."""
    worker = deployment.worker()
    try:
        wait_for_lag_zero(deployment.settings, worker, n_messages, timeout_s=600, progress=False)
        samples, _ = scrape(int(deployment.env["VITALS_METRICS_PORT"]))
        counts = {f"{fmt}/{kind}": total(samples, "vitals_events_not_activity_total", format=fmt, kind=kind)
                  for fmt in ("segment", "posthog")
                  for kind in ("identify", "group", "alias", "$identify", "$set", "$groupidentify", "other")}
    finally:
        stop_worker(worker)
    return {k: v for k, v in counts.items() if v}


Row = tuple[int, int, int, Decimal, int, int, int]


def daily(events: list[tuple[Any, ...]]) -> dict[tuple[str, str, str], Row]:
    """(app, user, day) -> the columns, from (event id, app, user, type, iso ts, amount): each id once."""
    acc: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, Decimal(0), 0, 0, 0])
    seen: set[str] = set()
    for event_id, app, user, etype, ts, amount in events:
        if event_id in seen:
            continue
        seen.add(event_id)
        day = str(datetime.fromisoformat(ts).astimezone(UTC).date())
        c = acc[(app, user, day)]
        c[0] += 1
        c[1] += etype == "login"
        if etype == "payment":
            c[2] += 1
            c[3] += Decimal(str(amount))
        c[4] += etype == "content_post"
        c[5] += etype in SOCIAL
        c[6] += etype == "complaint"
    return {k: (c[0], c[1], c[2], c[3], c[4], c[5], c[6]) for k, c in acc.items()}


def got_rows(deployment: Deployment) -> dict[tuple[str, str, str], Row]:
    got: dict[tuple[str, str, str], Row] = {}
    for app, user, day, *v in deployment.query(QUERY):
        key = (str(app), str(user), str(day))
        assert key not in got, f"FINAL returned two rows for {key}"
        got[key] = (v[0], v[1], v[2], Decimal(str(v[3])).normalize(), v[4], v[5], v[6])  # type: ignore[assignment]
    return got


def normalized(rows: dict[tuple[str, str, str], Row]) -> dict[tuple[str, str, str], Row]:
    return {k: (*v[:3], Decimal(v[3]).normalize(), *v[4:]) for k, v in rows.items()}


def dlq(deployment: Deployment) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in deployment.read(deployment.settings.dlq_topic)]  # type: ignore[attr-defined]


SEGMENT_TYPES = {"Order Completed": "payment", "Signed In": "login", "Application Opened": "login",
                 "Signed Out": "logout", "Product Shared": "share", "Cart Shared": "share",
                 "Product Reviewed": "comment"}


def test_segment_sdk_batches_through_kafka(deployment: Deployment, capture: Capture) -> None:
    from segment.analytics.client import Client  # type: ignore[import-untyped]

    deployment.env["VITALS_INPUT_FORMAT"] = "segment"
    shop = {"app": {"namespace": "shop"}, "device": {"id": "dev-1"}}
    client = Client("wk-test", host=capture.url, sync_mode=True, max_retries=0)
    client.track("u1", "Signed In", context=shop, timestamp=at(2))
    client.track("u1", "Order Completed", {"revenue": 12.5, "currency": "EUR"}, context=shop, timestamp=at(2, 1))
    client.track("u1", "Order Completed", {"total": 7}, context=shop, timestamp=at(1))
    client.track("u1", "Product Shared", context=shop, timestamp=at(1, 1))
    client.page("u1", "Docs", "Home", context=shop, timestamp=at(0, 1))
    client.screen("u1", "App", "Settings", context=shop, timestamp=at(0, 2))
    client.track(anonymous_id="anon-1", event="Video Played", timestamp=at(1, 2))
    client.page(anonymous_id="anon-1", name="Pricing", timestamp=at(1, 3))
    client.identify("u3", {"email": "u3@example.com"}, anonymous_id="anon-1", timestamp=at(1, 1))
    client.track("u3", "Application Opened", timestamp=at(1))
    client.track("u3", "content_post", timestamp=at(0, 3))
    client.group("u2", "g1", {"name": "team"}, timestamp=at(0))
    client.alias("anon-1", "u3", timestamp=at(0))
    client.track("u2", "complaint", timestamp=at(0, 1))
    client.track("u2", "Signed Out", timestamp=at(0, 2))
    client.track("u2", "Order Completed", {"coupon": "x"}, timestamp=at(0, 3))  # no revenue: dead-lettered
    client.flush()
    captured = capture.events()
    assert len(captured) == 16 and {e["type"] for e in captured} == {"track", "page", "screen", "identify", "group",
                                                                      "alias"}
    assert all(path == "/v1/batch" for path, _ in capture.bodies)

    # the first ten as single-event messages keyed by user, the rest as one RudderStack-style array (mixed users,
    # keyed by the first), one event sent twice, a message that is not JSON, an array element that is no object
    def key(e: dict[str, Any]) -> bytes:
        return str(e.get("userId") or e.get("anonymousId")).encode()

    messages = [(key(e), orjson.dumps(e)) for e in captured[:10]]
    messages.append((key(captured[10]), orjson.dumps([*captured[10:], 42])))
    # (the duplicate within the dedup horizon, 24 h of event time before the watermark)
    messages += [(key(captured[4]), orjson.dumps(captured[4])), (b"u9", b"not json at all")]
    asyncio.run(prepare_topics(deployment.settings))
    produce(deployment, messages)
    not_activity = run_worker(deployment, len(messages))

    expected = []
    for e in captured:
        if e["type"] in ("identify", "group", "alias"):
            continue
        props = e.get("properties") or {}
        etype = SEGMENT_TYPES.get(e["event"], e["event"]) if e["type"] == "track" else "page_view"
        amount = props.get("revenue", props.get("total"))
        if etype == "payment" and amount is None:
            continue
        app = ((e.get("context") or {}).get("app") or {}).get("namespace") or "default"
        expected.append((e["messageId"], app, e.get("userId") or e["anonymousId"], etype, e["timestamp"], amount))
    want = normalized(daily(expected))
    assert {user for _, user, _ in want} == {"u1", "u2", "u3", "anon-1"}  # no identity merge
    assert got_rows(deployment) == want

    assert not_activity == {"segment/identify": 1, "segment/group": 1, "segment/alias": 1}
    dead = dlq(deployment)
    assert Counter(d["reason"] for d in dead) == {"missing_amount": 1, "not_object": 1, "not_json": 1}
    assert {d["source"]["format"] for d in dead} == {"segment"}
    by_reason = {d["reason"]: d for d in dead}
    assert by_reason["missing_amount"]["source"]["index"] == 5  # captured[15] in the array
    assert by_reason["not_object"]["source"]["index"] == 6
    assert by_reason["not_json"]["source"]["index"] is None
    assert orjson.loads(by_reason["missing_amount"]["original_text"])["messageId"] == captured[15]["messageId"]


def test_posthog_sdk_batches_through_kafka(deployment: Deployment, capture: Capture) -> None:
    from posthog import Posthog

    config = deployment.base / "vitals.toml"
    config.write_text('[input]\nformat = "posthog"\napp_id = "blog"\n\n'
                      '[input.posthog]\nevent_types = {"purchase" = "payment", "liked_post" = "like"}\n')
    deployment.env["VITALS_CONFIG"] = str(config)
    client = Posthog("phc_test", host=capture.url, sync_mode=True, max_retries=0, enable_local_evaluation=False)
    client.capture("$pageview", distinct_id="p1", properties={"$device_id": "dev-9"}, timestamp=at(1))
    client.capture("purchase", distinct_id="p1", properties={"revenue": 30}, timestamp=at(1, 1))
    client.capture("liked_post", distinct_id="p1", timestamp=at(0, 1))
    client.capture("$screen", distinct_id="p2", timestamp=at(0, 2))
    client.set(distinct_id="p2", properties={"plan": "pro"})
    client.group_identify("company", "c1", {"name": "Acme"}, distinct_id="p2")
    client.capture("purchase", distinct_id="p2", timestamp=at(0, 3))  # no revenue: dead-lettered
    client.flush()
    captured = capture.events()
    names = [e["event"] for e in captured]
    assert names.count("$set") == 1 and names.count("$groupidentify") == 1 and len(captured) == 7, names

    messages = [(e["distinct_id"].encode(), orjson.dumps(e)) for e in captured]
    asyncio.run(prepare_topics(deployment.settings))
    produce(deployment, messages)
    not_activity = run_worker(deployment, len(messages))

    types = {"$pageview": "page_view", "$screen": "page_view", "purchase": "payment", "liked_post": "like"}
    expected = [(e["uuid"], "blog", e["distinct_id"], types.get(e["event"], e["event"]), e["timestamp"],
                 (e.get("properties") or {}).get("revenue"))
                for e in captured if e["event"] not in ("$set", "$groupidentify")
                and not (e["event"] == "purchase" and "revenue" not in e["properties"])]
    assert got_rows(deployment) == normalized(daily(expected))
    assert not_activity == {"posthog/$set": 1, "posthog/$groupidentify": 1}
    [dead] = dlq(deployment)
    assert (dead["reason"], dead["source"]["format"], dead["source"]["index"]) == ("missing_amount", "posthog", None)


def test_day_boundaries_are_utc() -> None:  # the helper above reads ts with offsets as UTC days
    assert daily([("e", "a", "u", "view", "2026-11-01T23:30:00-02:00", None)]) == {
        ("a", "u", str(date(2026, 11, 2))): (1, 0, 0, Decimal(0), 0, 0, 0)}


def test_a_segment_source_topic_beside_the_native_events_topic(deployment: Deployment, capture: Capture) -> None:
    """[[input.sources]]: a RudderStack topic in Segment's format with its own default tenant, read beside the
    events topic (section 1 events); its events reach their users' partitions through the reroute topic."""
    from segment.analytics.client import Client  # type: ignore[import-untyped]

    source = f"{deployment.env['VITALS_APP_ID']}.rudder"
    config = deployment.base / "vitals.toml"
    config.write_text(f'[[input.sources]]\ntopic = "{source}"\nformat = "segment"\napp_id = "shop"\n')
    deployment.env["VITALS_CONFIG"] = str(config)
    client = Client("wk", host=capture.url, sync_mode=True, max_retries=0)
    for i in range(12):
        client.track(f"s{i % 4}", "Order Completed" if i % 3 == 0 else "Viewed", {"revenue": i + 1},
                     timestamp=at(0, i))
    client.identify("s1", {"plan": "pro"}, timestamp=at(0))
    client.flush()
    captured = capture.events()
    native = [{"event_id": f"n{i}", "user_id": f"s{i % 4}", "type": "login", "ts": int(at(0, i).timestamp() * 1000),
               "app_id": "shop"} for i in range(6)]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=deployment.settings.kafka.bootstrap)
        await producer.start()
        try:
            for e in captured[:8]:  # keyed by user
                await producer.send_and_wait(source, orjson.dumps(e), key=str(e["userId"]).encode())
            await producer.send_and_wait(source, orjson.dumps(captured[8:]), key=b"s0")  # an array, mixed users
            for n in native:
                await producer.send_and_wait(deployment.settings.events_topic, orjson.dumps(n),
                                             key=str(n["user_id"]).encode())
        finally:
            await producer.stop()

    asyncio.run(prepare_topics(deployment.settings))  # creates the source topic, partitioned like the events topic
    asyncio.run(send())
    not_activity = run_worker(deployment, 9 + len(native))

    expected = [(e["messageId"], "shop", e["userId"], SEGMENT_TYPES.get(e["event"], e["event"]), e["timestamp"],
                 e["properties"]["revenue"]) for e in captured if e["type"] == "track"]
    expected += [(n["event_id"], "shop", n["user_id"], "login",
                  datetime.fromtimestamp(int(n["ts"]) / 1000, UTC).isoformat(), None) for n in native]
    assert got_rows(deployment) == normalized(daily(expected))
    assert not_activity == {"segment/identify": 1}
    assert dlq(deployment) == []
    raw = deployment.query(f"SELECT count() FROM vitals.raw_messages FINAL WHERE topic = '{source}'")
    assert raw == [[9]]
