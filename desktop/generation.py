"""The generation controller: document -> request -> worker -> events -> canvas.

`generate()` freezes the document (`compose`), maps it to a request (`request_builder`) and runs
it on the inference worker as a `Job` with an explicit state. The events come back on the GUI
thread (plain async code on the qasync loop) and are dispatched in one place, `_on_event`:

- Progress -> `progress_changed(job, step, total, seconds_left)` (a progress bar with time left);
- Preview  -> `preview_ready(rect, rgb)`, the newest only (the worker coalesces bursts);
- Finished -> the job's images become the staging candidates over the generated area;
- Failed   -> `failed(message)` (one sentence for a dialog), the window stays usable;
- Notice   -> `notice(message)`; Cancelled -> the preview goes away.

Staging: accept (a new ImageLayer, one undo step carrying the generation parameters), next /
previous candidate, discard, or regenerate the same frozen request with a new seed.

Every finished image also goes into the document's Generations store (canvas.model.generations)
with its record, whatever happens to it in the strip: it is saved with the project, accept marks
it accepted, and `place_generation` puts any kept one back on the canvas (one undo step).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from canvas.model.commands import AddLayer, SetSetting
from canvas.model.compose import compose
from canvas.model.document import Document, DocumentError, GenerationSettings
from canvas.model.generations import Generation, GenerationError, dropped_notice
from canvas.model.history import Command
from canvas.model.layers import ImageLayer, Rect
from desktop.request_builder import GenerationPlan, build_plan, check_canvas_size
from desktop.worker import InferenceWorker, Started
from inference.api import (
    MAX_SEED,
    Cancelled,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    InferenceError,
    Notice,
    Preview,
    Progress,
)

log = logging.getLogger(__name__)

# Done jobs that keep their full-size images and frozen input arrays (staging, regenerate); older
# ones keep only what the history shows, so a long session does not hold every result it made.
KEEP_FULL_JOBS = 2
# Results waiting in the staging strip; past this the oldest waiting batch leaves (with a notice).
MAX_STAGED_RESULTS = 16
NO_MEMORY_TO_FREEZE = ("There is not enough memory to prepare this generation; close other documents or "
                       "try a smaller canvas.")


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)


@dataclass(eq=False)
class Job:
    """One generation: what was asked, where it lands, and what happened to it."""

    id: int
    request: GenerationRequest
    settings: dict[str, Any]  # the generation panel's values when it was asked (history restores these)
    area: Rect | None = None  # canvas area the result covers (the accepted layer's extent), from Finished
    state: JobState = JobState.QUEUED
    step: int = 0
    total: int = 0
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    first_step_at: float | None = None
    ended: float | None = None
    images: tuple[np.ndarray, ...] = ()
    parameters: tuple[dict, ...] = ()
    message: str = ""  # the failure sentence
    notices: list[str] = field(default_factory=list)
    generation_ids: tuple[str, ...] = ()  # each image's entry in the document's Generations store
    released: bool = False  # images and input arrays let go (an old job in a long session)
    plan: GenerationPlan | None = None  # the generation size and how results go back to the canvas

    @property
    def seconds_left(self) -> float:
        """Estimated from the steps done so far; -1 while unknown."""
        if self.state is not JobState.RUNNING or self.total <= 0 or self.step <= 0 or self.started is None:
            return -1.0
        now = time.monotonic()
        if self.step >= 2 and self.first_step_at is not None:
            per_step = (now - self.first_step_at) / (self.step - 1)
        else:
            per_step = now - self.started  # includes the model load: pessimistic, improves at step 2
        return max(0.0, per_step * (self.total - self.step))

    def release_payload(self) -> None:
        """Let go of the result images and the frozen input arrays; title, settings, parameters and
        state (what the history panel shows and restores) stay."""
        self.images, self.released = (), True
        self.request = replace(self.request, init_image=None, mask=None, sketch_mask=None, collage_alpha=None,
                               annotation_image=None, reference_images=(), regions=(), pieces=())
        if self.plan is not None:
            self.plan = replace(self.plan, request=self.request)

    @property
    def title(self) -> str:
        prompt = " ".join(self.request.prompt.split())
        return prompt[:60] + ("…" if len(prompt) > 60 else "") if prompt else f"({self.request.mode})"


class Staging:
    """Results waiting to be accepted or discarded: every finished job's images since the last
    accept, in order. A new batch is appended (and shown), never put in place of the waiting ones."""

    def __init__(self, job: Job, index: int = 0):
        self.jobs: list[Job] = [job]
        self.index = index

    @property
    def entries(self) -> list[tuple[Job, int]]:
        """(job, image number) of each waiting result, oldest first."""
        return [(job, i) for job in self.jobs for i in range(len(job.images))]

    def append(self, job: Job) -> None:
        """Add a finished job's results and show its first one."""
        self.jobs.append(job)
        self.index = self.count - len(job.images)

    def drop_oldest(self, limit: int) -> int:
        """Keep at most `limit` results (whole jobs, the newest always stays); returns how many went."""
        dropped = 0
        while len(self.jobs) > 1 and self.count > limit:
            gone = len(self.jobs.pop(0).images)
            dropped += gone
            self.index = max(0, self.index - gone)
        return dropped

    @property
    def key(self) -> tuple[int, ...]:
        """Which jobs are staged: the views rebuild their thumbnails when it changes."""
        return tuple(job.id for job in self.jobs)

    @property
    def job(self) -> Job:
        """The job of the shown result."""
        return self.entries[self.index][0]

    @property
    def count(self) -> int:
        return sum(len(job.images) for job in self.jobs)

    @property
    def images(self) -> list[np.ndarray]:
        return [job.images[i] for job, i in self.entries]

    @staticmethod
    def job_area(job: Job) -> Rect:
        """Where a job's results go on the canvas: the engine's Finished.rect (the whole image when
        it is empty or outside the image)."""
        image = job.images[0]
        area = (job.area or Rect(0, 0, 0, 0)).clip(image.shape[1], image.shape[0])
        return area if not area.empty else Rect(0, 0, image.shape[1], image.shape[0])

    @property
    def area(self) -> Rect:
        """Where the shown result goes on the canvas."""
        return self.job_area(self.job)

    @property
    def one_area(self) -> bool:
        """All waiting results cover the same canvas area (the overlay can hold them all)."""
        return len({self.job_area(job) for job in self.jobs}) == 1

    @property
    def candidates(self) -> list[np.ndarray]:
        """Each result cut to its job's area: what the staging overlay draws there and what accept adds."""
        return [job.images[i][self.job_area(job).slices] for job, i in self.entries]

    @property
    def parameters(self) -> dict:
        job, i = self.entries[self.index]
        return dict(job.parameters[i]) if i < len(job.parameters) else {}


