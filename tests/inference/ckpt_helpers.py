"""Write checkpoints in the ORIGINAL single-file Stable Diffusion layout, for tests.

Real single-file checkpoints (A1111 / ComfyUI / Civitai downloads) use the LDM names:
`model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE), `cond_stage_model.transformer.*`
(SD1.5 CLIP-L), `conditioner.embedders.0.transformer.*` + `conditioner.embedders.1.model.*`
(SDXL CLIP-L + OpenCLIP bigG). This module is the inverse of diffusers' single-file conversion
(the logic of diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py and
..._sdxl.py, rewritten from the block structure in the UNet config so small test shapes work too),
so a test can start from diffusers-format weights, write a file like the ones users download,
load it back through `inference.models`, and compare every tensor.

The writer streams tensor by tensor, and `SeededTensors` makes weights on demand from a seed, so
full-size SD1.5/SDXL files can be written and checked without holding the weights twice in memory.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

LDM_PREFIXES = {
    "sd15": {
        "unet": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "text_encoder": "cond_stage_model.transformer.",
    },
    "sdxl": {
        "unet": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "text_encoder": "conditioner.embedders.0.transformer.",
        "text_encoder_2": "conditioner.embedders.1.model.",
    },
}
_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


@dataclass(frozen=True)
class OriginalTensor:
    """One tensor of the original file and the diffusers tensor(s) it is made from."""

    key: str
    sources: tuple[tuple[str, str], ...]  # (component, diffusers key)
    transform: str = "copy"  # copy | conv1x1 (Linear -> 1x1 conv) | transpose | concat (q, k, v -> in_proj)


class SeededTensors(Mapping):
    """Random weights of the given shapes, made on demand from (name, key): the same every time."""

    def __init__(self, name: str, shapes: Mapping[str, tuple[int, ...]], dtype: torch.dtype = torch.float16):
        self.name = name
        self.shapes = dict(shapes)
        self.dtype = dtype

    def __getitem__(self, key: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(zlib.crc32(f"{self.name}/{key}".encode()))
        return torch.randn(self.shapes[key], generator=generator, dtype=torch.float32).to(self.dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


def meta_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


# ---- diffusers -> original key mapping ----------------------------------------------------------------

_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_prefix_map(unet_config: Mapping) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, original prefix, is_resnet) for every block, from the UNet's block structure."""
    layers = int(unet_config["layers_per_block"])
    down_types, up_types = unet_config["down_block_types"], unet_config["up_block_types"]
    prefixes: list[tuple[str, str, bool]] = [
        ("time_embedding.linear_1.", "time_embed.0.", False),
        ("time_embedding.linear_2.", "time_embed.2.", False),
        ("add_embedding.linear_1.", "label_emb.0.0.", False),
        ("add_embedding.linear_2.", "label_emb.0.2.", False),
        ("conv_in.", "input_blocks.0.0.", False),
        ("conv_norm_out.", "out.0.", False),
        ("conv_out.", "out.2.", False),
        ("mid_block.attentions.0.", "middle_block.1.", False),
        ("mid_block.resnets.0.", "middle_block.0.", True),
        ("mid_block.resnets.1.", "middle_block.2.", True),
    ]
    for block, block_type in enumerate(down_types):
        for layer in range(layers):
            index = 1 + block * (layers + 1) + layer
            prefixes.append((f"down_blocks.{block}.resnets.{layer}.", f"input_blocks.{index}.0.", True))
            if "CrossAttn" in block_type:
                prefixes.append((f"down_blocks.{block}.attentions.{layer}.", f"input_blocks.{index}.1.", False))
        if block < len(down_types) - 1:
            index = (block + 1) * (layers + 1)
            prefixes.append((f"down_blocks.{block}.downsamplers.0.conv.", f"input_blocks.{index}.0.op.", False))
    for block, block_type in enumerate(up_types):
        has_attention = "CrossAttn" in block_type
        for layer in range(layers + 1):
            index = block * (layers + 1) + layer
            prefixes.append((f"up_blocks.{block}.resnets.{layer}.", f"output_blocks.{index}.0.", True))
            if has_attention:
                prefixes.append((f"up_blocks.{block}.attentions.{layer}.", f"output_blocks.{index}.1.", False))
        if block < len(up_types) - 1:
            index = block * (layers + 1) + layers
            prefixes.append(
                (f"up_blocks.{block}.upsamplers.0.", f"output_blocks.{index}.{2 if has_attention else 1}.", False)
            )
    return prefixes


