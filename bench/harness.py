"""Measuring one side against another: A/B pairs, alternating order, median ratio with its spread.

Each pair runs both sides back to back; the order flips every pair (baseline first, then subject
first, ...), so slow drift on a shared machine and "the second run finds warm caches" cancel
instead of favouring one side. A warm-up pair runs before the measured ones and is thrown away.

Two clocks are read for every run: wall time and the process's CPU time. With torch limited to one
thread, the CPU time is the compute the run did, and it barely moves when other processes compete
for the cores (the wall time does); the ratio is taken on the clock the config names. The CPU time
is also kept split into user and system time, with the minor page faults of the run: system time
is the kernel's share (mostly zeroing pages the allocator handed back and asked for again), which
the ratio's CPU clock would otherwise silently include.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

CLOCKS = ("cpu", "wall")


class BenchError(Exception):
    """A benchmark could not run (a side failed, a bad option): one sentence, no traceback."""


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # seconds of process CPU time (all threads)
    user: float = 0.0  # the CPU time split: user ...
    system: float = 0.0  # ... and kernel (system) seconds
    minor_faults: int = 0  # page faults served without I/O (0 where the platform has no getrusage)

    def on(self, clock: str) -> float:
        return self.cpu if clock == "cpu" else self.wall


def minor_faults() -> int:
    try:
        import resource
    except ImportError:  # Windows: no getrusage
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(run: Callable[[], Any]) -> tuple[Timing, Any]:
    """Run once after a garbage collection (so no side pays for the other's garbage)."""
    gc.collect()
    wall, cpu, times, faults = time.perf_counter(), time.process_time(), os.times(), minor_faults()
    value = run()
    after = os.times()
    return Timing(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu, user=after.user - times.user,
                  system=after.system - times.system, minor_faults=minor_faults() - faults), value


@dataclass
class CaseResult:
    """One line of the table: a ratio subject/baseline (unit "x") or a plain measurement (ms, s, MiB)."""

    case: str  # "1", "2", ... as in the issue
    name: str  # short identifier, e.g. "loop_vs_stock"
    family: str | None
    subject: str
    baseline: str | None
    unit: str  # "x" for ratios
    median: float
    low: float
    high: float
    samples: list[float]
    target: float | None = None  # ratios: at most this; None = reported only
    clock: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def best(self) -> float | None:
        return self.details.get("best_ratio")

    @property
    def direct(self) -> float | None:
        """The ratio computed from instrumented parts of the runs (see the case), where there is one."""
        return self.details.get("direct_ratio")

    @property
    def status(self) -> str:
        if self.target is None:
            return "reported"
        return "ok" if self.median <= self.target else "MISS"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status
        return data


class CallTimer:
    """Time spent inside chosen callables or modules (CPU and wall), summed until `take()`.

    Modules get forward pre/post hooks; the benchmark uses it to split a run into "inside the
    networks" (identical work on both sides of a comparison) and "everything else" (the loop's own cost).
    """

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0
        self.calls = 0
        self._started: dict[int, tuple[float, float]] = {}
        self._handles: list[Any] = []

    def watch_modules(self, modules) -> CallTimer:
        for module in modules:
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._leave))
        return self

    def wrap(self, function: Callable) -> Callable:
        def timed_call(*args, **kwargs):
            self._enter(function)
            try:
                return function(*args, **kwargs)
            finally:
                self._leave(function)

        return timed_call

    def _enter(self, key, *args) -> None:
        self._started[id(key)] = (time.process_time(), time.perf_counter())

    def _leave(self, key, *args) -> None:
        cpu, wall = self._started.pop(id(key))
        self.cpu += time.process_time() - cpu
        self.wall += time.perf_counter() - wall
        self.calls += 1

    def take(self) -> Timing:
        """The time summed since the last take, and start again from zero."""
        taken = Timing(wall=self.wall, cpu=self.cpu)
        self.cpu = self.wall = 0.0
        self.calls = 0
        return taken

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


