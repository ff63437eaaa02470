"""Regional prompts for FLUX: attention couple over the joint attention, and latent couple.

Attention method. FLUX attends text and image tokens together ([text | image] as one sequence, in
both the double- and the single-stream blocks), so a region is an additive mask over that joint
attention rather than over cross-attention. The text of a pass is [base | region 1 | ... | region n]
(T5 sequences, each 512/256 tokens); the pooled vector is the base prompt's. The mask (0 = attend,
-inf = not, anything between a log-weight):

    queries \\ keys     base text      region j text               image token k
    base text          0              -inf                        0
    region i text      -inf           0 if j == i else -inf       log m_i(k)
    image token p      log(b(p))      log(m_j(p) s_j / T(p))      0

m_j is region j's mask after precedence (later regions on top), max-pooled to the 16-px cells of the
image tokens (the VAE's 8 x the transformer's 2x2 patch); s_j its strength. T(p) = 1 + sum_j m_j s_j
spreads one plain prompt's worth of text attention over the base and the regions covering p, and
b(p) = 1 / T(p): so text and image keep the balance of a plain run, the base prompt is seen by every
image token, a region's tokens are seen only by the image tokens of that region (and see themselves),
and soft masks and strengths act as log-weights as in the SD processor (inference/sd/regions.py).
Image-to-image attention is unrestricted.

A region whose tokens are the base prompt's own (same text; in the negative pass a region without a
negative of its own) is folded into the base, as in the SD processor: its segment is left out of the
sequence and its weight goes onto the base, b(p) = (1 + sum_folded m_j s_j) / T(p). A full-canvas
region carrying the base prompt therefore runs exactly the plain computation.

A region's segment is its text's own T5 tokens (up to and with the end token), without the padding
the base prompt carries to 512/256 tokens: the states are those of the padded encoding (T5 reads
without an attention mask), so the region's words read as in a plain run, and each region costs
only its own length in every block (`trim_padding`).

With true CFG the negative pass has the same layout with each region's own negative (or the base
negative) and a mask of its own. The masks are built once per run; every FluxAttention gets
`FluxRegionAttnProcessor` for the run (inference/flow/region_attention.py), which computes the masked
attention exactly but by groups of queries sharing a mask row, each with its row as a broadcast bias
(a full float mask slows PyTorch's CPU attention by a third or more); the groups reach it through
`joint_attention_kwargs` as `region_layout`.

Latent method: the SD latent couple (inference/sd/latent_couple.py) itself, on the flow context: one
transformer evaluation per region prompt (`FlowContext.model_batch`, prompts by
`FlowContext.encode_prompt_pair`), velocities mixed by the masks, each region under its own LoRA set.
"""

from __future__ import annotations

import math

import numpy as np

from inference.api import GenerationRequest, RegionSpec
from inference.flow import packing
from inference.flow.prompt import encode_flow_prompts
from inference.flow.region_attention import (
    FluxRegionAttnProcessor,
    InstalledFluxProcessors,
    build_joint_layout,
)
from inference.sd.context import DenoiseContext, LoopExtension
from inference.sd.diagnostics import apply_precedence, region_notices
from inference.sd.latent_couple import LatentCoupleExtension
from inference.sd.prompt import PromptEmbedding
from inference.sd.region_prompts import (
    base_negative_text,
    base_prompt_text,
    prepare_region_texts,
    validate_regions,
)
from inference.sd.regions import max_pool_to


def flow_region_extensions(request: GenerationRequest, model) -> list[LoopExtension]:
    """The extensions that carry `request.regions` on the flow loop (none when there are no regions)."""
    if not request.regions:
        return []
    validate_regions(request.regions)
    if request.region_method == "latent":
        return [LatentCoupleExtension.from_request(request)]
    return [FlowAttentionCoupleExtension.from_request(request)]


def token_cell(model) -> int:
    """Pixels per side of one image token: the VAE's scale times the 2x2 packing."""
    return int(model.vae_scale_factor) * packing.PATCH


