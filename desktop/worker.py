"""The one long-lived inference thread and its bridge to the asyncio (qasync) loop.

The thread owns the Engine, and with it torch and every loaded model: torch is imported there,
the first time a job needs the engine, so the window opens before the model stack loads.
Events cross back with `loop.call_soon_threadsafe` into an `asyncio.Queue`, so the GUI thread
never waits on the inference thread:

    async for event in worker.run(request):
        ...

`cancel()` sets the running job's `threading.Event`; the engine raises at its next step.
`shutdown()` cancels, asks the thread to stop and joins with a timeout; the thread is a daemon,
so even a model stuck in a C call cannot keep the process alive after the window closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Protocol

from inference.api import (
    Cancelled,
    Event,
    Failed,
    Finished,
    GenerationCancelled,
    GenerationRequest,
    InferenceError,
    OutOfMemory,
    Preview,
    Progress,
)

log = logging.getLogger(__name__)

TERMINAL_EVENTS = (Finished, Failed, Cancelled)


class EngineLike(Protocol):
    def run(self, request: GenerationRequest, on_event: Callable[[Event], None],
            cancel: threading.Event) -> Any: ...


@dataclass(frozen=True)
class Started:
    """The inference thread took the job off its queue (the job is no longer waiting)."""


WorkerEvent = Event | Started


@dataclass
class _GenerationJob:
    request: GenerationRequest
    cancel: threading.Event
    deliver: Callable[[WorkerEvent], None]
    last_step: int = 0
    ended: bool = False


@dataclass
class _CallJob:
    fn: Callable[[Any], Any]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


_STOP = object()


class InferenceWorker:
    """Runs generation requests one at a time on a single daemon thread.

    `engine_factory` is called on that thread when the first job needs the engine; it is where
    the heavy imports happen. A factory that raises turns every job into a `Failed` event, so
    the editor stays usable without a working model stack.
    """

    def __init__(self, engine_factory: Callable[[], EngineLike], *, thread_name: str = "collagen-inference"):
        self._engine_factory = engine_factory
        self._engine: EngineLike | None = None
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=thread_name, daemon=True)
        self._lock = threading.Lock()
        self._pending: list[_GenerationJob] = []  # queued or running generations, oldest first
        self._stopping = False

    # -- GUI-thread side -----------------------------------------------------------------------
    async def run(self, request: GenerationRequest) -> AsyncIterator[WorkerEvent]:
        """Submit `request`; yield `Started`, then engine events up to and including the terminal one.

        Previews that arrive faster than the loop drains them are coalesced: only the newest of a
        burst is yielded. Leaving the loop early (break, task cancelled) cancels the generation.
        """
        if self._stopping:
            raise RuntimeError("The inference worker has been shut down.")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[WorkerEvent] = asyncio.Queue()

        def deliver(event: WorkerEvent) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:
                pass  # the loop closed (app exiting); nobody is listening any more

        job = _GenerationJob(request=request, cancel=threading.Event(), deliver=deliver)
        with self._lock:
            self._pending.append(job)
        self._ensure_started()
        self._jobs.put(job)
        finished = False
        try:
            while not finished:
                burst = [await events.get()]
                while not events.empty():
                    burst.append(events.get_nowait())
                for event in coalesce_previews(burst):
                    yield event
                    if isinstance(event, TERMINAL_EVENTS):
                        finished = True
                        break
        finally:
            if not finished:
                job.cancel.set()

    async def call(self, fn: Callable[[EngineLike], Any]) -> Any:
        """Run `fn(engine)` on the inference thread (model discovery, unloading) and await its result."""
        if self._stopping:
            raise RuntimeError("The inference worker has been shut down.")
        job = _CallJob(fn)
        self._ensure_started()
        self._jobs.put(job)
        return await asyncio.wrap_future(job.future)

    def cancel(self) -> None:
        """Cancel the running generation and everything queued behind it."""
        with self._lock:
            for job in self._pending:
                job.cancel.set()

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._pending)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Cancel everything, stop the thread and wait up to `timeout` s. True if it stopped."""
        self._stopping = True
        self.cancel()
        if not self._thread.is_alive():
            return True
        self._jobs.put(_STOP)
        self._thread.join(timeout)
        stopped = not self._thread.is_alive()
        if not stopped:
            log.warning("the inference thread did not stop within %.1f s; leaving it to die with the process",
                        timeout)
        return stopped

    def _ensure_started(self) -> None:
        if not self._thread.is_alive() and not self._stopping:
            try:
                self._thread.start()
            except RuntimeError:
                pass  # started by a concurrent call

    # -- inference-thread side ---------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                break
            if isinstance(job, _CallJob):
                self._serve_call(job)
            else:
                self._serve_generation(job)
                with self._lock:
                    if job in self._pending:
                        self._pending.remove(job)
        self._engine = None  # drop the models with the thread

    def _get_engine(self) -> EngineLike:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    def _serve_call(self, job: _CallJob) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn(self._get_engine()))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            job.future.set_exception(exc)

    def _serve_generation(self, job: _GenerationJob) -> None:
        job.deliver(Started())
        if job.cancel.is_set():
            self._end(job, Cancelled(0))
            return

        def on_event(event: Event) -> None:
            if job.ended:
                return
            if isinstance(event, Progress):
                job.last_step = event.step
            if isinstance(event, TERMINAL_EVENTS):
                job.ended = True
            job.deliver(event)

        try:
            engine = self._get_engine()
            if job.cancel.is_set():
                raise GenerationCancelled()
            engine.run(job.request, on_event, job.cancel)
        except GenerationCancelled:
            self._end(job, Cancelled(job.last_step))
        except OutOfMemory as exc:
            self._end(job, Failed(str(exc)))
        except InferenceError as exc:
            self._end(job, Failed(str(exc)))
        except MemoryError:
            self._end(job, Failed("The computer ran out of memory; try a smaller size or batch."))
        except Exception as exc:  # noqa: BLE001 - the window must stay usable whatever the engine does
            log.error("generation failed:\n%s", traceback.format_exc())
            self._end(job, Failed(describe_unexpected(exc)))
        else:
            if job.cancel.is_set():
                self._end(job, Cancelled(job.last_step))
            else:
                self._end(job, Failed("The engine stopped without a result."))

    @staticmethod
    def _end(job: _GenerationJob, event: Event) -> None:
        if not job.ended:
            job.ended = True
            job.deliver(event)


def coalesce_previews(events: list[WorkerEvent]) -> list[WorkerEvent]:
    """Keep every event but only the newest `Preview` of the list (in its place)."""
    last_preview = max((i for i, e in enumerate(events) if isinstance(e, Preview)), default=-1)
    return [e for i, e in enumerate(events) if not isinstance(e, Preview) or i == last_preview]


def describe_unexpected(exc: BaseException) -> str:
    """One sentence for an error the engine did not translate itself."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "out of memory" in text.lower():
        return "The device ran out of memory; try a smaller size, fewer images per batch or the CPU."
    if len(text) > 300:
        text = text[:297] + "..."
    sentence = f"Generation failed unexpectedly: {text}"
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."
