"""An instruction-edit model saved as a diffusers folder in the models folder is discovered by its
family and runs through Engine.run (discovery -> ModelManager -> inference.edit), offline."""

from __future__ import annotations

import threading

import numpy as np

from inference.api import Finished, GenerationRequest, Preview
from inference.edit import build_tiny_edit
from inference.engine import Engine
from inference.models import ModelManager


def test_ip2p_folder_is_discovered_and_edits(tmp_path):
    models = tmp_path / "models"
    build_tiny_edit("builtin:tiny-ip2p").pipeline.save_pretrained(models / "my-ip2p")
    manager = ModelManager([models])
    found = {m.name: m for m in manager.discover()}
    assert found["my-ip2p"].family == "ip2p" and found["my-ip2p"].kind == "edit"

    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    request = GenerationRequest(mode="edit", model="my-ip2p", prompt="make it red", width=64, height=64,
                                init_image=image, steps=2, seed=3)
    events: list = []
    Engine(manager).run(request, events.append, threading.Event())
    done = [e for e in events if isinstance(e, Finished)]
    assert done, events
    assert done[0].images[0].shape == (64, 64, 3)
    assert sum(isinstance(e, Preview) for e in events) == 2
    assert done[0].parameters[0]["model"] == "my-ip2p"