# ---- the joint-attention mask (pure numpy) ----------------------------------------------------------


def joint_attention_bias(token_masks: list[np.ndarray], strengths: list[float], base_length: int,
                         region_lengths: list[int], folded: list[bool]) -> np.ndarray:
    """The (text + image) x (text + image) additive mask of the module docstring, float64.

    `token_masks` are the regions' masks at image-token resolution (rows x columns), `region_lengths`
    the token counts of the regions' segments; folded regions have no segment (their length is ignored).
    """
    image_tokens = token_masks[0].size if token_masks else 0
    segments = [(i, n) for i, (n, f) in enumerate(zip(region_lengths, folded)) if not f]
    text_length = base_length + sum(n for _, n in segments)
    length = text_length + image_tokens
    bias = np.full((length, length), -math.inf)
    image = slice(text_length, length)
    weights = [mask.reshape(-1).astype(np.float64) * float(s) for mask, s in zip(token_masks, strengths)]
    total = 1.0 + np.sum(weights, axis=0) if weights else np.ones(image_tokens)
    base_weight = 1.0 + sum((w for w, f in zip(weights, folded) if f), np.zeros(image_tokens))
    with np.errstate(divide="ignore"):
        bias[:base_length, :base_length] = 0.0
        bias[:base_length, image] = 0.0
        bias[image, :base_length] = np.log(base_weight / total)[:, None]
        bias[image, image] = 0.0
        start = base_length
        for region, count in segments:
            own = slice(start, start + count)
            bias[own, own] = 0.0
            bias[own, image] = np.log(token_masks[region].reshape(-1).astype(np.float64))[None, :]
            bias[image, own] = np.log(weights[region] / total)[:, None]
            start += count
    return bias


def token_masks_of(effective: list[np.ndarray], cell: int, rows: int, columns: int) -> list[np.ndarray]:
    """Each region's mask max-pooled to the image tokens' cells (a region touching a cell reaches it)."""
    return [max_pool_to(mask, cell, rows, columns) for mask in effective]


# ---- the attention couple extension -----------------------------------------------------------------


class RegionSwitch:
    """What composite turns off during its solo phase (its solo evaluations pass no mask anyway)."""

    enabled = True


