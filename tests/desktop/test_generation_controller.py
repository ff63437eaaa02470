"""The generation controller with a fake engine: jobs, progress, previews, staging, accept/undo."""

from __future__ import annotations

import numpy as np
import pytest

from canvas.model.commands import AddLayer, SetSetting
from canvas.model.document import Document
from canvas.model.layers import ImageLayer, MaskLayer, Rect
from desktop.generation import AcceptCandidate, GenerationController, JobState
from desktop.worker import InferenceWorker
from inference.api import InferenceError
from tests.desktop.fakes import BrokenFactory, FakeEngine

W, H = 64, 48


def new_document(**settings) -> Document:
    doc = Document(W, H)
    for k, v in {"prompt": "a fox", "steps": 3, **settings}.items():
        doc.execute(SetSetting(k, v))
    doc.history.clear()
    return doc


@pytest.fixture
def make_controller(qloop):
    made = []

    def make(engine=None, doc=None, factory=None):
        worker = InferenceWorker(factory or (lambda: engine or FakeEngine()))
        controller = GenerationController(worker, doc if doc is not None else new_document())
        made.append(controller)
        return controller

    yield make
    for controller in made:
        controller.shutdown()
        assert controller.worker.shutdown(timeout=5)


def record(controller):
    seen = {"progress": [], "previews": [], "failed": [], "notices": [], "states": [], "staging": 0}
    controller.progress_changed.connect(lambda job, s, t, left: seen["progress"].append((s, t, left)))
    controller.preview_ready.connect(lambda rect, rgb: seen["previews"].append((rect, rgb.shape)))
    controller.failed.connect(seen["failed"].append)
    controller.notice.connect(seen["notices"].append)
    controller.job_changed.connect(lambda job: seen["states"].append(job.state))
    controller.staging_changed.connect(lambda: seen.__setitem__("staging", seen["staging"] + 1))
    return seen


def test_generate_runs_a_job_through_its_states_to_staging(qtbot, make_controller):
    controller = make_controller(FakeEngine(step_seconds=0.01, notice="A note."))
    seen = record(controller)
    job = controller.generate()
    assert job is not None and job.state is JobState.QUEUED
    qtbot.waitUntil(lambda: job.state.done, timeout=5000)
    assert job.state is JobState.FINISHED
    assert seen["states"][:2] == [JobState.QUEUED, JobState.RUNNING] and seen["states"][-1] is JobState.FINISHED
    assert [p[:2] for p in seen["progress"]] == [(1, 3), (2, 3), (3, 3)]
    assert seen["progress"][-1][2] == 0.0  # nothing left at the last step
    assert seen["previews"] and seen["previews"][-1][0] == Rect(0, 0, W, H)
    assert seen["notices"] == ["A note."] and seen["failed"] == []
    assert controller.staging is not None and controller.staging.count == 1 and seen["staging"] == 1
    assert job.request.prompt == "a fox" and job.request.init_image is None  # txt2img over an empty canvas


def test_accept_adds_one_undoable_layer_with_parameters(qtbot, make_controller):
    controller = make_controller()
    doc = controller.document
    job = controller.generate()
    qtbot.waitUntil(lambda: controller.staging is not None, timeout=5000)
    layer = controller.accept()
    assert isinstance(layer, ImageLayer) and doc.layers == [layer] and doc.active_layer is layer
    assert layer.pixels.shape == (H, W, 4) and (layer.pixels[..., 3] == 255).all()
    assert np.array_equal(layer.pixels[..., :3], job.images[0])
    cmd = doc.history._done[-1]
    assert isinstance(cmd, AcceptCandidate) and cmd.parameters["seed"] == 1234
    assert cmd.parameters["job_settings"]["prompt"] == "a fox"
    assert controller.staging is None and len(doc.history) == 1
    doc.undo()
    assert doc.layers == []
    doc.redo()
    assert doc.layers == [layer]


