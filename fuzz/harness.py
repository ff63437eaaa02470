"""Run a reader over many generated inputs and sort what happened into accepted, rejected or failure.

A `Target` bundles a reader with the error type it may raise, the seeds, a mutator and a check
of what an accepted input produced. `run_mutation` feeds it seeded byte mutations,
`run_hypothesis` feeds it hypothesis-generated structures; both return a `CampaignReport`.

A case is a failure when anything but the target's own error escapes, when that error's message
is not one clear sentence naming the file, when an accepted result breaks the target's
invariants, or when one read runs past the time limit (a hang on a hostile input is a denial of
service). Failing inputs are written to the crash folder so `--replay` can run them again.
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

DEFAULT_TIME_LIMIT = 10.0  # seconds one read may take; the seeds read in milliseconds
MAX_MESSAGE_CHARS = 600


@dataclass(frozen=True)
class Target:
    name: str
    suffix: str  # of the temp file the reader opens
    errors: tuple[type[BaseException], ...]  # what the reader may raise: the project's clear error type
    read: Callable[[Path], Any]
    check_result: Callable[[Any, Path], None]  # raises AssertionError when an accepted result is unsound
    seeds: Callable[[], list[bytes]]
    mutate: Callable[[random.Random, bytes], bytes]


@dataclass
class Failure:
    case: str
    kind: str  # escaped, unclear-message, invariant, hang
    summary: str
    detail: str = ""
    input_file: str = ""


@dataclass
class CampaignReport:
    target: str
    engine: str  # mutation or hypothesis
    seed: int
    cases: int = 0
    accepted: int = 0
    rejected: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    slowest_case_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    reasons: Counter = field(default_factory=Counter)  # rejection messages, file name stripped

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return (f"{self.target} [{self.engine}, seed {self.seed}]: {self.cases} cases, {self.accepted} accepted, "
                f"{self.rejected} rejected, {len(self.failures)} failures, {self.seconds:.1f} s "
                f"(slowest case {self.slowest_case_seconds * 1000:.0f} ms, peak RSS {self.peak_rss_mib:.0f} MiB)")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["reasons"] = dict(self.reasons.most_common(25))
        data["distinct_reasons"] = len(self.reasons)
        return data


class CaseTimeout(BaseException):
    """Raised into a read that ran too long. BaseException, so a reader's `except Exception` cannot swallow it."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (main thread, POSIX); a no-op where timers are unavailable."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(_signum, _frame):
        raise CaseTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def unclear_message(error: BaseException, path: Path) -> str | None:
    """Why `error`'s text is not one clear sentence naming the file (None when it is)."""
    text = str(error)
    if path.name not in text:
        return "the message does not name the file"
    if "\n" in text or "Traceback" in text:
        return "the message is more than one line"
    if len(text) > MAX_MESSAGE_CHARS:
        return f"the message is {len(text)} characters long"
    if not text.rstrip().endswith((".", "!", "?", ")")):
        return "the message is not a finished sentence"
    return None


def run_case(target: Target, data: bytes, path: Path, time_limit: float) -> tuple[str, str, str]:
    """(outcome, summary, detail) of reading `data` once: accepted, rejected, or a failure kind."""
    path.write_bytes(data)
    try:
        with deadline(time_limit), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # readers may warn about odd inputs; outcomes are what count
            try:
                result = target.read(path)
            except target.errors as error:
                problem = unclear_message(error, path)
                if problem:
                    return "unclear-message", f"{problem}: {str(error)[:300]!r}", ""
                return "rejected", str(error).replace(str(path), "<file>").replace(path.name, "<file>"), ""
            try:
                target.check_result(result, path)
            except AssertionError as error:
                return "invariant", f"accepted result is unsound: {error}", traceback.format_exc()
    except CaseTimeout:
        return "hang", f"one read took longer than {time_limit:g} s", traceback.format_exc()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: BLE001 - exactly what the fuzzer is looking for
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return "escaped", f"{type(error).__name__}: {first}", traceback.format_exc()
    return "accepted", "", ""


def _failure_key(kind: str, summary: str, detail: str) -> str:
    """Deduplicate failures by kind, exception type and the innermost project frame."""
    frames = [line.strip() for line in detail.splitlines() if line.strip().startswith("File ")]
    ours = [f for f in frames if "site-packages" not in f and "/fuzz/" not in f] or frames
    return f"{kind}|{summary.split(':')[0]}|{ours[-1] if ours else ''}"


