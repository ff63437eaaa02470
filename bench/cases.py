"""The benchmark cases of issue 8, each a ratio of a subject against its baseline (see bench/harness.py).

1. our `generate` loop (Engine.run) vs the stock diffusers pipeline on the same components, sampler,
   steps, seed and size; the first pair's images are compared to show both sides did the same work.
2. a linear preview after every step vs none; a TAESD-shaped preview (random AutoencoderTiny) vs none.
3. attention regions (1, 4, 8) vs a plain generation; latent couple with 4 regions vs plain.
4. inpaint `only_masked` with a mask over 25% of the canvas vs `whole`: the crop generated at its own
   size (the request sized to the crop, which the API allows for only_masked), the request the editor
   and `collagen render` make (desktop.request_builder, Auto generation size) and, A1111's way, the crop
   scaled up to the full request size.
5. peak memory (inference in fresh subprocesses: bench/memory.py).
6. model load: single-file checkpoint vs diffusers folder of the same weights.
7. GUI responsiveness (bench/gui.py, in a subprocess with its own QApplication): during a generation, per
   brush event, and while Save and autosave write a 4096² project of 20 image layers as the brush paints.

Every generation runs through the real engine (`inference.engine.Engine`) with the middle-size models
of bench/models.py, so what is measured is what the editor runs.
"""

from __future__ import annotations

import cProfile
import functools
import io
import math
import pstats
import statistics
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.harness import BenchError, CallTimer, CaseResult, run_pairs, run_rounds, timed
from bench.models import FAMILIES, BenchModels, build_bench_model, run_stock, stock_pipeline

PROMPT = "a watercolour fox in a snowy forest, soft morning light"
NEGATIVE = "blurry, low quality"
REGION_PROMPTS = (
    "a red barn", "a blue lake", "snowy mountains", "a pine forest", "a hot air balloon", "a stone bridge",
    "a field of sunflowers", "an old lighthouse",
)
REGION_NEGATIVES = (
    "rust, broken planks", "murky water", "haze", "dead trees", "wires", "graffiti", "wilted leaves", "cranes",
)
REGION_TARGETS = {1: 1.05, 4: 1.10, 8: 1.15}


@dataclass
class BenchConfig:
    quick: bool = False
    size: int = 256  # px, square generations
    steps: int = 8
    pairs: int = 7
    warmup: int = 1
    families: tuple[str, ...] = FAMILIES  # case 1 and the memory/load cases
    detail_families: tuple[str, ...] = FAMILIES  # cases 2-4
    clock: str = "cpu"
    sampler: str = "Euler"
    cfg: float = 7.0
    seed: int = 1234
    inpaint_canvas: int = 512  # px: the 25% mask is a centred square of half the side
    # A1111's only_masked (crop scaled up to the request size) costs what `whole` costs: measured in the
    # full run; the quick run keeps its minutes for the crop generated at its own size (the target).
    inpaint_a1111: bool = True
    inpaint_padding: int = 8
    inpaint_blur: int = 4
    memory_pairs: int = 5
    threads: int = 1
    model_size: str = "mid"  # "tiny": inference.tiny's models, for smoke runs of the harness
    workdir: Path = Path("bench/out/work")
    profile_dir: Path | None = None  # write a profile here for every ratio that misses its target

    @classmethod
    def for_mode(cls, quick: bool, **overrides) -> BenchConfig:
        if quick:
            values = dict(quick=True, steps=4, pairs=5, detail_families=("sd15",), memory_pairs=5, inpaint_a1111=False)
        else:
            values = dict(quick=False)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class BenchContext:
    """What the cases share: the built models, one engine over them, the TAESD file, the profiles."""

    config: BenchConfig
    models: BenchModels = field(default_factory=BenchModels)
    engine: Any = None
    profiled: list[str] = field(default_factory=list)
    built: dict[str, Any] = field(default_factory=dict)  # family -> SDModel

    def model(self, family: str):
        if family not in self.built:
            self.built[family] = self.models.add(build_bench_model(family, self.config.model_size))
        return self.built[family]

    def get_engine(self):
        if self.engine is None:
            from inference.engine import Engine

            self.engine = Engine(self.models)
        return self.engine

    def request(self, family: str, **overrides):
        from inference.api import GenerationRequest

        model = self.model(family)
        c = self.config
        values = dict(model=model.name, prompt=PROMPT, negative=NEGATIVE, width=c.size, height=c.size,
                      steps=c.steps, sampler=c.sampler, cfg=c.cfg, seed=c.seed, preview="none")
        values.update(overrides)
        return GenerationRequest(**values)

    def generate(self, request) -> np.ndarray:
        return run_engine(self.get_engine(), request)

    def measure(self, subject: Callable[[], Any], baseline: Callable[[], Any]):
        return run_pairs(subject, baseline, pairs=self.config.pairs, warmup=self.config.warmup)

    def measure_against(self, baseline: Callable[[], Any], subjects: dict[str, Callable[[], Any]]):
        """Several subjects sharing one baseline run per round (see bench.harness.run_rounds)."""
        return run_rounds(baseline, subjects, rounds=self.config.pairs, warmup=self.config.warmup)

    def maybe_profile(self, result: CaseResult, subject: Callable[[], Any], baseline: Callable[[], Any], *,
                      always: bool = False) -> None:
        """With --profile: a profile of both sides for a ratio that misses its target (or `always`)."""
        if self.config.profile_dir is None or not (always or result.status == "MISS"):
            return
        label = f"{result.name}_{result.family}" if result.family else result.name
        path = Path(self.config.profile_dir) / f"{label}.txt"
        write_profile(path, result, {"subject: " + result.subject: subject, "baseline: " + str(result.baseline): baseline})
        result.details["profile"] = str(path)
        self.profiled.append(str(path))


