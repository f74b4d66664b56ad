"""Observability checked for real: promtool on the shipped config and rules, and a real
Prometheus scraping a real worker that processes generated traffic; every PromQL expression of
the dashboard and the rules runs through Prometheus' HTTP API."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from streams.devtools.generator import GenConfig, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from tests.conftest import free_port
from tests.procs import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "vitals.json"


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def rule_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load((PROM / "vitals.rules.yml").read_text())
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    return {m for m in re.findall(r"\b(vitals_[a-z_]+)", expr)}


def test_promtool_config_rules_and_rule_unit_tests() -> None:
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "vitals.rules.yml"],
                 ["test", "rules", "vitals.rules.test.yml"]):
        done = subprocess.run(["promtool", *args], cwd=PROM, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _query(base: str, expr: str) -> dict:
    return _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def test_real_prometheus_scrapes_worker_and_every_expression_works(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = deployment.settings
    partitions = asyncio.run(prepare_topics(settings))
    history = generate(GenConfig(users=800, days=10, events=30_000, seed=3, batch=10, partitions=partitions))
    asyncio.run(produce_history(settings, history))
    worker = deployment.worker()
    port = settings.metrics_port
    prom_dir = tmp_path / "prometheus"
    shutil.copytree(PROM, prom_dir)
    for f in (prom_dir / "targets").glob("*.json"):
        f.unlink()
    (prom_dir / "targets" / "test.json").write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"]}]))
    prom_port = free_port()
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={prom_dir / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    base = f"http://127.0.0.1:{prom_port}"
    try:
        wait_for_lag_zero(settings, worker, len(history.messages), timeout_s=300, progress=False)
        wait_for(lambda: _query(base, 'up{job="vitals"} == 1')["data"]["result"], 60, "a successful scrape")
        wait_for(lambda: _query(base, "vitals_product_dau")["data"]["result"], 60, "product gauges")
        wait_for(lambda: _query(base, "vitals_consumer_lag_messages")["data"]["result"], 60, "consumer lag")
        wait_for(lambda: _query(base, 'count_over_time(up{job="vitals"}[1m]) >= 3')["data"]["result"], 60,
              "three scrapes inside the rate() windows")

        for title, expr in dashboard_exprs():
            answer = _query(base, expr)
            assert answer["status"] == "success", (title, expr, answer)
            assert answer["data"]["result"], f"dashboard panel {title!r} returned no data: {expr}"
        for name, expr in rule_exprs():
            answer = _query(base, expr)
            assert answer["status"] == "success", (name, expr, answer)

        exposition = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        exported = set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))
        series_names = {n for line in exposition.splitlines() if not line.startswith("#")
                        for n in [line.split("{")[0].split(" ")[0]] if n}
        known = exported | series_names
        referenced = set().union(*(metric_names(e) for _, e in dashboard_exprs() + rule_exprs()))
        unknown = {m for m in referenced if m not in known}
        assert not unknown, f"dashboard/rules reference metrics the worker does not export: {unknown}"
        # no user or device ids in label values
        users = set(history.personas)
        values = set(re.findall(r'="([^"]*)"', exposition))
        assert not values & users
        assert not [v for v in values if v.startswith(("d-u", "farm-"))]
    finally:
        prom.terminate()
        prom.wait(30)
        worker.terminate()
        worker.wait(60)


def test_sigusr1_dumps_tasks_and_each_partitions_fetch_state(deployment, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An operator's SIGUSR1 (and the lag watchdog before it exits) logs every task's stack and, per
    assigned partition, Faust's bookkeeping and what aiokafka holds for it: the state needed to
    tell why a partition stopped being consumed."""
    import signal

    from streams.devtools.worker_process import stop_worker

    asyncio.run(prepare_topics(deployment.settings))
    log = tmp_path / "w0.log"
    worker = deployment.worker("w0")
    sent = 0

    def dump_of_a_consuming_worker() -> str | None:
        """The latest dump once it shows the fetch loop running; else signal again (once the
        previous signal's dump is written): right after the assignment, tables may still be
        recovering and the fetch loop not started yet."""
        nonlocal sent
        parts = log.read_text(errors="replace").split("consumer state:")
        if len(parts) - 1 < sent:
            return None  # the last signal's dump is not written yet
        if sent:
            # parts[-2]: the previous dump's state lines, then this dump's tasks; parts[-1]: its state
            latest = parts[-2] + "consumer state:" + parts[-1]
            if "in _drain_messages" in parts[-2] and ".events[0] committed=" in parts[-1]:
                return latest
        worker.send_signal(signal.SIGUSR1)
        sent += 1
        return None

    try:
        # the handler is installed before the consumer starts: a worker stuck while joining is covered
        wait_for(lambda: "assigned event partitions" in log.read_text(errors="replace") or None, 180, "assignment")
        dumped = wait_for(dump_of_a_consuming_worker, 120, "a dump of the consuming worker")
    finally:
        stop_worker(worker)
    line = next(x for x in dumped.splitlines() if ".events[0] committed=" in x)
    assert re.search(r"paused=(True|False) active=(True|False) buffered=(True|False) "
                     r"aiokafka: paused=(True|False) position=\S+ held=(True|False)", line), line
    assert "task " in dumped
    assert re.search(r"fetches queued for the agent of [^:\n]*reroute[^:\n]*: \d+/2", dumped), "the agents' input"
    assert re.search(r"awaits \S+consumer\.py:\d+ in _drain_messages", dumped), "the fetch loop's await chain"
    assert re.search(r"pipeline: pending messages=\d+ buffered outputs=\d+ lock held=(True|False) job=", dumped)
