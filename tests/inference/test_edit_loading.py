"""Loading edit models from local diffusers folders, offline (tiny pipelines saved to disk first)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from inference.api import Finished, GenerationRequest, ModelError, UnsupportedModelError
from inference.edit import build_tiny_edit, load_edit_model, run_edit


def edited(model) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    request = GenerationRequest(
        mode="edit", prompt="add a hat", init_image=image, steps=2, seed=3, preview="none"
    )
    result = run_edit(model, request, lambda event: None, threading.Event())
    assert isinstance(result, Finished)
    return result.images[0]


@pytest.mark.parametrize("family", ("ip2p", "flux-kontext"))
def test_a_saved_folder_loads_offline_and_edits_like_the_original(tmp_path, family):
    import torch

    tiny = build_tiny_edit(family)
    tiny.pipeline.save_pretrained(tmp_path / "model")

    loaded = load_edit_model(tmp_path / "model", family, "cpu", torch.float32)

    assert loaded.family == family and loaded.name == "model" and loaded.placement == "cpu"
    assert type(loaded.pipeline) is type(tiny.pipeline) and loaded.size_multiple == tiny.size_multiple
    if family == "flux-kontext":
        assert (1024, 1024) in loaded.extra["preferred_resolutions"]
    # same weights, same seed: same pixels (both at the tiny working size)
    loaded.native_area, loaded.max_sequence_length = tiny.native_area, tiny.max_sequence_length
    loaded.extra.pop("preferred_resolutions", None)
    assert np.array_equal(edited(loaded), edited(tiny))


def test_a_folder_of_another_family_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(UnsupportedModelError, match="StableDiffusionXLPipeline, not a FluxKontextPipeline"):
        load_edit_model(tmp_path, "flux-kontext")


def test_an_unknown_family_is_refused(tmp_path):
    with pytest.raises(UnsupportedModelError, match="not an instruction-edit model family"):
        load_edit_model(tmp_path, "sd15")


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "model_index.json is missing"),
        ("{not json", "cannot be read as JSON"),
        ("[]", "no pipeline _class_name"),
    ],
)
def test_broken_folders_are_refused_with_one_sentence(tmp_path, content, words):
    if content is not None:
        (tmp_path / "model_index.json").write_text(content)
    with pytest.raises(ModelError, match=words):
        load_edit_model(tmp_path, "qwen-edit")


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no such model folder"):
        load_edit_model(tmp_path / "nowhere", "ip2p")


def test_a_folder_with_missing_weights_is_a_model_error(tmp_path):
    index = {
        "_class_name": "StableDiffusionInstructPix2PixPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
    }
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    (tmp_path / "unet").mkdir()
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_edit_model(tmp_path, "ip2p")


def test_builtin_names_and_unknown_families():
    assert build_tiny_edit("builtin:tiny-qwen-edit-plus").name == "builtin:tiny-qwen-edit-plus"
    with pytest.raises(ModelError, match="no built-in edit model"):
        build_tiny_edit("sdxl")
