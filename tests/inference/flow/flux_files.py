"""Write FLUX.1 files in the layouts users download, with the real key names and widths, for tests.

The weights are seeded random tensors named by their diffusers key (`Seeded`), so a test can
write a file, load it through inference.flow.loading and compare every loaded tensor with the
seeded one, cast to the file's dtype. The diffusers -> BFL mapping here is written from the
published layouts (the inverse of what the loader converts), not taken from the loader, so a
mistake on either side shows as a mismatch.

Files are written tensor by tensor (a header first, then each tensor made, cast and written), so
a 1.1 GB transformer file never sits in memory whole.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.models import bundled_config_root
from tests.inference.ckpt_helpers import vae_original_key

SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.float8_e4m3fn: "F8_E4M3"}
TIED = {"encoder.embed_tokens.weight": "shared.weight"}  # T5: one table under two names; files store `shared`
WEIGHT_SCALE = 0.05  # keeps random activations of a 3072-wide model in a sane range


BASE_LENGTH = 2**24 + 43  # random values; each tensor is a window of them at its own offset
WINDOW_ROOM = 32128 * 4096  # the longest tensor (T5's token table) fits in one window


class Seeded(Mapping):
    """Tensors of the given shapes, the same every time, distinct per (name, key).

    Real-width FLUX files hold ~10^9 values; drawing (and casting) each from a generator takes
    minutes on a small CPU, so every tensor is a window into one random buffer, kept once per
    dtype, starting at an offset from crc32(name/key). Two tensors only coincide when their
    offsets do, so a swapped or misplaced tensor still shows. Norm gains (1-D `*norm*.weight`)
    come from a second buffer around 1.0, as trained models have.
    """

    def __init__(self, name: str, shapes: Mapping[str, tuple[int, ...]]):
        self.name = name
        self.shapes = dict(shapes)

    def tensor(self, key: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        shape = self.shapes[key]
        start = zlib.crc32(f"{self.name}/{key}".encode()) % BASE_LENGTH
        parts = key.split(".")
        kind = "gain" if len(parts) >= 2 and "norm" in parts[-2] and parts[-1] == "weight" and len(shape) == 1 else "weight"
        return _base(kind, dtype)[start : start + torch.Size(shape).numel()].view(shape)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensor(key)

    def __iter__(self):
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


_BASES: dict[tuple[str, torch.dtype], torch.Tensor] = {}


def _base(kind: str, dtype: torch.dtype) -> torch.Tensor:
    if (kind, dtype) not in _BASES:
        if (kind, torch.float32) not in _BASES:
            values = torch.randn(BASE_LENGTH, generator=torch.Generator().manual_seed(20240801 + (kind == "gain")))
            values = 1.0 + 0.1 * values if kind == "gain" else values * WEIGHT_SCALE
            repeats = 1 + (BASE_LENGTH + WINDOW_ROOM) // BASE_LENGTH
            _BASES[kind, torch.float32] = values.repeat(repeats)[: BASE_LENGTH + WINDOW_ROOM]
        _BASES[kind, dtype] = _BASES[kind, torch.float32].to(dtype)
    return _BASES[kind, dtype]


def _bytes_cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat along dim 0 for any dtype (the CPU has no cat kernel for float8)."""
    dtype = tensors[0].dtype
    return torch.cat([tensor.contiguous().view(torch.uint8) for tensor in tensors]).view(dtype)


@dataclass(frozen=True)
class FileTensor:
    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    make: Callable[[torch.dtype], torch.Tensor]  # the tensor in the given dtype