def run_engine(engine, request) -> np.ndarray:
    """One request through Engine.run; the image, or BenchError with the engine's own sentence."""
    from inference.api import Finished

    events: list = []
    engine.run(request, events.append, threading.Event())
    last = events[-1] if events else None
    if not isinstance(last, Finished):
        raise BenchError(f"The engine did not finish a {request.mode} request: {last!r}.")
    return last.images[0]


def ratio_of(runs, ctx: BenchContext, **kwargs) -> CaseResult:
    from bench.harness import ratio_result

    return ratio_result(runs, clock=ctx.config.clock, **kwargs)


# ---- 1. the loop vs the stock pipeline ------------------------------------------------------------------


def network_modules(model) -> list:
    """The networks both sides run identically: UNet, VAE (encoder and decoder halves), text encoders."""
    vae = model.vae
    modules = [model.unet, vae.encoder, vae.decoder, model.text_encoder]
    modules += [m for m in (getattr(vae, "quant_conv", None), getattr(vae, "post_quant_conv", None),
                            model.text_encoder_2) if m is not None]
    return modules


def recording_time(timer: CallTimer, run: Callable[[], Any], record: list) -> Callable[[], Any]:
    """`run`, noting after each call the time the timer saw inside it."""
    def measured():
        timer.take()
        value = run()
        record.append(timer.take())
        return value

    return measured


def outside_networks(runs, records_subject, records_baseline, clock: str) -> dict[str, float]:
    """Split each run into network time (the same arithmetic on both sides) and everything else.

    `direct_ratio` puts each side's own overhead on the common network time: (C + o_s) / (C + o_b),
    a ratio far less disturbed by other processes than the raw one, whose noise is mostly network time.
    """
    pairs = len(runs.subject)
    inside_s = [t.on(clock) for t in records_subject[-pairs:]]
    inside_b = [t.on(clock) for t in records_baseline[-pairs:]]
    outside_s = [t.on(clock) - i for t, i in zip(runs.subject, inside_s)]
    outside_b = [t.on(clock) - i for t, i in zip(runs.baseline, inside_b)]
    networks = statistics.median(inside_s + inside_b)
    own_s, own_b = statistics.median(outside_s), statistics.median(outside_b)
    return {"network_s": networks, "subject_outside_networks_s": own_s, "baseline_outside_networks_s": own_b,
            "direct_ratio": (networks + own_s) / (networks + own_b)}


