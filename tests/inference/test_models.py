"""Discovery, family detection from headers, untrusted headers, hashes, device choice and the model cache."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import struct
import weakref
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.api import ModelError, UnsupportedModelError
from inference.edit.model import BUILTIN_EDIT_MODELS
from inference.models import (
    ModelFolders,
    ModelHashes,
    ModelManager,
    choose_device,
    choose_dtype,
    detect_checkpoint_family,
    find_model_folders,
    import_extra_model_paths,
    read_weight_shapes,
)
from inference.safetensors_header import MAX_HEADER_BYTES, read_safetensors_header
from tests.inference.ckpt_helpers import write_safetensors

SD15_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
    "first_stage_model.decoder.conv_in.weight": (4, 4, 1, 1),
}
SDXL_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (640, 2048),
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
    "conditioner.embedders.1.model.positional_embedding": (77, 1280),
}
LORA_KEYS = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (320, 4),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": (),
}
VAE_KEYS = {"encoder.conv_in.weight": (4, 3, 1, 1), "decoder.conv_in.weight": (4, 4, 1, 1)}


def write_keys(path: Path, shapes: dict[str, tuple[int, ...]], **overrides: tuple[int, ...]) -> Path:
    """A small file with real tensor names: detection only ever looks at names and shapes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**shapes, **{key.replace("__", "."): value for key, value in overrides.items()}}
    return write_safetensors(path, {key: torch.zeros(shape) for key, shape in merged.items()})


def write_diffusers_folder(folder: Path, class_name: str, unet_config: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    if unet_config is not None:
        (folder / "unet").mkdir()
        (folder / "unet" / "config.json").write_text(json.dumps(unet_config))
    for part in ("text_encoder", "vae"):
        (folder / part).mkdir()
    return folder


def raw_file(path: Path, header_length: int, body: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", header_length) + body)
    return path


# ---- untrusted headers ---------------------------------------------------------------------------------------


def test_header_is_read_without_the_weights(tmp_path):
    path = write_keys(tmp_path / "m.safetensors", SD15_KEYS)
    header = read_safetensors_header(path)
    assert header.shape("model.diffusion_model.input_blocks.0.0.weight") == (320, 4, 3, 3)
    assert header.has_prefix("cond_stage_model.") and not header.has_prefix("conditioner.")


@pytest.mark.parametrize(
    ("header_length", "body", "message"),
    [
        (MAX_HEADER_BYTES + 1, b"{}", "header of 16 MiB is larger than any real model's"),
        (2**63, b"{}", "larger than any real model's"),
        (5000, b"{}", "runs past the end of the file"),
        (4, b"{]}x", "header is not JSON"),
        (2, b"[]", "not a JSON object"),
        (
            len(b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'),
            b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}1234',
            "beyond the end of the file",
        ),
        (
            len(b'{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}'),
            b'{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}12345678',
            "does not match its shape",
        ),
        (len(b'{"w":{"dtype":"F32"}}'), b'{"w":{"dtype":"F32"}}', "malformed"),
    ],
)
def test_bad_headers_are_refused_with_the_file_named(tmp_path, header_length, body, message):
    path = raw_file(tmp_path / "bad.safetensors", header_length, body)
    with pytest.raises(ModelError, match=rf"bad\.safetensors: .*{message}"):
        read_safetensors_header(path)


def test_tiny_file_is_refused(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(ModelError, match=r"short\.safetensors: too short"):
        read_safetensors_header(path)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=256))
def test_any_bytes_give_a_header_or_a_model_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "x.safetensors"
    path.write_bytes(data)
    try:
        read_safetensors_header(path)
    except ModelError as error:
        assert "x.safetensors" in str(error)


# ---- family detection -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "overrides", "family", "inpaint"),
    [
        (SD15_KEYS, {}, "sd15", False),
        (SD15_KEYS, {"model__diffusion_model__input_blocks__0__0__weight": (320, 9, 3, 3)}, "sd15", True),
        (SDXL_KEYS, {}, "sdxl", False),
        (SDXL_KEYS, {"model__diffusion_model__input_blocks__0__0__weight": (320, 9, 3, 3)}, "sdxl", True),
    ],
)
def test_family_and_inpaint_from_the_header(tmp_path, shapes, overrides, family, inpaint):
    path = write_keys(tmp_path / "m.safetensors", shapes, **overrides)
    detected = detect_checkpoint_family(path, read_weight_shapes(path))
    assert (detected.family, detected.inpaint) == (family, inpaint)