def unet_original_key(key: str, prefixes: list[tuple[str, str, bool]]) -> str:
    for diffusers_prefix, original_prefix, is_resnet in prefixes:
        if key.startswith(diffusers_prefix):
            rest = key[len(diffusers_prefix) :]
            if is_resnet:
                name, _, tail = rest.partition(".")
                rest = f"{_UNET_RESNET_NAMES[name]}.{tail}"
            return original_prefix + rest
    raise KeyError(f"no original name for UNet key {key!r}")


def vae_original_key(key: str, up_block_count: int) -> tuple[str, str]:
    """(original key, transform) for a diffusers AutoencoderKL key."""
    parts = key.split(".")
    coder = parts[0]  # encoder | decoder | quant_conv | post_quant_conv
    if coder in ("quant_conv", "post_quant_conv"):
        return key, "copy"
    rest = ".".join(parts[1:])
    if rest.startswith("conv_norm_out."):
        return f"{coder}.norm_out.{rest[len('conv_norm_out.'):]}", "copy"
    if rest.startswith(("conv_in.", "conv_out.")):
        return key, "copy"
    if rest.startswith("mid_block.resnets."):
        index = int(parts[3])
        tail = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.mid.block_{index + 1}.{tail}", "copy"
    if rest.startswith("mid_block.attentions.0."):
        tail = rest[len("mid_block.attentions.0.") :]
        for diffusers_name, original_name in _VAE_ATTENTION_NAMES.items():
            if tail.startswith(diffusers_name + "."):
                parameter = tail[len(diffusers_name) + 1 :]
                transform = "conv1x1" if parameter == "weight" and original_name != "norm" else "copy"
                return f"{coder}.mid.attn_1.{original_name}.{parameter}", transform
        raise KeyError(f"no original name for VAE key {key!r}")
    block = int(parts[2])
    if coder == "decoder":
        block = up_block_count - 1 - block  # LDM numbers decoder blocks from the lowest resolution up
    level = "down" if coder == "encoder" else "up"
    if parts[3] == "resnets":
        tail = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.{level}.{block}.block.{parts[4]}.{tail}", "copy"
    if parts[3] in ("downsamplers", "upsamplers"):
        sampler = "downsample" if coder == "encoder" else "upsample"
        return f"{coder}.{level}.{block}.{sampler}.{'.'.join(parts[5:])}", "copy"
    raise KeyError(f"no original name for VAE key {key!r}")


def clip_original_key(key: str) -> str:
    """transformers >= 5.6 flattens CLIPTextModel (no `text_model.`); the original files keep it."""
    return key if key.startswith("text_model.") else f"text_model.{key}"


_OPEN_CLIP_LAYER_NAMES = (
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
)