def test_candidates_cycle_and_regenerate_uses_a_new_seed(qtbot, make_controller):
    engine = FakeEngine()
    controller = make_controller(engine, new_document(batch_count=3, seed=7))
    first = controller.generate()
    qtbot.waitUntil(lambda: controller.staging is not None, timeout=5000)
    staging = controller.staging
    assert staging.count == 3 and staging.index == 0
    controller.next_candidate()
    controller.next_candidate()
    assert staging.index == 2 and staging.parameters["seed"] == 9
    controller.next_candidate()
    assert staging.index == 0
    controller.previous_candidate()
    assert staging.index == 2
    second = controller.regenerate()
    assert controller.staging is staging and staging.count == 3  # the waiting results stay
    qtbot.waitUntil(lambda: second.state.done, timeout=5000)
    assert staging.count == 6 and staging.index == 3 and staging.job is second  # new ones appended, shown
    assert second.request.seed != first.request.seed and second.request.prompt == first.request.prompt
    assert second.request.init_image is first.request.init_image  # the same frozen composition
    controller.discard()
    assert controller.staging is None


def test_accept_covers_the_rectangle_the_engine_reports(qtbot, make_controller):
    """The engine says where its result may differ from the input (Finished.rect); the accepted
    layer covers exactly that, cut from the canvas-size result."""
    doc = new_document(mode="inpaint", mask_blur=0)
    background = np.zeros((H, W, 4), np.uint8)
    background[..., 3] = 255
    doc.execute(AddLayer(ImageLayer(name="bg", pixels=background)))
    mask = np.zeros((H, W), np.uint8)
    mask[20:30, 30:40] = 255
    doc.execute(AddLayer(MaskLayer(pixels=mask)))
    controller = make_controller(FakeEngine(changed_rect=(22, 12, 48, 38)), doc=doc)
    job = controller.generate()
    qtbot.waitUntil(lambda: controller.staging is not None, timeout=5000)
    assert job.area == Rect(22, 12, 26, 26) == controller.staging.area
    assert controller.staging.candidates[0].shape == (26, 26, 3)
    layer = controller.accept()
    assert (layer.x, layer.y) == (22.0, 12.0) and layer.pixels.shape == (26, 26, 4)


def test_bad_settings_fail_before_the_worker_with_one_sentence(qtbot, make_controller):
    controller = make_controller(doc=new_document(mode="inpaint"))
    seen = record(controller)
    assert controller.generate() is None
    assert len(seen["failed"]) == 1 and "mask" in seen["failed"][0]
    assert controller.jobs == [] and not controller.worker.alive


def test_engine_failure_is_reported_and_the_next_job_works(qtbot, make_controller):
    engine = FakeEngine(fail_with=InferenceError("The model file x.safetensors is damaged."))
    controller = make_controller(engine)
    seen = record(controller)
    job = controller.generate()
    qtbot.waitUntil(lambda: job.state.done, timeout=5000)
    assert job.state is JobState.FAILED and seen["failed"] == ["The model file x.safetensors is damaged."]
    assert controller.staging is None
    engine.fail_with = None
    job = controller.generate()
    qtbot.waitUntil(lambda: job.state.done, timeout=5000)
    assert job.state is JobState.FINISHED


def test_a_model_stack_that_cannot_load_fails_the_job(qtbot, make_controller):
    controller = make_controller(factory=BrokenFactory())
    seen = record(controller)
    job = controller.generate()
    qtbot.waitUntil(lambda: job.state.done, timeout=5000)
    assert job.state is JobState.FAILED and "torch is missing" in seen["failed"][0]


def test_cancel_ends_the_job_as_cancelled_and_queued_jobs_too(qtbot, make_controller):
    controller = make_controller(FakeEngine(step_seconds=0.02), new_document(steps=500))
    first, second = controller.generate(), controller.generate()
    qtbot.waitUntil(lambda: first.step >= 2, timeout=5000)
    assert first.state is JobState.RUNNING and second.state is JobState.QUEUED
    controller.cancel()
    qtbot.waitUntil(lambda: first.state.done and second.state.done, timeout=3000)
    assert first.state is JobState.CANCELLED and second.state is JobState.CANCELLED
    assert controller.staging is None and not controller.busy


def test_restore_settings_is_one_undo_step(qtbot, make_controller):
    controller = make_controller()
    doc = controller.document
    old = doc.settings.to_dict()
    changed = controller.restore_settings({**old, "prompt": "a cat", "steps": 9, "cfg": 4.0})
    assert changed == 3 and (doc.settings.prompt, doc.settings.steps, doc.settings.cfg) == ("a cat", 9, 4.0)
    doc.undo()
    assert doc.settings.to_dict() == old
    assert controller.restore_settings(old) == 0
