"""Shared by the loop/engine tests: a ModelManager stand-in that serves inference.tiny models."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from inference.api import Cancelled, Failed, Finished, GenerationRequest, Preview, Progress
from inference.tiny import build_tiny

# Two shared cores: one thread per torch op is faster than several fighting over them.
torch.set_num_threads(1)


class FakeModels:
    """Duck-typed like inference.models.ModelManager; builds tiny models once and counts loads."""

    def __init__(self, embeddings: dict[str, Path] | None = None, taesd: Path | None = None,
                 loras: dict[str, Path] | None = None):
        self.cache: dict[str, object] = {}
        self.loads = 0
        self._embeddings = dict(embeddings or {})
        self._taesd = taesd
        self._loras = dict(loras or {})

    def load(self, name_or_path: str, *, vae: str | None = None):
        self.loads += 1
        if name_or_path not in self.cache:
            family = "sdxl" if "sdxl" in name_or_path else "sd15"
            self.cache[name_or_path] = build_tiny(family, inpaint=name_or_path.endswith("-inpaint"))
        return self.cache[name_or_path]

    def load_edit_pipeline(self, name_or_path: str):
        """Edit models are opaque here: the engine only hands them to inference.edit.run_edit."""
        self.loads += 1
        return ("edit-model", name_or_path)

    def embeddings(self, family: str = "") -> dict[str, Path]:
        return dict(self._embeddings)

    def taesd_decoder(self, family: str) -> Path | None:
        return self._taesd

    def lora_path(self, name: str) -> Path:
        return self._loras[name]


def tiny_request(**overrides) -> GenerationRequest:
    values = dict(model="builtin:tiny-sd15", prompt="a red apple", width=64, height=64, steps=2,
                  sampler="Euler", seed=1234, cfg=7.0)
    values.update(overrides)
    return GenerationRequest(**values)


def run_events(engine, request, cancel: threading.Event | None = None, on_event=None) -> list:
    events = []

    def record(event):
        events.append(event)
        if on_event is not None:
            on_event(event)

    engine.run(request, record, cancel or threading.Event())
    return events


def finished(events) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished), f"expected Finished, got {last!r}"
    return last


def outcome(events):
    """The one terminal event, checking there is exactly one."""
    terminal = [e for e in events if isinstance(e, (Finished, Failed, Cancelled))]
    assert len(terminal) == 1, terminal
    assert events[-1] is terminal[0]
    return terminal[0]


def progress_events(events) -> list[Progress]:
    return [e for e in events if isinstance(e, Progress)]


def preview_events(events) -> list[Preview]:
    return [e for e in events if isinstance(e, Preview)]


def random_image(height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def smooth_image(height: int = 64, width: int = 64) -> np.ndarray:
    """A gradient picture (more like a photo than noise, so fill/colour tests mean something)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, 90)], -1).astype(np.uint8)
