"""LoRAs on a loaded FLUX.1 FlowModel, in the formats people download.

kohya-ss / ComfyUI (`lora_unet_double_blocks_N_…`, `lora_unet_single_blocks_N_…`, `lora_te1_…`
for CLIP-L), AI-Toolkit / diffusers (`transformer.…`, `text_encoder.…`), XLabs and BFL Control
LoRAs all go through diffusers' own FluxLoraLoaderMixin (its lora_state_dict converts each format
to diffusers names) and become peft adapters on the transformer and the CLIP text encoder.

As for SD (inference.adapters), a file is loaded once per model and a generation only switches
which adapters are active and how strongly; an empty list, or weight 0, gives the output without
any LoRA exactly. `<lora:name:w>` in a prompt becomes a (path, w) pair through the same prompt
parser and ModelManager.lora_path the SD models use.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

from inference.adapters import (
    ACTIVE_LORAS_KEY,
    LORA_ADAPTERS_KEY,
    file_key,
    quiet_loading,
    read_lora_file,
)
from inference.api import ModelError
from inference.flow.components import FlowModel
from inference.models.weights import first_line

LORA_MARKERS = ("lora_down", "lora_A", "lora.down", "lora_up", "lora_B")


def apply_flux_loras(model: FlowModel, loras: list[tuple[Path, float]]) -> None:
    """Make exactly `loras` active with their weights; an empty list turns every LoRA off."""
    adapters: dict[tuple, str] = model.extra.setdefault(LORA_ADAPTERS_KEY, {})
    wanted: dict[str, float] = {}
    pipeline = None
    for path, weight in loras:
        path = Path(path)
        key = file_key(path)
        if key not in adapters:
            pipeline = pipeline or _adapter_pipeline(model)
            adapters[key] = _load_lora(pipeline, model, path, len(adapters))
        wanted[adapters[key]] = wanted.get(adapters[key], 0.0) + float(weight)
    if not adapters:
        return  # nothing was ever loaded: the modules are plain, nothing to switch off
    _activate(pipeline or _adapter_pipeline(model), model, wanted)
    active: dict[str, float] = {}
    for path, weight in loras:
        active[str(Path(path))] = active.get(str(Path(path)), 0.0) + float(weight)
    model.extra[ACTIVE_LORAS_KEY] = active


def remove_flux_loras(model: FlowModel) -> None:
    """Take every LoRA off the model (the layers become plain again) and forget them."""
    adapters: dict[tuple, str] = model.extra.get(LORA_ADAPTERS_KEY, {})
    if adapters:
        pipeline = _adapter_pipeline(model)
        pipeline.delete_adapters(list(adapters.values()))
    model.extra.pop(LORA_ADAPTERS_KEY, None)
    model.extra.pop(ACTIVE_LORAS_KEY, None)


def _adapter_pipeline(model: FlowModel):
    """A throwaway FluxPipeline around the model's own modules (no copies) for its LoRA methods."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    with quiet_loading():
        return FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(model.scheduler_config),
            vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
            text_encoder_2=model.text_encoder_2, tokenizer_2=model.tokenizer_2, transformer=model.transformer,
        )


def _load_lora(pipeline, model: FlowModel, path: Path, index: int) -> str:
    state = read_lora_file(path)
    if not any(marker in key for key in state for marker in LORA_MARKERS):
        raise ModelError(f"{path}: is not a LoRA (no lora_down / lora_A weights in it).")
    adapter_name = f"lora{index}_" + re.sub(r"[^0-9A-Za-z_]", "_", path.stem)[:40]
    try:
        with quiet_loading(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            pipeline.load_lora_weights(_diffusers_names(state, model), adapter_name=adapter_name)
    except Exception as error:  # the converters, peft and diffusers raise many types for foreign files
        with contextlib.suppress(Exception):
            pipeline.delete_adapters(adapter_name)
        raise ModelError(f"{path}: this LoRA does not fit the {model.family} model ({first_line(error)}).") from error
    if not any(adapter_name in names for names in pipeline.get_list_adapters().values()):
        raise ModelError(f"{path}: none of this LoRA's layers exist in the {model.family} model.")
    return adapter_name


def _diffusers_names(state: dict, model: FlowModel) -> dict:
    """The LoRA in diffusers names (FluxLoraLoaderMixin's converters), fitted to this CLIPTextModel.

    transformers >= 5.6 flattened CLIPTextModel (no `.text_model`), while the converters still
    name CLIP layers `text_encoder.text_model.…`; the extra level is dropped so peft finds them.
    A LoRA with network alphas (which that conversion hands back separately) is passed as it is.
    """
    from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

    converted, alphas = FluxLoraLoaderMixin.lora_state_dict(dict(state), return_alphas=True)
    if alphas or hasattr(model.text_encoder, "text_model"):
        return state
    return {key.replace("text_encoder.text_model.", "text_encoder.", 1): value for key, value in converted.items()}


def _activate(pipeline, model: FlowModel, wanted: Mapping[str, float]) -> None:
    """Per component, only the adapters that component has (many FLUX LoRAs leave CLIP alone)."""
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    for component, component_adapters in pipeline.get_list_adapters().items():
        module = getattr(model, component)
        names = [name for name in wanted if name in component_adapters]
        weights = [wanted[name] for name in names]
        if component == "transformer":
            if names:
                module.enable_lora()
                module.set_adapters(names, weights)
            else:
                module.disable_lora()
        elif names:
            enable_lora_for_text_encoder(module)
            set_adapters_for_text_encoder(names, module, weights)
        else:
            disable_lora_for_text_encoder(module)
