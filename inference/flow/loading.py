"""Loading FLUX.1 offline: ComfyUI split files, all-in-one files and diffusers folders -> FlowModel.

Single files carry weights only; the architectures come from resources/configs/flux-*. A file
may hold fewer blocks than the published model (reduced-depth test files, pruned fine-tunes):
the block counts are read from the keys and replace the config's, every other value stays.
As for SD checkpoints (inference.models), every tensor's name and shape is checked against the
empty component before anything is filled, so a wrong file is one sentence naming it.

fp8 (float8_e4m3fn) files: on a CUDA GPU the transformer's (and T5's) weights stay in fp8 and
each layer is cast to bf16 for its forward (diffusers' layerwise casting), which halves their
memory; norms, embedders and the RoPE stay in bf16. On the CPU (and MPS) the weights are upcast
at load to the compute dtype (float32 on the CPU). fp8 -> bf16 and fp8 -> fp32 are exact, so
"every tensor equal to what was written" holds bitwise after upcasting the written fp8 tensor.

Placement follows the edit models' memory plan (inference.edit.memory): all on the GPU when the
weights fit, else model CPU offload (one component on the GPU at a time), else sequential offload.
One component's tensors are read into RAM at a time (as for SD checkpoints), so loading the bf16
FLUX.1 transformer needs about its size (~24 GB; ~12 GB for fp8) of free RAM on the way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference.api import ModelError, UnsupportedModelError
from inference.edit.loading import default_dtype
from inference.edit.memory import (
    MemoryPlan,
    available_ram_bytes,
    free_vram_bytes,
    plan_placement,
)
from inference.flow.components import FlowModel
from inference.flow.files import (
    all_in_one_parts,
    count_blocks,
    detect_flux,
    flux_layout,
    flux_vae_prefix,
    load_t5_tokenizer,
)
from inference.models import bundled_config_root, load_clip_tokenizer, read_weight_shapes
from inference.models.single_file import materialise
from inference.models.weights import CheckpointWeights, first_line
from inference.safetensors_header import read_safetensors_header

FP8_DTYPES = ("F8_E4M3",)  # what torch.float8_e4m3fn is in a safetensors header
# The config folder of each family; Kontext has dev's architecture (its reference image enters as tokens).
CONFIG_FOLDERS = {"flux-dev": "flux-dev", "flux-schnell": "flux-schnell", "flux-fill": "flux-fill",
                  "flux-kontext": "flux-dev"}
COMPONENT_ORDER = ("text_encoder", "text_encoder_2", "transformer", "vae")  # the order a render uses them
LOAD_ORDER = ("transformer", "text_encoder", "text_encoder_2", "vae")  # the biggest, likeliest-wrong file first


# ---- the entry points ------------------------------------------------------------------------------------


def load_flux_split(
    transformer_path: Path,
    *,
    clip_l_path: Path,
    t5_path: Path,
    vae_path: Path,
    device: str = "cpu",
    dtype=None,
    name: str | None = None,
    config_root: Path | None = None,
    fp8_storage: bool | None = None,
) -> FlowModel:
    """A ComfyUI-style split FLUX.1: transformer file + CLIP-L file + T5-XXL file + ae.safetensors."""
    transformer_path, clip_l_path, t5_path, vae_path = map(Path, (transformer_path, clip_l_path, t5_path, vae_path))
    family = _transformer_family(transformer_path)
    sources = {
        "transformer": (transformer_path, _transformer_prefix(transformer_path)),
        "text_encoder": (clip_l_path, _single_prefix(clip_l_path, ("", "text_encoders.clip_l.transformer."))),
        "text_encoder_2": (t5_path, _single_prefix(t5_path, ("", "text_encoders.t5xxl.transformer."))),
        "vae": (vae_path, _vae_prefix(vae_path)),
    }
    return _load_from_sources(sources, family, name or transformer_path.stem, device, dtype, config_root, fp8_storage)


def load_flux_all_in_one(
    path: Path,
    *,
    device: str = "cpu",
    dtype=None,
    name: str | None = None,
    config_root: Path | None = None,
    fp8_storage: bool | None = None,
    clip_l_path: Path | None = None,
    t5_path: Path | None = None,
    vae_path: Path | None = None,
) -> FlowModel:
    """An all-in-one FLUX.1 file; a part it lacks comes from the given separate file, else it is an error."""
    path = Path(path)
    family = _transformer_family(path)
    parts = all_in_one_parts(read_weight_shapes(path))
    separate = {"text_encoder": clip_l_path, "text_encoder_2": t5_path, "vae": vae_path}
    what = {"text_encoder": "CLIP-L text encoder", "text_encoder_2": "T5-XXL text encoder", "vae": "VAE"}
    sources: dict[str, tuple[Path, str]] = {"transformer": (path, _transformer_prefix(path))}
    for component in ("text_encoder", "text_encoder_2", "vae"):
        if separate[component] is not None:
            other = Path(separate[component])
            prefix = _vae_prefix(other) if component == "vae" else _single_prefix(other, ("",))
            sources[component] = (other, prefix)
        elif component in parts:
            sources[component] = (path, parts[component])
        else:
            raise ModelError(f"{path}: the file has no {what[component]} inside; choose a separate file for it.")
    return _load_from_sources(sources, family, name or path.stem, device, dtype, config_root, fp8_storage)


def load_flux_diffusers_folder(
    folder: Path, *, device: str = "cpu", dtype=None, name: str | None = None
) -> FlowModel:
    """A FLUX.1 diffusers folder (FluxPipeline / FluxFillPipeline), from local files only."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel

    folder = Path(folder)
    family = diffusers_folder_flux_family(folder)
    dtype = dtype or default_dtype(device)
    scheduler_config = _read_json(folder / "scheduler" / "scheduler_config.json", "scheduler configuration")

    def pretrained(cls, subfolder: str):
        return cls.from_pretrained(str(folder), subfolder=subfolder, local_files_only=True, dtype=dtype)

    components = {
        "transformer": pretrained(FluxTransformer2DModel, "transformer"),
        "text_encoder": pretrained(CLIPTextModel, "text_encoder"),
        "text_encoder_2": pretrained(T5EncoderModel, "text_encoder_2"),
        "vae": pretrained(AutoencoderKL, "vae"),
    }
    tokenizer_folder = folder / "tokenizer"
    if (tokenizer_folder / "vocab.json").is_file():
        tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_folder), local_files_only=True)
    else:
        tokenizer = load_clip_tokenizer(tokenizer_folder)
    t5_folder = folder / "tokenizer_2"
    tokenizer_2 = load_t5_tokenizer(t5_folder if (t5_folder / "tokenizer.json").is_file() else None)
    weight_bytes = {key: _module_bytes(module) for key, module in components.items()}
    plan = _plan(device, weight_bytes, name or folder.name)
    _place(components, plan, device)
    return _flow_model(name or folder.name, family, components, tokenizer, tokenizer_2, scheduler_config,
                       device, dtype, plan)