@pytest.mark.parametrize(
    ("shapes", "looks_like"),
    [
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
          "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
          "cond_stage_model.model.token_embedding.weight": (4, 1024)}, "Stable Diffusion 2.x"),
        ({"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (4,)}, "Stable Diffusion 3"),
        ({"double_blocks.0.img_attn.norm.key_norm.scale": (128,), "img_in.weight": (3072, 128)}, "FLUX.1 Depth"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
          "conditioner.embedders.0.model.text_projection": (1280, 1280)}, "an SDXL refiner"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 8, 3, 3),
          "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768)},
         "InstructPix2Pix"),
        (LORA_KEYS, "a LoRA"),
        (VAE_KEYS, "a VAE"),
        ({"emb_params": (2, 768)}, "a textual-inversion embedding"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}, "a UNet without its text encoder"),
    ],
)
def test_other_families_are_unsupported_with_what_they_look_like(tmp_path, shapes, looks_like):
    path = write_keys(tmp_path / "other.safetensors", shapes)
    with pytest.raises(UnsupportedModelError, match=rf"other\.safetensors: unsupported model family \(looks like {looks_like}"):
        detect_checkpoint_family(path, read_weight_shapes(path))


def test_pickled_checkpoint_family_comes_from_a_weights_only_read(tmp_path):
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": {key: torch.zeros(shape) for key, shape in SDXL_KEYS.items()}, "epoch": 3}, path)
    assert detect_checkpoint_family(path, read_weight_shapes(path)).family == "sdxl"


# ---- discovery ------------------------------------------------------------------------------------------------


def names_by_kind(manager: ModelManager) -> dict[str, set[str]]:
    catalog = manager.catalog
    return {
        "models": {info.name for info in catalog.models if info.kind != "builtin"},
        "loras": {info.name for info in catalog.loras},
        "vaes": {info.name for info in catalog.vaes},
        "embeddings": {info.name for info in catalog.embeddings},
        "taesd": {info.name for info in catalog.taesd},
    }


def test_builtins_are_always_there():
    manager = ModelManager(ModelFolders(), device="cpu")
    builtins = {info.name: info for info in manager.discover()}
    assert set(builtins) == {
        "builtin:tiny-sd15", "builtin:tiny-sdxl", "builtin:tiny-sd15-inpaint", "builtin:tiny-sdxl-inpaint",
        "builtin:tiny-flux-dev", "builtin:tiny-flux-schnell", "builtin:tiny-flux-fill", "builtin:tiny-zimage",
        *BUILTIN_EDIT_MODELS,
    }
    assert {name: builtins[name].family for name in BUILTIN_EDIT_MODELS} == BUILTIN_EDIT_MODELS
    assert builtins["builtin:tiny-flux-dev"].extra["guidance"] == "guidance"
    assert builtins["builtin:tiny-flux-schnell"].extra["guidance"] == "none"
    assert builtins["builtin:tiny-sd15"].extra["guidance"] == "cfg" and builtins["builtin:tiny-sd15"].extra["samplers"]
    assert builtins["builtin:tiny-flux-dev"].extra["samplers"] == []
    assert builtins["builtin:tiny-flux-fill"].family == "flux-fill"
    assert builtins["builtin:tiny-sdxl-inpaint"].family == "sdxl"
    assert builtins["builtin:tiny-sdxl-inpaint"].extra["inpaint"] is True
    assert all(info.kind == "builtin" for info in builtins.values())


def test_a1111_layout(tmp_path):
    webui = tmp_path / "stable-diffusion-webui"
    write_keys(webui / "models" / "Stable-diffusion" / "anime" / "model-a.safetensors", SD15_KEYS)
    write_keys(webui / "models" / "Stable-diffusion" / "xl.safetensors", SDXL_KEYS)
    write_keys(webui / "models" / "Lora" / "detail.safetensors", LORA_KEYS)
    write_keys(webui / "models" / "VAE" / "vae-ft-mse.safetensors", VAE_KEYS)
    write_keys(webui / "embeddings" / "neg.safetensors", {"emb_params": (2, 768)})
    write_keys(webui / "models" / "VAE-approx" / "taesd_decoder.safetensors", {"1.weight": (64, 4, 3, 3)})
    (webui / "models" / "Stable-diffusion" / "notes.txt").write_text("not a model")

    manager = ModelManager([webui], device="cpu")
    assert names_by_kind(manager) == {
        "models": {"anime/model-a", "xl"},
        "loras": {"detail"},
        "vaes": {"vae-ft-mse"},
        "embeddings": {"neg"},
        "taesd": {"taesd_decoder"},
    }
    assert manager.find("anime/model-a").family == "sd15"
    assert (manager.find("xl").family, manager.find("xl").kind) == ("sdxl", "checkpoint")
    assert manager.catalog.loras[0].family == "sd15" and manager.catalog.embeddings[0].family == "sd15"
    assert manager.catalog.taesd[0].family == "sd15"
    assert manager.catalog.problems == []


