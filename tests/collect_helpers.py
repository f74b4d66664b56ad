"""``vitals collect`` as a process for the integration tests, the real Segment and PostHog SDKs pointed at it,
and an independent expectation of ``user_activity_daily`` from what the SDKs were asked to send (the SPEC 8
mapping written out again here, not imported)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import Deployment, free_port
from tests.procs import wait_for

SEGMENT_KEY, SEGMENT_APP = "wk_test_shop", "shop"
POSTHOG_KEY, POSTHOG_APP = "phc_test_news", "news"
DAILY = ("SELECT app_id, user_id, toString(day), events, logins, payments, toString(payment_amount), "
         "content_posts, social, complaints FROM vitals.user_activity_daily FINAL")
SOCIAL = ("comment", "like", "share", "follow")


@dataclass
class Collector:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def healthy(self) -> bool:
        try:
            return self.get("/health")[0] == 200
        except OSError:
            return False

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_collector(deployment: Deployment, name: str = "collect") -> Collector:
    config = deployment.base / f"{name}.toml"
    config.write_text(f'[collect]\napps = {{"{SEGMENT_KEY}" = "{SEGMENT_APP}", "{POSTHOG_KEY}" = "{POSTHOG_APP}"}}\n')
    port = free_port()
    log = deployment.base / f"{name}.log"
    env = dict(deployment.env, VITALS_CONFIG=str(config), VITALS_COLLECT_PORT=str(port))
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-P", "-m", "streams.cli", "collect"], env=env, stdout=out,
                                stderr=out)
    collector = Collector(proc, port, log)
    try:
        wait_for(lambda: collector.healthy() or proc.poll() is not None, 120, "the collector's /health")
    except BaseException:
        collector.stop()
        raise
    assert proc.poll() is None, log.read_text()
    return collector


# ---- what the SDKs are asked to send, and what ClickHouse must then hold --------------------------------

@dataclass(frozen=True)
class Sent:
    """One call made on an SDK: ``vitals_type`` None for calls that are no activity (identify, $set)."""

    sdk: str  # segment | posthog
    call: str  # track | page | screen | identify | capture | set
    name: str | None
    user: str
    anonymous: bool
    event_id: str
    ts: datetime
    amount: Decimal | None
    vitals_type: str | None


SEGMENT_CALLS = [  # (call, event name, the vitals type the SPEC 8 table gives it)
    ("track", "Signed In", "login"), ("track", "Application Opened", "login"), ("track", "Signed Out", "logout"),
    ("track", "Order Completed", "payment"), ("track", "content_post", "content_post"),
    ("track", "comment", "comment"), ("track", "Product Shared", "share"), ("track", "complaint", "complaint"),
    ("track", "Video Played", "Video Played"), ("page", None, "page_view"), ("screen", None, "page_view"),
    ("identify", None, None),
]
POSTHOG_CALLS = [
    ("capture", "$pageview", "page_view"), ("capture", "$screen", "page_view"), ("capture", "login", "login"),
    ("capture", "payment", "payment"), ("capture", "like", "like"), ("capture", "follow", "follow"),
    ("capture", "content_post", "content_post"), ("capture", "complaint", "complaint"),
    ("capture", "clicked button", "clicked button"), ("set", None, None),
]


@dataclass
class Plan:
    calls: list[Sent] = field(default_factory=list)

    def expected(self) -> dict[tuple[str, str, str], tuple[int, int, int, Decimal, int, int, int]]:
        acc: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, Decimal(0), 0, 0, 0])
        seen: set[tuple[str, str, str]] = set()
        for s in self.calls:
            if s.vitals_type is None:
                continue
            app = SEGMENT_APP if s.sdk == "segment" else POSTHOG_APP
            if (app, s.user, s.event_id) in seen:
                continue
            seen.add((app, s.user, s.event_id))
            c = acc[(app, s.user, s.ts.astimezone(UTC).date().isoformat())]
            c[0] += 1
            c[1] += s.vitals_type == "login"
            if s.vitals_type == "payment":
                c[2] += 1
                c[3] += s.amount or Decimal(0)
            c[4] += s.vitals_type == "content_post"
            c[5] += s.vitals_type in SOCIAL
            c[6] += s.vitals_type == "complaint"
        return {k: (c[0], c[1], c[2], c[3], c[4], c[5], c[6]) for k, c in acc.items()}

    def activity(self) -> int:
        return sum(1 for s in self.calls if s.vitals_type is not None)


def make_plan(seed: int, events: int, now: datetime, users: int = 30, dup_rate: float = 0.03) -> Plan:
    """``events`` calls over the last 6 days, half per SDK, some repeated with the same id (redeliveries)."""
    rng = random.Random(seed)
    plan = Plan()
    for i in range(events):
        sdk = "segment" if i % 2 == 0 else "posthog"
        call, name, vtype = rng.choice(SEGMENT_CALLS if sdk == "segment" else POSTHOG_CALLS)
        anonymous = sdk == "segment" and rng.random() < 0.15
        user = f"{'anon' if anonymous else sdk[0]}-{rng.randrange(users)}"
        ts = (now - timedelta(days=rng.randrange(6), seconds=rng.randrange(86_400))).replace(microsecond=0)
        amount = Decimal(rng.randrange(1, 400)) / 4 if vtype == "payment" else None
        event_id = str(uuid.UUID(int=rng.getrandbits(128)))
        sent = Sent(sdk, call, name, user, anonymous, event_id, ts, amount, vtype)
        plan.calls.append(sent)
        if rng.random() < dup_rate:
            plan.calls.append(sent)  # sent again, same id: counted once
    return plan


class SDKs:
    """The real segment-analytics-python and posthog clients, pointed at the collector."""

    def __init__(self, url: str, gzip: bool = False) -> None:
        import posthog
        from segment.analytics import Client

        self.errors: list[str] = []
        self.segment = Client(write_key=SEGMENT_KEY, host=url, gzip=gzip, upload_size=50, max_retries=12,
                              on_error=lambda exc, batch: self.errors.append(f"segment: {exc}"))
        self.posthog = posthog.Posthog(POSTHOG_KEY, host=url, gzip=gzip, flush_at=80, max_retries=12,
                                       on_error=lambda exc, batch: self.errors.append(f"posthog: {exc}"))

    def send(self, calls: Iterator[Sent] | list[Sent]) -> None:
        for s in calls:
            if s.sdk == "segment":
                self._segment(s)
            else:
                self._posthog(s)

    def _segment(self, s: Sent) -> None:
        who = {"anonymous_id": s.user} if s.anonymous else {"user_id": s.user}
        context = {"device": {"id": f"dev-{s.user}"}}
        if s.call == "track":
            props = {"revenue": float(s.amount)} if s.amount is not None else {"plan": "pro"}
            self.segment.track(event=s.name, properties=props, timestamp=s.ts, message_id=s.event_id,
                               context=context, **who)
        elif s.call == "page":
            self.segment.page(name="Home", timestamp=s.ts, message_id=s.event_id, context=context, **who)
        elif s.call == "screen":
            self.segment.screen(name="Feed", timestamp=s.ts, message_id=s.event_id, context=context, **who)
        else:
            self.segment.identify(traits={"plan": "pro"}, timestamp=s.ts, message_id=s.event_id, **who)

    def _posthog(self, s: Sent) -> None:
        if s.call == "set":
            self.posthog.set(distinct_id=s.user, properties={"plan": "pro"}, timestamp=s.ts, uuid=s.event_id)
            return
        props: dict[str, Any] = {"$device_id": f"dev-{s.user}"}
        if s.amount is not None:
            props["revenue"] = float(s.amount)
        self.posthog.capture(s.name or "", distinct_id=s.user, properties=props, timestamp=s.ts, uuid=s.event_id)

    def flush(self) -> None:
        self.segment.flush()
        self.posthog.flush()

    def close(self) -> None:
        self.segment.shutdown()
        self.posthog.shutdown()


def daily_rows(deployment: Deployment) -> dict[tuple[str, str, str], tuple[int, int, int, Decimal, int, int, int]]:
    got: dict[tuple[str, str, str], tuple[int, int, int, Decimal, int, int, int]] = {}
    for app, user, day, *v in deployment.query(DAILY):
        key = (str(app), str(user), str(day))
        assert key not in got, f"FINAL returned two rows for {key}"
        got[key] = (int(v[0]), int(v[1]), int(v[2]), Decimal(str(v[3])), int(v[4]), int(v[5]), int(v[6]))
    return got


def assert_rows_equal(expected: dict[Any, Any], got: dict[Any, Any]) -> None:
    missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
    assert not missing, f"{len(missing)} rows missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected rows, e.g. {sorted(extra)[:3]}"
    wrong = [(k, expected[k], got[k]) for k in expected if expected[k] != got[k]]
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[:3]}"


def metrics_text(collector: Collector) -> str:
    status, body = collector.get("/metrics")
    assert status == 200
    return body.decode()


def metric_sum(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any] | None]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, None