class FlowAttentionCoupleExtension(LoopExtension):
    """Regions as a mask over FLUX's joint attention (one transformer pass per guidance branch)."""

    def __init__(self, regions: tuple[RegionSpec, ...], *, base_negative: str = "", base_prompt: str | None = None,
                 fold: bool = True, trim_padding: bool = True):
        self.regions = tuple(regions)
        self.base_negative = base_negative
        self.base_prompt = base_prompt
        # Both on in every run; off only to test the mask against the plain computation.
        self.fold = fold  # fold base-prompt copies into the base (exact and cheaper)
        self.trim_padding = trim_padding  # region segments without their padding tokens
        self.token_counts: dict[str, int] = {}
        self.bias = RegionSwitch()
        self.masks: dict[str, np.ndarray] = {}  # "cond"/"uncond" -> the float64 bias, for diagnostics
        self.processors = InstalledFluxProcessors()

    @classmethod
    def from_request(cls, request: GenerationRequest) -> FlowAttentionCoupleExtension:
        return cls(request.regions, base_negative=base_negative_text(request), base_prompt=base_prompt_text(request))

    def prepare(self, ctx: DenoiseContext) -> None:
        masks = [ctx.to_generation_space(np.asarray(region.mask, dtype=np.float32)) for region in self.regions]
        effective = apply_precedence(masks)
        self.report_problems(ctx, masks, effective)
        height, width = ctx.latent_size
        token_masks = token_masks_of(effective, token_cell(ctx.model), height // packing.PATCH, width // packing.PATCH)
        strengths = [float(region.strength) for region in self.regions]
        texts = [prepare_region_texts(region, self.base_negative) for region in self.regions]
        encoded = self.encode_texts(ctx, [t for prompt, negative, _ in texts for t in (prompt, negative)])
        ctx.cond, cond_kwargs = self.prepare_pass(ctx, "cond", ctx.cond, self.base_prompt,
                                                  [encoded[p] for p, _, _ in texts], [p for p, _, _ in texts],
                                                  token_masks, strengths)
        ctx.joint_attention_kwargs = cond_kwargs
        if ctx.do_cfg:
            ctx.uncond, uncond_kwargs = self.prepare_pass(ctx, "uncond", ctx.uncond, self.base_negative,
                                                          [encoded[n] for _, n, _ in texts],
                                                          [n for _, n, _ in texts], token_masks, strengths)
            ctx.negative_joint_attention_kwargs = uncond_kwargs
        self.processors.install(ctx.model.transformer, FluxRegionAttnProcessor())

    def cleanup(self, ctx: DenoiseContext) -> None:
        self.processors.restore()

    def encode_texts(self, ctx: DenoiseContext, texts: list[str]) -> dict[str, PromptEmbedding]:
        """Every distinct region text once, in one batched call; the run's own prompt and negative reuse theirs."""
        known: dict[str, PromptEmbedding] = {}
        if self.base_prompt is not None:
            known[self.base_prompt] = ctx.cond
            if ctx.uncond is not None:
                known.setdefault(self.base_negative, ctx.uncond)
        missing = [text for text in dict.fromkeys(texts) if text not in known]
        for text, embedding in zip(missing, encode_flow_prompts(ctx.model, missing, on_truncated=ctx.notify,
                                                                       pooled=False)):
            known[text] = embedding
        if self.trim_padding:
            distinct = list(dict.fromkeys(texts))
            ids = ctx.model.tokenizer_2(distinct, padding=False, truncation=False).input_ids
            self.token_counts = {text: len(tokens) for text, tokens in zip(distinct, ids)}
        return known

    def segment_of(self, text: str, embedding: PromptEmbedding):
        """A region's token states: its own tokens (with the end token) when trimming, else all of them."""
        states = embedding.hidden_states
        count = self.token_counts.get(text) if self.trim_padding else None
        return states if count is None else states[:, : max(1, min(count, states.shape[1]))]

    def prepare_pass(self, ctx, name: str, base: PromptEmbedding, base_text: str | None, embeddings, region_texts,
                     token_masks, strengths):
        """One guidance branch: its text sequence (base + unfolded regions) and its attention layout."""
        import torch

        folded = [self.fold and (embedding is base or (base_text is not None and text == base_text))
                  for embedding, text in zip(embeddings, region_texts)]
        segments = [self.segment_of(text, embedding) for embedding, text in zip(embeddings, region_texts)]
        lengths = [int(segment.shape[1]) for segment in segments]
        bias = joint_attention_bias(token_masks, strengths, int(base.hidden_states.shape[1]), lengths, folded)
        self.masks[name] = bias
        states = [base.hidden_states] + [segment for segment, f in zip(segments, folded) if not f]
        sequence = PromptEmbedding(hidden_states=torch.cat([s.to(ctx.device) for s in states], dim=1),
                                   pooled=base.pooled)
        if not np.any(bias):  # every region folded at the base's weight: the plain computation
            return sequence, None
        return sequence, {"region_layout": build_joint_layout(bias, ctx.device)}

    def report_problems(self, ctx: DenoiseContext, masks, effective) -> None:
        for message in region_notices(masks, effective, token_cell(ctx.model), level_name="the image tokens"):
            ctx.notify(message)
        for number, region in enumerate(self.regions, start=1):
            if prepare_region_texts(region, self.base_negative)[2]:
                ctx.notify(
                    f"Region {number} has LoRAs, which the attention method cannot apply to one region;"
                    " use the latent region method for per-region LoRAs."
                )