def test_comfyui_layout_with_diffusers_and_edit_folders(tmp_path):
    comfy = tmp_path / "ComfyUI"
    write_keys(comfy / "models" / "checkpoints" / "inpaint.safetensors", SD15_KEYS,
               model__diffusion_model__input_blocks__0__0__weight=(320, 9, 3, 3))
    write_keys(comfy / "models" / "loras" / "xl-lora.safetensors",
               {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768)})
    write_keys(comfy / "models" / "vae" / "sdxl_vae.safetensors", VAE_KEYS)
    write_keys(comfy / "models" / "embeddings" / "xl-emb.safetensors", {"clip_l": (1, 768), "clip_g": (1, 1280)})
    write_keys(comfy / "models" / "vae_approx" / "taesdxl_decoder.safetensors", {"1.weight": (64, 4, 3, 3)})
    diffusers = comfy / "models" / "diffusion_models"
    write_diffusers_folder(diffusers / "ip2p", "StableDiffusionInstructPix2PixPipeline", {"in_channels": 8})
    write_diffusers_folder(diffusers / "kontext", "FluxKontextPipeline")
    write_diffusers_folder(diffusers / "qwen-edit", "QwenImageEditPipeline")
    write_diffusers_folder(diffusers / "qwen-edit-plus", "QwenImageEditPlusPipeline")
    write_diffusers_folder(diffusers / "sd15-inpaint-diffusers", "StableDiffusionInpaintPipeline", {"in_channels": 9})
    write_diffusers_folder(diffusers / "flux-dev", "FluxPipeline")
    write_diffusers_folder(diffusers / "flux-schnell", "FluxPipeline")
    (diffusers / "flux-schnell" / "transformer").mkdir()
    (diffusers / "flux-schnell" / "transformer" / "config.json").write_text(json.dumps({"guidance_embeds": False}))
    write_diffusers_folder(diffusers / "sd21", "StableDiffusionPipeline", {"cross_attention_dim": 1024})
    (diffusers / "flux-transformer-only").mkdir()  # a bare component folder: not a model, not a problem
    (diffusers / "flux-transformer-only" / "config.json").write_text("{}")

    manager = ModelManager([comfy], device="cpu")
    found = {info.name: (info.family, info.kind) for info in manager.discover() if info.kind != "builtin"}
    assert found == {
        "inpaint": ("sd15", "inpaint"),
        "ip2p": ("ip2p", "edit"),
        "kontext": ("flux-kontext", "edit"),
        "qwen-edit": ("qwen-edit", "edit"),
        "qwen-edit-plus": ("qwen-edit-plus", "edit"),
        "sd15-inpaint-diffusers": ("sd15", "diffusers"),
        "flux-dev": ("flux-dev", "diffusers"),
        "flux-schnell": ("flux-schnell", "diffusers"),
    }
    assert manager.find("sd15-inpaint-diffusers").extra["inpaint"] is True
    catalog = manager.catalog
    assert [(i.name, i.family) for i in catalog.loras] == [("xl-lora", "sdxl")]
    assert [(i.name, i.family) for i in catalog.embeddings] == [("xl-emb", "sdxl")]
    assert [(i.name, i.family) for i in catalog.taesd] == [("taesdxl_decoder", "sdxl")]
    assert [i.name for i in catalog.vaes] == ["sdxl_vae"]
    assert set(manager.embedding_files("sdxl")) == {"xl-emb"} and manager.embedding_files("sd15") == {}
    assert len(catalog.problems) == 1
    problems = "\n".join(catalog.problems)
    assert "sd21: unsupported model family (looks like Stable Diffusion 2.x)" in problems