class Recorder:
    """Counts outcomes into a report and saves each distinct failure's input once."""

    def __init__(self, report: CampaignReport, crash_dir: Path | None, max_saved: int = 50):
        self.report = report
        self.crash_dir = crash_dir
        self.max_saved = max_saved
        self._seen: set[str] = set()

    def record(self, case: str, data: bytes, outcome: str, summary: str, detail: str, seconds: float) -> None:
        report = self.report
        report.cases += 1
        report.slowest_case_seconds = max(report.slowest_case_seconds, seconds)
        if outcome == "accepted":
            report.accepted += 1
        elif outcome == "rejected":
            report.rejected += 1
            report.reasons[_reason_of(summary)] += 1
        else:
            key = _failure_key(outcome, summary, detail)
            if key in self._seen:
                return
            self._seen.add(key)
            saved = ""
            if self.crash_dir is not None and len(self._seen) <= self.max_saved:
                self.crash_dir.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha1(data).hexdigest()[:12]
                saved_path = self.crash_dir / f"{report.target}-{outcome}-{digest}.bin"
                saved_path.write_bytes(data)
                saved_path.with_suffix(".txt").write_text(f"{summary}\n\n{detail}", encoding="utf-8")
                saved = str(saved_path)
            report.failures.append(Failure(case, outcome, summary, detail, saved))


def _reason_of(message: str) -> str:
    """A rejection message with numbers and quoted names blurred, so counts group similar reasons."""
    out, quote = [], None
    for ch in message:
        if quote:
            if ch == quote:
                quote = None
                out.append("…'")
            continue
        if ch in "'\"":
            quote = ch
            out.append("'")
        elif ch.isdigit():
            if not out or out[-1] != "#":
                out.append("#")
        else:
            out.append(ch)
    return "".join(out)[:160]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def case_rng(seed: int, index: int) -> random.Random:
    """The random stream of one case: independent of the others, so `--case N` replays it alone."""
    return random.Random(f"{seed}:{index}")


def make_input(target: Target, seeds: list[bytes], seed: int, index: int) -> bytes:
    rng = case_rng(seed, index)
    return target.mutate(rng, rng.choice(seeds))


def run_mutation(target: Target, cases: int, seed: int = 0, *, crash_dir: Path | None = None,
                 time_limit: float = DEFAULT_TIME_LIMIT, progress: Callable[[CampaignReport], None] | None = None,
                 first_case: int = 0) -> CampaignReport:
    """`cases` seeded mutations of the target's seeds (the seeds themselves go first)."""
    report = CampaignReport(target.name, "mutation", seed)
    recorder = Recorder(report, crash_dir)
    seeds = target.seeds()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"collagen-fuzz-{target.name}-") as folder:
        path = Path(folder) / f"input{target.suffix}"
        for index in range(first_case, first_case + cases):
            data = seeds[index] if index < len(seeds) else make_input(target, seeds, seed, index)
            t0 = time.perf_counter()
            outcome, summary, detail = run_case(target, data, path, time_limit)
            recorder.record(f"mutation {seed}:{index}", data, outcome, summary, detail, time.perf_counter() - t0)
            if progress is not None and (index + 1) % 1000 == 0:
                progress(report)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mib = _peak_rss_mib()
    return report


def run_hypothesis(target: Target, strategy, examples: int, seed: int = 0, *, crash_dir: Path | None = None,
                   time_limit: float = DEFAULT_TIME_LIMIT) -> CampaignReport:
    """`examples` inputs drawn from a hypothesis strategy of file bytes; the first failure is shrunk."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    report = CampaignReport(target.name, "hypothesis", seed)
    recorder = Recorder(report, crash_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"collagen-fuzz-{target.name}-") as folder:
        path = Path(folder) / f"input{target.suffix}"

        @hypothesis_seed(seed)
        @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
                  print_blob=False)
        @given(strategy)
        def check(data: bytes) -> None:
            t0 = time.perf_counter()
            outcome, summary, detail = run_case(target, data, path, time_limit)
            if outcome in ("accepted", "rejected"):
                recorder.record(f"hypothesis {seed}", data, outcome, summary, detail, time.perf_counter() - t0)
                return
            raise _HypothesisFailure(outcome, summary, detail, data)

        try:
            check()
        except _HypothesisFailure as failure:  # the shrunk (minimal) failing input
            recorder.record(f"hypothesis {seed} (shrunk)", failure.data, failure.outcome, failure.summary,
                            failure.detail, 0.0)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mib = _peak_rss_mib()
    return report


class _HypothesisFailure(Exception):
    def __init__(self, outcome: str, summary: str, detail: str, data: bytes):
        super().__init__(summary)
        self.outcome, self.summary, self.detail, self.data = outcome, summary, detail, data


def replay(target: Target, input_file: Path, time_limit: float = DEFAULT_TIME_LIMIT) -> tuple[str, str, str]:
    """Run one saved input again (what `--replay FILE` prints)."""
    with tempfile.TemporaryDirectory(prefix=f"collagen-replay-{target.name}-") as folder:
        return run_case(target, Path(input_file).read_bytes(), Path(folder) / f"input{target.suffix}", time_limit)


def write_json(path: Path, reports: list[CampaignReport]) -> None:
    payload = {"python": sys.version.split()[0], "reports": [r.to_dict() for r in reports]}
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
