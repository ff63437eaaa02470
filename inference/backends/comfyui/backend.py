"""One ComfyUI server as a Collagen backend: request in, the same events as the local engine out.

A job, top to bottom:

    1. validate           the engine's own request checks, before anything is sent
    2. prepare            pixel space in Collagen: inpaint crop/blur/grid mask, refine strength map,
                          region and piece masks in generation space (the local extensions' own code)
    3. server models      /object_info (cached; asked again when a name is missing): a model the
                          server lacks is one sentence here, before any upload
    4. per batch image    graph (seed + index) -> uploads -> /prompt -> websocket events until done
    5. result             /history + /view: the decoded PNG goes through the local paste-back and
                          colour match (the extensions' `finish`), so outside the mask the output
                          is the input byte for byte, exactly as on the local engine
    6. record             the local engine's parameters, plus `backend` = the server's URL

Progress counts sampler steps over the whole job (all samplers of a composite graph, all batch
images); previews are the server's own (its `--preview-method`), drawn like local previews.
Cancel takes the prompt out of the queue and interrupts it (ComfyUI stops within a step).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np

from inference.api import (
    Cancelled,
    Event,
    Failed,
    Finished,
    GenerationCancelled,
    GenerationRequest,
    InferenceError,
    LoraSpec,
    Notice,
    Preview,
    Progress,
    RequestError,
)
from inference.backends.base import BackendLost
from inference.backends.comfyui.client import (
    ComfyClient,
    ServerAddress,
    ServerLost,
    ServerUnavailable,
    decode_png,
)
from inference.backends.comfyui.graph import (
    GraphInputs,
    GraphPlan,
    PieceInput,
    RegionInput,
    ServerModels,
    build_graph,
    find_file,
)

RECEIVE_WAIT_S = 0.2  # how often the wait for events looks at the cancel flag
CANCEL_WAIT_S = 30.0
HISTORY_WAIT_S = 30.0  # how long a finished prompt may take to appear in /history  # how long an interrupted prompt may take to say it stopped
LATENT_CELL = 8  # pixels per latent pixel of the SD families a ComfyUI backend runs


@dataclass
class RemoteModel:
    """What the local paste-back code asks of a model (its latent grid) and what the record names."""

    name: str
    vae_scale_factor: int = LATENT_CELL
    inpaint: bool = False
    family: str | None = None
    model_hash: str | None = None
    builtin: bool = False


@dataclass
class PreparedJob:
    ctx: object  # the DenoiseContext the extensions prepared (crop box, source image)
    extensions: list
    inputs: GraphInputs
    sampler: str
    loras: tuple[LoraSpec, ...]


class ComfyUIBackend:
    """A ComfyUI server; `run` never raises, `execute` raises BackendLost when the server goes away."""

    def __init__(self, address: ServerAddress | str, *, timeout: float | None = None):
        self.address = address if isinstance(address, ServerAddress) else ServerAddress(address)
        self.client = ComfyClient(self.address) if timeout is None else ComfyClient(self.address, timeout=timeout)
        self.name = self.address.url
        self._models: ServerModels | None = None

    # ---- the backend contract ----

    def run(self, request: GenerationRequest, on_event: Callable[[Event], None], cancel: threading.Event) -> None:
        try:
            self.execute(request, on_event, cancel)
        except BackendLost as error:
            on_event(Failed(str(error)))

    def execute(self, request: GenerationRequest, on_event: Callable[[Event], None], cancel: threading.Event) -> None:
        progress = JobProgress()
        try:
            self.run_job(request, on_event, cancel, progress)
        except GenerationCancelled:
            on_event(Cancelled(step=progress.finished))
        except (ServerLost, ServerUnavailable) as error:
            raise BackendLost(str(error)) from None
        except InferenceError as error:
            on_event(Failed(str(error)))
        except Exception as error:  # noqa: BLE001 - the contract: every failure is one Failed event
            from inference.engine import unexpected_failure_message

            on_event(Failed(unexpected_failure_message(error)))

    # ---- what the server has ----

    def server_models(self, *, refresh: bool = False) -> ServerModels:
        if self._models is None or refresh:
            self._models = ServerModels.from_object_info(self.client.object_info())
        return self._models

    def models_for(self, request: GenerationRequest, loras: tuple[LoraSpec, ...]) -> ServerModels:
        """The server's listing, asked again when it lacks something the request names (a file added since)."""
        models = self.server_models()
        wanted = [(request.model, models.checkpoints)] + [(lora.name, models.loras) for lora in loras]
        if request.vae:
            wanted.append((request.vae, models.vaes))
        if any(find_file(name, available) is None for name, available in wanted):
            models = self.server_models(refresh=True)
        return models

    # ---- one job ----

    def run_job(self, request: GenerationRequest, on_event, cancel: threading.Event, progress: JobProgress) -> None:
        from inference.records import generation_parameters, resolve_seed
        from inference.validate import validate_request

        validate_request(request)
        job = prepare_job(request, on_event)
        models = self.models_for(request, job.loras)
        first_seed = resolve_seed(request.seed)
        plans = [build_graph(request, job.inputs, models, seed=first_seed + index, sampler=job.sampler)
                 for index in range(request.batch_count)]  # every name checked before anything is sent
        if cancel.is_set():
            raise GenerationCancelled()
        progress.total = sum(plan.total_steps for plan in plans)
        remote_model = RemoteModel(name=find_file(request.model, models.checkpoints) or request.model)
        images, parameters = [], []
        preview_rect = job.ctx.crop_box or job.ctx.canvas_box  # where the step previews are drawn
        for index, plan in enumerate(plans):
            generated = self.run_plan(plan, on_event, cancel, progress, preview_rect)
            image = finish_image(job, generated)
            images.append(image)
            record = generation_parameters(request, remote_model, job.sampler, first_seed + index, index,
                                           job.loras, image)
            record["backend"] = self.name
            parameters.append(record)
        changed = job.ctx.changed_box or job.ctx.canvas_box  # the batch's images share the mask
        on_event(Finished(images=tuple(images), parameters=tuple(parameters), rect=changed))

    def run_plan(self, plan: GraphPlan, on_event, cancel: threading.Event, progress: JobProgress,
                 preview_rect=None) -> np.ndarray:
        client_id = uuid.uuid4().hex
        socket = self.client.open_socket(client_id)  # before queueing: no event of the prompt is missed
        try:
            for upload in plan.uploads:
                self.client.upload(upload)
            prompt_id = self.client.queue_prompt(plan.graph, client_id)
            PromptWatch(self.client, socket, plan, prompt_id, on_event, cancel, progress, preview_rect).wait()
        finally:
            socket.close()
        return self.fetch_result(plan, prompt_id)

    def fetch_result(self, plan: GraphPlan, prompt_id: str) -> np.ndarray:
        # ComfyUI announces the end on the websocket just before it files the prompt's history entry.
        deadline = time.monotonic() + HISTORY_WAIT_S
        history = self.client.history(prompt_id)
        while not history.get("status") and time.monotonic() < deadline:
            time.sleep(0.05)
            history = self.client.history(prompt_id)
        images = history.get("outputs", {}).get(plan.output_node, {}).get("images", [])
        if not images:
            raise InferenceError(f"The ComfyUI server at {self.name} finished the job without an image.")
        return decode_png(self.client.view(images[0]), "a result")