def test_flat_folder_sorts_files_by_content(tmp_path):
    write_keys(tmp_path / "base.safetensors", SD15_KEYS)
    write_keys(tmp_path / "style-lora.safetensors", LORA_KEYS)
    write_keys(tmp_path / "my-vae.safetensors", VAE_KEYS)
    write_keys(tmp_path / "emb.safetensors", {"emb_params": (1, 768)})
    torch.save({"string_to_param": {"*": torch.zeros(2, 768)}, "name": "old-emb", "step": 1}, tmp_path / "old-emb.pt")
    write_keys(tmp_path / "upscaler.safetensors", {"body.0.weight": (3, 3), "body.1.weight": (3, 3)})
    write_keys(tmp_path / "sd3.safetensors", {"joint_blocks.0.context_block.adaLN_modulation.1.bias": (4,)})
    (tmp_path / "truncated.safetensors").write_bytes(struct.pack("<Q", 10_000) + b"{")

    manager = ModelManager([tmp_path], device="cpu")
    assert names_by_kind(manager) == {
        "models": {"base"}, "loras": {"style-lora"}, "vaes": {"my-vae"}, "embeddings": {"emb", "old-emb"},
        "taesd": set(),
    }
    problems = "\n".join(manager.catalog.problems)
    assert "truncated.safetensors: the safetensors header runs past the end" in problems
    assert "sd3.safetensors: unsupported model family (looks like Stable Diffusion 3)" in problems
    assert "upscaler" not in problems  # other networks are simply not ours


def test_duplicate_names_and_the_same_file_twice(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    write_keys(first / "model.safetensors", SD15_KEYS)
    write_keys(second / "model.safetensors", SDXL_KEYS)
    manager = ModelManager([first, second, first], device="cpu")
    found = {info.name: info.family for info in manager.discover() if info.kind != "builtin"}
    assert found == {"model": "sd15", "model~2": "sdxl"}


def test_extra_model_paths_yaml(tmp_path):
    webui = tmp_path / "webui"
    write_keys(webui / "models" / "Stable-diffusion" / "a.safetensors", SD15_KEYS)
    write_keys(webui / "models" / "Lora" / "l1.safetensors", LORA_KEYS)
    write_keys(webui / "models" / "LyCORIS" / "l2.safetensors", LORA_KEYS)
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "extra_model_paths.yaml").write_text(
        "a111:\n"
        "    base_path: ../webui/\n"
        "    checkpoints: models/Stable-diffusion\n"
        "    loras: |\n"
        "        models/Lora\n"
        "        models/LyCORIS\n"
        "    controlnet: models/ControlNet\n"
        "    vae: models/does-not-exist\n"
    )
    folders = import_extra_model_paths(comfy / "extra_model_paths.yaml")
    assert folders == {
        "checkpoint": [(webui / "models" / "Stable-diffusion").resolve()],
        "lora": [(webui / "models" / "Lora").resolve(), (webui / "models" / "LyCORIS").resolve()],
    }
    # A ComfyUI root given as a models folder brings its extra_model_paths.yaml along.
    found = find_model_folders([comfy], environ={}, settings_file=None, default_folder=None)
    manager = ModelManager(found, device="cpu")
    assert names_by_kind(manager)["models"] == {"a"}
    assert names_by_kind(manager)["loras"] == {"l1", "l2"}


def test_bad_extra_model_paths_yaml_is_a_clear_error(tmp_path):
    bad = tmp_path / "extra_model_paths.yaml"
    bad.write_text("a111: [unclosed\n")
    with pytest.raises(ModelError, match=r"extra_model_paths\.yaml: cannot be read"):
        import_extra_model_paths(bad)


def test_folder_sources_in_priority_order(tmp_path):
    explicit, env_a, env_b, from_settings, default = (tmp_path / n for n in ("cli", "a", "b", "set", "default"))
    for folder in (explicit, env_a, env_b, from_settings, default):
        folder.mkdir()
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model_folders": [str(from_settings), str(tmp_path / "gone")]}))
    environ = {"COLLAGEN_MODELS": os.pathsep.join([str(env_a), "", str(env_b)])}
    folders = find_model_folders([explicit], environ=environ, settings_file=settings, default_folder=default)
    assert folders.roots == [p.resolve() for p in (explicit, env_a, env_b, from_settings, default)]
    empty = find_model_folders([], environ={"COLLAGEN_MODELS": ""}, settings_file=None, default_folder=None)
    assert empty.roots == []