def open_clip_plan(component: str, keys: list[str], prefix: str) -> list[OriginalTensor]:
    """OpenCLIP (SDXL bigG) layout: q/k/v fused into in_proj, text_projection stored transposed."""
    plan = []
    for key in keys:
        short = key.removeprefix("text_model.")
        if short == "embeddings.token_embedding.weight":
            plan.append(OriginalTensor(prefix + "token_embedding.weight", ((component, key),)))
        elif short == "embeddings.position_embedding.weight":
            plan.append(OriginalTensor(prefix + "positional_embedding", ((component, key),)))
        elif short.startswith("final_layer_norm."):
            plan.append(OriginalTensor(prefix + "ln_final." + short.split(".")[-1], ((component, key),)))
        elif short == "text_projection.weight":
            plan.append(OriginalTensor(prefix + "text_projection", ((component, key),), "transpose"))
        elif short.startswith("encoder.layers."):
            layer, tail = short.split(".")[2], ".".join(short.split(".")[3:])
            block = f"{prefix}transformer.resblocks.{layer}."
            if tail.startswith("self_attn.q_proj."):
                parameter = tail.split(".")[-1]
                sources = tuple(
                    (component, key.replace("q_proj", projection)) for projection in ("q_proj", "k_proj", "v_proj")
                )
                plan.append(OriginalTensor(f"{block}attn.in_proj_{parameter}", sources, "concat"))
            elif tail.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                continue  # fused into in_proj with q_proj above
            else:
                for diffusers_name, original_name in _OPEN_CLIP_LAYER_NAMES:
                    if tail.startswith(diffusers_name):
                        plan.append(OriginalTensor(block + original_name + tail[len(diffusers_name) :], ((component, key),)))
                        break
                else:
                    raise KeyError(f"no original name for OpenCLIP key {key!r}")
        else:
            raise KeyError(f"no original name for OpenCLIP key {key!r}")
    return plan


def original_checkpoint_plan(
    family: str, unet_config: Mapping, vae_config: Mapping, components: Mapping[str, Mapping]
) -> list[OriginalTensor]:
    """Every tensor of the original single file, from the diffusers components' keys."""
    prefixes = LDM_PREFIXES[family]
    unet_prefixes = unet_prefix_map(unet_config)
    up_block_count = len(vae_config["up_block_types"])
    plan: list[OriginalTensor] = []
    for key in components["unet"]:
        plan.append(OriginalTensor(prefixes["unet"] + unet_original_key(key, unet_prefixes), (("unet", key),)))
    for key in components["vae"]:
        original, transform = vae_original_key(key, up_block_count)
        plan.append(OriginalTensor(prefixes["vae"] + original, (("vae", key),), transform))
    for key in components["text_encoder"]:
        plan.append(OriginalTensor(prefixes["text_encoder"] + clip_original_key(key), (("text_encoder", key),)))
    if family == "sdxl":
        plan += open_clip_plan("text_encoder_2", list(components["text_encoder_2"]), prefixes["text_encoder_2"])
    return plan


# ---- writing -------------------------------------------------------------------------------------------


def _source_shape(components: Mapping[str, Mapping], component: str, key: str) -> tuple[int, ...]:
    tensors = components[component]
    shapes = getattr(tensors, "shapes", None)
    return tuple(shapes[key]) if shapes is not None else tuple(tensors[key].shape)


def _output_shape(entry: OriginalTensor, components: Mapping[str, Mapping]) -> tuple[int, ...]:
    shapes = [_source_shape(components, *source) for source in entry.sources]
    if entry.transform == "conv1x1":
        return shapes[0] + (1, 1)
    if entry.transform == "transpose":
        return tuple(reversed(shapes[0]))
    if entry.transform == "concat":
        return (sum(shape[0] for shape in shapes),) + shapes[0][1:]
    return shapes[0]


def _build_tensor(entry: OriginalTensor, components: Mapping[str, Mapping]) -> torch.Tensor:
    tensors = [components[component][key] for component, key in entry.sources]
    if entry.transform == "conv1x1":
        return tensors[0].reshape(*tensors[0].shape, 1, 1)
    if entry.transform == "transpose":
        return tensors[0].T
    if entry.transform == "concat":
        return torch.cat(tensors, dim=0)
    return tensors[0]


