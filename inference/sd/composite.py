"""Latent composite: each piece generated on its own for the first part of the steps, then pasted.

The seed's "Latent Composite" (ComfyUI: two samplers, latents composited in between) as one run:

1. Solo phase, the first `composite_step` of the run's steps (at least one step): the background
   (the base prompt alone, without regions) and every piece (`request.pieces`: its own prompt, and
   for an image layer its own picture) follow their own trajectories in lockstep. All of them start
   from the same noise, so they are "the same picture with another prompt", which keeps the seams
   coherent. Their UNet evaluations share batches (chunked, equal token lengths only); each piece
   has its own copy of the scheduler (and the run's noise stream), so multistep samplers keep
   per-trajectory history.
2. Paste: the piece latents replace the background's by the pieces' masks (later pieces on top,
   soft masks blend; averaged to the latent grid).
3. Whole phase, the remaining steps: the pasted latents are denoised as one picture with the base
   prompt — and the regions, when the request has them (attention regions are switched off during
   the solo phase and on from here). The sampler starts afresh at the paste, like the second
   sampler of the two-sampler setup: history of the background trajectory does not apply to
   the pasted latents.

An image piece behaves as an img2img of its picture at the request's `strength`: its latents are
held to the re-noised picture until the step where that img2img would start (as per-pixel
strength does), then denoised with its prompt.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.api import CompositePiece, GenerationRequest, RequestError
from inference.sd.batching import MAX_BATCH, batch_limit, batches_by_length, unet_batch
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.diagnostics import apply_precedence, region_notices
from inference.sd.loop import encode_image, prepare_latents
from inference.sd.masks import cell_mean
from inference.sd.prompt import PromptEmbedding, parse_lora_tags
from inference.sd.region_prompts import base_negative_text, move_embedding
from inference.sd.regions import AttentionCoupleExtension, region_extensions


def composite_extensions(request: GenerationRequest, model) -> list[LoopExtension]:
    """Composite first (its solo phase decides the UNet evaluations), then the request's regions."""
    regions = region_extensions(request, model)
    attention = next((e for e in regions if isinstance(e, AttentionCoupleExtension)), None)
    return [CompositeExtension.from_request(request, attention_regions=attention), *regions]


@dataclass
class UnetInput:
    """One entry of a solo-phase batch: a trajectory's prompt (cond or uncond) and, after the call, its noise."""

    trajectory: Trajectory
    embedding: PromptEmbedding
    noise: Any = None


@dataclass
class Trajectory:
    """The background or one piece during the solo phase."""

    cond: UnetInput | None = None
    uncond: UnetInput | None = None
    latents: Any = None
    scheduler: Any = None
    generator: Any = None
    image_latents: Any = None  # an image piece's picture, encoded
    start: int = 0  # step index from which the trajectory is denoised (image pieces wait for theirs)
    weight: Any = None  # 1 x 1 x h x w paste weight (pieces only)
    model_input: Any = None


