"""A fake engine with the real Engine's contract: blocking `run(request, on_event, cancel)`."""

from __future__ import annotations

import threading
import time

import numpy as np

from inference.api import (
    Finished,
    GenerationCancelled,
    InferenceError,
    Notice,
    Preview,
    Progress,
)


class FakeEngine:
    """Steps of `step_seconds`, a Progress and a Preview each, then Finished.

    `fail_with` raises that exception at step `fail_at`; `notice` is emitted first when set;
    `changed_rect` is the Finished event's rect (None: the whole canvas).
    """

    def __init__(self, step_seconds: float = 0.01, *, fail_with: BaseException | None = None, fail_at: int = 1,
                 notice: str | None = None, preview_scale: int = 1, changed_rect: tuple | None = None):
        self.changed_rect = changed_rect
        self.step_seconds = step_seconds
        self.fail_with = fail_with
        self.fail_at = fail_at
        self.notice = notice
        self.preview_scale = preview_scale
        self.requests = []
        self.threads = []

    def run(self, request, on_event, cancel: threading.Event):
        self.requests.append(request)
        self.threads.append(threading.current_thread().name)
        if self.notice:
            on_event(Notice(self.notice))
        h, w = request.height, request.width
        for step in range(1, request.steps + 1):
            if cancel.is_set():
                raise GenerationCancelled()
            time.sleep(self.step_seconds)
            if self.fail_with is not None and step >= self.fail_at:
                raise self.fail_with
            on_event(Progress(step, request.steps))
            ph, pw = max(1, h // self.preview_scale), max(1, w // self.preview_scale)
            on_event(Preview(step, np.full((ph, pw, 3), step % 256, np.uint8)))
        if cancel.is_set():
            raise GenerationCancelled()
        seed = request.seed if request.seed >= 0 else 1234
        images = tuple(np.full((h, w, 3), (40 * (i + 1)) % 256, np.uint8) for i in range(request.batch_count))
        params = tuple({"prompt": request.prompt, "seed": seed + i, "steps": request.steps,
                        "sampler": request.sampler, "model": request.model} for i in range(request.batch_count))
        on_event(Finished(images, params, rect=self.changed_rect))


class BrokenFactory:
    """An engine factory whose model stack cannot load."""

    def __call__(self):
        raise InferenceError("The model stack could not be loaded: torch is missing.")
