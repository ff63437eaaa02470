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
  so a regional generation costs about what a plain one does. Three things keep the extra small:
  all region texts are encoded in one batched text-encoder call (texts equal to the run's own
  prompt or negative reuse its encoding); the queries of each resolution are split by which regions
  cover them and each group attends over the base and its own regions' tokens only (exact: absent
  regions get zero attention anyway), so a query pays for ~2 prompts' keys rather than n+1; and the
  keys and values of the prompt tokens, the same at every step, are projected once per run.
  Segments that repeat the base prompt's tokens (a region without its own negative, in the
  unconditional row) are folded into the base: attending over a copy of the base keys with weight w
  is attending over the base keys with weight 1 + w, so the copy is never attended (exact; a
  full-canvas region carrying the base prompt then computes exactly the plain attention).
  (CPU benchmark, mid-size SD1.5 UNet, 256 px, 4 steps: 4 regions ~1.08x a plain generation.)
- SDXL: the pooled text embedding and the time ids come from the base prompt, as in a plain run.

A request without regions builds no extension at all: the plain path, no processor installed.
`region_extensions` is the mode provider (inference/sd/modes.py); it picks this method or latent
couple (inference/sd/latent_couple.py) from `request.region_method`. What both methods share of the
regions' prompts is in inference/sd/region_prompts.py.

