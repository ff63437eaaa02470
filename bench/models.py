"""The benchmark's models: random-weight SD1.5- and SDXL-shaped pipelines of a middle size.

They keep the real layer structure of the bundled configs (resources/configs): four down/up blocks
with cross-attention at three levels for SD1.5, SDXL's three levels with `text_time` embedding,
two text encoders and several transformer layers per block, the same attention head layout
(SD1.5: 8 heads per layer; SDXL: 64 channels per head), the 8x VAE with four blocks. Only the
widths (and SDXL's deepest transformer stack) are reduced, so a 256x256 step takes a fraction of a
second on a CPU while costing what the full model costs in *proportion*: convolutions, self- and
cross-attention keep their share, which is what the ratios measure.

Also here: the stock diffusers pipelines on the same components (the reference the loop is
compared with), the duck-typed model manager the engine runs them through, and writers of the
same model as a single-file checkpoint and as a diffusers folder (for the load-time case).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

from inference.components import SDModel

FAMILIES = ("sd15", "sdxl")
MID_NAMES = {"sd15": "bench:mid-sd15", "sdxl": "bench:mid-sdxl"}

# Overrides of the bundled (full-size) configs. Everything not named here stays as the real model has it.
MID_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "sd15": {
        # real: (320, 640, 1280, 1280), 768-wide text; heads stay 8 per attention layer
        "unet": {"block_out_channels": [64, 128, 256, 256], "cross_attention_dim": 256},
        "vae": {"block_out_channels": [32, 64, 128, 128]},
        # real: 768 wide, 12 heads of 64 channels, 12 layers (kept: clip_skip counts layers)
        "text_encoder": {"hidden_size": 256, "intermediate_size": 1024, "num_attention_heads": 4,
                         "projection_dim": 256},
    },
    "sdxl": {
        # real: (320, 640, 1280), heads (5, 10, 20) of 64 channels, transformer layers (1, 2, 10),
        # 2048-wide text (768 + 1280), 256-wide time embedding, pooled 1280
        "unet": {
            "block_out_channels": [64, 128, 256],
            "attention_head_dim": [1, 2, 4],
            "transformer_layers_per_block": [1, 2, 4],
            "cross_attention_dim": 256 + 384,
            "addition_time_embed_dim": 64,
            "projection_class_embeddings_input_dim": 6 * 64 + 384,
        },
        "vae": {"block_out_channels": [32, 64, 128, 128]},
        "text_encoder": {"hidden_size": 256, "intermediate_size": 1024, "num_attention_heads": 4,
                         "projection_dim": 256},
        # wider than encoder 1, as 1280 is wider than 768: diffusers tells SDXL's encoders apart by width
        "text_encoder_2": {"hidden_size": 384, "intermediate_size": 1536, "num_attention_heads": 6,
                           "num_hidden_layers": 16, "projection_dim": 384},
    },
}

DIFFUSERS_COMPONENTS = ("unet", "vae")


def read_bundled_config(family: str, component: str) -> dict:
    from inference.models import bundled_config_root

    folder = bundled_config_root() / family / component
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return json.loads((folder / name).read_text(encoding="utf-8"))


def mid_config(family: str, component: str) -> dict:
    """The bundled config of `component` with the middle-size overrides applied."""
    config = read_bundled_config(family, component)
    config.update(copy.deepcopy(MID_OVERRIDES[family].get(component, {})))
    return config


def components_of(family: str) -> tuple[str, ...]:
    return ("unet", "vae", "text_encoder") + (("text_encoder_2",) if family == "sdxl" else ())


def build_mid_model(family: str, seed: int = 0, *, device: str = "cpu", dtype=None) -> SDModel:
    """A deterministic random-weight model of the family at the middle size, in eval mode."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from inference.models import bundled_config_root, load_clip_tokenizer

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    dtype = dtype or torch.float32
    parts: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts["unet"] = UNet2DConditionModel.from_config(mid_config(family, "unet"))
        parts["vae"] = AutoencoderKL.from_config(mid_config(family, "vae"))
        parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(**clip_config(mid_config(family, "text_encoder"))))
        if family == "sdxl":
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig(**clip_config(mid_config(family, "text_encoder_2")))
            )
    for module in parts.values():
        module.eval().requires_grad_(False).to(device=device, dtype=dtype)
    config_folder = bundled_config_root() / family
    return SDModel(
        name=MID_NAMES[family],
        family=family,
        unet=parts["unet"],
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=load_clip_tokenizer(config_folder / "tokenizer"),
        scheduler_config=read_bundled_config(family, "scheduler"),
        text_encoder_2=parts.get("text_encoder_2"),
        tokenizer_2=load_clip_tokenizer(config_folder / "tokenizer_2") if family == "sdxl" else None,
        model_hash=f"mid{family}{seed}",
        builtin=True,
        device=device,
        dtype=dtype,
        extra={"seed": seed},
    )


