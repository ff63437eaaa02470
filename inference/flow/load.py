"""The flow loop's loader for the ModelManager: a FLUX.1 ModelInfo in, a FlowModel out.

The manager (inference.models) sits below the flow package, so it cannot import this; the engine
hands `load_flow_model` to the manager as the loader of the `flow` loop, and `ModelManager.load`
stays the one way to a model. Built-ins are built in code (inference/flow/tiny.py).
"""

from __future__ import annotations

from inference.api import ModelError, ModelInfo
from inference.flow.components import FlowModel


def load_flow_model(manager, info: ModelInfo, vae_info: ModelInfo | None) -> FlowModel:
    """The FLUX.1 model `info` names, on the manager's device and dtype (`vae_info`: a VAE file instead of its own)."""
    from pathlib import Path

    from inference.flow.files import all_in_one_parts
    from inference.flow.loading import load_flux_all_in_one, load_flux_diffusers_folder, load_flux_split
    from inference.models import read_weight_shapes

    if info.kind == "builtin":
        return load_builtin_flow_model(manager, info, vae_info)
    if info.family == "zimage":
        raise ModelError(f"{info.path}: Z-Image files are recognised but cannot be loaded yet; "
                         "builtin:tiny-zimage runs the family.")
    path = Path(info.path)
    options = dict(device=manager.device, name=info.name)
    vae_path = Path(vae_info.path) if vae_info is not None else None
    if path.is_dir():
        if vae_path is not None:
            raise ModelError(f"{path}: a FLUX.1 diffusers folder runs with its own VAE.")
        return load_flux_diffusers_folder(path, **options)
    inside = all_in_one_parts(read_weight_shapes(path))
    if inside:
        companions = {} if len(inside) == 3 and vae_path is None else companion_paths(manager, info)
        return load_flux_all_in_one(
            path, clip_l_path=companions.get("clip_l"), t5_path=companions.get("t5"),
            vae_path=vae_path or companions.get("vae"), **options,
        )
    companions = companion_paths(manager, info)
    return load_flux_split(path, clip_l_path=companions["clip_l"], t5_path=companions["t5"],
                           vae_path=vae_path or companions["vae"], **options)


def companion_paths(manager, info: ModelInfo) -> dict:
    """CLIP-L, T5-XXL and the FLUX VAE a split transformer file runs with, found in the model folders:
    the one obvious file of each kind, or the user's choice (`info.extra["companions"]`, slot -> path)."""
    from pathlib import Path

    from inference.flow.files import choose_companions, find_flux_files

    folders = getattr(manager, "folders", None)
    roots = list(getattr(folders, "roots", [])) + [
        folder for kind_folders in getattr(folders, "typed", {}).values() for folder in kind_folders
    ]
    choice = choose_companions(find_flux_files(roots).companions, info.extra.get("companions"))
    if not choice.complete:
        missing = []
        for slot, candidates in choice.candidates.items():
            what = {"clip_l": "CLIP-L", "t5": "T5-XXL", "vae": "FLUX VAE (ae.safetensors)"}[slot]
            missing.append(f"{what}: " + (", ".join(file.name for file in candidates) + " (choose one)"
                                          if candidates else "none found in text_encoders/, clip/ or vae/"))
        raise ModelError(f"{info.path}: this FLUX.1 file needs its text encoders and VAE beside it — "
                         + "; ".join(missing) + ".")
    return {slot: Path(file.path) for slot, file in choice.chosen.items()}


def load_builtin_flow_model(manager, info: ModelInfo, vae_info: ModelInfo | None) -> FlowModel:
    from inference.flow.tiny import build_builtin_flow_model

    if vae_info is not None:
        raise ModelError(f"{info.name} is built in code with its own tiny VAE; no separate VAE can replace it.")
    model = build_builtin_flow_model(info.name)
    if (manager.device, manager.dtype) != (model.device, model.dtype):
        for name, module in model.parts.items():
            setattr(model, name, module.to(device=manager.device, dtype=manager.dtype))
        model.device, model.dtype = manager.device, manager.dtype
    return model