def diffusers_folder_flux_family(folder: Path) -> str:
    """flux-dev | flux-schnell | flux-fill of a diffusers folder (model_index + transformer config)."""
    index = _read_json(folder / "model_index.json", "model index")
    class_name = index.get("_class_name")
    config = _read_json(folder / "transformer" / "config.json", "transformer configuration")
    if class_name == "FluxFillPipeline" or (class_name == "FluxPipeline" and config.get("in_channels") == 384):
        return "flux-fill"
    if class_name != "FluxPipeline":
        raise UnsupportedModelError(f"{folder}: is a {class_name}, not a FLUX.1 text-to-image folder.")
    return "flux-dev" if config.get("guidance_embeds", True) else "flux-schnell"


# ---- reading what files hold -----------------------------------------------------------------------------


def _transformer_family(path: Path) -> str:
    if not path.is_file():
        raise ModelError(f"{path}: no such file.")
    header = read_safetensors_header(path) if path.suffix.lower() == ".safetensors" else None
    shapes = {key: info.shape for key, info in header.tensors.items()} if header else read_weight_shapes(path)
    family = detect_flux(shapes, name=path.name, metadata=header.metadata if header else None)
    if family is None:
        raise UnsupportedModelError(f"{path}: is not a FLUX.1 dev / schnell / Fill transformer.")
    if "scaled_fp8" in shapes:
        raise UnsupportedModelError(
            f"{path}: is a 'scaled fp8' file (per-layer scale factors), which Collagen does not read yet; "
            "use the plain fp8_e4m3fn or the bf16 file."
        )
    return family


