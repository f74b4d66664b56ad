"""The benchmark's verdict on the targets of issues 5 and 27 (bench/targets.py): what a run measured decides
met or missed, and what it did not measure is never reported as met."""

from __future__ import annotations

from typing import Any

from bench.targets import TARGETS, check, paired_figures, table


def passing_run() -> dict[str, Any]:
    return {
        "batch": {
            "vitals": {"events_per_s": 187_000.0, "ratio_to_ceiling": 0.30, "ratio_to_naive": 82.0,
                       "ratio_to_peer": 12.0, "ratio_to_floor": 2.4, "ratio_to_no_segments": 0.97},
            "latency": {"p99_s": 0.091, "alerts_missing": 0},
        },
        "single": {
            "vitals": {"events_per_s": 40_000.0, "ratio_to_floor": 2.5, "ratio_to_no_segments": 0.95},
            "latency": {"p99_s": 0.1, "alerts_missing": 0},
        },
        "state": {"users": 1_000_000, "bytes_per_user": 146.0},
        "recovery": {"users": 1_000_000, "first start": {"start_to_ready_s": 25.3}},
    }


def verdict(results: dict[str, Any], name_start: str) -> tuple[float | None, bool | None]:
    (v,) = [v for v in check(results) if v.target.name.startswith(name_start)]
    return v.measured, v.met


def test_a_run_meeting_every_target_is_reported_met() -> None:
    verdicts = check(passing_run())
    assert len(verdicts) == len(TARGETS)
    assert all(v.met is True for v in verdicts), [v.line() for v in verdicts if not v.met]
    assert "MISSED" not in table(verdicts)
    first = verdicts[0].as_json()
    assert first == {"target": "batch: vitals events/s", "measured": 187_000.0, "bound": ">= 100000", "met": True}


def test_each_bound_is_applied_as_written() -> None:
    run = passing_run()
    run["batch"]["vitals"]["events_per_s"] = 99_999.0
    run["batch"]["vitals"]["ratio_to_peer"] = 1.0  # "faster than the peer": equal is not faster
    run["single"]["vitals"]["ratio_to_floor"] = 0.8  # ">= 0.8x": the bound itself is met
    run["batch"]["latency"]["alerts_missing"] = 1
    run["state"]["bytes_per_user"] = 1025.0
    run["recovery"]["first start"]["start_to_ready_s"] = 60.0
    run["single"]["vitals"]["ratio_to_no_segments"] = 0.89  # segments cost more than 10%
    run["batch"]["vitals"]["ratio_to_no_segments"] = 0.9
    assert verdict(run, "single: vitals / vitals with segments off") == (0.89, False)
    assert verdict(run, "batch: vitals / vitals with segments off") == (0.9, True)
    assert verdict(run, "batch: vitals events/s") == (99_999.0, False)
    assert verdict(run, "batch: vitals / peer") == (1.0, False)
    assert verdict(run, "single: vitals / Faust floor") == (0.8, True)
    assert verdict(run, "batch: latency probes") == (1.0, False)
    assert verdict(run, "state per tracked user") == (1025.0, False)
    assert verdict(run, "restart with 1M users") == (60.0, True)
    assert "MISSED" in table(check(run))


def test_what_the_run_did_not_measure_is_not_met() -> None:
    run = passing_run()
    del run["single"]
    del run["batch"]["latency"]
    run["recovery"]["users"] = 100_000  # the 1M-user targets need 1M users
    run["state"]["users"] = 999_999
    unmeasured = {v.target.name for v in check(run) if v.met is None}
    assert unmeasured == {t.name for t in TARGETS if t.path[0] in ("single", "recovery", "state")
                          or t.path[:2] == ("batch", "latency")}
    assert all(v.measured is None for v in check(run) if v.met is None)


def test_a_figure_that_is_not_a_number_is_not_measured() -> None:
    run = passing_run()
    run["batch"]["vitals"]["events_per_s"] = True
    run["batch"]["vitals"]["ratio_to_ceiling"] = "0.3"
    assert verdict(run, "batch: vitals events/s") == (None, None)
    assert verdict(run, "batch: vitals / ceiling") == (None, None)


def test_the_paired_readings_of_the_segments_rounds() -> None:
    """The figures beside the median runs' ratio: the median of the rounds' own ratios, which a drift
    between rounds does not move, and the CPU per event on over off."""
    on = {"rounds_events_per_s": [100.0, 60.0, 90.0], "rounds_cpu_s_per_million": [33.0, 30.0, 36.0]}
    off = {"rounds_events_per_s": [110.0, 50.0, 100.0], "rounds_cpu_s_per_million": [31.0, 30.0, 29.0]}
    figures = paired_figures(on, off)
    # the rounds' ratios 0.909, 1.2, 0.9 (the second round ran slow for both); the median runs' 90 / 100
    assert abs(figures["paired_ratio_median"] - 100 / 110) < 1e-12
    assert abs(figures["cpu_ratio_to_no_segments"] - 33.0 / 30.0) < 1e-12
