"""Kill a saving process at random points; the file on disk must always load as a whole project.

    python -m fuzz.kill_save --trials 100 [--seed 0] [--mode ora|autosave|both]

Each trial starts a child that saves two different projects in turn, over and over, to the same
target (`save_ora`), or as rotating autosaves (`desktop.autosave.Autosave`). After the child says
it is saving, the parent waits a random time within a few save durations and sends SIGKILL: the
kill lands anywhere inside a save (compressing layers, writing, fsync, rename, rotating). Then:

- ora: the target loads and equals one of the two projects (never a mix, never a truncated file);
- autosave: a new session finds the dead one as an orphan, and its newest autosave loads and
  equals one of the two projects; no more than keep + 1 autosaves are left.

Leftover temp files (`.NAME.*.tmp`) are counted; they never carry the target's name.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIDE = 320  # px: big enough that one save takes a fair fraction of a second to encode (the default)


def project(version: int, side: int = SIDE):
    """One of two clearly different projects (noise layers, so PNG encoding takes real time); the
    same in every process (fixed ids and seeds), so the parent can compare what the child saved."""
    import numpy as np

    from canvas.model.document import Document, GenerationSettings
    from canvas.model.layers import ImageLayer, MaskLayer

    rng = np.random.default_rng(version)
    document = Document(side, side, settings=GenerationSettings(prompt=f"version {version}", seed=version))
    for index in range(3):
        pixels = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
        document.add_layer_untracked(ImageLayer(id=f"v{version}-{index}", name=f"v{version} layer {index}",
                                                pixels=pixels))
    document.add_layer_untracked(MaskLayer(id=f"v{version}-mask", name="mask",
                                           pixels=rng.integers(0, 256, (side, side), dtype=np.uint8)))
    return document


# ---- the child --------------------------------------------------------------------------------------


def child(target: Path, mode: str, keep: int, side: int) -> None:
    """Save the two projects in turn until killed."""
    from canvas.io.ora import save_ora

    documents = [project(1, side), project(2, side)]
    if mode == "autosave":
        from desktop.autosave import Autosave

        session = Autosave(target, keep=keep)
        session.start()
        session.set_source("/projects/kill-test.ora")
        session.save(documents[0])  # one complete autosave before the kills may land
        print("saving", flush=True)
        turn = 1
        while True:
            session.save(documents[turn % 2])
            turn += 1
    else:
        print("saving", flush=True)
        turn = 1
        while True:
            save_ora(documents[turn % 2], target)
            turn += 1


# ---- the parent -------------------------------------------------------------------------------------


@dataclass
class KillReport:
    mode: str
    trials: int = 0
    loaded_first: int = 0  # the file held project 1 after the kill
    loaded_second: int = 0
    failures: list[str] = field(default_factory=list)
    leftover_temp_files: int = 0
    max_autosaves_left: int = 0
    save_seconds: float = 0.0  # how long one save takes here (the kill window scales with it)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"kill-while-saving [{self.mode}]: {self.trials} trials, {len(self.failures)} failures; the file "
                f"held project 1 in {self.loaded_first} and project 2 in {self.loaded_second}; "
                f"{self.leftover_temp_files} temp files left; one save takes {self.save_seconds:.2f} s; "
                f"{self.seconds:.0f} s in all")


def start_child(target: Path, mode: str, keep: int, side: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "fuzz.kill_save", "--child", str(target), "--mode", mode,
                                "--keep", str(keep), "--side", str(side)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    line = process.stdout.readline().strip()
    if line != "saving":
        process.kill()
        raise RuntimeError(f"the saving child did not start (it said {line!r})")
    return process


def measure_save_seconds(side: int = SIDE) -> float:
    from canvas.io.ora import save_ora

    document = project(1, side)
    with tempfile.TemporaryDirectory(prefix="collagen-kill-") as folder:
        started = time.perf_counter()
        save_ora(document, Path(folder) / "timing.ora")
        return time.perf_counter() - started


def run_trials(trials: int, mode: str, seed: int = 0, keep: int = 3, workdir: Path | None = None,
               save_seconds: float | None = None, side: int = SIDE) -> KillReport:
    from canvas.io.ora import save_ora

    rng = random.Random(f"{seed}:{mode}")
    report = KillReport(mode)
    report.save_seconds = save_seconds if save_seconds is not None else measure_save_seconds(side)
    versions = {1: project(1, side), 2: project(2, side)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="collagen-kill-", dir=workdir) as folder:
        folder = Path(folder)
        for trial in range(trials):
            place = folder / f"trial-{trial}"
            place.mkdir()
            target = place / ("autosave" if mode == "autosave" else "project.ora")
            if mode == "ora":
                save_ora(versions[1], target)  # the previous file the user has
            process = start_child(target, mode, keep, side)
            time.sleep(rng.uniform(0.0, 3.0) * report.save_seconds)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            process.stdout.close()
            report.trials += 1
            try:
                loaded = load_trial(target, mode, process.pid, keep, report)
            except Exception as error:  # noqa: BLE001 - any failure to load is what this run looks for
                report.failures.append(f"trial {trial}: {type(error).__name__}: {error}")
                continue
            if loaded.same_as(versions[1]):
                report.loaded_first += 1
            elif loaded.same_as(versions[2]):
                report.loaded_second += 1
            else:
                report.failures.append(f"trial {trial}: the file loads as neither project")
    report.seconds = time.perf_counter() - started
    return report


def load_trial(target: Path, mode: str, pid: int, keep: int, report: KillReport):
    from canvas.io.ora import load_ora

    if mode == "ora":
        report.leftover_temp_files += sum(1 for p in target.parent.iterdir() if p.name.endswith(".tmp"))
        strays = [p.name for p in target.parent.iterdir() if p.name != target.name and not p.name.startswith(".")]
        if strays:
            raise AssertionError(f"unexpected files beside the project: {strays}")
        return load_ora(target)
    from desktop.autosave import Autosave

    survivor = Autosave(target, keep=keep, pid=pid + 1_000_000)  # another session, as at the next start
    orphans = survivor.find_orphans()
    if len(orphans) != 1 or orphans[0].pid != pid:
        raise AssertionError(f"the killed session was not found as an orphan ({orphans})")
    orphan = orphans[0]
    if orphan.source_path != "/projects/kill-test.ora":
        raise AssertionError(f"the orphan lost its source path ({orphan.source_path!r})")
    left = sorted(orphan.folder.glob("autosave-*.ora"))
    report.max_autosaves_left = max(report.max_autosaves_left, len(left))
    report.leftover_temp_files += sum(1 for p in orphan.folder.iterdir() if p.name.endswith(".tmp"))
    if len(left) > keep + 1:
        raise AssertionError(f"{len(left)} autosaves were left with keep={keep}")
    return Autosave.restore(orphan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.kill_save", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="kills per mode")
    parser.add_argument("--mode", choices=("ora", "autosave", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=int, default=3, help="autosaves kept per session")
    parser.add_argument("--side", type=int, default=SIDE, help="px per side of the saved projects")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.mode, args.keep, args.side)
        return 0
    modes = ("ora", "autosave") if args.mode == "both" else (args.mode,)
    save_seconds = measure_save_seconds(args.side)
    reports = [run_trials(args.trials, mode, args.seed, args.keep, save_seconds=save_seconds, side=args.side)
               for mode in modes]
    for report in reports:
        print(report.summary())
        for failure in report.failures:
            print(f"FAILURE {failure}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2), encoding="utf-8")
    return 0 if all(not r.failures for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
