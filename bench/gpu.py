"""python -m bench.gpu — full-size SD1.5 (512x512) and SDXL (1024x1024) on an NVIDIA GPU.

Random full-size weights (the bundled configs, built directly on the device in fp16), 30 steps,
batch 1, Euler, CFG 7. For each family:

- it/s of our loop (Engine.run) and of the stock diffusers pipeline on the same modules, eager; the
  rate is the steady one between the first and the last step (each step's end is marked after a
  CUDA synchronise, on both sides alike), like the it/s a progress bar shows;
- peak VRAM of each (torch.cuda.max_memory_allocated, reset before every run);
- preview (linear, TAESD-shaped) and regions (attention 1/4/8, latent couple 4) ratios at full size;
- the fast path (inference/sd/fastpath.py): channels_last + fused QKV, then + torch.compile; the
  compiled graph must survive a change of size without compiling again (checked: dynamo's graph
  count before/after a run at another size).

Anchors to beat on an H100 (eager): SD1.5 54.5 it/s, SDXL 14.9 it/s.

`--mid --device cpu --size 64 --steps 2 --pairs 1` runs every code path with the middle-size models
on a CPU (a smoke check; the numbers mean nothing there); `--model-size tiny --compile-backend eager`
does the same in seconds (tests/test_bench_smoke.py). The compiled runs use the smallest size of the
fast path's bucket grid at least as large as `--size` (64 px is below it for a four-level UNet), and
the size-change check another size of the same grid.

`bench/gpu_all.sh` is the prepared device run: both families, every case, fewer pairs, a time budget
that skips what would not fit in 8 minutes, JSON and a markdown table written after each family.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from bench.harness import BenchError, CaseResult, run_pairs, spread

ANCHORS_H100 = {"sd15": 54.5, "sdxl": 14.9}
FULL_SIZES = {"sd15": 512, "sdxl": 1024}
REPO_ROOT = Path(__file__).resolve().parent.parent


class Device:
    """The device and how to wait for it: timings are only honest after the queued kernels ran."""

    def __init__(self, name: str):
        import torch

        self.name = name
        self.cuda = name.startswith("cuda")
        if self.cuda and not torch.cuda.is_available():
            raise BenchError("CUDA is not available here; run with --device cpu --mid for a smoke check.")

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        if not self.cuda:
            return None
        import torch

        return torch.cuda.max_memory_allocated() / 2**20


def steady_rate(stamps: list[float]) -> float:
    """Steps per second between the first and the last step's end (the first step's start-up excluded)."""
    if len(stamps) < 2:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


class Runner:
    """Runs one family's requests through our engine and the stock pipeline, recording step times."""

    def __init__(self, model, device: Device, size: int, steps: int, taesd: Path):
        from bench.models import BenchModels
        from inference.engine import Engine

        self.model = model
        self.device = device
        self.size = size
        self.steps = steps
        self.models = BenchModels({model.name: model}, taesd=taesd)
        self.engine = Engine(self.models)
        self.pipeline = None
        self.rates: dict[str, list[float]] = {}
        self.peaks: dict[str, list[float]] = {}

    def request(self, **overrides):
        from bench.cases import NEGATIVE, PROMPT
        from inference.api import GenerationRequest

        values = dict(model=self.model.name, prompt=PROMPT, negative=NEGATIVE, width=self.size, height=self.size,
                      steps=self.steps, sampler="Euler", cfg=7.0, seed=1234, preview="none")
        values.update(overrides)
        return GenerationRequest(**values)

    def note(self, label: str, stamps: list[float]) -> None:
        self.rates.setdefault(label, []).append(steady_rate(stamps))
        peak = self.device.peak_mib()
        if peak is not None:
            self.peaks.setdefault(label, []).append(peak)

    def ours(self, request, label: str):
        from inference.api import Finished, Progress

        stamps: list[float] = []
        events: list = []

        def on_event(event) -> None:
            if isinstance(event, Progress):
                self.device.sync()
                stamps.append(time.perf_counter())
            events.append(event)

        def run():
            self.device.reset_peak()
            self.engine.run(request, on_event, threading.Event())
            self.device.sync()
            if not events or not isinstance(events[-1], Finished):
                raise BenchError(f"Our loop did not finish ({label}): {events[-1] if events else None!r}.")
            self.note(label, stamps)
            stamps.clear()
            events.clear()

        return run

    def stock(self, label: str):
        from bench.cases import NEGATIVE, PROMPT
        from bench.models import run_stock, stock_pipeline

        if self.pipeline is None:
            self.pipeline = stock_pipeline(self.model)
        stamps: list[float] = []

        def on_step_end(pipeline, step, timestep, callback_kwargs):
            self.device.sync()
            stamps.append(time.perf_counter())
            return callback_kwargs

        def run():
            self.device.reset_peak()
            run_stock(self.pipeline, prompt=PROMPT, negative=NEGATIVE, width=self.size, height=self.size,
                      steps=self.steps, cfg=7.0, seed=1234, callback=on_step_end)
            self.device.sync()
            self.note(label, stamps)
            stamps.clear()

        return run


    def peak(self, label: str, last: int) -> float | None:
        values = self.peaks.get(label)
        return statistics.median(values[-last:]) if values else None


