"""python -m bench.cpu — the full-size SD1.5 model on a CPU: allocator churn, and attention regions.

Random weights in the real SD1.5 shapes (resources/configs/sd15: 860 M-parameter UNet, the 8x VAE,
CLIP ViT-L text encoder), float32, Euler, CFG 7, one torch thread. Generations run on one long-lived
worker thread, as in the editor (its allocations come from a thread arena, not the main heap).

- `allocator`: plain generations with glibc's default allocator (COLLAGEN_ALLOCATOR=default) and
  with the thresholds inference.allocator sets, each side in processes of its own (a fresh
  allocator each), alternating default/tuned/tuned/default. Per run: wall, user and system seconds,
  the system share of the CPU time, minor page faults per step, and the resident size after the
  run (after the engine's end-of-generation heap trim).
- `regions`: attention regions x4 and x8 (every region with its own prompt AND its own negative)
  against plain generation, rounds sharing one plain run (bench.harness.run_rounds), CPU clock,
  under the allocator the editor uses (or both with --regions-allocators default,tuned).

    python -m bench.cpu [--cases allocator,regions] [--size 256 --steps 8 --runs 3 --rounds 5]

Each side runs in a child (`--child allocator|regions`) that prints its records as one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

from bench.harness import BenchError, CaseResult, Timing, spread, timed

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / "bench" / "out" / "cpu_results.json"
ALLOCATORS = ("default", "tuned")
SYSTEM_SHARE_TARGET = 5.0  # % of the CPU time, with the tuned allocator (issue 21)
REGION_TARGETS = {4: 1.10, 8: 1.15}


class WorkerThread:
    """One thread that runs every generation handed to it, like the editor's inference thread."""

    def __init__(self) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self.serve, name="bench-inference", daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            job, done = self.jobs.get()
            try:
                done.put((True, job()))
            except BaseException as error:  # noqa: BLE001 - handed back to the caller's thread
                done.put((False, error))

    def call(self, job: Callable[[], Any]) -> Any:
        done: queue.Queue = queue.Queue()
        self.jobs.put((job, done))
        ok, value = done.get()
        if not ok:
            raise value
        return value


def read_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timing_record(timing: Timing, steps: int) -> dict:
    cpu = timing.user + timing.system
    return {"wall_s": timing.wall, "cpu_s": timing.cpu, "user_s": timing.user, "system_s": timing.system,
            "system_share_pct": 100 * timing.system / cpu if cpu else float("nan"),
            "minor_faults": timing.minor_faults, "minor_faults_per_step": timing.minor_faults / steps}


# ---- the children -----------------------------------------------------------------------------------


def build_engine(threads: int, model_size: str = "full"):
    from bench.runtime import prepare_process

    prepare_process(threads)  # first: the allocator is set up before the model's weights exist
    import torch

    from bench.models import BenchModels, build_bench_model, build_full_model
    from inference.engine import Engine

    model = build_full_model("sd15", "cpu", torch.float32) if model_size == "full" else \
        build_bench_model("sd15", model_size)
    return Engine(BenchModels({model.name: model})), model


def plain_request(model, size: int, steps: int):
    from bench.cases import NEGATIVE, PROMPT
    from inference.api import GenerationRequest

    return GenerationRequest(model=model.name, prompt=PROMPT, negative=NEGATIVE, width=size, height=size,
                             steps=steps, sampler="Euler", cfg=7.0, seed=1234, preview="none")


def child_allocator(args) -> list[dict]:
    from bench.cases import run_engine

    engine, model = build_engine(args.threads, args.model_size)
    worker = WorkerThread()
    request = plain_request(model, args.size, args.steps)
    records = []
    for index in range(args.warmup + args.runs):
        timing, _ = timed(lambda: worker.call(lambda: run_engine(engine, request)))
        if index >= args.warmup:
            records.append({**timing_record(timing, args.steps), "rss_after_mib": read_rss_mib()})
    return records


def child_regions(args) -> list[dict]:
    from bench.cases import run_engine, strip_regions
    from bench.harness import ratio_result, run_rounds

    engine, model = build_engine(args.threads, args.model_size)
    worker = WorkerThread()
    plain = plain_request(model, args.size, args.steps)

    def generate(request):
        return lambda: worker.call(lambda: run_engine(engine, request))

    subjects = {f"regions_attention_{count}": generate(replace(plain, mode="regions", region_method="attention",
                                                                 regions=strip_regions(count, args.size, negatives=True)))
                for count in (4, 8)}
    measured = run_rounds(generate(plain), subjects, rounds=args.rounds, warmup=args.warmup)
    allocator = os.environ.get("COLLAGEN_ALLOCATOR", "tuned") or "tuned"
    results = []
    for count in (4, 8):
        name = f"regions_attention_{count}"
        runs = measured[name]
        result = ratio_result(runs, case="cpu", name=f"{name}_{allocator}", family="sd15",
                              subject=f"attention regions x{count}, own negatives, {args.model_size} SD1.5 ({allocator} allocator)",
                              baseline="plain generate", clock="cpu", target=REGION_TARGETS[count])
        result.details["subject_runs"] = [timing_record(t, args.steps) for t in runs.subject]
        result.details["baseline_runs"] = [timing_record(t, args.steps) for t in runs.baseline]
        results.append(result.to_json())
    return results


