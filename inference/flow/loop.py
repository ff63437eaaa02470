"""THE flow-matching denoise loop for transformer families (FLUX.1 dev, schnell and Fill; Z-Image).

It reads like the SD loop (inference/sd/loop.py) and runs the same extensions through the same hooks
(inference/sd/context.py); the context is a `FlowContext` (inference/flow/context.py). Top to bottom:

    1. source image         the request's image in generation space; extensions' prepare_image
    2. timesteps            FlowMatchEuler sigmas, shifted for the image size (dev), cut by strength
    3. conditioning         positions of the image tokens (the prompt embeddings come encoded)
    4. image latents        VAE-encode the init image (img2img / inpaint), (x - shift) * scale
    5. noise                from a CPU generator seeded per image: reproducible on any device
    6. extensions.prepare   latent-space setup (Fill's conditioning channels, blending, regions)
    7. starting latents     the image latents noised to the first sigma, or pure noise
    8. steps                predict the velocity (true CFG), Euler step, after_step hooks, callback
    9. decode               VAE decode (skipped when cancelled: the callback raises)
   10. extensions.finish    paste-back etc., then cleanup

Latents stay spatial (1 x 16 x h x w) throughout; only the transformer call packs them. What a
family's transformer needs (its inputs, its guidance, its sigmas) is its FlowContext subclass
(`flow_context_class(model)`: FlowContext for FLUX.1, inference/flow/zimage.py's for Z-Image).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from inference.api import Event, GenerationRequest, RequestError
from inference.flow import packing
from inference.flow.components import FlowModel
from inference.flow.context import FlowContext, flow_context_class
from inference.flow.schedule import build_flow_scheduler, skipped_steps
from inference.sd.context import LoopExtension
from inference.sd.loop import (
    CanvasBoxes,
    finish_image,
    predict_noise,
    prepare_latents,
    prepare_noise,
    prepare_source_image,
)
from inference.sd.vae import decode_latents, encode_image

StepCallback = Callable[[int, int, object], None]


def generate_flow_image(
    model: FlowModel,
    request: GenerationRequest,
    *,
    seed: int,
    cond,
    uncond,
    extensions: list[LoopExtension],
    on_step: StepCallback,
    emit: Callable[[Event], None],
    guidance: float | None,
    true_cfg: float = 1.0,
    loras: tuple = (),
    apply_loras: Callable[[list], None] | None = None,
    canvas_boxes: CanvasBoxes | None = None,
    context_options: dict | None = None,
) -> np.ndarray:
    """Run one image of the request with the given seed; returns HxWx3 uint8 (finish hooks applied).
    `canvas_boxes`, when given, is filled in with where the previews and the result sit on the canvas.

    `guidance` is the distilled guidance (ignored by transformers without a guidance embedding);
    `true_cfg` > 1 runs the negative `uncond` as a second pass. `context_options` are further fields
    of the family's context (Z-Image's cfg_normalization and cfg_truncation)."""
    import torch

    check_flow_size(model, request.width, request.height)
    transformer = model.transformer
    context_class = flow_context_class(model)
    ctx = context_class(
        model=model,
        request=request,
        seed=seed,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(seed),
        emit=emit,
        device=torch.device(transformer.device),
        dtype=model.dtype or transformer.dtype,
        **context_class.guidance_fields(model, guidance, true_cfg),
        cond=cond,
        uncond=uncond,
        loras=tuple(loras),
        apply_loras=apply_loras,
        **(context_options or {}),
    )
    boxes = canvas_boxes if canvas_boxes is not None else CanvasBoxes()

    def step(step_index: int, total: int, preview) -> None:
        boxes.preview = ctx.crop_box or ctx.canvas_box  # the crop is chosen before the first step
        on_step(step_index, total, preview)

    try:
        with torch.no_grad():
            image = run_flow_denoise(ctx, extensions, step)
        boxes.preview = ctx.crop_box or ctx.canvas_box
        boxes.changed = ctx.changed_box or ctx.canvas_box
        return image
    finally:
        for extension in reversed(extensions):
            extension.cleanup(ctx)


def check_flow_size(model: FlowModel, width: int, height: int) -> None:
    cell = model.vae_scale_factor * packing.PATCH
    if width % cell or height % cell:
        raise RequestError(f"The size must be a multiple of {cell} pixels for {model.name} "
                           "(its transformer takes 2x2 patches of latents).")


def run_flow_denoise(ctx: FlowContext, extensions: list[LoopExtension], on_step: StepCallback) -> np.ndarray:
    # 1. source image, in generation space; extensions may crop (inpaint only_masked) or pre-fill it
    ctx.canvas_image = ctx.request.init_image
    for extension in extensions:
        extension.prepare_image(ctx)
    prepare_source_image(ctx)

    # 2. timesteps: the shifted schedule for `steps`, cut to the last `strength` part when there is an image
    prepare_flow_timesteps(ctx)
    if len(ctx.timesteps) == 0:
        return finish_image(ctx, extensions, ctx.source_image.copy())

    # 3. conditioning: the prompts come encoded; the image tokens' positions
    height, width = ctx.latent_size
    ctx.image_ids = packing.image_ids(height, width, ctx.device, ctx.dtype)

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
    total = len(ctx.timesteps)
    for step_index, t in enumerate(ctx.timesteps):
        velocity = predict_noise(ctx, extensions, ctx.latents, t)
        estimate = clean_estimate(ctx, step_index, ctx.latents, velocity)
        latents = ctx.scheduler.step(velocity, t, ctx.latents, return_dict=False)[0]
        for extension in extensions:
            latents = extension.after_step(ctx, step_index, latents)
        ctx.latents = latents
        on_step(step_index, total, estimate)

    # 9. decode
    image = decode_latents(ctx.model, ctx.latents)

    # 10. finish
    return finish_image(ctx, extensions, image)


# ---- 2. timesteps -----------------------------------------------------------------------------


def prepare_flow_timesteps(ctx: FlowContext) -> None:
    """diffusers' FLUX and Z-Image pipelines: shifted sigmas for this many image tokens, then the img2img cut."""
    steps = int(ctx.request.steps)
    height, width = ctx.latent_size
    image_tokens = (height // packing.PATCH) * (width // packing.PATCH)
    scheduler = build_flow_scheduler(ctx.model.scheduler_config, steps, image_tokens, ctx.device,
                                     sigmas=ctx.schedule_sigmas(steps))
    ctx.strength = float(ctx.request.strength) if ctx.init_image is not None else 1.0
    run_start = int(skipped_steps(steps, ctx.strength)) * scheduler.order
    scheduler.set_begin_index(run_start)
    ctx.scheduler = scheduler
    ctx.steps = steps
    ctx.run_start = run_start
    ctx.timesteps = scheduler.timesteps[run_start:]


# ---- 4. image latents ----------------------------------------------------------------------------


# ---- 8. steps ------------------------------------------------------------------------------------


def clean_estimate(ctx: FlowContext, step_index: int, latents, velocity):
    """The step's estimate of the clean image, x0 = x_t - sigma_t * v (readable from step 1 on)."""
    sigma = ctx.scheduler.sigmas[ctx.run_start + step_index].to(velocity.device)
    return latents - sigma * velocity
