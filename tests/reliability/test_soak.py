"""A short long session: 30 tiny generations through the engine and through the editor's controller,
with no growth in memory, threads or open files; old jobs let go of their images.

The dedicated run is `python scripts/soak.py --generations 300` (figures in docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager

import numpy as np

from canvas.model.document import Document, GenerationSettings
from canvas.model.layers import ImageLayer
from desktop.generation import MAX_STAGED_RESULTS, GenerationController, JobState
from desktop.panels.history import describe
from desktop.worker import InferenceWorker
from scripts.soak import soak_engine, soak_gui
from tests.desktop.fakes import FakeEngine

GENERATIONS = 30


@contextmanager
def private_event_loop():
    """A plain asyncio loop of our own, run to completion here. The desktop tests leave their
    session-wide qasync loop marked as running in this thread; it is set aside meanwhile."""
    previous = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()
        asyncio.events._set_running_loop(previous)


def assert_no_leak(report) -> None:
    assert report.failures == []
    assert report.final.generation == GENERATIONS and report.baseline.generation == 20
    assert report.previews >= GENERATIONS  # a preview per step (the GUI may coalesce a burst into one)
    assert report.rss_growth_mib < 25, report.summary()  # 10 generations after warm-up: nothing should stay
    assert report.final.threads <= report.baseline.threads, report.summary()
    assert report.final.open_fds <= report.baseline.open_fds, report.summary()


def test_thirty_generations_through_the_engine_leak_nothing():
    report = soak_engine(GENERATIONS, size=64, steps=2, every=10)
    assert_no_leak(report)
    assert report.previews == 2 * GENERATIONS


def test_thirty_generations_through_the_controller_and_worker_leak_nothing(qapp):
    with private_event_loop() as loop:
        report = soak_gui(GENERATIONS, size=64, steps=2, every=10, loop=loop)
    assert_no_leak(report)


def test_old_jobs_let_go_of_their_images_and_inputs_but_keep_their_history(qapp):
    side = 256
    document = Document(side, side, settings=GenerationSettings(prompt="a fox", steps=2))
    pixels = np.zeros((side, side, 4), np.uint8)
    pixels[..., 3] = 255
    document.add_layer_untracked(ImageLayer(name="canvas", pixels=pixels))  # every request carries an init image
    worker = InferenceWorker(lambda: FakeEngine(step_seconds=0.0))
    controller = GenerationController(worker, document)

    async def session():
        for index in range(12):
            controller.generate()
            await controller.wait_idle()
            if index in (1, 3):
                controller.accept()

    try:
        with private_event_loop() as loop:
            loop.run_until_complete(session())
    finally:
        controller.shutdown()
        worker.shutdown(5)
    jobs = controller.jobs
    assert len(jobs) == 12 and all(job.state is JobState.FINISHED for job in jobs)
    held = [job for job in jobs if job.images or job.request.init_image is not None]
    # the results not accepted since job 3 wait in the staging strip (appended, never replaced), and
    # the strip accepted last (jobs 2-3) stays whole so that undoing the accept brings it back; the
    # strip accepted before that (jobs 0-1) lets go. Both are bounded, so are the images held.
    assert held == jobs[2:] and jobs[4:] == controller.staging.jobs and controller.staging.job is jobs[-1]
    assert sum(image.nbytes for job in jobs for image in job.images) <= 2 * (MAX_STAGED_RESULTS + 1) * side * side * 3
    for job in jobs[:2]:  # what the history panel shows and restores is still there
        assert job.released and job.settings["prompt"] == "a fox" and job.parameters
        assert "a fox" in describe(job)
    assert controller.restore_settings(jobs[0].settings) == 0
    assert jobs[-1].request.init_image.shape == (side, side, 3)  # what regenerate reuses is whole
