"""A Collagen request as a ComfyUI API graph ("prompt") of core nodes.

The graph is plain JSON: node id -> {"class_type", "inputs"}, where an input that comes from
another node is `[node_id, output_index]`. Only nodes that ship with ComfyUI are used:

    CheckpointLoaderSimple (+ VAELoader)   model, clip, vae
    LoraLoader, chained                    the request's LoRAs, <lora:...> tags, the LCM LoRA
    CLIPSetLastLayer                       clip skip (A1111 n -> ComfyUI -n)
    CLIPTextEncode                         prompt, negative, region and piece prompts
    ConditioningSetMask + Combine          regions (masked conditioning; negatives masked alike)
    EmptyLatentImage / LoadImage+VAEEncode txt2img / img2img start
    SetLatentNoiseMask                     inpaint: only the regenerated latent cells change
    LatentCompositeMasked                  inpaint "latent nothing" (zeroed cells), composite paste
    DifferentialDiffusion                  refine: the strength map as the noise mask
    KSamplerAdvanced                       every sampling run; start_at_step is A1111's strength cut
    VAEDecode + PreviewImage               the result, fetched with /view (temp, lossless PNG)

What the graph receives is already in generation space (`GraphInputs`): Collagen cropped, blurred
and measured everything on its side (inference/sd/inpaint.py, refine.py), and pastes the decoded
result back itself, so the server never decides which pixels outside the mask change.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from inference.api import GenerationRequest, LoraSpec, RequestError

# Collagen sampler (SPEC §4) -> (ComfyUI sampler_name, scheduler). Karras variants are ComfyUI's
# plain sampler on the "karras" schedule; DDIM runs on its own uniform schedule; LCM on sgm_uniform.
SAMPLER_TO_COMFY: dict[str, tuple[str, str]] = {
    "Euler": ("euler", "normal"),
    "Euler a": ("euler_ancestral", "normal"),
    "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M Karras": ("dpmpp_2m", "karras"),
    "DPM++ SDE Karras": ("dpmpp_sde", "karras"),
    "DDIM": ("ddim", "ddim_uniform"),
    "UniPC": ("uni_pc", "normal"),
    "LCM": ("lcm", "sgm_uniform"),
}
COMFY_TO_SAMPLER: dict[tuple[str, str], str] = {pair: name for name, pair in SAMPLER_TO_COMFY.items()}


def comfy_sampler(name: str) -> tuple[str, str]:
    """ComfyUI's (sampler_name, scheduler) for a Collagen sampler name."""
    if name not in SAMPLER_TO_COMFY:
        raise RequestError(f"The sampler {name!r} has no ComfyUI counterpart; choose one of: {', '.join(SAMPLER_TO_COMFY)}.")
    return SAMPLER_TO_COMFY[name]


def collagen_sampler(sampler_name: str, scheduler: str) -> str | None:
    """The Collagen sampler a ComfyUI sampler/scheduler pair is, or None when Collagen has none like it."""
    return COMFY_TO_SAMPLER.get((sampler_name, scheduler))


# ---- what the server has --------------------------------------------------------------------------

REQUIRED_NODES = ("CheckpointLoaderSimple", "CLIPTextEncode", "KSamplerAdvanced", "VAEEncode", "VAEDecode",
                  "EmptyLatentImage", "LoadImage", "LoadImageMask", "PreviewImage")


@dataclass(frozen=True)
class ServerModels:
    """The model files and nodes a ComfyUI server offers (from `/object_info`)."""

    checkpoints: tuple[str, ...] = ()
    loras: tuple[str, ...] = ()
    vaes: tuple[str, ...] = ()
    samplers: tuple[str, ...] = ()
    schedulers: tuple[str, ...] = ()
    nodes: frozenset[str] = frozenset()

    @classmethod
    def from_object_info(cls, info: dict) -> ServerModels:
        def choices(node: str, name: str) -> tuple[str, ...]:
            spec = info.get(node, {}).get("input", {}).get("required", {}).get(name)
            if not spec or not isinstance(spec[0], list):
                return ()
            return tuple(str(choice) for choice in spec[0])

        return cls(
            checkpoints=choices("CheckpointLoaderSimple", "ckpt_name"),
            loras=choices("LoraLoader", "lora_name"),
            vaes=choices("VAELoader", "vae_name"),
            samplers=choices("KSamplerAdvanced", "sampler_name"),
            schedulers=choices("KSamplerAdvanced", "scheduler"),
            nodes=frozenset(info),
        )


