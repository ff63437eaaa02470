"""The request -> ComfyUI graph translation and the backend settings, without a server (fast).

What the graphs do on a real server is tested in test_comfyui_server.py; here: which nodes, wired
how, with which step ranges, and the one-sentence refusals that come before anything is sent.
"""

from __future__ import annotations

import numpy as np
import pytest

from inference.api import SAMPLERS, CompositePiece, GenerationRequest, LoraSpec, RegionSpec, RequestError
from inference.backends.base import LOCAL_BACKEND
from inference.backends.comfyui.backend import prepare_job
from inference.backends.comfyui.graph import (
    SAMPLER_TO_COMFY,
    ServerModels,
    build_graph,
    collagen_sampler,
    comfy_sampler,
    find_file,
)
from inference.backends.config import parse_backend

SERVER = ServerModels(checkpoints=("sd15/dreamy.safetensors", "other.ckpt"), loras=("styles/ink.safetensors",),
                      vaes=("vae-ft-mse.safetensors",))


def request_of(**changes) -> GenerationRequest:
    settings = dict(model="dreamy", prompt="a fox <lora:ink:0.7>", negative="blurry", width=64, height=64,
                    steps=8, cfg=5.0, seed=3, sampler="DPM++ 2M Karras")
    settings.update(changes)
    return GenerationRequest(**settings)


def graph_of(request: GenerationRequest, server: ServerModels = SERVER, seed: int = 3):
    job = prepare_job(request, lambda event: None)
    return job, build_graph(request, job.inputs, server, seed=seed, sampler=job.sampler)


def nodes_of(graph: dict, class_type: str) -> list[dict]:
    return [node["inputs"] for node in graph.values() if node["class_type"] == class_type]


def test_every_sampler_maps_to_comfyui_and_back():
    assert set(SAMPLER_TO_COMFY) == set(SAMPLERS)
    for name in SAMPLERS:
        assert collagen_sampler(*comfy_sampler(name)) == name
    assert collagen_sampler("euler", "exponential") is None
    with pytest.raises(RequestError, match="no ComfyUI counterpart"):
        comfy_sampler("Heun")


def test_names_match_the_servers_files_by_stem():
    assert find_file("dreamy", SERVER.checkpoints) == "sd15/dreamy.safetensors"
    assert find_file("sd15/dreamy", SERVER.checkpoints) == "sd15/dreamy.safetensors"
    assert find_file("other.ckpt", SERVER.checkpoints) == "other.ckpt"
    assert find_file("dream", SERVER.checkpoints) is None


def test_txt2img_graph_loads_loras_from_the_prompt_and_samples_every_step():
    _, plan = graph_of(request_of())
    graph = plan.graph
    assert nodes_of(graph, "CheckpointLoaderSimple") == [{"ckpt_name": "sd15/dreamy.safetensors"}]
    (lora,) = nodes_of(graph, "LoraLoader")
    assert lora["lora_name"] == "styles/ink.safetensors" and lora["strength_model"] == 0.7
    assert sorted(node["text"] for node in nodes_of(graph, "CLIPTextEncode")) == ["a fox", "blurry"]
    (sampler,) = nodes_of(graph, "KSamplerAdvanced")
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("dpmpp_2m", "karras")
    assert (sampler["start_at_step"], sampler["end_at_step"], sampler["noise_seed"]) == (0, 8, 3)
    assert plan.total_steps == 8 and nodes_of(graph, "CLIPSetLastLayer") == []
    assert graph[plan.output_node]["class_type"] == "PreviewImage"


def test_clip_skip_uses_a1111_numbering():
    _, plan = graph_of(request_of(clip_skip=2))
    assert nodes_of(plan.graph, "CLIPSetLastLayer") == [{"clip": ["2", 1], "stop_at_clip_layer": -2}]


def test_img2img_starts_where_the_strength_cut_does():
    image = np.zeros((64, 64, 3), np.uint8)
    _, plan = graph_of(request_of(init_image=image, strength=0.6))
    (sampler,) = nodes_of(plan.graph, "KSamplerAdvanced")
    assert (sampler["start_at_step"], sampler["end_at_step"]) == (8 - int(8 * 0.6), 8)
    assert len(nodes_of(plan.graph, "VAEEncode")) == 1 and len(plan.uploads) == 1