@dataclass
class PairRuns:
    """The raw timings of an A/B measurement."""

    subject: list[Timing]
    baseline: list[Timing]
    first_outputs: tuple[Any, Any] = (None, None)  # (subject, baseline) of the first measured pair

    def ratios(self, clock: str) -> list[float]:
        return [s.on(clock) / b.on(clock) for s, b in zip(self.subject, self.baseline)]

    def best_ratio(self, clock: str) -> float:
        """Fastest subject run over fastest baseline run: contention only ever adds time, so on a
        shared machine the minima are the runs closest to the undisturbed cost."""
        return min(t.on(clock) for t in self.subject) / min(t.on(clock) for t in self.baseline)

    def medians(self) -> dict[str, float]:
        return {
            "subject_wall_s": statistics.median(t.wall for t in self.subject),
            "subject_cpu_s": statistics.median(t.cpu for t in self.subject),
            "baseline_wall_s": statistics.median(t.wall for t in self.baseline),
            "baseline_cpu_s": statistics.median(t.cpu for t in self.baseline),
            "subject_user_s": statistics.median(t.user for t in self.subject),
            "baseline_user_s": statistics.median(t.user for t in self.baseline),
            "subject_system_s": statistics.median(t.system for t in self.subject),
            "baseline_system_s": statistics.median(t.system for t in self.baseline),
            "subject_minor_faults": statistics.median(t.minor_faults for t in self.subject),
            "baseline_minor_faults": statistics.median(t.minor_faults for t in self.baseline),
        }


def run_pairs(subject: Callable[[], Any], baseline: Callable[[], Any], *, pairs: int, warmup: int = 1) -> PairRuns:
    """`warmup` discarded pairs, then `pairs` measured ones in alternating order."""
    if pairs < 1:
        raise BenchError("A measurement needs at least one pair.")
    for _ in range(warmup):
        baseline()
        subject()
    runs = PairRuns(subject=[], baseline=[])
    for index in range(pairs):
        if index % 2 == 0:
            base_timing, base_out = timed(baseline)
            subject_timing, subject_out = timed(subject)
        else:
            subject_timing, subject_out = timed(subject)
            base_timing, base_out = timed(baseline)
        runs.subject.append(subject_timing)
        runs.baseline.append(base_timing)
        if index == 0:
            runs.first_outputs = (subject_out, base_out)
    return runs


def run_rounds(baseline: Callable[[], Any], subjects: dict[str, Callable[[], Any]], *, rounds: int,
               warmup: int = 1) -> dict[str, PairRuns]:
    """Several subjects against ONE baseline: every round runs the baseline and each subject once.

    Even rounds run the baseline first and the subjects after it; odd rounds the subjects (in reverse)
    and the baseline last, so each subject alternates before/after the baseline as in `run_pairs`,
    while the baseline runs once per round instead of once per subject.
    """
    if rounds < 1:
        raise BenchError("A measurement needs at least one round.")
    for _ in range(warmup):
        baseline()
        for run in subjects.values():
            run()
    measured = {name: PairRuns(subject=[], baseline=[]) for name in subjects}
    for index in range(rounds):
        outputs: dict[str, Any] = {}
        if index % 2 == 0:
            base_timing, base_out = timed(baseline)
            for name, run in subjects.items():
                outputs[name] = timed(run)
        else:
            for name, run in reversed(list(subjects.items())):
                outputs[name] = timed(run)
            base_timing, base_out = timed(baseline)
        for name, (timing, value) in outputs.items():
            measured[name].subject.append(timing)
            measured[name].baseline.append(base_timing)
            if index == 0:
                measured[name].first_outputs = (value, base_out)
    return measured


def ratio_result(runs: PairRuns, *, case: str, name: str, family: str | None, subject: str, baseline: str,
                 clock: str, target: float | None, details: dict | None = None, note: str = "") -> CaseResult:
    ratios = runs.ratios(clock)
    median, low, high = spread(ratios)
    other = "wall" if clock == "cpu" else "cpu"
    other_median = statistics.median(runs.ratios(other))
    all_details = {**runs.medians(), f"ratio_{other}_median": other_median,
                   "best_ratio": runs.best_ratio(clock), f"best_ratio_{other}": runs.best_ratio(other),
                   **(details or {})}
    return CaseResult(case=case, name=name, family=family, subject=subject, baseline=baseline, unit="x",
                      median=median, low=low, high=high, samples=ratios, target=target, clock=clock,
                      details=all_details, note=note)
