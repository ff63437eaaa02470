"""The flow loop's loader for the ModelManager: a FLUX.1 ModelInfo in, a FlowModel out.

The manager (inference.models) sits below the flow package, so it cannot import this; the engine
hands `load_flow_model` to the manager as the loader of the `flow` loop, and `ModelManager.load`
stays the one way to a model. Built-ins are built in code (inference/flow/tiny.py).
"""

from __future__ import annotations

from inference.api import ModelError, ModelInfo
from inference.flow.components import FlowModel

FLOW_PARTS = ("transformer", "vae", "text_encoder", "text_encoder_2")


def load_flow_model(manager, info: ModelInfo, vae_info: ModelInfo | None) -> FlowModel:
    """The FLUX.1 model `info` names, on the manager's device and dtype (`vae_info`: a VAE file instead of its own)."""
    if info.kind == "builtin":
        return load_builtin_flow_model(manager, info, vae_info)
    raise ModelError(f"{info.path}: loading FLUX.1 files is not available in this build yet.")


def load_builtin_flow_model(manager, info: ModelInfo, vae_info: ModelInfo | None) -> FlowModel:
    from inference.flow.tiny import BUILTIN_FLOW_MODELS, build_tiny_flux

    if vae_info is not None:
        raise ModelError(f"{info.name} is built in code with its own tiny VAE; no separate VAE can replace it.")
    if info.name not in BUILTIN_FLOW_MODELS:
        raise ModelError(f"There is no built-in FLUX model {info.name!r}.")
    model = build_tiny_flux(BUILTIN_FLOW_MODELS[info.name])
    if (manager.device, manager.dtype) != (model.device, model.dtype):
        for name in FLOW_PARTS:
            setattr(model, name, getattr(model, name).to(device=manager.device, dtype=manager.dtype))
        model.device, model.dtype = manager.device, manager.dtype
    return model
