"""Several backends as one: queued jobs go to whichever backend is free.

Each backend has one worker thread that takes the oldest queued job it may run. A job whose
backend is lost mid-job (`BackendLost`) says so in one sentence (a Notice) and goes back to the
front of the queue for another backend; that backend rests for `LOST_REST_S` before it takes jobs
again. A job every backend has lost fails with that sentence. Nothing of the document lives here:
a job is a frozen request, so running it again elsewhere loses nothing.

`PoolJob` is what the queue shows: state (queued / running / done), the backend it is on, and
the backends it was lost on. `BackendPool.run` is the Engine's blocking contract, for callers
that hold one job at a time (the inference worker, the CLI).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Callable

from inference.api import Cancelled, Event, Failed, Finished, GenerationRequest, Notice
from inference.backends.base import BackendLost

LOST_REST_S = 30.0  # a lost backend takes no job for this long (it may be restarting)
QUEUED, RUNNING, DONE = "queued", "running", "done"


class PoolJob:
    """One queued generation and where it is."""

    def __init__(self, number: int, request: GenerationRequest, on_event: Callable[[Event], None] | None,
                 cancel: threading.Event | None):
        self.number = number
        self.request = request
        self.on_event = on_event
        self.cancel = cancel or threading.Event()
        self.state = QUEUED
        self.backend: str | None = None  # the backend running it (or that ran it)
        self.lost_on: list[str] = []  # backends that went away with this job on them
        self.outcome: Event | None = None  # the Finished / Failed / Cancelled that ended it
        self.events: list[Event] = []
        self.done = threading.Event()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, (Finished, Failed, Cancelled)):
            self.outcome = event
        if self.on_event is not None:
            self.on_event(event)

    def wait(self, timeout: float | None = None) -> Event | None:
        self.done.wait(timeout)
        return self.outcome


class BackendPool:
    def __init__(self, backends: list, *, lost_rest_s: float = LOST_REST_S):
        if not backends:
            raise ValueError("a pool needs at least one backend")
        names = [backend.name for backend in backends]
        if len(set(names)) != len(names):
            raise ValueError(f"backends appear twice in the pool: {names}")
        self.backends = list(backends)
        self.name = names[0] if len(names) == 1 else "pool"
        self.lost_rest_s = lost_rest_s
        self._queue: deque[PoolJob] = deque()
        self._jobs: list[PoolJob] = []
        self._resting_until: dict[str, float] = {}
        self._condition = threading.Condition()
        self._numbers = itertools.count(1)
        self._workers: list[threading.Thread] = []
        self._closed = False

    # ---- submitting ----

    def submit(self, request: GenerationRequest, on_event: Callable[[Event], None] | None = None,
               cancel: threading.Event | None = None) -> PoolJob:
        with self._condition:
            if self._closed:
                raise RuntimeError("the backend pool is shut down")
            job = PoolJob(next(self._numbers), request, on_event, cancel)
            self._queue.append(job)
            self._jobs.append(job)
            self._start_workers()
            self._condition.notify_all()
        return job

    def run(self, request: GenerationRequest, on_event: Callable[[Event], None], cancel: threading.Event) -> None:
        """The Engine's contract: blocks until the job ended (it ran on whichever backend was free)."""
        job = self.submit(request, on_event, cancel)
        while not job.done.wait(0.2):
            if cancel.is_set() and job.state == QUEUED:
                self._take_back(job)

    def jobs(self) -> list[PoolJob]:
        """Every job submitted, oldest first (what the queue view lists)."""
        with self._condition:
            return list(self._jobs)

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    # ---- the workers ----

    def _start_workers(self) -> None:
        if self._workers:
            return
        for backend in self.backends:
            worker = threading.Thread(target=self._serve, args=(backend,), name=f"collagen-backend-{backend.name}",
                                      daemon=True)
            self._workers.append(worker)
            worker.start()

    def _serve(self, backend) -> None:
        while True:
            job = self._next_job(backend)
            if job is None:
                return
            self._run_job(backend, job)

    def _next_job(self, backend) -> PoolJob | None:
        with self._condition:
            while True:
                if self._closed:
                    return None
                resting = self._resting_until.get(backend.name, 0.0) - time.monotonic()
                if resting <= 0:
                    for job in self._queue:
                        if backend.name not in job.lost_on:
                            self._queue.remove(job)
                            job.state, job.backend = RUNNING, backend.name
                            return job
                self._condition.wait(timeout=max(min(resting, 1.0), 0.05) if resting > 0 else 1.0)

    def _run_job(self, backend, job: PoolJob) -> None:
        if job.cancel.is_set():
            self._end(job, Cancelled(step=0))
            return
        try:
            backend.execute(job.request, job.emit, job.cancel)
        except BackendLost as error:
            self._lost(backend, job, str(error))
            return
        except Exception as error:  # noqa: BLE001 - a backend breaking its contract still ends the job
            from inference.engine import unexpected_failure_message

            job.emit(Failed(unexpected_failure_message(error)))
        self._end(job, None)

    def _lost(self, backend, job: PoolJob, sentence: str) -> None:
        with self._condition:
            job.lost_on.append(backend.name)
            self._resting_until[backend.name] = time.monotonic() + self.lost_rest_s
            others = [other.name for other in self.backends if other.name not in job.lost_on]
            if others and not job.cancel.is_set():
                job.state, job.backend = QUEUED, None
                self._queue.appendleft(job)
                self._condition.notify_all()
        if others and not job.cancel.is_set():
            job.emit(Notice(f"{sentence} The job runs again on another backend."))
            return
        self._end(job, Cancelled(step=0) if job.cancel.is_set() else Failed(sentence))

    def _end(self, job: PoolJob, outcome: Event | None) -> None:
        if outcome is not None:
            job.emit(outcome)
        with self._condition:
            job.state = DONE
        job.done.set()

    def _take_back(self, job: PoolJob) -> None:
        """A job cancelled before any backend took it leaves the queue at once."""
        with self._condition:
            if job.state != QUEUED or job not in self._queue:
                return
            self._queue.remove(job)
        self._end(job, Cancelled(step=0))
