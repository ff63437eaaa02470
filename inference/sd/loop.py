"""THE denoise loop for SD1.5 and SDXL (and their 9-channel inpaint variants).

txt2img, img2img at `strength` and inpaint all run through `generate_image`; what differs between
modes is the list of extensions (see inference/sd/context.py for the hooks). Read top to bottom:

    1. source image         the request's image in generation space; extensions' prepare_image
    2. timesteps            a fresh scheduler from the pristine config, cut by strength
    3. conditioning         CFG batch of prompt embeddings (+ SDXL pooled text and time ids)
    4. image latents        VAE-encode the init image (img2img / inpaint)
    5. noise                from a CPU generator seeded per image: reproducible on any device
    6. extensions.prepare   latent-space setup
    7. starting latents     noised image latents, or pure noise scaled for the scheduler
    8. steps                predict noise (CFG), scheduler step, after_step hooks, step callback
    9. decode               VAE decode (skipped entirely when cancelled: the callback raises)
   10. extensions.finish    paste-back etc., then cleanup
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from inference.api import Event, GenerationRequest
from inference.components import SDModel
from inference.schedulers import build_scheduler
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.vae import decode_latents, encode_image

# on_step(step_index, total_steps, preview_latents); may raise GenerationCancelled.
StepCallback = Callable[[int, int, object], None]


@dataclass
class CanvasBoxes:
    """Where one image's pixels sit on the canvas, each as (x0, y0, x1, y1): the engine reports them
    in Preview and Finished, so the editor draws there without computing any geometry itself."""

    preview: tuple[int, int, int, int] | None = None  # what the step previews show (the only_masked crop)
    changed: tuple[int, int, int, int] | None = None  # where the finished image may differ from the input


def generate_image(
    model: SDModel,
    request: GenerationRequest,
    *,
    seed: int,
    cond,
    uncond,
    extensions: list[LoopExtension],
    on_step: StepCallback,
    emit: Callable[[Event], None],
    sampler: str | None = None,
    loras: tuple = (),
    apply_loras: Callable[[list], None] | None = None,
    canvas_boxes: CanvasBoxes | None = None,
) -> np.ndarray:
    """Run one image of the request with the given seed; returns HxWx3 uint8 (finish hooks applied).
    `canvas_boxes`, when given, is filled in with where the previews and the result sit on the canvas."""
    import torch

    ctx = DenoiseContext(
        model=model,
        request=request,
        seed=seed,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(seed),
        emit=emit,
        device=torch.device(model.unet.device),
        dtype=model.dtype or model.unet.dtype,
        guidance_scale=float(request.cfg),
        cond=cond,
        uncond=uncond,
        loras=tuple(loras),
        apply_loras=apply_loras,
    )
    boxes = canvas_boxes if canvas_boxes is not None else CanvasBoxes()

    def step(step_index: int, total: int, preview) -> None:
        boxes.preview = ctx.crop_box or ctx.canvas_box  # the crop is chosen before the first step
        on_step(step_index, total, preview)

    try:
        with torch.no_grad():
            image = run_denoise(ctx, extensions, step, sampler or request.sampler)
        boxes.preview = ctx.crop_box or ctx.canvas_box
        boxes.changed = ctx.changed_box or ctx.canvas_box
        return image
    finally:
        for extension in reversed(extensions):
            extension.cleanup(ctx)


def run_denoise(ctx: DenoiseContext, extensions: list[LoopExtension], on_step: StepCallback, sampler: str) -> np.ndarray:
    # 1. source image, in generation space; extensions may crop (inpaint only_masked) or pre-fill it
    ctx.canvas_image = ctx.request.init_image
    for extension in extensions:
        extension.prepare_image(ctx)
    prepare_source_image(ctx)

    # 2. timesteps: the full schedule for `steps`, cut to the last `strength` part when there is an image
    prepare_timesteps(ctx, sampler)
    if len(ctx.timesteps) == 0:
        # Strength so low that no step runs: the input comes back unchanged (no VAE round trip).
        return finish_image(ctx, extensions, ctx.source_image.copy())

    # 3. conditioning
    prepare_conditioning(ctx)

    # 4. image latents
    if ctx.init_image is not None:
        ctx.image_latents = encode_image(ctx.model, ctx.init_image, ctx.device)

    # 5. noise
    ctx.noise = prepare_noise(ctx)

    # 6. extensions' latent-space setup
    for extension in extensions:
        extension.prepare(ctx)

    # 7. starting latents
    ctx.latents = prepare_latents(ctx)

    # 8. steps
    step_kwargs = prepare_step_kwargs(ctx)
    total = len(ctx.timesteps)
    for step_index, t in enumerate(ctx.timesteps):
        noise_pred = predict_noise(ctx, extensions, ctx.latents, t)
        output = ctx.scheduler.step(noise_pred, t, ctx.latents, **step_kwargs)
        latents = output.prev_sample
        for extension in extensions:
            latents = extension.after_step(ctx, step_index, latents)
        ctx.latents = latents
        on_step(step_index, total, preview_latents(output, latents))

    # 9. decode
    image = decode_latents(ctx.model, ctx.latents)

    # 10. finish
    return finish_image(ctx, extensions, image)


# ---- 1. source image --------------------------------------------------------------------------


def prepare_source_image(ctx: DenoiseContext) -> None:
    """The canvas image as the generation sees it, unless an extension already placed it."""
    if ctx.canvas_image is None or ctx.source_image is not None:
        return
    ctx.source_image = ctx.to_generation_space(ctx.canvas_image, is_mask=False)
    ctx.init_image = ctx.source_image.copy()


# ---- 2. timesteps -----------------------------------------------------------------------------


def prepare_timesteps(ctx: DenoiseContext, sampler: str) -> None:
    """Mirror diffusers' img2img `get_timesteps`: strength s runs the last int(steps * s) steps."""
    scheduler = build_scheduler(sampler, ctx.model.scheduler_config, seed=ctx.seed)
    steps = int(ctx.request.steps)
    scheduler.set_timesteps(steps, device=ctx.device)
    ctx.strength = float(ctx.request.strength) if ctx.init_image is not None else 1.0
    init_steps = min(int(steps * ctx.strength), steps)
    run_start = max(steps - init_steps, 0) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(run_start)
    ctx.scheduler = scheduler
    ctx.steps = steps
    ctx.run_start = run_start
    ctx.timesteps = scheduler.timesteps[run_start:]


