"""'Use parameters' sources: a PNG of each app, written the way that app writes it (Pillow's PngInfo
text chunks, the apps' own key names and value shapes), read back to the fields the panel needs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from canvas.io.png_info import read_png_parameters, write_png
from canvas.io.sampler_names import match_sampler


def app_png(path: Path, chunks: dict[str, str]) -> Path:
    """A small PNG whose text chunks are added as the apps add theirs (`PngInfo.add_text`)."""
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(path, "PNG", pnginfo=info)
    return path


def fields(params: dict, *names: str) -> dict:
    return {name: params[name] for name in names}


PANEL = ("prompt", "negative", "sampler", "schedule", "steps", "cfg", "seed", "width", "height", "clip_skip",
         "loras", "model", "model_hash")

# ---- one file per app ---------------------------------------------------------------------------

A1111 = ("masterpiece, a lighthouse at dawn, <lora:detailTweaker:0.6>\n"
         "Negative prompt: lowres, blurry\n"
         "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3170145342, Size: 512x768, "
         "Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.5, Clip skip: 2, "
         'Lora hashes: "detailTweaker: 1b2c3d4e5f6a", Version: v1.10.1')


def test_collagen_png(tmp_path):
    parameters = {"prompt": "a red fox <lora:inkStyle:0.4>", "negative_prompt": "blur", "steps": 12,
                  "sampler": "DPM++ SDE Karras", "cfg_scale": 5.5, "seed": 77, "width": 640, "height": 448,
                  "size": "640x448", "model": "dreamshaper_8", "model_hash": "879db523c3", "clip_skip": 2,
                  "loras": [{"name": "paperCut", "weight": 0.8}, {"name": "inkStyle", "weight": 0.4},
                            {"name": "lcm-lora-sdv1-5", "weight": 1.0}],
                  "lcm": True, "lcm_lora": "lcm-lora-sdv1-5"}
    path = tmp_path / "collagen.png"
    write_png(path, np.zeros((4, 4, 3), np.uint8), parameters, {"mode": "generate"})
    params = read_png_parameters(path)
    assert params["source"] == "collagen"
    # the <lora:> tag stays in the prompt and the LCM LoRA comes from the LCM switch: neither is listed twice
    assert fields(params, *PANEL) == {
        "prompt": "a red fox <lora:inkStyle:0.4>", "negative": "blur", "sampler": "DPM++ SDE Karras",
        "schedule": None, "steps": 12, "cfg": 5.5, "seed": 77, "width": 640, "height": 448, "clip_skip": 2,
        "loras": [["paperCut", 0.8]], "model": "dreamshaper_8", "model_hash": "879db523c3"}


def test_a1111_png(tmp_path):
    params = read_png_parameters(app_png(tmp_path / "a1111.png", {"parameters": A1111}))
    assert params["source"] == "a1111"
    assert fields(params, *PANEL) == {
        "prompt": "masterpiece, a lighthouse at dawn, <lora:detailTweaker:0.6>", "negative": "lowres, blurry",
        "sampler": "DPM++ 2M Karras", "schedule": "Karras", "steps": 28, "cfg": 6.5, "seed": 3170145342,
        "width": 512, "height": 768, "clip_skip": 2, "loras": [], "model": "anything-v5",
        "model_hash": "7f96a1a9ca"}


COMFY_API = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 889900112233, "steps": 24, "cfg": 7.5, "sampler_name": "dpmpp_sde", "scheduler": "karras",
        "denoise": 1.0, "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SD15/realisticVision_v51.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 768, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a misty forest, volumetric light", "clip": ["12", 0]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["12", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "styles/moody_light.safetensors",
                                                  "strength_model": 0.7, "strength_clip": 0.7,
                                                  "model": ["4", 0], "clip": ["4", 1]}},
    "11": {"class_type": "LoraLoader", "inputs": {"lora_name": "film_grain.safetensors", "strength_model": 0.35,
                                                  "strength_clip": 1.0, "model": ["10", 0], "clip": ["10", 1]}},
    "12": {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["11", 1]}},
}
COMFY_WORKFLOW = {  # what ComfyUI writes beside the API graph: the UI graph
    "last_node_id": 5, "last_link_id": 6, "version": 0.4,
    "nodes": [
        {"id": 3, "type": "KSampler", "inputs": [{"name": "model", "type": "MODEL", "link": 1},
                                                 {"name": "positive", "type": "CONDITIONING", "link": 4},
                                                 {"name": "negative", "type": "CONDITIONING", "link": 6},
                                                 {"name": "latent_image", "type": "LATENT", "link": 2}],
         "widgets_values": [4242, "fixed", 30, 5.0, "euler_ancestral", "normal", 1]},
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sdxl/juggernautXL.safetensors"]},
        {"id": 5, "type": "EmptyLatentImage", "widgets_values": [1024, 1024, 1]},
        {"id": 6, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 3}], "widgets_values": ["a koi pond"]},
        {"id": 7, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 5}], "widgets_values": ["murky"]},
        {"id": 8, "type": "LoraLoader", "widgets_values": ["watercolor.safetensors", 0.9, 1.0]},
        {"id": 9, "type": "CLIPSetLastLayer", "widgets_values": [-3]},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
              [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"]],
}


def test_comfyui_png(tmp_path):
    path = app_png(tmp_path / "comfy.png", {"prompt": json.dumps(COMFY_API), "workflow": json.dumps(COMFY_WORKFLOW)})
    params = read_png_parameters(path)
    assert params["source"] == "comfyui"
    assert fields(params, *PANEL) == {
        "prompt": "a misty forest, volumetric light", "negative": "text, watermark", "sampler": "DPM++ SDE Karras",
        "schedule": "karras", "steps": 24, "cfg": 7.5, "seed": 889900112233, "width": 768, "height": 512,
        "clip_skip": 2, "loras": [["styles/moody_light.safetensors", 0.7], ["film_grain.safetensors", 0.35]],
        "model": "SD15/realisticVision_v51.safetensors", "model_hash": None}


def test_comfyui_workflow_only_png(tmp_path):
    params = read_png_parameters(app_png(tmp_path / "wf.png", {"workflow": json.dumps(COMFY_WORKFLOW)}))
    assert fields(params, *PANEL) == {
        "prompt": "a koi pond", "negative": "murky", "sampler": "Euler a", "schedule": "normal", "steps": 30,
        "cfg": 5.0, "seed": 4242, "width": 1024, "height": 1024, "clip_skip": 3,
        "loras": [["watercolor.safetensors", 0.9]], "model": "sdxl/juggernautXL.safetensors", "model_hash": None}


INVOKE_4 = {
    "generation_mode": "txt2img", "positive_prompt": "a brass owl, studio lighting", "negative_prompt": "noisy",
    "width": 832, "height": 1216, "seed": 3293022630, "rand_device": "cpu", "cfg_scale": 6.0,
    "cfg_rescale_multiplier": 0.0, "steps": 35, "scheduler": "dpmpp_2m_k", "clip_skip": 1,
    "model": {"key": "8c8a4b7e", "hash": "sha256:aeb7e9e6897a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0",
              "name": "juggernautXL_v9", "base": "sdxl", "type": "main"},
    "loras": [{"model": {"key": "a1", "hash": "blake3:ff", "name": "brass_details", "base": "sdxl", "type": "lora"},
               "weight": 0.65}],
    "vae": {"key": "v1", "hash": "blake3:aa", "name": "sdxl-vae-fp16-fix", "base": "sdxl", "type": "vae"},
    "positive_style_prompt": "", "negative_style_prompt": "", "app_version": "4.2.9",
}


def test_invokeai_png(tmp_path):
    params = read_png_parameters(app_png(tmp_path / "invoke.png", {"invokeai_metadata": json.dumps(INVOKE_4)}))
    assert params["source"] == "invokeai"
    # InvokeAI's clip_skip counts the layers skipped: 1 is A1111's 2
    assert fields(params, *PANEL) == {
        "prompt": "a brass owl, studio lighting", "negative": "noisy", "sampler": "DPM++ 2M Karras", "schedule": None,
        "steps": 35, "cfg": 6.0, "seed": 3293022630, "width": 832, "height": 1216, "clip_skip": 2,
        "loras": [["brass_details", 0.65]], "model": "juggernautXL_v9", "model_hash": "aeb7e9e689"}


def test_invokeai_3_loras_and_model_fields(tmp_path):
    meta = {"positive_prompt": "x", "seed": 1, "steps": 20, "scheduler": "euler_a", "clip_skip": 0,
            "model": {"model_name": "stable-diffusion-v1-5", "base_model": "sd-1", "model_type": "main"},
            "loras": [{"lora": {"model_name": "paper_cut", "base_model": "sd-1"}, "weight": 0.75}]}
    params = read_png_parameters(app_png(tmp_path / "i3.png", {"invokeai_metadata": json.dumps(meta)}))
    assert fields(params, "sampler", "clip_skip", "loras", "model") == {
        "sampler": "Euler a", "clip_skip": 1, "loras": [["paper_cut", 0.75]], "model": "stable-diffusion-v1-5"}


def test_old_invokeai_dream_png(tmp_path):
    dream = '"a castle on a hill [foggy, blurry] at night" -s 50 -S 2980747362 -W 512 -H 768 -C 7.5 -A k_lms -U 4 0.9'
    params = read_png_parameters(app_png(tmp_path / "dream.png", {"Dream": dream}))
    assert params["source"] == "invokeai"
    assert fields(params, "prompt", "negative", "steps", "seed", "width", "height", "cfg", "sampler") == {
        "prompt": "a castle on a hill  at night", "negative": "foggy, blurry", "steps": 50, "seed": 2980747362,
        "width": 512, "height": 768, "cfg": 7.5, "sampler": "k_lms"}  # k_lms: Collagen has no LMS, named as written
    assert match_sampler(params["sampler_original"]).name is None


FOOOCUS = {  # Fooocus 2.4's "fooocus" metadata scheme: json.dumps(dict(sorted(...)))
    "adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion", "base_model_hash": "aeb7e9e689",
    "clip_skip": 2, "full_negative_prompt": ["(worst quality:1.4)", "anime, cartoon"],
    "full_prompt": ["cinematic still a smiling goldfish", "a smiling goldfish, deep focus"],
    "guidance_scale": 4, "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"]],
    "metadata_scheme": "fooocus", "negative_prompt": "deformed", "performance": "Speed",
    "prompt": "a smiling goldfish", "prompt_expansion": "a smiling goldfish, deep focus", "refiner_model": "None",
    "refiner_switch": 0.5, "resolution": "(768, 1280)", "sampler": "dpmpp_2m", "scheduler": "karras",
    "seed": "1234567890", "sharpness": 2, "steps": 30, "styles": "['Fooocus V2', 'Fooocus Enhance']",
    "vae": "Default (model)", "version": "Fooocus v2.4.3",
}


def test_fooocus_png(tmp_path):
    path = app_png(tmp_path / "fooocus.png", {"parameters": json.dumps(FOOOCUS), "fooocus_scheme": "fooocus"})
    params = read_png_parameters(path)
    assert params["source"] == "fooocus"
    assert fields(params, *PANEL) == {
        "prompt": "a smiling goldfish", "negative": "deformed", "sampler": "DPM++ 2M Karras", "schedule": "karras",
        "steps": 30, "cfg": 4.0, "seed": 1234567890, "width": 768, "height": 1280, "clip_skip": 2,
        "loras": [["sd_xl_offset_example-lora_1.0", 0.1]], "model": "juggernautXL_v8Rundiffusion",
        "model_hash": "aeb7e9e689"}
    assert params["extra"]["performance"] == "Speed" and params["extra"]["version"] == "Fooocus v2.4.3"


def test_fooocus_json_is_never_an_empty_a1111_record(tmp_path):
    # without its scheme chunk (an older Fooocus) the JSON is still Fooocus's
    alone = read_png_parameters(app_png(tmp_path / "f.png", {"parameters": json.dumps(FOOOCUS)}))
    assert alone["source"] == "fooocus" and alone["prompt"] == "a smiling goldfish" and alone["steps"] == 30
    # JSON that is nobody's parameters is not read as an A1111 prompt made of JSON
    assert read_png_parameters(app_png(tmp_path / "j.png", {"parameters": '{"hello": "world"}'})) == {}
    # an A1111 prompt may start with a brace (emphasis): that is still A1111 text
    braces = read_png_parameters(app_png(tmp_path / "b.png", {"parameters": "{{best quality}}, a cat\n"
                                                               "Steps: 5, Sampler: Euler, CFG scale: 7, Seed: 1"}))
    assert braces["source"] == "a1111" and braces["prompt"] == "{{best quality}}, a cat" and braces["steps"] == 5


def test_fooocus_a1111_scheme_is_fooocus_in_a1111_words(tmp_path):
    text = ("a smiling goldfish\nNegative prompt: deformed\nSteps: 30, Sampler: DPM++ 2M SDE Karras, Seed: 5, "
            "Size: 896x1152, CFG scale: 4, Sharpness: 2, Model: juggernautXL, Model hash: aeb7e9e689, "
            "Scheduler: karras, Version: Fooocus v2.4.3")
    params = read_png_parameters(app_png(tmp_path / "fa.png", {"parameters": text, "fooocus_scheme": "a1111"}))
    assert params["source"] == "fooocus"
    assert fields(params, "prompt", "negative", "steps", "seed", "width", "height", "cfg", "sampler") == {
        "prompt": "a smiling goldfish", "negative": "deformed", "steps": 30, "seed": 5, "width": 896,
        "height": 1152, "cfg": 4.0, "sampler": "DPM++ 2M SDE Karras"}  # Collagen has no 2M SDE: as written


NOVELAI_COMMENT = {
    "prompt": "masterpiece, best quality, cat, space, icon", "steps": 28, "height": 1216, "width": 832,
    "scale": 5.0, "uncond_scale": 1.0, "cfg_rescale": 0.0, "seed": 2253955223, "n_samples": 1, "hide_debug_overlay": False,
    "noise_schedule": "native", "legacy_v3_extend": False, "sampler": "k_euler_ancestral", "sm": False,
    "sm_dyn": False, "uc": "lowres, bad anatomy, bad hands", "request_type": "PromptGenerateRequest",
}


def test_novelai_png(tmp_path):
    path = app_png(tmp_path / "nai.png", {
        "Title": "AI generated image", "Description": "masterpiece, best quality, cat, space, icon",
        "Software": "NovelAI", "Source": "Stable Diffusion XL C1E1DE52", "Generation time": "6.1",
        "Comment": json.dumps(NOVELAI_COMMENT)})
    params = read_png_parameters(path)
    assert params["source"] == "novelai"
    assert fields(params, *PANEL) == {
        "prompt": "masterpiece, best quality, cat, space, icon", "negative": "lowres, bad anatomy, bad hands",
        "sampler": "Euler a", "schedule": "native", "steps": 28, "cfg": 5.0, "seed": 2253955223, "width": 832,
        "height": 1216, "clip_skip": None, "loras": [], "model": "Stable Diffusion XL", "model_hash": "C1E1DE52"}


def test_a_comment_chunk_of_another_program_is_no_novelai_record(tmp_path):
    assert read_png_parameters(app_png(tmp_path / "gimp.png", {"Comment": "Created with GIMP",
                                                               "Software": "GIMP 2.10"})) == {}
    broken = app_png(tmp_path / "nai.png", {"Software": "NovelAI", "Description": "a cat", "Comment": "{oops"})
    assert read_png_parameters(broken) == {}


# ---- the sampler table ----------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "schedule", "collagen", "exact"), [
    ("DPM++ 2M Karras", None, "DPM++ 2M Karras", True),  # A1111 before 1.9
    ("DPM++ 2M", "Karras", "DPM++ 2M Karras", True),  # A1111 1.9+: the schedule on its own
    ("Euler a", "Automatic", "Euler a", True),
    ("dpmpp_2m", "karras", "DPM++ 2M Karras", True),  # ComfyUI / Fooocus
    ("dpmpp_2m", "normal", "DPM++ 2M", True),
    ("euler_ancestral", "simple", "Euler a", True),
    ("dpmpp_sde_gpu", "karras", "DPM++ SDE Karras", True),
    ("uni_pc", "normal", "UniPC", True),
    ("k_euler_ancestral", "native", "Euler a", True),  # NovelAI
    ("k_dpmpp_2m_ka", None, "DPM++ 2M Karras", True),  # k-diffusion aliases
    ("sample_euler", None, "Euler", True),
    ("dpmpp_2m_k", None, "DPM++ 2M Karras", True),  # InvokeAI
    ("dpmpp_sde_k", None, "DPM++ SDE Karras", True),
    ("lcm", None, "LCM", True),
    ("sample_dpmpp_sde", None, "DPM++ SDE Karras", False),  # Collagen runs SDE only with Karras sigmas
    ("euler", "karras", "Euler", False),
    ("dpmpp_2m", "exponential", "DPM++ 2M", False),
    ("k_lms", None, None, False),
    ("dpmpp_2m_sde_gpu", "karras", None, False),
    ("DPM++ 2M SDE Karras", None, None, False),
])
def test_other_apps_sampler_names(written, schedule, collagen, exact):
    match = match_sampler(written, schedule)
    assert (match.name, match.exact) == (collagen, exact)
    assert bool(match.note) != exact  # what differs is always said, and only then
