"""Running workers for the benchmarks: a process per consumer-group member, from its start to the group's
lag 0, with the CPU, the peak resident memory and the main thread's busy share it took (``bench.run``,
``bench.ab``); the environment of a worker on the local broker (``worker_env``); the segments-on/off
comparison in interleaved rounds (``segments_lines``).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from streams.config.settings import Settings
from streams.devtools.worker_process import lag_by_partition


def worker_env(bootstrap: str, app_id: str, topic: str, data: Path) -> dict[str, str]:
    """A worker of group ``app_id`` on ``topic`` of the local broker, its data in ``data / app_id``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALS_")}
    env.update(VITALS_KAFKA_BOOTSTRAP=bootstrap, VITALS_APP_ID=app_id, VITALS_EVENTS_TOPIC=topic,
               VITALS_ALERTS_TOPIC=f"{app_id}.alerts", VITALS_DLQ_TOPIC=f"{app_id}.dlq",
               VITALS_SEGMENTS_TOPIC=f"{app_id}.segments", VITALS_DATA_DIR=str(data / app_id), VITALS_METRICS_PORT="0",
               VITALS_LOGLEVEL="WARNING")
    return env


class PeakRss:
    """Peak resident memory of each process of the trees started (each started process and its
    children), sampled by polling: a supervisor and its worker are two processes, not their sum.
    Also the CPU time of each process's main thread at every sample (``main_cpu``): how busy the
    thread that runs the event loop was between two moments (``main_busy``)."""

    def __init__(self, *pids: int) -> None:
        self.roots = [psutil.Process(pid) for pid in pids]
        self.peak: dict[int, tuple[str, int]] = {}  # pid -> (command, peak bytes)
        self.main_cpu: list[tuple[float, dict[int, float]]] = []  # (monotonic time, pid -> main thread CPU s)

    def main_busy(self, start: float, end: float) -> float:
        """The busiest process's main thread: its CPU seconds per second between the samples
        nearest after ``start`` and before ``end`` (0.0 when fewer than two samples fall there)."""
        inside = [(t, cpu) for t, cpu in self.main_cpu if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return 0.0
        (t0, first), (t1, last) = inside[0], inside[-1]
        return max((last[pid] - first.get(pid, 0.0) for pid in last), default=0.0) / (t1 - t0)

    def sample(self) -> None:
        procs: list[psutil.Process] = []
        for root in self.roots:
            try:
                procs += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        main: dict[int, float] = {}
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                name = " ".join(proc.cmdline()[1:4])
                for thread in proc.threads():
                    if thread.id == proc.pid:  # the main thread's id is the process's
                        main[proc.pid] = thread.user_time + thread.system_time
            except psutil.Error:
                continue
            if rss > self.peak.get(proc.pid, ("", 0))[1]:
                self.peak[proc.pid] = (name, rss)
        self.main_cpu.append((time.monotonic(), main))

    def figures(self) -> dict[str, Any]:
        by_process = {f"{pid} {name}": rss / 2**20 for pid, (name, rss) in sorted(self.peak.items())}
        return {"peak_rss_mb": max(by_process.values(), default=0.0), "peak_rss_mb_by_process": by_process}


def _until_lag_zero(settings: Settings, procs: Sequence[subprocess.Popen[bytes]], topics_done: Mapping[str, int],
                    timeout_s: float = 7200, sampler: PeakRss | None = None) -> tuple[float, float]:
    """(time of first progress, time lag reached 0) of the group of ``settings.app_id``, whose
    processes are ``procs``. Lag 0 counts when seen twice in a row: a flush delivers to the
    internal topics before it commits, but one pass reads each topic's end offsets before its
    committed offsets, so it can miss records another worker's flush is just delivering."""
    first = zero = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sampler is not None:
            sampler.sample()
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}")
        try:
            lags = asyncio.run(lag_by_partition(settings))
        except Exception:  # coordinator not ready yet
            time.sleep(0.5)
            continue
        now = time.monotonic()
        events_lag = {k: v for k, v in lags.items() if k[0] in topics_done}
        total = sum(events_lag.values())
        if first is None and total < topics_done[settings.events_topic]:
            first = now
        if lags or first is None:
            zero = None
        elif zero is None:
            zero = now
        else:
            return first, zero
        time.sleep(0.25)
    raise TimeoutError(f"lag did not reach 0 within {timeout_s:.0f}s")


