"""Shared pieces of the FLUX loop tests: tiny models (built once per session), requests, runs."""

from __future__ import annotations

import functools

import numpy as np

from inference.api import GenerationRequest
from inference.flow.context import flow_context_class
from inference.flow.loop import generate_flow_image


@functools.lru_cache(maxsize=None)
def tiny_flux(variant: str, double_blocks: int = 1, single_blocks: int = 1):
    from inference.flow.tiny import build_tiny_flux

    return build_tiny_flux(variant, double_blocks=double_blocks, single_blocks=single_blocks)


def flux_request(**overrides) -> GenerationRequest:
    settings = dict(model="builtin:tiny-flux-dev", prompt="a red fox in the snow", negative="", width=64, height=48,
                    steps=3, seed=5, cfg=1.0)
    settings.update(overrides)
    return GenerationRequest(**settings)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def run_flow(model, request, *, extensions=(), guidance=3.5, true_cfg=1.0, on_step=None, emit=None,
             cond=None, uncond=None, **kwargs) -> np.ndarray:
    if cond is None:
        cond, uncond = flow_context_class(model).encode_prompts(model, request.prompt, request.negative)
    return generate_flow_image(
        model, request, seed=request.seed, cond=cond, uncond=uncond, extensions=list(extensions),
        on_step=on_step or (lambda *args: None), emit=emit or (lambda event: None), guidance=guidance,
        true_cfg=true_cfg, **kwargs,
    )