def write_streamed(path: Path, tensors: list[FileTensor], metadata: Mapping[str, str] | None = None) -> Path:
    """A .safetensors file written one tensor at a time."""
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for entry in tensors:
        size = torch.Size(entry.shape).numel() * torch.empty((), dtype=entry.dtype).element_size()
        header[entry.key] = {"dtype": SAFETENSORS_DTYPES[entry.dtype], "shape": list(entry.shape),
                             "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(len(header_bytes).to_bytes(8, "little"))
        handle.write(header_bytes)
        for entry in tensors:
            tensor = entry.make(entry.dtype)
            assert tuple(tensor.shape) == entry.shape and tensor.dtype == entry.dtype, entry.key
            handle.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
    return path


# ---- shapes of the real architectures, reduced in depth ------------------------------------------------


def _config(family: str, component: str) -> dict:
    return json.loads((bundled_config_root() / family / component / "config.json").read_text())


def transformer_shapes(family: str, double: int = 1, single: int = 1) -> dict[str, tuple[int, ...]]:
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel

    config = dict(_config(family, "transformer"), num_layers=double, num_single_layers=single)
    with init_empty_weights():
        model = FluxTransformer2DModel.from_config(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def clip_l_shapes(layers: int = 1) -> dict[str, tuple[int, ...]]:
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(**dict(_config("flux-dev", "text_encoder"), num_hidden_layers=layers))
    with init_empty_weights():
        model = CLIPTextModel(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def t5_shapes(blocks: int = 1) -> dict[str, tuple[int, ...]]:
    from accelerate import init_empty_weights
    from transformers import T5Config, T5EncoderModel

    config = T5Config(**dict(_config("flux-dev", "text_encoder_2"), num_layers=blocks))
    with init_empty_weights():
        model = T5EncoderModel(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def vae_shapes() -> dict[str, tuple[int, ...]]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL

    with init_empty_weights():
        model = AutoencoderKL.from_config(_config("flux-dev", "vae"))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


# ---- diffusers -> file layouts ----------------------------------------------------------------------


def _copy(source: Seeded, key: str) -> Callable[[torch.dtype], torch.Tensor]:
    return lambda dtype: source.tensor(key, dtype)


def _cat(source: Seeded, keys: list[str]) -> Callable[[torch.dtype], torch.Tensor]:
    return lambda dtype: _bytes_cat([source.tensor(key, dtype) for key in keys])


def _swap_halves(source: Seeded, key: str) -> Callable[[torch.dtype], torch.Tensor]:
    """diffusers' AdaLayerNormContinuous is (scale, shift); BFL's final layer is (shift, scale)."""

    def make(dtype):
        scale, shift = source.tensor(key, dtype).chunk(2, dim=0)
        return _bytes_cat([shift, scale])

    return make


_DOUBLE_NAMES = {  # BFL name in a double block -> diffusers name in transformer_blocks.N
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
_DOUBLE_NORMS = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_TOP_NAMES = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer.linear": "proj_out",
}


def bfl_transformer_tensors(source: Seeded, dtype: torch.dtype, prefix: str = "") -> list[FileTensor]:
    """The transformer in the Black Forest Labs layout (ComfyUI diffusion_models/, all-in-one files)."""
    shapes = source.shapes
    plan: list[tuple[str, Callable[[], torch.Tensor], tuple[int, ...]]] = []

    def add(key: str, make, shape):
        plan.append((key, make, tuple(shape)))

    def concat_shape(keys):
        return (sum(shapes[k][0] for k in keys),) + tuple(shapes[keys[0]][1:])

    for bfl, diffusers in _TOP_NAMES.items():
        for parameter in ("weight", "bias"):
            if f"{diffusers}.{parameter}" in shapes:
                add(f"{bfl}.{parameter}", _copy(source, f"{diffusers}.{parameter}"), shapes[f"{diffusers}.{parameter}"])
    for parameter in ("weight", "bias"):
        key = f"norm_out.linear.{parameter}"
        add(f"final_layer.adaLN_modulation.1.{parameter}", _swap_halves(source, key), shapes[key])
    double = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("transformer_blocks.")})
    for index in double:
        d, b = f"transformer_blocks.{index}.", f"double_blocks.{index}."
        for bfl, diffusers in _DOUBLE_NAMES.items():
            for parameter in ("weight", "bias"):
                add(f"{b}{bfl}.{parameter}", _copy(source, f"{d}{diffusers}.{parameter}"),
                    shapes[f"{d}{diffusers}.{parameter}"])
        for bfl, diffusers in _DOUBLE_NORMS.items():
            add(b + bfl, _copy(source, d + diffusers), shapes[d + diffusers])
        for stream, names in (("img_attn", ("to_q", "to_k", "to_v")),
                              ("txt_attn", ("add_q_proj", "add_k_proj", "add_v_proj"))):
            for parameter in ("weight", "bias"):
                keys = [f"{d}attn.{name}.{parameter}" for name in names]
                add(f"{b}{stream}.qkv.{parameter}", _cat(source, keys), concat_shape(keys))
    single = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("single_transformer_blocks.")})
    for index in single:
        s, b = f"single_transformer_blocks.{index}.", f"single_blocks.{index}."
        for parameter in ("weight", "bias"):
            keys = [f"{s}attn.to_q.{parameter}", f"{s}attn.to_k.{parameter}", f"{s}attn.to_v.{parameter}",
                    f"{s}proj_mlp.{parameter}"]
            add(f"{b}linear1.{parameter}", _cat(source, keys), concat_shape(keys))
            add(f"{b}linear2.{parameter}", _copy(source, f"{s}proj_out.{parameter}"), shapes[f"{s}proj_out.{parameter}"])
            add(f"{b}modulation.lin.{parameter}", _copy(source, f"{s}norm.linear.{parameter}"),
                shapes[f"{s}norm.linear.{parameter}"])
        add(f"{b}norm.query_norm.scale", _copy(source, f"{s}attn.norm_q.weight"), shapes[f"{s}attn.norm_q.weight"])
        add(f"{b}norm.key_norm.scale", _copy(source, f"{s}attn.norm_k.weight"), shapes[f"{s}attn.norm_k.weight"])
    return [FileTensor(prefix + key, shape, _file_dtype(key, dtype), make) for key, make, shape in plan]


