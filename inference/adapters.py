"""LoRAs and textual-inversion embeddings on a loaded SDModel.

LoRA files in the kohya-ss / A1111 layout (lora_unet_* / lora_te*_* with lora_down, lora_up, alpha)
go through diffusers' own conversion and become peft adapters on the UNet and text encoder(s).
Each file is loaded once per model (its adapter name is remembered in `model.extra`), and a
generation only switches which adapters are active and how strongly, which is cheap.

Embeddings (A1111 .pt / .safetensors, diffusers learned_embeds, SDXL clip_l + clip_g) become new
tokens in the tokenizer(s) and new rows of the text encoder's token embedding. A name with
several vectors becomes several tokens; `expand_embedding_names` spells them out in a prompt.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from inference.api import ModelError
from inference.components import SDModel
from inference.lycoris import lycoris_as_lora, lycoris_kind

log = logging.getLogger(__name__)

LORA_ADAPTERS_KEY = "lora_adapters"  # model.extra: {(path, size, mtime): adapter name}
ACTIVE_LORAS_KEY = "active_loras"  # model.extra: {path: weight} as last applied
EMBEDDINGS_KEY = "embeddings"  # model.extra: {name: {"path": ..., "tokens": [...]}}
MAX_EMBEDDING_VECTORS = 75  # one CLIP window; more than that cannot be a real embedding


# ---- LoRA -----------------------------------------------------------------------------------------------------


def apply_loras(model: SDModel, loras: list[tuple]) -> None:
    """Make exactly `loras` active with their weights; an empty list turns every LoRA off.

    Each item is (path, weight) or (path, text-encoder weight, UNet weight), as A1111's
    `<lora:name:te:unet>`. Weight 0 leaves the output exactly as without the LoRA. The same file
    listed twice adds up.
    """
    adapters: dict[tuple, str] = model.extra.setdefault(LORA_ADAPTERS_KEY, {})
    wanted: dict[str, tuple[float, float]] = {}
    active: dict[str, float] = {}
    pipeline = None
    for path, te_weight, unet_weight in (_weights_of(item) for item in loras):
        key = file_key(path)
        if key not in adapters:
            pipeline = pipeline or _adapter_pipeline(model)
            adapters[key] = _load_lora(pipeline, model, path, len(adapters))
        te_sum, unet_sum = wanted.get(adapters[key], (0.0, 0.0))
        wanted[adapters[key]] = (te_sum + te_weight, unet_sum + unet_weight)
        active[str(path)] = active.get(str(path), 0.0) + unet_weight
    if not adapters:
        return  # nothing was ever loaded: the modules are plain, nothing to switch off
    pipeline = pipeline or _adapter_pipeline(model)
    _activate(pipeline, model, wanted)
    model.extra[ACTIVE_LORAS_KEY] = active


def _weights_of(item: tuple) -> tuple[Path, float, float]:
    path, weight, *unet = item
    return Path(path), float(weight), float(unet[0]) if unet else float(weight)


def file_key(path: Path) -> tuple:
    try:
        stat = path.stat()
    except OSError as error:
        raise ModelError(f"{path}: the LoRA file cannot be read ({error.strerror or error}).") from error
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _adapter_pipeline(model: SDModel):
    """A throwaway diffusers pipeline around the model's own modules (no copies) for its LoRA methods."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = EulerDiscreteScheduler.from_config(model.scheduler_config)
    with quiet_loading():
        if model.family == "sdxl":
            return StableDiffusionXLPipeline(
                vae=model.vae, text_encoder=model.text_encoder, text_encoder_2=model.text_encoder_2,
                tokenizer=model.tokenizer, tokenizer_2=model.tokenizer_2, unet=model.unet, scheduler=scheduler,
            )
        return StableDiffusionPipeline(
            vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer, unet=model.unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )


