"""Instruction editing end to end with the four tiny random-weight pipelines, offline, on the CPU."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from inference.api import (
    Cancelled,
    Finished,
    GenerationRequest,
    Notice,
    OutOfMemory,
    Preview,
    Progress,
    RequestError,
)
from inference.edit import build_tiny_edit, run_edit

FAMILIES = ("ip2p", "flux-kontext", "qwen-edit", "qwen-edit-plus")
STEPS = 2
SIZE = 64  # the tiny models' native area is 64x64, so a 64x64 picture reaches them unscaled
STROKE = (255, 0, 0)


@pytest.fixture(scope="module")
def tiny_models():
    import torch

    torch.set_num_threads(1)
    return {family: build_tiny_edit(family) for family in FAMILIES}


def picture(seed: int = 0, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 220, (size, size, 3), dtype=np.uint8)


def centre_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.float32)
    mask[20:44, 20:44] = 1.0
    return mask


def edit_request(model, **overrides) -> GenerationRequest:
    fields = dict(mode="edit", model=model.name, prompt="make the sky green", init_image=picture(),
                  steps=STEPS, seed=1234)  # fmt: skip
    fields.update(overrides)
    return GenerationRequest(**fields)


def run(model, request, cancel=None):
    events = []
    result = run_edit(model, request, events.append, cancel or threading.Event())
    return result, events


class StopBeforeDenoising(Exception):
    """Raised by a record-only spy: the test needs the pipeline's inputs, not its work."""


class PipelineSpy:
    """Stands in for a pipeline: records the keyword arguments of each call, then runs the real one
    (or raises `fail_with` instead)."""

    def __init__(self, pipeline, fail_with: BaseException | None = None):
        self._pipeline = pipeline
        self._fail_with = fail_with
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if self._fail_with is not None:
            raise self._fail_with
        return self._pipeline(**kwargs)

    def __getattr__(self, name):
        return getattr(self._pipeline, name)


def spied(model, fail_with=None):
    spy = PipelineSpy(model.pipeline, fail_with)
    return dataclasses.replace(model, pipeline=spy), spy


@pytest.mark.parametrize("family", FAMILIES)
def test_edit_runs_with_a_preview_per_step_and_pastes_back_only_inside_the_mask(tiny_models, family):
    model = tiny_models[family]
    original = picture()
    request = edit_request(model, init_image=original, mask=centre_mask(), mask_blur=3)

    result, events = run(model, request)

    assert isinstance(result, Finished) and events[-1] is result
    progress = [e for e in events if isinstance(e, Progress)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert [(p.step, p.total) for p in progress] == [(1, STEPS), (2, STEPS)]
    assert len(previews) == STEPS
    for preview in previews:
        assert preview.image.dtype == np.uint8 and preview.image.ndim == 3 and preview.image.shape[2] == 3
    image = result.images[0]
    assert image.shape == original.shape and image.dtype == np.uint8
    # far from the mask (beyond 3 sigma of the feather) every byte is the input's
    outside = np.ones((SIZE, SIZE), dtype=bool)
    outside[20 - 10 : 44 + 10, 20 - 10 : 44 + 10] = False
    assert np.array_equal(image[outside], original[outside])
    # inside, the random-weight model changed the picture
    assert not np.array_equal(image[24:40, 24:40], original[24:40, 24:40])

    parameters = result.parameters[0]
    assert parameters["mode"] == "edit"
    assert parameters["prompt"] == "make the sky green"
    assert parameters["model"] == model.name and parameters["model_family"] == family
    assert parameters["steps"] == STEPS and parameters["seed"] == 1234
    assert parameters["masked"] is True and parameters["builtin"] is True
    guidance_key = {"ip2p": "image_guidance_scale", "flux-kontext": "guidance"}.get(family, "true_cfg_scale")
    assert guidance_key in parameters
    # the scheduler the pipeline ran, by the name the panel shows (not a diffusers class name)
    assert parameters["sampler"] == ("Euler a" if family == "ip2p" else "FlowMatchEuler")


def test_pixels_where_the_feathered_mask_is_zero_are_byte_identical(tiny_models):
    from inference.edit.images import feather_mask

    model = tiny_models["flux-kontext"]
    original = picture(3)
    mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    mask[8:30, 33:60] = 0.7  # soft mask values too
    result, _ = run(model, edit_request(model, init_image=original, mask=mask, mask_blur=2))

    zero = feather_mask(mask, 2) == 0
    assert zero.sum() > SIZE * SIZE // 2
    assert np.array_equal(result.images[0][zero], original[zero])


def test_not_masked_mode_edits_everything_but_the_mask(tiny_models):
    model = tiny_models["ip2p"]
    original = picture(4)
    request = edit_request(
        model, init_image=original, mask=centre_mask(), mask_mode="not_masked", mask_blur=0
    )
    result, _ = run(model, request)

    assert np.array_equal(result.images[0][20:44, 20:44], original[20:44, 20:44])
    assert not np.array_equal(result.images[0][:16], original[:16])


@pytest.mark.parametrize("family", FAMILIES)
def test_cancel_stops_within_the_step_without_decoding_and_the_next_request_runs(
    tiny_models, family, monkeypatch
):
    model = tiny_models[family]
    decodes = []
    real_decode = model.pipeline.vae.decode
    monkeypatch.setattr(
        model.pipeline.vae, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k)
    )
    cancel = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress):
            cancel.set()  # the user presses cancel while step 1 is finishing

    result = run_edit(model, edit_request(model, steps=4), emit, cancel)

    assert isinstance(result, Cancelled) and result.step == 1
    assert events[-1] is result
    assert not any(isinstance(e, (Finished, Preview)) for e in events)
    assert decodes == []  # no final VAE decode after a cancel

    again, later_events = run(model, edit_request(model))
    assert isinstance(again, Finished) and len(decodes) == 1
    assert sum(isinstance(e, Preview) for e in later_events) == STEPS


