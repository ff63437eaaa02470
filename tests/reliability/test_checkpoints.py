"""Pickled checkpoints (.ckpt/.pt/.pth/.bin) are read with weights_only=True, or refused; a pickle
that would run a command never runs it, whichever way the file reaches Collagen.

Each hostile file's payload creates a marker file when unpickled with full trust. The sanity test
proves the payloads are live (full unpickling does create the marker); every other test checks
that Collagen's paths leave the marker absent and answer one ModelError naming the file.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import subprocess
import threading
from pathlib import Path

import pytest
import torch

from inference.adapters import read_embedding_file, read_lora_file
from inference.api import Failed, GenerationRequest, LoraSpec, ModelError
from inference.engine import Engine
from inference.models import ModelManager, load_pickled_weights, load_vae_file, read_weight_shapes

REPO = Path(__file__).resolve().parents[2]


class RunsShell:
    """Unpickling this runs `touch MARKER` through os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsSubprocess:
    """Unpickling this runs `touch MARKER` through subprocess.call."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


class RunsPython:
    """Unpickling this runs Python source through builtins.exec."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


PAYLOADS = (RunsShell, RunsSubprocess, RunsPython)
FORMATS = ("torch-zip", "torch-legacy", "pickle-2", "pickle-4")


def hostile_file(path: Path, payload_class, file_format: str, marker: Path) -> Path:
    """Real-looking weights with the payload hidden next to them."""
    state = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3),
             "first_stage_model.decoder.conv_in.weight": torch.zeros(4, 4, 1, 1),
             "callback": payload_class(marker)}
    wrapped = {"state_dict": state, "global_step": 1}
    if file_format.startswith("torch"):
        torch.save(wrapped, path, _use_new_zipfile_serialization=file_format == "torch-zip")
    else:
        path.write_bytes(pickle.dumps({"callback": payload_class(marker)}, protocol=int(file_format[-1])))
    return path


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "a pickle payload ran"


@pytest.mark.parametrize("payload_class", PAYLOADS)
def test_the_payloads_are_live_when_fully_unpickled(tmp_path, payload_class):
    """Proof the other tests can fail: full trust runs the command (which is why Collagen never grants it)."""
    live_marker = tmp_path / "live"
    path = hostile_file(tmp_path / "live.ckpt", payload_class, "torch-zip", live_marker)
    torch.load(path, weights_only=False)
    assert live_marker.exists()


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("payload_class", PAYLOADS)
def test_the_weights_reader_refuses_without_running_the_payload(tmp_path, marker, payload_class, file_format):
    path = hostile_file(tmp_path / "evil.ckpt", payload_class, file_format, marker)
    with pytest.raises(ModelError, match=r"evil\.ckpt: refused to load") as caught:
        load_pickled_weights(path)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_discovery_and_loading_never_run_the_payload(tmp_path, marker, suffix):
    models = tmp_path / "models"
    models.mkdir()
    path = hostile_file(models / f"evil{suffix}", RunsShell, "torch-zip", marker)
    manager = ModelManager([models], device="cpu")
    assert [m.name for m in manager.discover() if not m.name.startswith("builtin:")] == []
    assert any(f"evil{suffix}" in problem and "refused" in problem for problem in manager.catalog.problems)
    for attempt in (lambda: manager.find(str(path)), lambda: manager.load(str(path)), lambda: read_weight_shapes(path)):
        with pytest.raises(ModelError, match=rf"evil\{suffix}"):
            attempt()


def test_lora_embedding_and_vae_readers_never_run_the_payload(tmp_path, marker):
    path = hostile_file(tmp_path / "evil.pt", RunsSubprocess, "torch-zip", marker)
    for read in (read_lora_file, read_embedding_file, lambda p: load_vae_file(p, "sd15", device="cpu",
                                                                               dtype=torch.float32)):
        with pytest.raises(ModelError, match=r"evil\.pt"):
            read(path)


def test_a_hostile_lora_in_a_request_is_one_failed_event(tmp_path, marker):
    path = hostile_file(tmp_path / "evil-lora.pt", RunsShell, "torch-legacy", marker)
    events = []
    request = GenerationRequest(prompt="a fox", width=64, height=64, steps=2, seed=1, loras=(LoraSpec(str(path)),))
    Engine(ModelManager([], device="cpu")).run(request, events.append, threading.Event())
    assert isinstance(events[-1], Failed) and "evil-lora.pt" in events[-1].message


def test_every_torch_load_in_the_program_is_weights_only():
    """A static guard: any new torch.load call must pass weights_only=True literally."""
    calls = []
    for package in ("canvas", "inference", "desktop"):
        for source in (REPO / package).rglob("*.py"):
            tree = ast.parse(source.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                    safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                               for k in node.keywords)
                    calls.append((f"{source.relative_to(REPO)}:{node.lineno}", safe))
    assert calls, "no torch.load call found: the guard is looking in the wrong place"
    assert [where for where, safe in calls if not safe] == []
    assert not any("pickle.load" in source.read_text(encoding="utf-8")
                   for package in ("canvas", "inference", "desktop") for source in (REPO / package).rglob("*.py"))


def test_a_hostile_pickle_inside_a_buffer_never_runs_either(marker):
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1), "x": RunsShell(marker)}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buffer, weights_only=True)  # the mechanism the readers rely on, on this torch version
