"""The inference engine: one request in, a stream of events out (ARCHITECTURE §Data flow).

`Engine.run` is called on the inference thread. It validates the request before touching a model,
loads the model through the ModelManager it was given, applies LoRAs and embeddings, and runs
each batch item through the SD denoise loop (or hands `edit` requests to inference.edit). Every
outcome is an event: Progress/Preview per step, then exactly one of Finished, Failed or Cancelled.
Nothing escapes `run` as an exception, and the engine stays usable after any failure.

Progress counts loop iterations (UNet evaluations) over the whole batch: `total` is the number of
timesteps each image runs (after the strength cut; second-order samplers run more than `steps`)
times the batch count.
"""

from __future__ import annotations

import gc
import logging
import math
import random
import threading
from pathlib import Path
from typing import Callable, get_args

import numpy as np

from inference.allocator import trim_process_heap
from inference.api import (
    MAX_BATCH,
    MAX_PIXELS,
    MAX_PROMPT_CHARS,
    MAX_SIDE,
    MAX_STEPS,
    Cancelled,
    Event,
    Failed,
    Finished,
    GenerationCancelled,
    GenerationRequest,
    InferenceError,
    LoraSpec,
    Mode,
    ModelError,
    Notice,
    OutOfMemory,
    Preview,
    Progress,
    RequestError,
)
from inference.schedulers import check_sampler

log = logging.getLogger(__name__)

SD_FAMILIES = ("sd15", "sdxl")
MAX_SEED = 2**63 - 1 - MAX_BATCH
MAX_CLIP_SKIP = 12
MAX_MASK_BLUR = 256
CFG_RANGE = (1.0, 30.0)
# What torch's allocators say when they fail: CUDA/MPS "out of memory", the CPU allocator
# "DefaultCPUAllocator: can't allocate memory" (and "not enough memory" on some builds).
OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")
OUT_OF_MEMORY_MESSAGE = (
    "The device ran out of memory; memory was freed — try a smaller size, fewer images or a smaller model."
)


