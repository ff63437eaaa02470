"""run_flux: events like the SD engine's (Progress, Preview per step, Finished), cancel, previews,
guidance and true CFG settings, built-in tiny models."""

import threading

import numpy as np
import pytest

from inference.api import Cancelled, Finished, GenerationCancelled, Preview, Progress, RequestError
from inference.flow.run import resolve_true_cfg, run_flux
from inference.preview import linear_preview
from inference.records import RunProgress
from tests.inference.flow.flow_helpers import flux_request, tiny_flux


def run_events(model, request, cancel_after=None):
    events, cancel = [], threading.Event()

    def on_event(event):
        events.append(event)
        if isinstance(event, Progress) and cancel_after is not None and event.step >= cancel_after:
            cancel.set()

    run_flux(model, request, on_event, cancel, RunProgress())
    return events


def test_every_step_reports_progress_and_a_preview_then_finished():
    model = tiny_flux("schnell")
    events = run_events(model, flux_request(model=model.name, steps=3, batch_count=2, seed=11))
    progress = [e for e in events if isinstance(e, Progress)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in progress] == [1, 2, 3, 4, 5, 6] and progress[-1].total == 6
    assert len(previews) == 6 and previews[0].image.shape == (48 // 8, 64 // 8, 3)
    (finished,) = [e for e in events if isinstance(e, Finished)]
    assert len(finished.images) == 2 and not np.array_equal(*finished.images)
    record = finished.parameters[1]
    assert record["seed"] == 12 and record["family"] == "flux-schnell" and record["guidance"] is None
    assert record["sampler"] == "FlowMatchEuler" and record["true_cfg_scale"] == 1.0


def test_dev_reports_its_default_guidance_and_a_given_one():
    model = tiny_flux("dev")
    events = run_events(model, flux_request(steps=1, preview="none"))
    assert [e for e in events if isinstance(e, Finished)][0].parameters[0]["guidance"] == 3.5
    assert not [e for e in events if isinstance(e, Preview)]
    events = run_events(model, flux_request(steps=1, guidance=5.0))
    assert [e for e in events if isinstance(e, Finished)][0].parameters[0]["guidance"] == 5.0
    with pytest.raises(RequestError, match="guidance"):
        run_events(model, flux_request(steps=1, guidance=float("nan")))


def test_guidance_changes_the_image_of_dev():
    model = tiny_flux("dev")
    images = [[e for e in run_events(model, flux_request(steps=2, guidance=g)) if isinstance(e, Finished)][0].images[0]
              for g in (1.0, 8.0)]
    assert not np.array_equal(*images)


def test_true_cfg_needs_a_negative_prompt():
    assert resolve_true_cfg(flux_request(true_cfg_scale=4.0), "") == 1.0
    assert resolve_true_cfg(flux_request(true_cfg_scale=4.0), "blurry") == 4.0
    assert resolve_true_cfg(flux_request(true_cfg_scale=1.0), "blurry") == 1.0


def test_cancel_ends_the_run_at_the_end_of_the_current_step():
    model = tiny_flux("dev")
    with pytest.raises(GenerationCancelled):
        run_events(model, flux_request(steps=4), cancel_after=2)


def test_cancel_through_the_engine_contract_reports_the_steps_done():
    # The engine turns GenerationCancelled into Cancelled(step=progress.finished).
    model = tiny_flux("dev")
    progress, cancel, events = RunProgress(), threading.Event(), []

    def on_event(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 1:
            cancel.set()

    with pytest.raises(GenerationCancelled):
        run_flux(model, flux_request(steps=4), on_event, cancel, progress)
    assert progress.finished == 1 and Cancelled(step=progress.finished).step == 1
    assert not [e for e in events if isinstance(e, Finished)]


def test_linear_previews_use_the_16_flux_channels():
    import torch

    latents = torch.zeros(1, 16, 4, 6)
    latents[0, 4] = 3.0  # channel 4 is warm in the published factors: R > G > B
    image = linear_preview(latents, "flux-dev")
    assert image.shape == (4, 6, 3) and image[0, 0, 0] > image[0, 0, 1] > image[0, 0, 2]
    with pytest.raises(Exception, match="16 latent channels"):
        linear_preview(torch.zeros(1, 4, 4, 6), "flux-dev")


def test_taef1_decoders_load_with_16_latent_channels(tmp_path):
    import torch
    from diffusers.models.autoencoders.vae import DecoderTiny
    from safetensors.torch import save_file

    from inference.preview import TAESD_DECODER_SHAPE, PreviewRenderer

    torch.manual_seed(0)
    decoder = DecoderTiny(in_channels=16, out_channels=3, act_fn="relu", upsample_fn="nearest", **TAESD_DECODER_SHAPE)
    # The original TAESD layout: Sequential indices one above DecoderTiny's (its Clamp has no weights).
    state = {}
    for key, value in decoder.layers.state_dict().items():
        index, _, rest = key.partition(".")
        state[f"{int(index) + 1}.{rest}"] = value.contiguous()
    path = tmp_path / "taef1_decoder.safetensors"
    save_file(state, str(path))
    image = PreviewRenderer().render(torch.randn(1, 16, 4, 6), "flux-dev", path)
    assert image.shape == (32, 48, 3)


def test_region_loras_without_a_loader_are_a_clear_error():
    from inference.api import LoraSpec, RegionSpec

    model = tiny_flux("dev")
    request = flux_request(mode="regions", regions=(RegionSpec(np.ones((48, 64), np.float32), "x",
                                                               loras=(LoraSpec("ink"),)),))
    with pytest.raises(RequestError, match="LoRA"):
        run_events(model, request)