def test_inpaint_masks_whole_latent_cells_and_zeroes_them_for_latent_nothing():
    image = np.full((64, 64, 3), 90, np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[20:30, 20:30] = 1.0
    job, plan = graph_of(request_of(mode="inpaint", init_image=image, mask=mask, masked_content="latent_nothing"))
    noise_mask = job.inputs.noise_mask
    assert set(np.unique(noise_mask)) <= {0.0, 1.0}
    cells = noise_mask.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
    assert np.all(cells.min(axis=1) == cells.max(axis=1))  # constant over every 8x8 cell
    assert noise_mask[mask > 0].min() == 1.0
    assert len(nodes_of(plan.graph, "SetLatentNoiseMask")) == 1
    assert len(nodes_of(plan.graph, "LatentCompositeMasked")) == 1  # the zeroed cells


def test_regions_are_masked_conditioning_with_their_own_negatives():
    mask = np.zeros((64, 64), np.float32)
    mask[:, :32] = 1.0
    regions = (RegionSpec(mask=mask, prompt="a red hat", negative="green", strength=1.5),
               RegionSpec(mask=1.0 - mask, prompt="a blue coat"))
    _, plan = graph_of(request_of(mode="regions", regions=regions))
    masked = nodes_of(plan.graph, "ConditioningSetMask")
    assert [node["strength"] for node in masked] == [1.5, 1.5, 1.0]
    assert len(nodes_of(plan.graph, "ConditioningCombine")) == 3


def test_per_region_loras_are_refused_before_anything_is_sent():
    mask = np.ones((64, 64), np.float32)
    region = RegionSpec(mask=mask, prompt="a cat", loras=(LoraSpec("ink"),))
    with pytest.raises(RequestError, match="Per-region LoRAs do not run on a ComfyUI backend"):
        graph_of(request_of(mode="regions", regions=(region,)))


def test_composite_runs_pieces_alone_then_pastes_and_finishes():
    mask = np.zeros((64, 64), np.float32)
    mask[8:40, 8:40] = 1.0
    pieces = (CompositePiece(mask=mask, prompt="a statue"), CompositePiece(mask=1.0 - mask, prompt="a garden"))
    _, plan = graph_of(request_of(mode="composite", pieces=pieces, composite_step=0.25))
    samplers = [plan.graph[node]["inputs"] for node in plan.sampler_order]
    ranges = [(s["start_at_step"], s["end_at_step"], s["add_noise"]) for s in samplers]
    assert ranges == [(0, 2, "enable")] * 3 + [(2, 8, "disable")]
    assert len(nodes_of(plan.graph, "LatentCompositeMasked")) == 2 and plan.total_steps == 12


def test_refine_sends_the_strength_map_to_differential_diffusion():
    image = np.full((64, 64, 3), 120, np.uint8)
    alpha = np.zeros((1, 64, 64), np.float32)
    alpha[0, 16:48, 16:48] = 1.0
    job, plan = graph_of(request_of(mode="refine", init_image=image, collage_alpha=alpha, refine_edge_width=8))
    assert len(nodes_of(plan.graph, "DifferentialDiffusion")) == 1
    assert job.inputs.strength_map.max() == pytest.approx(1.0)
    (sampler,) = nodes_of(plan.graph, "KSamplerAdvanced")
    assert sampler["start_at_step"] == 8 - int(8 * 0.75)  # the run starts at the map's strongest pixel


def test_a_missing_model_or_lora_is_one_sentence():
    with pytest.raises(RequestError, match=r"no model 'absent' \(it has: sd15/dreamy.safetensors, other.ckpt\)"):
        graph_of(request_of(model="absent"))
    with pytest.raises(RequestError, match="no LoRA 'gone'"):
        graph_of(request_of(prompt="a fox <lora:gone:1>"))


def test_edit_mode_says_it_runs_locally():
    with pytest.raises(RequestError, match="edit mode does not run on a ComfyUI backend"):
        graph_of(request_of(mode="edit", init_image=np.zeros((64, 64, 3), np.uint8)))


def test_backend_entries_parse_with_token_and_headers():
    assert parse_backend("local") == LOCAL_BACKEND
    address = parse_backend("https://gpu.example:8188/ token=s3cret header:X-Team=art")
    assert address.url == "https://gpu.example:8188" and address.websocket_url == "wss://gpu.example:8188/ws"
    assert address.request_headers() == {"X-Team": "art", "Authorization": "Bearer s3cret"}
    for bad, sentence in (("ftp://x", "not an http"), ("http://x colour=red", "Unknown backend option"),
                          ("", "empty")):
        with pytest.raises(RequestError, match=sentence):
            parse_backend(bad)
