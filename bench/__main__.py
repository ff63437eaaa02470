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
import shlex
import sys
import time
from pathlib import Path

from bench.harness import CLOCKS, BenchError, CaseResult
from bench.runtime import format_table, format_value, machine_description, prepare_process

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / "bench" / "out" / "results.json"
DEFAULT_PROFILES = REPO_ROOT / "bench" / "profiles"
CASE_ORDER = ("loop", "preview", "regions", "inpaint", "memory", "load", "gui")


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