def take_staging(controller: GenerationController, staging: Staging) -> None:
    if controller.staging is staging:
        controller.set_staging(None)


def give_staging_back(controller: GenerationController, staging: Staging) -> None:
    """Undo of a discard or an accept: the results are back in the strip (released ones cannot be)."""
    if any(job.released for job in staging.jobs):
        return
    current = controller.staging
    if current is None:
        controller.set_staging(staging)
    elif current is not staging:  # results that came since go after the ones brought back
        staging.jobs.extend(job for job in current.jobs if job not in staging.jobs)
        controller.set_staging(staging)


class DiscardResults(Command):
    """Throwing the waiting results away, as an undo step: Undo brings them back to the strip."""

    label = "Discard results"

    def __init__(self, controller: GenerationController, staging: Staging):
        self.controller = controller
        self.staging = staging

    def do(self, doc: Document) -> None:
        take_staging(self.controller, self.staging)

    def undo(self, doc: Document) -> None:
        give_staging_back(self.controller, self.staging)


class AcceptCandidate(AddLayer):
    """Adding an accepted result: one undo step that keeps the full generation parameters and
    marks the result accepted in the document's Generations store (Undo unmarks it)."""

    def __init__(self, layer: ImageLayer, parameters: dict, index: int | None = None, *,
                 controller: GenerationController | None = None, staging: Staging | None = None,
                 generation_id: str = ""):
        super().__init__(layer, index)
        self.parameters = dict(parameters)
        self.label = "Accept generation"
        self._staging = (controller, staging) if controller is not None and staging is not None else None
        self.generation_id = generation_id
        self._was_accepted = False

    def do(self, doc: Document) -> None:
        super().do(doc)
        entry = doc.generations.get(self.generation_id) if self.generation_id else None
        if entry is not None:
            self._was_accepted = entry.accepted
            doc.generations.set_accepted(entry.id, True)
        if self._staging is not None:
            take_staging(*self._staging)

    def undo(self, doc: Document) -> None:
        super().undo(doc)
        if self.generation_id:
            doc.generations.set_accepted(self.generation_id, self._was_accepted)
        if self._staging is not None:  # one step: the layer goes and its results are back to choose from
            give_staging_back(*self._staging)


