"""Regional prompts, latent method ("latent couple"): one UNet evaluation per prompt, mixed by masks.

Every step evaluates the UNet once for the base prompt and once for each region's prompt, each on
the same latents, and averages the (CFG-guided) noise predictions per latent pixel with normalised
weights:

    w_base(p)   = BASE_WEIGHT + (1 - coverage(p))     the base fills what no region covers
    w_region(p) = visible_i(p) * strength_i           visible_i: the mask after precedence
    eps(p)      = sum_k w_k(p) * eps_k(p) / sum_k w_k(p)

`visible_i` is the region's mask after precedence (later regions lie on top, see
`inference.sd.diagnostics.apply_precedence`) averaged over each latent pixel's 8x8 block, so
feathered masks blend; the visible parts of all regions sum to at most 1 (= coverage). With
BASE_WEIGHT 0.25 a fully covered pixel takes 80 % of its prediction from its region and 20 % from
the base prompt, as A1111's Latent Couple does by default; uncovered pixels are pure base prompt.

LoRAs: each region may bring its own LoRAs (RegionSpec.loras and <lora:...> tags in its prompt),
which apply on top of the run's LoRAs for that region's evaluations only — and its prompt is encoded
with them, as text-encoder LoRAs change the embedding. LoRAs are weights, not inputs, so evaluations
under different LoRA sets cannot share a UNet batch: the evaluations are grouped by LoRA set, each
group runs in batches of at most `max_batch` UNet inputs (fewer for large pictures, to cap memory:
`batch_limit`), and the run's own LoRA set goes last, so the model is back in its run state after
every step. Identical evaluations (the same prompt under the same LoRAs, typically the shared
negative prompt) run once.
Cost: with a shared negative, N regions take (N + 2) UNet inputs per step against 2 for a plain
run: about (N + 1) / 2 times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.api import GenerationRequest, RegionSpec, RequestError
from inference.sd.batching import MAX_BATCH, Evaluation, batch_limit, batches_by_length, unet_batch
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.diagnostics import apply_precedence, region_notices
from inference.sd.masks import cell_mean
from inference.sd.prompt import PromptEmbedding
from inference.sd.region_prompts import base_negative_text, move_embedding, prepare_region_texts

BASE_WEIGHT = 0.25  # weight of the base prompt's prediction where a region covers the pixel fully


@dataclass
class Term:
    """One prompt of the mix: its cond/uncond evaluations and its per-latent-pixel weight."""

    cond: Evaluation
    uncond: Evaluation | None  # None without CFG
    weight: Any = None  # 1 x 1 x h x w tensor, normalised over all terms


@dataclass
class LoraGroup:
    loras: tuple
    evaluations: list[Evaluation] = field(default_factory=list)


class LatentCoupleExtension(LoopExtension):
    """Regions as separate UNet evaluations whose noise predictions are mixed by the region masks."""

    def __init__(self, regions: tuple[RegionSpec, ...], *, base_negative: str = "", clip_skip: int = 1,
                 base_weight: float = BASE_WEIGHT, max_batch: int = MAX_BATCH):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.regions = tuple(regions)
        self.base_negative = base_negative
        self.clip_skip = int(clip_skip)
        self.base_weight = float(base_weight)
        self.max_batch = int(max_batch)
        self.terms: list[Term] = []
        self.groups: list[LoraGroup] = []
        self.known: dict[tuple, list[Evaluation]] = {}  # LoRA set -> its distinct evaluations
        self.run_loras: tuple = ()  # the LoRAs the engine applied for the whole run
        self.current_loras: tuple = ()  # what is on the model right now
        self.loras_changed = False

    @classmethod
    def from_request(cls, request: GenerationRequest) -> LatentCoupleExtension:
        return cls(request.regions, base_negative=base_negative_text(request), clip_skip=request.clip_skip)

    # ---- setup --------------------------------------------------------------------------------

    def prepare(self, ctx: DenoiseContext) -> None:
        masks = [ctx.to_generation_space(np.asarray(region.mask, dtype=np.float32)) for region in self.regions]
        visible = apply_precedence(masks)
        for message in region_notices(masks, visible, ctx.model.vae_scale_factor, level_name="the latent grid"):
            ctx.notify(message)
        self.run_loras = self.current_loras = tuple(ctx.loras)
        self.known = {}
        self.terms = [self.prepare_base_term(ctx)]
        self.terms += [self.prepare_region_term(ctx, region) for region in self.regions]
        self.use_loras(ctx, self.run_loras)
        self.prepare_weights(ctx, visible)
        self.prepare_groups()

    def evaluation(self, loras: tuple, embedding: PromptEmbedding) -> Evaluation:
        """The Evaluation for this embedding under these LoRAs, shared when an equal one exists."""
        import torch

        for candidate in self.known.get(loras, []):
            same_shape = candidate.embedding.hidden_states.shape == embedding.hidden_states.shape
            if same_shape and torch.equal(candidate.embedding.hidden_states, embedding.hidden_states):
                return candidate
        created = Evaluation(loras=loras, embedding=embedding)
        self.known.setdefault(loras, []).append(created)
        return created

    def prepare_base_term(self, ctx: DenoiseContext) -> Term:
        cond = self.evaluation(self.run_loras, move_embedding(ctx.cond, ctx.device))
        uncond = self.evaluation(self.run_loras, move_embedding(ctx.uncond, ctx.device)) if ctx.do_cfg else None
        return Term(cond=cond, uncond=uncond)

    def prepare_region_term(self, ctx: DenoiseContext, region: RegionSpec) -> Term:
        prompt, negative, region_loras = prepare_region_texts(region, self.base_negative)
        loras = self.run_loras + tuple(region_loras)
        if region_loras and ctx.apply_loras is None:
            raise RequestError("Per-region LoRAs need a LoRA loader, which this run was not given.")
        # Text-encoder LoRAs change the embedding, so the region's prompt is encoded under its own set.
        self.use_loras(ctx, loras)
        cond, uncond = ctx.encode_prompt_pair(prompt, negative, self.clip_skip)
        cond_evaluation = self.evaluation(loras, move_embedding(cond, ctx.device))
        uncond_evaluation = None
        if ctx.do_cfg:
            uncond_evaluation = self.evaluation(loras, move_embedding(uncond, ctx.device))
        return Term(cond=cond_evaluation, uncond=uncond_evaluation)

    def prepare_weights(self, ctx: DenoiseContext, visible: list[np.ndarray]) -> None:
        import torch

        cell = ctx.model.vae_scale_factor
        region_weights = [cell_mean(mask, cell) * float(region.strength) for mask, region in zip(visible, self.regions)]
        coverage = np.clip(sum(cell_mean(mask, cell) for mask in visible), 0.0, 1.0)
        weights = [self.base_weight + (1.0 - coverage)] + region_weights
        total = np.sum(weights, axis=0)
        for term, weight in zip(self.terms, weights):
            normalised = np.where(total > 0, weight / np.maximum(total, 1e-12), 0.0).astype(np.float32)
            term.weight = torch.from_numpy(normalised)[None, None].to(ctx.device)

    def prepare_groups(self) -> None:
        """Group the distinct evaluations by LoRA set, with the run's own set last."""
        ordered = sorted(self.known, key=lambda loras: loras == self.run_loras)
        self.groups = [LoraGroup(loras=loras, evaluations=self.known[loras]) for loras in ordered]

    def use_loras(self, ctx: DenoiseContext, loras: tuple) -> None:
        if ctx.apply_loras is None or loras == self.current_loras:
            return
        ctx.apply_loras(list(loras))
        self.current_loras = loras
        self.loras_changed = True

    # ---- each step ------------------------------------------------------------------------------

    def predict_noise(self, ctx: DenoiseContext, latents, t):
        latent_input = ctx.scheduler.scale_model_input(latents, t)
        for group in self.groups:
            self.use_loras(ctx, group.loras)
            for batch in batches_by_length(group.evaluations, batch_limit(ctx, self.max_batch)):
                self.evaluate(ctx, batch, latent_input, t)
        mixed = None
        for term in self.terms:
            noise = term.cond.noise
            if term.uncond is not None:
                noise = ctx.combine_guidance(term.uncond.noise, term.cond.noise)
            contribution = term.weight * noise
            mixed = contribution if mixed is None else mixed + contribution
        for group in self.groups:
            for evaluation in group.evaluations:
                evaluation.noise = None
        return mixed

    def evaluate(self, ctx: DenoiseContext, batch: list[Evaluation], latent_input, t) -> None:
        embeddings = [evaluation.embedding for evaluation in batch]
        noise = unet_batch(ctx, [latent_input] * len(batch), embeddings, t)
        for evaluation, prediction in zip(batch, noise):
            evaluation.noise = prediction

    def cleanup(self, ctx: DenoiseContext) -> None:
        if self.loras_changed and ctx.apply_loras is not None:
            ctx.apply_loras(list(self.run_loras))
            self.current_loras = self.run_loras