def test_cancel_set_before_start_runs_nothing(tiny_models):
    model, spy = spied(tiny_models["flux-kontext"])
    cancel = threading.Event()
    cancel.set()
    result, events = run(model, edit_request(model), cancel)
    assert isinstance(result, Cancelled) and result.step == 0
    assert spy.calls == [] and events == [result]


@pytest.mark.parametrize("family", ("ip2p", "flux-kontext", "qwen-edit-plus"))
def test_annotation_strokes_reach_the_model_but_not_the_output_outside_the_mask(tiny_models, family):
    model, spy = spied(tiny_models[family])
    original = picture(5)
    annotation = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
    annotation[30:34, 2:62] = (*STROKE, 255)  # a red line right across, through the mask
    stroke = annotation[..., 3] > 0
    request = edit_request(
        model, init_image=original, annotation_image=annotation, mask=centre_mask(), mask_blur=0
    )

    result, _ = run(model, request)

    seen = spy.calls[0]["image"]
    seen = np.asarray(seen[0] if isinstance(seen, list) else seen)
    assert seen.shape == original.shape  # 64x64 is the tiny models' working size: no resampling
    assert np.array_equal(seen[stroke], np.broadcast_to(STROKE, seen[stroke].shape))
    assert np.array_equal(seen[~stroke], original[~stroke])
    outside = centre_mask() == 0
    image = result.images[0]
    assert np.array_equal(image[stroke & outside], original[stroke & outside])
    assert result.parameters[0]["annotated"] is True


def test_qwen_edit_plus_receives_the_picture_then_the_references_in_order(tiny_models):
    model, spy = spied(tiny_models["qwen-edit-plus"], fail_with=StopBeforeDenoising())
    first, second = picture(6, 32), picture(7, 48)
    with pytest.raises(StopBeforeDenoising):
        run(model, edit_request(model, reference_images=(first, second)))

    images = spy.calls[0]["image"]
    assert [np.asarray(i).shape for i in images] == [(SIZE, SIZE, 3), (32, 32, 3), (48, 48, 3)]
    assert np.array_equal(np.asarray(images[0]), picture())
    assert np.array_equal(np.asarray(images[1]), first) and np.array_equal(np.asarray(images[2]), second)


@pytest.mark.parametrize("family", ("flux-kontext", "qwen-edit"))
def test_single_image_models_see_the_references_side_by_side(tiny_models, family):
    model, spy = spied(tiny_models[family], fail_with=StopBeforeDenoising())
    with pytest.raises(StopBeforeDenoising):
        run(model, edit_request(model, reference_images=(picture(8, 32),)))

    condition = spy.calls[0]["image"]
    width, height = condition.size
    assert width > 1.5 * height  # picture + one same-height square reference
    assert (spy.calls[0]["width"], spy.calls[0]["height"]) == (SIZE, SIZE)  # output: the picture's own size


def test_kontext_result_keeps_the_picture_size_with_references(tiny_models):
    model = tiny_models["flux-kontext"]
    result, _ = run(model, edit_request(model, reference_images=(picture(8, 32), picture(9, 40))))
    assert result.images[0].shape == (SIZE, SIZE, 3)
    assert result.parameters[0]["reference_images"] == 2