class Engine:
    """Runs generation requests against models from a ModelManager-like object (duck-typed:
    `load(name, *, vae=None)`, `lora_path(name)`, `embeddings()`, `taesd_decoder(family)`)."""

    def __init__(self, models, *, device: str | None = None, fast_path=None):
        from inference.preview import PreviewRenderer

        self.models = models
        self.device = device
        self.fast_path = fast_path  # inference.sd.fastpath.FastPathHook, or None: always the plain UNet
        self.previews = PreviewRenderer()
        self._applied_loras: dict[int, tuple] = {}  # id(model) -> the LoRA list last applied to it
        self._tiny_edit: tuple | None = None  # (name, EditModel) of the last built-in edit model

    # ---- the one entry point --------------------------------------------------------------------

    def run(self, request: GenerationRequest, on_event: Callable[[Event], None], cancel: threading.Event) -> None:
        progress = RunProgress()
        outcome: Event | None = None
        out_of_memory = False
        try:
            self._run(request, on_event, cancel, progress)
        except GenerationCancelled:
            outcome = Cancelled(step=progress.finished)
        except InferenceError as error:
            out_of_memory = isinstance(error, OutOfMemory)
            outcome = Failed(str(error))
        except Exception as error:  # the contract: every failure becomes one Failed event
            out_of_memory = is_out_of_memory(error)
            if out_of_memory:
                # The text, not the error: a handler that keeps records would keep its frames' tensors.
                log.warning("out of memory during generation: %s", str(error))
                outcome = Failed(OUT_OF_MEMORY_MESSAGE)
            else:
                log.exception("generation failed")
                outcome = Failed(unexpected_failure_message(error))
        if out_of_memory:
            # Only past the except clauses is the failed step's traceback gone, and with it the
            # frames holding its tensors: now collecting and emptying the device cache frees them.
            free_device_memory()
        if outcome is not None:
            on_event(outcome)
        # Every generation ends with the freed activations handed back to the system: the allocator
        # keeps them while a generation runs (inference.allocator), not between generations.
        trim_process_heap()

    def _run(self, request, on_event, cancel, progress: RunProgress) -> None:
        validate_request(request)
        if cancel.is_set():
            raise GenerationCancelled()
        if request.mode == "edit":
            self.run_edit(request, on_event, cancel)
            return
        model = self.prepare_model(request, on_event)
        self.run_sd(model, request, on_event, cancel, progress)

    # ---- edit models ----------------------------------------------------------------------------

    def run_edit(self, request, on_event, cancel) -> None:
        """Instruction-edit models run their own diffusers pipelines (inference/edit)."""
        from inference.edit import BUILTIN_EDIT_MODELS, build_tiny_edit, run_edit

        if request.model in BUILTIN_EDIT_MODELS:
            # Built in code (random weights); kept while the same one is asked for again.
            if self._tiny_edit is None or self._tiny_edit[0] != request.model:
                self._tiny_edit = None
                self._tiny_edit = (request.model, build_tiny_edit(request.model))
            model = self._tiny_edit[1]
        else:
            self._tiny_edit = None
            model = self.models.load_edit_pipeline(request.model)
        run_edit(model, request, on_event, cancel)

    # ---- SD1.5 / SDXL ----------------------------------------------------------------------------

    def prepare_model(self, request: GenerationRequest, on_event: Callable[[Event], None] | None = None):
        model = self.models.load(request.model, vae=request.vae)
        family = getattr(model, "family", None)
        if family not in SD_FAMILIES:
            raise RequestError(
                f"The model {request.model!r} is a {family} model, which runs in the edit mode only."
            )
        if self.device is not None and str(model.device) != str(self.device):
            for part in (model.unet, model.vae, model.text_encoder, model.text_encoder_2):
                if part is not None:
                    part.to(self.device)
            model.device = self.device
        if self.fast_path is not None:
            self.fast_path.prepare(model, on_event)
        return model

    def run_sd(self, model, request: GenerationRequest, on_event, cancel, progress: RunProgress) -> None:
        from inference.sd.loop import generate_image
        from inference.sd.modes import build_extensions
        from inference.sd.prompt import check_clip_skip, encode_prompt_pair, parse_lora_tags

        check_model_fits_request(model, request)
        check_clip_skip(model, request.clip_skip)
        prompt, prompt_loras = parse_lora_tags(request.prompt)
        negative, negative_loras = parse_lora_tags(request.negative)
        loras = list(request.loras) + prompt_loras + negative_loras
        if request.lcm and request.lcm_lora:
            loras.append(LoraSpec(name=request.lcm_lora, weight=1.0))
        self.apply_loras(model, loras)
        self.load_embeddings(model, [prompt, negative, *prompt_texts_of_parts(request)])
        sampler = "LCM" if request.lcm else request.sampler
        cond, uncond = encode_prompt_pair(model, prompt, negative, request.clip_skip)
        taesd_path = self.preview_decoder(model, request, on_event)

        first_seed = resolve_seed(request.seed)
        images, parameters = [], []
        emit_notice_once = NoticeOnce(on_event)  # each image's extensions warn alike: tell it once
        for batch_index in range(request.batch_count):
            seed = first_seed + batch_index

            def on_step(step_index: int, total: int, preview_latents, _offset=batch_index) -> None:
                overall_total = total * request.batch_count
                step = _offset * total + step_index + 1
                progress.finished = step
                on_event(Progress(step=step, total=overall_total))
                if request.preview != "none":
                    on_event(Preview(step=step, image=self.render_preview(preview_latents, model, taesd_path)))
                if cancel.is_set():
                    raise GenerationCancelled()

            image = generate_image(
                model,
                request,
                seed=seed,
                cond=cond,
                uncond=uncond,
                extensions=build_extensions(request, model),
                on_step=on_step,
                emit=emit_notice_once,
                sampler=sampler,
                loras=tuple(loras),
                apply_loras=lambda specs: self.apply_loras(model, list(specs)),
            )
            images.append(image)
            parameters.append(generation_parameters(request, model, sampler, seed, batch_index, loras, image))
            if cancel.is_set() and batch_index + 1 < request.batch_count:
                raise GenerationCancelled()
        on_event(Finished(images=tuple(images), parameters=tuple(parameters)))

    def apply_loras(self, model, loras: list[LoraSpec]) -> None:
        """Set exactly these LoRAs on the model (none = base weights); skipped when nothing changed."""
        resolved = tuple((self.resolve_lora(spec.name), float(spec.weight)) for spec in loras)
        if self._applied_loras.get(id(model), ()) == resolved:
            return
        from inference.adapters import apply_loras

        apply_loras(model, list(resolved))
        self._applied_loras[id(model)] = resolved

    def resolve_lora(self, name: str) -> Path:
        candidate = Path(name)
        if candidate.suffix and candidate.is_file():
            return candidate
        return Path(self.models.lora_path(name))

    def load_embeddings(self, model, texts: list[str]) -> None:
        """Load the textual-inversion embeddings the prompts name that this model has not loaded yet."""
        from inference.sd.prompt import find_embedding_names

        embeddings_of = getattr(self.models, "embeddings", None)
        available = dict(embeddings_of(model.family)) if embeddings_of else {}
        if not available:
            return
        from inference.adapters import EMBEDDINGS_KEY, load_embeddings

        loaded = model.extra.get(EMBEDDINGS_KEY, {})
        wanted = [name for name in find_embedding_names(texts, list(available)) if name not in loaded]
        if wanted:
            load_embeddings(model, {name: Path(available[name]) for name in wanted})

    def preview_decoder(self, model, request, on_event) -> Path | None:
        """The TAESD decoder file for this model's family when asked for and present, else None (linear)."""
        if request.preview != "taesd":
            return None
        find = getattr(self.models, "taesd_decoder", None)
        path = find(model.family) if find else None
        if path is None:
            on_event(Notice("No TAESD decoder was found in vae_approx; previews use the fast approximation."))
            return None
        try:
            self.previews.taesd(Path(path))
        except ModelError as error:
            on_event(Notice(f"{error} Previews use the fast approximation."))
            return None
        return Path(path)

    def render_preview(self, latents, model, taesd_path: Path | None) -> np.ndarray:
        return self.previews.render(latents, model.family, taesd_path)