def read_lora_file(path: Path) -> dict[str, Any]:
    """The tensors of a LoRA file (.safetensors, or a weights-only pickle)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        from inference.safetensors_header import read_safetensors_header

        read_safetensors_header(path)  # a clear error for truncated or foreign files first
        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error types
            raise ModelError(f"{path}: the LoRA weights cannot be read ({_first_line(error)}).") from error
    from inference.models.weights import load_pickled_weights

    return load_pickled_weights(path)


def _load_lora(pipeline, model: SDModel, path: Path, index: int) -> str:
    state = read_lora_file(path)
    if lycoris_kind(state):
        state = lycoris_as_lora(state, str(path), conv_kernels(model))
    if not any(("lora_down" in key or "lora_A" in key or "lora.down" in key) for key in state):
        raise ModelError(f"{path}: is not a LoRA (no lora_down / lora_A / LoHa / LoKr weights in it).")
    fits = lora_family(state)
    if fits is not None and fits != model.family:
        raise ModelError(f"{path}: is {_article(fits)} {family_name(fits)} LoRA; the model is "
                         f"{family_name(model.family)}.")
    adapter_name = f"lora{index}_" + re.sub(r"[^0-9A-Za-z_]", "_", path.stem)[:40]
    try:
        with quiet_loading(), warnings.catch_warnings():
            # peft warns that a second adapter joins the first: several adapters are the point here.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            pipeline.load_lora_weights(state, adapter_name=adapter_name)
    except Exception as error:  # peft/diffusers raise many types when layers or shapes do not match
        with contextlib.suppress(Exception):
            pipeline.delete_adapters(adapter_name)
        log.debug("LoRA %s did not load", path, exc_info=True)  # the pages of size mismatches, for -v
        raise ModelError(f"{path}: this LoRA does not fit the {family_name(model.family)} model "
                         f"({_mismatch_summary(error)}).") from error
    if not any(adapter_name in names for names in pipeline.get_list_adapters().values()):
        raise ModelError(f"{path}: none of this LoRA's layers exist in the {family_name(model.family)} model.")
    return adapter_name


FAMILY_NAMES = {"sd15": "SD1.5", "sd2": "SD2", "sdxl": "SDXL", "flux": "FLUX", "sd3": "SD3"}
# The width of the text a UNet's cross-attention reads: what a LoRA's attn2 to_k/to_v down weights take.
_CONTEXT_WIDTHS = {768: "sd15", 1024: "sd2", 2048: "sdxl"}


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


def _article(family: str) -> str:
    return "an" if family_name(family)[:1] in "AEHILMNORSX" else "a"


def lora_family(state: Mapping[str, Any]) -> str | None:
    """The model family a LoRA was trained for, from its key layout and widths (None: cannot tell)."""
    keys = list(state)
    if any(marker in key for key in keys for marker in ("double_blocks", "single_blocks",
                                                       "single_transformer_blocks")):
        return "flux"
    for key in keys:  # the cross-attention width says it best where the file has those layers
        if ("attn2" in key and ("to_k" in key or "to_v" in key)
                and ("lora_down" in key or "lora_A" in key or "lora.down" in key)):
            shape = getattr(state[key], "shape", ())
            if len(shape) == 2 and int(shape[1]) in _CONTEXT_WIDTHS:
                return _CONTEXT_WIDTHS[int(shape[1])]
    if any(key.startswith(("lora_te2_", "lora_te1_", "text_encoder_2.", "lora_unet_input_blocks",
                           "lora_unet_middle_block", "lora_unet_output_blocks")) for key in keys):
        return "sdxl"
    if any(key.startswith("lora_te_") for key in keys):
        return "sd15"  # one text encoder: SD1.x/SD2 (their widths told them apart above when present)
    return None


def _mismatch_summary(error: BaseException) -> str:
    text = str(error)
    if "size mismatch" in text:
        return f"{text.count('size mismatch')} of its layers have other sizes than the model's"
    return _first_line(error).rstrip(":")


def conv_kernels(model: SDModel) -> dict[str, tuple[int, int, int]]:
    """kohya module name -> (in_channels, kh, kw) of the UNet's convolutions (diffusers names, as SD1.x
    LoRAs use), so a LoHa for a convolution can be shaped as one."""
    import torch

    kernels = {}
    for name, module in model.unet.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            kernels["lora_unet_" + name.replace(".", "_")] = (module.in_channels, *module.kernel_size)
    return kernels


def _activate(pipeline, model: SDModel, wanted: Mapping[str, tuple[float, float]]) -> None:
    """Per component, only the adapters that component has (a LoRA may not touch the text encoder);
    the UNet takes each adapter's UNet weight, the text encoders its text-encoder weight."""
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    present = pipeline.get_list_adapters()  # {"unet": [...], "text_encoder": [...], ...}
    for component, component_adapters in present.items():
        module = getattr(model, component)
        names = [name for name in wanted if name in component_adapters]
        weights = [wanted[name][1 if component == "unet" else 0] for name in names]
        if component == "unet":
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


def active_loras(model: SDModel) -> dict[str, float]:
    """LoRA file -> weight of what `apply_loras` last made active (for the generation record)."""
    return dict(model.extra.get(ACTIVE_LORAS_KEY, {}))


# ---- embeddings ------------------------------------------------------------------------------------------------


