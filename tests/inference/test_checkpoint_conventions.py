"""A1111 conventions read from the files beside and inside a checkpoint: v-prediction markers (`v_pred`,
`ztsnr`) and a `name.vae.safetensors` paired with `name.safetensors`."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.api import Finished, GenerationRequest, Notice
from inference.engine import Engine
from inference.models import ModelManager
from tests.inference.ckpt_helpers import build_components, write_checkpoint_like, write_small_config_root


@pytest.fixture(scope="module")
def small_configs(tmp_path_factory) -> Path:
    return write_small_config_root(tmp_path_factory.mktemp("configs") / "configs")


def with_markers(path: Path, *markers: str) -> Path:
    """Add NoobAI's marker tensors (empty, as in the real files) to a checkpoint."""
    tensors = load_file(str(path))
    tensors.update({marker: torch.zeros(0) for marker in markers})
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize(("markers", "rescaled"), [(("v_pred",), False), (("v_pred", "ztsnr"), True), ((), False)])
def test_v_prediction_markers_set_the_scheduler_and_the_job_says_so(tmp_path, small_configs, markers, rescaled):
    models = tmp_path / "models"
    models.mkdir()
    path = models / "noob.safetensors"
    write_checkpoint_like(path, small_configs / "sdxl", "sdxl")
    with_markers(path, *markers)
    manager = ModelManager([models], config_root=small_configs, device="cpu")
    assert manager.find("noob").family == "sdxl"  # the markers do not confuse detection
    model = manager.load("noob")
    config = model.scheduler_config
    assert config["prediction_type"] == ("v_prediction" if markers else "epsilon")
    assert bool(config.get("rescale_betas_zero_snr")) is rescaled
    if rescaled:
        assert config["timestep_spacing"] == "trailing"

    events: list = []
    request = GenerationRequest(model="noob", prompt="a cat", width=64, height=64, steps=2, sampler="Euler", seed=1)
    Engine(manager).run(request, events.append, threading.Event())
    assert any(isinstance(event, Finished) for event in events), events
    notices = [event.message for event in events if isinstance(event, Notice) and "v-prediction" in event.message]
    if not markers:
        assert notices == []
    elif rescaled:
        assert notices == ["noob.safetensors is a v-prediction model ('v_pred' and 'ztsnr' in the file): it runs "
                           "with v-prediction and zero-terminal-SNR rescaled noise."]
    else:
        assert notices == ["noob.safetensors is a v-prediction model ('v_pred' in the file): it runs with "
                           "v-prediction."]


def write_vae(path: Path, config_folder: Path, seed: int) -> dict[str, torch.Tensor]:
    """A separate VAE file (diffusers key layout) with its own random weights."""
    torch.manual_seed(seed)
    state = {key: value.contiguous() for key, value in build_components(config_folder)["vae"].state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return state


def same_weights(module, state: dict[str, torch.Tensor]) -> bool:
    loaded = module.state_dict()
    return all(torch.equal(loaded[key], value.to(loaded[key].dtype)) for key, value in state.items())


def test_a_vae_named_after_its_checkpoint_is_paired_with_it_unless_another_is_chosen(tmp_path, small_configs):
    webui = tmp_path / "webui"
    checkpoints = webui / "models" / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    write_checkpoint_like(checkpoints / "anime.safetensors", small_configs / "sd15", "sd15")
    paired = write_vae(checkpoints / "anime.vae.safetensors", small_configs / "sd15", seed=11)
    chosen = write_vae(webui / "models" / "VAE" / "other.safetensors", small_configs / "sd15", seed=12)
    write_checkpoint_like(checkpoints / "plain.safetensors", small_configs / "sd15", "sd15")

    manager = ModelManager([webui], config_root=small_configs, device="cpu")
    assert {info.name for info in manager.discover() if info.kind != "builtin"} == {"anime", "plain"}
    assert manager.catalog.skipped == []  # the .vae file is no checkpoint that failed detection
    assert {info.name for info in manager.catalog.vaes} == {"anime.vae", "other"}
    assert manager.find("anime").extra["paired_vae"] == str(checkpoints / "anime.vae.safetensors")
    assert "paired_vae" not in manager.find("plain").extra

    events: list = []
    request = GenerationRequest(model="anime", prompt="a cat", width=64, height=64, steps=1, sampler="Euler", seed=1)
    Engine(manager).run(request, events.append, threading.Event())
    finished = [event for event in events if isinstance(event, Finished)]
    assert finished and finished[0].parameters[0]["vae"] == "anime.vae"
    assert same_weights(manager.load("anime").vae, paired)
    assert ("anime.vae.safetensors lies beside the checkpoint and is used as its VAE (as A1111 pairs them)."
            in [event.message for event in events if isinstance(event, Notice)])

    model = manager.load("anime", vae="other")  # the user's choice wins (only the VAE is swapped)
    assert same_weights(model.vae, chosen) and model.extra["vae_note"] == ""
    assert not same_weights(manager.load("plain").vae, paired)  # no pairing for a checkpoint without one