def find_file(name: str, available: tuple[str, ...]) -> str | None:
    """The server's file for a Collagen name: the exact entry, else the one whose stem matches
    (Collagen names models and LoRAs by file stem; ComfyUI lists them with subfolder and extension)."""
    if name in available:
        return name
    wanted = PurePosixPath(name.replace("\\", "/"))
    wanted_stem = wanted.stem if wanted.suffix else wanted.name
    for entry in available:
        path = PurePosixPath(entry.replace("\\", "/"))
        if path.stem == wanted_stem or str(path.with_suffix("")) == str(wanted.with_suffix("")):
            return entry
    return None


def listing(names: tuple[str, ...], limit: int = 8) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ---- inputs, prepared by Collagen in generation space ----------------------------------------------


@dataclass(frozen=True)
class RegionInput:
    prompt: str
    negative: str  # "" when the region has none of its own (the base negative applies there)
    strength: float
    mask: np.ndarray  # generation size, float32 in [0, 1]


@dataclass(frozen=True)
class PieceInput:
    prompt: str
    negative: str
    mask: np.ndarray  # generation size
    image: np.ndarray | None  # generation size HxWx3 uint8, or None for a prompt-only piece


@dataclass
class GraphInputs:
    """Everything pixel-space the graph needs, at the generation size."""

    width: int
    height: int
    prompt: str  # LoRA tags already taken out
    negative: str
    loras: tuple[LoraSpec, ...] = ()
    init_image: np.ndarray | None = None  # HxWx3 uint8 (img2img, inpaint, refine)
    start_step: int = 0  # first step of the full schedule that runs (A1111's strength cut)
    noise_mask: np.ndarray | None = None  # inpaint: 1 on the regenerated latent cells, at pixel size
    zero_masked_latents: bool = False  # inpaint "latent nothing"/"latent noise": masked cells start at 0
    strength_map: np.ndarray | None = None  # refine: per-pixel strength relative to the run's start
    regions: tuple[RegionInput, ...] = ()
    pieces: tuple[PieceInput, ...] = ()
    composite_step: float = 0.5


@dataclass(frozen=True)
class Upload:
    """A PNG the graph's LoadImage/LoadImageMask nodes read; named by its content, so identical inputs
    share one file on the server and re-uploading is harmless."""

    name: str
    data: bytes


