"""The inference thread and its asyncio bridge, driven by a fake engine (fast, no Qt)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from desktop.worker import InferenceWorker, Started, coalesce_previews, describe_unexpected
from inference.api import (
    Cancelled,
    Failed,
    Finished,
    GenerationRequest,
    InferenceError,
    Notice,
    Preview,
    Progress,
)
from tests.desktop.fakes import BrokenFactory, FakeEngine


def request(**kw) -> GenerationRequest:
    base = dict(prompt="a fox", width=16, height=16, steps=4, seed=5)
    base.update(kw)
    return GenerationRequest(**base)


async def collect(worker, req, on_event=None):
    out = []
    async for event in worker.run(req):
        out.append(event)
        if on_event:
            on_event(event)
    return out


@pytest.fixture
def worker_with():
    made = []

    def make(engine):
        w = InferenceWorker(lambda: engine)
        made.append(w)
        return w

    yield make
    for w in made:
        assert w.shutdown(timeout=5)


def test_events_arrive_in_order_on_the_loop_from_the_inference_thread(worker_with):
    engine = FakeEngine(notice="Region 'x' is tiny.")
    worker = worker_with(engine)
    loop_thread = []
    events = asyncio.run(collect(worker, request(), lambda e: loop_thread.append(threading.current_thread())))
    assert isinstance(events[0], Started)
    assert isinstance(events[1], Notice)
    assert isinstance(events[-1], Finished) and events[-1].parameters[0]["seed"] == 5
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps == [1, 2, 3, 4]
    assert engine.threads == ["collagen-inference"]
    assert all(t is threading.main_thread() for t in loop_thread)


def test_worker_thread_is_started_lazily_and_engine_built_once(worker_with):
    built = []

    def factory():
        built.append(threading.current_thread().name)
        return FakeEngine()

    worker = InferenceWorker(factory)
    try:
        assert not worker.alive and built == []
        asyncio.run(collect(worker, request(steps=1)))
        asyncio.run(collect(worker, request(steps=1)))
        assert built == ["collagen-inference"]
    finally:
        assert worker.shutdown()


def test_cancel_takes_effect_within_one_step(worker_with):
    step = 0.05
    worker = worker_with(FakeEngine(step_seconds=step))
    times = {}

    async def main():
        out = []
        async for event in worker.run(request(steps=200)):
            out.append(event)
            if isinstance(event, Progress) and event.step == 3:
                times["cancel"] = time.monotonic()
                worker.cancel()
        times["end"] = time.monotonic()
        return out

    events = asyncio.run(main())
    assert isinstance(events[-1], Cancelled) and events[-1].step >= 3
    assert times["end"] - times["cancel"] < 2 * step + 0.1


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (InferenceError("The model file broken.safetensors is truncated."), "broken.safetensors is truncated."),
        (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "ran out of memory"),
        (ValueError("shapes (3,) and (4,) do not align\nmore lines"), "failed unexpectedly: shapes"),
    ],
)
def test_engine_errors_become_one_sentence_failed_events_and_the_worker_stays_usable(worker_with, error, words):
    engine = FakeEngine(fail_with=error, fail_at=2)
    worker = worker_with(engine)
    events = asyncio.run(collect(worker, request()))
    assert isinstance(events[-1], Failed)
    assert words in events[-1].message and "\n" not in events[-1].message
    engine.fail_with = None
    events = asyncio.run(collect(worker, request()))
    assert isinstance(events[-1], Finished)


def test_a_model_stack_that_cannot_load_fails_each_job_cleanly():
    worker = InferenceWorker(BrokenFactory())
    try:
        events = asyncio.run(collect(worker, request()))
        assert [type(e) for e in events] == [Started, Failed]
        assert "torch is missing" in events[-1].message
    finally:
        assert worker.shutdown()


def test_an_engine_that_returns_without_a_result_is_reported(worker_with):
    class Silent:
        def run(self, request, on_event, cancel):
            on_event(Progress(1, 1))

    events = asyncio.run(collect(worker_with(Silent()), request()))
    assert isinstance(events[-1], Failed) and "without a result" in events[-1].message


def test_previews_are_coalesced_when_the_loop_is_slower_than_the_engine(worker_with):
    worker = worker_with(FakeEngine(step_seconds=0.0))

    async def main():
        previews = []
        async for event in worker.run(request(steps=60)):
            if isinstance(event, Preview):
                previews.append(event.step)
                time.sleep(0.02)  # a slow paint blocks the loop; the engine runs ahead
        return previews

    previews = asyncio.run(main())
    assert previews[-1] == 60
    assert len(previews) < 60
    assert previews == sorted(previews)


def test_coalesce_keeps_other_events_and_only_the_newest_preview():
    p1, p2 = Preview(1, None), Preview(2, None)
    events = [Progress(1, 2), p1, Progress(2, 2), p2, Finished((), ())]
    assert coalesce_previews(events) == [events[0], events[2], p2, events[4]]


def test_leaving_the_loop_early_cancels_the_generation(worker_with):
    engine = FakeEngine(step_seconds=0.02)
    worker = worker_with(engine)

    async def main():
        async for event in worker.run(request(steps=500)):
            if isinstance(event, Progress):
                break
        # the next job still runs: the first one was cancelled, not left spinning
        return await collect(worker, request(steps=2))

    started = time.monotonic()
    events = asyncio.run(main())
    assert isinstance(events[-1], Finished)
    assert time.monotonic() - started < 3.0


def test_cancel_also_cancels_queued_jobs(worker_with):
    worker = worker_with(FakeEngine(step_seconds=0.02))

    async def main():
        first = asyncio.ensure_future(collect(worker, request(steps=100)))
        second = asyncio.ensure_future(collect(worker, request(steps=100)))
        await asyncio.sleep(0.1)
        worker.cancel()
        return await first, await second

    first, second = asyncio.run(main())
    assert isinstance(first[-1], Cancelled) and isinstance(second[-1], Cancelled)
    assert not worker.busy


def test_call_runs_on_the_inference_thread_and_propagates_errors(worker_with):
    worker = worker_with(FakeEngine())

    async def main():
        name = await worker.call(lambda engine: threading.current_thread().name)
        with pytest.raises(KeyError):
            await worker.call(lambda engine: {}["missing"])
        return name

    assert asyncio.run(main()) == "collagen-inference"


def test_shutdown_during_a_generation_returns_quickly():
    worker = InferenceWorker(lambda: FakeEngine(step_seconds=0.05))

    async def main():
        task = asyncio.ensure_future(collect(worker, request(steps=1000)))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        stopped = worker.shutdown(timeout=5)
        events = await task
        return stopped, time.monotonic() - started, events

    stopped, took, events = asyncio.run(main())
    assert stopped and took < 0.5
    assert isinstance(events[-1], Cancelled)
    with pytest.raises(RuntimeError, match="shut down"):
        asyncio.run(collect(worker, request()))


def test_describe_unexpected_is_one_short_sentence():
    text = describe_unexpected(RuntimeError("x" * 1000 + "\nsecond line"))
    assert text.endswith(".") and len(text) < 400 and "\n" not in text
    assert describe_unexpected(KeyError()) == "Generation failed unexpectedly: KeyError."
