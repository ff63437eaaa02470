"""Where edit-model weights go (decision function with fake numbers) and the weight estimate."""

from __future__ import annotations

import json
import struct

import pytest

from inference.api import InferenceError
from inference.edit.memory import GIB, estimate_weight_bytes, plan_placement


def plan(**overrides):
    numbers = dict(device="cuda", weight_bytes=20 * GIB, largest_component_bytes=12 * GIB,
                   free_vram=78 * GIB, available_ram=120 * GIB, model_name="FLUX.1-Kontext-dev")  # fmt: skip
    numbers.update(overrides)
    return plan_placement(**numbers)


def test_weights_that_fit_in_free_vram_stay_on_the_gpu():
    decided = plan()
    assert decided.placement == "gpu" and not decided.load_straight_to_device


def test_weights_beyond_free_vram_take_turns_on_the_gpu():
    assert plan(free_vram=18 * GIB).placement == "model_offload"


def test_a_component_too_big_for_vram_streams_layer_by_layer():
    assert plan(free_vram=10 * GIB).placement == "sequential_offload"


def test_the_reserve_for_activations_counts():
    assert plan(weight_bytes=20 * GIB, free_vram=21 * GIB).placement == "model_offload"


def test_short_of_ram_but_enough_vram_loads_straight_onto_the_gpu():
    decided = plan(available_ram=8 * GIB)
    assert decided.placement == "gpu" and decided.load_straight_to_device


def test_neither_vram_nor_ram_enough_is_a_clear_error():
    with pytest.raises(InferenceError, match=r"FLUX.1-Kontext-dev needs about 20.0 GiB .* cannot run"):
        plan(free_vram=8 * GIB, available_ram=16 * GIB)


def test_cpu_needs_the_weights_in_ram():
    assert plan(device="cpu", free_vram=None).placement == "cpu"
    with pytest.raises(InferenceError, match=r"needs about 20.0 GiB of memory .* only 4.0 GiB is free"):
        plan(device="cpu", free_vram=None, available_ram=4 * GIB)


def test_unknown_probes_do_not_refuse():
    assert plan(free_vram=None, available_ram=None).placement == "gpu"
    assert plan(device="cpu", free_vram=None, available_ram=None).placement == "cpu"


def write_safetensors(path, shapes: dict[str, list[int]], dtype="F32"):
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 1
        for d in shape:
            n *= d
        size = n * {"F32": 4, "F16": 2, "BF16": 2}[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def test_weight_estimate_counts_parameters_at_the_load_precision(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({
        "_class_name": "FluxKontextPipeline",
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    }))  # fmt: skip
    transformer = tmp_path / "transformer"
    transformer.mkdir()
    write_safetensors(transformer / "diffusion_pytorch_model-00001-of-00002.safetensors", {"a": [10, 10]})
    write_safetensors(transformer / "diffusion_pytorch_model-00002-of-00002.safetensors", {"b": [50]})
    # a variant next to the plain weights is not what from_pretrained loads
    write_safetensors(
        transformer / "diffusion_pytorch_model.fp16.safetensors", {"a": [10, 10], "b": [50]}, "F16"
    )
    vae = tmp_path / "vae"
    vae.mkdir()
    write_safetensors(vae / "diffusion_pytorch_model.safetensors", {"w": [3, 4, 5]}, "F16")
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "safety_checker").mkdir()
    write_safetensors(tmp_path / "safety_checker" / "model.safetensors", {"huge": [1000, 1000]})

    total, largest = estimate_weight_bytes(tmp_path, bytes_per_parameter=2)
    assert (total, largest) == ((150 + 60) * 2, 150 * 2)


def test_weight_estimate_of_a_folder_without_index_is_a_clear_error(tmp_path):
    with pytest.raises(InferenceError, match="model_index.json cannot be read"):
        estimate_weight_bytes(tmp_path, 2)
