"""The inference engine: one request in, a stream of events out (ARCHITECTURE §Data flow).

`Engine.run` is called on the inference thread. It validates the request before touching a model,
loads the model through the ModelManager it was given and runs it on the loop its family's
registry entry names (inference.families): for SD1.5/SDXL it applies LoRAs and embeddings and runs
each batch item through the SD denoise loop; `edit` requests go to inference.edit. Every
outcome is an event: Progress/Preview per step, then exactly one of Finished, Failed or Cancelled.
Nothing escapes `run` as an exception, and the engine stays usable after any failure.

Progress counts loop iterations (UNet evaluations) over the whole batch: `total` is the number of
timesteps each image runs (after the strength cut; second-order samplers run more than `steps`)
times the batch count.
"""

from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from inference.allocator import trim_process_heap
from inference.api import (
    Cancelled,
    Event,
    Failed,
    Finished,
    GenerationCancelled,
    GenerationRequest,
    InferenceError,
    LoraSpec,
    ModelError,
    Notice,
    OutOfMemory,
    Preview,
    Progress,
    RequestError,
)
from inference.families import FAMILIES, Family
from inference.records import NoticeOnce, RunProgress, generation_parameters, resolve_seed, union_box
from inference.validate import validate_family_supports, validate_request

log = logging.getLogger(__name__)

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
        self.families = FAMILIES
        # The loop a family entry names -> what runs a loaded model of it. `edit` requests go to the
        # edit pipelines before any model loads (they load their own); a new loop adds its runner here.
        self.loop_runners: dict[str, Callable] = {"sd": self.run_sd, "flow": self.run_flow}
        # The manager cannot import the loaders of loops above it: a loop's loader comes with its runner.
        loaders = getattr(models, "loaders", None)
        if isinstance(loaders, dict):
            from inference.flow.load import load_flow_model

            loaders.setdefault("flow", load_flow_model)

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
        self.check_family_supports(request)
        model, family = self.prepare_model(request, on_event)
        self.loop_runners[family.loop](model, request, on_event, cancel, progress)

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

    def check_family_supports(self, request: GenerationRequest) -> None:
        """Before loading: refuse a mode or region method the model's family does not support."""
        find = getattr(self.models, "find", None)
        if find is None:
            return  # a manager without discovery: prepare_model checks after loading
        entry = self.families.find(find(request.model).family)
        if entry is not None:
            validate_family_supports(request, entry, request.model)

    def prepare_model(self, request: GenerationRequest, on_event: Callable[[Event], None] | None = None) -> tuple[Any, Family]:
        """The request's model, loaded, and its family's entry; a family that cannot run the request is refused."""
        model = self.models.load(request.model, vae=request.vae)
        family = getattr(model, "family", None)
        entry = self.families.find(family) if isinstance(family, str) else None
        if entry is None:
            raise RequestError(f"The model {request.model!r} is a {family} model, which Collagen cannot run.")
        validate_family_supports(request, entry, request.model)
        if entry.loop not in self.loop_runners:
            raise RequestError(f"The model {request.model!r} is a {entry.label} model, which Collagen cannot run yet.")
        return model, entry

    def run_sd(self, model, request: GenerationRequest, on_event, cancel, progress: RunProgress) -> None:
        from inference.sd.loop import CanvasBoxes, generate_image
        from inference.sd.modes import build_extensions
        from inference.sd.prompt import check_clip_skip, encode_prompt_pair, parse_lora_tags

        if self.device is not None and str(model.device) != str(self.device):
            for part in (model.unet, model.vae, model.text_encoder, model.text_encoder_2):
                if part is not None:
                    part.to(self.device)
            model.device = self.device
        if self.fast_path is not None:
            self.fast_path.prepare(model, on_event)

        check_model_fits_request(model, request)
        check_clip_skip(model, request.clip_skip)
        for note in [*model.extra.get("notes", ()), model.extra.get("vae_note", "")]:  # decided from the files
            if note:
                on_event(Notice(note))
        prompt, prompt_loras = parse_lora_tags(request.prompt)
        negative, negative_loras = parse_lora_tags(request.negative)
        loras = list(request.loras) + prompt_loras + negative_loras
        if request.lcm and request.lcm_lora:
            loras.append(LoraSpec(name=request.lcm_lora, weight=1.0))
        self.apply_loras(model, loras)
        for message in self.load_embeddings(model, [prompt, negative, *prompt_texts_of_parts(request)]):
            on_event(Notice(message))
        sampler = "LCM" if request.lcm else request.sampler
        cond, uncond = encode_prompt_pair(model, prompt, negative, request.clip_skip)
        taesd_path = self.preview_decoder(model, request, on_event)

        first_seed = resolve_seed(request.seed)
        images, parameters, changed = [], [], []
        emit_notice_once = NoticeOnce(on_event)  # each image's extensions warn alike: tell it once
        for batch_index in range(request.batch_count):
            seed = first_seed + batch_index
            boxes = CanvasBoxes()  # where this image's previews and result sit: the GUI draws there

            def on_step(step_index: int, total: int, preview_latents, _offset=batch_index, _boxes=boxes) -> None:
                overall_total = total * request.batch_count
                step = _offset * total + step_index + 1
                progress.finished = step
                on_event(Progress(step=step, total=overall_total))
                if request.preview != "none":
                    preview = self.render_preview(preview_latents, model, taesd_path)
                    on_event(Preview(step=step, image=preview, rect=_boxes.preview))
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
                canvas_boxes=boxes,
            )
            images.append(image)
            changed.append(boxes.changed)
            parameters.append(generation_parameters(request, model, sampler, seed, batch_index, loras, image))
            if cancel.is_set() and batch_index + 1 < request.batch_count:
                raise GenerationCancelled()
        on_event(Finished(images=tuple(images), parameters=tuple(parameters), rect=union_box(changed)))

    # ---- FLUX.1 and other flow-matching transformers ----------------------------------------------

    def run_flow(self, model, request: GenerationRequest, on_event, cancel, progress: RunProgress) -> None:
        from inference.flow.run import run_flux

        if self.device is not None and str(model.device) != str(self.device):
            for name, module in model.parts.items():
                setattr(model, name, module.to(self.device))
            model.device = self.device
        run_flux(
            model, request, on_event, cancel, progress,
            previews=self.previews,
            taesd_path=self.preview_decoder(model, request, on_event),
            apply_loras=lambda specs: self.apply_flow_loras(model, list(specs)),
        )

    def apply_flow_loras(self, model, loras: list[LoraSpec]) -> None:
        """Set exactly these LoRAs on a FLUX model (none = base weights); skipped when nothing changed."""
        resolved = tuple((self.resolve_lora(spec.name), float(spec.weight)) for spec in loras)
        if self._applied_loras.get(id(model), ()) == resolved:
            return
        from inference.flow.lora import apply_flux_loras

        apply_flux_loras(model, list(resolved))
        self._applied_loras[id(model)] = resolved

    def apply_loras(self, model, loras: list[LoraSpec]) -> None:
        """Set exactly these LoRAs on the model (none = base weights); skipped when nothing changed."""
        resolved = tuple((self.resolve_lora(spec.name), float(spec.weight)) if spec.unet_weight is None
                         else (self.resolve_lora(spec.name), float(spec.weight), float(spec.unet_weight))
                         for spec in loras)
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

    def load_embeddings(self, model, texts: list[str]) -> list[str]:
        """Load the textual-inversion embeddings the prompts name that this model has not loaded yet;
        returns a Notice sentence for each prompt word naming an embedding it cannot use."""
        from inference.adapters import family_name
        from inference.sd.prompt import embedding_notices, find_embedding_names

        embeddings_of = getattr(self.models, "embeddings", None)
        available = dict(embeddings_of(model.family)) if embeddings_of else {}
        everywhere = dict(embeddings_of()) if embeddings_of else {}
        notices = embedding_notices(texts, list(available), list(everywhere), family_name(model.family))
        if not available:
            return notices
        from inference.adapters import EMBEDDINGS_KEY, load_embeddings

        loaded = model.extra.get(EMBEDDINGS_KEY, {})
        wanted = [name for name in find_embedding_names(texts, list(available)) if name not in loaded]
        if wanted:
            load_embeddings(model, {name: Path(available[name]) for name in wanted})
        return notices

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


# ---- checks that need the model (the request was validated before loading it) ---------------


def check_model_fits_request(model, request: GenerationRequest) -> None:
    """Checks that need the loaded model."""
    scale = model.vae_scale_factor
    if request.width % scale or request.height % scale:
        raise RequestError(f"The size must be a multiple of {scale} pixels for {model.name}.")


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