# ---- the parent -------------------------------------------------------------------------------------


def run_child(kind: str, allocator: str, args) -> list[dict]:
    command = [sys.executable, "-m", "bench.cpu", "--child", kind, "--size", str(args.size), "--steps",
               str(args.steps), "--runs", str(args.runs), "--rounds", str(args.rounds), "--warmup",
               str(args.warmup), "--threads", str(args.threads), "--model-size", args.model_size]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env["COLLAGEN_ALLOCATOR"] = allocator
    print(f"[bench.cpu] {kind}, {allocator} allocator ...", file=sys.stderr, flush=True)
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"The {kind} child ({allocator} allocator) failed: {last}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def allocator_results(records: dict[str, list[dict]], steps: int, model_size: str = "full") -> list[CaseResult]:
    from bench.cases import value_result

    results = []
    for allocator in ALLOCATORS:
        runs = records[allocator]
        label = "glibc defaults" if allocator == "default" else "inference.allocator thresholds"
        medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for key, unit, name in (("system_share_pct", "%", "system_share"),
                                ("minor_faults_per_step", "faults", "minor_faults_per_step"),
                                ("wall_s", "s", "wall"), ("user_s", "s", "user"), ("system_s", "s", "system"),
                                ("rss_after_mib", "MiB", "rss_after")):
            result = value_result([run[key] for run in runs], case="cpu", name=f"{name}_{allocator}", family="sd15",
                                  subject=f"{name.replace('_', ' ')}, {model_size} SD1.5 {steps} steps, {label}", unit=unit,
                                  details={"runs": runs, "medians": medians} if name == "system_share" else None)
            if name == "system_share" and allocator == "tuned":
                result.target = SYSTEM_SHARE_TARGET
            results.append(result)
    default, tuned = records["default"], records["tuned"]
    for clock in ("wall_s", "cpu_s"):
        ratios = [t[clock] / d[clock] for t, d in zip(tuned, default)]
        median, low, high = spread(ratios)
        results.append(CaseResult(case="cpu", name=f"allocator_{clock[:-2]}", family="sd15",
                                  subject="tuned allocator", baseline="glibc defaults", unit="x", median=median,
                                  low=low, high=high, samples=ratios, clock=clock[:-2],
                                  note="runs paired in order; each side in its own processes"))
    return results


def case_result_from_json(data: dict) -> CaseResult:
    names = {f.name for f in fields(CaseResult)}
    return CaseResult(**{key: value for key, value in data.items() if key in names})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="allocator,regions")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2, help="measured runs per allocator child")
    parser.add_argument("--processes", type=int, default=2, help="allocator children per side (alternating)")
    parser.add_argument("--rounds", type=int, default=5, help="regions: measured rounds")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-size", choices=("full", "mid", "tiny"), default="full",
                        help="mid/tiny: the smaller bench models (smoke runs of this command)")
    parser.add_argument("--regions-allocators", default="tuned", help="default and/or tuned")
    parser.add_argument("--child", choices=("allocator", "regions"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    if args.child:
        child = child_allocator if args.child == "allocator" else child_regions
        print(json.dumps(child(args)))
        return 0

    from bench.runtime import format_table, machine_description

    started = time.perf_counter()
    wanted = [part.strip() for part in args.cases.split(",") if part.strip()]
    results: list[CaseResult] = []
    try:
        if "allocator" in wanted:
            records: dict[str, list[dict]] = {name: [] for name in ALLOCATORS}
            for index in range(args.processes):
                for allocator in ALLOCATORS if index % 2 == 0 else tuple(reversed(ALLOCATORS)):
                    records[allocator] += run_child("allocator", allocator, args)
            results += allocator_results(records, args.steps, args.model_size)
        if "regions" in wanted:
            for allocator in [part.strip() for part in args.regions_allocators.split(",") if part.strip()]:
                results += [case_result_from_json(data) for data in run_child("regions", allocator, args)]
    except BenchError as error:
        print(f"The CPU benchmark stopped: {error}", file=sys.stderr)
        return 1
    meta = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python -m bench.cpu " + shlex.join(sys.argv[1:] if argv is None else argv),
            "machine": machine_description(), "seconds": time.perf_counter() - started,
            "args": {key: str(value) for key, value in vars(args).items()}}
    print(format_table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": [r.to_json() for r in results]}, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
