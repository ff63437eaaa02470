"""One FLUX.1 or Z-Image request in, events out: what `Engine.run_sd` does for SD, for the flow loop.

Knobs as FLUX reads them:
- `guidance` (request.guidance, else the family's default: dev 3.5, Fill 30) is the distilled
  guidance embedding, not CFG; schnell has none and ignores it.
- true CFG runs when `request.true_cfg_scale` > 1 and there is a negative prompt (the request's or a
  region's), as diffusers' `true_cfg_scale` does: two transformer passes per step. `request.cfg`
  and `request.sampler` do not apply (FLUX runs FlowMatchEuler with its own shift).
- defaults per family are the registry entries' `Defaults` (inference/families/flux.py): dev 28
  steps, schnell 4, Fill 50; 1024 px.
- Z-Image (inference/flow/zimage.py): `guidance` (else the entry's: Turbo 0) is the pipeline's
  guidance_scale, CFG with the negative prompt ("" when none) when > 0; true_cfg_scale does not apply.

Events: Progress and (unless preview "none") Preview after every step, Notices once per run,
Finished with one parameters record per image; cancel takes effect at the end of the current step.
"""

from __future__ import annotations

import math
from typing import Callable

from inference.api import (
    Finished,
    GenerationCancelled,
    GenerationRequest,
    Notice,
    Preview,
    Progress,
    RequestError,
)
from inference.families import FAMILIES
from inference.flow.components import FlowModel
from inference.flow.context import flow_context_class

SAMPLER_NAME = "FlowMatchEuler"
MAX_GUIDANCE = 100.0

FALLBACK_GUIDANCE = 3.5  # a guidance-embedding transformer of a family whose entry names none (FLUX.1 dev's)


def resolve_guidance(model: FlowModel, request: GenerationRequest) -> float | None:
    if not flow_context_class(model).uses_guidance(model):
        return None
    guidance = request.guidance
    if guidance is None:
        entry = FAMILIES.find(model.family)
        default = entry.defaults.guidance if entry is not None else None
        return default if default is not None else FALLBACK_GUIDANCE
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
            or not 0.0 <= guidance <= MAX_GUIDANCE:
        raise RequestError(f"The guidance must be a number from 0 to {MAX_GUIDANCE:g}, not {guidance!r}.")
    return float(guidance)


def resolve_true_cfg(request: GenerationRequest, negative: str) -> float:
    scale = request.true_cfg_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise RequestError(f"The true CFG scale must be a finite number of at least 0, not {scale!r}.")
    has_negative = bool(negative.strip()) or any(region.negative.strip() for region in request.regions) \
        or any(piece.negative.strip() for piece in request.pieces)
    return float(scale) if scale > 1.0 and has_negative else 1.0


def run_flux(model: FlowModel, request: GenerationRequest, on_event, cancel, progress, *, previews=None,
             taesd_path=None, apply_loras: Callable[[list], None] | None = None) -> None:
    """Run every batch item of `request` on the flow loop, emitting events (see the module docstring).

    `progress` is the engine's RunProgress (steps finished, for a Cancelled event); `previews` a
    PreviewRenderer (one is made when None); `apply_loras(specs)` sets exactly these LoRAs on the model."""
    from inference.flow.loop import check_flow_size, generate_flow_image
    from inference.flow.modes import build_flow_extensions
    from inference.preview import PreviewRenderer
    from inference.records import NoticeOnce, generation_parameters, resolve_seed, union_box
    from inference.sd.loop import CanvasBoxes
    from inference.sd.prompt import parse_lora_tags

    check_flow_size(model, request.width, request.height)
    previews = previews or PreviewRenderer()
    prompt, prompt_loras = parse_lora_tags(request.prompt)
    negative, negative_loras = parse_lora_tags(request.negative)
    loras = [*request.loras, *prompt_loras, *negative_loras]
    region_loras = [lora for part in request.regions for lora in part.loras]
    if (loras or region_loras) and apply_loras is None:
        raise RequestError(f"LoRAs cannot be applied to {model.name} in this run.")
    if apply_loras is not None:
        apply_loras(list(loras))
    context_class = flow_context_class(model)
    guidance = resolve_guidance(model, request)
    true_cfg = resolve_true_cfg(request, negative) if context_class.uses_true_cfg else 1.0
    emit_notice_once = NoticeOnce(on_event)
    cond, uncond = context_class.encode_prompts(model, prompt, negative,
                                                on_truncated=lambda message: emit_notice_once(Notice(message)))

    first_seed = resolve_seed(request.seed)
    images, parameters, changed = [], [], []
    for batch_index in range(request.batch_count):
        seed = first_seed + batch_index
        boxes = CanvasBoxes()  # where this image's previews and result sit: the GUI draws there

        def on_step(step_index: int, total: int, preview_latents, _offset=batch_index, _boxes=boxes) -> None:
            step = _offset * total + step_index + 1
            progress.finished = step
            on_event(Progress(step=step, total=total * request.batch_count))
            if request.preview != "none":
                image = previews.render(preview_latents, model.family, taesd_path)
                on_event(Preview(step=step, image=image, rect=_boxes.preview))
            if cancel.is_set():
                raise GenerationCancelled()

        image = generate_flow_image(
            model, request, seed=seed, cond=cond, uncond=uncond, extensions=build_flow_extensions(request, model),
            on_step=on_step, emit=emit_notice_once, guidance=guidance, true_cfg=true_cfg, loras=tuple(loras),
            apply_loras=apply_loras, canvas_boxes=boxes,
        )
        images.append(image)
        changed.append(boxes.changed)
        record = generation_parameters(request, model, SAMPLER_NAME, seed, batch_index, loras, image)
        if context_class.uses_true_cfg:
            record.update(cfg_scale=true_cfg, true_cfg_scale=true_cfg, guidance=guidance, clip_skip=None)
        else:  # Z-Image: the guidance is its CFG scale
            record.update(cfg_scale=guidance, true_cfg_scale=None, guidance=guidance, clip_skip=None)
        parameters.append(record)
        if cancel.is_set() and batch_index + 1 < request.batch_count:
            raise GenerationCancelled()
    on_event(Finished(images=tuple(images), parameters=tuple(parameters), rect=union_box(changed)))
