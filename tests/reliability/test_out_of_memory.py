"""Out of memory: a simulated CUDA OOM, real CPU allocation failures and a real address-space limit
each end a generation with one clear Failed event, the memory is given back, and the next smaller
request succeeds. Invalid requests are refused before any model work.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

import inference.engine as engine_module
from inference.api import MAX_PROMPT_CHARS, Failed, Finished, GenerationRequest, Preview
from inference.engine import OUT_OF_MEMORY_MESSAGE, Engine
from inference.models import ModelManager

REPO = Path(__file__).resolve().parents[2]
SMALL, LARGE = 64, 128  # px: the request that fits, and the "oversized" one


def request(side: int, **overrides) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a fox", "width": side, "height": side, "steps": 2, "seed": 5, **overrides})


def run(engine: Engine, generation: GenerationRequest) -> list:
    events: list = []
    engine.run(generation, events.append, threading.Event())
    return events


@pytest.fixture(scope="module")
def manager():
    return ModelManager([], device="cpu")


@pytest.fixture
def engine(manager):
    return Engine(manager)


class StepProbe:
    """Replaces the UNet's forward: a request larger than SMALL fails the way `fail` says, after
    allocating a scratch tensor (what a step holds when memory runs out); smaller ones run for real."""

    def __init__(self, unet, fail):
        self.real_forward = unet.forward
        self.fail = fail
        self.scratch: list[weakref.ref] = []

    def __call__(self, sample, *args, **kwargs):
        if sample.shape[-1] * 8 > SMALL:
            scratch = torch.ones(sample.shape[0], 64, sample.shape[-2] * 8, sample.shape[-1] * 8)
            self.scratch.append(weakref.ref(scratch))
            self.fail(sample)
        return self.real_forward(sample, *args, **kwargs)


def raise_cuda_oom(sample):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 23.65 GiB total)")


def allocate_beyond_any_machine(sample):
    torch.empty(sample.numel() << 40, dtype=torch.uint8)  # the CPU allocator's real failure, not a simulation


@pytest.fixture
def freed_check(monkeypatch):
    """Wrap free_device_memory: record whether the failed step's scratch tensors were collectable then."""
    seen: list[list[bool]] = []
    probes: list[StepProbe] = []
    real_free = engine_module.free_device_memory

    def free_and_record():
        real_free()
        seen.append([ref() is None for probe in probes for ref in probe.scratch])

    monkeypatch.setattr(engine_module, "free_device_memory", free_and_record)
    return seen, probes


@pytest.mark.parametrize("fail", [raise_cuda_oom, allocate_beyond_any_machine], ids=["cuda-oom", "cpu-allocator"])
def test_out_of_memory_in_a_step_is_one_clear_failure_then_a_smaller_request_succeeds(engine, manager, monkeypatch,
                                                                                     freed_check, fail):
    seen, probes = freed_check
    unet = manager.load("builtin:tiny-sd15").unet
    probe = StepProbe(unet, fail)
    probes.append(probe)
    monkeypatch.setattr(unet, "forward", probe)

    events = run(engine, request(LARGE))
    terminal = [e for e in events if isinstance(e, (Failed, Finished))]
    assert terminal == [Failed(OUT_OF_MEMORY_MESSAGE)] and events[-1] == terminal[0]
    assert seen == [[True]]  # memory was freed after the step's frames let go of its tensors
    assert probe.scratch and probe.scratch[0]() is None

    smaller = run(engine, request(SMALL))
    assert isinstance(smaller[-1], Finished) and smaller[-1].images[0].shape == (SMALL, SMALL, 3)


def test_a_real_memory_error_while_rendering_a_preview_is_one_clear_failure(engine, monkeypatch, freed_check):
    seen, _ = freed_check
    real_render = engine.render_preview

    def render(latents, model, taesd_path):
        if latents.shape[-1] * 8 > SMALL:
            np.empty((latents.shape[-1] << 40,), np.uint8)  # numpy's allocator refuses: a real MemoryError
        return real_render(latents, model, taesd_path)

    monkeypatch.setattr(engine, "render_preview", render)
    events = run(engine, request(LARGE))
    assert events[-1] == Failed(OUT_OF_MEMORY_MESSAGE) and not any(isinstance(e, Finished) for e in events)
    assert seen == [[]]
    smaller = run(engine, request(SMALL))
    assert isinstance(smaller[-1], Finished) and any(isinstance(e, Preview) for e in smaller)


# ---- a real limit: the process may not grow by more than a little ----------------------------------------

