"""A worker's Prometheus counters, kept after it stops: what the report's data-quality panel reads when
ClickHouse holds no event outcome counts (a database written before ``event_outcomes``, sinks/outcomes.py)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

SNAPSHOT_NAME = "worker-metrics.prom"


def snapshot_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / SNAPSHOT_NAME


def scrape(host: str, port: int, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as resp:
        return str(resp.read().decode())


def save_snapshot(host: str, port: int, path: Path) -> Path | None:
    """Scrape the worker once and keep the text; None (and no file) if it does not answer."""
    try:
        text = scrape(host, port)
    except OSError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def event_outcomes(text: str) -> dict[tuple[str, str], float]:
    """``vitals_events_total`` by (outcome, reason) from exposition text."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "vitals_events":
            continue
        for sample in family.samples:
            if sample.name == "vitals_events_total":
                key = (sample.labels.get("outcome", ""), sample.labels.get("reason", ""))
                out[key] = out.get(key, 0.0) + sample.value
    return out