def test_broken_settings_file_is_a_clear_error(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text('{"model_folders": "not a list"}')
    with pytest.raises(ModelError, match=r"settings\.json: 'model_folders' must be a list"):
        find_model_folders([], environ={}, settings_file=settings, default_folder=None)
    settings.write_text("{nope")
    with pytest.raises(ModelError, match=r"settings\.json: the settings file cannot be read as JSON"):
        find_model_folders([], environ={}, settings_file=settings, default_folder=None)


def test_unknown_model_name_is_a_clear_error(tmp_path):
    manager = ModelManager([tmp_path], device="cpu")
    with pytest.raises(ModelError, match="No model named 'nothing-here'"):
        manager.find("nothing-here")
    with pytest.raises(ModelError, match="No lora named 'nope'"):
        manager.find_asset("lora", "nope")


# ---- hashes, device, cache --------------------------------------------------------------------------------------


def test_a1111_short_hash_is_cached_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"weights" * 1000)
    cache_file = tmp_path / "cache" / "hashes.json"
    hashes = ModelHashes(cache_file)
    assert hashes.short_hash(path) == hashlib.sha256(b"weights" * 1000).hexdigest()[:10]
    # Same size and mtime: the persisted value is trusted without reading the file again.
    stat = path.stat()
    path.write_bytes(b"WEIGHTS" * 1000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ModelHashes(cache_file).short_hash(path) == hashlib.sha256(b"weights" * 1000).hexdigest()[:10]
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert ModelHashes(cache_file).short_hash(path) == hashlib.sha256(b"WEIGHTS" * 1000).hexdigest()[:10]


def test_a_second_manager_with_the_same_hash_cache_does_not_read_the_checkpoint_again(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights" * 1000)
    cache_file = tmp_path / "hashes.json"
    first = ModelManager([tmp_path], hash_cache_file=cache_file).model_hash(path)
    assert first == hashlib.sha256(b"weights" * 1000).hexdigest()[:10]
    # Other bytes, same size and mtime: only a manager that reads the file again sees the change.
    stat = path.stat()
    path.write_bytes(b"WEIGHTS" * 1000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ModelManager([tmp_path], hash_cache_file=cache_file).model_hash(path) == first
    assert ModelManager([tmp_path]).model_hash(path) == hashlib.sha256(b"WEIGHTS" * 1000).hexdigest()[:10]


def test_device_and_dtype_choice(monkeypatch):
    assert choose_device() in ("cuda", "mps", "cpu")
    assert choose_dtype("cpu") == torch.float32
    assert choose_dtype("mps") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_dtype("cuda") == torch.float16
    assert choose_dtype("cuda", prefer_bf16=True) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_dtype("cuda", prefer_bf16=True) == torch.float16


def test_cache_keeps_one_model_and_switching_frees_the_previous():
    manager = ModelManager(ModelFolders(), device="cpu")
    first = manager.load("builtin:tiny-sd15")
    assert manager.load("builtin:tiny-sd15") is first
    assert first.builtin and first.family == "sd15" and first.dtype == torch.float32
    first_unet = weakref.ref(first.unet)
    del first
    inpaint = manager.load("builtin:tiny-sd15-inpaint")
    gc.collect()
    assert first_unet() is None
    assert inpaint.inpaint
    xl = manager.load("builtin:tiny-sdxl")
    assert xl.family == "sdxl" and xl.text_encoder_2 is not None


def test_edit_models_are_not_loaded_as_sd(tmp_path):
    write_diffusers_folder(tmp_path / "kontext", "FluxKontextPipeline")
    manager = ModelManager([tmp_path], device="cpu")
    with pytest.raises(ModelError, match="kontext is an instruction-edit model"):
        manager.load("kontext")
    with pytest.raises(ModelError, match="builtin:tiny-sd15 is not an instruction-edit model"):
        manager.load_edit_pipeline("builtin:tiny-sd15")


def test_loras_and_embeddings_in_sub_folders_are_found_by_their_bare_names_as_a1111_does(tmp_path):
    webui = tmp_path / "webui"
    write_keys(webui / "models" / "Lora" / "styles" / "ink" / "inkStyle.safetensors", LORA_KEYS)
    write_keys(webui / "models" / "Lora" / "a" / "twin.safetensors", LORA_KEYS)
    write_keys(webui / "models" / "Lora" / "a" / "b" / "twin.safetensors", LORA_KEYS)
    write_keys(webui / "embeddings" / "negatives" / "badhands.safetensors", {"emb_params": (2, 768)})
    manager = ModelManager([webui], device="cpu")
    assert manager.lora_path("inkStyle") == manager.lora_path("styles/ink/inkStyle")
    assert manager.lora_path("inkstyle").name == "inkStyle.safetensors"  # one file: case does not matter
    assert manager.lora_path("twin").parent.name == "a"  # two files: the shallowest, a fixed choice
    assert manager.embeddings()["badhands"] == manager.embeddings()["negatives/badhands"]
    assert "badhands" in manager.embeddings("sd15")
    with pytest.raises(ModelError, match="No lora named 'nothing'"):
        manager.lora_path("nothing")