class JobProgress:
    """Sampler steps finished over the whole job, and how many there are."""

    def __init__(self) -> None:
        self.finished = 0
        self.total = 0


class PromptWatch:
    """Follows one queued prompt on the websocket until it is done, failed, or cancelled."""

    def __init__(self, client: ComfyClient, socket, plan: GraphPlan, prompt_id: str, on_event, cancel, progress,
                 preview_rect=None):
        self.client = client
        self.preview_rect = preview_rect
        self.socket = socket
        self.plan = plan
        self.prompt_id = prompt_id
        self.on_event = on_event
        self.cancel = cancel
        self.progress = progress
        self.base = progress.finished  # steps of earlier batch images
        self.started = False
        self.node_steps: dict[str, int] = {}  # sampler node -> its steps finished
        self.cancel_sent_at: float | None = None

    def wait(self) -> None:
        while True:
            self.check_cancel()
            message = self.socket.receive(RECEIVE_WAIT_S)
            if message is None:
                continue
            if message.kind == "preview":
                if self.started:
                    image = fit_preview(message.image, self.plan.width, self.plan.height)
                    self.on_event(Preview(step=self.progress.finished, image=image, rect=self.preview_rect))
                continue
            if message.data.get("prompt_id") not in (None, self.prompt_id):
                continue
            if self.handle(message.kind, message.data):
                return

    def handle(self, kind: str, data: dict) -> bool:
        """True when the prompt has ended."""
        if kind == "execution_start":
            self.started = True
        elif kind == "progress" and data.get("prompt_id") == self.prompt_id:
            self.started = True
            self.report_progress(str(data.get("node")), int(data.get("value", 0)))
        elif kind == "execution_error":
            kind_name = data.get("exception_type", "error")
            detail = " ".join(str(data.get("exception_message", "")).split())[:300]
            raise InferenceError(f"The ComfyUI server could not run the job ({kind_name}: {detail}).")
        elif kind == "execution_interrupted":
            raise GenerationCancelled()
        elif kind == "execution_success" or (kind == "executing" and data.get("node") is None
                                              and data.get("prompt_id") == self.prompt_id):
            return True
        return False

    def report_progress(self, node: str, value: int) -> None:
        """Steps are summed over the graph's samplers in whatever order the server runs them."""
        if node not in self.plan.sampler_steps:
            return
        self.node_steps[node] = max(self.node_steps.get(node, 0), min(value, self.plan.sampler_steps[node]))
        step = self.base + sum(self.node_steps.values())
        if step > self.progress.finished:
            self.progress.finished = step
            self.on_event(Progress(step=step, total=self.progress.total))

    def check_cancel(self) -> None:
        if not self.cancel.is_set():
            return
        if self.cancel_sent_at is None:
            self.cancel_sent_at = time.monotonic()
            self.client.cancel(self.prompt_id)
            if not self.started:
                raise GenerationCancelled()  # taken out of the queue before it ran
        elif time.monotonic() - self.cancel_sent_at > CANCEL_WAIT_S:
            raise GenerationCancelled()  # asked to stop; the server is slow to say so


