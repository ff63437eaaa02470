"""Single-file checkpoints (original LDM / sgm key layout) converted to diffusers components offline.

The architecture comes from the bundled config folders (resources/configs/<family>[-inpaint]); each
component is built empty, filled from the file's tensors after checking every one is there, and
only one component's tensors are in memory at a time. Which text encoders a family has, and where
their weights are in the file, is its registry entry's PromptEncoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference.api import ModelError
from inference.families import FAMILIES, FamilyRegistry
from inference.families.sd import SD15_CLIP_PREFIX, SDXL_CLIP_G_PREFIX, UNET_PREFIX, VAE_PREFIX
from inference.models.configs import (
    config_folder_for,
    load_clip_tokenizer,
    read_scheduler_config,
    weights_variant,
)
from inference.models.detect import classify_weights
from inference.models.weights import CheckpointWeights, first_line, read_weight_shapes


def _normalise_sd15_clip_keys(part: dict[str, Any]) -> dict[str, Any]:
    """Some old SD1.x files lack the `text_model.` level under cond_stage_model.transformer."""
    normalised = {}
    for key, value in part.items():
        if key.startswith(SD15_CLIP_PREFIX) and not key.startswith(SD15_CLIP_PREFIX + "text_model."):
            key = SD15_CLIP_PREFIX + "text_model." + key[len(SD15_CLIP_PREFIX) :]
        normalised[key] = value
    return normalised


def _empty_component(cls, config_folder: Path, subfolder: str):
    """The component with its architecture from the config folder and no memory behind its weights.

    The weight initialisers are switched off as well (what from_pretrained does): on meta tensors they
    compute nothing useful, but torch still runs its Python reference kernels for them (~0.3 s for a
    UNet), and every weight is replaced by the file's tensors right after.
    """
    from accelerate import init_empty_weights

    if hasattr(cls, "load_config"):  # diffusers models
        from diffusers.models.modeling_utils import no_init_weights

        config = cls.load_config(str(config_folder), subfolder=subfolder, local_files_only=True)
        with init_empty_weights(), no_init_weights():
            return cls.from_config(config)
    from transformers.initialization import no_init_weights

    config = cls.config_class.from_pretrained(str(config_folder), subfolder=subfolder, local_files_only=True)
    with init_empty_weights(), no_init_weights():
        return cls(config)


def materialise(module, converted: Mapping[str, Any], path: Path, what: str, device: str, dtype):
    """Fill an empty component from diffusers-format tensors, after checking that every weight is there.

    Checking first matters: a missing tensor would otherwise stay on the meta device and fail later
    with an error that names neither the file nor the problem.
    """
    import torch
    from diffusers.models.model_loading_utils import load_model_dict_into_meta

    empty_state = module.state_dict()
    expected = list(empty_state.keys())
    missing = [key for key in expected if key not in converted]
    if missing:
        raise ModelError(
            f"{path}: the file has no weights for {len(missing)} tensors of the {what} "
            f"(for example {missing[0]}); it is incomplete or of another architecture."
        )
    wrong = [key for key in expected if tuple(converted[key].shape) != tuple(empty_state[key].shape)]
    if wrong:
        raise ModelError(
            f"{path}: {len(wrong)} tensors of the {what} have other shapes than {what} of this family expects "
            f"(for example {wrong[0]}: {tuple(converted[wrong[0]].shape)})."
        )
    load_model_dict_into_meta(
        module, {key: converted[key] for key in expected}, dtype=dtype, device_map={"": torch.device(device)}
    )
    return module.eval()


def _load_unet_from_part(part, path: Path, config_folder: Path, device: str, dtype):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = _empty_component(UNet2DConditionModel, config_folder, "unet")
    converted = convert_ldm_unet_checkpoint(part, dict(unet.config))
    return materialise(unet, converted, path, "UNet", device, dtype)


def load_vae_from_part(part, path: Path, config_folder: Path, device: str, dtype):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = _empty_component(AutoencoderKL, config_folder, "vae")
    if set(vae.state_dict()) <= set(part):
        converted = part  # already diffusers names (e.g. the VAE files published with diffusers)
    else:
        converted = convert_ldm_vae_checkpoint(part, dict(vae.config))
    return materialise(vae, converted, path, "VAE", device, dtype)


def _load_clip_from_part(cls, part, path: Path, config_folder: Path, subfolder: str, device: str, dtype):
    """CLIP-L (HF layout inside the file) or OpenCLIP bigG (fused q/k/v, transposed projection)."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    what = "second text encoder" if subfolder == "text_encoder_2" else "text encoder"
    if not part:
        raise ModelError(f"{path}: the checkpoint has no weights for its {what}.")
    encoder = _empty_component(cls, config_folder, subfolder)
    if any(key.startswith(SDXL_CLIP_G_PREFIX) for key in part):
        converted = convert_open_clip_checkpoint(encoder, part, prefix=SDXL_CLIP_G_PREFIX)
    else:
        converted = convert_ldm_clip_checkpoint(part)
    if not hasattr(encoder, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        converted = {key.removeprefix("text_model."): value for key, value in converted.items()}
    return materialise(encoder, converted, path, what, device, dtype)


def load_single_file(
    path: Path, family: str, inpaint: bool, *, device: str, dtype, config_root: Path | None = None,
    load_vae: bool = True, families: FamilyRegistry = FAMILIES,
) -> dict[str, Any]:
    """The components of a single-file checkpoint of a UNet family, converted with the bundled configs."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    entry = families.get(family)
    config_folder = config_folder_for(entry.load.config_folder or family, inpaint, config_root)
    weights = CheckpointWeights(path)
    prefixes = entry.load.checkpoint_prefixes
    scheduler_config, notes = prediction_config(read_scheduler_config(config_folder), weights.keys, path.name)
    components: dict[str, Any] = {"scheduler_config": scheduler_config, "notes": notes}
    components["unet"] = _load_unet_from_part(
        weights.part(prefixes.get("unet", UNET_PREFIX)), path, config_folder, device, dtype
    )
    for encoder in entry.prompts.encoders:
        part = weights.part(encoder.checkpoint_prefix)
        if encoder.checkpoint_prefix == SD15_CLIP_PREFIX:
            part = _normalise_sd15_clip_keys(part)
        cls = CLIPTextModelWithProjection if encoder.with_projection else CLIPTextModel
        components[encoder.component] = _load_clip_from_part(
            cls, part, path, config_folder, encoder.component, device, dtype
        )
        components[encoder.tokenizer] = load_clip_tokenizer(config_folder / encoder.tokenizer)
    if load_vae:
        vae_part = weights.part(prefixes.get("vae", VAE_PREFIX))
        if not vae_part:
            raise ModelError(f"{path}: the checkpoint has no VAE inside; choose a separate VAE file for it.")
        components["vae"] = load_vae_from_part(vae_part, path, config_folder, device, dtype)
    return components


V_PREDICTION_KEY = "v_pred"  # marker tensors of v-prediction files (NoobAI, A1111's convention)
ZERO_SNR_KEY = "ztsnr"  # trained with zero terminal SNR: the noise schedule must be rescaled to match


def prediction_config(scheduler_config: dict, keys, file_name: str) -> tuple[dict, list[str]]:
    """The scheduler config a single file asks for by its marker keys, and a note for the job saying so.

    A v-prediction SDXL file run as epsilon gives washed-out grey images; one trained with zero terminal SNR
    also needs the rescaled betas (and trailing timesteps, so the last step reaches the pure-noise end).
    """
    keys = set(keys)
    config, notes = dict(scheduler_config), []
    v_pred, zero_snr = V_PREDICTION_KEY in keys, ZERO_SNR_KEY in keys
    if v_pred or zero_snr:
        config["prediction_type"] = "v_prediction"
    if zero_snr:
        config.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    if v_pred or zero_snr:
        markers = " and ".join(f"'{key}'" for key, present in ((V_PREDICTION_KEY, v_pred), (ZERO_SNR_KEY, zero_snr))
                               if present)
        notes.append(f"{file_name} is a v-prediction model ({markers} in the file): it runs with v-prediction"
                     + (" and zero-terminal-SNR rescaled noise." if zero_snr else "."))
    return config, notes


def load_vae_file(path: Path, family: str, *, device: str, dtype, config_root: Path | None = None):
    """A separate VAE: a single file (original or diffusers key layout) or a diffusers VAE folder."""
    from diffusers import AutoencoderKL

    if path.is_dir():
        subfolder = "vae" if (path / "vae" / "config.json").is_file() else None
        variant = weights_variant(path / subfolder if subfolder else path)
        vae = AutoencoderKL.from_pretrained(
            str(path), subfolder=subfolder, local_files_only=True, dtype=dtype, variant=variant
        )
        return vae.to(device)
    shapes = read_weight_shapes(path)
    if classify_weights(shapes) not in ("vae", "checkpoint"):
        raise ModelError(f"{path}: is not a VAE (no encoder/decoder weights in it).")
    weights = CheckpointWeights(path)
    part = weights.part(VAE_PREFIX) or weights.part("")
    config_folder = config_folder_for(family, False, config_root)
    return load_vae_from_part(part, path, config_folder, device, dtype)


def wrap_load_errors(path: Path, what: str, load):
    """Loader failures become one sentence naming the file; our own errors pass through."""
    try:
        return load()
    except ModelError:
        raise
    except MemoryError as error:
        raise ModelError(f"{path}: not enough memory to load this {what}.") from error
    except Exception as error:  # diffusers/transformers/safetensors raise many types for bad files
        raise ModelError(f"{path}: could not be loaded as {what} ({first_line(error)}).") from error
