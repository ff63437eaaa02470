"""One instruction edit, start to finish: request -> model inputs -> diffusers pipeline -> pasted-back result.

The pipelines run as diffusers ships them; `callback_on_step_end` reports Progress and a linear
Preview after every step and raises GenerationCancelled when the cancel event is set, so a
cancelled run never reaches the final VAE decode.

What each family receives (SPEC §2, `edit`):
- InstructPix2Pix: the (annotated) image; guidance_scale = request.cfg, image_guidance_scale.
  It takes no reference images (a Notice says they were left out).
- FLUX.1 Kontext: one conditioning image: the (annotated) image with the reference images to its
  right, each scaled to its height; guidance_scale (distilled guidance) = request.cfg (Kontext
  wants ~2.5); a negative prompt switches on true CFG at request.true_cfg_scale.
- Qwen-Image-Edit: the same side-by-side conditioning image; true_cfg_scale with the negative
  prompt (" " when none is given, as Qwen recommends).
- Qwen-Image-Edit-Plus: a list of pictures, the (annotated) image first ("Picture 1"), then the
  reference images in order ("Picture 2", ...), so an instruction can name them.
The output always has the (annotated) image's aspect ratio, is generated at the model's native
area and resized back to the input size.
"""

from __future__ import annotations

import gc
import random
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from inference.api import (
    MAX_SEED,
    Cancelled,
    Event,
    Finished,
    GenerationCancelled,
    GenerationRequest,
    InferenceError,
    Notice,
    OutOfMemory,
    Preview,
    Progress,
    RequestError,
)
from inference.edit.images import (
    as_rgb,
    composite_annotation,
    feather_mask,
    float_to_uint8,
    paste_back,
    resize_rgb,
    restore_copied_strokes,
    side_by_side,
    working_size,
)
from inference.edit.model import FAMILY_IP2P, FAMILY_KONTEXT, EditModel
from inference.edit.preview import preview_image
from inference.schedulers import SAMPLER_CLASSES
from inference.validate import encodable_text, validate_request


@dataclass
class EditInputs:
    """Everything the pipeline call and the paste-back need, prepared once per request."""

    original: np.ndarray  # HxWx3 uint8: init_image as given
    model_image: np.ndarray  # HxWx3 uint8: original with the annotation composited (what the model sees)
    stroke_alpha: np.ndarray | None  # HxW uint8 alpha of the annotation, None without one
    feather: np.ndarray | None  # HxW uint8 feathered edit mask, None: the whole image is the edit area
    condition: object  # the pipeline's `image`: one PIL image or (Qwen-Edit-Plus) a list of them
    width: int  # working size the model generates at
    height: int
    reference_count: int  # reference images the model actually received


class StepCounter:
    """Steps finished across the whole batch (Progress/Preview/Cancelled report this number)."""

    def __init__(self, total: int):
        self.total = total
        self.finished = 0


def check_edit_image(request: GenerationRequest, image: np.ndarray) -> None:
    """What only an edit needs beyond validate_request: a picture big enough and an instruction."""
    height, width = image.shape[:2]
    if min(width, height) < 8:
        raise RequestError(
            f"The image to edit is {width}x{height}; it must be at least 8 pixels on each side."
        )
    if not request.prompt.strip():
        raise RequestError("Edit mode needs an instruction: the prompt is empty.")


def prepare_feather(request: GenerationRequest, shape: tuple[int, int]) -> np.ndarray | None:
    """The feathered edit mask at image size (None without a mask: the whole image is edited)."""
    if request.mask is None:
        return None
    mask = np.asarray(request.mask)
    if mask.shape != shape:
        raise RequestError(
            f"The mask is {mask.shape[1] if mask.ndim > 1 else '?'}x{mask.shape[0]} but the image is "
            f"{shape[1]}x{shape[0]}; they must be the same size."
        )
    if not np.issubdtype(mask.dtype, np.number) or not np.isfinite(mask).all():
        raise RequestError("The mask must hold numbers between 0 and 1.")
    mask = np.clip(mask.astype(np.float32), 0.0, 1.0)
    if request.mask_mode == "not_masked":
        mask = 1.0 - mask
    feather = feather_mask(mask, request.mask_blur)
    if not feather.any():
        raise RequestError("The edit mask is empty: there is nothing to edit.")
    return feather