def start(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A process in its own process group (a supervised worker's child is in it too). Its output
    is dropped, or appended to a file in ``VITALS_BENCH_LOG_DIR`` if set (a diagnosis, e.g. of
    the ``SIGUSR1`` dumps of a worker under load)."""
    log_dir = os.environ.get("VITALS_BENCH_LOG_DIR")
    if not log_dir:
        return subprocess.Popen(args, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    name = Path(next(a for a in args[1:] if not a.startswith("-"))).name  # the module or script
    with open(Path(log_dir) / f"{name}-{time.time_ns()}.log", "ab") as out:
        return subprocess.Popen(args, env=dict(env), stdout=out, stderr=out, start_new_session=True)


def stop(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float = 120) -> None:
    """SIGTERM each started process (a supervisor forwards it to its worker), wait, then make sure
    nothing of their process groups is left: SIGKILL the stragglers."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"process {proc.pid} did not stop within {timeout_s:.0f}s: killed", file=sys.stderr)
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its group: the process itself and any child left
        except ProcessLookupError:
            continue
        proc.wait()


def run_process(args: list[str], envs: Sequence[Mapping[str, str]], n_messages: int, settings: Settings,
                ) -> dict[str, Any]:
    """Run ``args`` once per environment (processes of one consumer group) until the group's lag
    is 0; time from first progress, CPU of all of them, peak RSS per process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs += [start(args, env) for env in envs]
        rss = PeakRss(*(p.pid for p in procs))
        first, done = _until_lag_zero(settings, procs, {settings.events_topic: n_messages}, sampler=rss)
    finally:
        stop(procs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # small runs can finish before the first offset commit: then time from process start
    seconds = done - first if done - first > 5 else done - started
    return {"seconds": seconds, "startup_s": first - started, "cpu_s": (after.ru_utime + after.ru_stime) -
            (before.ru_utime + before.ru_stime), "processes": len(procs), **rss.figures(),
            "main_thread_busy": rss.main_busy(first, done)}


def vitals_line(envs: Sequence[Mapping[str, str]], settings: Settings, n_msgs: int, n_events: int,
                tree: str | None = None) -> dict[str, Any]:
    """vitals workers (one per environment) in the group of ``settings``, to lag 0; the code of the
    checkout ``tree`` if given (its C extension built in place; first on the path through PYTHONPATH, which
    the worker's ``python -P`` child inherits), else this one's."""
    if tree:
        envs = [dict(env, PYTHONPATH=tree) for env in envs]
    r = run_process([sys.executable, "-P", "-m", "streams.cli", "worker", "--loglevel", "WARNING"], envs, n_msgs,
                    settings)
    r["events"] = n_events
    r["events_per_s"] = n_events / r["seconds"]
    r["cpu_s_per_million"] = r["cpu_s"] / n_events * 1e6
    return r




def segments_lines(shape: str, bootstrap: str, topic: str, work: Path, tag: str, n_msgs: int, n_events: int,
                   rounds: int, load: Callable[[Mapping[str, str]], Settings],
                   prepare: Callable[[Settings], None], extra: Mapping[str, str], min_seconds: float = 0,
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The vitals line with segments on and with ``processing.segments = false``, run alternately
    ``rounds`` times each, every run a new consumer group from the first message (this machine's speed
    drifts by 10-20% within minutes: one run of each compares moments, not configurations). Returns the
    run with the median events/s of each configuration, with every run's events/s and CPU per million
    events beside it (``rounds_events_per_s``, ``rounds_cpu_s_per_million``). ``load`` makes the settings
    of an environment, ``prepare`` creates their topics, ``extra`` is added to every environment.
    ``min_seconds``: more rounds (up to four times ``rounds``) until each configuration has run that long
    in all: a short run (the batch shape processes 2M events in about 8 s) is moved by one slow moment."""
    config = work / f"bench-{shape}-{tag}-noseg.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[processing]\nsegments = false\n")
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    round_ = 0
    while round_ < rounds or (round_ < 4 * rounds and min(sum(r["seconds"] for r in rs) for rs in runs.values())
                              < min_seconds):
        for on in (True, False):
            app_id = f"bench-{shape}-{tag}" + ("" if on else "-noseg") + (f"-r{round_}" if round_ else "")
            env = dict(worker_env(bootstrap, app_id, topic, work), **extra)
            if not on:
                env["VITALS_CONFIG"] = str(config)
            settings = load(env)
            prepare(settings)
            print(f"[{shape}] vitals, segments {'on' if on else 'off'}, round {round_ + 1} (at least {rounds})...",
                  file=sys.stderr)
            runs[on].append(vitals_line([env], settings, n_msgs, n_events))
        round_ += 1

    def median_run(rs: list[dict[str, Any]]) -> dict[str, Any]:
        rates = [r["events_per_s"] for r in rs]
        chosen = dict(min(rs, key=lambda r: abs(r["events_per_s"] - statistics.median_low(rates))))
        chosen["rounds_events_per_s"] = rates
        chosen["rounds_cpu_s_per_million"] = [r["cpu_s_per_million"] for r in rs]
        return chosen

    return median_run(runs[True]), median_run(runs[False])