class PlaceGeneration(AcceptCandidate):
    """A kept generation put back on the canvas as a new layer: one undo step, as an accept."""

    def __init__(self, layer: ImageLayer, entry: Generation):
        super().__init__(layer, entry.record, generation_id=entry.id)
        self.label = "Place generation"


class GenerationController(QObject):
    job_changed = Signal(object)  # Job: its state changed (queued, running, done)
    progress_changed = Signal(object, int, int, float)  # job, step, total, seconds left (-1 = unknown)
    preview_ready = Signal(object, object)  # Rect, HxWx3 uint8
    preview_cleared = Signal()
    staging_changed = Signal()  # candidates appeared, changed index, or went away
    failed = Signal(str)  # one sentence
    notice = Signal(str)
    accepted = Signal(object)  # the ImageLayer added

    def __init__(self, worker: InferenceWorker, document: Document, *, preview_method: str = "linear",
                 parent: QObject | None = None):
        super().__init__(parent)
        self.worker = worker
        self.document = document
        self.preview_method = preview_method
        self.jobs: list[Job] = []
        self.staging: Staging | None = None
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._running: Job | None = None
        self._random = random.Random()
        self._discarded: Staging | None = None  # the last discarded results stay whole for Undo

    # -- asking ----------------------------------------------------------------------------------
    def set_document(self, document: Document) -> None:
        """Another document is open: its old staging candidates do not belong to it."""
        self.cancel()
        self.set_staging(None)  # not an undo step of the document being left
        self.document = document

    def generate(self, family: str | None = None) -> Job | None:
        """Freeze the document and queue a generation; None (and `failed`) when it cannot start.
        `family`: the selected model's family from discovery (for its native size)."""
        try:
            check_canvas_size(self.document.width, self.document.height)
            composition = compose(self.document)
            plan = build_plan(composition, self.document.settings, preview=self.preview_method, family=family)
        except (InferenceError, DocumentError) as exc:
            self.failed.emit(str(exc))
            return None
        except MemoryError:  # freezing a huge canvas copies it (and more) before anything runs
            self.failed.emit(NO_MEMORY_TO_FREEZE)
            return None
        return self.submit(plan.request, composition.settings, plan=plan)

    def submit(self, request: GenerationRequest, settings: dict[str, Any] | None = None, *,
               plan: GenerationPlan | None = None) -> Job:
        job = Job(
            id=next(self._ids),
            request=request,
            settings=dict(settings if settings is not None else self.document.settings.to_dict()),
            plan=plan if plan is None or plan.request is request else replace(plan, request=request),
        )
        self.jobs.append(job)
        self.job_changed.emit(job)
        if plan is not None and plan.notice:
            job.notices.append(plan.notice)
            self.notice.emit(plan.notice)
        task = asyncio.ensure_future(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def regenerate(self) -> Job | None:
        """The staged (or last) job's frozen request again with a new random seed."""
        source = self.staging.job if self.staging else next((j for j in reversed(self.jobs)), None)
        if source is None:
            return None
        request = replace(source.request, seed=self._random.randrange(MAX_SEED + 1))
        return self.submit(request, source.settings, plan=source.plan)

    def cancel(self) -> None:
        self.worker.cancel()

    @property
    def busy(self) -> bool:
        return any(not job.state.done for job in self.jobs)

    async def wait_idle(self) -> None:
        """Until every submitted job has ended (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- events ------------------------------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        try:
            async for event in self.worker.run(job.request):
                self._on_event(job, job.plan.to_canvas(event) if job.plan is not None else event)
        except RuntimeError as exc:  # the worker was shut down under us (window closing)
            if not job.state.done:
                self._end(job, JobState.CANCELLED, str(exc))
        except asyncio.CancelledError:
            if not job.state.done:
                self._end(job, JobState.CANCELLED)
            raise

    def _on_event(self, job: Job, event: Event | Started) -> None:
        if isinstance(event, Started):
            job.state, job.started = JobState.RUNNING, time.monotonic()
            self._running = job
            self.job_changed.emit(job)
        elif isinstance(event, Progress):
            job.step, job.total = event.step, event.total
            if event.step == 1 or job.first_step_at is None:
                job.first_step_at = time.monotonic()
            self.progress_changed.emit(job, event.step, event.total, job.seconds_left)
        elif isinstance(event, Preview):
            if event.image is not None and event.image.size:
                self.preview_ready.emit(canvas_rect(event.rect, job.request), event.image)
        elif isinstance(event, Notice):
            job.notices.append(event.message)
            self.notice.emit(event.message)
        elif isinstance(event, Finished):
            job.images, job.parameters = tuple(event.images), tuple(event.parameters)
            job.area = canvas_rect(event.rect, job.request)
            self._keep(job)
            self._end(job, JobState.FINISHED)
            if job.images:
                self._stage(job)
        elif isinstance(event, Failed):
            self._end(job, JobState.FAILED, event.message)
            self.failed.emit(event.message)
        elif isinstance(event, Cancelled):
            self._end(job, JobState.CANCELLED)

    def _end(self, job: Job, state: JobState, message: str = "") -> None:
        job.state, job.ended, job.message = state, time.monotonic(), message
        if self._running is job:
            self._running = None
        self.preview_cleared.emit()
        self.job_changed.emit(job)
        self._release_old_jobs()

    def _release_old_jobs(self) -> None:
        keep = set(map(id, self.jobs[-KEEP_FULL_JOBS:]))
        for staging in (self.staging, self._discarded):
            if staging is not None:
                keep.update(map(id, staging.jobs))
        for job in self.jobs[:-KEEP_FULL_JOBS]:
            if job.state.done and not job.released and id(job) not in keep:
                job.release_payload()

    def _keep(self, job: Job) -> None:
        """Every finished image into the project's history of generations, before anything can drop it."""
        store, ids, dropped = self.document.generations, [], []
        area = tuple(Staging.job_area(job)) if job.images else None
        for i, image in enumerate(job.images):
            record = dict(job.parameters[i]) if i < len(job.parameters) else {}
            try:
                entry, gone = store.add(image, record, area=area)
            except (GenerationError, MemoryError) as exc:
                ids.append("")
                self.notice.emit(f"A result could not be kept in the project's history: {exc}")
                continue
            ids.append(entry.id)
            dropped += gone
        job.generation_ids = tuple(ids)
        if dropped:
            self.notice.emit(dropped_notice(dropped, store.budget_bytes))

    def place_generation(self, entry_id: str) -> ImageLayer | None:
        """A kept generation back on the canvas as a new layer on top (one undo step), where accept
        would have put it; None (and `failed`) when its image cannot be used."""
        entry = self.document.generations.get(entry_id)
        if entry is None:
            return None
        try:
            rgba = entry.layer_rgba()
        except (GenerationError, MemoryError) as exc:
            self.failed.emit(str(exc) if isinstance(exc, GenerationError) else NO_MEMORY_TO_FREEZE)
            return None
        x, y, _, _ = entry.placement
        seed = entry.record.get("seed", "?")
        layer = ImageLayer(name=f"Generated · seed {seed}", pixels=rgba, x=float(x), y=float(y),
                           generation=dict(entry.record))
        try:
            self.document.execute(PlaceGeneration(layer, entry))
        except DocumentError as exc:
            self.failed.emit(str(exc))
            return None
        self.document.active_layer = layer
        return layer

    # -- staging -----------------------------------------------------------------------------------
    def _stage(self, job: Job) -> None:
        if self.staging is None:
            self.staging = Staging(job)
        else:
            self.staging.append(job)
            dropped = self.staging.drop_oldest(MAX_STAGED_RESULTS)
            if dropped:
                self.notice.emit(f"{dropped} older result{'s' if dropped != 1 else ''} left the staging strip "
                                 f"(it keeps {MAX_STAGED_RESULTS}); accept the ones to keep.")
        self.staging_changed.emit()

    def set_staging(self, staging: Staging | None) -> None:
        if staging is not self.staging:
            self.staging = staging
            self.staging_changed.emit()

    def next_candidate(self) -> None:
        if self.staging and self.staging.count > 1:
            self.staging.index = (self.staging.index + 1) % self.staging.count
            self.staging_changed.emit()

    def previous_candidate(self) -> None:
        if self.staging and self.staging.count > 1:
            self.staging.index = (self.staging.index - 1) % self.staging.count
            self.staging_changed.emit()

    def select_candidate(self, index: int) -> None:
        if self.staging and 0 <= index < self.staging.count and index != self.staging.index:
            self.staging.index = index
            self.staging_changed.emit()

    def discard(self) -> None:
        """Throw the waiting results away as an undo step of the document (Undo brings them back)."""
        if self.staging is not None:
            self._discarded = self.staging
            self.document.execute(DiscardResults(self, self.staging))

    def accept(self) -> ImageLayer | None:
        """The shown candidate becomes a new image layer on top (one undo step)."""
        staging = self.staging
        if staging is None:
            return None
        job, area, pixels = staging.job, staging.area, staging.candidates[staging.index]
        rgba = np.empty((area.h, area.w, 4), np.uint8)
        rgba[..., :3] = pixels
        rgba[..., 3] = 255
        params = staging.parameters
        seed = params.get("seed", job.request.seed)
        layer = ImageLayer(name=f"Generated · seed {seed}", pixels=rgba, x=float(area.x), y=float(area.y),
                           generation=dict(params))
        _, number = staging.entries[staging.index]
        entry_id = job.generation_ids[number] if number < len(job.generation_ids) else ""
        self._discarded = staging  # kept whole for Undo, as discarded results are
        self.document.execute(AcceptCandidate(layer, {**params, "job_settings": job.settings},
                                              controller=self, staging=staging, generation_id=entry_id))
        self.document.active_layer = layer
        self.set_staging(None)
        self.accepted.emit(layer)
        return layer

    # -- history -------------------------------------------------------------------------------------
    def restore_settings(self, settings: dict[str, Any]) -> int:
        """Put a past job's settings back into the document as one undo step; returns how many changed."""
        wanted = GenerationSettings.from_dict(settings).to_dict()
        current = self.document.settings.to_dict()
        changed = [(k, v) for k, v in wanted.items() if current.get(k) != v]
        if changed:
            with self.document.history.macro("Restore generation settings"):
                for name, value in changed:
                    self.document.execute(SetSetting(name, value))
        return len(changed)

    def shutdown(self) -> None:
        self.cancel()
        for task in list(self._tasks):
            task.cancel()


def canvas_rect(box: tuple[int, int, int, int] | None, request: GenerationRequest) -> Rect:
    """The engine's (x0, y0, x1, y1) as a Rect; None (an engine that does not say) is the whole canvas."""
    if box is None:
        canvas = request.init_image
        height, width = canvas.shape[:2] if canvas is not None else (request.height, request.width)
        return Rect(0, 0, int(width), int(height))
    x0, y0, x1, y1 = (int(v) for v in box)
    return Rect(x0, y0, x1 - x0, y1 - y0)