def prepare_edit_inputs(
    model: EditModel, request: GenerationRequest, emit: Callable[[Event], None]
) -> EditInputs:
    """Validate the request and build the picture(s) the model receives."""
    validate_request(request)
    original = as_rgb(request.init_image, "image to edit")
    check_edit_image(request, original)
    height, width = original.shape[:2]
    feather = prepare_feather(request, (height, width))

    model_image, stroke_alpha = original, None
    if request.annotation_image is not None:
        model_image = composite_annotation(original, np.asarray(request.annotation_image))
        stroke_alpha = np.asarray(request.annotation_image)[..., 3]

    references = [as_rgb(r, f"reference image {i + 1}") for i, r in enumerate(request.reference_images)]
    preferred = model.extra.get("preferred_resolutions", ())
    work_w, work_h = working_size(width, height, model.native_area, model.size_multiple, preferred)

    if model.family == FAMILY_IP2P:
        if references:
            emit(Notice(f"InstructPix2Pix takes no reference images; {len(references)} were left out."))
            references = []
        condition = Image.fromarray(resize_rgb(model_image, work_w, work_h))
    elif model.takes_several_images:
        condition = [Image.fromarray(model_image)] + [Image.fromarray(r) for r in references]
    else:
        row = side_by_side([model_image, *references]) if references else model_image
        if model.family == FAMILY_KONTEXT:
            # what the Kontext pipeline's auto-resize does, also for a side-by-side row
            row_w, row_h = working_size(
                row.shape[1], row.shape[0], model.native_area, model.size_multiple, preferred
            )
            row = resize_rgb(row, row_w, row_h)
        condition = Image.fromarray(row)
    return EditInputs(
        original=original,
        model_image=model_image,
        stroke_alpha=stroke_alpha,
        feather=feather,
        condition=condition,
        width=work_w,
        height=work_h,
        reference_count=len(references),
    )


def prepare_seeds(request: GenerationRequest) -> list[int]:
    """One seed per batch item: the request's seed (random for -1), then +1, +2 ... (A1111 batches)."""
    first = random.SystemRandom().randrange(0, MAX_SEED + 1) if request.seed == -1 else request.seed
    return [first + i for i in range(request.batch_count)]


def prepare_text_kwargs(model: EditModel, request: GenerationRequest) -> dict:
    """prompt / negative_prompt (or tiny models' embeddings) and the guidance knobs of each family."""
    kwargs: dict = {}
    prompt, negative = encodable_text(request.prompt), encodable_text(request.negative.strip())
    if model.family == FAMILY_IP2P:
        kwargs.update(guidance_scale=request.cfg, image_guidance_scale=request.image_guidance_scale)
        use_negative = bool(negative)
    elif model.family == FAMILY_KONTEXT:
        kwargs.update(guidance_scale=request.cfg, max_sequence_length=model.max_sequence_length)
        use_negative = bool(negative) and request.true_cfg_scale > 1
        if use_negative:
            kwargs["true_cfg_scale"] = request.true_cfg_scale
    else:  # Qwen-Image-Edit (+Plus): true CFG needs a negative prompt, " " when there is none
        kwargs["true_cfg_scale"] = request.true_cfg_scale
        if model.pipeline.transformer.config.guidance_embeds:
            kwargs["guidance_scale"] = request.cfg
        use_negative = request.true_cfg_scale > 1
        negative = negative or " "
    if model.encode_instruction is not None:
        encoded = model.encode_instruction(prompt, negative or " ")
        kwargs.update(encoded.prompt_kwargs)
        if use_negative:
            kwargs.update(encoded.negative_kwargs)
    else:
        kwargs["prompt"] = prompt
        if use_negative:
            kwargs["negative_prompt"] = negative
    return kwargs


def prepare_pipeline_kwargs(
    model: EditModel, request: GenerationRequest, inputs: EditInputs, seed: int, on_step_end
) -> dict:
    import torch

    kwargs = prepare_text_kwargs(model, request)
    kwargs.update(
        image=inputs.condition,
        num_inference_steps=request.steps,
        generator=torch.Generator("cpu").manual_seed(seed),  # CPU noise: a seed reproduces across devices
        output_type="np",
        callback_on_step_end=on_step_end,
        callback_on_step_end_tensor_inputs=["latents"],
    )
    if model.family != FAMILY_IP2P:  # InstructPix2Pix generates at the size of its input image
        kwargs.update(height=inputs.height, width=inputs.width)
    if model.family == FAMILY_KONTEXT:
        kwargs.update(max_area=inputs.width * inputs.height, _auto_resize=False)
    return kwargs


def _step_callback(model, request, inputs, counter, emit, cancel):
    def on_step_end(pipeline, step_index, timestep, tensors):
        counter.finished += 1
        emit(Progress(counter.finished, counter.total))
        if cancel.is_set():
            raise GenerationCancelled()
        if request.preview != "none":
            latents = tensors["latents"]
            image = preview_image(pipeline, model.family, latents, inputs.height, inputs.width)
            emit(Preview(counter.finished, image, rect=whole_image_box(inputs)))
        return {}

    return on_step_end


def _free_device_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_pipeline(model: EditModel, kwargs: dict) -> np.ndarray:
    """The pipeline's first image as uint8 (GenerationCancelled passes through untouched)."""
    import torch

    try:
        output = model.pipeline(**kwargs)
    except torch.cuda.OutOfMemoryError as e:
        _free_device_memory()
        raise OutOfMemory(
            f"The GPU ran out of memory editing at {kwargs.get('width', '?')}x{kwargs.get('height', '?')}; "
            "memory was freed, try a smaller picture or fewer reference images."
        ) from e
    except ValueError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InferenceError(f"The {model.family} edit pipeline rejected the request: {reason}") from e
    return float_to_uint8(output.images[0])


