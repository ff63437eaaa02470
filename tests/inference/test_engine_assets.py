"""LoRAs, embeddings and TAESD decoders found by discovery reach the engine through the real
ModelManager (not a test stand-in): `<lora:name:w>` in a prompt, an embedding's name in a prompt,
and preview="taesd" with a decoder in vae_approx/."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from inference.adapters import EMBEDDINGS_KEY
from inference.api import Finished, GenerationRequest, Notice, Preview
from inference.engine import Engine
from inference.models import ModelManager
from inference.tiny import build_tiny
from tests.inference.ckpt_helpers import a1111_embedding_pt, kohya_lora_tensors, write_safetensors
from tests.inference.test_preview import random_decoder_state, write_original_taesd


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")  # ComfyUI layout
    for sub in ("loras", "embeddings", "vae_approx"):
        (root / sub).mkdir()
    tiny = build_tiny("sd15")
    write_safetensors(root / "loras" / "style.safetensors", kohya_lora_tensors(tiny, seed=1))
    a1111_embedding_pt(root / "embeddings" / "shiny.pt", torch.randn(2, 32, generator=torch.Generator().manual_seed(3)),
                       name="shiny")
    _, state = random_decoder_state()
    write_original_taesd(root / "vae_approx" / "taesd_decoder.safetensors", state)
    return root


def run(manager, **fields):
    values = dict(model="builtin:tiny-sd15", prompt="a red house", width=64, height=64, steps=2, sampler="Euler",
                  seed=5)
    values.update(fields)
    events: list = []
    Engine(manager).run(GenerationRequest(**values), events.append, threading.Event())
    done = [e for e in events if isinstance(e, Finished)]
    assert done, events
    return done[0].images[0], events


def test_discovered_assets_are_listed(models_root):
    manager = ModelManager([models_root])
    manager.discover()
    assert manager.lora_path("style").name == "style.safetensors"
    assert set(manager.embeddings("sd15")) == {"shiny"}
    assert manager.taesd_decoder("sd15").name == "taesd_decoder.safetensors"
    assert manager.taesd_decoder("sdxl") is None


def test_lora_by_name_in_the_prompt_changes_the_image_and_weight_zero_does_not(models_root):
    manager = ModelManager([models_root])
    base, _ = run(manager)
    styled, _ = run(manager, prompt="a red house <lora:style:1>")
    off, _ = run(manager, prompt="a red house <lora:style:0>")
    assert not np.array_equal(base, styled)
    assert np.array_equal(base, off)


def test_embedding_named_in_the_prompt_is_loaded(models_root):
    manager = ModelManager([models_root])
    run(manager, prompt="a photo of shiny")
    assert "shiny" in manager.load("builtin:tiny-sd15").extra[EMBEDDINGS_KEY]


def test_taesd_previews_come_from_vae_approx(models_root):
    manager = ModelManager([models_root])
    _, events = run(manager, preview="taesd")
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 2
    assert previews[0].image.shape == (64, 64, 3)  # TAESD decodes to full size; linear gives 8x8
    assert not any(isinstance(e, Notice) and "TAESD" in e.message for e in events)
    _, events = run(manager, preview="linear")
    assert [e for e in events if isinstance(e, Preview)][0].image.shape == (8, 8, 3)