_NORM_SCALE = re.compile(r"(\.scale|\.norm_(added_)?[qk]\.weight|layer_norm\.weight)$")


def _file_dtype(key: str, dtype: torch.dtype) -> torch.dtype:
    """fp8 files keep the RMS-norm scales in bf16, as the published fp8_e4m3fn files do.

    `key` may be the BFL or the diffusers name: both name the same tensors as norm scales.
    """
    if dtype == torch.float8_e4m3fn and _NORM_SCALE.search(key):
        return torch.bfloat16
    return dtype


def diffusers_tensors(source: Seeded, dtype: torch.dtype, prefix: str = "",
                      rename: Callable[[str], str] = lambda key: key, skip: tuple[str, ...] = ()) -> list[FileTensor]:
    return [FileTensor(prefix + rename(key), shape, _file_dtype(key, dtype), _copy(source, key))
            for key, shape in source.shapes.items() if key not in skip]


def clip_l_tensors(source: Seeded, dtype: torch.dtype, prefix: str = "") -> list[FileTensor]:
    """HF CLIPTextModel layout with `text_model.` (ComfyUI's clip_l.safetensors), plus its projection."""
    tensors = diffusers_tensors(source, dtype, prefix, rename=lambda key: "text_model." + key)
    extra = Seeded("clip_l_projection", {"text_projection.weight": (768, 768)})
    tensors.append(FileTensor(prefix + "text_projection.weight", (768, 768), dtype, _copy(extra, "text_projection.weight")))
    return tensors


def t5_tensors(source: Seeded, dtype: torch.dtype, prefix: str = "") -> list[FileTensor]:
    """HF T5EncoderModel layout (ComfyUI's t5xxl_*.safetensors): the token table once, as `shared`."""
    return diffusers_tensors(source, dtype, prefix, skip=("encoder.embed_tokens.weight",))


def bfl_vae_tensors(source: Seeded, dtype: torch.dtype, prefix: str = "") -> list[FileTensor]:
    """ae.safetensors: the LDM autoencoder names, no quant convs, 1x1 convs for the mid attention."""
    up_blocks = 1 + max(int(k.split(".")[2]) for k in source.shapes if k.startswith("decoder.up_blocks."))
    tensors = []
    for key, shape in source.shapes.items():
        original, transform = vae_original_key(key, up_blocks)
        if transform == "conv1x1":
            tensors.append(FileTensor(prefix + original, (*shape, 1, 1), dtype,
                                      (lambda d, k=key: source.tensor(k, d).reshape(*source.shapes[k], 1, 1))))
        else:
            tensors.append(FileTensor(prefix + original, shape, dtype, _copy(source, key)))
    return tensors


def stored(source: Seeded, key: str, file_dtype: torch.dtype) -> torch.Tensor:
    """The tensor as a file of `file_dtype` stores it (fp8 files keep norm scales in bf16)."""
    return source.tensor(key, _file_dtype(key, file_dtype))
