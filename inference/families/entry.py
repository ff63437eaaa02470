"""What a registry entry declares about one model family (nothing here loads or runs anything).

A family is one frozen `Family`: how files of it are recognised (from safetensors shapes, from a
diffusers folder's pipeline class), how it is stored and loaded, which components and text
encoders it has, its latent format, its preview factors, its defaults and what it supports. The
`loop` names which denoise loop runs it; the engine maps each loop to its runner, so a new family
on an existing loop is a new entry and nothing else.

This module imports neither torch nor diffusers: discovery and the GUI read entries before the
model stack is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Loop = Literal["sd", "flow", "edit"]  # sd/loop.py (UNet), flow/loop.py (flow matching), edit pipelines
Kind = Literal["unet", "flow", "edit"]
StorageFormat = Literal["single_file", "split_files", "diffusers_folder"]
Shapes = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class Detected:
    """What an entry's detector recognised in a file: the family, and whether it is an inpaint variant."""

    family: str
    inpaint: bool = False


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of a family: where its weights are and what kind of network it is."""

    component: str  # attribute / diffusers subfolder: "text_encoder", "text_encoder_2"
    tokenizer: str  # its tokenizer's subfolder
    architecture: str  # "clip-l", "openclip-bigg", "t5-xxl", "qwen2.5-vl", ...
    checkpoint_prefix: str = ""  # key prefix inside an original-layout single file ("" = not stored there)
    with_projection: bool = False  # CLIPTextModelWithProjection (a pooled, projected embedding)
    max_tokens: int = 77


@dataclass(frozen=True)
class PromptEncoding:
    """How prompts become conditioning: the encoders in order and how long prompts are handled."""

    encoders: tuple[TextEncoder, ...] = ()
    style: Literal["clip-chunks", "pipeline", "t5-clip"] = "clip-chunks"
    pooled_from: str = ""  # the encoder whose pooled output conditions the denoiser ("" = none)


@dataclass(frozen=True)
class LoadSpec:
    """How the family's weights are stored and which components a loaded model has."""

    formats: tuple[StorageFormat, ...]
    components: tuple[str, ...]  # "unet" / "transformer", "vae", "text_encoder", ...
    config_folder: str = ""  # bundled config (resources/configs/<name>[-inpaint]) for single files
    checkpoint_prefixes: Mapping[str, str] = field(default_factory=dict)  # component -> single-file prefix


@dataclass(frozen=True)
class LatentFormat:
    """The latent space the denoiser works in: latents = (vae_latents - shift_factor) * scaling_factor."""

    channels: int
    scaling_factor: float
    shift_factor: float = 0.0
    packed: bool = False  # 2x2 patches flattened into tokens (FLUX, Qwen-Image)
    scale_factor: int = 8  # pixels per latent pixel (VAE downsampling)


@dataclass(frozen=True)
class PreviewFactors:
    """A linear latent -> RGB projection (one row per latent channel, columns R, G, B) and its bias."""

    rgb: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Defaults:
    """What a new request for this family starts with."""

    steps: int
    sampler: str
    cfg: float | None = None  # classifier-free guidance scale (None: the family does not use CFG)
    guidance: float | None = None  # distilled guidance (FLUX-dev, Kontext) instead of CFG
    width: int = 512  # native resolution
    height: int = 512


@dataclass(frozen=True)
class Supports:
    """What requests this family can run; validation refuses the rest before any model loads."""

    modes: tuple[str, ...]
    region_methods: tuple[str, ...] = ()
    lora: bool = False
    # Sampler names the user may pick; empty: the family always runs `Defaults.sampler` (the flow-matching
    # families, the edit pipelines with their own scheduler), so a sampler choice would be a lie.
    samplers: tuple[str, ...] = ()
    inpaint: Literal["none", "blend", "blend+9-channel", "fill-model", "pipeline"] = "none"
    planned: tuple[str, ...] = ()  # modes it does not run yet (refused with "not yet for <label>")
    true_cfg: bool = False  # request.true_cfg_scale runs a second, negative pass (FLUX.1, Kontext, Qwen edit)
    image_guidance: bool = False  # request.image_guidance_scale applies (InstructPix2Pix)


@dataclass(frozen=True)
class Family:
    """One registry entry. `detect_checkpoint` returns None for files of other families."""

    name: str  # "sd15": what ModelInfo.family and model.family hold
    label: str  # what people call it
    kind: Kind
    loop: Loop
    load: LoadSpec
    prompts: PromptEncoding
    latent: LatentFormat
    defaults: Defaults
    supports: Supports
    preview: PreviewFactors | None = None
    detect_checkpoint: Callable[[Shapes], Detected | None] | None = None
    diffusers_pipelines: tuple[str, ...] = ()  # model_index.json _class_name values of this family
    # Refuses a diffusers folder of one of those pipelines that is a variant we cannot run (one sentence).
    check_diffusers_folder: Callable[[Path], None] | None = None
    # The entry a folder of those pipelines really is, when one pipeline class serves several
    # families (FluxPipeline: dev or schnell, by the transformer's config).
    diffusers_variant: Callable[[Path], str] | None = None
    native_area: int = 512 * 512  # pixels it was trained at (edit runs work at this area)
