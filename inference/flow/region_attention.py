"""FLUX's joint attention with the region mask, computed by query groups (an exact rewrite).

The mask of inference/flow/regions.py is one (text + image) x (text + image) bias. Handing it to
PyTorch's SDPA as a full float mask makes the CPU kernel 35-50 % slower than unmasked attention,
while a bias row broadcast over the queries (shape 1 x K) costs nothing. Most queries share their
row: every base-text query has the same one, every token of one region's text too, and an image
token's row is fixed by the regions covering it and their weights (with hard masks, which regions
cover it; soft masks add a few more rows along their feathered edges). So the queries are split
into groups of identical rows; each group gathers its queries (a slice where they are consecutive,
as the base text's are), attends over the whole key sequence with its own row as a broadcast bias
(None where the row is all zero), and writes its rows of the output: exactly the masked attention, query by query (keys at -inf get exactly
zero weight in both). Groups too small to pay for their own call share one call with their rows as
a full mask, and a layout that would not pay at all is that one masked call over every query (the
reference computation).

The cost model's figures are measured (torch 2.13's CPU flash kernel, one thread, heads of 128,
~1100 keys): a full float mask costs ~10 % more per
query-key pair than no mask or a broadcast row, and a call over fewer than 192 queries runs the
kernel's smallest query blocks, ~25 % more per pair. So the image tokens of one hard-edged region
(a few hundred queries at 384-1024 px) rarely pay for their own call; the base prompt's tokens
(512 consecutive queries) do.

`FluxRegionAttnProcessor` is diffusers' FluxAttnProcessor (projections, QK norms, [text | image] in
both block kinds, rotary embedding over the joint sequence before anything is split) with that
attention; without a `region_layout` it is diffusers' own processor, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# SDPA on a full float mask costs about this much per query-key pair more than on a broadcast row.
MASK_FACTOR = 1.1
# A call over fewer than SMALL_GROUP_ROWS queries costs about this much more per pair (small query blocks).
SMALL_GROUP_ROWS = 192
SMALL_GROUP_FACTOR = 1.25
# Fixed cost of one attention call, in query-key pairs (a few queries' worth on the CPU kernel).
CALL_OVERHEAD_PAIRS = 4096


@dataclass
class JointQueryGroup:
    """Query positions `rows` (a slice where they are consecutive, else a LongTensor) that share one bias:
    `bias` 1 x 1 x (1 or rows) x K, or None (all zero)."""

    rows: Any
    bias: Any
    _cast: dict = field(default_factory=dict)

    def bias_as(self, dtype):
        if self.bias is None:
            return None
        cached = self._cast.get(dtype)
        if cached is None:
            cached = self._cast[dtype] = self.bias.to(dtype)
        return cached


@dataclass
class JointQueryLayout:
    """The query groups of one guidance branch, over a joint sequence of `length` tokens."""

    groups: list[JointQueryGroup]
    length: int


def group_rows(bias: np.ndarray) -> list[np.ndarray]:
    """Indices of identical rows of `bias`, each list in sequence order, groups by first appearance."""
    groups: dict[bytes, list[int]] = {}
    for index, row in enumerate(np.ascontiguousarray(bias)):
        groups.setdefault(row.tobytes(), []).append(index)
    return [np.asarray(rows) for rows in groups.values()]


def build_joint_layout(bias: np.ndarray, device, call_overhead_pairs: int = CALL_OVERHEAD_PAIRS,
                       small_group_factor: float = SMALL_GROUP_FACTOR) -> JointQueryLayout:
    """Query groups for a joint-attention bias (float64, L x L), with the cost model of the module docstring:
    a group of rows gets its own call where that costs less than its rows in the masked call
    (`call_overhead_pairs=0, small_group_factor=1` gives every group its own call)."""
    import torch

    length = bias.shape[0]
    keys = bias.shape[1]
    rows = group_rows(bias)

    def own_factor(members: np.ndarray) -> float:
        return small_group_factor if len(members) < SMALL_GROUP_ROWS else 1.0

    def pays(members: np.ndarray) -> bool:
        return len(members) * keys * (MASK_FACTOR - own_factor(members)) > call_overhead_pairs

    own = [r for r in rows if pays(r)]
    rest = [r for r in rows if not pays(r)]
    rest_rows = np.sort(np.concatenate(rest)) if rest else np.zeros(0, dtype=int)
    split_cost = sum(own_factor(r) * len(r) * keys + call_overhead_pairs for r in own)
    if len(rest_rows):
        split_cost += MASK_FACTOR * len(rest_rows) * keys + call_overhead_pairs
    whole_cost = MASK_FACTOR * length * keys + call_overhead_pairs
    if len(rows) > 1 and split_cost >= whole_cost:
        own, rest_rows = [], np.arange(length)

    def tensor(block: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(block))[None, None].to(device)

    def positions(members: np.ndarray):
        if members[-1] - members[0] + 1 == len(members):
            return slice(int(members[0]), int(members[-1]) + 1)
        return torch.from_numpy(members).to(device)

    groups = []
    for members in own:
        row = bias[members[0] : members[0] + 1]
        groups.append(JointQueryGroup(positions(members), tensor(row) if np.any(row) else None))
    if len(rest_rows):
        block = bias[rest_rows]
        groups.append(JointQueryGroup(positions(rest_rows), tensor(block) if np.any(block) else None))
    return JointQueryLayout(groups, length)


def grouped_attention(query, key, value, layout: JointQueryLayout):
    """Attention of B x L x heads x head_dim queries by the layout's groups (keys and values alike, the whole
    sequence); B x L x heads x head_dim. Each group gathers its own queries and writes its own rows."""
    import torch
    import torch.nn.functional as F

    key, value = key.transpose(1, 2), value.transpose(1, 2)
    if len(layout.groups) == 1 and layout.groups[0].rows == slice(0, layout.length):
        group = layout.groups[0]
        return F.scaled_dot_product_attention(query.transpose(1, 2), key, value, attn_mask=group.bias_as(query.dtype),
                                              dropout_p=0.0, is_causal=False).transpose(1, 2)
    output = torch.empty_like(query, dtype=value.dtype)
    for group in layout.groups:
        rows = group.rows
        group_query = query[:, rows] if isinstance(rows, slice) else query.index_select(1, rows)
        result = F.scaled_dot_product_attention(group_query.transpose(1, 2), key, value,
                                                attn_mask=group.bias_as(query.dtype), dropout_p=0.0,
                                                is_causal=False).transpose(1, 2)
        if isinstance(rows, slice):
            output[:, rows] = result
        else:
            output.index_copy_(1, rows, result)
    return output


class FluxRegionAttnProcessor:
    """diffusers' FluxAttnProcessor with the regions' attention computed by query groups.

    Double-stream blocks (added projections) and single-stream blocks alike: the queries, keys and
    values of [text | image] are projected, normed and rotated over the joint sequence exactly as in
    diffusers, then attend by `region_layout`'s groups. Without a layout: diffusers' processor itself.
    """

    def __init__(self):
        from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

        self.plain = FluxAttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None,
                 region_layout: JointQueryLayout | None = None):
        if region_layout is None:
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        import torch
        from diffusers.models.embeddings import apply_rotary_emb

        if attention_mask is not None:
            raise ValueError("The regions' attention takes its mask from region_layout, not attention_mask.")
        query, key, value = self.heads(attn, hidden_states, attn.to_q, attn.to_k, attn.to_v, attn.norm_q, attn.norm_k)
        if attn.added_kv_proj_dim is not None:
            text_query, text_key, text_value = self.heads(
                attn, encoder_hidden_states, attn.add_q_proj, attn.add_k_proj, attn.add_v_proj,
                attn.norm_added_q, attn.norm_added_k,
            )
            query = torch.cat([text_query, query], dim=1)
            key = torch.cat([text_key, key], dim=1)
            value = torch.cat([text_value, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        if query.shape[1] != region_layout.length:
            raise ValueError(f"The regions' layout covers {region_layout.length} tokens, the attention {query.shape[1]}.")
        hidden_states = grouped_attention(query, key, value, region_layout)
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return hidden_states
        text_length = encoder_hidden_states.shape[1]
        encoder_hidden_states, hidden_states = hidden_states.split_with_sizes(
            [text_length, hidden_states.shape[1] - text_length], dim=1
        )
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states.contiguous()))
        return hidden_states, attn.to_add_out(encoder_hidden_states.contiguous())

    @staticmethod
    def heads(attn, states, to_q, to_k, to_v, norm_q, norm_k):
        """Queries, keys, values of `states` as B x L x heads x head_dim, queries and keys normed."""
        if attn.fused_projections and to_q is attn.to_q:
            query, key, value = attn.to_qkv(states).chunk(3, dim=-1)
        elif attn.fused_projections:
            query, key, value = attn.to_added_qkv(states).chunk(3, dim=-1)
        else:
            query, key, value = to_q(states), to_k(states), to_v(states)
        query, key, value = (t.unflatten(-1, (-1, attn.head_dim)) for t in (query, key, value))
        return norm_q(query), norm_k(key), value


class InstalledFluxProcessors:
    """Puts a processor on every FluxAttention of a transformer and remembers what was there, to restore it."""

    def __init__(self) -> None:
        self.saved: list[tuple[Any, Any]] = []

    def install(self, transformer, processor) -> None:
        from diffusers.models.transformers.transformer_flux import FluxAttention

        for module in transformer.modules():
            if isinstance(module, FluxAttention):
                self.saved.append((module, module.processor))
                module.set_processor(processor)

    def restore(self) -> None:
        while self.saved:
            module, original = self.saved.pop()
            module.set_processor(original)
