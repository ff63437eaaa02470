"""Long session: hundreds of tiny-model generations with previews in one process, watching for leaks.

    python scripts/soak.py [--generations 300] [--path engine|gui|both] [--size 64] [--steps 2] [--json OUT]

`engine` runs the requests straight through `inference.engine.Engine`; `gui` runs them the way the
editor does: `desktop.generation.GenerationController` freezes a document, the `InferenceWorker`
thread runs the engine and the events come back through the qasync loop (offscreen Qt), with
previews drawn as signals and every fifth result accepted as a layer and undone again.

Reported for each path: resident memory (RSS) after the first 20 generations and at the end, the
process's thread count and open file descriptors (/proc/self/fd), and time per generation. A leak
shows as RSS growing after warm-up (the limit is 100 MB), or threads or descriptors piling up.
Exit status 1 when a limit is broken.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WARM_UP = 20  # generations before the baseline: model built, caches and pools filled
MAX_RSS_GROWTH_MIB = 100.0
MAX_THREAD_GROWTH = 2
MAX_FD_GROWTH = 4


@dataclass
class Sample:
    generation: int
    rss_mib: float
    threads: int  # native threads of the process (/proc/self/status), not only Python's
    open_fds: int
    seconds: float


@dataclass
class SoakReport:
    path: str
    generations: int
    size: int
    steps: int
    samples: list[Sample] = field(default_factory=list)
    previews: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> Sample:
        return next((s for s in self.samples if s.generation >= min(WARM_UP, self.generations)), self.samples[0])

    @property
    def final(self) -> Sample:
        return self.samples[-1]

    @property
    def rss_growth_mib(self) -> float:
        return self.final.rss_mib - self.baseline.rss_mib

    @property
    def seconds_per_generation(self) -> float:
        done = self.final.generation - self.baseline.generation
        return (self.final.seconds - self.baseline.seconds) / done if done else 0.0

    def problems(self) -> list[str]:
        found = list(self.failures)
        if self.rss_growth_mib > MAX_RSS_GROWTH_MIB:
            found.append(f"RSS grew {self.rss_growth_mib:.1f} MiB after warm-up (limit {MAX_RSS_GROWTH_MIB:.0f})")
        if self.final.threads - self.baseline.threads > MAX_THREAD_GROWTH:
            found.append(f"threads went from {self.baseline.threads} to {self.final.threads}")
        if self.final.open_fds - self.baseline.open_fds > MAX_FD_GROWTH:
            found.append(f"open file descriptors went from {self.baseline.open_fds} to {self.final.open_fds}")
        return found

    def summary(self) -> str:
        b, f = self.baseline, self.final
        return (f"{self.path}: {self.generations} generations of {self.size}x{self.size}, {self.steps} steps, "
                f"{self.previews} previews; RSS {b.rss_mib:.1f} MiB after {b.generation} -> {f.rss_mib:.1f} MiB "
                f"at {f.generation} ({self.rss_growth_mib:+.1f} MiB); threads {b.threads} -> {f.threads}; "
                f"open fds {b.open_fds} -> {f.open_fds}; {self.seconds_per_generation * 1000:.0f} ms per generation"
                + (f"; PROBLEMS: {'; '.join(self.problems())}" if self.problems() else ""))

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(rss_growth_mib=round(self.rss_growth_mib, 2), problems=self.problems(),
                    seconds_per_generation=round(self.seconds_per_generation, 4))
        return data


def process_status() -> tuple[float, int]:
    """(RSS in MiB, native thread count) from /proc/self/status."""
    rss, threads = 0.0, threading.active_count()
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:  # not Linux: RSS from resource (peak, not current), Python threads only
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rss, threads


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


class Sampler:
    def __init__(self, report: SoakReport, every: int):
        self.report = report
        self.every = every
        self.started = time.perf_counter()

    def after(self, generation: int) -> None:
        if generation in (1, min(WARM_UP, self.report.generations), self.report.generations) \
                or generation % self.every == 0:
            gc.collect()
            rss, threads = process_status()
            self.report.samples.append(Sample(generation, round(rss, 2), threads, open_fds(),
                                              round(time.perf_counter() - self.started, 3)))


def tiny_request(size: int, steps: int, seed: int):
    from inference.api import GenerationRequest

    return GenerationRequest(model="builtin:tiny-sd15", prompt=f"a fox in the snow, take {seed}", width=size,
                             height=size, steps=steps, seed=seed, preview="linear")


# ---- through the engine ------------------------------------------------------------------------------


def soak_engine(generations: int, size: int = 64, steps: int = 2, every: int = 25) -> SoakReport:
    from inference.api import Failed, Finished, Preview
    from inference.engine import Engine
    from inference.models import ModelManager

    report = SoakReport("engine", generations, size, steps)
    sampler = Sampler(report, every)
    engine = Engine(ModelManager([], device="cpu"))
    cancel = threading.Event()
    for generation in range(1, generations + 1):
        events: list = []
        engine.run(tiny_request(size, steps, generation), events.append, cancel)
        report.previews += sum(isinstance(e, Preview) for e in events)
        if not isinstance(events[-1], Finished):
            message = events[-1].message if isinstance(events[-1], Failed) else type(events[-1]).__name__
            report.failures.append(f"generation {generation}: {message}")
        del events
        sampler.after(generation)
    return report


# ---- through the editor's controller, worker and event loop ---------------------------------------------


def soak_gui(generations: int, size: int = 64, steps: int = 2, every: int = 25, *, loop=None) -> SoakReport:
    """The editor's generation path, offscreen. `loop`: an asyncio loop to run on (default: a qasync loop
    over a QApplication, as the editor uses)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from canvas.model.document import Document, GenerationSettings
    from desktop.generation import GenerationController, JobState
    from desktop.worker import InferenceWorker
    from inference.engine import Engine
    from inference.models import ModelManager

    app = QApplication.instance() or QApplication([])
    owns_loop = loop is None
    if owns_loop:
        import qasync

        loop = qasync.QEventLoop(app)
    report = SoakReport("gui", generations, size, steps)
    sampler = Sampler(report, every)
    manager = ModelManager([], device="cpu")
    worker = InferenceWorker(lambda: Engine(manager))
    settings = GenerationSettings(model="builtin:tiny-sd15", prompt="a fox in the snow", steps=steps, seed=1)
    document = Document(size, size, settings=settings)
    controller = GenerationController(worker, document, preview_method="linear")
    controller.preview_ready.connect(lambda rect, rgb: setattr(report, "previews", report.previews + 1))
    failures: list[str] = []
    controller.failed.connect(failures.append)

    async def session() -> None:
        for generation in range(1, generations + 1):
            document.settings.seed = generation
            job = controller.generate()
            await controller.wait_idle()
            if job is None or job.state is not JobState.FINISHED:
                report.failures.append(f"generation {generation}: {failures[-1] if failures else job and job.state}")
            elif generation % 5 == 0:
                controller.accept()  # a new layer, one undo step...
                document.undo()  # ...taken back, so the document itself does not grow
            else:
                controller.discard()
            sampler.after(generation)

    try:
        loop.run_until_complete(session())
    finally:
        controller.shutdown()
        worker.shutdown(10)
        if owns_loop:
            loop.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=300)
    parser.add_argument("--path", choices=("engine", "gui", "both"), default="both")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--every", type=int, default=25, help="sample memory every N generations")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    reports = []
    if args.path in ("engine", "both"):
        reports.append(soak_engine(args.generations, args.size, args.steps, args.every))
        print(reports[-1].summary(), flush=True)
    if args.path in ("gui", "both"):
        reports.append(soak_gui(args.generations, args.size, args.steps, args.every))
        print(reports[-1].summary(), flush=True)
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in reports], indent=2), encoding="utf-8")
    return 1 if any(r.problems() for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
