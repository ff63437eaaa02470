"""What every backend offers: the Engine's contract plus a name for the job record.

`run(request, on_event, cancel)` emits Progress/Preview/Notice events and then exactly one of
Finished, Failed or Cancelled, and never raises (the Engine's contract, inference/engine.py).
`execute` is the same run for a pool: it raises `BackendLost` instead of emitting Failed when the
backend itself went away mid-job, so the pool can re-run the job elsewhere.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

from inference.api import Event, GenerationRequest, InferenceError

LOCAL_BACKEND = "local"


class BackendLost(InferenceError):
    """The backend stopped answering with the job on it; the job can run again on another backend."""


class Backend(Protocol):
    name: str  # "local", or the server's URL: what the job record's `backend` says

    def run(self, request: GenerationRequest, on_event: Callable[[Event], None], cancel: threading.Event) -> None: ...

    def execute(self, request: GenerationRequest, on_event: Callable[[Event], None],
                cancel: threading.Event) -> None: ...
