"""Case 5: peak memory of our loop vs the stock pipeline, each run in a fresh process.

tracemalloc does not see torch's allocations, so on a CPU the measure is the process's resident-set
high-water mark (VmHWM). One helper process per family imports everything and builds what both
sides need (the same model, the engine and the stock pipeline object); then, for every run, it forks
a fresh child that resets the high-water mark to its current RSS (`/proc/self/clear_refs` = 5), runs
ONE generation of its side and reports VmHWM. Forking keeps the 30 s of imports out of every run
while each run still starts from the same untouched process image; the peak covers the weights plus
what the generation itself allocated. The order alternates per pair, like the timed cases. On a GPU,
bench/gpu.py reads torch.cuda.max_memory_allocated instead.

Helper process: python -m bench.memory --family sd15 --size 256 --steps 4 --pairs 5
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.harness import BenchError, CaseResult, spread

REPO_ROOT = Path(__file__).resolve().parent.parent
SIDES = ("ours", "stock")


def read_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/self/status has no {field} line; the memory case needs Linux.")


def reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--family", choices=("sd15", "sdxl"), required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-size", choices=("mid", "tiny"), default="mid")
    args = parser.parse_args(argv)

    from bench.runtime import prepare_process

    prepare_process(args.threads)
    from bench.cases import NEGATIVE, PROMPT, run_engine
    from bench.models import BenchModels, build_bench_model, run_stock, stock_pipeline
    from inference.api import GenerationRequest
    from inference.engine import Engine

    model = build_bench_model(args.family, args.model_size)
    engine = Engine(BenchModels({model.name: model}))
    pipeline = stock_pipeline(model)
    request = GenerationRequest(model=model.name, prompt=PROMPT, negative=NEGATIVE, width=args.size,
                                height=args.size, steps=args.steps, sampler="Euler", cfg=7.0, seed=args.seed,
                                preview="none")
    sides = {
        "ours": lambda: run_engine(engine, request),
        "stock": lambda: run_stock(pipeline, prompt=PROMPT, negative=NEGATIVE, width=args.size, height=args.size,
                                   steps=args.steps, cfg=7.0, seed=args.seed),
    }
    gc.collect()
    records = []
    for index in range(args.pairs):
        for side in SIDES if index % 2 == 0 else tuple(reversed(SIDES)):
            records.append(run_forked(side, sides[side]))
    print(json.dumps({"family": args.family, "runs": records}))
    return 0


def run_forked(side: str, run) -> dict:
    """Run `run` in a forked child; its RSS before, its peak during the run (MiB), via a pipe."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, leave without running the parent's cleanup
        status = 1
        try:
            os.close(reader)
            before_kib = read_status_kib("VmRSS")
            was_reset = reset_high_water_mark()
            run()
            record = {"side": side, "rss_before_mib": before_kib / 1024, "peak_mib": read_status_kib("VmHWM") / 1024,
                      "high_water_reset": was_reset}
            os.write(writer, json.dumps(record).encode())
            status = 0
        except BaseException as error:  # noqa: BLE001 - reported to the parent as one line
            os.write(writer, json.dumps({"side": side, "error": f"{type(error).__name__}: {error}"}).encode())
        finally:
            os._exit(status)
    os.close(writer)
    chunks = []
    while chunk := os.read(reader, 65536):
        chunks.append(chunk)
    os.close(reader)
    os.waitpid(pid, 0)
    record = json.loads(b"".join(chunks) or b"{}")
    if "peak_mib" not in record:
        raise BenchError(f"The {side} memory run failed: {record.get('error', 'no report')}.")
    return record


def run_helper(family: str, size: int, steps: int, pairs: int, threads: int, model_size: str = "mid") -> list[dict]:
    command = [sys.executable, "-m", "bench.memory", "--family", family, "--size", str(size), "--steps", str(steps),
               "--pairs", str(pairs), "--threads", str(threads), "--model-size", model_size]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=child_environment())
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"The memory helper for {family} failed: {last}")
    return json.loads(completed.stdout.strip().splitlines()[-1])["runs"]


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def case_memory(config) -> list[CaseResult]:
    results = []
    for family in config.families:
        records = run_helper(family, config.size, config.steps, config.memory_pairs, config.threads,
                             config.model_size)
        ours = [r for r in records if r["side"] == "ours"]
        stock = [r for r in records if r["side"] == "stock"]
        ratios = [a["peak_mib"] / b["peak_mib"] for a, b in zip(ours, stock)]
        growth = [(a["peak_mib"] - a["rss_before_mib"]) / max(b["peak_mib"] - b["rss_before_mib"], 1e-6)
                  for a, b in zip(ours, stock)]
        median, low, high = spread(ratios)
        ours_peak = spread([r["peak_mib"] for r in ours])[0]
        stock_peak = spread([r["peak_mib"] for r in stock])[0]
        ours_growth = spread([r["peak_mib"] - r["rss_before_mib"] for r in ours])[0]
        stock_growth = spread([r["peak_mib"] - r["rss_before_mib"] for r in stock])[0]
        results.append(CaseResult(
            case="5", name="peak_memory", family=family, subject="Engine.run peak RSS", baseline="stock pipeline",
            unit="x", median=median, low=low, high=high, samples=ratios, target=1.10, clock="rss",
            details={"ours_peak_mib": ours_peak, "stock_peak_mib": stock_peak, "ours_growth_mib": ours_growth,
                     "stock_growth_mib": stock_growth, "growth_ratio_median": spread(growth)[0],
                     "high_water_reset": all(r["high_water_reset"] for r in ours + stock)},
            note=f"peak {ours_peak:.0f} vs {stock_peak:.0f} MiB; during the run +{ours_growth:.0f} vs "
                 f"+{stock_growth:.0f} MiB",
        ))
    return results


if __name__ == "__main__":
    sys.exit(child_main())