def fit_preview(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A server preview no larger than the generation (ComfyUI enlarges small ones to 512 px)."""
    if image.shape[1] <= width and image.shape[0] <= height:
        return image
    from PIL import Image

    picture = Image.fromarray(image)
    picture.thumbnail((width, height), Image.Resampling.BILINEAR)
    return np.asarray(picture)


# ---- pixel space, on Collagen's side --------------------------------------------------------------


def prepare_job(request: GenerationRequest, emit: Callable[[Event], None]) -> PreparedJob:
    """Run the local extensions' pixel-space preparation and collect what the graph needs."""
    from inference.sd.context import DenoiseContext
    from inference.sd.inpaint import InpaintExtension
    from inference.sd.loop import prepare_source_image
    from inference.sd.prompt import parse_lora_tags
    from inference.sd.region_prompts import prepare_region_texts

    if request.mode == "edit":
        raise RequestError("The edit mode does not run on a ComfyUI backend yet; run it on the local engine.")
    prompt, prompt_loras = parse_lora_tags(request.prompt)
    negative, negative_loras = parse_lora_tags(request.negative)
    loras = tuple(request.loras) + tuple(prompt_loras) + tuple(negative_loras)
    if request.lcm and request.lcm_lora:
        loras += (LoraSpec(name=request.lcm_lora, weight=1.0),)
    sampler = "LCM" if request.lcm else request.sampler

    ctx = DenoiseContext(model=RemoteModel(name=request.model), request=request, seed=0, width=request.width,
                         height=request.height, generator=None, emit=emit)
    ctx.canvas_image = request.init_image
    extensions = pixel_extensions(request)
    for extension in extensions:
        extension.prepare_image(ctx)
    prepare_source_image(ctx)

    inputs = GraphInputs(width=request.width, height=request.height, prompt=prompt, negative=negative, loras=loras,
                         init_image=ctx.init_image, composite_step=float(request.composite_step))
    if ctx.init_image is not None:
        # ctx.request: refine replaced the strength with its map's largest value.
        steps = int(request.steps)
        inputs.start_step = max(steps - min(int(steps * float(ctx.request.strength)), steps), 0)
    for extension in extensions:
        if isinstance(extension, InpaintExtension):
            cells = np.ones((LATENT_CELL, LATENT_CELL), dtype=np.float32)
            inputs.noise_mask = np.kron(extension.latent_mask, cells)
            inputs.zero_masked_latents = request.masked_content in ("latent_nothing", "latent_noise")
        elif getattr(extension, "strength_map", None) is not None:
            top = float(extension.strength_map.max())
            inputs.strength_map = extension.strength_map / top if top > 0 else extension.strength_map
    regions = []
    for region in request.regions:
        region_prompt, region_negative, region_loras = prepare_region_texts(region, "")
        if region_loras:
            raise RequestError("Per-region LoRAs do not run on a ComfyUI backend yet; run this job on the local engine.")
        regions.append(RegionInput(prompt=region_prompt, negative=region_negative, strength=float(region.strength),
                                   mask=ctx.to_generation_space(region.mask)))
    inputs.regions = tuple(regions)
    if request.mode == "composite":
        inputs.pieces = tuple(prepare_piece(ctx, piece) for piece in request.pieces)
        if not inputs.pieces:
            raise RequestError("Composite mode needs at least one piece.")
    if regions:
        emit(Notice("On a ComfyUI backend regions run as ComfyUI's masked area prompts, close to but not the"
                    " same as Collagen's own region methods."))
    return PreparedJob(ctx=ctx, extensions=extensions, inputs=inputs, sampler=sampler, loras=loras)


def pixel_extensions(request: GenerationRequest) -> list:
    """The local extensions whose pixel-space halves (prepare_image, finish) the remote path reuses."""
    from inference.sd.inpaint import InpaintExtension
    from inference.sd.refine import RefineExtension
    from inference.sd.sketch import sketch_extension, uses_sketch

    extensions = []
    if uses_sketch(request):
        extensions.append(sketch_extension(request))
    elif request.mode == "inpaint" or (request.mode == "regions" and request.mask is not None):
        extensions.append(InpaintExtension.from_request(request))
    if request.mode == "refine":
        extensions.append(RefineExtension.from_request(request))
    return extensions


def prepare_piece(ctx, piece) -> PieceInput:
    from inference.sd.prompt import parse_lora_tags

    prompt, prompt_loras = parse_lora_tags(piece.prompt)
    negative, negative_loras = parse_lora_tags(piece.negative)
    if prompt_loras or negative_loras:
        raise RequestError("LoRA tags in composite pieces do not run on a ComfyUI backend yet.")
    image = ctx.to_generation_space(piece.image, is_mask=False) if piece.image is not None else None
    return PieceInput(prompt=prompt, negative=negative, mask=ctx.to_generation_space(piece.mask), image=image)


def finish_image(job: PreparedJob, generated: np.ndarray) -> np.ndarray:
    """The server's image through the local paste-back (and colour match), at the canvas size."""
    from inference.sd.loop import finish_image as finish_with_extensions

    ctx = job.ctx
    if generated.shape[:2] != (ctx.height, ctx.width):
        raise InferenceError(f"The ComfyUI server returned a {generated.shape[1]}x{generated.shape[0]} image for a"
                             f" {ctx.width}x{ctx.height} job.")
    return finish_with_extensions(ctx, job.extensions, generated)