def prompt_texts_of_parts(request: GenerationRequest) -> list[str]:
    """The prompts of regions and composite pieces: their embeddings must be loaded too."""
    parts = [*request.regions, *request.pieces]
    return [text for part in parts for text in (part.prompt, part.negative)]


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


# ---- validation (before any model work) ---------------------------------------------------------


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def validate_request(request: GenerationRequest) -> None:
    """Raise RequestError with one sentence for the first thing wrong with the request."""
    if request.mode not in get_args(Mode):
        raise RequestError(f"Unknown mode {request.mode!r}; choose one of: {', '.join(get_args(Mode))}.")
    validate_size(request.width, request.height, "The requested size")
    validate_range("steps", request.steps, 1, MAX_STEPS)
    validate_range("batch_count", request.batch_count, 1, MAX_BATCH)
    validate_range("clip_skip", request.clip_skip, 1, MAX_CLIP_SKIP)
    if not is_number(request.cfg) or not CFG_RANGE[0] <= request.cfg <= CFG_RANGE[1]:
        raise RequestError(f"cfg must be a number from {CFG_RANGE[0]:g} to {CFG_RANGE[1]:g}, not {request.cfg!r}.")
    if not is_int(request.seed) or not -1 <= request.seed <= MAX_SEED:
        raise RequestError(f"seed must be -1 (random) or a whole number from 0 to {MAX_SEED}, not {request.seed!r}.")
    if not is_number(request.strength) or not 0.0 <= request.strength <= 1.0:
        raise RequestError(f"strength must be between 0 and 1, not {request.strength!r}.")
    for name in ("prompt", "negative"):
        text = getattr(request, name)
        if not isinstance(text, str):
            raise RequestError(f"The {name} must be text.")
        if len(text) > MAX_PROMPT_CHARS:
            raise RequestError(f"The {name} is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}.")
    if not request.lcm:
        check_sampler(request.sampler)
    validate_choice("preview", request.preview, ("linear", "taesd", "none"))
    validate_choice("mask_mode", request.mask_mode, ("masked", "not_masked"))
    validate_choice("masked_content", request.masked_content, ("fill", "original", "latent_noise", "latent_nothing"))
    validate_choice("inpaint_area", request.inpaint_area, ("whole", "only_masked"))
    validate_range("padding", request.padding, 0, MAX_SIDE)
    validate_range("mask_blur", request.mask_blur, 0, MAX_MASK_BLUR)
    for lora in request.loras:
        if not is_number(lora.weight):
            raise RequestError(f"The LoRA {lora.name!r} has a weight that is not a finite number.")
    validate_images(request)


def validate_size(width, height, what: str) -> None:
    if not is_int(width) or not is_int(height) or width <= 0 or height <= 0:
        raise RequestError(f"{what} must be positive whole numbers of pixels, not {width!r} x {height!r}.")
    if width % 8 or height % 8:
        raise RequestError(f"{what} {width}x{height} is not a multiple of 8 pixels on each side.")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise RequestError(f"{what} {width}x{height} is larger than the limit of {MAX_SIDE} pixels per side.")


