"""The denoise loop: samplers, seeds, CFG, img2img strength, extension hooks, per-pixel strength."""

import numpy as np
import pytest
import torch

from inference.api import SAMPLERS, GenerationCancelled
from inference.engine import Engine
from inference.sd.blend import StrengthBlend, StrengthMap
from inference.sd.context import LoopExtension
from inference.sd.loop import generate_image
from inference.sd.prompt import encode_prompt_pair
from inference.sd.steps import start_steps
from tests.inference.engine_fakes import (
    FakeModels,
    finished,
    progress_events,
    random_image,
    run_events,
    tiny_request,
)


@pytest.fixture(scope="module")
def models():
    return FakeModels()


@pytest.fixture(scope="module")
def engine(models):
    return Engine(models)


def image_of(engine, **overrides) -> np.ndarray:
    return finished(run_events(engine, tiny_request(**overrides))).images[0]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs(engine, sampler):
    events = run_events(engine, tiny_request(sampler=sampler, steps=2, cfg=7.0 if sampler != "LCM" else 1.5))
    result = finished(events)
    (image,) = result.images
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 0  # decoded noise, not an empty frame
    assert result.parameters[0]["sampler"] == sampler
    progress = progress_events(events)
    assert progress[-1].step == progress[-1].total == len(progress) >= 2


def test_sdxl_and_inpaint_models_generate(engine):
    for model in ("builtin:tiny-sdxl", "builtin:tiny-sd15-inpaint", "builtin:tiny-sdxl-inpaint"):
        image = image_of(engine, model=model, sampler="Euler a", width=64, height=48)
        assert image.shape == (48, 64, 3)


def test_same_seed_same_image_other_seed_other_image(engine):
    for sampler in ("Euler a", "DPM++ SDE Karras"):  # both draw fresh noise during sampling
        first = image_of(engine, seed=99, sampler=sampler)
        again = image_of(engine, seed=99, sampler=sampler)
        other = image_of(engine, seed=100, sampler=sampler)
        assert np.array_equal(first, again)
        assert not np.array_equal(first, other)