def write_original_checkpoint(
    path: str | Path,
    family: str,
    unet_config: Mapping,
    vae_config: Mapping,
    components: Mapping[str, Mapping],
    dtype: torch.dtype = torch.float32,
    realistic_extras: bool = True,
) -> list[OriginalTensor]:
    """Write `components` (diffusers-format tensors by component) as an original-layout .safetensors.

    `realistic_extras` adds what real files carry besides the weights (LDM schedule buffers,
    CLIP position_ids, OpenCLIP logit_scale), which a loader must tolerate.
    Returns the plan, so tests can map keys back.
    """
    plan = original_checkpoint_plan(family, unet_config, vae_config, components)
    extras: dict[str, torch.Tensor] = {}
    if realistic_extras:
        extras["alphas_cumprod"] = torch.linspace(0.9991, 0.0047, 1000, dtype=dtype)
        extras["betas"] = torch.linspace(0.00085, 0.012, 1000, dtype=dtype)
        clip_prefix = LDM_PREFIXES[family]["text_encoder"]
        extras[f"{clip_prefix}text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
        if family == "sdxl":
            extras[LDM_PREFIXES["sdxl"]["text_encoder_2"] + "logit_scale"] = torch.tensor(4.6052, dtype=dtype)
    entries = [(entry.key, _output_shape(entry, components), dtype) for entry in plan]
    entries += [(key, tuple(value.shape), value.dtype) for key, value in extras.items()]

    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape, entry_dtype in entries:
        size = torch.Size(shape).numel() * torch.empty((), dtype=entry_dtype).element_size()
        header[key] = {"dtype": _SAFETENSORS_DTYPES[entry_dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)

    with open(path, "wb") as handle:
        handle.write(len(header_bytes).to_bytes(8, "little"))
        handle.write(header_bytes)
        for entry in plan:
            tensor = _build_tensor(entry, components).to(dtype).contiguous()
            handle.write(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        for value in extras.values():
            handle.write(value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return plan


def write_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: dict | None = None) -> Path:
    """A plain .safetensors file (LoRA, VAE, embedding) from in-memory tensors."""
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path), metadata=metadata)
    return Path(path)


# ---- small-shape config folders and components built from config folders -------------------------------

_SMALL_UNET = {
    "sd15": {"block_out_channels": [32, 32, 64, 64], "cross_attention_dim": 32, "sample_size": 8},
    "sdxl": {
        "block_out_channels": [32, 64, 64],
        "attention_head_dim": [2, 4, 4],
        "transformer_layers_per_block": [1, 2, 3],
        "cross_attention_dim": 32 + 64,
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + 64,
        "sample_size": 8,
    },
}
_SMALL_VAE = {"block_out_channels": [32, 32, 64, 64], "sample_size": 64}
# te2 must be wider than te1: diffusers tells SDXL's two encoders apart by width, as 768 vs 1280 do.
_SMALL_CLIP = {
    "text_encoder": {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "projection_dim": 32},
    "text_encoder_2": {"hidden_size": 64, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "projection_dim": 64},
}


def write_small_config_root(destination: Path) -> Path:
    """A copy of the bundled config folders with the same block structure (hence the same key layout
    in the original files) but tiny widths, so a whole single-file load takes a second."""
    import shutil

    from inference.models import bundled_config_root

    shutil.copytree(bundled_config_root(), destination)
    # The UNet families' folders (sd15, sdxl and their inpaint variants); FLUX's have no UNet.
    for folder in (path for path in destination.iterdir() if (path / "unet" / "config.json").is_file()):
        family = "sdxl" if folder.name.startswith("sdxl") else "sd15"
        _update_json(folder / "unet" / "config.json", _SMALL_UNET[family])
        _update_json(folder / "vae" / "config.json", _SMALL_VAE)
        for encoder, overrides in _SMALL_CLIP.items():
            if (folder / encoder / "config.json").is_file():
                _update_json(folder / encoder / "config.json", overrides)
    return destination


def _update_json(path: Path, overrides: Mapping) -> None:
    config = json.loads(path.read_text())
    config.update(overrides)
    path.write_text(json.dumps(config, indent=2))


def read_config(folder: Path, component: str) -> dict:
    return json.loads((folder / component / "config.json").read_text())


def build_components(config_folder: Path, on_meta: bool = False) -> dict[str, torch.nn.Module]:
    """Diffusers-format components from a config folder: random init, or shapes only (`on_meta`)."""
    from contextlib import nullcontext

    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    context = init_empty_weights if on_meta else nullcontext
    components: dict[str, torch.nn.Module] = {}
    with context():
        components["unet"] = UNet2DConditionModel.from_config(read_config(config_folder, "unet"))
        components["vae"] = AutoencoderKL.from_config(read_config(config_folder, "vae"))
        components["text_encoder"] = CLIPTextModel(CLIPTextConfig(**read_config(config_folder, "text_encoder")))
        if (config_folder / "text_encoder_2").is_dir():
            components["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig(**read_config(config_folder, "text_encoder_2"))
            )
    return components


def write_checkpoint_like(
    path: Path, config_folder: Path, family: str, *, seeded: bool = False, dtype: torch.dtype = torch.float32
) -> dict[str, Mapping]:
    """Write a single-file checkpoint of `config_folder`'s architecture; returns the diffusers-format
    tensors it holds, by component (seeded: regenerated on access, for full-size models)."""
    modules = build_components(config_folder, on_meta=seeded)
    if seeded:
        tensors: dict[str, Mapping] = {
            name: SeededTensors(f"{path.name}/{name}", meta_shapes(module), dtype) for name, module in modules.items()
        }
    else:
        tensors = {name: module.state_dict() for name, module in modules.items()}
    write_original_checkpoint(
        path, family, read_config(config_folder, "unet"), read_config(config_folder, "vae"), tensors, dtype=dtype
    )
    return tensors


# ---- LoRA and embedding files in the kohya / A1111 layouts ------------------------------------------------

_UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
_CLIP_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def kohya_lora_tensors(model, rank: int = 4, seed: int = 0, text_encoder: bool = True) -> dict[str, torch.Tensor]:
    """A kohya-ss (A1111) LoRA for `model` (an SDModel): lora_down/lora_up/alpha per targeted Linear.

    SD1.x LoRAs name UNet modules after diffusers (lora_unet_down_blocks_0_...); SDXL LoRAs use the
    original sgm names (lora_unet_input_blocks_4_1_...) and lora_te1_/lora_te2_ for the two encoders.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}

    def add(kohya_name: str, module: torch.nn.Linear) -> None:
        down = torch.randn(rank, module.in_features, generator=generator) * 0.1
        up = torch.randn(module.out_features, rank, generator=generator) * 0.1
        tensors[f"{kohya_name}.lora_down.weight"] = down
        tensors[f"{kohya_name}.lora_up.weight"] = up
        tensors[f"{kohya_name}.alpha"] = torch.tensor(float(rank) / 2)

    prefixes = unet_prefix_map(model.unet.config) if model.family == "sdxl" else None
    for name, module in model.unet.named_modules():
        if isinstance(module, torch.nn.Linear) and (".attn1." in name or ".attn2." in name):
            if name.endswith(_UNET_LORA_TARGETS):
                original = unet_original_key(f"{name}.weight", prefixes)[: -len(".weight")] if prefixes else name
                add("lora_unet_" + original.replace(".", "_"), module)
    if text_encoder:
        encoders = [("lora_te_", model.text_encoder)]
        if model.family == "sdxl":
            encoders = [("lora_te1_", model.text_encoder), ("lora_te2_", model.text_encoder_2)]
        for prefix, encoder in encoders:
            for name, module in encoder.named_modules():
                if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in _CLIP_LORA_TARGETS:
                    add(prefix + clip_original_key(name).replace(".", "_"), module)
    return tensors


def a1111_embedding_pt(path: Path, vectors: torch.Tensor, name: str = "style") -> Path:
    """An A1111 textual-inversion .pt (string_to_param / string_to_token dictionaries)."""
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": vectors},
            "name": name,
            "step": 3000,
            "sd_checkpoint": "0123456789",
            "sd_checkpoint_name": "model",
        },
        path,
    )
    return path