def validate_range(name: str, value, low: int, high: int) -> None:
    if not is_int(value) or not low <= value <= high:
        raise RequestError(f"{name} must be a whole number from {low} to {high}, not {value!r}.")


def validate_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RequestError(f"Unknown {name} {value!r}; choose one of: {', '.join(choices)}.")


def validate_images(request: GenerationRequest) -> None:
    image = request.init_image
    canvas_shape = (request.height, request.width)
    # Only inpaint (alone or under regions) cuts its own crop out of a canvas of another size.
    crops_to_generation = (
        request.inpaint_area == "only_masked" and request.mask is not None and request.mode in ("inpaint", "regions")
    )
    if image is not None:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise RequestError("The input image must be an HxWx3 array of 8-bit RGB.")
        if image.shape[0] > MAX_SIDE or image.shape[1] > MAX_SIDE:
            raise RequestError(f"The input image {image.shape[1]}x{image.shape[0]} is larger than {MAX_SIDE} pixels per side.")
        if image.shape[:2] != canvas_shape and not crops_to_generation and request.mode != "edit":
            raise RequestError(
                f"The input image is {image.shape[1]}x{image.shape[0]} but the request is {request.width}x{request.height}."
            )
        canvas_shape = image.shape[:2]
    sketched = request.sketch_mask is not None  # an inpaint sketch's strokes are a mask of their own
    if request.mode == "inpaint" and (image is None or (request.mask is None and not sketched)):
        raise RequestError("Inpainting needs both an input image and a mask.")
    if request.mode == "edit" and image is None:
        raise RequestError("Editing needs an input image.")
    if request.mask is not None:
        validate_mask("The inpaint mask", request.mask, canvas_shape)
        regenerated = request.mask if request.mask_mode == "masked" else 1.0 - request.mask
        if request.mode == "inpaint" and not sketched and not (regenerated > 0).any():
            raise RequestError("The inpaint mask is empty: paint the area to regenerate.")
    if request.sketch_mask is not None:
        validate_mask("The sketch mask", request.sketch_mask, canvas_shape)
    for index, region in enumerate(request.regions, start=1):
        validate_mask(f"The mask of region {index}", region.mask, canvas_shape)
    for index, piece in enumerate(request.pieces, start=1):
        validate_mask(f"The mask of piece {index}", piece.mask, canvas_shape)
    if request.collage_alpha is not None:
        alpha = request.collage_alpha
        if not isinstance(alpha, np.ndarray) or alpha.ndim != 3 or alpha.shape[1:] != canvas_shape:
            raise RequestError("The collage alpha must be an N x H x W array at the canvas size.")


def validate_mask(what: str, mask, shape: tuple[int, int]) -> None:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise RequestError(f"{what} must be a 2-D HxW array.")
    if mask.shape != tuple(shape):
        raise RequestError(f"{what} is {mask.shape[1]}x{mask.shape[0]} but the image is {shape[1]}x{shape[0]}.")
    values = mask.astype(np.float32, copy=False)
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise RequestError(f"{what} must hold values between 0 and 1.")


def check_model_fits_request(model, request: GenerationRequest) -> None:
    """Checks that need the loaded model."""
    scale = model.vae_scale_factor
    if request.width % scale or request.height % scale:
        raise RequestError(f"The size must be a multiple of {scale} pixels for {model.name}.")


# ---- results ----------------------------------------------------------------------------------


def resolve_seed(seed: int) -> int:
    """-1 picks a fresh random seed (from the OS, not the global RNG other code may have seeded)."""
    if seed == -1:
        return random.SystemRandom().randrange(0, 2**32)
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
        "vae": request.vae,
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


# ---- failures ---------------------------------------------------------------------------------


def is_out_of_memory(error: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError / torch.OutOfMemoryError, and backends that raise a RuntimeError saying so."""
    if isinstance(error, MemoryError):
        return True
    if type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(words in text for words in OUT_OF_MEMORY_WORDS)


def free_device_memory() -> None:
    gc.collect()
    trim_process_heap()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        mps.empty_cache()


def unexpected_failure_message(error: BaseException) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return f"The generation failed unexpectedly ({type(error).__name__}: {detail}); the log has the details."