def test_random_seed_is_reported_and_reproduces(engine):
    result = finished(run_events(engine, tiny_request(seed=-1)))
    seed = result.parameters[0]["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert np.array_equal(result.images[0], image_of(engine, seed=seed))


def test_batch_items_use_consecutive_seeds(engine):
    events = run_events(engine, tiny_request(seed=500, batch_count=2, steps=2))
    result = finished(events)
    assert [p["seed"] for p in result.parameters] == [500, 501]
    assert [p["batch_index"] for p in result.parameters] == [0, 1]
    assert np.array_equal(result.images[1], image_of(engine, seed=501))
    assert [(p.step, p.total) for p in progress_events(events)] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def count_unet_batches(models, request, engine) -> list[int]:
    unet = models.load(request.model).unet
    sizes = []
    hook = unet.register_forward_pre_hook(lambda module, args: sizes.append(int(args[0].shape[0])))
    try:
        finished(run_events(engine, request))
    finally:
        hook.remove()
    return sizes


def test_cfg_batches_uncond_and_cond_and_cfg_1_skips_the_uncond_pass(models, engine):
    assert count_unet_batches(models, tiny_request(cfg=7.0, steps=2), engine) == [2, 2]
    assert count_unet_batches(models, tiny_request(cfg=1.0, steps=2), engine) == [1, 1]
    assert not np.array_equal(image_of(engine, cfg=1.0), image_of(engine, cfg=7.0))


def test_sdxl_gets_size_crop_and_target_time_ids(models, engine):
    unet = models.load("builtin:tiny-sdxl").unet
    seen = []

    def capture(module, args, kwargs):
        seen.append(kwargs["added_cond_kwargs"])

    hook = unet.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        finished(run_events(engine, tiny_request(model="builtin:tiny-sdxl", width=64, height=48, steps=1)))
    finally:
        hook.remove()
    (added,) = seen
    assert added["time_ids"].tolist() == [[48, 64, 0, 0, 48, 64]] * 2
    assert added["text_embeds"].shape == (2, 32)


def test_img2img_strength_zero_returns_the_input_unchanged(engine):
    source = random_image()
    events = run_events(engine, tiny_request(init_image=source, strength=0.0, steps=4))
    assert np.array_equal(finished(events).images[0], source)
    assert progress_events(events) == []
    tiny_strength = run_events(engine, tiny_request(init_image=source, strength=0.2, steps=4))  # int(0.8) = 0 steps
    assert np.array_equal(finished(tiny_strength).images[0], source)


def test_img2img_runs_the_last_strength_part_of_the_schedule(engine):
    source = random_image()
    events = run_events(engine, tiny_request(init_image=source, strength=0.5, steps=4))
    assert [(p.step, p.total) for p in progress_events(events)] == [(1, 2), (2, 2)]
    result = finished(events)
    assert result.parameters[0]["denoising_strength"] == 0.5
    assert not np.array_equal(result.images[0], source)


class RecordingExtension(LoopExtension):
    def __init__(self, log, name, replace_noise=False, fail_at=None):
        self.log, self.name, self.replace_noise, self.fail_at = log, name, replace_noise, fail_at

    def prepare_image(self, ctx):
        self.log.append((self.name, "prepare_image"))

    def prepare(self, ctx):
        self.log.append((self.name, "prepare"))

    def predict_noise(self, ctx, latents, t):
        self.log.append((self.name, "predict_noise"))
        return torch.zeros_like(latents) if self.replace_noise else None

    def after_step(self, ctx, step_index, latents):
        self.log.append((self.name, f"after_step {step_index}"))
        if step_index == self.fail_at:
            raise GenerationCancelled()
        return latents

    def finish(self, ctx, image):
        self.log.append((self.name, "finish"))
        return image

    def cleanup(self, ctx):
        self.log.append((self.name, "cleanup"))


def run_loop(model, request, extensions, on_step=None):
    cond, uncond = encode_prompt_pair(model, request.prompt, request.negative, request.clip_skip)
    return generate_image(model, request, seed=request.seed, cond=cond, uncond=uncond, extensions=extensions,
                          on_step=on_step or (lambda *args: None), emit=lambda event: None)


def test_hooks_run_in_order_and_an_extension_can_replace_the_unet(models):
    model = models.load("builtin:tiny-sd15")
    log = []
    calls = []
    hook = model.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        run_loop(model, tiny_request(steps=2), [RecordingExtension(log, "a"), RecordingExtension(log, "b", replace_noise=True)])
    finally:
        hook.remove()
    assert calls == []  # "b" answered every noise prediction
    assert log == [
        ("a", "prepare_image"), ("b", "prepare_image"), ("a", "prepare"), ("b", "prepare"),
        ("a", "predict_noise"), ("b", "predict_noise"), ("a", "after_step 0"), ("b", "after_step 0"),
        ("a", "predict_noise"), ("b", "predict_noise"), ("a", "after_step 1"), ("b", "after_step 1"),
        ("b", "finish"), ("a", "finish"), ("b", "cleanup"), ("a", "cleanup"),
    ]


def test_cleanup_runs_when_the_run_is_interrupted(models):
    model = models.load("builtin:tiny-sd15")
    log = []
    with pytest.raises(GenerationCancelled):
        run_loop(model, tiny_request(steps=3), [RecordingExtension(log, "a", fail_at=1)])
    assert log[-1] == ("a", "cleanup") and ("a", "finish") not in log


def test_start_steps_follow_the_img2img_cut():
    strengths = np.array([[0.0, 0.25, 0.5], [0.74, 0.75, 1.0]])
    # 4 steps, first-order sampler, run covering the whole schedule
    assert start_steps(strengths, 4, 1, 0, 4).tolist() == [[4, 3, 2], [2, 1, 0]]
    # run starting at step 2 (strength 0.5): stronger pixels start with the run
    assert start_steps(strengths, 4, 1, 2, 2).tolist() == [[2, 1, 0], [0, 0, 0]]


class LatentSpy(LoopExtension):
    """Records the latents after every step (list it after the blend)."""

    def __init__(self):
        self.latents = []
        self.ctx = None

    def after_step(self, ctx, step_index, latents):
        self.ctx = ctx
        self.latents.append(latents.clone())
        return latents


def test_per_pixel_strength_holds_each_pixel_until_its_start_step(models):
    model = models.load("builtin:tiny-sd15")
    values = np.zeros((64, 64), np.float32)
    values[:, 32:] = 1.0  # right half regenerates fully
    values[:16, :16] = 0.5  # top-left latent block 2x2 joins halfway
    spy = LatentSpy()
    request = tiny_request(init_image=random_image(), strength=1.0, steps=4)
    run_loop(model, request, [StrengthBlend(StrengthMap(values)), spy])
    ctx = spy.ctx
    original = ctx.image_latents
    final = spy.latents[-1]
    # strength 0: the clean original at the end; strength 1: new content
    assert torch.equal(final[..., 2:, :4], original[..., 2:, :4])
    assert not torch.allclose(final[..., 4:], original[..., 4:], atol=1e-3)
    # strength 0.5 of 4 steps starts at step 2: after steps 0 and 1 it is the original noised to the
    # next step's level (Euler: x = x0 + sigma * noise)
    for step in (0, 1):
        expected = original + ctx.noise * ctx.scheduler.sigmas[step + 1]
        assert torch.allclose(spy.latents[step][..., :2, :2], expected[..., :2, :2], atol=1e-5)
    assert not torch.allclose(final[..., :2, :2], original[..., :2, :2], atol=1e-3)


def test_strength_map_is_validated():
    from inference.api import RequestError

    with pytest.raises(RequestError, match="between 0 and 1"):
        StrengthMap(np.full((8, 8), 1.5, np.float32))
    with pytest.raises(RequestError, match="2-D"):
        StrengthMap(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(RequestError, match="latent grid"):
        StrengthMap(np.zeros((12, 8), np.float32)).latent_values(8)


def test_step_callback_sees_every_step(models):
    model = models.load("builtin:tiny-sd15")
    seen = []
    run_loop(model, tiny_request(steps=3), [], on_step=lambda i, total, latents: seen.append((i, total, tuple(latents.shape))))
    assert seen == [(0, 3, (1, 4, 8, 8)), (1, 3, (1, 4, 8, 8)), (2, 3, (1, 4, 8, 8))]



def test_half_precision_vae_that_asks_for_upcast_is_kept_in_float32():
    from inference.sd.vae import decode_latents, encode_image
    from inference.tiny import build_tiny

    model = build_tiny("sdxl")  # its VAE config says force_upcast, like SDXL's original VAE
    model.vae.to(torch.float16)
    latents = encode_image(model, random_image(), torch.device("cpu"))
    assert model.vae.dtype == torch.float32 and latents.dtype == torch.float32
    assert decode_latents(model, latents).shape == (64, 64, 3)
    plain = build_tiny("sd15")  # no force_upcast: its dtype is left alone
    plain.vae.to(torch.bfloat16)
    decode_latents(plain, latents)
    assert plain.vae.dtype == torch.bfloat16