def _transformer_prefix(path: Path) -> str:
    layout = flux_layout(read_weight_shapes(path))
    assert layout is not None  # _transformer_family checked it
    return layout[1]


def _single_prefix(path: Path, prefixes: tuple[str, ...]) -> str:
    if not path.is_file():
        raise ModelError(f"{path}: no such file.")
    keys = read_weight_shapes(path).keys()
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix and any(key.startswith(prefix) for key in keys):
            return prefix
    return ""


def _vae_prefix(path: Path) -> str:
    if not path.is_file():
        raise ModelError(f"{path}: no such file.")
    prefix = flux_vae_prefix(read_weight_shapes(path))
    if prefix is None:
        raise ModelError(f"{path}: is not a FLUX VAE (its decoder does not take 16 latent channels).")
    return prefix


def _part_bytes(path: Path, prefix: str, fp8_storage: bool, compute_bytes: int) -> int:
    """Bytes the part takes once loaded: fp8 stays 1 byte when kept in fp8, else the compute dtype's size."""
    if path.suffix.lower() != ".safetensors":
        return sum(_numel(shape) * compute_bytes for shape in read_weight_shapes(path).values())
    total = 0
    for key, info in read_safetensors_header(path).tensors.items():
        if key.startswith(prefix):
            kept_fp8 = fp8_storage and info.dtype in FP8_DTYPES
            total += (info.end - info.start) if kept_fp8 else _numel(info.shape) * compute_bytes
    return total


def _numel(shape) -> int:
    count = 1
    for dimension in shape:
        count *= int(dimension)
    return count


def _is_fp8_file(path: Path, prefix: str) -> bool:
    """Most of this part's bytes are float8_e4m3fn (fp8 files keep some norms and biases in bf16)."""
    if path.suffix.lower() != ".safetensors":
        return False
    tensors = [info for key, info in read_safetensors_header(path).tensors.items() if key.startswith(prefix)]
    fp8 = sum(info.end - info.start for info in tensors if info.dtype in FP8_DTYPES)
    return fp8 * 2 > sum(info.end - info.start for info in tensors)


# ---- building the components -------------------------------------------------------------------------------


def _load_from_sources(
    sources: Mapping[str, tuple[Path, str]], family: str, name: str, device: str, dtype, config_root, fp8_storage
) -> FlowModel:
    import torch

    dtype = dtype or default_dtype(device)
    config_folder = _config_folder(family, config_root)
    if fp8_storage is None:
        fp8_storage = device.startswith("cuda")
    compute_bytes = torch.empty((), dtype=dtype).element_size()
    keep_fp8 = {
        component: fp8_storage and component in ("transformer", "text_encoder_2") and _is_fp8_file(path, prefix)
        for component, (path, prefix) in sources.items()
    }
    weight_bytes = {
        component: _part_bytes(path, prefix, keep_fp8[component], compute_bytes)
        for component, (path, prefix) in sources.items()
    }
    plan = _plan(device, weight_bytes, name)
    load_device = device if plan.placement == "gpu" else "cpu"  # offloaded weights live in RAM
    loaders = {
        "transformer": _load_transformer,
        "text_encoder": _load_clip_l,
        "text_encoder_2": _load_t5,
        "vae": _load_vae,
    }
    components: dict[str, Any] = {}
    for component in LOAD_ORDER:
        path, prefix = sources[component]
        part = _read_part(path, prefix)
        components[component] = loaders[component](
            part, path, config_folder, load_device, dtype, keep_fp8[component], family
        )
        del part
    _place(components, plan, device)
    scheduler_config = _read_json(config_folder / "scheduler" / "scheduler_config.json", "scheduler configuration")
    return _flow_model(name, family, components, load_clip_tokenizer(config_folder / "tokenizer"),
                       load_t5_tokenizer(), scheduler_config, device, dtype, plan)


