"""What a FLUX.1 file is, from its safetensors header alone, and which companion files go with it.

FLUX.1 comes as users download it:
- ComfyUI split files: the transformer in `diffusion_models/` (or `unet/`), in the Black Forest
  Labs key layout (`double_blocks.N.…`, `single_blocks.N.…`, `img_in`, `txt_in`, `time_in`,
  `vector_in`, `guidance_in`, `final_layer`), bf16, fp16 or float8_e4m3fn; CLIP-L and T5-XXL in
  `text_encoders/` (or `clip/`); the autoencoder `ae.safetensors` in `vae/`.
- all-in-one files (`model.diffusion_model.` + `text_encoders.clip_l.transformer.` +
  `text_encoders.t5xxl.transformer.` + `vae.`, the layout ComfyUI's checkpoint save writes and the
  fp8 "checkpoint" downloads use);
- diffusers folders (`transformer/`, `text_encoder/`, `text_encoder_2/`, `vae/`).

Variants from shapes: schnell has no guidance embedder; Fill takes 384 input channels (64 latent
+ 64 masked-image latent + 256 packed mask) instead of 64; Depth 128. Kontext has exactly dev's
tensors (its reference image enters as extra tokens, not channels), so no header shape can tell
them apart: ComfyUI and Forge do not try (the workflow decides), InvokeAI goes by the model's
name. We do the same: a file is Kontext when its safetensors metadata or its file name says
"kontext", otherwise dev.

Nothing here reads weights; only `load_t5_tokenizer` touches transformers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path

# Key prefixes of a FLUX transformer inside a file: bare (ComfyUI diffusion_models/), the
# checkpoint layout (all-in-one files), and diffusers' own names saved with a component prefix.
BFL_PREFIXES = ("", "model.diffusion_model.")
DIFFUSERS_TRANSFORMER_PREFIXES = ("", "transformer.", "model.diffusion_model.")
# Component prefixes of an all-in-one file (ComfyUI's checkpoint layout).
AIO_CLIP_L_PREFIX = "text_encoders.clip_l.transformer."
AIO_T5_PREFIX = "text_encoders.t5xxl.transformer."
AIO_VAE_PREFIXES = ("vae.", "first_stage_model.")
VAE_PREFIXES = ("",) + AIO_VAE_PREFIXES

FLUX_LATENT_CHANNELS = 16
FLUX_INPUT_WIDTHS = {64: "dev", 384: "fill", 128: "depth"}  # packed 2x2 patches: 16 ch x 4 (+ conditions)
CLIP_L_WIDTH, CLIP_G_WIDTH, CLIP_VOCAB = 768, 1280, 49408
T5XXL_WIDTH = 4096
QWEN25_VL_WIDTH = 3584  # Qwen2.5-VL 7B (Qwen-Image)



# ---- the transformer -----------------------------------------------------------------------------------


def detect_flux(
    shapes: Mapping[str, Sequence[int]], *, name: str = "", metadata: Mapping[str, str] | None = None
) -> str | None:
    """flux-dev | flux-schnell | flux-fill | flux-kontext, or None when this is no FLUX.1 transformer.

    Works for the BFL layout (bare or under `model.diffusion_model.`) and for diffusers' layout.
    FLUX.1 Depth (128 input channels) and other widths are not ours: None.
    """
    layout = flux_layout(shapes)
    if layout is None:
        return None
    kind, prefix = layout
    if kind == "bfl":
        image_in = shapes.get(prefix + "img_in.weight")
        has_guidance = prefix + "guidance_in.in_layer.weight" in shapes
    else:
        image_in = shapes.get(prefix + "x_embedder.weight")
        has_guidance = prefix + "time_text_embed.guidance_embedder.linear_1.weight" in shapes
    if image_in is None or len(image_in) != 2:
        return None
    variant = FLUX_INPUT_WIDTHS.get(int(image_in[1]))
    if variant == "fill":
        return "flux-fill"
    if variant != "dev":
        return None
    if not has_guidance:
        return "flux-schnell"
    return "flux-kontext" if says_kontext(name, metadata) else "flux-dev"


def flux_layout(shapes: Mapping[str, Sequence[int]]) -> tuple[str, str] | None:
    """("bfl" | "diffusers", key prefix) of the FLUX.1 transformer in these tensors, if there is one.

    FLUX.2 (`double_stream_modulation_img`) and Chroma (`distilled_guidance_layer`) share the block
    names but not the architecture, so they are not FLUX.1.
    """
    keys = shapes.keys()
    if any("double_stream_modulation" in key or "distilled_guidance_layer" in key for key in keys):
        return None
    for prefix in BFL_PREFIXES:
        if prefix + "double_blocks.0.img_attn.norm.key_norm.scale" in shapes and prefix + "img_in.weight" in shapes:
            return "bfl", prefix
    for prefix in DIFFUSERS_TRANSFORMER_PREFIXES:
        if (
            prefix + "transformer_blocks.0.attn.norm_added_k.weight" in shapes
            and prefix + "x_embedder.weight" in shapes
            and prefix + "context_embedder.weight" in shapes
        ):
            return "diffusers", prefix
    return None


def says_kontext(name: str, metadata: Mapping[str, str] | None) -> bool:
    """Kontext by its name or its safetensors metadata (modelspec.title / architecture, ...)."""
    texts = [name] + [str(value) for value in (metadata or {}).values()]
    return any(re.search(r"kontext", text, re.IGNORECASE) for text in texts)


def count_blocks(shapes: Iterable[str], prefix: str) -> int:
    """How many numbered blocks `prefix.N.` there are (highest N + 1; 0 when none)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    numbers = [int(match.group(1)) for key in shapes if (match := pattern.match(key))]
    return max(numbers) + 1 if numbers else 0


