"""Engine.run: validation first, one terminal event, cancel within a step, OOM and failures recovered."""

import logging
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import inference.adapters
import inference.edit
from inference.api import Cancelled, Failed, Finished, GenerationRequest, LoraSpec, Progress, RegionSpec
from inference.engine import Engine
from tests.inference.engine_fakes import (
    FakeModels,
    finished,
    outcome,
    progress_events,
    random_image,
    run_events,
    tiny_request,
)


@pytest.fixture
def models():
    return FakeModels()


def failure(events) -> str:
    terminal = outcome(events)
    assert isinstance(terminal, Failed), terminal
    assert "Traceback" not in terminal.message and "\n" not in terminal.message
    return terminal.message


MASK = np.zeros((64, 64), np.float32)
BAD_REQUESTS = [
    (dict(width=60), "multiple of 8"),
    (dict(width=8192, height=64), "larger than the limit"),
    (dict(width=0), "positive whole numbers"),
    (dict(steps=0), "Steps must be"),
    (dict(steps=5000), "Steps must be"),
    (dict(batch_count=0), "Batch count must be"),
    (dict(cfg=0.0), "CFG scale must be"),
    (dict(cfg=float("nan")), "CFG scale must be"),
    (dict(seed=-2), "Seed must be"),
    (dict(seed=1.5), "Seed must be"),
    (dict(strength=1.5), "strength must be"),
    (dict(clip_skip=0), "Clip skip must be"),
    (dict(sampler="Heun++"), "Unknown sampler 'Heun++'; choose one of: Euler, Euler a"),
    (dict(prompt="x" * 20_001), "prompt is 20001 characters"),
    (dict(negative=None), "negative prompt must be text"),
    (dict(mode="dream"), "Unknown mode"),
    (dict(preview="gif"), "Unknown preview"),
    (dict(init_image=np.zeros((32, 64, 3), np.uint8)), "input image is 64x32 but the request is 64x64"),
    (dict(init_image=np.zeros((64, 64, 4), np.uint8)), "HxWx3 array of 8-bit RGB"),
    (dict(init_image=np.zeros((64, 64, 3), np.float32)), "HxWx3 array of 8-bit RGB"),
    (dict(mode="inpaint", init_image=np.zeros((64, 64, 3), np.uint8)), "needs both an input image and a mask"),
    (dict(mode="inpaint", init_image=np.zeros((64, 64, 3), np.uint8), mask=np.zeros((32, 32), np.float32)),
     "mask is 32x32 but the image is 64x64"),
    (dict(mode="inpaint", init_image=np.zeros((64, 64, 3), np.uint8), mask=np.full((64, 64), 2.0, np.float32)),
     "between 0 and 1"),
    (dict(mode="inpaint", init_image=np.zeros((64, 64, 3), np.uint8), mask=MASK), "mask is empty"),
    (dict(masked_content="blur"), "Unknown masked content"),
    (dict(mask_blur=-1), "Mask blur must be"),
    (dict(regions=(RegionSpec(mask=np.ones((8, 8), np.float32), prompt="a"),)), "region 1 is 8x8"),
    (dict(loras=(LoraSpec("style", float("inf")),)), "not a finite number"),
]


@pytest.mark.parametrize("overrides,message", BAD_REQUESTS)
def test_bad_requests_fail_with_one_sentence_before_any_model_work(models, overrides, message):
    events = run_events(Engine(models), tiny_request(**overrides))
    assert message in failure(events)
    assert models.loads == 0
    assert len(events) == 1


def test_clip_skip_beyond_the_model_fails_after_loading(models):
    assert "clip_skip 7 is out of range" in failure(run_events(Engine(models), tiny_request(clip_skip=7)))


def test_finished_parameters_hold_what_the_png_needs(models):
    events = run_events(Engine(models), tiny_request(steps=3, negative="blurry", clip_skip=2, seed=42, cfg=5.0))
    assert [(p.step, p.total) for p in progress_events(events)] == [(1, 3), (2, 3), (3, 3)]
    (parameters,) = finished(events).parameters
    model = models.load("builtin:tiny-sd15")
    assert parameters["prompt"] == "a red apple" and parameters["negative_prompt"] == "blurry"
    assert parameters["steps"] == 3 and parameters["sampler"] == "Euler" and parameters["cfg_scale"] == 5.0
    assert parameters["seed"] == 42 and parameters["size"] == "64x64" and parameters["clip_skip"] == 2
    assert parameters["model"] == "builtin:tiny-sd15" and parameters["model_hash"] == model.model_hash
    assert parameters["mode"] == "generate" and parameters["denoising_strength"] is None
    assert parameters["builtin_model"] is True


class CountingDecode:
    def __init__(self, vae):
        self.vae, self.calls, self.original = vae, 0, vae.decode

    def __enter__(self):
        def decode(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)

        self.vae.decode = decode
        return self

    def __exit__(self, *exc):
        del self.vae.decode


def test_cancel_at_step_k_stops_within_one_step_without_decoding(models):
    engine = Engine(models)
    cancel = threading.Event()
    vae = models.load("builtin:tiny-sd15").vae

    def cancel_at_two(event):
        if isinstance(event, Progress) and event.step == 2:
            cancel.set()

    with CountingDecode(vae) as decodes:
        events = run_events(engine, tiny_request(steps=4, batch_count=2), cancel, on_event=cancel_at_two)
        assert outcome(events) == Cancelled(step=2)
        assert [p.step for p in progress_events(events)] == [1, 2]
        assert decodes.calls == 0
        assert isinstance(outcome(run_events(engine, tiny_request(steps=2))), Finished)
        assert decodes.calls == 1


