"""Regional prompts, attention method ("attention couple"): masked cross-attention in ONE UNet pass.

How a step sees the regions:

- The base prompt and every region's prompt are encoded once per run and their token sequences are
  concatenated along the sequence axis, base first: [base | region 1 | ... | region n]. The
  unconditional (CFG) branch has the same layout with the negatives: the base negative, then each
  region's own negative (a region without one uses the base negative).
- Every cross-attention layer of the UNet (`attn2`) gets a `RegionAttnProcessor` that adds a bias to
  the attention scores. Base tokens get 0 everywhere. Region i's tokens get log(w_i(q) * strength_i)
  at query pixel q, where w_i is the region's mask after precedence (later regions lie on top, see
  `inference.sd.diagnostics.apply_precedence`), max-pooled down to that layer's resolution so that
  small regions survive at the coarse levels. Consequences:
  - outside a region the bias is -inf: its tokens get exactly zero attention there;
  - soft (feathered) masks act as log-weights: exp(score + log w) = w * exp(score), so a pixel at
    mask 0.5 gives the region's tokens half their unnormalised attention weight — a smooth blend;
  - strength multiplies the same way: strength 2 doubles the region's attention weight relative
    to the base prompt, 0 mutes the region.
- Self-attention is untouched, and the UNet still runs once per step on the [uncond, cond] batch,
  so a regional generation costs about what a plain one does (the key sequence is longer).
- SDXL: the pooled text embedding and the time ids come from the base prompt, as in a plain run.

A request without regions builds no extension at all: the plain path, no processor installed.
`region_extensions` is the mode provider (inference/sd/modes.py); it picks this method or latent
couple (inference/sd/latent_couple.py) from `request.region_method`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.api import GenerationRequest, InferenceError, RegionSpec, RequestError
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.diagnostics import apply_precedence, deepest_attention_cell, region_notices
from inference.sd.prompt import PromptEmbedding, count_chunks, encode_prompt, parse_lora_tags

MAX_REGION_STRENGTH = 2.0


def region_extensions(request: GenerationRequest, model) -> list[LoopExtension]:
    """The extensions that carry `request.regions` (none when there are no regions)."""
    if not request.regions:
        return []
    validate_regions(request.regions)
    if request.region_method == "latent":
        from inference.sd.latent_couple import LatentCoupleExtension

        return [LatentCoupleExtension.from_request(request)]
    return [AttentionCoupleExtension.from_request(request)]


def validate_regions(regions: tuple[RegionSpec, ...]) -> None:
    """Raise RequestError for the first region whose prompt or strength is unusable."""
    for number, region in enumerate(regions, start=1):
        if not isinstance(region.prompt, str) or not isinstance(region.negative, str):
            raise RequestError(f"The prompt and negative of region {number} must be text.")
        strength = region.strength
        if (not isinstance(strength, (int, float, np.integer, np.floating)) or isinstance(strength, bool)
                or not math.isfinite(strength) or not 0.0 <= strength <= MAX_REGION_STRENGTH):
            raise RequestError(
                f"The strength of region {number} must be between 0 and {MAX_REGION_STRENGTH:g}, not {strength!r}."
            )


# ---- prompts ------------------------------------------------------------------------------------


@dataclass
class RegionPrompt:
    """One region's conditioning: the prompt pair encoded to a common chunk count, and its LoRAs."""

    cond: PromptEmbedding
    uncond: PromptEmbedding
    loras: tuple  # LoraSpec: the region's list plus <lora:...> tags from its prompt and negative


def prepare_region_texts(region: RegionSpec, base_negative: str) -> tuple[str, str, tuple]:
    """Region prompt and negative with LoRA tags taken out; an empty negative falls back to the base one."""
    prompt, prompt_loras = parse_lora_tags(region.prompt)
    negative, negative_loras = parse_lora_tags(region.negative)
    if not negative:
        negative = base_negative
    return prompt, negative, tuple(region.loras) + tuple(prompt_loras) + tuple(negative_loras)


