"""Acceptance 2: the own flow loop and diffusers' FLUX pipelines give identical images (max pixel
difference 0) for the same seed and settings, on tiny models built from the same components.

The one documented difference: we encode images by the VAE posterior's mode (deterministic), the
pipelines sample it with the run's generator; the tests run them with diffusers' own `argmax` mode.
"""

import numpy as np
import pytest
import torch

from inference.flow.schedule import FlowMatchEuler
from inference.sd.inpaint import InpaintExtension
from inference.sd.vae import image_to_tensor
from tests.inference.flow.flow_helpers import flux_request, random_image, run_flow, tiny_flux


def pipeline_of(cls, model):
    return cls(scheduler=FlowMatchEuler.from_config(model.scheduler_config), vae=model.vae,
               text_encoder=model.text_encoder, tokenizer=model.tokenizer, text_encoder_2=model.text_encoder_2,
               tokenizer_2=model.tokenizer_2, transformer=model.transformer)


def as_uint8(images) -> np.ndarray:
    return np.clip(np.rint(images[0] * 255.0), 0, 255).astype(np.uint8)


@pytest.fixture
def deterministic_vae_encode(monkeypatch):
    """The pipelines' retrieve_latents in its own argmax (posterior mode) setting."""
    from diffusers.pipelines.flux import pipeline_flux_fill, pipeline_flux_img2img

    for module in (pipeline_flux_img2img, pipeline_flux_fill):
        original = module.retrieve_latents
        monkeypatch.setattr(module, "retrieve_latents",
                            lambda output, generator=None, _f=original: _f(output, generator, sample_mode="argmax"))


def common_kwargs(request, sequence_length=512):
    return dict(width=request.width, height=request.height, num_inference_steps=request.steps,
                generator=torch.Generator("cpu").manual_seed(request.seed), output_type="np",
                max_sequence_length=sequence_length)


@pytest.mark.parametrize("variant,true_cfg", [("dev", 1.0), ("dev", 2.5), ("schnell", 1.0)])
def test_txt2img_matches_flux_pipeline(variant, true_cfg):
    from diffusers import FluxPipeline

    model = tiny_flux(variant)
    request = flux_request(negative="blurry, dark", steps=3)
    ours = run_flow(model, request, guidance=3.5, true_cfg=true_cfg)
    length = 256 if variant == "schnell" else 512
    reference = pipeline_of(FluxPipeline, model)(
        request.prompt, negative_prompt=request.negative, true_cfg_scale=true_cfg, guidance_scale=3.5,
        **common_kwargs(request, length)).images
    assert ours.std() > 0
    assert np.abs(ours.astype(int) - as_uint8(reference)).max() == 0


@pytest.mark.parametrize("strength", [0.5, 0.8])
def test_img2img_matches_flux_img2img_pipeline(strength, deterministic_vae_encode):
    from diffusers import FluxImg2ImgPipeline

    model = tiny_flux("dev")
    image = random_image(48, 64, seed=3)
    request = flux_request(init_image=image, strength=strength, steps=4)
    ours = run_flow(model, request)
    reference = pipeline_of(FluxImg2ImgPipeline, model)(
        request.prompt, image=image_to_tensor(image), strength=strength, guidance_scale=3.5,
        **common_kwargs(request)).images
    assert np.abs(ours.astype(int) - as_uint8(reference)).max() == 0
    assert not np.array_equal(ours, image)


def test_fill_inpaint_matches_flux_fill_pipeline(deterministic_vae_encode):
    from diffusers import FluxFillPipeline

    model = tiny_flux("fill")
    image = random_image(48, 64, seed=4)
    mask = np.zeros((48, 64), dtype=np.float32)
    mask[8:40, 16:48] = 1.0  # on the 8-px latent grid and unblurred: our mask is the pipeline's mask
    request = flux_request(model=model.name, mode="inpaint", init_image=image, mask=mask, mask_blur=0, steps=3)
    ours = run_flow(model, request, guidance=30.0, extensions=[InpaintExtension.from_request(request)])
    reference = as_uint8(pipeline_of(FluxFillPipeline, model)(
        request.prompt, image=image_to_tensor(image), mask_image=torch.from_numpy(mask)[None, None],
        guidance_scale=30.0, **common_kwargs(request)).images)
    inside = mask > 0
    assert np.abs(ours[inside].astype(int) - reference[inside]).max() == 0
    assert np.array_equal(ours[~inside], image[~inside])
