"""Acceptance 5: inpaint with FLUX.1 Fill (native) and dev (latent blending), `whole` and `only_masked`:
byte-identical wherever the blurred mask is 0; and the other latent-space features on the flow loop
(per-pixel strength through refine, composite, sketch)."""

import numpy as np
import pytest

from inference.api import CompositePiece, RequestError
from inference.flow.modes import build_flow_extensions
from inference.sd.inpaint import InpaintExtension
from tests.inference.flow.flow_helpers import flux_request, random_image, run_flow, tiny_flux

SIZE = 64


def inpaint_request(model, **overrides):
    mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    mask[20:40, 24:44] = 1.0
    values = dict(model=model.name, mode="inpaint", init_image=random_image(SIZE, SIZE, seed=7), mask=mask,
                  width=SIZE, height=SIZE, mask_blur=4, steps=3, padding=8)
    values.update(overrides)
    return flux_request(**values)


@pytest.mark.parametrize("variant", ["fill", "dev"])
@pytest.mark.parametrize("area", ["whole", "only_masked"])
def test_inpaint_keeps_every_byte_outside_the_blurred_mask(variant, area):
    model = tiny_flux(variant)
    overrides = {"inpaint_area": area}
    if area == "only_masked":
        overrides.update(width=32, height=32)  # the crop is generated at 32 x 32 and pasted back
    request = inpaint_request(model, **overrides)
    extension = InpaintExtension.from_request(request)
    result = run_flow(model, request, extensions=[extension], guidance=30.0 if variant == "fill" else 3.5)
    assert result.shape == request.init_image.shape
    outside = extension.composite_weight == 0
    assert outside.any() and (~outside).any()
    assert np.array_equal(result[outside], request.init_image[outside])
    inside = extension.composite_weight > 0.99
    assert not np.array_equal(result[inside], request.init_image[inside])


def test_fill_gets_the_masked_image_and_the_pixel_mask_as_extra_inputs():
    model = tiny_flux("fill")
    request = inpaint_request(model, mask_blur=0)
    seen = {}

    class Spy(InpaintExtension):
        def prepare(self, ctx):
            super().prepare(ctx)
            seen["channels"] = ctx.conditioning_channels

    run_flow(model, request, extensions=[Spy.from_request(request)], guidance=30.0)
    channels = seen["channels"]
    assert tuple(channels.shape) == (1, 16 + 64, SIZE // 8, SIZE // 8)
    mask = channels[0, 16:]  # 64 channels: the 8x8 pixels of each latent pixel
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask[:, 3, 4].min() == 1 and mask[:, 0, 0].max() == 0  # latent cell (3, 4) = pixels 24..32, 32..40


def test_dev_inpaint_holds_the_unmasked_latents_to_the_renoised_original():
    model = tiny_flux("dev")
    request = inpaint_request(model, strength=1.0)
    extension = InpaintExtension.from_request(request)
    run_flow(model, request, extensions=[extension])
    assert extension.blend is not None  # no conditioning channels: latent blending
    start = extension.blend.start[0, 0].numpy()
    assert start.max() == 3 and start.min() == 0  # unmasked: never denoised; masked: from step 0


def test_refine_on_flux_keeps_the_collage_outside_its_bounds():
    model = tiny_flux("dev")
    alpha = np.zeros((1, SIZE, SIZE), np.float32)
    alpha[0, 16:40, 16:40] = 1.0
    request = flux_request(mode="refine", init_image=random_image(SIZE, SIZE, seed=2), collage_alpha=alpha,
                           width=SIZE, height=SIZE, refine_edge_width=8, steps=4)
    extensions = build_flow_extensions(request, model)
    result = run_flow(model, request, extensions=extensions)
    weight = extensions[0].paste_weight
    assert np.array_equal(result[weight == 0], request.init_image[weight == 0])
    assert not np.array_equal(result[weight > 0], request.init_image[weight > 0])


def test_composite_on_flux_generates_each_piece_with_its_own_prompt():
    model = tiny_flux("dev")
    left = np.zeros((SIZE, SIZE), np.float32)
    left[:, :32] = 1.0
    request = flux_request(mode="composite", pieces=(CompositePiece(left, "a blue lake"),), width=SIZE, height=SIZE,
                           steps=2, composite_step=0.5)
    other = flux_request(mode="composite", pieces=(CompositePiece(left, "a burning city"),), width=SIZE,
                         height=SIZE, steps=2, composite_step=0.5)
    first = run_flow(model, request, extensions=build_flow_extensions(request, model))
    second = run_flow(model, other, extensions=build_flow_extensions(other, model))
    assert not np.array_equal(first, second)


def test_the_size_must_fit_the_packed_latents():
    model = tiny_flux("dev")
    with pytest.raises(RequestError, match="multiple of 16"):
        run_flow(model, flux_request(width=72, height=64))


def test_an_inpaint_sketch_on_flux_regenerates_only_around_the_strokes():
    model = tiny_flux("dev")
    sketch = np.zeros((SIZE, SIZE), np.float32)
    sketch[28:36, 28:36] = 1.0
    request = flux_request(init_image=random_image(SIZE, SIZE, seed=9), sketch_mask=sketch, width=SIZE,
                           height=SIZE, steps=2, mask_blur=2)
    extensions = build_flow_extensions(request, model)
    result = run_flow(model, request, extensions=extensions)
    weight = extensions[0].composite_weight
    assert np.array_equal(result[weight == 0], request.init_image[weight == 0])
    assert not np.array_equal(result[weight > 0], request.init_image[weight > 0])


def test_fill_outside_inpainting_regenerates_everything():
    model = tiny_flux("fill")
    request = flux_request(model=model.name, width=SIZE, height=SIZE, steps=2)
    extensions = build_flow_extensions(request, model)
    assert [type(e).__name__ for e in extensions] == ["WholeImageConditioning"]
    image = run_flow(model, request, extensions=extensions, guidance=30.0)
    assert image.shape == (SIZE, SIZE, 3) and image.std() > 0
