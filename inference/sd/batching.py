"""UNet evaluations of several prompts in shared batches (latent couple's regions, composite's pieces).

Prompts whose token sequences have the same length stack into one UNet call; batches stay small
enough for large pictures (`batch_limit`) that memory stays near a plain run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.sd.context import DenoiseContext
from inference.sd.prompt import PromptEmbedding

MAX_BATCH = 8  # UNet inputs per evaluation batch (each prompt is 2 inputs with CFG)
# Latent pixels per batch: 8 inputs of SDXL at 1024 px (128x128 latents); larger pictures get fewer
# inputs per batch (never fewer than one [uncond, cond] pair), so memory stays near a plain run's.
BATCH_LATENT_PIXELS = 8 * 128 * 128


@dataclass
class Evaluation:
    """One distinct UNet input: a prompt's embedding under a LoRA set; its noise lands in `noise`."""

    loras: tuple
    embedding: PromptEmbedding
    noise: Any = None


def unet_batch(ctx: DenoiseContext, latent_inputs: list, embeddings: list[PromptEmbedding], t) -> list:
    """One model call on several (latents, prompt) pairs of equal token length (`ctx.model_batch`)."""
    return ctx.model_batch(latent_inputs, embeddings, t)


def batch_limit(ctx: DenoiseContext, max_batch: int) -> int:
    """UNet inputs per batch: at most `max_batch`, fewer for large pictures (BATCH_LATENT_PIXELS)."""
    height, width = ctx.latent_size
    by_memory = BATCH_LATENT_PIXELS // max(height * width, 1)
    return min(max_batch, max(by_memory, 2))


def batches_by_length(evaluations: list[Evaluation], max_batch: int) -> list[list[Evaluation]]:
    """Evaluations in UNet batches: equal token lengths only (they stack), at most max_batch each."""
    by_length: dict[int, list[Evaluation]] = {}
    for evaluation in evaluations:
        by_length.setdefault(int(evaluation.embedding.hidden_states.shape[1]), []).append(evaluation)
    batches = []
    for group in by_length.values():
        batches += [group[i : i + max_batch] for i in range(0, len(group), max_batch)]
    return batches
