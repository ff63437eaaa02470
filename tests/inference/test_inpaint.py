"""Inpaint (SPEC §3): pixels outside the blurred mask never change; A1111's options behave as named."""

import numpy as np
import pytest
import torch

from inference.api import Failed, GenerationRequest
from inference.engine import Engine
from inference.sd.inpaint import InpaintExtension, prepare_inpaint_mask
from inference.sd.loop import generate_image
from inference.sd.masks import (
    color_match,
    composite,
    crop_region,
    dilate_to_grid,
    fill_masked,
    gaussian_blur,
)
from inference.sd.prompt import encode_prompt_pair
from tests.inference.engine_fakes import FakeModels, finished, outcome, random_image, run_events, smooth_image

CONTENTS = ("fill", "original", "latent_noise", "latent_nothing")


@pytest.fixture(scope="module")
def models():
    return FakeModels()


def blob_mask(height, width, box) -> np.ndarray:
    y0, y1, x0, x1 = box
    mask = np.zeros((height, width), np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def inpaint_request(**overrides) -> GenerationRequest:
    values = dict(mode="inpaint", model="builtin:tiny-sd15", prompt="a cat", width=64, height=64, steps=2,
                  sampler="Euler", seed=7, strength=0.75, mask_blur=3)
    values.update(overrides)
    return GenerationRequest(**values)


def run_inpaint(model, request):
    """Run the loop with an InpaintExtension we keep, to read the composite weight it used."""
    extension = InpaintExtension.from_request(request)
    cond, uncond = encode_prompt_pair(model, request.prompt, request.negative, request.clip_skip)
    image = generate_image(model, request, seed=request.seed, cond=cond, uncond=uncond, extensions=[extension],
                           on_step=lambda *args: None, emit=lambda event: None)
    return image, extension


@pytest.mark.parametrize("model_name", ["builtin:tiny-sd15", "builtin:tiny-sd15-inpaint"])
@pytest.mark.parametrize("area", ["whole", "only_masked"])
@pytest.mark.parametrize("content", CONTENTS)
def test_pixels_where_the_blurred_mask_is_zero_are_byte_identical(models, model_name, area, content):
    model = models.load(model_name)
    canvas = 64 if area == "whole" else 128  # only_masked crops a 128 canvas and generates at 64
    source = random_image(canvas, canvas, seed=3)
    mask = blob_mask(canvas, canvas, (20, 33, 27, 41) if area == "whole" else (60, 75, 70, 88))
    request = inpaint_request(model=model_name, init_image=source, mask=mask, inpaint_area=area,
                              masked_content=content, padding=6, strength=1.0 if content == "latent_noise" else 0.75)
    image, extension = run_inpaint(model, request)
    weight = extension.composite_weight
    assert image.shape == source.shape and image.dtype == np.uint8
    untouched = weight == 0
    assert untouched.mean() > 0.3  # the test means something: most of the picture is outside
    assert np.array_equal(image[untouched], source[untouched])
    assert (image[mask > 0] != source[mask > 0]).any()  # and inside, something was generated
    # every painted pixel is regenerated; the feather is centred on the (grid-dilated) edge, so a
    # painted corner that lands on a cell corner keeps a share of the original
    assert weight[mask > 0].min() > 0.2 and weight[mask > 0].mean() > 0.6


def test_not_masked_regenerates_everything_else(models):
    source = random_image(seed=4)
    mask = blob_mask(64, 64, (8, 40, 8, 40))
    image, extension = run_inpaint(models.load("builtin:tiny-sd15"),
                                   inpaint_request(init_image=source, mask=mask, mask_mode="not_masked", mask_blur=0))
    kept = extension.composite_weight == 0
    assert kept[8:40, 8:40].all() and not kept[48:, 48:].any()
    assert np.array_equal(image[kept], source[kept])
    assert (image[48:, 48:] != source[48:, 48:]).any()


def test_mask_is_dilated_to_whole_latent_cells_before_blurring(models):
    source = random_image(seed=5)
    mask = blob_mask(64, 64, (19, 21, 33, 35))  # a 2x2 dot inside the cell rows 16..24, cols 32..40
    _, extension = run_inpaint(models.load("builtin:tiny-sd15"), inpaint_request(init_image=source, mask=mask, mask_blur=0))
    expected_cells = np.zeros((8, 8), np.float32)
    expected_cells[2, 4] = 1.0
    assert np.array_equal(extension.latent_mask, expected_cells)
    assert np.array_equal(extension.composite_weight > 0, np.kron(expected_cells, np.ones((8, 8))) > 0)


def test_only_masked_crop_keeps_the_feather_inside_and_matches_the_aspect(models):
    source = random_image(160, 160, seed=6)
    mask = blob_mask(160, 160, (70, 90, 60, 75))
    request = inpaint_request(init_image=source, mask=mask, inpaint_area="only_masked", width=64, height=32,
                              padding=4, mask_blur=4)
    image, extension = run_inpaint(models.load("builtin:tiny-sd15"), request)
    assert image.shape == (160, 160, 3)
    assert (extension.generation_weight.shape) == (32, 64)
    weight = extension.composite_weight
    rows, cols = np.nonzero(weight)
    box = crop_region(mask, 0, 64, 32)
    assert box[0] <= 60 and box[2] >= 75
    # the weight never reaches the crop's border: no hard edge when pasting back
    x0, y0, x1, y1 = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    height, width = image.shape[:2]
    assert x0 > 0 and y0 > 0 and x1 < width and y1 < height


def test_nine_channel_model_gets_mask_and_masked_image_channels(models):
    model = models.load("builtin:tiny-sd15-inpaint")
    seen = []
    hook = model.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        _, extension = run_inpaint(model, inpaint_request(init_image=random_image(), mask=blob_mask(64, 64, (0, 16, 0, 16))))
    finally:
        hook.remove()
    assert seen and all(x.shape == (2, 9, 8, 8) for x in seen)
    mask_channel = seen[0][0, 4]
    assert torch.equal(mask_channel, torch.from_numpy(extension.latent_mask))


def test_four_channel_model_holds_unmasked_latents_to_the_original(models):
    from inference.sd.context import LoopExtension

    class FinalLatents(LoopExtension):
        def after_step(self, ctx, step_index, latents):
            self.ctx, self.latents = ctx, latents
            return latents

    model = models.load("builtin:tiny-sd15")
    request = inpaint_request(init_image=random_image(), mask=blob_mask(64, 64, (0, 16, 0, 16)), mask_blur=0)
    extension = InpaintExtension.from_request(request)
    spy = FinalLatents()
    cond, uncond = encode_prompt_pair(model, request.prompt, "", 1)
    generate_image(model, request, seed=1, cond=cond, uncond=uncond, extensions=[extension, spy],
                   on_step=lambda *args: None, emit=lambda event: None)
    outside = torch.from_numpy(extension.latent_mask == 0)
    assert torch.equal(spy.latents[0][:, outside], spy.ctx.image_latents[0][:, outside])
    assert not torch.allclose(spy.latents[0][:, ~outside], spy.ctx.image_latents[0][:, ~outside])


def test_masked_content_changes_the_starting_latents(models):
    model = models.load("builtin:tiny-sd15")
    mask = blob_mask(64, 64, (16, 32, 16, 32))
    latents = {}
    from inference.sd.context import LoopExtension

    class Capture(LoopExtension):
        def __init__(self, key):
            self.key = key

        def prepare(self, ctx):
            latents[self.key] = ctx.image_latents.clone()

    for content in CONTENTS:
        request = inpaint_request(init_image=smooth_image(), mask=mask, masked_content=content, mask_blur=0, steps=4)
        cond, uncond = encode_prompt_pair(model, "", "", 1)
        generate_image(model, request, seed=1, cond=cond, uncond=uncond,
                       extensions=[InpaintExtension.from_request(request), Capture(content)],
                       on_step=lambda *args: None, emit=lambda event: None)
    cells = (slice(None), slice(None), slice(2, 4), slice(2, 4))
    assert torch.count_nonzero(latents["latent_nothing"][cells]) == 0
    assert not torch.allclose(latents["latent_noise"][cells], latents["original"][cells])
    assert not torch.allclose(latents["fill"][cells], latents["original"][cells])
    # outside the mask the latent-space variants start from the same latents; "fill" changed pixels,
    # and the VAE encoder (with its attention block) lets that reach every latent a little
    for content in ("latent_noise", "latent_nothing"):
        assert torch.equal(latents[content][..., 5:, 5:], latents["original"][..., 5:, 5:])
    assert torch.allclose(latents["fill"][..., 5:, 5:], latents["original"][..., 5:, 5:], atol=0.05)


def test_engine_inpaint_reports_settings_and_rejects_an_empty_mask(models):
    engine = Engine(models)
    source = random_image()
    mask = blob_mask(64, 64, (10, 20, 10, 20))
    result = finished(run_events(engine, inpaint_request(init_image=source, mask=mask, masked_content="fill")))
    parameters = result.parameters[0]
    assert parameters["mode"] == "inpaint" and parameters["masked_content"] == "fill"
    assert parameters["inpaint_area"] == "whole" and parameters["mask_blur"] == 3
    failed = outcome(run_events(engine, inpaint_request(init_image=source, mask=np.zeros((64, 64), np.float32))))
    assert isinstance(failed, Failed) and "mask is empty" in failed.message
    full = np.ones((64, 64), np.float32)
    failed = outcome(run_events(engine, inpaint_request(init_image=source, mask=full, mask_mode="not_masked")))
    assert isinstance(failed, Failed) and "mask is empty" in failed.message


def test_color_match_moves_the_generated_area_to_the_surroundings(models):
    source = np.full((64, 64, 3), (200, 60, 40), np.uint8)
    mask = blob_mask(64, 64, (16, 48, 16, 48))
    request = inpaint_request(init_image=source, mask=mask, color_match=True, mask_blur=2)
    image, extension = run_inpaint(models.load("builtin:tiny-sd15"), request)
    plain, _ = run_inpaint(models.load("builtin:tiny-sd15"), inpaint_request(init_image=source, mask=mask, mask_blur=2))
    inside = mask > 0
    target = np.array([200, 60, 40])
    matched_error = np.abs(image[inside].mean(axis=0) - target).sum()
    plain_error = np.abs(plain[inside].mean(axis=0) - target).sum()
    assert matched_error < plain_error and matched_error < 30


# ---- pixel helpers ---------------------------------------------------------------------------


def test_gaussian_blur_is_exactly_zero_beyond_three_sigma():
    mask = np.zeros((40, 40), np.float32)
    mask[18:22, 18:22] = 1
    blurred = gaussian_blur(mask, 2.0)
    assert blurred[18:22, 18:22].min() > 0.3 and blurred.max() <= 1.0
    assert (blurred[:, :12] == 0).all() and (blurred[:, 28:] == 0).all()
    assert blurred[20, 13] > 0  # within 6 px of the square
    assert np.array_equal(gaussian_blur(mask, 0), mask)
    assert np.allclose(gaussian_blur(np.ones((10, 10), np.float32), 3.0), 1.0)


def test_dilate_to_grid_takes_whole_cells():
    mask = np.zeros((16, 16), np.float32)
    mask[9, 3] = 0.5
    grid = dilate_to_grid(mask, 8)
    assert (grid[8:16, 0:8] == 0.5).all() and grid[:8].sum() == 0 and grid[:, 8:].sum() == 0


def test_fill_spreads_the_surrounding_colour_into_the_hole():
    image = np.zeros((48, 48, 3), np.uint8)
    image[:] = (30, 160, 220)
    image[16:32, 16:32] = (255, 0, 0)  # the content to be replaced
    mask = blob_mask(48, 48, (16, 32, 16, 32))
    filled = fill_masked(image, mask)
    assert np.array_equal(filled[mask == 0], image[mask == 0])
    assert np.abs(filled[16:32, 16:32].astype(int) - (30, 160, 220)).max() <= 5  # premultiplied rounding


def test_crop_region_grows_to_the_aspect_and_stays_on_the_image():
    mask = blob_mask(100, 200, (40, 60, 190, 200))
    x0, y0, x1, y1 = crop_region(mask, 5, 64, 64)
    assert (x1 - x0) == (y1 - y0) and x1 == 200 and 0 <= x0 and 0 <= y0 and y1 <= 100
    assert x0 <= 185 and y0 <= 35 and y1 >= 65


def test_color_match_and_composite_helpers():
    generated = np.full((8, 8, 3), 100, np.uint8)
    generated[:4] = 140
    reference = np.full((8, 8, 3), 50, np.uint8)
    region = np.zeros((8, 8), bool)
    region[:, :4] = True
    matched = color_match(generated, reference, region, ~region)
    assert abs(matched[region].mean() - 50) < 1 and np.array_equal(matched[~region], generated[~region])
    weight = np.zeros((8, 8), np.float32)
    weight[0, 0], weight[0, 1] = 1.0, 0.5
    out = composite(reference, generated, weight)
    assert out[0, 0, 0] == 140 and out[0, 1, 0] == 95 and np.array_equal(out[1:], reference[1:])


def test_prepare_inpaint_mask_inverts_for_not_masked():
    request = GenerationRequest(mask=np.array([[0.0, 0.25, 1.0]], np.float32), mask_mode="not_masked")
    assert prepare_inpaint_mask(request).tolist() == [[1.0, 0.75, 0.0]]


def test_wide_feathers_use_box_blurs_that_still_end_in_exact_zeros():
    from inference.sd.masks import blur_reach

    mask = np.zeros((300, 300), np.float32)
    mask[140:160, 140:160] = 1
    blurred = gaussian_blur(mask, 12.0)
    reach = blur_reach(12.0)
    assert 30 <= reach <= 45  # about 3 sigma
    assert (blurred[: 140 - reach] == 0).all() and (blurred[:, 160 + reach :] == 0).all()
    assert blurred[150, 150] > 0.3 and blurred[150, 140 - reach + 6] > 0
    rows = blurred[150]
    assert np.all(np.diff(rows[100:150]) >= -1e-6)  # rises monotonically towards the square
    assert np.allclose(gaussian_blur(np.ones((64, 64), np.float32), 20.0), 1.0)
    assert abs(blurred.sum() - mask.sum()) / mask.sum() < 0.01  # mass is preserved
