"""What both region methods (attention couple, latent couple) and composite need of region prompts.

Validation of the regions' prompts and strengths, the LoRA tags taken out of a region's texts, and
the batched, cached encoding of every region's prompt pair. Kept apart from regions.py and
latent_couple.py so that neither has to import the other for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inference.api import GenerationRequest, RegionSpec, RequestError
from inference.sd.prompt import PromptEmbedding, count_chunks, encode_prompts, parse_lora_tags

MAX_REGION_STRENGTH = 2.0


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


def encode_region_prompts(model, regions, base_negative: str, clip_skip: int, device,
                          cache: dict | None = None) -> list[RegionPrompt]:
    """Every region's prompt pair, each to a common chunk count like encode_prompt_pair.

    `cache` (one per run, keyed by (text, chunks, clip_skip)) holds what is already encoded: each
    distinct text is encoded once (regions without their own negative all share the base one), the
    run seeds it with its own prompt and negative, and every text still missing is encoded in ONE
    batched text-encoder call rather than one call per text.
    """
    cache = {} if cache is None else cache
    wanted = []
    for region in regions:
        prompt, negative, loras = prepare_region_texts(region, base_negative)
        chunks = max(count_chunks(model, prompt), count_chunks(model, negative))
        wanted.append(((prompt, chunks, clip_skip), (negative, chunks, clip_skip), loras))
    missing = list(dict.fromkeys(key for cond, uncond, _ in wanted for key in (cond, uncond) if key not in cache))
    encoded = encode_prompts(model, [(text, chunks) for text, chunks, _ in missing], clip_skip)
    for key, embedding in zip(missing, encoded):
        cache[key] = move_embedding(embedding, device)
    return [RegionPrompt(cond=cache[cond], uncond=cache[uncond], loras=loras) for cond, uncond, loras in wanted]


def seed_prompt_cache(cache: dict, text: str, embedding: PromptEmbedding, clip_skip: int, device) -> None:
    """Let regions whose text is the run's own prompt or negative reuse its encoding."""
    cache.setdefault((text, embedding.chunks, clip_skip), move_embedding(embedding, device))


def move_embedding(embedding: PromptEmbedding, device) -> PromptEmbedding:
    pooled = embedding.pooled.to(device) if embedding.pooled is not None else None
    return PromptEmbedding(hidden_states=embedding.hidden_states.to(device), pooled=pooled)


def base_negative_text(request: GenerationRequest) -> str:
    return parse_lora_tags(request.negative)[0]


def base_prompt_text(request: GenerationRequest) -> str:
    return parse_lora_tags(request.prompt)[0]