def read_embedding_file(path: Path) -> dict[str, Any]:
    """{"clip_l": [n, d], optional "clip_g": [n, d]} from any of the common embedding formats."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        from inference.safetensors_header import read_safetensors_header

        read_safetensors_header(path)
        try:
            raw: Mapping[str, Any] = load_file(str(path))
        except Exception as error:  # safetensors raises its own error types
            raise ModelError(f"{path}: the embedding cannot be read ({_first_line(error)}).") from error
    else:
        raw = _read_pickled_embedding(path)
    if "clip_l" in raw or "clip_g" in raw:  # SDXL embeddings carry one part per text encoder
        vectors = {name: raw[name] for name in ("clip_l", "clip_g") if name in raw}
    elif "emb_params" in raw:  # A1111 .safetensors
        vectors = {"clip_l": raw["emb_params"]}
    elif isinstance(raw.get("string_to_param"), Mapping):  # A1111 .pt
        parameters = list(raw["string_to_param"].values())
        if len(parameters) != 1:
            raise ModelError(f"{path}: the embedding holds {len(parameters)} parameter sets instead of one.")
        vectors = {"clip_l": parameters[0]}
    else:
        tensors = [value for value in raw.values() if isinstance(value, torch.Tensor)]
        if len(tensors) != 1:
            raise ModelError(f"{path}: is not a textual-inversion embedding (no embedding vectors found).")
        vectors = {"clip_l": tensors[0]}  # diffusers learned_embeds: {"<token>": vectors}
    checked = {}
    for part, tensor in vectors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise ModelError(f"{path}: the embedding's {part} vectors are not floating-point tensors.")
        tensor = tensor.detach().reshape(-1, tensor.shape[-1]) if tensor.ndim else tensor
        if tensor.ndim != 2 or not 1 <= tensor.shape[0] <= MAX_EMBEDDING_VECTORS:
            raise ModelError(f"{path}: the embedding's {part} vectors have an unusable shape {tuple(tensor.shape)}.")
        checked[part] = tensor
    return checked


def _read_pickled_embedding(path: Path) -> Mapping[str, Any]:
    from inference.models.weights import load_weights_only

    raw = load_weights_only(path, "an embedding")
    if not isinstance(raw, Mapping):
        raise ModelError(f"{path}: is not a textual-inversion embedding (no dictionary inside).")
    return raw


def embedding_tokens(name: str, count: int) -> list[str]:
    """The tokens one embedding occupies: the name itself, then name_1, name_2, ..."""
    return [name] + [f"{name}_{index}" for index in range(1, count)]


def load_embeddings(model: SDModel, files: dict[str, Path]) -> None:
    """Teach the tokenizer(s) and text encoder(s) the embeddings by name; loading again changes nothing."""
    import torch

    loaded: dict[str, dict] = model.extra.setdefault(EMBEDDINGS_KEY, {})
    for name, path in files.items():
        path = Path(path)
        name = name.strip()
        if not name:
            raise ModelError(f"{path}: the embedding needs a name to be used in prompts.")
        vectors = read_embedding_file(path)
        targets = [(model.tokenizer, model.text_encoder, "clip_l")]
        if model.family == "sdxl":
            targets.append((model.tokenizer_2, model.text_encoder_2, "clip_g"))
        for _, _, part in targets:
            if part not in vectors:
                kind = "SD1.5" if part == "clip_g" else "SDXL"
                raise ModelError(f"{path}: this embedding has no {part} vectors (it is for {kind} models).")
        counts = {vectors[part].shape[0] for _, _, part in targets}
        if len(counts) != 1:
            raise ModelError(f"{path}: the embedding's clip_l and clip_g parts have different lengths.")
        tokens = embedding_tokens(name, counts.pop())
        for tokenizer, encoder, part in targets:
            table = encoder.get_input_embeddings()
            if vectors[part].shape[1] != table.weight.shape[1]:
                raise ModelError(
                    f"{path}: the embedding's {part} vectors are {vectors[part].shape[1]}-wide but this "
                    f"{model.family} model's text encoder needs {table.weight.shape[1]}."
                )
            tokenizer.add_tokens([token for token in tokens if token not in tokenizer.get_vocab()])
            if len(tokenizer) > table.weight.shape[0]:
                encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
                table = encoder.get_input_embeddings()
            ids = tokenizer.convert_tokens_to_ids(tokens)
            with torch.no_grad():
                table.weight[ids] = vectors[part].to(table.weight.device, table.weight.dtype)
        loaded[name] = {"path": str(path), "tokens": tokens}


def expand_embedding_names(prompt: str, model: SDModel) -> str:
    """Spell out multi-vector embeddings ("style" -> "style style_1 style_2") so every vector is used."""
    for name, record in model.extra.get(EMBEDDINGS_KEY, {}).items():
        if len(record["tokens"]) > 1:
            pattern = r"(?<![\w-])" + re.escape(name) + r"(?![\w-])"
            prompt = re.sub(pattern, " ".join(record["tokens"]), prompt, flags=re.IGNORECASE)
    return prompt


# ---- helpers ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """diffusers/transformers report every LoRA-wrapped layer as a 'missing' key; users need none of that."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])
        if bars:
            transformers_logging.enable_progress_bar()


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."