def rate_result(runner: Runner, label: str, pairs: int, family: str, subject: str, note: str = "") -> CaseResult:
    rates = runner.rates[label][-pairs:]
    median, low, high = spread(rates)
    anchor = ANCHORS_H100[family]
    return CaseResult(case="gpu", name=f"its_{label}", family=family, subject=subject, baseline=None, unit="it/s",
                      median=median, low=low, high=high, samples=rates,
                      details={"anchor_h100_eager": anchor, "peak_vram_mib": runner.peak(label, pairs)},
                      note=note or f"H100 anchor {anchor} it/s")


def measure_family(family: str, args, device: Device, taesd: Path) -> list[CaseResult]:
    import torch

    from bench.cases import strip_regions
    from bench.harness import ratio_result
    from bench.models import build_full_model, build_mid_model
    from inference.sd.fastpath import FastPathOptions, install_fast_path

    dtype = torch.float16 if device.cuda else torch.float32
    size = args.size or FULL_SIZES[family]
    model_size = "mid" if args.mid else args.model_size
    if model_size == "tiny":
        from inference.tiny import build_tiny

        model = build_tiny(family)
    elif model_size == "mid":
        model = build_mid_model(family, device=device.name, dtype=dtype)
    else:
        model = build_full_model(family, device.name, dtype)
    runner = Runner(model, device, size, args.steps, taesd)
    pairs, warmup = args.pairs, args.warmup
    results: list[CaseResult] = []

    def within_budget(what: str) -> bool:
        if args.deadline is None or time.perf_counter() < args.deadline:
            return True
        print(f"[bench.gpu] {family}: {what} skipped (over the --budget-s time)", file=sys.stderr, flush=True)
        args.skipped.append(f"{family}: {what}")
        return False

    def ratio(runs, name, subject, baseline, target=None, **details):
        return ratio_result(runs, case="gpu", name=name, family=family, subject=subject, baseline=baseline,
                            clock="wall", target=target, details=details)

    # Eager: our loop vs the stock pipeline, it/s and peak VRAM.
    plain = runner.request()
    # At least one discarded pair here: the first runs pay cuDNN's algorithm search and lazy inits.
    runs = run_pairs(runner.ours(plain, "ours_eager"), runner.stock("stock_eager"), pairs=pairs,
                     warmup=max(warmup, 1))
    results.append(rate_result(runner, "ours_eager", pairs, family, f"our loop, eager, {size}^2"))
    results.append(rate_result(runner, "stock_eager", pairs, family, f"stock pipeline, eager, {size}^2"))
    results.append(ratio(runs, "loop_vs_stock", "our loop", "stock pipeline", 1.03))
    ours_peak, stock_peak = runner.peak("ours_eager", pairs), runner.peak("stock_eager", pairs)
    if ours_peak is not None and stock_peak is not None:
        results.append(CaseResult(case="gpu", name="peak_vram", family=family, subject="our loop peak VRAM",
                                  baseline="stock pipeline", unit="x", median=ours_peak / stock_peak,
                                  low=ours_peak / stock_peak, high=ours_peak / stock_peak,
                                  samples=[ours_peak / stock_peak], target=1.10, clock="vram",
                                  details={"ours_mib": ours_peak, "stock_mib": stock_peak},
                                  note=f"{ours_peak:.0f} vs {stock_peak:.0f} MiB"))

    # Previews and regions at full size (eager).
    for method, target in (("linear", 1.01), ("taesd", None)):
        if not within_budget(f"preview {method}"):
            continue
        runs = run_pairs(runner.ours(replace(plain, preview=method), f"preview_{method}"),
                         runner.ours(plain, "plain"), pairs=pairs, warmup=warmup)
        results.append(ratio(runs, f"preview_{method}", f"{method} preview every step", "no preview", target))
    variants = [("attention", n, t) for n, t in ((1, 1.05), (4, 1.10), (8, 1.15))] + [("latent", 4, None)]
    for method, count, target in variants:
        if not within_budget(f"{method} regions x{count}"):
            continue
        regional = replace(plain, mode="regions", region_method=method, regions=strip_regions(count, size))
        runs = run_pairs(runner.ours(regional, f"{method}_{count}"), runner.ours(plain, "plain"), pairs=pairs,
                         warmup=warmup)
        name = f"regions_attention_{count}" if method == "attention" else f"latent_couple_{count}"
        results.append(ratio(runs, name, f"{method} regions x{count}", "plain generate", target))

    # Fast path: channels_last + fused QKV (eager), then compiled.
    fast = install_fast_path(model, FastPathOptions(compile=False))
    run_pairs(runner.ours(plain, "ours_fused"), runner.stock("stock_fused"), pairs=pairs, warmup=warmup)
    results.append(rate_result(runner, "ours_fused", pairs, family, "our loop, channels_last + fused QKV"))
    results.append(rate_result(runner, "stock_fused", pairs, family, "stock pipeline on the same fast UNet"))
    if args.compile and within_budget("torch.compile"):
        from torch._dynamo.utils import counters

        step_px, min_px = fast.bucket_px()
        compile_size = max(min_px, -(-size // step_px) * step_px)
        compiled_plain = replace(plain, width=compile_size, height=compile_size)
        torch._dynamo.reset()  # compiled from scratch: an earlier graph of the same forward would hide the cost
        fast.compile(args.compile_mode, args.compile_backend)
        graphs_at_start = counters["stats"]["unique_graphs"]
        started = time.perf_counter()
        runner.ours(compiled_plain, "compile_warmup")()
        compile_seconds = time.perf_counter() - started
        compiled_graphs = counters["stats"]["unique_graphs"] - graphs_at_start
        if fast.calls["fast"] == 0 or compiled_graphs == 0:
            raise BenchError(f"The compiled UNet did not run at {compile_size}^2 ({fast.calls}).")
        run_pairs(runner.ours(compiled_plain, "ours_compiled"), runner.stock("stock_compiled"), pairs=pairs,
                  warmup=0)
        graphs_before = counters["stats"]["unique_graphs"]
        # Another size of the same bucket grid: the dynamic graph must serve it without compiling again.
        other_height = compile_size - step_px if compile_size - step_px >= min_px else compile_size + 2 * step_px
        other = replace(compiled_plain, width=compile_size + step_px, height=other_height)
        fast_calls_before = fast.calls["fast"]
        started = time.perf_counter()
        runner.ours(other, "compiled_other_size")()
        other_seconds = time.perf_counter() - started
        recompiled = counters["stats"]["unique_graphs"] - graphs_before
        if fast.calls["fast"] == fast_calls_before:
            raise BenchError(f"The compiled UNet did not run at {other.width}x{other.height}.")
        results.append(rate_result(
            runner, "ours_compiled", pairs, family, "our loop, fast path + torch.compile",
            note=f"first run (compiling) {compile_seconds:.0f} s; {other.width}x{other.height} next: "
                 f"{other_seconds:.1f} s, {recompiled} new graphs; H100 anchor {ANCHORS_H100[family]} it/s",
        ))
        results[-1].details.update(compile_seconds=compile_seconds, other_size_seconds=other_seconds,
                                   compiled_size=compile_size, compiled_graphs=compiled_graphs,
                                   other_size=[other.width, other.height], new_graphs_on_size_change=recompiled,
                                   compile_backend=args.compile_backend, fast_calls=dict(fast.calls))
        results.append(rate_result(runner, "stock_compiled", pairs, family, "stock pipeline on the compiled UNet"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="sd15,sdxl")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", type=int, help="px (default: 512 for SD1.5, 1024 for SDXL)")
    parser.add_argument("--model-size", choices=("full", "mid", "tiny"), default="full",
                        help="mid: the middle-size models (CPU smoke check); tiny: inference.tiny's (seconds)")
    parser.add_argument("--mid", action="store_true", help="the same as --model-size mid")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend (eager: dynamo traces and guards, no code generation)")
    parser.add_argument("--budget-s", type=float, help="skip the cases that would start after this many seconds")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode (default: inductor's default)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "out" / "gpu_results.json")
    args = parser.parse_args(argv)

    from bench.cases import write_random_taesd
    from bench.runtime import format_table, machine_description, prepare_process

    prepare_process(16 if args.device.startswith("cuda") else 1)
    started = time.perf_counter()
    args.deadline = None if args.budget_s is None else started + args.budget_s
    args.skipped = []
    meta = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python -m bench.gpu " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": machine_description(), "gpu": gpu_name(args.device),
            "args": {k: str(v) for k, v in vars(args).items()}}
    results: list[CaseResult] = []

    def write_outputs() -> None:
        # After every family: a run stopped by a time limit still leaves what it measured.
        meta.update(seconds=time.perf_counter() - started, skipped=list(args.skipped))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": [r.to_json() for r in results]}, indent=2))
        if args.markdown is not None:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(markdown_report(meta, results))

    try:
        device = Device(args.device)
        taesd = write_random_taesd(args.json.parent / "work" / "taesd_decoder.safetensors")
        for family in [f.strip() for f in args.families.split(",") if f.strip()]:
            if family not in FULL_SIZES:
                raise BenchError(f"Unknown family {family!r}; use sd15 and/or sdxl.")
            print(f"[bench.gpu] {family} ...", file=sys.stderr, flush=True)
            results += measure_family(family, args, device, taesd)
            write_outputs()
    except BenchError as error:
        print(f"The GPU benchmark stopped: {error}", file=sys.stderr)
        return 1
    write_outputs()
    print(format_table(results))
    print(f"\nJSON: {args.json}" + (f"; markdown: {args.markdown}" if args.markdown else ""))
    return 0


def markdown_report(meta: dict, results: list[CaseResult]) -> str:
    from bench.runtime import format_value

    lines = [f"`{meta['command']}` — {meta['date']}, {meta.get('gpu') or meta['machine']['cpu_model']}, "
             f"{meta.get('seconds', 0):.0f} s", "",
             "| family | subject vs baseline | median (min–max) | target | status | note |", "|---|---|---|---|---|---|"]
    for r in results:
        versus = r.subject if r.baseline is None else f"{r.subject} vs {r.baseline}"
        target = "" if r.target is None else f"≤ {r.target:g}"
        lines.append(f"| {r.family or ''} | {versus} | {format_value(r)} | {target} | {r.status} | {r.note} |")
    if meta.get("skipped"):
        lines += ["", "Skipped (time budget): " + ", ".join(meta["skipped"])]
    return "\n".join(lines) + "\n"


def gpu_name(device: str) -> str | None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return None


if __name__ == "__main__":
    sys.exit(main())
