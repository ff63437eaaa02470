"""Z-Image (Turbo) on the flow loop: the tiny built-in model, its prompt encoding, parity with diffusers'
ZImagePipeline / ZImageImg2ImgPipeline / ZImageInpaintPipeline (same seed -> max pixel difference 0), the
engine's run with the family's defaults, previews and what it refuses.

As for FLUX (test_flow_parity.py), the one documented difference: we encode images by the VAE
posterior's mode, the pipelines sample it with the run's generator; the tests run them in diffusers'
own `argmax` mode.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest
import torch

from inference.api import Failed, Finished, GenerationRequest, Notice, Preview, Progress
from inference.flow.schedule import FlowMatchEuler
from inference.flow.zimage import ZImageContext, chat_prompt, encode_zimage_prompt_pair
from inference.sd.inpaint import InpaintExtension
from inference.sd.vae import image_to_tensor
from tests.inference.flow.flow_helpers import random_image, run_flow

NAME = "builtin:tiny-zimage"


@functools.lru_cache(maxsize=None)
def tiny_zimage():
    from inference.flow.tiny import build_tiny_zimage

    return build_tiny_zimage()


def zimage_request(**overrides) -> GenerationRequest:
    settings = dict(model=NAME, prompt="a red fox in the snow", negative="", width=64, height=48, steps=3, seed=5)
    settings.update(overrides)
    return GenerationRequest(**settings)


def pipeline_of(cls, model):
    return cls(scheduler=FlowMatchEuler.from_config(model.scheduler_config), vae=model.vae,
               text_encoder=model.text_encoder, tokenizer=model.tokenizer, transformer=model.transformer)


def as_uint8(images) -> np.ndarray:
    return np.clip(np.rint(images[0] * 255.0), 0, 255).astype(np.uint8)


def common_kwargs(request):
    return dict(width=request.width, height=request.height, num_inference_steps=request.steps,
                generator=torch.Generator("cpu").manual_seed(request.seed), output_type="np")


@pytest.fixture
def deterministic_vae_encode(monkeypatch):
    """The pipelines' retrieve_latents in its own argmax (posterior mode) setting."""
    from diffusers.pipelines.z_image import pipeline_z_image_img2img, pipeline_z_image_inpaint

    for module in (pipeline_z_image_img2img, pipeline_z_image_inpaint):
        original = module.retrieve_latents
        monkeypatch.setattr(module, "retrieve_latents",
                            lambda output, generator=None, _f=original: _f(output, generator, sample_mode="argmax"))


# ---- the model and its prompts ---------------------------------------------------------------------


def test_the_tiny_model_is_real_diffusers_classes_with_the_qwen_tokenizer():
    from diffusers import AutoencoderKL, ZImageTransformer2DModel
    from transformers import Qwen3Model

    model = tiny_zimage()
    assert model.family == "zimage" and model.builtin and model.context is ZImageContext
    assert isinstance(model.transformer, ZImageTransformer2DModel)
    assert isinstance(model.text_encoder, Qwen3Model) and isinstance(model.vae, AutoencoderKL)
    assert model.vae.config.latent_channels == 16 and model.transformer.config.in_channels == 16
    assert model.text_encoder_2 is None and model.tokenizer_2 is None
    assert model.tokenizer("a photo of a cat").input_ids == [64, 6548, 315, 264, 8251]  # the real vocabulary
    assert model.scheduler_config["shift"] == 3.0 and not model.scheduler_config["use_dynamic_shifting"]


def test_prompts_go_through_qwen3s_chat_template_without_a_system_message():
    model = tiny_zimage()
    assert chat_prompt(model.tokenizer, "a cat") == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"


def test_caption_features_are_the_real_tokens_of_the_second_to_last_layer():
    model = tiny_zimage()
    cond, uncond = encode_zimage_prompt_pair(model, "a red fox", "")
    ids = model.tokenizer(chat_prompt(model.tokenizer, "a red fox"), return_tensors="pt").input_ids
    with torch.no_grad():
        expected = model.text_encoder(input_ids=ids, output_hidden_states=True).hidden_states[-2]
    assert cond.hidden_states.shape == (1, ids.shape[1], 32)
    assert uncond.hidden_states.shape[1] < cond.hidden_states.shape[1]  # its own length, no padding
    assert torch.allclose(cond.hidden_states, expected, atol=1e-6)


def test_a_prompt_over_512_tokens_is_cut_with_a_notice():
    model = tiny_zimage()
    notices = []
    cond, _ = encode_zimage_prompt_pair(model, "fox " * 600, "", on_truncated=notices.append)
    assert cond.hidden_states.shape[1] == 512
    assert len(notices) == 1 and "512 Qwen3 tokens" in notices[0]


# ---- parity with the diffusers pipelines -------------------------------------------------------------


@pytest.mark.parametrize("guidance,normalization,truncation", [
    (0.0, 0.0, 1.0),  # Turbo: no CFG
    (2.5, 0.0, 1.0),  # CFG with the negative, both passes in one call
    (4.0, 1.01, 1.0),  # the guided prediction's norm capped
    (2.5, 0.0, 0.1),  # CFG dropped on the late steps
])
def test_txt2img_matches_zimage_pipeline(guidance, normalization, truncation):
    from diffusers import ZImagePipeline

    model = tiny_zimage()
    request = zimage_request(negative="blurry, dark" if guidance else "")
    ours = run_flow(model, request, guidance=guidance,
                    context_options=dict(cfg_normalization=normalization, cfg_truncation=truncation))
    reference = pipeline_of(ZImagePipeline, model)(
        request.prompt, negative_prompt=request.negative, guidance_scale=guidance,
        cfg_normalization=normalization, cfg_truncation=truncation, **common_kwargs(request)).images
    assert ours.std() > 0
    assert np.abs(ours.astype(int) - as_uint8(reference)).max() == 0


