"""A real ComfyUI server for the integration tests: found, started on 127.0.0.1, stopped.

The server's environment is built by scripts/comfyui_env.sh (which .ci/run calls) into a cache
folder; without it the tests skip with the reason, except in CI (CI=true), where they fail so the
integration really runs there. Each server gets its own base directory (models, input, output,
temp, user) and an in-memory database, runs in its own process group, and is killed at the end.

The checkpoint is a full-size SD1.5 single file of random weights in the real layout (ComfyUI
recognises models by their tensor shapes), written by tests/inference/ckpt_helpers.py.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.inference.ckpt_helpers import (
    SeededTensors,
    build_components,
    kohya_lora_tensors,
    meta_shapes,
    read_config,
    write_original_checkpoint,
    write_safetensors,
)

CACHE_ROOT = Path(os.environ.get("COLLAGEN_COMFYUI_CACHE", Path.home() / ".cache/collagen-ci/comfyui-0.3.64"))
READY_MARK = ".collagen-ready"
START_TIMEOUT_S = 120.0
CHECKPOINT_NAME = "collagen-random-sd15.safetensors"
LORA_NAME = "collagen-random-lora.safetensors"
# Bump when the files' contents change, so a cached copy from an older helper is not reused.
TEST_MODELS_VERSION = "2"


class ScaledSeededTensors(SeededTensors):
    """Seeded random weights at a trained network's scale, so a full-size model gives finite pictures:
    matrices and kernels at 1/sqrt(fan-in), norm scales near 1, biases near 0 (plain unit-variance
    weights overflow a 16-layer UNet to NaN, and ComfyUI then computes on denormals and infinities)."""

    def __getitem__(self, key: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(zlib.crc32(f"{self.name}/{key}".encode()))
        shape = self.shapes[key]
        values = torch.randn(shape, generator=generator, dtype=torch.float32)
        if len(shape) >= 2:
            values = values / math.sqrt(math.prod(shape[1:]))
        elif "norm" in key.rsplit(".", 2)[-2] and key.endswith(".weight"):
            values = 1.0 + 0.02 * values
        else:
            values = 0.02 * values
        return values.to(self.dtype)


def comfyui_environment() -> Path:
    """The built environment's folder, or skip (fail in CI) with what is missing."""
    if (CACHE_ROOT / READY_MARK).is_file() and (CACHE_ROOT / "venv/bin/python").is_file():
        return CACHE_ROOT
    reason = (f"no ComfyUI test environment at {CACHE_ROOT}: run scripts/comfyui_env.sh "
              "(needs ../shared/comfyui beside the repository)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the ComfyUI integration tests, but there is {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_test_models(folder: Path) -> tuple[Path, Path]:
    """The random SD1.5 checkpoint and a kohya LoRA for it, written once per models version."""
    from inference.models import bundled_config_root

    folder = folder / f"v{TEST_MODELS_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, lora = folder / CHECKPOINT_NAME, folder / LORA_NAME
    if checkpoint.is_file() and lora.is_file():
        return checkpoint, lora
    config_folder = bundled_config_root() / "sd15"
    modules = build_components(config_folder, on_meta=True)
    if not checkpoint.is_file():
        partial = folder / f"{CHECKPOINT_NAME}.partial"
        tensors = {name: ScaledSeededTensors(f"{CHECKPOINT_NAME}/{name}", meta_shapes(module), torch.float16)
                   for name, module in modules.items()}
        write_original_checkpoint(partial, "sd15", read_config(config_folder, "unet"), read_config(config_folder, "vae"),
                                  tensors, dtype=torch.float16)
        partial.rename(checkpoint)
    if not lora.is_file():
        model = SimpleNamespace(family="sd15", unet=modules["unet"], text_encoder=modules["text_encoder"])
        write_safetensors(lora, kohya_lora_tensors(model, rank=4, seed=3))
    return checkpoint, lora


@dataclass
class ComfyServer:
    url: str
    process: subprocess.Popen
    base: Path
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.is_file() else ""


def launch_server(environment: Path, base: Path, models: tuple[Path, Path]) -> ComfyServer:
    """Start ComfyUI in `base`, in its own process group; `wait_ready` waits for it to answer."""
    checkpoint, lora = models
    for folder in ("custom_nodes", "input", "output", "temp", "user"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for kind, source in (("checkpoints", checkpoint), ("loras", lora)):
        (base / "models" / kind).mkdir(parents=True, exist_ok=True)
        (base / "models" / kind / source.name).symlink_to(source)
    port = free_port()
    log_path = base / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # Collagen's path must not leak into the server's interpreter
    command = [str(environment / "venv/bin/python"), str(environment / "server/main.py"), "--cpu",
               "--disable-api-nodes", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
               "--preview-method", "latent2rgb", "--database-url", "sqlite:///:memory:"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=environment / "server", stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    return ComfyServer(url=f"http://127.0.0.1:{port}", process=process, base=base, log_path=log_path)


def wait_ready(server: ComfyServer, timeout_s: float = START_TIMEOUT_S) -> ComfyServer:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"ComfyUI exited while starting:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/system_stats", timeout=2) as response:
                json.loads(response.read())
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"ComfyUI did not answer within {timeout_s:.0f} s:\n{server.log_tail()}")


def start_server(environment: Path, base: Path, models: tuple[Path, Path]) -> ComfyServer:
    return wait_ready(launch_server(environment, base, models))