class CompositeExtension(LoopExtension):
    def __init__(self, pieces: tuple[CompositePiece, ...], *, composite_step: float = 0.5, base_negative: str = "",
                 clip_skip: int = 1, strength: float = 1.0, attention_regions: AttentionCoupleExtension | None = None,
                 max_batch: int = MAX_BATCH):
        if not pieces:
            raise RequestError("Composite mode needs at least one piece to generate.")
        if isinstance(composite_step, bool) or not isinstance(composite_step, (int, float)) \
                or not math.isfinite(composite_step) or not 0.0 <= composite_step <= 1.0:
            raise RequestError(f"The composite step must be between 0 and 1, not {composite_step!r}.")
        self.pieces = tuple(pieces)
        self.composite_step = float(composite_step)
        self.base_negative = base_negative
        self.clip_skip = int(clip_skip)
        self.strength = float(strength)
        self.attention_regions = attention_regions
        self.max_batch = int(max_batch)
        self.background: Trajectory | None = None
        self.trajectories: list[Trajectory] = []
        self.solo_steps = 0
        self.step_index = 0
        self.fresh_scheduler = None

    @classmethod
    def from_request(cls, request: GenerationRequest, *, attention_regions=None) -> CompositeExtension:
        return cls(request.pieces, composite_step=request.composite_step, base_negative=base_negative_text(request),
                   clip_skip=request.clip_skip, strength=request.strength, attention_regions=attention_regions)

    # ---- setup ----------------------------------------------------------------------------------

    def prepare(self, ctx: DenoiseContext) -> None:
        masks = [self.prepare_mask(ctx, number, piece) for number, piece in enumerate(self.pieces, start=1)]
        visible = apply_precedence(masks)
        for message in region_notices(masks, visible, ctx.model.vae_scale_factor, what="piece",
                                      level_name="the latent grid"):
            ctx.notify(message)
        self.solo_steps = self.prepare_solo_steps(ctx)
        self.fresh_scheduler = copy.deepcopy(ctx.scheduler)  # before any step: no history yet
        start_latents = prepare_latents(ctx)
        self.background = self.prepare_trajectory(ctx, ctx.cond, ctx.uncond, start_latents)
        self.background.scheduler = ctx.scheduler  # the loop steps the background itself
        self.trajectories = [self.background]
        cell = ctx.model.vae_scale_factor
        for piece, mask in zip(self.pieces, visible):
            trajectory = self.prepare_piece(ctx, piece, start_latents)
            trajectory.weight = self.latent_weight(ctx, cell_mean(mask, cell))
            self.trajectories.append(trajectory)
        self.step_index = 0

    def prepare_mask(self, ctx: DenoiseContext, number: int, piece: CompositePiece) -> np.ndarray:
        if not isinstance(piece.prompt, str) or not isinstance(piece.negative, str):
            raise RequestError(f"The prompt and negative of piece {number} must be text.")
        if piece.image is not None:
            image = piece.image
            canvas_shape = np.shape(piece.mask)
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != (*canvas_shape, 3):
                raise RequestError(f"The image of piece {number} must be an HxWx3 8-bit RGB array the size of its mask.")
        return ctx.to_generation_space(np.asarray(piece.mask, dtype=np.float32))

    def prepare_solo_steps(self, ctx: DenoiseContext) -> int:
        """Loop iterations of the solo phase: whole sampler steps, at least one, at most all."""
        order = int(getattr(ctx.scheduler, "order", 1))
        run_steps = max(len(ctx.timesteps) // order, 1)
        solo = min(max(round(self.composite_step * run_steps), 1), run_steps)
        return min(solo * order, len(ctx.timesteps))

    def prepare_trajectory(self, ctx: DenoiseContext, cond: PromptEmbedding, uncond: PromptEmbedding,
                           latents) -> Trajectory:
        import torch

        trajectory = Trajectory(latents=latents.clone(), scheduler=copy.deepcopy(ctx.scheduler),
                                generator=torch.Generator("cpu").manual_seed(ctx.seed))
        trajectory.cond = UnetInput(trajectory, move_embedding(cond, ctx.device))
        if ctx.do_cfg:
            trajectory.uncond = UnetInput(trajectory, move_embedding(uncond, ctx.device))
        return trajectory

    def prepare_piece(self, ctx: DenoiseContext, piece: CompositePiece, start_latents) -> Trajectory:
        prompt = parse_lora_tags(piece.prompt)[0]
        negative = parse_lora_tags(piece.negative)[0] or self.base_negative
        cond, uncond = ctx.encode_prompt_pair(prompt, negative, self.clip_skip)
        trajectory = self.prepare_trajectory(ctx, cond, uncond, start_latents)
        if piece.image is not None:
            image = ctx.to_generation_space(piece.image, is_mask=False)
            trajectory.image_latents = encode_image(ctx.model, image, ctx.device)
            start = ctx.start_steps(np.array([self.strength]))
            trajectory.start = int(start[0])
            trajectory.latents = ctx.scheduler.add_noise(trajectory.image_latents, ctx.noise, ctx.timesteps[:1])
        return trajectory

    def latent_weight(self, ctx: DenoiseContext, weight: np.ndarray):
        import torch

        return torch.from_numpy(weight.astype(np.float32))[None, None].to(ctx.device)

    # ---- solo phase -------------------------------------------------------------------------------

    def predict_noise(self, ctx: DenoiseContext, latents, t):
        if self.step_index >= self.solo_steps:
            return None
        # The loop's own latents are the background's: the scheduler steps them, we only read them.
        self.background.latents = latents
        inputs: list[UnetInput] = []
        for trajectory in self.trajectories:
            trajectory.model_input = trajectory.scheduler.scale_model_input(trajectory.latents, t)
            inputs += [entry for entry in (trajectory.uncond, trajectory.cond) if entry is not None]
        if self.attention_regions is not None and self.attention_regions.bias is not None:
            self.attention_regions.bias.enabled = False
        try:
            for batch in batches_by_length(inputs, batch_limit(ctx, self.max_batch)):
                noise = unet_batch(ctx, [entry.trajectory.model_input for entry in batch],
                                   [entry.embedding for entry in batch], t)
                for entry, prediction in zip(batch, noise):
                    entry.noise = prediction
        finally:
            if self.attention_regions is not None and self.attention_regions.bias is not None:
                self.attention_regions.bias.enabled = True
        return self.guided(ctx, self.background)

    def guided(self, ctx: DenoiseContext, trajectory: Trajectory):
        if trajectory.uncond is None:
            return trajectory.cond.noise
        return ctx.combine_guidance(trajectory.uncond.noise, trajectory.cond.noise)

    def after_step(self, ctx: DenoiseContext, step_index: int, latents):
        if self.step_index >= self.solo_steps:
            return latents
        t = ctx.timesteps[step_index]
        for trajectory in self.trajectories[1:]:
            output = trajectory.scheduler.step(self.guided(ctx, trajectory), t, trajectory.latents,
                                               **step_generator(trajectory))
            trajectory.latents = self.hold_image(ctx, trajectory, step_index, output.prev_sample)
        self.step_index = step_index + 1
        if self.step_index < self.solo_steps:
            return latents
        return self.paste(ctx, latents)

    def hold_image(self, ctx: DenoiseContext, trajectory: Trajectory, step_index: int, latents):
        """An image piece stays on its re-noised picture until its own start step."""
        next_index = step_index + 1
        if trajectory.image_latents is None or trajectory.start < next_index:
            return latents
        t_next = ctx.timesteps[next_index : next_index + 1]
        return ctx.scheduler.add_noise(trajectory.image_latents, ctx.noise, t_next)

    def paste(self, ctx: DenoiseContext, latents):
        # The weights are the pieces' visible parts (precedence applied), so they sum to at most 1.
        pieces = self.trajectories[1:]
        covered = sum(trajectory.weight for trajectory in pieces)
        pasted = latents * (1 - covered)
        for trajectory in pieces:
            pasted = pasted + trajectory.latents.to(latents.dtype) * trajectory.weight
        # The pasted picture starts a new trajectory: a sampler without the background's history.
        scheduler = self.fresh_scheduler
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(ctx.run_start + self.solo_steps)
        ctx.scheduler = scheduler
        for trajectory in self.trajectories:
            trajectory.latents = trajectory.scheduler = trajectory.model_input = None
        return pasted


def step_generator(trajectory: Trajectory) -> dict:
    import inspect

    parameters = inspect.signature(trajectory.scheduler.step).parameters
    return {"generator": trajectory.generator} if "generator" in parameters else {}