@dataclass
class GraphPlan:
    graph: dict
    uploads: list[Upload]
    output_node: str
    sampler_steps: dict[str, int]  # KSamplerAdvanced node id -> steps it runs (progress bookkeeping)
    sampler_order: list[str] = field(default_factory=list)  # the order those samplers run in
    width: int = 0  # the generation size the graph makes
    height: int = 0

    @property
    def total_steps(self) -> int:
        return sum(self.sampler_steps.values())


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def mask_png(mask: np.ndarray) -> np.ndarray:
    """A float mask as 8-bit grey (what LoadImageMask reads back, divided by 255)."""
    return np.clip(np.rint(np.asarray(mask, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


# ---- the graph -------------------------------------------------------------------------------------


class PromptGraph:
    """Nodes added in order; ids are "1", "2", ... so equal requests give equal graphs."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}
        self.uploads: dict[str, Upload] = {}

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    def upload(self, array: np.ndarray, kind: str) -> str:
        data = png_bytes(array)
        name = f"collagen-{kind}-{hashlib.sha1(data).hexdigest()[:20]}.png"
        self.uploads[name] = Upload(name=name, data=data)
        return name

    def load_image(self, image: np.ndarray) -> list:
        return [self.add("LoadImage", image=self.upload(image, "image")), 0]

    def load_mask(self, mask: np.ndarray) -> list:
        return [self.add("LoadImageMask", image=self.upload(mask_png(mask), "mask"), channel="red"), 0]


def out(node_id: str, index: int = 0) -> list:
    return [node_id, index]


class GraphBuilder:
    """Builds one image's graph; read `build` top to bottom."""

    def __init__(self, request: GenerationRequest, inputs: GraphInputs, server: ServerModels, *, seed: int,
                 sampler: str):
        self.request = request
        self.inputs = inputs
        self.server = server
        self.seed = int(seed)
        self.sampler_name, self.scheduler = comfy_sampler(sampler)
        for choice, available in ((self.sampler_name, server.samplers), (self.scheduler, server.schedulers)):
            if available and choice not in available:
                raise RequestError(f"The ComfyUI server has no sampler or scheduler {choice!r} (for {sampler!r}).")
        self.graph = PromptGraph()
        self.sampler_steps: dict[str, int] = {}
        self.sampler_order: list[str] = []

    def build(self) -> GraphPlan:
        model, clip, vae = self.prepare_models()
        positive = self.encode(clip, self.inputs.prompt)
        negative = self.encode(clip, self.inputs.negative)
        regional_positive, regional_negative = self.prepare_regions(clip, positive, negative)
        latent = self.prepare_latent(vae)
        if self.inputs.strength_map is not None:
            model = out(self.graph.add("DifferentialDiffusion", model=model))
            mask = self.graph.load_mask(self.inputs.strength_map)
            latent = out(self.graph.add("SetLatentNoiseMask", samples=latent, mask=mask))
        steps = int(self.request.steps)
        if self.inputs.pieces:
            latent = self.prepare_composite(model, clip, vae, positive, negative, latent)
            start = self.composite_split()
        else:
            start = self.inputs.start_step
        latent = self.sample(model, regional_positive, regional_negative, latent, start, steps,
                             add_noise=not self.inputs.pieces, leftover_noise=False)
        image = out(self.graph.add("VAEDecode", samples=latent, vae=vae))
        output_node = self.graph.add("PreviewImage", images=image)
        return GraphPlan(graph=self.graph.nodes, uploads=list(self.graph.uploads.values()), output_node=output_node,
                         sampler_steps=dict(self.sampler_steps), sampler_order=list(self.sampler_order),
                         width=self.inputs.width, height=self.inputs.height)

    # ---- loaders ----

    def prepare_models(self) -> tuple[list, list, list]:
        checkpoint = self.server_file(self.request.model, self.server.checkpoints, "model")
        loader = self.graph.add("CheckpointLoaderSimple", ckpt_name=checkpoint)
        model, clip, vae = out(loader, 0), out(loader, 1), out(loader, 2)
        if self.request.vae:
            vae_name = self.server_file(self.request.vae, self.server.vaes, "VAE")
            vae = out(self.graph.add("VAELoader", vae_name=vae_name))
        for lora in self.inputs.loras:
            lora_name = self.server_file(lora.name, self.server.loras, "LoRA")
            node = self.graph.add("LoraLoader", model=model, clip=clip, lora_name=lora_name,
                                  strength_model=float(lora.weight), strength_clip=float(lora.weight))
            model, clip = out(node, 0), out(node, 1)
        if self.request.clip_skip > 1:
            clip = out(self.graph.add("CLIPSetLastLayer", clip=clip, stop_at_clip_layer=-int(self.request.clip_skip)))
        return model, clip, vae

    def server_file(self, name: str, available: tuple[str, ...], what: str) -> str:
        found = find_file(name, available)
        if found is None:
            raise RequestError(f"The ComfyUI server has no {what} {name!r} (it has: {listing(available)}).")
        return found

    def encode(self, clip: list, text: str) -> list:
        return out(self.graph.add("CLIPTextEncode", text=text, clip=clip))

    # ---- conditioning ----

    def prepare_regions(self, clip: list, positive: list, negative: list) -> tuple[list, list]:
        """The base prompt everywhere, each region's prompt (and own negative) masked to its area."""
        for region in self.inputs.regions:
            mask = self.graph.load_mask(region.mask)
            region_positive = self.graph.add("ConditioningSetMask", conditioning=self.encode(clip, region.prompt),
                                             mask=mask, strength=float(region.strength), set_cond_area="default")
            positive = out(self.graph.add("ConditioningCombine", conditioning_1=positive,
                                          conditioning_2=out(region_positive)))
            if region.negative:
                region_negative = self.graph.add("ConditioningSetMask", conditioning=self.encode(clip, region.negative),
                                                 mask=mask, strength=float(region.strength), set_cond_area="default")
                negative = out(self.graph.add("ConditioningCombine", conditioning_1=negative,
                                              conditioning_2=out(region_negative)))
        return positive, negative

    # ---- latents ----

    def prepare_latent(self, vae: list) -> list:
        if self.inputs.init_image is None:
            return out(self.graph.add("EmptyLatentImage", width=self.inputs.width, height=self.inputs.height,
                                      batch_size=1))
        latent = out(self.graph.add("VAEEncode", pixels=self.graph.load_image(self.inputs.init_image), vae=vae))
        if self.inputs.noise_mask is None:
            return latent
        mask = self.graph.load_mask(self.inputs.noise_mask)
        if self.inputs.zero_masked_latents:
            empty = self.graph.add("EmptyLatentImage", width=self.inputs.width, height=self.inputs.height, batch_size=1)
            latent = out(self.graph.add("LatentCompositeMasked", destination=latent, source=out(empty), x=0, y=0,
                                        resize_source=False, mask=mask))
        return out(self.graph.add("SetLatentNoiseMask", samples=latent, mask=mask))

    def sample(self, model, positive, negative, latent, start: int, end: int, *, add_noise: bool,
               leftover_noise: bool) -> list:
        node = self.graph.add(
            "KSamplerAdvanced", model=model, add_noise="enable" if add_noise else "disable", noise_seed=self.seed,
            steps=int(self.request.steps), cfg=float(self.request.cfg), sampler_name=self.sampler_name,
            scheduler=self.scheduler, positive=positive, negative=negative, latent_image=latent,
            start_at_step=int(start), end_at_step=int(end),
            return_with_leftover_noise="enable" if leftover_noise else "disable",
        )
        self.sampler_steps[node] = max(int(end) - int(start), 0)
        self.sampler_order.append(node)
        return out(node)

    # ---- composite: background and pieces on their own, pasted, then finished together ----

    def composite_split(self) -> int:
        """The step at which the pieces are pasted: `composite_step` of the run, at least one step each side
        where the run has two or more."""
        start, steps = self.inputs.start_step, int(self.request.steps)
        run = max(steps - start, 1)
        solo = min(max(round(self.inputs.composite_step * run), 1), run)
        return start + solo

    def prepare_composite(self, model, clip, vae, positive, negative, latent) -> list:
        split = self.composite_split()
        start = self.inputs.start_step
        background = self.sample(model, positive, negative, latent, start, split, add_noise=True, leftover_noise=True)
        for piece in self.inputs.pieces:
            piece_latent = latent
            if piece.image is not None:
                piece_latent = out(self.graph.add("VAEEncode", pixels=self.graph.load_image(piece.image), vae=vae))
            piece_negative = self.encode(clip, piece.negative) if piece.negative else negative
            solo = self.sample(model, self.encode(clip, piece.prompt), piece_negative, piece_latent, start, split,
                               add_noise=True, leftover_noise=True)
            background = out(self.graph.add("LatentCompositeMasked", destination=background, source=solo, x=0, y=0,
                                            resize_source=False, mask=self.graph.load_mask(piece.mask)))
        return background


def build_graph(request: GenerationRequest, inputs: GraphInputs, server: ServerModels, *, seed: int,
                sampler: str) -> GraphPlan:
    """The API graph for one image of `request` (batch items are one graph each, seed + index)."""
    missing = [node for node in REQUIRED_NODES if server.nodes and node not in server.nodes]
    if inputs.strength_map is not None and server.nodes and "DifferentialDiffusion" not in server.nodes:
        missing.append("DifferentialDiffusion")
    if missing:
        raise RequestError(f"The ComfyUI server lacks the core node(s) {', '.join(missing)}; update ComfyUI.")
    if inputs.width % 8 or inputs.height % 8 or not math.isfinite(request.cfg):
        raise RequestError(f"The generation size {inputs.width}x{inputs.height} is not a multiple of 8 pixels.")
    return GraphBuilder(request, inputs, server, seed=seed, sampler=sampler).build()