def case_loop_vs_stock(ctx: BenchContext) -> list[CaseResult]:
    results = []
    c = ctx.config
    for family in c.families:
        model = ctx.model(family)
        request = ctx.request(family)
        pipeline = stock_pipeline(model, c.sampler)
        timer = CallTimer().watch_modules(network_modules(model))
        inside_ours: list = []
        inside_stock: list = []

        def ours(request=request):
            return ctx.generate(request)

        def stock(pipeline=pipeline):
            return run_stock(pipeline, prompt=PROMPT, negative=NEGATIVE, width=c.size, height=c.size,
                             steps=c.steps, cfg=c.cfg, seed=c.seed)

        try:
            runs = ctx.measure(recording_time(timer, ours, inside_ours), recording_time(timer, stock, inside_stock))
        finally:
            timer.remove()
        split = outside_networks(runs, inside_ours, inside_stock, c.clock)
        ours_image, stock_image = runs.first_outputs
        difference = int(np.abs(ours_image.astype(np.int16) - stock_image.astype(np.int16)).max())
        same = f"same image (max pixel difference {difference})" if difference <= 1 else \
            f"images differ by up to {difference} levels"
        result = ratio_of(
            runs, ctx, case="1", name="loop_vs_stock", family=family, subject="Engine.run generate",
            baseline=type(pipeline).__name__, target=1.03,
            details={"max_pixel_difference": difference, **split},
            note=f"{same}; outside the networks {split['subject_outside_networks_s'] * 1e3:.0f} vs "
                 f"{split['baseline_outside_networks_s'] * 1e3:.0f} ms",
        )
        ctx.maybe_profile(result, ours, stock)
        results.append(result)
    return results


# ---- 2. previews ------------------------------------------------------------------------------------------


def write_random_taesd(path: Path, seed: int = 0) -> Path:
    """A random-weight AutoencoderTiny (the published TAESD decoder's shape) as a .safetensors file."""
    import torch
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        autoencoder = AutoencoderTiny()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in autoencoder.state_dict().items()}, str(path))
    return path


def case_previews(ctx: BenchContext) -> list[CaseResult]:
    c = ctx.config
    results = []
    if ctx.models.taesd is None:
        ctx.models.taesd = write_random_taesd(Path(c.workdir) / "taesd_decoder.safetensors")
    engine = ctx.get_engine()
    timer = CallTimer()
    render = engine.render_preview
    engine.render_preview = timer.wrap(render)  # this engine only: the time each preview takes
    try:
        for family in c.detail_families:
            plain = ctx.request(family, preview="none")
            methods = {"linear": 1.01, "taesd": None}
            preview_times: dict[str, list] = {method: [] for method in methods}

            subjects = {
                method: recording_time(timer, functools.partial(ctx.generate, replace(plain, preview=method)),
                                       preview_times[method])
                for method in methods
            }
            baseline = functools.partial(ctx.generate, plain)
            measured = ctx.measure_against(baseline, subjects)
            for method, target in methods.items():
                runs = measured[method]
                inside = [t.on(c.clock) for t in preview_times[method][-len(runs.subject):]]
                per_step_ms = statistics.median(inside) / c.steps * 1e3
                share = statistics.median(i / t.on(c.clock) for i, t in zip(inside, runs.subject))
                result = ratio_of(
                    runs, ctx, case="2", name=f"preview_{method}", family=family,
                    subject=f"{method} preview every step", baseline="no preview", target=target,
                    # the run without its preview time is the baseline's work: ratio = 1 / (1 - share)
                    details={"preview_ms_per_step": per_step_ms, "preview_share_of_run": share,
                             "direct_ratio": 1.0 / (1.0 - share)},
                    note=f"rendering takes {per_step_ms:.2f} ms per step = {share:.2%} of the run",
                )
                ctx.maybe_profile(result, subjects[method], baseline)
                results.append(result)
    finally:
        engine.render_preview = render
    return results


# ---- 3. regions ----------------------------------------------------------------------------------------------


def strip_regions(count: int, size: int, *, negatives: bool = False) -> tuple:
    """`count` vertical strips over the canvas, each with its own prompt (and, with `negatives`, its own
    negative prompt: the costlier case, where no region's unconditional row folds into the base's)."""
    from inference.api import RegionSpec

    regions = []
    edges = np.linspace(0, size, count + 1).round().astype(int)
    for index in range(count):
        mask = np.zeros((size, size), np.float32)
        mask[:, edges[index] : edges[index + 1]] = 1.0
        negative = REGION_NEGATIVES[index % len(REGION_NEGATIVES)] if negatives else ""
        regions.append(RegionSpec(mask=mask, prompt=REGION_PROMPTS[index % len(REGION_PROMPTS)], negative=negative))
    return tuple(regions)


