"""What a run reports besides images: its seed, its parameters record, and notices told once.

Both loops' runners (Engine.run_sd, inference.flow.run) build their events with these, so the
records of SD and flow families read alike. Plain Python over the request and the model.
"""

from __future__ import annotations

import random
from typing import Callable

from inference.api import MAX_SEED, Event, Notice


class NoticeOnce:
    """Passes events on, dropping a Notice whose message was already sent in this run."""

    def __init__(self, on_event: Callable[[Event], None]):
        self.on_event = on_event
        self.sent: set[str] = set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notice):
            if event.message in self.sent:
                return
            self.sent.add(event.message)
        self.on_event(event)


class RunProgress:
    """Steps finished so far in the current run (what a Cancelled event reports)."""

    def __init__(self) -> None:
        self.finished = 0


def resolve_seed(seed: int) -> int:
    """-1 picks a fresh random seed (from the OS, not the global RNG other code may have seeded)."""
    if seed == -1:
        return random.SystemRandom().randrange(0, MAX_SEED + 1)
    return int(seed)


def generation_parameters(request, model, sampler: str, seed: int, batch_index: int, loras, image) -> dict:
    """Everything the PNG export needs to describe (and reproduce) one image; JSON-ready values only."""
    has_image = request.init_image is not None
    parameters = {
        "prompt": request.prompt,
        "negative_prompt": request.negative,
        "steps": int(request.steps),
        "sampler": sampler,
        "cfg_scale": float(request.cfg),
        "seed": int(seed),
        "width": int(request.width),
        "height": int(request.height),
        "size": f"{request.width}x{request.height}",
        "output_size": f"{image.shape[1]}x{image.shape[0]}",
        "model": model.name,
        "model_hash": model.model_hash,
        "family": model.family,
        "builtin_model": bool(model.builtin),
        "clip_skip": int(request.clip_skip),
        "mode": request.mode,
        "denoising_strength": float(request.strength) if has_image else None,
        "loras": [{"name": str(name), "weight": float(weight)} for name, weight in loras_as_pairs(loras)],
        "lcm": bool(request.lcm),
        "lcm_lora": request.lcm_lora,
        "vae": request.vae or getattr(model, "extra", {}).get("vae", ""),  # a paired VAE is named too
        "batch_count": int(request.batch_count),
        "batch_index": int(batch_index),
    }
    if request.mask is not None:
        parameters.update(
            mask_mode=request.mask_mode,
            masked_content=request.masked_content,
            inpaint_area=request.inpaint_area,
            padding=int(request.padding),
            mask_blur=int(request.mask_blur),
            color_match=bool(request.color_match),
        )
    return parameters


def loras_as_pairs(loras) -> list[tuple[str, float]]:
    return [(spec.name, spec.weight) for spec in loras]


def union_box(boxes) -> tuple[int, int, int, int]:
    """The smallest (x0, y0, x1, y1) holding every box (the batch's images share the mask)."""
    x0s, y0s, x1s, y1s = zip(*boxes)
    return (min(x0s), min(y0s), max(x1s), max(y1s))