def test_the_cfg_options_change_the_image():
    model = tiny_zimage()
    request = zimage_request(negative="blurry, dark")
    plain = run_flow(model, request, guidance=4.0)
    assert not np.array_equal(plain, run_flow(model, request, guidance=0.0))
    assert not np.array_equal(plain, run_flow(model, request, guidance=4.0,
                                              context_options=dict(cfg_normalization=1.01)))
    assert not np.array_equal(plain, run_flow(model, request, guidance=4.0, context_options=dict(cfg_truncation=0.1)))


@pytest.mark.parametrize("strength", [0.5, 0.8])
def test_img2img_matches_zimage_img2img_pipeline(strength, deterministic_vae_encode):
    from diffusers import ZImageImg2ImgPipeline

    model = tiny_zimage()
    image = random_image(48, 64, seed=3)
    request = zimage_request(init_image=image, strength=strength, steps=4)
    ours = run_flow(model, request, guidance=0.0)
    reference = pipeline_of(ZImageImg2ImgPipeline, model)(
        request.prompt, image=image_to_tensor(image), strength=strength, guidance_scale=0.0,
        **common_kwargs(request)).images
    assert np.abs(ours.astype(int) - as_uint8(reference)).max() == 0
    assert not np.array_equal(ours, image)


@pytest.mark.parametrize("strength", [1.0, 0.75])
def test_inpaint_matches_zimage_inpaint_pipeline(strength, deterministic_vae_encode):
    from diffusers import ZImageInpaintPipeline

    model = tiny_zimage()
    image = random_image(48, 64, seed=4)
    mask = np.zeros((48, 64), dtype=np.float32)
    mask[16:48, 16:48] = 1.0  # on the 16-px patch grid and unblurred: our mask is the pipeline's mask
    request = zimage_request(mode="inpaint", init_image=image, mask=mask, mask_blur=0, strength=strength, steps=4)
    ours = run_flow(model, request, guidance=0.0, extensions=[InpaintExtension.from_request(request)])
    reference = as_uint8(pipeline_of(ZImageInpaintPipeline, model)(
        request.prompt, image=image_to_tensor(image), mask_image=torch.from_numpy(mask)[None, None],
        strength=strength, guidance_scale=0.0, **common_kwargs(request)).images)
    inside = mask > 0
    assert np.abs(ours[inside].astype(int) - reference[inside]).max() == 0
    assert np.array_equal(ours[~inside], image[~inside])  # pasted back byte for byte


# ---- through the engine ------------------------------------------------------------------------------


def run_engine(request):
    from inference.engine import Engine
    from inference.models import ModelManager

    events = []
    Engine(ModelManager([], hash_cache_file=None)).run(request, events.append, threading.Event())
    return events


def test_the_engine_runs_the_builtin_with_turbos_defaults_and_previews():
    events = run_engine(zimage_request(steps=2, batch_count=1, seed=9))
    failures = [event.message for event in events if isinstance(event, Failed)]
    assert failures == []
    assert [event.step for event in events if isinstance(event, Progress)] == [1, 2]
    previews = [event for event in events if isinstance(event, Preview)]
    assert len(previews) == 2 and previews[0].image.shape == (6, 8, 3)  # latent size, 16 channels to RGB
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.images[0].shape == (48, 64, 3)
    record = finished.parameters[0]
    assert record["family"] == "zimage" and record["guidance"] == 0.0 and record["cfg_scale"] == 0.0


def test_the_engine_runs_cfg_from_the_guidance_and_reports_it():
    events = run_engine(zimage_request(steps=2, negative="blurry", guidance=2.0, seed=9))
    finished = events[-1]
    assert isinstance(finished, Finished), events[-1]
    assert finished.parameters[0]["guidance"] == 2.0
    assert not any(isinstance(event, Notice) for event in events)


def test_the_registry_entry_declares_turbos_defaults():
    from inference.families import FAMILIES
    from inference.models.discovery import builtin_models

    entry = FAMILIES.get("zimage")
    assert (entry.defaults.steps, entry.defaults.guidance, entry.defaults.width) == (8, 0.0, 1024)
    assert entry.loop == "flow" and entry.latent.channels == 16 and len(entry.preview.rgb) == 16
    assert {info.name: info.family for info in builtin_models()}[NAME] == "zimage"


def test_regions_are_refused_in_one_sentence_before_loading():
    from inference.api import RegionSpec

    regions = (RegionSpec(prompt="a cat", mask=np.ones((48, 64), np.float32)),)
    events = run_engine(zimage_request(mode="regions", regions=regions))
    assert isinstance(events[-1], Failed)
    assert events[-1].message == ("Regions (attention and latent couple) are not yet for Z-Image: the model "
                                  f"'{NAME}' runs generate, inpaint.")


def test_z_image_transformer_files_are_recognised_but_refused_in_one_sentence(tmp_path):
    from inference.families.zimage import detect_zimage
    from inference.flow.tiny import prepare_zimage_transformer

    shapes = {key: tuple(value.shape) for key, value in prepare_zimage_transformer().state_dict().items()}
    assert detect_zimage(shapes).family == "zimage"
    assert detect_zimage({"model.diffusion_model." + key: shape for key, shape in shapes.items()}).family == "zimage"
    assert detect_zimage({"double_blocks.0.img_attn.norm.key_norm.scale": (128,)}) is None