def test_ip2p_leaves_references_out_with_a_notice(tiny_models):
    model, spy = spied(tiny_models["ip2p"])
    result, events = run(model, edit_request(model, reference_images=(picture(9),)))
    notices = [e for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and "reference" in notices[0].message
    assert isinstance(result, Finished) and result.parameters[0]["reference_images"] == 0


def test_output_returns_to_an_odd_input_size(tiny_models):
    model = tiny_models["flux-kontext"]
    original = picture(10)[:45, :61]
    result, _ = run(model, edit_request(model, init_image=original))
    assert result.images[0].shape == (45, 61, 3)
    working = result.parameters[0]["working_width"], result.parameters[0]["working_height"]
    assert working[0] % 16 == 0 and working[1] % 16 == 0


def test_a_seed_reproduces_and_a_batch_counts_seeds_up(tiny_models):
    model = tiny_models["flux-kontext"]
    first, _ = run(model, edit_request(model, seed=77))
    batch, events = run(model, edit_request(model, seed=77, batch_count=2))

    assert np.array_equal(first.images[0], batch.images[0])
    assert not np.array_equal(batch.images[0], batch.images[1])
    assert [p["seed"] for p in batch.parameters] == [77, 78]
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == [1, 2, 3, 4] and {p.total for p in progress} == {4}


def test_random_seed_is_reported_and_previews_can_be_off(tiny_models):
    model = tiny_models["ip2p"]
    result, events = run(model, edit_request(model, seed=-1, preview="none"))
    seed = result.parameters[0]["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert not any(isinstance(e, Preview) for e in events)
    assert sum(isinstance(e, Progress) for e in events) == STEPS


class IdentityEditor(PipelineSpy):
    """A pipeline that answers with exactly the picture it was shown (markup included)."""

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        shown = np.asarray(kwargs["image"], dtype=np.float32) / 255.0
        return type("Output", (), {"images": [shown]})()


def test_without_a_mask_strokes_the_model_copied_do_not_reach_the_output(tiny_models):
    kontext = tiny_models["flux-kontext"]
    model = dataclasses.replace(kontext, pipeline=IdentityEditor(kontext.pipeline))
    original = picture(11)
    annotation = np.zeros((SIZE, SIZE, 4), np.uint8)
    annotation[10:14, :] = (*STROKE, 255)
    annotation[40:50, 40:50] = (0, 0, 255, 160)  # half-transparent markup too

    result, _ = run(model, edit_request(model, init_image=original, annotation_image=annotation))

    assert np.array_equal(result.images[0], original)


def test_the_instruction_changes_the_result(tiny_models):
    model = tiny_models["flux-kontext"]  # its pipeline encodes the prompt itself (CLIP + T5)
    a, _ = run(model, edit_request(model, prompt="make it red"))
    b, _ = run(model, edit_request(model, prompt="turn the cat into a dog"))
    assert not np.array_equal(a.images[0], b.images[0])


def test_tiny_qwen_encodes_the_instruction_into_prompt_embeddings(tiny_models):
    import torch

    model, spy = spied(tiny_models["qwen-edit"], fail_with=StopBeforeDenoising())
    for instruction in ("make it red", "turn the cat into a dog"):
        with pytest.raises(StopBeforeDenoising):
            run(model, edit_request(model, prompt=instruction, negative="blurry"))

    first, second = spy.calls
    assert "prompt" not in first and first["true_cfg_scale"] == 4.0
    assert first["prompt_embeds"].shape[-1] == model.pipeline.transformer.config.joint_attention_dim
    assert first["prompt_embeds"].shape != second["prompt_embeds"].shape or not torch.equal(
        first["prompt_embeds"], second["prompt_embeds"]
    )
    assert torch.equal(first["negative_prompt_embeds"], second["negative_prompt_embeds"])


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"init_image": None}, "canvas is empty"),
        ({"prompt": "   "}, "instruction"),
        ({"mask": np.ones((10, 10), np.float32)}, "10x10 but the image is 64x64"),
        ({"mask": np.zeros((SIZE, SIZE), np.float32)}, "mask is empty"),
        ({"annotation_image": np.zeros((SIZE, SIZE, 3), np.uint8)}, "RGBA"),
        ({"annotation_image": np.zeros((8, 8, 4), np.uint8)}, "same size"),
        ({"reference_images": (np.zeros((8, 8, 3), np.float32),)}, "reference image 1"),
        ({"init_image": np.zeros((SIZE, SIZE), np.uint8)}, "RGB"),
        ({"steps": 0}, "Steps"),
        ({"seed": -5}, "Seed must be"),
    ],
)
def test_bad_requests_fail_with_one_clear_sentence(tiny_models, overrides, words):
    model, spy = spied(tiny_models["flux-kontext"])
    with pytest.raises(RequestError, match=words) as raised:
        run(model, edit_request(model, **overrides))
    assert raised.value.args[0].count(". ") == 0 and raised.value.args[0].endswith(".")
    assert spy.calls == []


def test_gpu_out_of_memory_becomes_a_clear_error(tiny_models):
    import torch

    model, _ = spied(tiny_models["ip2p"], fail_with=torch.cuda.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(OutOfMemory, match="ran out of memory"):
        run(model, edit_request(model))