ADDRESS_LIMITED = '''
import json, re, resource, sys, threading
import torch
torch.set_num_threads(1)
from inference.api import GenerationRequest
from inference.engine import Engine
from inference.models import ModelManager

def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024

def run(side):
    events = []
    engine.run(GenerationRequest(prompt="a fox", width=side, height=side, steps=2, seed=1), events.append,
               threading.Event())
    return type(events[-1]).__name__, getattr(events[-1], "message", "")

engine = Engine(ModelManager([], device="cpu"))
result = {"warm": run(64)}
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + int(sys.argv[1]) * 2**20, resource.RLIM_INFINITY))
rss_before = status("VmRSS")
result["oversized"] = [run(int(sys.argv[2])) for _ in range(3)]
result["rss_growth_mib"] = (status("VmRSS") - rss_before) / 2**20
result["after"] = run(64)
print("RESULT " + json.dumps(result))
'''


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_a_request_too_big_for_the_memory_left_fails_clearly_and_the_next_one_runs():
    """No patching: the process may grow by 120 MiB, and a 1024x1024 generation needs more (three tries)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(ADDRESS_LIMITED), "120", "1024"], env=env,
                          capture_output=True, text=True, timeout=400, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["warm"][0] == "Finished"
    assert result["oversized"] == [["Failed", OUT_OF_MEMORY_MESSAGE]] * 3
    assert result["rss_growth_mib"] < 32  # what the failed requests allocated was given back to the system
    assert result["after"][0] == "Finished"


# ---- validation comes before any model work ------------------------------------------------------------


INVALID = [
    dict(width=65), dict(height=100), dict(width=0), dict(width=-64), dict(width=8192), dict(width=4096, height=4104),
    dict(width=64.0), dict(steps=0), dict(steps=10**6), dict(batch_count=0), dict(batch_count=10**4),
    dict(cfg=float("nan")), dict(cfg=0.5), dict(seed=-2), dict(seed=2**64), dict(strength=1.5),
    dict(prompt="x" * (MAX_PROMPT_CHARS + 1)), dict(negative=None), dict(sampler="Warp Drive"), dict(mode="paint"),
    dict(clip_skip=0), dict(preview="sometimes"), dict(mask_blur=-1), dict(padding=10**9),
    dict(init_image=np.zeros((64, 64, 4), np.uint8)), dict(init_image=np.zeros((32, 32, 3), np.uint8)),
    dict(mode="inpaint", init_image=np.zeros((64, 64, 3), np.uint8), mask=np.zeros((32, 64), np.float32)),
    dict(mode="inpaint", init_image=np.zeros((64, 64, 3), np.uint8), mask=np.full((64, 64), 2.0, np.float32)),
    dict(mode="inpaint", init_image=np.zeros((64, 64, 3), np.uint8), mask=np.zeros((64, 64), np.float32)),
]


@pytest.mark.parametrize("overrides", INVALID, ids=lambda o: ",".join(sorted(o)) + ":" + repr(list(o.values())[0])[:20])
def test_an_invalid_request_is_refused_before_the_model_manager_loads_anything(overrides, monkeypatch):
    loads = []

    class CountingManager(ModelManager):
        def load(self, *args, **kwargs):
            loads.append(args)
            return super().load(*args, **kwargs)

    events = run(Engine(CountingManager([], device="cpu")), request(SMALL, **overrides))
    assert len(events) == 1 and isinstance(events[0], Failed), events
    message = events[0].message
    assert "\n" not in message and message.endswith(".") and "Traceback" not in message and len(message) < 300
    assert loads == []


def test_the_out_of_memory_message_is_one_plain_sentence():
    assert OUT_OF_MEMORY_MESSAGE.endswith(".") and "\n" not in OUT_OF_MEMORY_MESSAGE
    gc.collect()
    assert json.dumps(OUT_OF_MEMORY_MESSAGE)  # travels to the GUI and the log unchanged


def test_running_out_of_memory_while_freezing_the_canvas_is_a_sentence_not_a_crash(qapp, monkeypatch):
    import desktop.generation as generation
    from canvas.model.document import Document
    from desktop.worker import InferenceWorker

    def exhausted(document):
        raise MemoryError()

    monkeypatch.setattr(generation, "compose", exhausted)
    worker = InferenceWorker(lambda: None)
    controller = generation.GenerationController(worker, Document(64, 64))
    failures = []
    controller.failed.connect(failures.append)
    try:
        assert controller.generate() is None
    finally:
        worker.shutdown(5)
    assert failures == [generation.NO_MEMORY_TO_FREEZE] and controller.jobs == []
