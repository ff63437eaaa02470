"""python -m bench [--quick] [--json PATH] [--cases loop,preview,...] — the CPU benchmarks of issue 8.

Prints a table of ratios (median, min-max over the pairs, target, ok/MISS) and writes every number,
with the machine and the command, as JSON (bench/out/results.json by default). `--profile` writes a
torch.profiler + cProfile text report to bench/profiles/ for every ratio that misses its target.
The GPU benchmark is a separate command: python -m bench.gpu.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from bench.harness import CLOCKS, BenchError, CaseResult

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / "bench" / "out" / "results.json"
DEFAULT_PROFILES = REPO_ROOT / "bench" / "profiles"
CASE_ORDER = ("loop", "preview", "regions", "inpaint", "memory", "load", "gui")


def prepare_process(threads: int) -> None:
    """Offline, quiet libraries, a fixed number of torch threads: every bench process starts here."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already fixed by earlier parallel work in this process
    for name in ("diffusers", "transformers"):
        try:
            module = __import__(f"{name}.utils.logging", fromlist=["set_verbosity_error"])
            module.set_verbosity_error()
            module.disable_progress_bar()
        except ImportError:
            pass


def machine_description() -> dict:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu_model = platform.processor()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    import diffusers
    import torch
    import transformers

    return {"nproc": os.cpu_count(), "cpu_model": cpu_model, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "load_average_at_start": load}


def format_value(result: CaseResult) -> str:
    if result.unit == "x":
        return f"{result.median:.3f} ({result.low:.3f}-{result.high:.3f})"
    return f"{result.median:.1f} ({result.low:.1f}-{result.high:.1f}) {result.unit}"


def format_table(results: list[CaseResult]) -> str:
    rows = [("case", "family", "subject vs baseline", "median (min-max)", "best/best", "direct", "target", "status",
             "note")]
    for r in results:
        versus = r.subject if r.baseline is None else f"{r.subject} vs {r.baseline}"
        target = "" if r.target is None else f"<= {r.target:g}"
        best = "" if r.best is None else f"{r.best:.3f}"
        direct = "" if r.direct is None else f"{r.direct:.3f}"
        rows.append((r.case, r.family or "", versus, format_value(r), best, direct, target, r.status, r.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="the short run (5 rounds, 4 steps, SD1.5 for cases 2-4, no A1111 inpaint variant)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})")
    parser.add_argument("--cases", default=",".join(CASE_ORDER),
                        help=f"comma-separated subset of: {', '.join(CASE_ORDER)}")
    parser.add_argument("--families", help="sd15,sdxl: families of cases 1, 5, 6")
    parser.add_argument("--detail-families", help="families of cases 2-4")
    parser.add_argument("--pairs", type=int, help="measured A/B pairs per case (>= 5 for a real run)")
    parser.add_argument("--warmup", type=int, help="discarded pairs before the measured ones")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--size", type=int, help="px, square generations")
    parser.add_argument("--inpaint-canvas", type=int, help="px, canvas of the inpaint case")
    parser.add_argument("--memory-pairs", type=int)
    parser.add_argument("--inpaint-a1111", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure only_masked scaled up to the request size (default: not with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable numbers on a shared CPU)")
    parser.add_argument("--model-size", choices=("mid", "tiny"), default="mid",
                        help="tiny: inference.tiny's models, to check the harness itself in seconds")
    parser.add_argument("--clock", choices=CLOCKS, default="cpu", help="which clock the ratios use")
    parser.add_argument("--profile", nargs="?", const=DEFAULT_PROFILES, type=Path,
                        help=f"profile every ratio that misses its target into this folder ({DEFAULT_PROFILES})")
    parser.add_argument("--workdir", type=Path, help="scratch folder for written models (bench/out/work)")
    return parser.parse_args(argv)


def split_list(text: str | None) -> tuple[str, ...] | None:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = split_list(args.cases) or ()
    unknown = [name for name in wanted if name not in CASE_ORDER]
    if unknown:
        print(f"Unknown case {unknown[0]!r}; choose from {', '.join(CASE_ORDER)}.", file=sys.stderr)
        return 2
    for name in ("families", "detail_families"):
        families = split_list(getattr(args, name))
        if families and any(f not in ("sd15", "sdxl") for f in families):
            print(f"--{name.replace('_', '-')} takes sd15 and/or sdxl.", file=sys.stderr)
            return 2
    prepare_process(args.threads)
    from bench.cases import CASES, BenchConfig, BenchContext

    config = BenchConfig.for_mode(
        args.quick, families=split_list(args.families), detail_families=split_list(args.detail_families),
        pairs=args.pairs, warmup=args.warmup, steps=args.steps, size=args.size, inpaint_canvas=args.inpaint_canvas, inpaint_a1111=args.inpaint_a1111,
        memory_pairs=args.memory_pairs, threads=args.threads, model_size=args.model_size, clock=args.clock, profile_dir=args.profile,
        workdir=args.workdir or (REPO_ROOT / "bench" / "out" / "work"),
    )
    Path(config.workdir).mkdir(parents=True, exist_ok=True)
    context = BenchContext(config)
    started = time.perf_counter()
    meta = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine_description(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items()},
    }
    results: list[CaseResult] = []
    timings: dict[str, float] = {}

    def write_json() -> None:
        # After every case: a run stopped half-way still leaves what it measured.
        meta["seconds"] = time.perf_counter() - started
        meta["case_seconds"] = timings
        meta["profiles"] = context.profiled
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": [r.to_json() for r in results]}, indent=2))

    try:
        for name in CASE_ORDER:
            if name not in wanted:
                continue
            case_started = time.perf_counter()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            if name == "memory":
                from bench.memory import case_memory

                produced = case_memory(config)
            elif name == "gui":
                from bench.gui import case_gui

                produced = case_gui(config)
            else:
                produced = CASES[name](context)
            timings[name] = time.perf_counter() - case_started
            for result in produced:
                print(f"[bench]   {result.family or '':5} {result.name}: {format_value(result)} {result.status}",
                      file=sys.stderr, flush=True)
            results.extend(produced)
            write_json()
    except BenchError as error:
        print(f"The benchmark stopped: {error}", file=sys.stderr)
        return 1
    write_json()
    print(format_table(results))
    print(f"\n{len(results)} results in {meta['seconds']:.0f} s ({config.clock} clock for ratios);"
          f" JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