# ---- text encoders and the VAE ---------------------------------------------------------------------------


def classify_text_encoder(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """clip-l | t5xxl | clip-g | qwen2.5-vl | qwen3 | None, for a text-encoder file (HF key layout)."""
    for prefix in ("", "text_model.", AIO_CLIP_L_PREFIX, AIO_CLIP_L_PREFIX + "text_model."):
        table = shapes.get(prefix + "embeddings.token_embedding.weight")
        if table is not None and len(table) == 2 and int(table[0]) == CLIP_VOCAB:
            return {CLIP_L_WIDTH: "clip-l", CLIP_G_WIDTH: "clip-g"}.get(int(table[1]))
    for prefix in ("", AIO_T5_PREFIX):
        if prefix + "encoder.block.0.layer.0.SelfAttention.q.weight" in shapes:
            table = shapes.get(prefix + "shared.weight") or shapes.get(prefix + "encoder.embed_tokens.weight")
            width = int(table[1]) if table is not None and len(table) == 2 else None
            return "t5xxl" if width == T5XXL_WIDTH else None
    table = shapes.get("model.embed_tokens.weight") or shapes.get("model.language_model.embed_tokens.weight")
    if table is not None and len(table) == 2:
        if any(key.startswith(("visual.", "model.visual.")) for key in shapes) or int(table[1]) == QWEN25_VL_WIDTH:
            return "qwen2.5-vl"
        if any(".self_attn.q_norm." in key for key in shapes):
            return "qwen3"  # Qwen3 normalises queries and keys per head; Qwen2.5 does not
    return None


def flux_vae_prefix(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The key prefix of a FLUX autoencoder (16 latent channels) in these tensors, or None.

    `decoder.conv_in` has the same name in the BFL/LDM and the diffusers layout; its input width is
    the latent channel count (4 for SD, 16 for FLUX and SD3).
    """
    for prefix in VAE_PREFIXES:
        conv_in = shapes.get(prefix + "decoder.conv_in.weight")
        if conv_in is not None and len(conv_in) == 4 and int(conv_in[1]) == FLUX_LATENT_CHANNELS:
            if prefix + "encoder.conv_in.weight" in shapes:
                return prefix
    return None


def is_flux_vae(shapes: Mapping[str, Sequence[int]]) -> bool:
    return flux_vae_prefix(shapes) is not None


def all_in_one_parts(shapes: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """Component -> key prefix of what an all-in-one file carries besides the transformer."""
    parts: dict[str, str] = {}
    if any(key.startswith(AIO_CLIP_L_PREFIX) for key in shapes):
        parts["text_encoder"] = AIO_CLIP_L_PREFIX
    if any(key.startswith(AIO_T5_PREFIX) for key in shapes):
        parts["text_encoder_2"] = AIO_T5_PREFIX
    for prefix in AIO_VAE_PREFIXES:
        if flux_vae_prefix({k: v for k, v in shapes.items() if k.startswith(prefix)}) == prefix:
            parts["vae"] = prefix
            break
    return parts


# ---- companions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompanionFile:
    """A discovered text-encoder or VAE file and what its header says it is."""

    name: str
    path: str
    kind: str  # clip-l | t5xxl | ... | "flux-vae"
    dtype: str = ""  # the dominant safetensors dtype (BF16, F16, F32, F8_E4M3), when known


@dataclass
class CompanionChoice:
    """The files a split FLUX transformer runs with: chosen ones, or the candidates to ask about."""

    chosen: dict[str, CompanionFile] = field(default_factory=dict)  # "clip_l" | "t5" | "vae" -> file
    candidates: dict[str, list[CompanionFile]] = field(default_factory=dict)  # slots the user must pick

    @property
    def complete(self) -> bool:
        return set(self.chosen) == set(COMPANION_SLOTS)


COMPANION_SLOTS = {"clip_l": "clip-l", "t5": "t5xxl", "vae": "flux-vae"}
_FP8_DTYPES = ("F8_E4M3", "F8_E5M2")


def choose_companions(
    files: Iterable[CompanionFile], preset: Mapping[str, str] | None = None
) -> CompanionChoice:
    """Pick CLIP-L, T5-XXL and the FLUX VAE for a split transformer, asking only when it is unclear.

    Per slot: a path in `preset` (the user's earlier choice) wins when it is among the files; one
    candidate is chosen; of several T5 files that are the same encoder in two precisions
    (t5xxl_fp16 and t5xxl_fp8_e4m3fn), the higher precision is chosen, because it is the quality
    reference and the fp8 file only saves memory the memory plan can save by other means (CPU
    offload). Anything else with more than one candidate, or none, goes back to the UI to ask.
    """
    files = list(files)
    preset = dict(preset or {})
    choice = CompanionChoice()
    for slot, kind in COMPANION_SLOTS.items():
        candidates = [file for file in files if file.kind == kind]
        picked = next((file for file in candidates if file.path == preset.get(slot)), None)
        if picked is None and len(candidates) == 1:
            picked = candidates[0]
        if picked is None and slot == "t5":
            picked = _one_full_precision(candidates)
        if picked is None:
            choice.candidates[slot] = candidates
        else:
            choice.chosen[slot] = picked
    return choice


def _one_full_precision(candidates: list[CompanionFile]) -> CompanionFile | None:
    """The single non-fp8 file when the others are fp8 copies (by dtype, or by an fp8 name)."""
    full = [file for file in candidates if not _is_fp8(file)]
    return full[0] if len(full) == 1 and len(candidates) > 1 else None


def _is_fp8(file: CompanionFile) -> bool:
    return file.dtype in _FP8_DTYPES or bool(re.search(r"fp8|f8_?e4m3|e4m3fn|e5m2", file.name, re.IGNORECASE))


def dominant_dtype(dtypes_and_sizes: Iterable[tuple[str, int]]) -> str:
    """The safetensors dtype holding most bytes (what a file 'is': fp8 files keep a few bf16 norms)."""
    totals: dict[str, int] = {}
    for dtype, size in dtypes_and_sizes:
        totals[dtype] = totals.get(dtype, 0) + int(size)
    return max(totals, key=totals.get) if totals else ""


# ---- discovery ------------------------------------------------------------------------------------------

# Folders (under a root or its models/) per kind: ComfyUI, A1111/Forge, and the diffusers folders.
TRANSFORMER_FOLDERS = ("diffusion_models", "unet", "checkpoints", "Stable-diffusion", "diffusers")
TEXT_ENCODER_FOLDERS = ("text_encoders", "clip", "text_encoder")  # Forge: models/text_encoder
VAE_FOLDERS = ("vae", "VAE")


@dataclass
class FluxFiles:
    """What one look at the folders found: transformers by family, and the companion files."""

    transformers: list[tuple[Path, str]] = field(default_factory=list)  # split transformer files
    all_in_one: list[tuple[Path, str]] = field(default_factory=list)  # files with encoders + VAE inside
    diffusers: list[tuple[Path, str]] = field(default_factory=list)
    companions: list[CompanionFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def find_flux_files(roots: Iterable[Path]) -> FluxFiles:
    """FLUX.1 transformers and their companion files in ComfyUI / A1111 / Forge folders, from headers only."""
    from inference.api import ModelError
    from inference.safetensors_header import read_safetensors_header

    found = FluxFiles()
    for root in roots:
        for base in (Path(root) / "models", Path(root)):
            for kind, names in (("transformer", TRANSFORMER_FOLDERS), ("text", TEXT_ENCODER_FOLDERS),
                                ("vae", VAE_FOLDERS)):
                for folder_name in names:
                    folder = base / folder_name
                    if not folder.is_dir():
                        continue
                    for path in _weight_files(folder, found if kind == "transformer" else None):
                        try:
                            header = read_safetensors_header(path)
                        except ModelError as error:
                            found.problems.append(str(error))
                            continue
                        _add_file(found, path, header)
    return found


def _weight_files(folder: Path, found: FluxFiles | None) -> list[Path]:
    """The .safetensors files under `folder`; a diffusers folder is one model (noted in `found`), not files."""
    files: list[Path] = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            if (path / "model_index.json").is_file():
                if found is not None:
                    _add_diffusers(found, path)
            elif not (path / "config.json").is_file():  # a diffusers component folder is not ours to list
                files += _weight_files(path, found)
        elif path.suffix.lower() == ".safetensors":
            files.append(path)
    return files


def _add_diffusers(found: FluxFiles, folder: Path) -> None:
    import json

    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if class_name == "FluxFillPipeline":
        found.diffusers.append((folder, "flux-fill"))
    elif class_name == "FluxPipeline" and isinstance(config, dict):
        found.diffusers.append((folder, "flux-dev" if config.get("guidance_embeds", True) else "flux-schnell"))


def _add_file(found: FluxFiles, path: Path, header) -> None:
    shapes = {key: info.shape for key, info in header.tensors.items()}
    if any(path == existing for existing, _ in found.transformers + found.all_in_one):
        return
    family = detect_flux(shapes, name=path.name, metadata=header.metadata)
    if family is not None:
        parts = all_in_one_parts(shapes)
        (found.all_in_one if len(parts) == 3 else found.transformers).append((path, family))
        return
    dtype = dominant_dtype((info.dtype, info.end - info.start) for info in header.tensors.values())
    kind = classify_text_encoder(shapes) or ("flux-vae" if is_flux_vae(shapes) else None)
    if kind is not None and all(existing.path != str(path) for existing in found.companions):
        found.companions.append(CompanionFile(path.stem, str(path), kind, dtype))


# ---- tokenizers ------------------------------------------------------------------------------------------


def shipped_t5_tokenizer_folder() -> Path:
    return Path(str(importlib_resources.files("resources") / "tokenizer-t5"))


def load_t5_tokenizer(folder: Path | None = None):
    """Google's T5 v1.1 tokenizer, shipped in resources/tokenizer-t5 (a folder's own copy when given)."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(folder or shipped_t5_tokenizer_folder()), local_files_only=True)
