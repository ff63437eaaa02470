"""FLUX benchmark (issue 14, acceptance 7 in part): `python -m bench.flux [--quick]`.

On a mid-size FLUX-shaped transformer (tiny text encoders and VAE, so the transformer dominates), CPU:

1. our flow loop (`run_flux`, prompts encoded inside the run) vs diffusers' FluxPipeline on the same
   components, size, steps and seed — the first pair's images are compared (max pixel difference);
2. attention regions x4 and x8 (every region with its own prompt and negative, true CFG on) vs a plain
   run with the same true CFG;
3. peak memory of our run vs the pipeline's, each in a forked child (bench/memory.py's `run_forked`).

Ratios are best-of pairs run side by side in alternating order (bench/harness.py); the regions'
ratios are CPU time (user + system, so a loaded machine inflates them less), both counts against one
plain run per round, with the median and range of the per-round ratios. `--regions-only` skips 1 and 3.
"""

from __future__ import annotations

import argparse
import threading

import numpy as np

from bench.harness import run_pairs, run_rounds, spread
from bench.memory import run_forked

PROMPT = "a watercolour fox in a snowy forest, soft morning light"
NEGATIVE = "blurry, low quality"
REGION_PROMPTS = (
    "a red barn", "a blue lake", "snowy mountains", "a pine forest", "a hot air balloon", "a stone bridge",
    "a field of sunflowers", "an old lighthouse",
)
REGION_NEGATIVES = ("dark", "foggy", "cartoon", "noisy", "washed out", "grainy", "oversaturated", "cropped")
TARGETS = {"loop": 1.03, "regions x4": 1.10, "regions x8": 1.15, "peak memory": 1.10}


def build_mid_flux():
    """FLUX.1 dev wiring at a width a CPU can step through: 2 double + 4 single blocks, 2 heads of 128.

    The heads keep FLUX.1's own size (128, rotary axes 16/56/56) and only their number is cut: the
    attention's cost per query-key pair, and what a mask adds to it, depend on the head size.
    """
    import torch

    from inference.flow.tiny import build_tiny_flux, prepare_transformer

    model = build_tiny_flux("dev")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model.transformer = prepare_transformer("dev", 2, 4, heads=2, head_dim=128, rope_axes=(16, 56, 56))
    model.transformer.eval().requires_grad_(False)
    return model


def region_masks(count: int, size: int) -> list[np.ndarray]:
    """`count` vertical stripes across the canvas."""
    masks = []
    edges = np.linspace(0, size, count + 1).astype(int)
    for left, right in zip(edges[:-1], edges[1:]):
        mask = np.zeros((size, size), np.float32)
        mask[:, left:right] = 1.0
        masks.append(mask)
    return masks


def run_ours(model, request):
    from inference.api import Finished
    from inference.flow.run import run_flux
    from inference.records import RunProgress

    events = []
    run_flux(model, request, events.append, threading.Event(), RunProgress())
    return next(e for e in events if isinstance(e, Finished)).images[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flux")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--regions-only", action="store_true", help="only the attention-regions ratios")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.steps = 3, 2

    import torch
    from diffusers import FluxPipeline

    from inference.api import GenerationRequest, RegionSpec
    from inference.flow.schedule import FlowMatchEuler

    torch.set_num_threads(args.threads)
    model = build_mid_flux()
    pipeline = FluxPipeline(scheduler=FlowMatchEuler.from_config(model.scheduler_config), vae=model.vae,
                            text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                            text_encoder_2=model.text_encoder_2, tokenizer_2=model.tokenizer_2,
                            transformer=model.transformer)
    pipeline.set_progress_bar_config(disable=True)
    size, steps, seed = args.size, args.steps, 1234
    plain = GenerationRequest(model=model.name, prompt=PROMPT, width=size, height=size, steps=steps, seed=seed,
                              preview="none")

    def stock():
        images = pipeline(PROMPT, width=size, height=size, num_inference_steps=steps, guidance_scale=3.5,
                          generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
        return np.clip(np.rint(images[0] * 255.0), 0, 255).astype(np.uint8)

    results, spreads = {}, {}
    difference = None
    if not args.regions_only:
        runs = run_pairs(lambda: run_ours(model, plain), stock, pairs=args.pairs)
        ours_image, stock_image = runs.first_outputs
        results["loop"] = runs.best_ratio("cpu")
        difference = int(np.abs(ours_image.astype(int) - stock_image.astype(int)).max())

    with_negative = GenerationRequest(model=model.name, prompt=PROMPT, negative=NEGATIVE, true_cfg_scale=3.0,
                                      width=size, height=size, steps=steps, seed=seed, preview="none")
    subjects = {}
    for count in (4, 8):
        regions = tuple(RegionSpec(mask, REGION_PROMPTS[i], negative=REGION_NEGATIVES[i])
                        for i, mask in enumerate(region_masks(count, size)))
        regional = GenerationRequest(**{**with_negative.__dict__, "mode": "regions", "regions": regions})
        subjects[f"regions x{count}"] = lambda r=regional: run_ours(model, r)
    # Both counts against one plain run per round (alternating before/after it).
    for name, runs in run_rounds(lambda: run_ours(model, with_negative), subjects, rounds=args.pairs).items():
        results[name] = runs.best_ratio("cpu")
        spreads[name] = spread(runs.ratios("cpu"))

    peaks = {"ours": [], "stock": []}
    for index in range(0 if args.regions_only else args.pairs):
        for side in ("ours", "stock") if index % 2 == 0 else ("stock", "ours"):
            run = (lambda: run_ours(model, plain)) if side == "ours" else stock
            record = run_forked(side, run)
            peaks[side].append(record["peak_mib"] - record["rss_before_mib"])
    if peaks["ours"]:
        results["peak memory"] = min(peaks["ours"]) / max(min(peaks["stock"]), 1e-6)

    print(f"FLUX-shaped transformer (2 double + 4 single blocks, 256 wide), {size} px, {steps} steps, "
          f"{args.threads} thread(s), best of {args.pairs} pairs")
    if difference is not None:
        print(f"first pair's images: max pixel difference {difference}")
    for name, ratio in results.items():
        target = TARGETS[name]
        line = f"  {name:12s} {ratio:6.3f}x  (target <= {target:.2f}x)  {'ok' if ratio <= target else 'MISSED'}"
        if name in spreads:
            median, low, high = spreads[name]
            line += f"   per-round CPU-time ratios: median {median:.3f}, {low:.3f}-{high:.3f}"
        print(line)
    if peaks["ours"]:
        print(f"  peak extra MiB: ours {min(peaks['ours']):.1f}, diffusers {min(peaks['stock']):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
