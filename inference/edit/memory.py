"""Where an edit model's weights live: all on the GPU, CPU-offloaded, or nowhere (a clear error).

Edit models are large (FLUX.1 Kontext ~33 GB, Qwen-Image-Edit ~58 GB in bf16), so before loading
we estimate the weight bytes from the safetensors headers and compare them with free VRAM and RAM.
`plan_placement` is the pure decision; the probes (`free_vram_bytes`, `available_ram_bytes`) and
the estimate (`estimate_weight_bytes`) feed it.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from inference.api import InferenceError

GIB = 1024**3
# Room for activations, the VAE decode and the CUDA context on top of the resident weights.
ACTIVATION_RESERVE_BYTES = 3 * GIB
ACTIVATION_RESERVE_FRACTION = 0.10

# diffusers component weights without a variant infix (".fp16"): those are what from_pretrained loads
_PLAIN_WEIGHTS = re.compile(r"^[^.]+(-\d+-of-\d+)?\.safetensors$")
# components Collagen never loads for editing (see loading.py: the safety checker is left out)
SKIPPED_COMPONENTS = ("safety_checker",)


@dataclass(frozen=True)
class MemoryPlan:
    placement: str  # "gpu", "cpu", "model_offload" or "sequential_offload"
    reason: str
    load_straight_to_device: bool = False  # from_pretrained(device_map=device): RAM cannot hold the weights


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _reserve(weight_bytes: int) -> int:
    return ACTIVATION_RESERVE_BYTES + int(ACTIVATION_RESERVE_FRACTION * weight_bytes)


def plan_placement(
    *,
    device: str,
    weight_bytes: int,
    largest_component_bytes: int,
    free_vram: int | None,
    available_ram: int | None,
    model_name: str = "the model",
) -> MemoryPlan:
    """Decide how to place a model of `weight_bytes`, or raise InferenceError when it cannot run.

    - CPU: the weights must fit in free RAM.
    - GPU: everything resident when weights + a reserve fit in free VRAM (loaded straight onto the
      GPU when RAM is short); otherwise
      `enable_model_cpu_offload` (one component on the GPU at a time) when the largest component
      fits, else `enable_sequential_cpu_offload` (layer by layer, slow). Both offloads keep the
      weights in RAM, so RAM must hold them. `None` for a probe means "unknown": not a reason to refuse.
    """
    ram_ok = available_ram is None or weight_bytes <= available_ram
    if not device.startswith("cuda"):
        if not ram_ok:
            raise InferenceError(
                f"{model_name} needs about {gib(weight_bytes)} of memory for its weights, "
                f"but only {gib(available_ram)} is free."
            )
        return MemoryPlan("cpu", f"{gib(weight_bytes)} of weights in RAM")
    if free_vram is None or weight_bytes + _reserve(weight_bytes) <= free_vram:
        # Short of RAM, the weights stream from disk straight to the GPU (device_map) instead of via RAM.
        return MemoryPlan(
            "gpu", f"{gib(weight_bytes)} of weights fit in the free VRAM", load_straight_to_device=not ram_ok
        )
    if not ram_ok:
        raise InferenceError(
            f"{model_name} needs about {gib(weight_bytes)} for its weights: more than the free GPU memory "
            f"({gib(free_vram)}) and the free RAM ({gib(available_ram)}), so it cannot run on this computer."
        )
    if largest_component_bytes + _reserve(largest_component_bytes) <= free_vram:
        return MemoryPlan(
            "model_offload",
            f"{gib(weight_bytes)} of weights exceed {gib(free_vram)} of free VRAM; "
            "components take turns on the GPU",
        )
    return MemoryPlan(
        "sequential_offload",
        f"its largest component ({gib(largest_component_bytes)}) exceeds {gib(free_vram)} of free VRAM; "
        "layers stream to the GPU one by one (slow)",
    )


def free_vram_bytes(device: str) -> int | None:
    """Free memory on a CUDA device, or None when there is none to ask."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def available_ram_bytes() -> int | None:
    try:
        import psutil  # a dependency of accelerate, which diffusers' offloading needs anyway
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _safetensors_parameter_count(path: Path) -> int:
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    count = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        n = 1
        for dim in entry["shape"]:
            n *= int(dim)
        count += n
    return count


def component_weight_bytes(folder: Path, bytes_per_parameter: int) -> int:
    """Bytes one diffusers component folder takes once loaded at `bytes_per_parameter`."""
    tensors = sorted(folder.glob("*.safetensors"))
    plain = [p for p in tensors if _PLAIN_WEIGHTS.match(p.name)]
    tensors = plain or tensors
    if tensors:
        return sum(_safetensors_parameter_count(p) for p in tensors) * bytes_per_parameter
    # pickled .bin weights: the file size is the best estimate we have without unpickling
    return sum(p.stat().st_size for p in folder.glob("*.bin"))


def estimate_weight_bytes(model_folder: Path, bytes_per_parameter: int) -> tuple[int, int]:
    """(total bytes, largest component's bytes) of a diffusers folder's weights at that precision."""
    try:
        index = json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InferenceError(f"{model_folder}: model_index.json cannot be read ({e}).") from e
    sizes = []
    for name, spec in index.items():
        if name.startswith("_") or name in SKIPPED_COMPONENTS or not isinstance(spec, list):
            continue
        folder = model_folder / name
        if folder.is_dir():
            try:
                sizes.append(component_weight_bytes(folder, bytes_per_parameter))
            except (OSError, ValueError, KeyError, struct.error) as e:
                raise InferenceError(f"{folder}: the weights cannot be read ({e}).") from e
    return sum(sizes), max(sizes, default=0)