def encode_region_prompt(model, region: RegionSpec, base_negative: str, clip_skip: int, device,
                         cache: dict | None = None) -> RegionPrompt:
    """Like encode_prompt_pair for the region's texts. `cache` (one per run) encodes each distinct
    text once: regions without their own negative all share the base one (8 regions were 16
    text-encoder passes, 7 of them the same negative)."""
    prompt, negative, loras = prepare_region_texts(region, base_negative)
    chunks = max(count_chunks(model, prompt), count_chunks(model, negative))
    cache = {} if cache is None else cache

    def encoded(text: str) -> PromptEmbedding:
        key = (text, chunks, clip_skip)
        if key not in cache:
            cache[key] = move_embedding(encode_prompt(model, text, clip_skip, min_chunks=chunks), device)
        return cache[key]

    return RegionPrompt(cond=encoded(prompt), uncond=encoded(negative), loras=loras)


def move_embedding(embedding: PromptEmbedding, device) -> PromptEmbedding:
    pooled = embedding.pooled.to(device) if embedding.pooled is not None else None
    return PromptEmbedding(hidden_states=embedding.hidden_states.to(device), pooled=pooled)


def base_negative_text(request: GenerationRequest) -> str:
    return parse_lora_tags(request.negative)[0]


# ---- masks at the attention resolutions -----------------------------------------------------------


def attention_level_sizes(latent_height: int, latent_width: int, levels: int = 8) -> list[tuple[int, int]]:
    """(h, w) of the feature maps at each UNet level: diffusers' stride-2 downsamplers round up."""
    sizes = [(latent_height, latent_width)]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        if h == 1 and w == 1:
            break
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def max_pool_to(mask: np.ndarray, factor: int, height: int, width: int) -> np.ndarray:
    """Max over factor x factor pixel blocks, padding with zeros up to height*factor x width*factor."""
    padded = np.zeros((height * factor, width * factor), dtype=np.float32)
    h, w = min(mask.shape[0], padded.shape[0]), min(mask.shape[1], padded.shape[1])
    padded[:h, :w] = mask[:h, :w]
    return padded.reshape(height, factor, width, factor).max(axis=(1, 3))


class RegionAttentionBias:
    """The additive attention bias for every attention resolution, built on first use and cached.

    `masks` are the regions' effective masks (after precedence) at the generation's pixel size,
    `strengths` their attention weights, `segment_lengths` the token counts of [base, region 1, ...].
    """

    def __init__(self, masks: list[np.ndarray], strengths: list[float], segment_lengths: list[int],
                 latent_size: tuple[int, int], vae_scale_factor: int):
        if len(segment_lengths) != len(masks) + 1:
            raise ValueError("segment_lengths lists the base prompt and then one entry per region")
        self.masks = masks
        self.strengths = [float(s) for s in strengths]
        self.segment_lengths = [int(n) for n in segment_lengths]
        self.key_length = sum(self.segment_lengths)
        self.vae_scale_factor = int(vae_scale_factor)
        self.levels = attention_level_sizes(*latent_size)
        self.enabled = True  # composite turns the regions off while its pieces run on their own
        self._cache: dict[tuple, Any] = {}

    def level_of(self, query_length: int) -> int:
        for level, (h, w) in enumerate(self.levels):
            if h * w == query_length:
                return level
        sizes = ", ".join(f"{w}x{h}" for h, w in self.levels)
        raise InferenceError(
            f"Regional attention met a layer with {query_length} positions, which matches none of the"
            f" UNet's resolutions ({sizes})."
        )

    def log_weights(self, query_length: int) -> np.ndarray:
        """Query x (1 + regions) matrix of log-weights: column 0 (base) is 0, -inf where a region is absent."""
        level = self.level_of(query_length)
        h, w = self.levels[level]
        factor = self.vae_scale_factor * 2**level
        columns = [np.zeros(h * w, dtype=np.float64)]
        for mask, strength in zip(self.masks, self.strengths):
            weight = max_pool_to(mask, factor, h, w).reshape(-1).astype(np.float64) * strength
            with np.errstate(divide="ignore"):
                columns.append(np.where(weight > 0, np.log(np.maximum(weight, 1e-300)), -math.inf))
        return np.stack(columns, axis=1)

    def bias_for(self, query_length: int, dtype, device):
        """1 x 1 x Q x K bias for scaled_dot_product_attention (broadcast over batch and heads)."""
        key = (query_length, str(dtype), str(device))
        bias = self._cache.get(key)
        if bias is None:
            import torch

            expanded = np.repeat(self.log_weights(query_length), self.segment_lengths, axis=1)
            bias = torch.from_numpy(expanded.astype(np.float32))[None, None].to(device=device, dtype=dtype)
            self._cache[key] = bias
        return bias


# ---- the attention processor --------------------------------------------------------------------