def case_regions(ctx: BenchContext) -> list[CaseResult]:
    c = ctx.config
    results = []
    variants = [("attention", count, REGION_TARGETS[count]) for count in (1, 4, 8)] + [("latent", 4, None)]
    for family in c.detail_families:
        plain = ctx.request(family)
        requests = {
            f"{'regions_attention' if method == 'attention' else 'latent_couple'}_{count}":
                replace(plain, mode="regions", region_method=method, regions=strip_regions(count, c.size))
            for method, count, _ in variants
        }
        subjects = {name: functools.partial(ctx.generate, request) for name, request in requests.items()}
        baseline = functools.partial(ctx.generate, plain)
        measured = ctx.measure_against(baseline, subjects)
        for (method, count, target), name in zip(variants, requests):
            result = ratio_of(
                measured[name], ctx, case="3", name=name, family=family,
                subject=f"{method} regions x{count}", baseline="plain generate", target=target,
                note="expected ~(N+1)/2 = 2.5" if method == "latent" else "",
            )
            ctx.maybe_profile(result, subjects[name], baseline)
            results.append(result)
    return results


# ---- 4. inpaint only_masked ------------------------------------------------------------------------------


def inpaint_inputs(canvas: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random picture and a centred square mask covering a quarter of it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(canvas // 32, 2), max(canvas // 32, 2), 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((canvas, canvas), Image.Resampling.BICUBIC))
    mask = np.zeros((canvas, canvas), np.float32)
    quarter = canvas // 4
    mask[quarter : canvas - quarter, quarter : canvas - quarter] = 1.0
    return np.ascontiguousarray(image), mask


def crop_box_for(request, model) -> tuple[int, int, int, int]:
    """The box the inpaint extension will cut for this request (its own rule, not a copy of it)."""
    from inference.sd.context import DenoiseContext
    from inference.sd.inpaint import InpaintExtension

    extension = InpaintExtension.from_request(request)
    probe = DenoiseContext(model=model, request=request, seed=0, width=request.width, height=request.height,
                           generator=None, emit=lambda event: None)
    return extension.choose_crop_box(probe)


def own_size_request(request, model):
    """only_masked with the generation at the crop's own size (rounded up to the latent grid)."""
    cell = model.vae_scale_factor
    x0, y0, x1, y1 = crop_box_for(request, model)
    width = math.ceil((x1 - x0) / cell) * cell
    height = math.ceil((y1 - y0) / cell) * cell
    return replace(request, width=width, height=height), (x0, y0, x1, y1)


def builder_request(ctx: BenchContext, family: str, image: np.ndarray, mask: np.ndarray):
    """only_masked as the editor and `collagen render` ask for it: a document with the picture and the
    mask, composed and mapped by desktop.request_builder (its Auto generation size), on the bench model."""
    from canvas.model.compose import compose
    from canvas.model.document import Document
    from canvas.model.layers import ImageLayer, MaskLayer
    from desktop.request_builder import build_request

    c = ctx.config
    height, width = mask.shape
    document = Document(width, height)
    document.add_layer_untracked(ImageLayer(name="picture", pixels=np.dstack([image, np.full(mask.shape, 255, np.uint8)])))
    document.add_layer_untracked(MaskLayer(name="mask", pixels=(mask * 255).astype(np.uint8)))
    model = ctx.model(family)
    settings = dict(document.settings.to_dict(), mode="inpaint", inpaint_area="only_masked", model=model.name,
                    prompt=PROMPT, negative=NEGATIVE, steps=c.steps, sampler=c.sampler, cfg=c.cfg, seed=c.seed,
                    padding=c.inpaint_padding, mask_blur=c.inpaint_blur, strength=1.0)
    return build_request(compose(document), settings, preview="none", family=family)


def case_inpaint(ctx: BenchContext) -> list[CaseResult]:
    c = ctx.config
    results = []
    image, mask = inpaint_inputs(c.inpaint_canvas)
    for family in c.detail_families:
        model = ctx.model(family)
        whole = ctx.request(family, mode="inpaint", init_image=image, mask=mask, width=c.inpaint_canvas,
                            height=c.inpaint_canvas, inpaint_area="whole", padding=c.inpaint_padding,
                            mask_blur=c.inpaint_blur)
        upscaled = replace(whole, inpaint_area="only_masked")
        own, box = own_size_request(upscaled, model)
        crop_fraction = (box[2] - box[0]) * (box[3] - box[1]) / float(c.inpaint_canvas**2)

        built = builder_request(ctx, family, image, mask)
        variants = {
            "own_size": (own, 0.35, f"crop {own.width}x{own.height} generated at its own size"),
            "request_builder": (built, 0.40, f"the editor's request (builder, Auto size): {built.width}x{built.height}"),
            "upscaled": (upscaled, None, f"crop scaled up to {upscaled.width}x{upscaled.height} (A1111)"),
        }
        if not c.inpaint_a1111:
            del variants["upscaled"]
        subjects = {label: functools.partial(ctx.generate, request) for label, (request, _, _) in variants.items()}
        baseline = functools.partial(ctx.generate, whole)
        measured = ctx.measure_against(baseline, subjects)
        for label, (_request, target, description) in variants.items():
            result = ratio_of(
                measured[label], ctx, case="4", name=f"inpaint_only_masked_{label}", family=family,
                subject=description, baseline=f"whole {c.inpaint_canvas}x{c.inpaint_canvas}", target=target,
                details={"mask_fraction": float(mask.mean()), "crop_box": list(box), "crop_fraction": crop_fraction,
                         "padding": c.inpaint_padding, "mask_blur": c.inpaint_blur},
                note=f"mask 25%, crop {crop_fraction:.0%} of the canvas",
            )
            ctx.maybe_profile(result, subjects[label], baseline)
            results.append(result)
    return results


# ---- 6. model load ------------------------------------------------------------------------------------------


def case_model_load(ctx: BenchContext) -> list[CaseResult]:
    import torch

    from bench.models import write_config_root, write_diffusers_folder, write_single_file
    c = ctx.config
    results = []
    for family in c.families:
        model = ctx.model(family)
        root = Path(c.workdir) / f"load_{family}"
        checkpoint = root / f"mid-{family}.safetensors"
        folder = root / f"mid-{family}-diffusers"
        config_root = root / "configs"
        if not checkpoint.is_file():
            root.mkdir(parents=True, exist_ok=True)
            write_single_file(model, checkpoint)
            write_diffusers_folder(model, folder)
            write_config_root(model, config_root)
        hash_cache = root / "hashes.json"

        single_file = functools.partial(load_fresh, checkpoint, config_root, hash_cache)
        diffusers_folder = functools.partial(load_fresh, folder, config_root, hash_cache)
        runs = ctx.measure(single_file, diffusers_folder)
        loaded_single, loaded_folder = runs.first_outputs
        same = all(
            torch.equal(a, b)
            for a, b in zip(loaded_single.unet.state_dict().values(), loaded_folder.unet.state_dict().values())
        )
        size_mib = checkpoint.stat().st_size / 2**20
        result = ratio_of(
            runs, ctx, case="6", name="load_single_file_vs_folder", family=family,
            subject="single-file .safetensors", baseline="diffusers folder", target=None,
            details={"checkpoint_mib": size_mib, "same_unet_weights": same},
            note=f"{size_mib:.0f} MiB checkpoint, same weights: {same}",
        )
        ctx.maybe_profile(result, single_file, diffusers_folder, always=True)  # no target, but worth seeing
        results.append(result)
    return results


def load_fresh(path: Path, config_root: Path, hash_cache: Path):
    """Load through a new ModelManager: a kept one would hand back the model it already holds."""
    import torch

    from inference.models import ModelManager

    manager = ModelManager([], config_root=config_root, device="cpu", dtype=torch.float32, hash_cache_file=hash_cache)
    return manager.load(str(path))


# ---- profiles of the cases that miss -------------------------------------------------------------------


def write_profile(path: Path, result: CaseResult, sides: dict[str, Callable[[], Any]]) -> None:
    """torch.profiler's operator table and cProfile's Python view of one run of each side, as text."""
    from torch.profiler import ProfilerActivity, profile

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"Profile of case {result.case} {result.name} ({result.family}): ratio {result.median:.3f}"
             f" (target {result.target}), {result.clock} clock", ""]
    for label, run in sides.items():
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            timing, _ = timed(run)
        lines += [f"==== {label}: {timing.wall:.3f} s wall, {timing.cpu:.3f} s CPU", "",
                  "-- torch.profiler, top operators by self CPU time --",
                  prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), ""]
        profiler = cProfile.Profile()
        profiler.enable()
        run()
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        lines += ["-- cProfile, top 30 by cumulative time --", text.getvalue(), ""]
    path.write_text("\n".join(lines), encoding="utf-8")


# ---- measurements that are not ratios ---------------------------------------------------------------


CASES: dict[str, Callable[[BenchContext], list[CaseResult]]] = {
    "loop": case_loop_vs_stock,
    "preview": case_previews,
    "regions": case_regions,
    "inpaint": case_inpaint,
    "load": case_model_load,
}