def test_cancel_before_the_start_touches_no_model(models):
    cancel = threading.Event()
    cancel.set()
    events = run_events(Engine(models), tiny_request(), cancel)
    assert events == [Cancelled(step=0)] and models.loads == 0


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
                                   MemoryError()])
def test_out_of_memory_fails_clearly_and_the_engine_recovers(models, monkeypatch, error):
    engine = Engine(models)
    unet = models.load("builtin:tiny-sd15").unet

    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(unet, "forward", exhausted)
    message = failure(run_events(engine, tiny_request()))
    assert "ran out of memory" in message
    monkeypatch.undo()
    assert isinstance(outcome(run_events(engine, tiny_request())), Finished)


def test_unexpected_errors_are_one_sentence_and_logged(models, monkeypatch, caplog):
    engine = Engine(models)
    unet = models.load("builtin:tiny-sd15").unet

    def broken(*args, **kwargs):
        raise ValueError("weights are\nbroken")

    monkeypatch.setattr(unet, "forward", broken)
    with caplog.at_level(logging.ERROR, logger="inference.engine"):
        message = failure(run_events(engine, tiny_request()))
    assert message.startswith("The generation failed unexpectedly (ValueError: weights are)")
    assert any(record.exc_info for record in caplog.records)
    monkeypatch.undo()
    assert isinstance(outcome(run_events(engine, tiny_request())), Finished)


def test_loras_from_tags_list_and_lcm_are_applied_once_and_reset(models, monkeypatch, tmp_path):
    paths = {name: tmp_path / f"{name}.safetensors" for name in ("ink", "detail", "lcm")}
    for path in paths.values():
        path.write_bytes(b"")
    manager = FakeModels(loras=paths)
    calls = []
    monkeypatch.setattr(inference.adapters, "apply_loras", lambda model, loras: calls.append(loras))
    engine = Engine(manager)
    request = tiny_request(prompt="a cat <lora:ink:0.5>", loras=(LoraSpec("detail", 0.8),))
    result = finished(run_events(engine, request))
    assert calls == [[(paths["detail"], 0.8), (paths["ink"], 0.5)]]
    assert result.parameters[0]["loras"] == [{"name": "detail", "weight": 0.8}, {"name": "ink", "weight": 0.5}]
    finished(run_events(engine, request))
    assert len(calls) == 1  # same LoRAs again: nothing to switch
    result = finished(run_events(engine, tiny_request(lcm=True, lcm_lora="lcm", cfg=1.0, sampler="nonsense")))
    assert calls[-1] == [(paths["lcm"], 1.0)] and result.parameters[0]["sampler"] == "LCM"
    finished(run_events(engine, tiny_request()))
    assert calls[-1] == []  # back to the base weights


def test_embeddings_named_in_the_prompt_are_loaded_and_change_the_conditioning(monkeypatch, tmp_path):
    path = tmp_path / "shinystyle.safetensors"
    save_file({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(0))}, str(path))
    manager = FakeModels(embeddings={"shinystyle": path})
    engine = Engine(manager)
    seen = []
    model = manager.load("builtin:tiny-sd15")
    hook = model.unet.register_forward_pre_hook(lambda m, a, k: seen.append(k["encoder_hidden_states"]),
                                                with_kwargs=True)
    try:
        finished(run_events(engine, tiny_request(prompt="a cat", steps=1)))
        finished(run_events(engine, tiny_request(prompt="a cat, shinystyle", steps=1)))
    finally:
        hook.remove()
    assert "shinystyle" in model.extra["embeddings"]
    assert "shinystyle_1" in model.tokenizer.get_vocab()
    assert not torch.allclose(seen[0], seen[1])


def test_edit_mode_is_handed_to_inference_edit(models, monkeypatch):
    received = []

    def fake_run_edit(model, request, emit, cancel):
        received.append((model, request))
        emit(Finished(images=(request.init_image,), parameters=({"mode": "edit"},)))

    monkeypatch.setattr(inference.edit, "run_edit", fake_run_edit)
    request = tiny_request(mode="edit", init_image=random_image(), model="my-kontext-folder")
    events = run_events(Engine(models), request)
    assert isinstance(outcome(events), Finished) and received[0][1] is request
    assert received[0][0] == ("edit-model", "my-kontext-folder")  # loaded via load_edit_pipeline


def test_builtin_edit_models_are_built_in_code_and_reused(models, monkeypatch):
    received = []

    def fake_run_edit(model, request, emit, cancel):
        received.append(model)
        emit(Finished(images=(request.init_image,), parameters=({"mode": "edit"},)))

    monkeypatch.setattr(inference.edit, "run_edit", fake_run_edit)
    engine = Engine(models)
    request = tiny_request(mode="edit", init_image=random_image(), model="builtin:tiny-ip2p")
    run_events(engine, request)
    run_events(engine, request)
    assert models.loads == 0  # never asked the model folders
    assert received[0] is received[1] and received[0].family == "ip2p"


def test_an_edit_family_model_in_generate_mode_is_refused(monkeypatch):
    class EditOnly(FakeModels):
        def load(self, name_or_path, *, vae=None):
            class Model:
                family = "flux-kontext"

            return Model()

    message = failure(run_events(Engine(EditOnly()), tiny_request(model="kontext")))
    assert "flux-kontext model, which runs in the edit mode only" in message


def test_request_default_size_is_valid():
    from inference.validate import validate_request

    validate_request(GenerationRequest())