class RegionAttnProcessor:
    """diffusers' AttnProcessor2_0 for cross-attention, with the region bias added to the scores."""

    def __init__(self, bias: RegionAttentionBias):
        self.bias = bias

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        import torch.nn.functional as F

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, query_length, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        key_length = context.shape[1]

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key = attn.to_k(context)
        value = attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        if self.bias.enabled and encoder_hidden_states is not None:
            if key_length != self.bias.key_length:
                raise InferenceError(
                    f"Regional attention expected {self.bias.key_length} prompt tokens but got {key_length}."
                )
            region_bias = self.bias.bias_for(query_length, query.dtype, query.device)
            attention_mask = region_bias if attention_mask is None else attention_mask + region_bias

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False, scale=attn.scale
        )
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def cross_attention_modules(unet) -> list[tuple[str, Any]]:
    """The UNet's cross-attention layers by module name: the transformer blocks' attn2 (and attn1 in
    blocks built with only_cross_attention). Self-attention layers are not among them."""
    return [
        (name, module)
        for name, module in unet.named_modules()
        if getattr(module, "is_cross_attention", False) is True and hasattr(module, "set_processor")
    ]


class InstalledProcessors:
    """Puts a processor on every cross-attention layer and remembers what was there, to restore it."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, Any]] = []

    def install(self, unet, processor) -> None:
        modules = cross_attention_modules(unet)
        if not modules:
            raise InferenceError("This UNet has no cross-attention layers, so regional prompts cannot steer it.")
        for _, module in modules:
            self.saved.append((module, module.processor))
            module.set_processor(processor)

    def restore(self) -> None:
        while self.saved:
            module, original = self.saved.pop()
            module.set_processor(original)


# ---- the loop extension ---------------------------------------------------------------------------


class AttentionCoupleExtension(LoopExtension):
    """Regions as masked cross-attention over concatenated prompts (one UNet pass per step)."""

    def __init__(self, regions: tuple[RegionSpec, ...], *, base_negative: str = "", clip_skip: int = 1):
        self.regions = tuple(regions)
        self.base_negative = base_negative
        self.clip_skip = int(clip_skip)
        self.prompts: list[RegionPrompt] = []
        self.bias: RegionAttentionBias | None = None
        self.processors = InstalledProcessors()

    @classmethod
    def from_request(cls, request: GenerationRequest) -> AttentionCoupleExtension:
        return cls(request.regions, base_negative=base_negative_text(request), clip_skip=request.clip_skip)

    def prepare(self, ctx: DenoiseContext) -> None:
        import torch

        masks = [ctx.to_generation_space(np.asarray(region.mask, dtype=np.float32)) for region in self.regions]
        effective = apply_precedence(masks)
        self.report_problems(ctx, masks, effective)
        encoded: dict = {}
        self.prompts = [
            encode_region_prompt(ctx.model, region, self.base_negative, self.clip_skip, ctx.device, encoded)
            for region in self.regions
        ]
        cond = torch.cat([ctx.cond.hidden_states.to(ctx.device)] + [p.cond.hidden_states for p in self.prompts], dim=1)
        uncond = torch.cat(
            [ctx.uncond.hidden_states.to(ctx.device)] + [p.uncond.hidden_states for p in self.prompts], dim=1
        )
        ctx.encoder_hidden_states = torch.cat([uncond, cond]) if ctx.do_cfg else cond
        segment_lengths = [ctx.cond.hidden_states.shape[1]] + [p.cond.hidden_states.shape[1] for p in self.prompts]
        self.bias = RegionAttentionBias(
            effective,
            [region.strength for region in self.regions],
            segment_lengths,
            ctx.latent_size,
            ctx.model.vae_scale_factor,
        )
        self.processors.install(ctx.model.unet, RegionAttnProcessor(self.bias))

    def report_problems(self, ctx: DenoiseContext, masks, effective) -> None:
        cell = deepest_attention_cell(ctx.model.unet, ctx.model.vae_scale_factor)
        for message in region_notices(masks, effective, cell):
            ctx.notify(message)
        for number, region in enumerate(self.regions, start=1):
            if prepare_region_texts(region, self.base_negative)[2]:
                ctx.notify(
                    f"Region {number} has LoRAs, which the attention method cannot apply to one region;"
                    " use the latent region method for per-region LoRAs."
                )

    def cleanup(self, ctx: DenoiseContext) -> None:
        self.processors.restore()
