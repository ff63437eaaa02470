"""The family registry: entries are consistent, and a new family is a new entry (detection,
discovery, previews and the engine's dispatch read it; nothing else changes)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from typing import get_args

import numpy as np
import pytest
import torch

from inference.api import Failed, GenerationRequest, Mode, UnsupportedModelError
from inference.engine import Engine
from inference.families import (
    FAMILIES,
    SD15,
    Defaults,
    Detected,
    Family,
    FamilyRegistry,
    LatentFormat,
    LoadSpec,
    PreviewFactors,
    PromptEncoding,
    Supports,
    TextEncoder,
)
from inference.models import ModelManager, detect_checkpoint_family, diffusers_folder_family
from inference.preview import linear_preview
from tests.inference.ckpt_helpers import write_safetensors

TOY_KEY = "toy.double_stream.0.weight"


def detect_toy(shapes) -> Detected | None:
    return Detected("toy") if TOY_KEY in shapes else None


# A transformer family with packed 16-channel latents and distilled guidance, stored as split files:
# the shape of entry FLUX.1 will have. Nothing in it is a UNet.
TOY = Family(
    name="toy",
    label="Toy Flow",
    kind="flow",
    loop="flow",
    load=LoadSpec(formats=("split_files", "diffusers_folder"),
                  components=("transformer", "vae", "text_encoder", "text_encoder_2", "scheduler")),
    prompts=PromptEncoding(
        encoders=(TextEncoder("text_encoder", "tokenizer", "clip-l"),
                  TextEncoder("text_encoder_2", "tokenizer_2", "t5-xxl", max_tokens=512)),
        style="t5-clip",
        pooled_from="text_encoder",
    ),
    latent=LatentFormat(channels=16, scaling_factor=0.3611, shift_factor=0.1159, packed=True),
    preview=PreviewFactors(rgb=tuple((0.01 * c, 0.0, -0.01 * c) for c in range(16)), bias=(0.1, 0.2, 0.3)),
    defaults=Defaults(steps=28, sampler="Euler", guidance=3.5, width=1024, height=1024),
    supports=Supports(modes=("generate", "inpaint")),
    detect_checkpoint=detect_toy,
    diffusers_pipelines=("ToyFlowPipeline",),
)


def test_every_entry_is_consistent():
    names = [entry.name for entry in FAMILIES]
    assert names == ["sd15", "sdxl", "flux-dev", "flux-schnell", "flux-fill", "zimage", "ip2p", "flux-kontext", "qwen-edit",
                     "qwen-edit-plus"]
    pipelines = [pipeline for entry in FAMILIES for pipeline in entry.diffusers_pipelines]
    assert len(pipelines) == len(set(pipelines))
    for entry in FAMILIES:
        assert set(entry.supports.modes) <= set(get_args(Mode)), entry.name
        assert set(entry.supports.region_methods) <= {"attention", "latent"}, entry.name
        assert entry.preview is not None and len(entry.preview.rgb) == entry.latent.channels, entry.name
        # CFG or distilled guidance, never both; schnell (timestep-distilled) has neither
        assert entry.defaults.cfg is None or entry.defaults.guidance is None, entry.name
        assert entry.name == "flux-schnell" or (entry.defaults.cfg, entry.defaults.guidance) != (None, None)
        assert entry.load.formats and entry.prompts.encoders, entry.name
        if entry.loop == "edit":
            assert entry.supports.modes == ("edit",) and entry.load.formats == ("diffusers_folder",)
        else:
            assert entry.detect_checkpoint is not None and "generate" in entry.supports.modes
    with pytest.raises(ValueError, match="share a name"):
        FamilyRegistry((SD15, SD15))


def test_the_registry_imports_neither_torch_nor_diffusers():
    code = "import sys, inference.families, inference.models; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_a_new_family_is_detected_from_its_entry_alone(tmp_path):
    registry = FamilyRegistry((*FAMILIES, TOY))
    shapes = {TOY_KEY: (64, 64), "vae.decoder.conv_in.weight": (16, 16, 3, 3)}
    assert detect_checkpoint_family("toy.safetensors", shapes, registry).family == "toy"
    with pytest.raises(UnsupportedModelError, match="toy.safetensors: unsupported model family"):
        detect_checkpoint_family("toy.safetensors", shapes)  # the default registry has no such entry

    folder = tmp_path / "toy-folder"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "ToyFlowPipeline"}), encoding="utf-8")
    assert diffusers_folder_family(folder, registry) == ("toy", "diffusers")
    with pytest.raises(UnsupportedModelError, match="pipeline 'ToyFlowPipeline'"):
        diffusers_folder_family(folder)


def test_discovery_lists_a_new_family_from_a_flat_folder(tmp_path):
    write_safetensors(tmp_path / "toy-model.safetensors", {TOY_KEY: torch.zeros(2, 2)})
    found = {info.name: info for info in ModelManager([tmp_path], families=FamilyRegistry((*FAMILIES, TOY))).discover()}
    assert found["toy-model"].family == "toy" and found["toy-model"].kind == "checkpoint"
    # The default registry neither lists it nor fails: a flat folder's unknown network is not ours.
    assert "toy-model" not in {info.name for info in ModelManager([tmp_path]).discover()}


def test_linear_previews_use_the_entry_factors():
    for entry in FAMILIES:
        latents = np.zeros((1, entry.latent.channels, 2, 3), np.float32)
        latents[0, 0] = 1.0
        factors = np.asarray(entry.preview.rgb, np.float32)
        expected = np.clip(np.rint((factors[0] + np.asarray(entry.preview.bias) + 1.0) * 127.5), 0, 255)
        image = linear_preview(latents, entry.name)
        assert image.shape == (2, 3, 3) and image[1, 2].tolist() == expected.tolist(), entry.name


def test_the_engine_refuses_a_family_whose_loop_has_no_runner_in_one_sentence():
    class ToyModel:
        family = "toy"
        device = "cpu"

    class ToyModels:
        def load(self, name_or_path, *, vae=None):
            return ToyModel()

    engine = Engine(ToyModels())
    engine.loop_runners = {"sd": engine.run_sd}  # an engine without the flow loop's runner
    engine.families = FamilyRegistry((*FAMILIES, TOY))
    events = []
    engine.run(GenerationRequest(model="toy-model", steps=2, width=64, height=64), events.append, threading.Event())
    assert isinstance(events[-1], Failed)
    assert events[-1].message == "The model 'toy-model' is a Toy Flow model, which Collagen cannot run yet."
    events.clear()
    request = GenerationRequest(model="toy-model", mode="regions", steps=2, width=64, height=64)
    engine.run(request, events.append, threading.Event())
    assert "Toy Flow model, which cannot run the regions mode (it runs: generate, inpaint)" in events[-1].message


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SD15.name = "other"  # type: ignore[misc]


def flux_shapes(layout: str, width: int = 64, guidance: bool = True) -> dict:
    """The tensors that tell FLUX.1 variants apart, with their real names and widths."""
    if layout == "diffusers":
        shapes = {"transformer_blocks.0.attn.norm_added_k.weight": (128,), "x_embedder.weight": (3072, width)}
        if guidance:
            shapes["time_text_embed.guidance_embedder.linear_1.weight"] = (3072, 256)
        return shapes
    prefix = "model.diffusion_model." if layout == "all-in-one" else ""
    shapes = {prefix + "double_blocks.0.img_attn.norm.key_norm.scale": (128,), prefix + "img_in.weight": (3072, width)}
    if guidance:
        shapes[prefix + "guidance_in.in_layer.weight"] = (3072, 256)
    return shapes


@pytest.mark.parametrize("layout", ("bfl", "all-in-one", "diffusers"))
def test_flux_variants_are_detected_from_shapes(layout):
    def family(**kwargs):
        detected = detect_checkpoint_family("f.safetensors", flux_shapes(layout, **kwargs))
        return detected.family, detected.inpaint

    assert family() == ("flux-dev", False)
    assert family(guidance=False) == ("flux-schnell", False)
    assert family(width=384) == ("flux-fill", True)
    with pytest.raises(UnsupportedModelError, match=r"f\.safetensors: unsupported model family \(looks like FLUX\.1 Depth"):
        family(width=128)


def test_flux_entries_declare_their_defaults_and_modes():
    dev, schnell, fill = (FAMILIES.get(name) for name in ("flux-dev", "flux-schnell", "flux-fill"))
    assert (dev.defaults.steps, dev.defaults.guidance, dev.defaults.width) == (28, 3.5, 1024)
    assert (schnell.defaults.steps, schnell.defaults.guidance, schnell.defaults.cfg) == (4, None, None)
    assert fill.defaults.guidance == 30.0
    for entry in (dev, schnell, fill):
        assert entry.loop == "flow" and entry.latent.packed and entry.supports.lora
        assert set(entry.supports.modes) == {"generate", "inpaint", "regions", "composite", "refine"}
    assert (dev.supports.inpaint, fill.supports.inpaint) == ("blend", "fill-model")
    assert FAMILIES.get("flux-kontext").loop == "edit"


def test_unsupported_modes_are_refused_from_the_entry_before_loading(tmp_path):
    write_safetensors(tmp_path / "toy-model.safetensors", {TOY_KEY: torch.zeros(2, 2)})
    registry = FamilyRegistry((*FAMILIES, TOY))
    engine = Engine(ModelManager([tmp_path], families=registry, device="cpu"))
    engine.families = registry
    events = []
    request = GenerationRequest(model="toy-model", mode="regions", steps=2, width=64, height=64)
    engine.run(request, events.append, threading.Event())
    # no toy loader exists: the sentence comes from the entry's Supports, not from a load attempt
    assert events[-1].message == (
        "The model 'toy-model' is a Toy Flow model, which cannot run the regions mode (it runs: generate, inpaint)."
    )


def test_the_engine_runs_a_flux_builtin_through_the_manager_with_the_family_guidance():
    manager = ModelManager([], device="cpu")
    assert {info.name: info.family for info in manager.discover() if "flux" in info.name} == {
        "builtin:tiny-flux-dev": "flux-dev", "builtin:tiny-flux-schnell": "flux-schnell",
        "builtin:tiny-flux-fill": "flux-fill"}
    engine = Engine(manager)
    events = []
    request = GenerationRequest(model="builtin:tiny-flux-dev", steps=2, width=64, height=64, seed=3, preview="none")
    engine.run(request, events.append, threading.Event())
    finished = events[-1]
    assert finished.images[0].shape == (64, 64, 3)
    assert finished.parameters[0]["guidance"] == 3.5 and finished.parameters[0]["family"] == "flux-dev"
    assert manager.load("builtin:tiny-flux-dev") is manager.load("builtin:tiny-flux-dev")  # cached


def test_the_taef1_decoder_serves_every_family_with_flux_latents(tmp_path):
    (tmp_path / "vae_approx").mkdir()
    write_safetensors(tmp_path / "vae_approx" / "taef1_decoder.safetensors", {"1.weight": torch.zeros(64, 16, 3, 3)})
    manager = ModelManager([tmp_path], device="cpu")
    found = tmp_path / "vae_approx" / "taef1_decoder.safetensors"
    assert [manager.taesd_decoder(family) for family in ("flux-dev", "flux-schnell", "flux-fill", "flux-kontext")] == [
        found] * 4
    assert manager.taesd_decoder("sd15") is None