def _read_part(path: Path, prefix: str) -> dict[str, Any]:
    """The tensors under `prefix`, with the prefix taken off (one component in memory at a time)."""
    part = CheckpointWeights(path).part(prefix)
    return {key[len(prefix):]: value for key, value in part.items()}


def _load_transformer(part, path: Path, config_folder: Path, device: str, dtype, keep_fp8: bool, family: str):
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    layout = flux_layout({key: tuple(value.shape) for key, value in part.items()})
    if layout is None or layout[1]:
        raise ModelError(f"{path}: the FLUX transformer's tensors are not where they were found in the header.")
    if layout[0] == "bfl":
        if not count_blocks(part, "double_blocks.") or not count_blocks(part, "single_blocks."):
            raise ModelError(f"{path}: the FLUX transformer has no double or no single blocks; the file is incomplete.")
        try:
            converted = convert_flux_transformer_checkpoint_to_diffusers(dict(part))
        except KeyError as error:
            raise ModelError(
                f"{path}: the FLUX transformer lacks the tensor {error.args[0]}; the file is incomplete."
            ) from error
    else:
        converted = part
    config = _read_json(config_folder / "transformer" / "config.json", "transformer configuration")
    config["num_layers"] = count_blocks(converted, "transformer_blocks.")
    config["num_single_layers"] = count_blocks(converted, "single_transformer_blocks.")
    if not config["num_layers"] or not config["num_single_layers"]:
        raise ModelError(f"{path}: the FLUX transformer has no double or no single blocks.")
    transformer = _empty(FluxTransformer2DModel, config)
    if keep_fp8:
        return _materialise_fp8(transformer, converted, path, "FLUX transformer", device, dtype, diffusers=True)
    return materialise(transformer, converted, path, "FLUX transformer", device, dtype)


def _load_clip_l(part, path: Path, config_folder: Path, device: str, dtype, keep_fp8: bool, family: str):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig.from_pretrained(str(config_folder / "text_encoder"), local_files_only=True)
    encoder = _empty(CLIPTextModel, config, part, "encoder.layers.", "num_hidden_layers", path, "CLIP-L")
    if not hasattr(encoder, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        part = {key.removeprefix("text_model."): value for key, value in part.items()}
    return materialise(encoder, part, path, "CLIP-L text encoder", device, dtype)


def _load_t5(part, path: Path, config_folder: Path, device: str, dtype, keep_fp8: bool, family: str):
    from transformers import T5Config, T5EncoderModel

    config = T5Config.from_pretrained(str(config_folder / "text_encoder_2"), local_files_only=True)
    encoder = _empty(T5EncoderModel, config, part, "encoder.block.", "num_layers", path, "T5-XXL")
    # The token table is one tensor under two names (tied); files store either name, or both.
    part = dict(part)
    table = part.get("shared.weight", part.get("encoder.embed_tokens.weight"))
    if table is not None:
        part.setdefault("shared.weight", table)
        part.setdefault("encoder.embed_tokens.weight", table)
    if keep_fp8:
        encoder = _materialise_fp8(encoder, part, path, "T5-XXL text encoder", device, dtype, diffusers=False)
    else:
        encoder = materialise(encoder, part, path, "T5-XXL text encoder", device, dtype)
    encoder.tie_weights()
    return encoder


def _load_vae(part, path: Path, config_folder: Path, device: str, dtype, keep_fp8: bool, family: str):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = _read_json(config_folder / "vae" / "config.json", "VAE configuration")
    vae = _empty(AutoencoderKL, config)
    if set(vae.state_dict()) <= set(part):
        converted = part  # already diffusers names
    else:
        converted = convert_ldm_vae_checkpoint(part, dict(vae.config))  # ae.safetensors: the BFL/LDM names
    return materialise(vae, converted, path, "FLUX VAE", device, dtype)


def _empty(cls, config, part=None, block_prefix: str = "", depth_key: str = "", path=None, what: str = ""):
    """The component with no memory behind its weights (see inference.models._empty_component).

    With `block_prefix`, the depth (`depth_key`) is the number of blocks the file holds.
    """
    from accelerate import init_empty_weights

    if part is not None:
        depth = count_blocks(part.keys(), block_prefix) or count_blocks(part.keys(), "text_model." + block_prefix)
        if not depth:
            raise ModelError(f"{path}: the file has no {what} layers ({block_prefix}N.…).")
        setattr(config, depth_key, depth)
    if hasattr(cls, "load_config"):  # diffusers
        from diffusers.models.modeling_utils import no_init_weights

        with init_empty_weights(), no_init_weights():
            return cls.from_config(config)
    from transformers.initialization import no_init_weights

    with init_empty_weights(), no_init_weights():
        return cls(config)


def _materialise_fp8(module, converted, path: Path, what: str, device: str, compute_dtype, *, diffusers: bool):
    """Fill `module` keeping the fp8 weights in fp8 and casting each layer to `compute_dtype` for its forward.

    The empty module is set to the compute dtype and gets the layerwise-casting hooks first, which
    turn the castable layers' (meta) weights to fp8; filling with dtype=None then keeps each
    parameter's dtype, so fp8 tensors land as they are and the skipped ones (norms, embedders) in
    the compute dtype. No full-precision copy of the model is ever made.
    """
    import torch

    module.to(compute_dtype)
    if diffusers:
        module.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)
    else:
        from diffusers.hooks import apply_layerwise_casting

        # T5: the token table and the relative-position bias are Embeddings, which stay in bf16.
        apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype,
                                skip_modules_pattern=("norm", "embed", "shared", "relative_attention_bias"))
    return materialise(module, converted, path, what, device, None)


