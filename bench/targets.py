"""The targets of issues 5 and 27, checked against the figures one ``bench.run`` measured.

Pure: ``check(results)`` reads the results dictionary ``bench.run`` writes as JSON and says, per
target, what was measured, the bound and whether it holds. A target whose figure the run did not
measure (a shape not run, a phase skipped) is reported as not measured, never as met.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

KB = 1024
MILLION = 1_000_000


@dataclass(frozen=True)
class Target:
    name: str
    path: tuple[str, ...]  # where the figure is in the results
    compare: str  # ">=", ">" or "<="
    bound: float
    unit: str = ""
    # the figure counts only when the user count at this path is at least MILLION (measured at 1M users)
    at_million_users: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Verdict:
    target: Target
    measured: float | None
    met: bool | None  # None: not measured

    def as_json(self) -> dict[str, Any]:
        t = self.target
        return {"target": t.name, "measured": self.measured, "bound": f"{t.compare} {t.bound:g}", "met": self.met}

    def line(self) -> str:
        t = self.target
        measured = "not measured" if self.measured is None else _fmt(self.measured, t.unit)
        status = {True: "met", False: "MISSED", None: "-"}[self.met]
        return f"{t.name:<52}{measured:>14}  {t.compare:>2} {_fmt(t.bound, t.unit):<14}{status}"


_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, ">": operator.gt, "<=": operator.le}

TARGETS: tuple[Target, ...] = (
    Target("batch: vitals events/s", ("batch", "vitals", "events_per_s"), ">=", 100_000, "ev/s"),
    Target("batch: vitals / ceiling", ("batch", "vitals", "ratio_to_ceiling"), ">=", 0.15, "x"),
    Target("batch: vitals / naive", ("batch", "vitals", "ratio_to_naive"), ">=", 20, "x"),
    Target("batch: vitals / peer (faster than Quix Streams)", ("batch", "vitals", "ratio_to_peer"), ">", 1, "x"),
    Target("single: vitals / Faust floor", ("single", "vitals", "ratio_to_floor"), ">=", 0.8, "x"),
    # issue 27: segments cost at most 10% (medians of the interleaved on/off runs: bench.processes.segments_lines)
    Target("batch: vitals / vitals with segments off", ("batch", "vitals", "ratio_to_no_segments"), ">=", 0.9, "x"),
    Target("single: vitals / vitals with segments off", ("single", "vitals", "ratio_to_no_segments"), ">=", 0.9, "x"),
    Target("state per tracked user (encoded + key), 1M users", ("state", "bytes_per_user"), "<=", KB, "B",
           ("state", "users")),
    Target("batch: p99 event-to-alert latency at half load", ("batch", "latency", "p99_s"), "<=", 1.0, "s"),
    Target("batch: latency probes without their alert", ("batch", "latency", "alerts_missing"), "<=", 0),
    Target("single: p99 event-to-alert latency at half load", ("single", "latency", "p99_s"), "<=", 1.0, "s"),
    Target("single: latency probes without their alert", ("single", "latency", "alerts_missing"), "<=", 0),
    Target("restart with 1M users' state: start to ready", ("recovery", "first start", "start_to_ready_s"),
           "<=", 60, "s", ("recovery", "users")),
)


def _fmt(value: float, unit: str) -> str:
    if unit == "ev/s":
        return f"{value:,.0f} ev/s"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:g}"


def _figure(results: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = results
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def check(results: Mapping[str, Any], targets: tuple[Target, ...] = TARGETS) -> list[Verdict]:
    """Each target's verdict on ``results``; a figure of a 1M-user target measured at fewer users
    is reported as not measured."""
    verdicts = []
    for target in targets:
        measured = _figure(results, target.path)
        if target.at_million_users and (_figure(results, target.at_million_users) or 0) < MILLION:
            measured = None
        met = None if measured is None else _OPS[target.compare](measured, target.bound)
        verdicts.append(Verdict(target, measured, met))
    return verdicts


def table(verdicts: list[Verdict]) -> str:
    return "\n".join(["targets (issues 5 and 27):", *(f"  {v.line()}" for v in verdicts)])


def paired_figures(on: Mapping[str, Any], off: Mapping[str, Any]) -> dict[str, float]:
    """Two readings of ``bench.processes.segments_lines``' rounds less exposed to this machine's drift than
    the ratio of the median runs (the one the targets check): the median of the rounds' own on/off events/s
    ratios (a round's two runs are a minute apart), and the CPU per event with segments on over off (medians
    of the rounds)."""
    pairs = [a / b for a, b in zip(on["rounds_events_per_s"], off["rounds_events_per_s"], strict=True)]
    cpu = statistics.median(on["rounds_cpu_s_per_million"]) / statistics.median(off["rounds_cpu_s_per_million"])
    return {"paired_ratio_median": statistics.median(pairs), "cpu_ratio_to_no_segments": cpu}