(~550 lines: the attention bias, the query grouping and the processor are one method's exact
arithmetic, and the tests reach into them here; region_prompts.py already holds what is shared.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.api import GenerationRequest, InferenceError, RegionSpec
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.diagnostics import apply_precedence, deepest_attention_cell, region_notices
from inference.sd.latent_couple import LatentCoupleExtension
from inference.sd.prompt import PromptEmbedding
from inference.sd.region_prompts import (
    RegionPrompt,
    base_negative_text,
    base_prompt_text,
    encode_region_prompts,
    prepare_region_texts,
    seed_prompt_cache,
    validate_regions,
)


def region_extensions(request: GenerationRequest, model) -> list[LoopExtension]:
    """The extensions that carry `request.regions` (none when there are no regions)."""
    if not request.regions:
        return []
    validate_regions(request.regions)
    if request.region_method == "latent":
        return [LatentCoupleExtension.from_request(request)]
    return [AttentionCoupleExtension.from_request(request)]


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

    `folded` marks regions whose tokens are the base prompt's own (a region without its own negative,
    in the unconditional row; a region repeating the base prompt). Attending over a copy of the base
    keys with weight w is attending over the base keys with weight 1 + w, so such a region's
    segment is never attended: its weight moves onto the base column as log(1 + w) — exact, and the
    copy costs nothing. `halves` (unconditional, conditional), when set, are the biases of the two
    rows of a CFG batch where they fold differently; this bias itself then folds only what both fold.
    """

    def __init__(self, masks: list[np.ndarray], strengths: list[float], segment_lengths: list[int],
                 latent_size: tuple[int, int], vae_scale_factor: int, folded: list[bool] | None = None):
        if len(segment_lengths) != len(masks) + 1:
            raise ValueError("segment_lengths lists the base prompt and then one entry per region")
        self.masks = masks
        self.folded = [bool(f) for f in folded] if folded is not None else [False] * len(masks)
        self.halves: tuple[RegionAttentionBias, RegionAttentionBias] | None = None
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
        """Query x (1 + regions) matrix of log-weights: -inf where a region is absent; column 0 (base)
        is 0, or log(1 + w) of the folded regions covering the query."""
        level = self.level_of(query_length)
        h, w = self.levels[level]
        factor = self.vae_scale_factor * 2**level
        folded_weight = np.zeros(h * w, dtype=np.float64)
        columns = []
        for mask, strength, folded in zip(self.masks, self.strengths, self.folded):
            weight = max_pool_to(mask, factor, h, w).reshape(-1).astype(np.float64) * strength
            if folded:
                folded_weight += weight
                columns.append(np.full(h * w, -math.inf))
                continue
            with np.errstate(divide="ignore"):
                columns.append(np.where(weight > 0, np.log(np.maximum(weight, 1e-300)), -math.inf))
        return np.stack([np.log1p(folded_weight)] + columns, axis=1)

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

    def layout_for(self, query_length: int, device) -> QueryLayout:
        """The queries of this resolution split by which regions cover them (see `QueryLayout`), cached."""
        key = ("layout", query_length, str(device))
        layout = self._cache.get(key)
        if layout is None:
            layout = build_query_layout(self.log_weights(query_length), self.segment_lengths, device)
            self._cache[key] = layout
        return layout


@dataclass
class QueryGroup:
    """Query positions that see the same segments: the base prompt and the regions covering them.

    `queries` are the positions (numpy), rows `start:stop` of the layout's sorted queries; `keys` a
    slice or an index tensor into the key sequence; `log_weights` the group's block of the full bias
    (None when it is all zero: hard masks at strength 1 need no bias at all), cast to the query's
    dtype on first use.
    """

    queries: np.ndarray
    start: int
    stop: int
    keys: Any
    log_weights: Any
    _bias: dict

    def bias(self, dtype):
        if self.log_weights is None:
            return None
        cached = self._bias.get(dtype)
        if cached is None:
            cached = self._bias[dtype] = self.log_weights.to(dtype)
        return cached


@dataclass
class QueryLayout:
    """How one attention resolution runs its queries.

    A query's attention over the keys of a region absent there is exactly zero (bias -inf), so each
    group of queries attends over its own segments only: the same result as the full bias, at the
    cost of (base + covering regions) keys per query instead of (base + every region). The queries
    are gathered once into group order (`order`), each group is a contiguous slice, and the results
    go back to image order with `restore`. A layout of one group (`order` None) is every query over
    every segment present somewhere, with the bias: chosen where splitting would not pay (coarse
    levels, many overlapping soft masks).
    """

    groups: list[QueryGroup]
    order: Any = None  # LongTensor: sorted position -> query position
    restore: Any = None  # LongTensor: query position -> sorted position


# Fixed cost of one attention call, in query-key pairs (kernel launch, gathers): groups smaller than
# this are not worth their own call.
GROUP_OVERHEAD_PAIRS = 16384


def build_query_layout(log_weights: np.ndarray, segment_lengths: list[int], device) -> QueryLayout:
    import torch

    lengths = np.asarray(segment_lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    query_length = log_weights.shape[0]
    present = np.isfinite(log_weights)
    present[:, 0] = True
    signatures, inverse = np.unique(present, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(signatures))
    split_cost = float(np.sum(counts * (signatures @ lengths)) + GROUP_OVERHEAD_PAIRS * len(signatures))
    whole_cost = query_length * int(lengths[present.any(axis=0)].sum()) + GROUP_OVERHEAD_PAIRS
    if len(signatures) > 1 and split_cost >= whole_cost:
        # One group over every segment present somewhere (a region folded or absent everywhere is not).
        signatures, inverse = present.any(axis=0, keepdims=True), np.zeros(query_length, dtype=int)

    groups, order, start = [], [], 0
    for index, signature in enumerate(signatures):
        rows = np.flatnonzero(inverse == index)
        segments = np.flatnonzero(signature)
        # Softmax ignores a constant per query: measured from the base column, a group of the base
        # prompt alone (or of regions at the base's weight) needs no bias at all.
        block = log_weights[np.ix_(rows, segments)] - log_weights[rows, :1]
        block = np.repeat(block, lengths[segments], axis=1)
        keys = np.concatenate([np.arange(starts[i], starts[i] + lengths[i]) for i in segments])
        if np.array_equal(keys, np.arange(len(keys))):
            keys = slice(0, len(keys))
        else:
            keys = torch.from_numpy(keys).to(device)
        weights = None
        if np.any(block != 0):
            weights = torch.from_numpy(block.astype(np.float32))[None, None].to(device)
        groups.append(QueryGroup(queries=rows, start=start, stop=start + len(rows), keys=keys,
                                 log_weights=weights, _bias={}))
        order.append(rows)
        start += len(rows)
    if len(groups) == 1:
        return QueryLayout(groups)
    order = np.concatenate(order)
    restore = np.empty_like(order)
    restore[order] = np.arange(len(order))
    return QueryLayout(groups, torch.from_numpy(order).to(device), torch.from_numpy(restore).to(device))


# ---- the attention processor --------------------------------------------------------------------


# Keys and values of the prompt tokens are the same at every step; the processor keeps them up to this
# many bytes per run (SD1.5 with 4 regions: ~80 MB in float32; SDXL: ~260 MB in float16).
KV_CACHE_BYTES = 512 * 2**20


def nbytes(*tensors) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


class RegionAttnProcessor:
    """diffusers' AttnProcessor2_0 for cross-attention, with the regions applied to the scores.

    It costs little more than plain cross-attention: each query group (the queries covered by the
    same regions, see `QueryLayout`) attends over its own segments only, segments repeating the base
    tokens are folded into it (see `RegionAttentionBias`), and the keys and values of the prompt
    tokens, the same at every step, are projected once per run.
    """

    def __init__(self, bias: RegionAttentionBias, cache_bytes: int = KV_CACHE_BYTES):
        self.bias = bias
        self.cache_bytes = int(cache_bytes)
        self._kv: dict[int, tuple] = {}  # id(layer) -> (prompt tensor, its version, key, value, {group: (k, v)})
        self._kv_bytes = 0

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
        regional = self.bias.enabled and encoder_hidden_states is not None
        key, value, cached = self.keys_values(attn, context, encoder_hidden_states is not None, cacheable=regional)
        inner_dim = query.shape[-1]
        if regional and key_length != self.bias.key_length:
            raise InferenceError(
                f"Regional attention expected {self.bias.key_length} prompt tokens but got {key_length}."
            )
        if regional and attention_mask is None:
            hidden_states = self.grouped_attention(attn, query, key, value, cached)
        else:
            if regional:
                attention_mask = attention_mask + self.bias.bias_for(query_length, query.dtype, query.device)
            hidden_states = F.scaled_dot_product_attention(
                self.heads_of(attn, query), key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
                scale=attn.scale,
            )
            hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, inner_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    @staticmethod
    def heads_of(attn, query):
        """B x L x inner -> B x heads x L x head_dim (with the layer's query norm, if any)."""
        batch_size, length, inner_dim = query.shape
        query = query.view(batch_size, length, attn.heads, inner_dim // attn.heads).transpose(1, 2)
        return attn.norm_q(query) if attn.norm_q is not None else query

    def keys_values(self, attn, context, cross: bool, cacheable: bool):
        """Keys and values as B x heads x K x head_dim, and the layer's per-group cache (or None).

        With `cacheable` (the regional prompt tensor, the same object at every step) they are projected
        once per run: one entry per layer, replaced when the layer meets another prompt tensor, all
        entries within `cache_bytes`."""
        import torch

        entry = self._kv.get(id(attn)) if cacheable else None
        if entry is not None:
            if entry[0] is context and entry[1] == context._version:
                return entry[2], entry[3], entry[4]
            self.forget(id(attn))
        source = attn.norm_encoder_hidden_states(context) if cross and attn.norm_cross else context
        batch_size = context.shape[0]
        key = attn.to_k(source)
        value = attn.to_v(source)
        head_dim = key.shape[-1] // attn.heads
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        groups = None
        if cacheable and not torch.is_grad_enabled() and self.reserve(key, value):
            groups = {}
            self._kv[id(attn)] = (context, context._version, key, value, groups)
        return key, value, groups

    def forget(self, layer: int) -> None:
        _, _, key, value, groups = self._kv.pop(layer)
        self._kv_bytes -= nbytes(key, value, *(tensor for pair in groups.values() for tensor in pair))

    def reserve(self, *tensors) -> bool:
        size = nbytes(*tensors)
        if self._kv_bytes + size > self.cache_bytes:
            return False
        self._kv_bytes += size
        return True

    def group_keys_values(self, group: QueryGroup, index: tuple, key, value, cached: dict | None):
        if isinstance(group.keys, slice):
            return key[:, :, group.keys], value[:, :, group.keys]
        pair = cached.get(index) if cached is not None else None
        if pair is None:
            pair = key.index_select(2, group.keys), value.index_select(2, group.keys)
            if cached is not None and self.reserve(*pair):
                cached[index] = pair
        return pair

    def grouped_attention(self, attn, query, key, value, cached: dict | None):
        """Attention of each query group over its own segments; returns B x Q x inner like the plain path.
        A CFG batch whose two rows fold different regions (`RegionAttentionBias.halves`) runs row by row."""
        import torch

        halves = self.bias.halves
        if halves is None or query.shape[0] != 2:
            return self.attend(attn, query, key, value, self.bias, cached, "both")
        return torch.cat([
            self.attend(attn, query[row : row + 1], key[row : row + 1], value[row : row + 1], half, cached, row)
            for row, half in enumerate(halves)
        ])

    def attend(self, attn, query, key, value, bias: RegionAttentionBias, cached: dict | None, tag):
        import torch
        import torch.nn.functional as F

        batch_size, query_length, inner_dim = query.shape
        layout = bias.layout_for(query_length, query.device)
        if layout.order is not None:
            query = query.index_select(1, layout.order)
        results = []
        for index, group in enumerate(layout.groups):
            group_key, group_value = self.group_keys_values(group, (tag, query_length, index), key, value, cached)
            result = F.scaled_dot_product_attention(
                self.heads_of(attn, query[:, group.start : group.stop]), group_key, group_value,
                attn_mask=group.bias(query.dtype), dropout_p=0.0, is_causal=False, scale=attn.scale,
            )
            results.append(result.transpose(1, 2).reshape(batch_size, -1, inner_dim))
        if layout.order is None:
            return results[0]
        return torch.cat(results, dim=1).index_select(1, layout.restore)

    def clear(self) -> None:
        self._kv.clear()
        self._kv_bytes = 0


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


def copies_of(base: PromptEmbedding, embeddings: list[PromptEmbedding]) -> list[bool]:
    """Which embeddings carry exactly the base prompt's tokens (those segments fold into the base)."""
    import torch

    reference = base.hidden_states
    return [
        embedding is base or (
            tuple(embedding.hidden_states.shape) == tuple(reference.shape)
            and torch.equal(embedding.hidden_states, reference.to(embedding.hidden_states.device))
        )
        for embedding in embeddings
    ]


class AttentionCoupleExtension(LoopExtension):
    """Regions as masked cross-attention over concatenated prompts (one UNet pass per step)."""

    def __init__(self, regions: tuple[RegionSpec, ...], *, base_negative: str = "", clip_skip: int = 1,
                 base_prompt: str | None = None):
        self.regions = tuple(regions)
        self.base_negative = base_negative
        self.base_prompt = base_prompt  # the text ctx.cond encodes, when known (lets regions reuse it)
        self.clip_skip = int(clip_skip)
        self.prompts: list[RegionPrompt] = []
        self.bias: RegionAttentionBias | None = None
        self.processor: RegionAttnProcessor | None = None
        self.processors = InstalledProcessors()

    @classmethod
    def from_request(cls, request: GenerationRequest) -> AttentionCoupleExtension:
        return cls(request.regions, base_negative=base_negative_text(request), clip_skip=request.clip_skip,
                   base_prompt=base_prompt_text(request))

    def prepare(self, ctx: DenoiseContext) -> None:
        import torch

        masks = [ctx.to_generation_space(np.asarray(region.mask, dtype=np.float32)) for region in self.regions]
        effective = apply_precedence(masks)
        self.report_problems(ctx, masks, effective)
        encoded: dict = {}
        if self.base_prompt is not None:
            for text, embedding in ((self.base_prompt, ctx.cond), (self.base_negative, ctx.uncond)):
                if embedding is not None:
                    seed_prompt_cache(encoded, text, embedding, self.clip_skip, ctx.device)
        self.prompts = encode_region_prompts(
            ctx.model, self.regions, self.base_negative, self.clip_skip, ctx.device, encoded
        )
        cond = torch.cat([ctx.cond.hidden_states.to(ctx.device)] + [p.cond.hidden_states for p in self.prompts], dim=1)
        uncond = torch.cat(
            [ctx.uncond.hidden_states.to(ctx.device)] + [p.uncond.hidden_states for p in self.prompts], dim=1
        )
        # In the UNet's dtype already, so every step passes the same tensor (its keys and values are cached).
        ctx.encoder_hidden_states = (torch.cat([uncond, cond]) if ctx.do_cfg else cond).to(ctx.dtype)
        segment_lengths = [ctx.cond.hidden_states.shape[1]] + [p.cond.hidden_states.shape[1] for p in self.prompts]
        fold_cond = copies_of(ctx.cond, [p.cond for p in self.prompts])
        fold_uncond = copies_of(ctx.uncond, [p.uncond for p in self.prompts]) if ctx.do_cfg else fold_cond
        strengths = [region.strength for region in self.regions]

        def bias(folded: list[bool]) -> RegionAttentionBias:
            return RegionAttentionBias(effective, strengths, segment_lengths, ctx.latent_size,
                                       ctx.model.vae_scale_factor, folded=folded)

        self.bias = bias([a and b for a, b in zip(fold_cond, fold_uncond)])
        if fold_cond != fold_uncond:
            self.bias.halves = (bias(fold_uncond), bias(fold_cond))
        self.processor = RegionAttnProcessor(self.bias)
        self.processors.install(ctx.model.unet, self.processor)

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
        if self.processor is not None:
            self.processor.clear()