# ---- 3. conditioning --------------------------------------------------------------------------


def prepare_conditioning(ctx: DenoiseContext) -> None:
    import torch

    cond, uncond = ctx.cond, ctx.uncond
    states = [uncond.hidden_states, cond.hidden_states] if ctx.do_cfg else [cond.hidden_states]
    ctx.encoder_hidden_states = torch.cat(states).to(ctx.device)
    if ctx.model.family == "sdxl":
        pooled = [uncond.pooled, cond.pooled] if ctx.do_cfg else [cond.pooled]
        time_ids = prepare_time_ids(ctx.height, ctx.width).to(ctx.device)
        ctx.added_cond_kwargs = {
            "text_embeds": torch.cat(pooled).to(ctx.device, ctx.dtype),
            "time_ids": time_ids.repeat(len(pooled), 1).to(ctx.dtype),
        }


def prepare_time_ids(height: int, width: int):
    """SDXL micro-conditioning: original size, crop top-left (0, 0), target size."""
    import torch

    return torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)


# ---- 5. noise ----------------------------------------------------------------------------------


def prepare_noise(ctx: DenoiseContext):
    import torch

    h, w = ctx.latent_size
    channels = int(ctx.model.vae.config.latent_channels)
    noise = torch.randn((1, channels, h, w), generator=ctx.generator, dtype=torch.float32)
    return noise.to(ctx.device)


# ---- 7. starting latents -------------------------------------------------------------------------


def prepare_latents(ctx: DenoiseContext):
    """Pure noise at full strength (as diffusers does), else the image latents noised to the first step."""
    if ctx.image_latents is None or ctx.strength >= 1.0:
        return ctx.noise * ctx.scheduler.init_noise_sigma
    return ctx.scheduler.add_noise(ctx.image_latents, ctx.noise, ctx.timesteps[:1])


# ---- 8. steps ------------------------------------------------------------------------------------


def prepare_step_kwargs(ctx: DenoiseContext) -> dict:
    """Ancestral/LCM samplers draw their per-step noise from the image's own CPU generator."""
    parameters = inspect.signature(ctx.scheduler.step).parameters
    return {"generator": ctx.generator} if "generator" in parameters else {}


def predict_noise(ctx: DenoiseContext, extensions: list[LoopExtension], latents, t):
    for extension in extensions:
        noise_pred = extension.predict_noise(ctx, latents, t)
        if noise_pred is not None:
            return noise_pred
    return ctx.predict_noise_default(latents, t)


def preview_latents(output, latents):
    """The scheduler's estimate of the clean image when it gives one (readable from step 1), else the latents."""
    for name in ("pred_original_sample", "denoised"):
        estimate = getattr(output, name, None)
        if estimate is not None:
            return estimate
    return latents


# ---- 10. finish ----------------------------------------------------------------------------------


def finish_image(ctx: DenoiseContext, extensions: list[LoopExtension], image: np.ndarray) -> np.ndarray:
    for extension in reversed(extensions):
        image = extension.finish(ctx, image)
    return image
