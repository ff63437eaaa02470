"""Regions (both methods), composite, refine and inpaint sketch through Engine.run with tiny SD1.5 and
SDXL models: one Finished image each, notices as events, LoRA state and processors restored."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from inference.api import (
    Cancelled,
    CompositePiece,
    LoraSpec,
    Notice,
    Progress,
    RegionSpec,
)
from inference.engine import Engine
from inference.sd.refine import refine_bounds
from tests.inference.engine_fakes import FakeModels, finished, outcome, run_events, smooth_image, tiny_request
from tests.inference.loop_probes import left_half

SIZE = 64


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(FakeModels())


def two_regions() -> tuple[RegionSpec, ...]:
    return (RegionSpec(left_half(), "a red house", strength=1.2),
            RegionSpec(1.0 - left_half(), "a blue lake", negative="fog"))


def collage() -> tuple[np.ndarray, np.ndarray]:
    image = smooth_image(SIZE, SIZE)
    alpha = np.zeros((1, SIZE, SIZE), np.float32)
    alpha[0, 16:40, 20:44] = 1.0
    image[16:40, 20:44] = (200, 30, 30)
    return image, alpha


def sketch() -> tuple[np.ndarray, np.ndarray]:
    image = smooth_image(SIZE, SIZE)
    stroke = np.zeros((SIZE, SIZE), np.float32)
    stroke[40:44, 10:30] = 1.0
    image[40:44, 10:30] = (20, 200, 20)
    return image, stroke


def mode_fields(case: str) -> dict:
    if case == "regions-attention":
        return dict(mode="regions", regions=two_regions())
    if case == "regions-latent":
        return dict(mode="regions", region_method="latent", regions=two_regions())
    if case == "regions-inpaint":
        mask = np.zeros((SIZE, SIZE), np.float32)
        mask[8:56, 8:56] = 1.0
        return dict(mode="regions", regions=two_regions(), init_image=smooth_image(), mask=mask)
    if case == "composite":
        picture = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        return dict(mode="composite", strength=0.6, regions=two_regions()[:1],
                    pieces=(CompositePiece(left_half(), "a red barn"),
                            CompositePiece(1.0 - left_half(), "a pond", image=picture)))
    if case == "refine":
        image, alpha = collage()
        return dict(mode="refine", init_image=image, collage_alpha=alpha, refine_edge_width=8, color_match=True)
    if case == "sketch":
        image, stroke = sketch()
        return dict(mode="generate", init_image=image, strength=0.7, sketch_mask=stroke)
    raise AssertionError(case)


CASES = ["regions-attention", "regions-latent", "regions-inpaint", "composite", "refine", "sketch"]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("case", CASES)
def test_every_region_and_collage_mode_runs_through_the_engine(engine, family, case):
    request = tiny_request(model=f"builtin:tiny-{family}", steps=3, **mode_fields(case))
    events = run_events(engine, request)
    result = finished(events)
    image = result.images[0]
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 1
    if case.startswith("regions-") and "init_image" not in mode_fields(case):
        assert len(steps) == 3  # txt2img: every step (image runs cut the schedule by strength)
    assert result.parameters[0]["mode"] == request.mode
    model = engine.models.load(request.model)
    assert "RegionAttnProcessor" not in {type(p).__name__ for p in model.unet.attn_processors.values()}
    if case == "refine":
        x0, y0, x1, y1 = refine_bounds(request.collage_alpha, request.refine_edge_width)
        outside = np.ones((SIZE, SIZE), bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(image[outside], request.init_image[outside])
    if case == "sketch":
        # Beyond the strokes' reach (dilation 8, latent grid, blur 3 sigma = 12) the picture is untouched.
        assert np.array_equal(image[:, 56:], request.init_image[:, 56:])


def test_region_notices_reach_the_event_stream(engine):
    small = np.zeros((SIZE, SIZE), np.float32)
    small[2:6, 2:6] = 1.0
    request = tiny_request(mode="regions", regions=(RegionSpec(small, "a bird"), *two_regions(),
                                                    RegionSpec(small, "a bee")))
    events = run_events(engine, request)
    finished(events)
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("Region 1 is fully hidden" in message for message in notices)
    assert any("Region 4 is only 4x4 px" in message for message in notices)


def test_a_batch_tells_each_region_notice_once(engine):
    small = np.zeros((SIZE, SIZE), np.float32)
    small[2:6, 2:6] = 1.0
    request = tiny_request(mode="regions", regions=(RegionSpec(small, "a bird"),), batch_count=2, steps=1)
    events = run_events(engine, request)
    assert len(finished(events).images) == 2
    assert len([e for e in events if isinstance(e, Notice)]) == 1


def test_per_region_loras_through_the_engine_leave_the_run_state_behind(tmp_path):
    from inference.adapters import active_loras
    from tests.inference.ckpt_helpers import kohya_lora_tensors, write_safetensors

    probe = FakeModels().load("builtin:tiny-sd15")
    files = {name: write_safetensors(tmp_path / f"{name}.safetensors", kohya_lora_tensors(probe, seed=seed))
             for name, seed in (("ink", 1), ("oil", 2))}
    engine = Engine(FakeModels(loras=files))
    plain_request = tiny_request(prompt="a red cat", steps=2)
    before = finished(run_events(engine, plain_request)).images[0]
    regions = (RegionSpec(left_half(), "a red cat", loras=(LoraSpec("ink"),)),
               RegionSpec(1.0 - left_half(), "a red cat <lora:oil:0.8>"))
    request = tiny_request(mode="regions", region_method="latent", regions=regions, prompt="a red cat", steps=2)
    with_loras = finished(run_events(engine, request)).images[0]
    model = engine.models.load("builtin:tiny-sd15")
    assert active_loras(model) == {}  # the run had no LoRAs of its own: none stay active
    after = finished(run_events(engine, plain_request)).images[0]
    assert np.array_equal(before, after)
    assert not np.array_equal(before, with_loras)


def test_cancel_during_regions_restores_the_processors_and_the_engine_goes_on(engine):
    cancel = threading.Event()

    def cancel_after_first_step(event):
        if isinstance(event, Progress):
            cancel.set()

    request = tiny_request(mode="regions", regions=two_regions(), steps=3)
    events = run_events(engine, request, cancel=cancel, on_event=cancel_after_first_step)
    assert isinstance(outcome(events), Cancelled)
    model = engine.models.load(request.model)
    assert "RegionAttnProcessor" not in {type(p).__name__ for p in model.unet.attn_processors.values()}
    finished(run_events(engine, request))