def build_full_model(family: str, device: str, dtype):
    """The full-size architecture (the bundled configs) with random weights, made directly on the device
    (no CPU init): bench.gpu on a GPU, bench.cpu's full-size SD1.5 on a CPU."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from inference.models import bundled_config_root, load_clip_tokenizer

    parts = {}
    with torch.device(device), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        parts["unet"] = UNet2DConditionModel.from_config(read_bundled_config(family, "unet"))
        parts["vae"] = AutoencoderKL.from_config(read_bundled_config(family, "vae"))
        parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(**clip_config(read_bundled_config(family, "text_encoder"))))
        if family == "sdxl":
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig(**clip_config(read_bundled_config(family, "text_encoder_2")))
            )
    for module in parts.values():
        module.eval().requires_grad_(False).to(dtype=dtype)
    folder = bundled_config_root() / family
    return SDModel(
        name=MID_NAMES[family].replace("mid", "full"), family=family, unet=parts["unet"], vae=parts["vae"],
        text_encoder=parts["text_encoder"], tokenizer=load_clip_tokenizer(folder / "tokenizer"),
        scheduler_config=read_bundled_config(family, "scheduler"), text_encoder_2=parts.get("text_encoder_2"),
        tokenizer_2=load_clip_tokenizer(folder / "tokenizer_2") if family == "sdxl" else None,
        model_hash=f"full{family}", builtin=True, device=device, dtype=dtype,
    )


def build_bench_model(family: str, model_size: str = "mid", seed: int = 0) -> SDModel:
    """The middle-size model, or inference.tiny's (seconds-long smoke runs of the harness itself)."""
    if model_size == "tiny":
        from inference.tiny import build_tiny

        return build_tiny(family, seed=seed)
    if model_size != "mid":
        raise ValueError(f"unknown model size {model_size!r}")
    return build_mid_model(family, seed)


def clip_config(config: dict) -> dict:
    """A transformers config dict without the bookkeeping keys that the constructor does not take."""
    return {key: value for key, value in config.items() if key not in ("architectures", "_name_or_path")}


# ---- the engine's model manager ------------------------------------------------------------------------


class BenchModels:
    """Duck-typed like inference.models.ModelManager: serves already-built models by name."""

    def __init__(self, models: dict[str, SDModel] | None = None, *, taesd: Path | None = None):
        self.models = dict(models or {})
        self.taesd = taesd
        self.loads = 0

    def add(self, model: SDModel) -> SDModel:
        self.models[model.name] = model
        return model

    def load(self, name_or_path: str, *, vae: str | None = None) -> SDModel:
        self.loads += 1
        try:
            return self.models[name_or_path]
        except KeyError:
            raise KeyError(f"the benchmark has no model {name_or_path!r}") from None

    def embeddings(self, family: str | None = None) -> dict[str, Path]:
        return {}

    def taesd_decoder(self, family: str) -> Path | None:
        return self.taesd

    def lora_path(self, name: str) -> Path:
        raise KeyError(f"the benchmark has no LoRA {name!r}")


# ---- the stock diffusers pipelines on the same components ---------------------------------------------


def stock_pipeline(model: SDModel, sampler: str = "Euler"):
    """StableDiffusion(XL)Pipeline over the model's own modules, with the sampler built as the loop does."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from inference.schedulers import build_scheduler

    scheduler = build_scheduler(sampler, model.scheduler_config)
    if model.family == "sdxl":
        pipeline = StableDiffusionXLPipeline(
            vae=model.vae, text_encoder=model.text_encoder, text_encoder_2=model.text_encoder_2,
            tokenizer=model.tokenizer, tokenizer_2=model.tokenizer_2, unet=model.unet, scheduler=scheduler,
            add_watermarker=False,
        )
    else:
        pipeline = StableDiffusionPipeline(
            vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def run_stock(pipeline, *, prompt: str, negative: str, width: int, height: int, steps: int, cfg: float,
              seed: int, callback=None):
    """One image from the stock pipeline, as HxWx3 uint8 (the same output the engine gives)."""
    import numpy as np
    import torch

    kwargs = {}
    if callback is not None:
        kwargs["callback_on_step_end"] = callback
    images = pipeline(
        prompt=prompt, negative_prompt=negative, width=width, height=height, num_inference_steps=steps,
        guidance_scale=cfg, generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **kwargs,
    ).images
    return np.clip(np.rint(images[0] * 255.0), 0, 255).astype(np.uint8)


# ---- the same model on disk: a single-file checkpoint and a diffusers folder ---------------------------


def write_config_root(model: SDModel, destination: Path) -> Path:
    """A copy of the bundled config folders whose `family` folder describes this model's shapes: what
    the single-file loader needs to rebuild the middle-size architecture."""
    from inference.models import bundled_config_root

    shutil.copytree(bundled_config_root(), destination)
    folder = destination / model.family
    for name in components_of(model.family):
        (folder / name / "config.json").write_text(json.dumps(component_config(model, name), indent=2))
    return destination


def component_config(model: SDModel, name: str) -> dict:
    module = getattr(model, name)
    if name in DIFFUSERS_COMPONENTS:
        return {key: value for key, value in dict(module.config).items() if not key.startswith("_use_default")}
    return module.config.to_dict()


def write_single_file(model: SDModel, path: Path) -> Path:
    """The model as an original-layout (A1111/ComfyUI) .safetensors checkpoint."""
    from tests.inference.ckpt_helpers import write_original_checkpoint

    components = {name: getattr(model, name).state_dict() for name in components_of(model.family)}
    write_original_checkpoint(path, model.family, dict(model.unet.config), dict(model.vae.config), components)
    return path


def write_diffusers_folder(model: SDModel, folder: Path) -> Path:
    """The model as a diffusers folder (save_pretrained of each component + model_index.json)."""
    from inference.models import bundled_config_root

    folder.mkdir(parents=True, exist_ok=True)
    for name in components_of(model.family):
        getattr(model, name).save_pretrained(str(folder / name), safe_serialization=True)
    bundled = bundled_config_root() / model.family
    for name in ("scheduler", "tokenizer", "tokenizer_2"):
        if (bundled / name).is_dir():
            shutil.copytree(bundled / name, folder / name)
    shutil.copy(bundled / "model_index.json", folder / "model_index.json")
    return folder
