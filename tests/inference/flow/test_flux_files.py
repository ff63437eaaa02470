"""FLUX.1 files as users have them: real key names and widths, reduced depth, loaded offline.

The session fixture writes, once, a ComfyUI models folder with
- diffusion_models/flux1-dev.safetensors: BFL layout, 3072 wide (24 heads x 128), 1 double +
  1 single block, bf16;
- unet/flux1-fill-dev-fp8_e4m3fn.safetensors: Fill (384 input channels) under
  `model.diffusion_model.`, float8_e4m3fn;
- text_encoders/clip_l.safetensors (CLIP-L, 768 wide, 1 layer, fp16) and
  text_encoders/t5xxl_fp8_e4m3fn.safetensors (T5-XXL, 4096 wide, d_ff 10240, 1 block, fp8);
- vae/ae.safetensors: the full-shape FLUX autoencoder in its BFL (LDM) names, bf16;
- checkpoints/flux1-schnell-fp8.safetensors: an all-in-one schnell file (transformer fp8, CLIP-L
  fp16, T5 fp8, VAE bf16 under ComfyUI's checkpoint prefixes);
- diffusers/FLUX.1-dev/: a diffusers folder (transformer bf16, encoders, VAE, tokenizers).
About 5.0 GB on disk (written in ~50 s here). Every loaded tensor is compared with what was written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from inference.api import ModelError, UnsupportedModelError
from inference.flow.files import (
    CompanionFile,
    choose_companions,
    classify_text_encoder,
    detect_flux,
    find_flux_files,
    is_flux_vae,
    load_t5_tokenizer,
    shipped_t5_tokenizer_folder,
)
from inference.flow.loading import load_flux_all_in_one, load_flux_diffusers_folder, load_flux_split
from inference.models import bundled_config_root, read_weight_shapes, shipped_tokenizer_folder
from tests.inference.flow import flux_files as ff

BF16, FP8, FP16 = torch.bfloat16, torch.float8_e4m3fn, torch.float16


@dataclass
class Library:
    root: Path
    sources: dict[str, ff.Seeded]  # "dev" | "fill" | "schnell" | "clip_l" | "t5" | "vae"

    @property
    def models(self) -> Path:
        return self.root / "models"


@pytest.fixture(scope="session")
def library(tmp_path_factory) -> Library:
    root = tmp_path_factory.mktemp("flux-library")
    models = root / "models"
    sources = {
        "dev": ff.Seeded("dev", ff.transformer_shapes("flux-dev")),
        "fill": ff.Seeded("fill", ff.transformer_shapes("flux-fill")),
        "schnell": ff.Seeded("schnell", ff.transformer_shapes("flux-schnell")),
        "clip_l": ff.Seeded("clip_l", ff.clip_l_shapes(layers=1)),
        "t5": ff.Seeded("t5", ff.t5_shapes(blocks=1)),
        "vae": ff.Seeded("vae", ff.vae_shapes()),
    }
    ff.write_streamed(models / "diffusion_models" / "flux1-dev.safetensors",
                      ff.bfl_transformer_tensors(sources["dev"], BF16))
    ff.write_streamed(models / "unet" / "flux1-fill-dev-fp8_e4m3fn.safetensors",
                      ff.bfl_transformer_tensors(sources["fill"], FP8, prefix="model.diffusion_model."))
    ff.write_streamed(models / "text_encoders" / "clip_l.safetensors", ff.clip_l_tensors(sources["clip_l"], FP16))
    ff.write_streamed(models / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors", ff.t5_tensors(sources["t5"], FP8))
    ff.write_streamed(models / "vae" / "ae.safetensors", ff.bfl_vae_tensors(sources["vae"], BF16))
    ff.write_streamed(
        models / "checkpoints" / "flux1-schnell-fp8.safetensors",
        ff.bfl_transformer_tensors(sources["schnell"], FP8, prefix="model.diffusion_model.")
        + ff.clip_l_tensors(sources["clip_l"], FP16, prefix="text_encoders.clip_l.transformer.")
        + ff.t5_tensors(sources["t5"], FP8, prefix="text_encoders.t5xxl.transformer.")
        + ff.bfl_vae_tensors(sources["vae"], BF16, prefix="vae."),
    )
    _write_diffusers_folder(models / "diffusers" / "FLUX.1-dev", sources)
    return Library(root, sources)


def _write_diffusers_folder(folder: Path, sources: dict[str, ff.Seeded]) -> None:
    """What `FluxPipeline.save_pretrained` writes: configs, one weights file per model, tokenizers."""
    configs = bundled_config_root() / "flux-dev"
    shutil.copytree(configs, folder, ignore=shutil.ignore_patterns("tokenizer*"))
    for component, depth_key, depth in (("transformer", "num_layers", 1), ("text_encoder", "num_hidden_layers", 1),
                                        ("text_encoder_2", "num_layers", 1)):
        config_file = folder / component / "config.json"
        config = json.loads(config_file.read_text())
        config[depth_key] = depth
        if component == "transformer":
            config["num_single_layers"] = 1
        config_file.write_text(json.dumps(config))
    ff.write_streamed(folder / "transformer" / "diffusion_pytorch_model.safetensors",
                      ff.diffusers_tensors(sources["dev"], BF16))
    ff.write_streamed(folder / "vae" / "diffusion_pytorch_model.safetensors", ff.diffusers_tensors(sources["vae"], BF16))
    ff.write_streamed(folder / "text_encoder" / "model.safetensors",
                      ff.diffusers_tensors(sources["clip_l"], FP16, rename=lambda key: "text_model." + key))
    ff.write_streamed(folder / "text_encoder_2" / "model.safetensors", ff.t5_tensors(sources["t5"], BF16))
    shutil.copytree(shipped_tokenizer_folder(), folder / "tokenizer")
    shutil.copytree(shipped_t5_tokenizer_folder(), folder / "tokenizer_2")


def assert_equal_to_written(module, source: ff.Seeded, file_dtype: torch.dtype):
    """Every tensor of `module` is the one written, cast to the dtype it was loaded in.

    Same dtype: the same bytes. Upcast (fp8 -> bf16/fp32, bf16 -> fp32): exact, so the same values.
    """
    state = module.state_dict()
    assert set(state) == set(source.shapes)
    for key in source.shapes:
        loaded, written = state[key], ff.stored(source, ff.TIED.get(key, key), file_dtype)
        if loaded.dtype == written.dtype:
            assert torch.equal(loaded.contiguous().view(torch.uint8), written.view(torch.uint8)), key
        else:
            assert torch.equal(loaded, written.to(loaded.dtype)), key


# ---- tokenizer, detection, companions (headers only) ------------------------------------------------


def test_t5_tokenizer_gives_the_vocabulary_ids_of_the_pieces():
    tokenizer = load_t5_tokenizer()
    vocab = json.loads((shipped_t5_tokenizer_folder() / "tokenizer.json").read_text(encoding="utf-8"))
    pieces = [entry[0] for entry in vocab["model"]["vocab"]]
    ids = tokenizer("a photo of a cat").input_ids
    # SentencePiece splits "a" at the start of a word into "▁" + "a"; the rest are whole-word pieces.
    assert [pieces[i] for i in ids] == ["▁", "a", "▁photo", "▁of", "▁", "a", "▁cat", "</s>"]
    assert ids[-1] == 1 and pieces[1] == "</s>"
    assert len(tokenizer) == 32100


def _bfl_shapes(source: ff.Seeded, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {entry.key: entry.shape for entry in ff.bfl_transformer_tensors(source, BF16, prefix)}


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_detection_tells_dev_schnell_fill_from_bfl_headers(prefix):
    for family in ("flux-dev", "flux-schnell", "flux-fill"):
        shapes = _bfl_shapes(ff.Seeded(family, ff.transformer_shapes(family)), prefix)
        assert detect_flux(shapes, name="my-finetune.safetensors") == family
    dev = _bfl_shapes(ff.Seeded("dev", ff.transformer_shapes("flux-dev")), prefix)
    assert detect_flux(dev, name="flux1-kontext-dev.safetensors") == "flux-kontext"
    assert detect_flux(dev, metadata={"modelspec.title": "FLUX.1 Kontext [dev]"}) == "flux-kontext"
    depth = dict(dev, **{prefix + "img_in.weight": (3072, 128)})
    assert detect_flux(depth) is None  # FLUX.1 Depth: not one of ours


def test_detection_reads_the_diffusers_layout_too():
    for family in ("flux-dev", "flux-schnell", "flux-fill"):
        shapes = ff.transformer_shapes(family)
        assert detect_flux(shapes) == family
        assert detect_flux({"transformer." + key: shape for key, shape in shapes.items()}) == family
    assert detect_flux(ff.vae_shapes()) is None
    assert detect_flux({"double_blocks.0.img_attn.norm.key_norm.scale": (128,)}) is None


def test_text_encoder_and_vae_files_are_classified_by_their_tensors():
    clip_l = {"text_model." + key: shape for key, shape in ff.clip_l_shapes(1).items()}
    assert classify_text_encoder(clip_l) == "clip-l"
    clip_g = dict(clip_l, **{"text_model.embeddings.token_embedding.weight": (49408, 1280)})
    assert classify_text_encoder(clip_g) == "clip-g"
    t5 = {e.key: e.shape for e in ff.t5_tensors(ff.Seeded("t5", ff.t5_shapes(1)), BF16)}
    assert classify_text_encoder(t5) == "t5xxl"
    qwen25 = {"model.embed_tokens.weight": (152064, 3584), "visual.blocks.0.attn.qkv.weight": (3840, 1280),
              "model.layers.0.self_attn.q_proj.weight": (3584, 3584)}
    assert classify_text_encoder(qwen25) == "qwen2.5-vl"
    qwen3 = {"model.embed_tokens.weight": (151936, 2560), "model.layers.0.self_attn.q_norm.weight": (128,)}
    assert classify_text_encoder(qwen3) == "qwen3"
    assert classify_text_encoder(ff.vae_shapes()) is None
    vae = {e.key: e.shape for e in ff.bfl_vae_tensors(ff.Seeded("vae", ff.vae_shapes()), BF16)}
    assert is_flux_vae(vae) and is_flux_vae(ff.vae_shapes())
    sd_vae = dict(vae, **{"decoder.conv_in.weight": (512, 4, 3, 3)})
    assert not is_flux_vae(sd_vae)


def _companion(name: str, kind: str, dtype: str = "BF16") -> CompanionFile:
    return CompanionFile(name, f"/models/{name}.safetensors", kind, dtype)


def test_companions_are_chosen_when_obvious_and_asked_for_otherwise():
    clip_l, ae = _companion("clip_l", "clip-l", "F16"), _companion("ae", "flux-vae")
    t5_fp16 = _companion("t5xxl_fp16", "t5xxl", "F16")
    t5_fp8 = _companion("t5xxl_fp8_e4m3fn", "t5xxl", "F8_E4M3")
    others = [_companion("clip_g", "clip-g"), _companion("qwen_2.5_vl_7b", "qwen2.5-vl")]

    choice = choose_companions([clip_l, t5_fp8, ae] + others)
    assert choice.complete and choice.chosen == {"clip_l": clip_l, "t5": t5_fp8, "vae": ae}

    choice = choose_companions([clip_l, t5_fp16, t5_fp8, ae])
    assert choice.chosen["t5"] == t5_fp16  # the same encoder twice: the higher precision

    sdxl_vae_like = _companion("flux-vae-finetune", "flux-vae")
    choice = choose_companions([clip_l, t5_fp16, ae, sdxl_vae_like])
    assert "vae" not in choice.chosen and choice.candidates["vae"] == [ae, sdxl_vae_like]
    assert not choice.complete
    choice = choose_companions([clip_l, t5_fp16, ae, sdxl_vae_like], preset={"vae": sdxl_vae_like.path})
    assert choice.complete and choice.chosen["vae"] == sdxl_vae_like

    two_fp16 = [t5_fp16, _companion("t5xxl_flan", "t5xxl", "F16")]
    choice = choose_companions([clip_l, ae] + two_fp16)
    assert choice.candidates["t5"] == two_fp16

    choice = choose_companions([ae])
    assert choice.candidates == {"clip_l": [], "t5": []}


# ---- the real-layout files ----------------------------------------------------------------------------


def test_the_folders_are_discovered_with_their_families(library):
    found = find_flux_files([library.root])
    by_name = {path.name: family for path, family in found.transformers}
    assert by_name == {"flux1-dev.safetensors": "flux-dev", "flux1-fill-dev-fp8_e4m3fn.safetensors": "flux-fill"}
    assert [(path.name, family) for path, family in found.all_in_one] == [
        ("flux1-schnell-fp8.safetensors", "flux-schnell")
    ]
    assert [(path.name, family) for path, family in found.diffusers] == [("FLUX.1-dev", "flux-dev")]
    kinds = {companion.name: (companion.kind, companion.dtype) for companion in found.companions}
    assert kinds == {"clip_l": ("clip-l", "F16"), "t5xxl_fp8_e4m3fn": ("t5xxl", "F8_E4M3"), "ae": ("flux-vae", "BF16")}
    assert found.problems == []


def _split_paths(library: Library) -> dict[str, Path]:
    choice = choose_companions(find_flux_files([library.root]).companions)
    assert choice.complete
    return {"clip_l_path": Path(choice.chosen["clip_l"].path), "t5_path": Path(choice.chosen["t5"].path),
            "vae_path": Path(choice.chosen["vae"].path)}


def test_comfyui_split_dev_bf16_loads_every_tensor_and_runs(library):
    model = load_flux_split(library.models / "diffusion_models" / "flux1-dev.safetensors",
                            **_split_paths(library), dtype=BF16)
    assert model.family == "flux-dev" and model.extra["memory_plan"].placement == "cpu"
    config = model.transformer.config
    assert (config.num_layers, config.num_single_layers, config.num_attention_heads) == (1, 1, 24)
    assert config.attention_head_dim * config.num_attention_heads == 3072 and config.guidance_embeds
    assert_equal_to_written(model.transformer, library.sources["dev"], BF16)
    assert_equal_to_written(model.text_encoder, library.sources["clip_l"], FP16)
    assert_equal_to_written(model.text_encoder_2, library.sources["t5"], FP8)
    assert model.text_encoder_2.encoder.embed_tokens.weight is model.text_encoder_2.shared.weight  # tied again
    assert_equal_to_written(model.vae, library.sources["vae"], BF16)
    assert model.scheduler_config["use_dynamic_shifting"] is True
    image = _one_step_and_decode(model)
    assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()


def _one_step_and_decode(model, size: int = 64):
    """One transformer forward on the encoded prompt, then a VAE decode (the render loop is elsewhere).

    In float32: the CPU has no fast bf16 kernels, and float32 is what a CPU run computes in.
    """
    from diffusers import FluxPipeline

    for name in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        setattr(model, name, getattr(model, name).float())
    model.dtype = torch.float32
    with torch.no_grad():
        clip_ids = model.tokenizer("a photo of a cat", padding="max_length", max_length=77,
                                   return_tensors="pt").input_ids
        pooled = model.text_encoder(clip_ids).pooler_output.to(model.dtype)
        t5_ids = model.tokenizer_2("a photo of a cat", return_tensors="pt").input_ids
        prompt = model.text_encoder_2(t5_ids).last_hidden_state.to(model.dtype)
        side = size // model.vae_scale_factor
        latents = torch.randn(1, 16, side, side, generator=torch.Generator().manual_seed(0)).to(model.dtype)
        packed = FluxPipeline._pack_latents(latents, 1, 16, side, side)
        image_ids = FluxPipeline._prepare_latent_image_ids(1, side // 2, side // 2, "cpu", model.dtype)
        text_ids = torch.zeros(prompt.shape[1], 3, dtype=model.dtype)
        guidance = torch.tensor([3.5]) if model.transformer.config.guidance_embeds else None
        velocity = model.transformer(
            hidden_states=packed, encoder_hidden_states=prompt, pooled_projections=pooled,
            timestep=torch.tensor([1.0], dtype=model.dtype), img_ids=image_ids, txt_ids=text_ids, guidance=guidance,
            return_dict=False,
        )[0]
        assert torch.isfinite(velocity).all()
        denoised = FluxPipeline._unpack_latents(packed - velocity, size, size, model.vae_scale_factor)
        config = model.vae.config
        denoised = denoised / config.scaling_factor + config.shift_factor
        return model.vae.decode(denoised.to(model.vae.dtype), return_dict=False)[0]


def test_fill_fp8_stays_in_fp8_with_layerwise_casting(library):
    """What a GPU gets (fp8 storage, bf16 compute), exercised on the CPU with fp8_storage=True."""
    model = load_flux_split(library.models / "unet" / "flux1-fill-dev-fp8_e4m3fn.safetensors",
                            **_split_paths(library), dtype=BF16, fp8_storage=True)
    assert model.family == "flux-fill" and model.inpaint
    assert model.transformer.config.in_channels == 384
    transformer = model.transformer
    assert transformer.transformer_blocks[0].attn.to_q.weight.dtype == FP8
    assert transformer.single_transformer_blocks[0].norm.linear.weight.dtype == BF16  # "norm": not cast
    assert transformer.transformer_blocks[0].attn.norm_q.weight.dtype == BF16
    assert_equal_to_written(transformer, library.sources["fill"], FP8)
    assert model.text_encoder_2.encoder.block[0].layer[1].DenseReluDense.wi_0.weight.dtype == FP8
    assert_equal_to_written(model.text_encoder_2, library.sources["t5"], FP8)
    with torch.no_grad():  # the casting hooks run the fp8 layers in bf16
        out = transformer.x_embedder(torch.ones(1, 2, 384, dtype=BF16))
    assert out.dtype == BF16 and torch.isfinite(out).all()
    assert transformer.x_embedder.weight.dtype == FP8


def test_all_in_one_schnell_fp8_is_upcast_to_float32_on_the_cpu(library):
    model = load_flux_all_in_one(library.models / "checkpoints" / "flux1-schnell-fp8.safetensors")
    assert model.family == "flux-schnell" and model.dtype == torch.float32
    assert not model.transformer.config.guidance_embeds
    assert model.scheduler_config["use_dynamic_shifting"] is False and model.scheduler_config["shift"] == 1.0
    assert model.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float32
    assert_equal_to_written(model.transformer, library.sources["schnell"], FP8)
    assert_equal_to_written(model.text_encoder, library.sources["clip_l"], FP16)
    assert_equal_to_written(model.text_encoder_2, library.sources["t5"], FP8)
    assert_equal_to_written(model.vae, library.sources["vae"], BF16)


def test_diffusers_folder_loads_every_tensor(library):
    model = load_flux_diffusers_folder(library.models / "diffusers" / "FLUX.1-dev", dtype=BF16)
    assert model.family == "flux-dev"
    assert_equal_to_written(model.transformer, library.sources["dev"], BF16)
    assert_equal_to_written(model.text_encoder, library.sources["clip_l"], FP16)
    assert_equal_to_written(model.text_encoder_2, library.sources["t5"], BF16)
    assert_equal_to_written(model.vae, library.sources["vae"], BF16)
    assert model.tokenizer_2("a cat").input_ids == [3, 9, 1712, 1]


# ---- bad files ------------------------------------------------------------------------------------------


def test_bad_files_are_one_sentence_naming_them(library, tmp_path):
    companions = _split_paths(library)
    vae = companions["vae_path"]
    with pytest.raises(ModelError, match="not a FLUX VAE"):
        load_flux_split(library.models / "diffusion_models" / "flux1-dev.safetensors",
                        **dict(companions, vae_path=companions["clip_l_path"]))
    with pytest.raises(UnsupportedModelError, match="is not a FLUX.1"):
        load_flux_split(vae, **companions)
    header_only = {key: shape for key, shape in read_weight_shapes(
        library.models / "diffusion_models" / "flux1-dev.safetensors").items()}
    small = {key: torch.zeros(1) for key in list(header_only)[:3]}
    small["double_blocks.0.img_attn.norm.key_norm.scale"] = torch.zeros(128)
    small["img_in.weight"] = torch.zeros(3072, 64)
    small["guidance_in.in_layer.weight"] = torch.zeros(3072, 256)
    small["single_blocks.0.linear2.weight"] = torch.zeros(3072, 15360)
    broken = ff.write_streamed(tmp_path / "flux-broken.safetensors",
                               [ff.FileTensor(key, tuple(value.shape), BF16, lambda dtype, v=value: v.to(dtype))
                                for key, value in small.items()])
    with pytest.raises(ModelError, match=r"flux-broken\.safetensors: the FLUX transformer lacks the tensor"):
        load_flux_split(broken, **companions)
    scaled = ff.write_streamed(tmp_path / "flux-scaled.safetensors",
                               [ff.FileTensor(key, tuple(value.shape), BF16, lambda dtype, v=value: v.to(dtype))
                                for key, value in dict(small, scaled_fp8=torch.zeros(0)).items()])
    with pytest.raises(UnsupportedModelError, match="scaled fp8"):
        load_flux_split(scaled, **companions)
    with pytest.raises(ModelError, match="no CLIP-L text encoder inside; choose a separate file"):
        load_flux_all_in_one(library.models / "diffusion_models" / "flux1-dev.safetensors")


def test_a_render_finishes_through_the_manager_and_engine_from_the_comfyui_folder(library):
    """Discovery lists the split dev file; the manager finds its CLIP-L, T5 and VAE beside it; the
    engine renders it (64 px, one step) and records the guidance."""
    import threading

    from inference.api import Failed, Finished, GenerationRequest
    from inference.engine import Engine
    from inference.models import ModelManager

    manager = ModelManager([library.root], hash_cache_file=None)
    listed = {info.name: info.family for info in manager.discover()}
    assert listed.get("flux1-dev") == "flux-dev", listed
    events: list = []
    request = GenerationRequest(model="flux1-dev", prompt="a red cube", width=64, height=64, steps=1, seed=3,
                                preview="none")
    Engine(manager).run(request, events.append, threading.Event())
    failures = [event.message for event in events if isinstance(event, Failed)]
    assert failures == []
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.images[0].shape == (64, 64, 3)
    assert finished.parameters[0]["guidance"] == 3.5 and finished.parameters[0]["family"] == "flux-dev"
