"""What a generation needs (one request dataclass) and what comes back (one event union).

The desktop controller builds a `GenerationRequest` from a frozen `canvas` Composition;
`Engine.run` answers with `Event`s. Everything here is plain data: numpy arrays and
Python scalars, so the request can cross the thread boundary and be recorded as-is.
Images are HxWx3 uint8 RGB; masks are HxW float32 in [0, 1] at canvas size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union, get_args

import numpy as np

# The choices of every option: inference.validate and the desktop read them with get_args.
Mode = Literal["generate", "inpaint", "regions", "composite", "refine", "edit"]
Sampler = Literal["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "UniPC", "LCM"]
MaskMode = Literal["masked", "not_masked"]
MaskedContent = Literal["fill", "original", "latent_noise", "latent_nothing"]
InpaintArea = Literal["whole", "only_masked"]
RegionMethod = Literal["attention", "latent"]
PreviewMethod = Literal["linear", "taesd", "none"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)

# The limits of every number (inference.validate checks them all before any model work).
MAX_SIDE = 4096  # pixels, per side, of a generated image
MAX_PIXELS = 4096 * 4096
# pixels, per side, of a canvas an inpaint generates from (it is scaled to a generation size within
# MAX_SIDE and the result is pasted back into it): the editor's largest document
MAX_CANVAS_SIDE = 16384
MAX_CANVAS_PIXELS = 8192 * 8192  # a canvas' frozen arrays (picture, masks, regions) at most a few GiB
MAX_PROMPT_CHARS = 20_000  # each prompt: the main one, a region's, a piece's
MAX_STEPS = 1000
MAX_BATCH = 64
MAX_SEED = 2**32 - 1  # A1111's range, what a PNG's parameters and the seed field hold; batch items count on from it
MAX_CLIP_SKIP = 12
MAX_MASK_BLUR = 256  # px
MAX_REFINE_EDGE_WIDTH = 1024  # px
CFG_RANGE = (1.0, 30.0)
IMAGE_GUIDANCE_RANGE = (1.0, 10.0)  # InstructPix2Pix's image guidance
TRUE_CFG_RANGE = (1.0, 20.0)  # FLUX Kontext / Qwen-Image-Edit true classifier-free guidance
REGION_STRENGTH_RANGE = (0.0, 2.0)


class InferenceError(Exception):
    """An error with one clear sentence for the user (never a traceback)."""


class RequestError(InferenceError):
    """The request itself is invalid (size, limits, unknown option)."""


class ModelError(InferenceError):
    """A model could not be found, recognised or loaded."""


class UnsupportedModelError(ModelError):
    """The file is a model of a family Collagen does not run."""


class OutOfMemory(InferenceError):
    """The device ran out of memory; memory was freed and the engine stays usable."""


class GenerationCancelled(Exception):
    """Raised inside the denoise loop when the cancel event is set (becomes a `Cancelled` event)."""


@dataclass(frozen=True)
class LoraSpec:
    name: str  # file stem in the LoRA folders, or a path
    weight: float = 1.0  # on the text encoder(s), and on the UNet unless unet_weight is given
    unet_weight: float | None = None  # A1111's `<lora:name:te_weight:unet_weight>`; None = weight

    @property
    def unet_strength(self) -> float:
        return self.weight if self.unet_weight is None else self.unet_weight


@dataclass(frozen=True)
class RegionSpec:
    mask: np.ndarray  # HxW float32 in [0, 1] (soft masks allowed), canvas size
    prompt: str
    negative: str = ""
    strength: float = 1.0  # 0..2, scales the region's attention / noise prediction weight
    loras: tuple[LoraSpec, ...] = ()


@dataclass(frozen=True)
class CompositePiece:
    """One piece for `composite` mode: generated on its own, then pasted by mask."""

    mask: np.ndarray  # HxW float32 in [0, 1]
    prompt: str
    negative: str = ""
    image: np.ndarray | None = None  # HxWx3 uint8 when the piece is an image layer (img2img)


@dataclass(frozen=True)
class GenerationRequest:
    mode: Mode = "generate"
    model: str = "builtin:tiny-sd15"  # discovered name, a path, or builtin:tiny-sd15 / builtin:tiny-sdxl
    prompt: str = ""
    negative: str = ""
    width: int = 512
    height: int = 512
    # Knobs (SPEC §4)
    sampler: Sampler = "Euler a"
    steps: int = 20
    cfg: float = 7.0
    seed: int = -1  # -1: random; the used seed is reported in Finished.parameters
    batch_count: int = 1
    clip_skip: int = 1  # A1111 numbering: 1 = last layer, 2 = penultimate
    vae: str | None = None  # None: the checkpoint's own
    lcm: bool = False
    lcm_lora: str | None = None
    loras: tuple[LoraSpec, ...] = ()
    # Image input: the flattened canvas (None for txt2img over an empty canvas)
    init_image: np.ndarray | None = None  # HxWx3 uint8
    strength: float = 1.0  # denoising strength (img2img/inpaint/refine)
    # Inpaint (SPEC §3)
    mask: np.ndarray | None = None  # HxW float32; 1 = regenerate (before mask_mode)
    mask_mode: MaskMode = "masked"
    masked_content: MaskedContent = "original"
    inpaint_area: InpaintArea = "whole"
    padding: int = 32
    mask_blur: int = 4
    color_match: bool = False
    # Regions (SPEC §2)
    regions: tuple[RegionSpec, ...] = ()
    region_method: RegionMethod = "attention"
    # Composite
    pieces: tuple[CompositePiece, ...] = ()
    composite_step: float = 0.5  # fraction of the steps each piece runs on its own
    # Refine (collage): per-piece alpha where it lands, stacked (N x H x W float32)
    collage_alpha: np.ndarray | None = None
    refine_edge_width: int = 24  # px, band around each piece's edge
    refine_edge_strength: float = 0.75
    refine_inside_strength: float = 0.45
    refine_background_strength: float = 0.15
    # Sketch (A1111 inpaint sketch): already painted into init_image by the controller
    sketch_mask: np.ndarray | None = None  # HxW float32 stroke area
    # Edit (instruction models)
    reference_images: tuple[np.ndarray, ...] = ()
    annotation_image: np.ndarray | None = None  # HxWx4 uint8 RGBA markup, never in the output
    image_guidance_scale: float = 1.5
    true_cfg_scale: float = 4.0  # edit models and FLUX: true CFG with the negative prompt (1 = off)
    guidance: float | None = None  # FLUX distilled guidance (not CFG); None: the family's default
    # Previews
    preview: PreviewMethod = "linear"


# ---- events: exactly one of these types comes back for each thing that happens -------------


@dataclass(frozen=True)
class Progress:
    step: int  # 1-based count of finished steps
    total: int


Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in canvas pixels, x1/y1 exclusive


@dataclass(frozen=True)
class Preview:
    step: int
    image: np.ndarray  # HxWx3 uint8, at (a fraction of) the size of `rect`
    rect: Box | None = None  # the canvas rectangle the image is drawn over, stretched (None: the whole canvas)


@dataclass(frozen=True)
class Notice:
    """A warning the user should see (e.g. a region too small to matter); generation goes on."""

    message: str


@dataclass(frozen=True)
class Finished:
    images: tuple[np.ndarray, ...]  # HxWx3 uint8 at request size, one per batch item
    parameters: tuple[dict, ...]  # one record per image: prompt, seed, sampler, ... (SPEC §7)
    # The canvas rectangle the images may differ from the input in (what an accepted result covers;
    # the inpaint mask's feathered area, say). The images themselves are canvas-size. None: everywhere.
    rect: Box | None = None


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(frozen=True)
class Cancelled:
    step: int = 0  # steps finished before the cancel took effect


Event = Union[Progress, Preview, Notice, Finished, Failed, Cancelled]


@dataclass
class ModelInfo:
    """One model found on disk (or built in)."""

    name: str  # what the UI and --model use
    path: str  # file or folder; "builtin:..." for built-in
    family: str  # sd15, sdxl, ip2p, flux-kontext, qwen-edit, qwen-edit-plus
    kind: str  # checkpoint, inpaint, diffusers, edit, builtin
    extra: dict = field(default_factory=dict)