# ---- placement ---------------------------------------------------------------------------------------------


def _plan(device: str, weight_bytes: Mapping[str, int], name: str) -> MemoryPlan:
    from inference.api import InferenceError

    try:
        return plan_placement(
            device=device,
            weight_bytes=sum(weight_bytes.values()),
            largest_component_bytes=max(weight_bytes.values()),
            free_vram=free_vram_bytes(device) if device.startswith("cuda") else None,
            available_ram=available_ram_bytes(),
            model_name=name,
        )
    except InferenceError as error:
        raise ModelError(str(error)) from error


def _place(components: dict[str, Any], plan: MemoryPlan, device: str) -> None:
    """Put the components where the plan says: resident, or offloaded with accelerate's hooks.

    Model offload chains the components in the order a render uses them (as diffusers'
    enable_model_cpu_offload does), so each moves to the GPU when called and the previous one back.
    """
    for module in components.values():
        module.eval().requires_grad_(False)
    if plan.placement in ("gpu", "cpu"):
        for key, module in components.items():
            components[key] = module.to(device)
        return
    import torch
    from accelerate import cpu_offload, cpu_offload_with_hook

    execution_device = torch.device(device)
    if plan.placement == "model_offload":
        hook = None
        for key in COMPONENT_ORDER:
            _, hook = cpu_offload_with_hook(components[key], execution_device, prev_module_hook=hook)
        return
    for key in COMPONENT_ORDER:
        cpu_offload(components[key], execution_device)


def _module_bytes(module) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in module.state_dict().values())


def _flow_model(name, family, components, tokenizer, tokenizer_2, scheduler_config, device, dtype,
                plan: MemoryPlan) -> FlowModel:
    return FlowModel(
        name=name,
        family=family,
        transformer=components["transformer"],
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=tokenizer,
        text_encoder_2=components["text_encoder_2"],
        tokenizer_2=tokenizer_2,
        scheduler_config=scheduler_config,
        device=device,
        dtype=dtype,
        extra={"memory_plan": plan},
    )


# ---- helpers -----------------------------------------------------------------------------------------------


def _config_folder(family: str, config_root: Path | None) -> Path:
    folder = (config_root or bundled_config_root()) / CONFIG_FOLDERS[family]
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"{folder}: the bundled FLUX.1 configuration is missing (broken installation).")
    return folder


def _read_json(path: Path, what: str) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: the {what} cannot be read ({first_line(error)}).") from error
    if not isinstance(document, dict):
        raise ModelError(f"{path}: the {what} is not a JSON object.")
    return document
