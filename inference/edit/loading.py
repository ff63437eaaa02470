"""Loading an instruction-edit model from a local diffusers folder, offline, placed to fit memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

from inference.api import ModelError, OutOfMemory, UnsupportedModelError
from inference.edit.memory import (
    MemoryPlan,
    available_ram_bytes,
    estimate_weight_bytes,
    free_vram_bytes,
    plan_placement,
)
from inference.edit.model import (
    EDIT_FAMILIES,
    FAMILY_IP2P,
    FAMILY_KONTEXT,
    NATIVE_AREA,
    PIPELINE_CLASS_NAMES,
    EditModel,
)


def default_dtype(device: str):
    """bf16 on a GPU (fp16 where bf16 is unsupported); fp32 on the CPU, where half precision is slow."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def read_pipeline_class_name(path: Path) -> str:
    """`_class_name` from a diffusers folder's model_index.json (ModelError when it is not one)."""
    if not path.is_dir():
        raise ModelError(f"{path}: no such model folder.")
    index_file = path / "model_index.json"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelError(f"{path}: not a diffusers model folder (model_index.json is missing).") from e
    except (OSError, ValueError) as e:
        raise ModelError(f"{index_file}: cannot be read as JSON ({e}).") from e
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if not isinstance(class_name, str):
        raise ModelError(f"{index_file}: has no pipeline _class_name.")
    return class_name


def _check_family(path: Path, family: str) -> None:
    if family not in EDIT_FAMILIES:
        raise UnsupportedModelError(f"{path}: {family!r} is not an instruction-edit model family.")
    class_name = read_pipeline_class_name(path)
    if class_name != PIPELINE_CLASS_NAMES[family]:
        raise UnsupportedModelError(
            f"{path}: is a {class_name}, not a {PIPELINE_CLASS_NAMES[family]} ({family}) edit model."
        )


def _dtype_keyword() -> str:
    """diffusers renamed from_pretrained's `torch_dtype` to `dtype` (the old name warns, then goes)."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _place(pipeline, plan: MemoryPlan, device: str) -> None:
    if plan.placement == "model_offload":
        pipeline.enable_model_cpu_offload(device=device)
    elif plan.placement == "sequential_offload":
        pipeline.enable_sequential_cpu_offload(device=device)
    elif not plan.load_straight_to_device:
        pipeline.to(device)


def load_edit_model(
    path: Path, family: str, device: str = "cpu", dtype=None, name: str | None = None
) -> EditModel:
    """Load a diffusers edit pipeline folder with from_pretrained(local path, local_files_only=True).

    InstructPix2Pix loads without its safety checker (as A1111 and ComfyUI do): it would black out
    the user's own pictures and costs 1.2 GB. Raises ModelError / InferenceError with one sentence.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(path)
    _check_family(path, family)
    import diffusers
    import torch

    dtype = dtype or default_dtype(device)
    bytes_per_parameter = torch.tensor([], dtype=dtype).element_size()
    weight_bytes, largest_component = estimate_weight_bytes(path, bytes_per_parameter)
    plan = plan_placement(
        device=device,
        weight_bytes=weight_bytes,
        largest_component_bytes=largest_component,
        free_vram=free_vram_bytes(device),
        available_ram=available_ram_bytes(),
        model_name=path.name,
    )
    pipeline_class = getattr(diffusers, PIPELINE_CLASS_NAMES[family])
    kwargs = {_dtype_keyword(): dtype, "local_files_only": True}
    if family == FAMILY_IP2P:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if plan.load_straight_to_device:
        kwargs["device_map"] = device.split(":")[0]
    try:
        pipeline = pipeline_class.from_pretrained(str(path), **kwargs)
        _place(pipeline, plan, device)
    except torch.cuda.OutOfMemoryError as e:
        raise OutOfMemory(f"{path.name}: the device ran out of memory while loading the model.") from e
    except (OSError, ValueError, TypeError, KeyError, ImportError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: the edit model cannot be loaded ({reason}).") from e
    pipeline.set_progress_bar_config(disable=True)

    extra: dict = {"memory_plan": plan.reason}
    if family == FAMILY_KONTEXT:
        from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

        extra["preferred_resolutions"] = tuple(tuple(r) for r in PREFERRED_KONTEXT_RESOLUTIONS)
    patch = 1 if family == FAMILY_IP2P else 2  # Flux / Qwen-Image pack latents in 2x2 patches
    return EditModel(
        name=name or path.name,
        family=family,
        pipeline=pipeline,
        device=device,
        dtype=dtype,
        placement=plan.placement,
        native_area=NATIVE_AREA[family],
        size_multiple=pipeline.vae_scale_factor * patch,
        extra=extra,
    )