def finish_result(edited: np.ndarray, inputs: EditInputs) -> np.ndarray:
    """The model's picture at input size, markup removed, pasted back inside the feathered mask."""
    height, width = inputs.original.shape[:2]
    result = resize_rgb(edited, width, height)
    if inputs.stroke_alpha is not None:
        result = restore_copied_strokes(result, inputs.original, inputs.model_image, inputs.stroke_alpha)
    if inputs.feather is not None:
        result = paste_back(inputs.original, result, inputs.feather)
    return result


def sampler_name(scheduler) -> str:
    """The pipeline's own scheduler by the name users know (the one the panel shows for edit models).

    "Euler a" for InstructPix2Pix's EulerAncestralDiscreteScheduler, "FlowMatchEuler" (as FLUX records
    it) for Kontext and Qwen; a scheduler without such a name keeps its class name.
    """
    class_name = type(scheduler).__name__
    if class_name == "FlowMatchEulerDiscreteScheduler":
        return "FlowMatchEuler"
    karras = bool(getattr(scheduler, "config", {}).get("use_karras_sigmas", False))
    for name, (cls, flags) in SAMPLER_CLASSES.items():
        if cls == class_name and bool(flags.get("use_karras_sigmas", False)) == karras:
            return name
    return class_name


def edit_parameters(model: EditModel, request: GenerationRequest, inputs: EditInputs, seed: int) -> dict:
    """What produced one result (SPEC §7): enough to reproduce it and to write the PNG parameters."""
    height, width = inputs.original.shape[:2]
    parameters = {
        "mode": "edit",
        "prompt": request.prompt,
        "negative": request.negative,
        "model": model.name,
        "model_family": model.family,
        "model_hash": model.model_hash,
        "builtin": model.builtin,
        "steps": request.steps,
        "seed": seed,
        "sampler": sampler_name(model.pipeline.scheduler),
        "cfg": request.cfg,
        "width": width,
        "height": height,
        "working_width": inputs.width,
        "working_height": inputs.height,
        "reference_images": inputs.reference_count,
        "annotated": inputs.stroke_alpha is not None,
        "masked": inputs.feather is not None,
        "mask_blur": request.mask_blur,
    }
    if model.family == FAMILY_IP2P:
        parameters["image_guidance_scale"] = request.image_guidance_scale
    elif model.family == FAMILY_KONTEXT:
        parameters["guidance"] = request.cfg
        if request.negative.strip() and request.true_cfg_scale > 1:
            parameters["true_cfg_scale"] = request.true_cfg_scale
    else:
        parameters["true_cfg_scale"] = request.true_cfg_scale
    return parameters


def run_edit(
    model: EditModel,
    request: GenerationRequest,
    emit: Callable[[Event], None],
    cancel: threading.Event,
) -> Finished | Cancelled:
    """Run an `edit` request; emits Progress/Preview per step, then Finished or Cancelled, and returns it.

    Bad requests raise RequestError, memory exhaustion OutOfMemory, pipeline refusals InferenceError
    (all one sentence); the caller turns those into `Failed`.
    """
    inputs = prepare_edit_inputs(model, request, emit)
    seeds = prepare_seeds(request)
    counter = StepCounter(total=request.steps * len(seeds))
    images, parameters = [], []
    on_step_end = _step_callback(model, request, inputs, counter, emit, cancel)
    for seed in seeds:
        if cancel.is_set():
            return _cancelled(emit, counter)
        kwargs = prepare_pipeline_kwargs(model, request, inputs, seed, on_step_end)
        try:
            edited = run_pipeline(model, kwargs)
        except GenerationCancelled:
            return _cancelled(emit, counter)
        images.append(finish_result(edited, inputs))
        parameters.append(edit_parameters(model, request, inputs, seed))
    finished = Finished(images=tuple(images), parameters=tuple(parameters), rect=changed_box(inputs))
    emit(finished)
    return finished


def whole_image_box(inputs: EditInputs) -> tuple[int, int, int, int]:
    height, width = inputs.original.shape[:2]
    return (0, 0, width, height)


def changed_box(inputs: EditInputs) -> tuple[int, int, int, int]:
    """Where the result may differ from the picture: the feathered mask's box, or all of it."""
    if inputs.feather is None:
        return whole_image_box(inputs)
    ys, xs = np.nonzero(inputs.feather)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _cancelled(emit: Callable[[Event], None], counter: StepCounter) -> Cancelled:
    _free_device_memory()
    cancelled = Cancelled(step=counter.finished)
    emit(cancelled)
    return cancelled
