"""Inpaint sketch: in generate/inpaint the dilated stroke area is what gets regenerated."""

from __future__ import annotations

import numpy as np
import pytest

from inference.api import GenerationRequest, RequestError
from inference.sd.inpaint import InpaintExtension
from inference.sd.loop import generate_image
from inference.sd.modes import build_extensions
from inference.sd.prompt import encode_prompt_pair
from inference.sd.sketch import SKETCH_DILATION, sketch_area, sketch_inpaint_mask
from inference.tiny import build_tiny

SIZE = 64


@pytest.fixture(scope="module")
def model():
    import torch

    torch.set_num_threads(1)
    return build_tiny("sd15")


def sketched_picture() -> tuple[np.ndarray, np.ndarray]:
    """A smooth picture with a red stroke painted into it, and the stroke's coverage."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([x * 3, y * 3, np.full_like(x, 80)], -1).astype(np.uint8)
    stroke = np.zeros((SIZE, SIZE), np.float32)
    stroke[30:34, 8:28] = 1.0
    stroke[29, 8:28] = 0.3  # anti-aliased edge
    image[stroke > 0.5] = (230, 20, 20)
    return image, stroke


def sketch_request(**fields) -> GenerationRequest:
    image, stroke = sketched_picture()
    values = dict(mode="generate", prompt="a red scarf", width=SIZE, height=SIZE, steps=3, sampler="Euler", seed=4,
                  init_image=image, strength=0.8, sketch_mask=stroke, mask_blur=2)
    values.update(fields)
    return GenerationRequest(**values)


def run(model, request) -> np.ndarray:
    cond, uncond = encode_prompt_pair(model, request.prompt, request.negative)
    return generate_image(model, request, seed=request.seed, cond=cond, uncond=uncond,
                          extensions=build_extensions(request, model), on_step=lambda *args: None,
                          emit=lambda event: None)


def test_the_stroke_area_is_dilated():
    _, stroke = sketched_picture()
    area = sketch_area(stroke)
    assert area.dtype == np.float32 and set(np.unique(area)) == {0.0, 1.0}
    rows, columns = np.nonzero(area)
    assert (rows.min(), rows.max()) == (29 - SKETCH_DILATION, 33 + SKETCH_DILATION)
    assert (columns.min(), columns.max()) == (8 - SKETCH_DILATION, 27 + SKETCH_DILATION)


def test_generate_with_a_sketch_inpaints_the_strokes_and_keeps_the_rest_byte_identical(model):
    request = sketch_request()
    extensions = build_extensions(request, model)
    assert [type(e) for e in extensions] == [InpaintExtension]
    np.testing.assert_array_equal(extensions[0].mask, sketch_area(request.sketch_mask))
    out = run(model, request)
    image = request.init_image
    # The paste-back reaches the strokes' area grown to the latent grid and blurred: 3 sigma + 8 px.
    reach = sketch_area(request.sketch_mask, SKETCH_DILATION + 8 + 3 * request.mask_blur) > 0
    assert np.array_equal(out[~reach], image[~reach])
    assert (out[30:34, 8:28] != image[30:34, 8:28]).any()


def test_inpaint_with_a_sketch_regenerates_the_mask_and_the_strokes(model):
    _, stroke = sketched_picture()
    painted = np.zeros((SIZE, SIZE), np.float32)
    painted[4:12, 40:60] = 1.0
    request = sketch_request(mode="inpaint", mask=painted)
    mask = sketch_inpaint_mask(request)
    assert mask[8, 50] == 1.0 and mask[31, 16] == 1.0 and mask[56, 56] == 0.0
    # not_masked regenerates everything but the painted area, and the strokes always.
    inverted = sketch_inpaint_mask(sketch_request(mode="inpaint", mask=painted, mask_mode="not_masked"))
    assert inverted[8, 50] == 0.0 and inverted[31, 16] == 1.0 and inverted[56, 56] == 1.0
    out = run(model, request)
    image = request.init_image
    assert np.array_equal(out[60:, :4], image[60:, :4])
    assert (out[4:12, 40:60] != image[4:12, 40:60]).any() and (out[30:34, 8:28] != image[30:34, 8:28]).any()


def test_other_modes_ignore_the_sketch_mask(model):
    request = sketch_request(mode="regions")
    assert not any(isinstance(e, InpaintExtension) for e in build_extensions(request, model))


@pytest.mark.parametrize("fields, match", [
    (dict(init_image=None), "picture the strokes are painted on"),
    (dict(sketch_mask=np.zeros((SIZE, SIZE), np.float32)), "no visible strokes"),
])
def test_bad_sketch_input_is_a_request_error(model, fields, match):
    with pytest.raises(RequestError, match=match):
        build_extensions(sketch_request(**fields), model)


def test_the_engine_takes_an_inpaint_sketch_without_a_painted_mask():
    from inference.api import Finished
    from inference.engine import Engine
    from tests.inference.engine_fakes import FakeModels, run_events

    image, stroke = sketched_picture()
    request = sketch_request(mode="inpaint", model="builtin:tiny-sd15", steps=2)
    events = run_events(Engine(FakeModels()), request)
    assert isinstance(events[-1], Finished), events[-1]
    out = events[-1].images[0]
    assert np.array_equal(out[:, 56:], image[:, 56:]) and (out[30:34, 8:28] != image[30:34, 8:28]).any()
