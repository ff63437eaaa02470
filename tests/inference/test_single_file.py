"""Single-file checkpoints in the original layout load offline, and every tensor arrives intact."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import pytest
import torch

from inference.api import ModelError
from inference.models import ModelManager, bundled_config_root
from tests.inference.ckpt_helpers import (
    build_components,
    read_config,
    write_checkpoint_like,
    write_original_checkpoint,
    write_safetensors,
    write_small_config_root,
)

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def small_configs(tmp_path_factory) -> Path:
    return write_small_config_root(tmp_path_factory.mktemp("configs") / "configs")


def assert_every_tensor_equal(model, written: dict, skip: tuple[str, ...] = ()) -> int:
    """Each loaded component has exactly the written tensors, bit for bit; returns how many were compared."""
    compared = 0
    for component in COMPONENTS:
        if component not in written or component in skip:
            continue
        loaded = getattr(model, component).state_dict()
        source = written[component]
        assert set(loaded) == set(source), f"{component}: keys differ: {set(loaded) ^ set(source)}"
        for key, value in loaded.items():
            expected = source[key]
            assert value.device.type != "meta", f"{component}.{key} was never loaded"
            assert value.shape == expected.shape, f"{component}.{key}: {value.shape} != {expected.shape}"
            assert torch.equal(value, expected.to(value.dtype)), f"{component}.{key} differs from the file"
            compared += 1
    return compared


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_small_single_file_loads_every_tensor_exactly(tmp_path, small_configs, family):
    models = tmp_path / "models"
    models.mkdir()
    written = write_checkpoint_like(models / f"{family}-model.safetensors", small_configs / family, family)
    manager = ModelManager([models], config_root=small_configs, device="cpu")

    info = manager.find(f"{family}-model")
    assert (info.family, info.kind) == (family, "checkpoint")
    model = manager.load(f"{family}-model")

    assert model.family == family and not model.inpaint and not model.builtin
    compared = assert_every_tensor_equal(model, written)
    assert compared == sum(len(tensors) for tensors in written.values())
    assert model.scheduler_config["_class_name"] in ("PNDMScheduler", "EulerDiscreteScheduler")
    assert len(model.model_hash) == 10
    assert model.tokenizer("a cat").input_ids[0] == 49406
    if family == "sdxl":
        assert model.tokenizer_2.pad_token == "!" and model.tokenizer.pad_token == "<|endoftext|>"
        assert model.text_encoder_2.config.hidden_size == 64  # te2 got the OpenCLIP weights, not CLIP-L's


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_nine_channel_checkpoint_is_detected_and_loaded_as_inpaint(tmp_path, small_configs, family):
    models = tmp_path / "models"
    models.mkdir()
    written = write_checkpoint_like(models / "inpainting.safetensors", small_configs / f"{family}-inpaint", family)
    manager = ModelManager([models], config_root=small_configs, device="cpu")

    info = manager.find("inpainting")
    assert (info.family, info.kind, info.extra["inpaint"]) == (family, "inpaint", True)
    model = manager.load("inpainting")
    assert model.unet.config.in_channels == 9 and model.inpaint
    assert torch.equal(model.unet.conv_in.weight, written["unet"]["conv_in.weight"])


def test_separate_vae_file_replaces_the_checkpoint_vae(tmp_path, small_configs):
    models = tmp_path / "models"
    (models / "VAE").mkdir(parents=True)
    written = write_checkpoint_like(models / "base.safetensors", small_configs / "sd15", "sd15")
    # A1111-style VAE file: original key names without the first_stage_model. prefix.
    vae_modules = build_components(small_configs / "sd15")
    vae_tensors = {"vae": vae_modules["vae"].state_dict()}
    original = tmp_path / "full.safetensors"
    plan = write_original_checkpoint(
        original, "sd15", read_config(small_configs / "sd15", "unet"), read_config(small_configs / "sd15", "vae"),
        {**{k: v.state_dict() for k, v in vae_modules.items()}}, realistic_extras=False,
    )
    from safetensors.torch import load_file

    everything = load_file(str(original))
    vae_only = {
        entry.key.removeprefix("first_stage_model."): everything[entry.key]
        for entry in plan
        if entry.key.startswith("first_stage_model.")
    }
    write_safetensors(models / "VAE" / "better-vae.safetensors", vae_only)
    # A diffusers-format VAE file (the layout of HF's sdxl-vae / ft-mse downloads) works as well.
    write_safetensors(models / "VAE" / "diffusers-vae.safetensors", vae_tensors["vae"])

    # And a diffusers VAE folder (config.json + weights).
    vae_modules["vae"].save_pretrained(models / "VAE" / "vae-folder")

    manager = ModelManager([models], config_root=small_configs, device="cpu")
    assert {info.name for info in manager.catalog.vaes} == {"better-vae", "diffusers-vae", "vae-folder"}
    own = manager.load("base")
    own_unet = own.unet
    assert not torch.equal(own.vae.decoder.conv_out.weight, vae_tensors["vae"]["decoder.conv_out.weight"])
    for vae_name in ("better-vae", "diffusers-vae", "vae-folder"):
        model = manager.load("base", vae=vae_name)
        assert model.extra["vae"] == vae_name
        assert_every_tensor_equal(model, vae_tensors)
        assert model.unet is own_unet  # only the VAE was loaded again
    assert manager.load("base", vae="vae-folder") is model  # cached by (model, vae)
    not_a_vae = write_safetensors(tmp_path / "notes.safetensors", {"something.weight": torch.zeros(3)})
    with pytest.raises(ModelError, match=r"notes\.safetensors: is not a VAE"):
        manager.load("base", vae=str(not_a_vae))
    assert model.extra["vae"] == "vae-folder"  # a bad VAE leaves the loaded one in place
    back = manager.load("base")
    assert "vae" not in back.extra
    assert torch.equal(back.vae.decoder.conv_out.weight, written["vae"]["decoder.conv_out.weight"])


def test_pickled_checkpoint_loads_weights_only(tmp_path, small_configs):
    models = tmp_path / "models"
    models.mkdir()
    staging = tmp_path / "staging.safetensors"
    written = write_checkpoint_like(staging, small_configs / "sd15", "sd15")
    from safetensors.torch import load_file

    torch.save({"state_dict": load_file(str(staging)), "global_step": 470000}, models / "old.ckpt")
    manager = ModelManager([models], config_root=small_configs, device="cpu")
    assert manager.find("old").family == "sd15"
    assert_every_tensor_equal(manager.load("old"), written)


class Payload:
    """Anything that is not a tensor: loading it would mean running arbitrary code from the file."""


def test_pickle_with_python_objects_is_refused_not_unpickled(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, "cb": Payload()},
               models / "unsafe.ckpt")
    manager = ModelManager([models], device="cpu")
    assert [info.name for info in manager.discover() if not info.name.startswith("builtin:")] == []
    assert any("unsafe.ckpt" in problem and "refused" in problem for problem in manager.catalog.problems)
    with pytest.raises(ModelError, match="unsafe.ckpt.*never fully unpickles"):
        manager.load(str(models / "unsafe.ckpt"))


def test_checkpoint_with_missing_weights_is_a_clear_error(tmp_path, small_configs):
    models = tmp_path / "models"
    models.mkdir()
    staging = tmp_path / "staging.safetensors"
    write_checkpoint_like(staging, small_configs / "sd15", "sd15")
    from safetensors.torch import load_file

    tensors = load_file(str(staging))
    del tensors["model.diffusion_model.out.2.weight"]
    write_safetensors(models / "broken.safetensors", tensors)
    manager = ModelManager([models], config_root=small_configs, device="cpu")
    with pytest.raises(ModelError, match=r"broken\.safetensors: the file has no weights for 1 tensors of the UNet"):
        manager.load("broken")


def test_checkpoint_of_the_wrong_shapes_is_a_clear_error(tmp_path, small_configs):
    models = tmp_path / "models"
    models.mkdir()
    write_checkpoint_like(models / "small.safetensors", small_configs / "sd15", "sd15")
    bundled = ModelManager([models], device="cpu")  # full-size configs: shapes cannot match
    with pytest.raises(ModelError, match=r"small\.safetensors: .*(another architecture|other shapes)"):
        bundled.load("small")


def test_diffusers_folder_loads_from_local_files(tmp_path, small_configs):
    folder = tmp_path / "models" / "my-diffusers-model"
    modules = build_components(small_configs / "sdxl")
    for name, module in modules.items():
        # Many published folders hold only fp16 "variant" files for the big components.
        module.save_pretrained(folder / name, variant="fp16" if name == "unet" else None)
    for name in ("scheduler", "tokenizer", "tokenizer_2"):
        (folder / name).mkdir(parents=True)
        for file in (small_configs / "sdxl" / name).iterdir():
            (folder / name / file.name).write_bytes(file.read_bytes())
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.0"})
    )
    manager = ModelManager([tmp_path / "models"], device="cpu")
    info = manager.find("my-diffusers-model")
    assert (info.family, info.kind) == ("sdxl", "diffusers")
    model = manager.load("my-diffusers-model")
    assert (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert_every_tensor_equal(model, {name: module.state_dict() for name, module in modules.items()})
    assert model.tokenizer_2.pad_token == "!"
    half = ModelManager([tmp_path / "models"], device="cpu", dtype=torch.float16).load("my-diffusers-model")
    assert {half.unet.dtype, half.vae.dtype, half.text_encoder.dtype, half.text_encoder_2.dtype} == {torch.float16}


def test_instruction_edit_folder_loads_as_its_pipeline(tmp_path):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    from inference.tiny import build_tiny, prepare_unet

    tiny = build_tiny("sd15")
    pipeline = StableDiffusionInstructPix2PixPipeline(
        vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer,
        unet=prepare_unet("sd15", in_channels=8),  # latents + image latents
        scheduler=EulerAncestralDiscreteScheduler.from_config(tiny.scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(tmp_path / "models" / "tiny-ip2p")
    manager = ModelManager([tmp_path / "models"], device="cpu")
    info = manager.find("tiny-ip2p")
    assert (info.family, info.kind) == ("ip2p", "edit")
    edit_model = manager.load_edit_pipeline("tiny-ip2p")  # an inference.edit EditModel around the pipeline
    assert edit_model.family == "ip2p"
    loaded = edit_model.pipeline
    assert isinstance(loaded, StableDiffusionInstructPix2PixPipeline)
    assert loaded.unet.config.in_channels == 8
    assert torch.equal(loaded.unet.conv_in.weight, pipeline.unet.conv_in.weight)
    assert manager.load_edit_pipeline("tiny-ip2p") is edit_model
    assert loaded.unet.dtype == torch.float32


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def _full_size_round_trip(tmp_path, family: str, dtype) -> None:
    models = tmp_path / "models"
    models.mkdir()
    started = time.perf_counter()
    written = write_checkpoint_like(
        models / f"full-{family}.safetensors", bundled_config_root() / family, family, seeded=True,
        dtype=torch.float16,
    )
    wrote = time.perf_counter()
    manager = ModelManager([models], device="cpu", dtype=dtype)
    model = manager.load(f"full-{family}")
    loaded = time.perf_counter()
    compared = assert_every_tensor_equal(model, written)
    print(
        f"\n{family} full size: {compared} tensors, write {wrote - started:.1f}s, load {loaded - wrote:.1f}s, "
        f"compare {time.perf_counter() - loaded:.1f}s, peak RSS {_peak_rss_gb():.1f} GB"
    )
    assert model.unet.config.block_out_channels[0] == 320


@pytest.mark.slow
def test_full_size_sd15_checkpoint_round_trips(tmp_path):
    _full_size_round_trip(tmp_path, "sd15", torch.float32)


@pytest.mark.slow
def test_full_size_sdxl_checkpoint_round_trips(tmp_path):
    # Loaded in fp16 (as on a GPU) so the test fits in memory next to everything else.
    _full_size_round_trip(tmp_path, "sdxl", torch.float16)
