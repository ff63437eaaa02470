"""PNG parameters: Collagen's export, and reading A1111, ComfyUI and InvokeAI files."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from canvas.io.errors import ProjectError
from canvas.io.limits import ReadLimits
from canvas.io.png_info import array_sha256, format_parameters, parse_a1111, read_png_parameters, write_png

RGB = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def png_with(path: Path, *chunks: bytes) -> Path:
    """A valid 2x2 PNG with extra chunks inserted before IEND."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    assert data.endswith(chunk(b"IEND", b""))
    path.write_bytes(data[:-12] + b"".join(chunks) + data[-12:])
    return path


def text_chunk(key: str, text: str) -> bytes:
    return chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1"))


def itxt_chunk(key: str, text: str, compressed: bool = False) -> bytes:
    body = text.encode("utf-8")
    if compressed:
        body = zlib.compress(body)
    return chunk(b"iTXt", key.encode("latin-1") + b"\0" + bytes([int(compressed), 0]) + b"\0\0" + body)


ENGINE_PARAMETERS = {
    "prompt": "夕焼け, a cat: sleeping 😺\nsecond line", "negative_prompt": "blurry, lowres", "steps": 24,
    "sampler": "DPM++ 2M Karras", "cfg_scale": 6.5, "seed": 4242424242, "width": 512, "height": 768,
    "size": "512x768", "model": "my model, v2", "model_hash": "0123abcd", "clip_skip": 2,
    "denoising_strength": 0.75, "loras": [{"name": "x", "weight": 0.5}], "lcm": False, "vae": None,
}


# ---- writing ----------------------------------------------------------------------------------


def test_a1111_text_layout_and_quoting():
    text = format_parameters(ENGINE_PARAMETERS, 5, 6)
    assert text.split("\n") == [
        "夕焼け, a cat: sleeping 😺",
        "second line",
        "Negative prompt: blurry, lowres",
        'Steps: 24, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 4242424242, Size: 512x768, '
        'Model hash: 0123abcd, Model: "my model, v2", Clip skip: 2, Denoising strength: 0.75, LCM: False',
    ]
    parsed = parse_a1111(text)
    assert parsed["prompt"] == ENGINE_PARAMETERS["prompt"] and parsed["negative"] == "blurry, lowres"
    assert parsed["model"] == "my model, v2" and parsed["extra"]["Clip skip"] == "2"


def test_format_without_sizes_uses_the_image_size_and_omits_empty_negative():
    text = format_parameters({"prompt": "p", "steps": 4, "sampler": "Euler", "cfg": 7.0, "seed": 1}, 64, 32)
    assert text == "p\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x32"


def test_write_then_read_round_trips_through_the_collagen_chunk(tmp_path):
    path = tmp_path / "out.png"
    mask = np.zeros((6, 5), np.uint8)
    mask[1:3] = 255
    write_png(path, RGB, ENGINE_PARAMETERS, {"mode": "regions", "regions": [{"prompt": "海", "mask": mask}],
                                             "settings": {"steps": 24}})
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    with Image.open(path) as image:
        assert np.array_equal(np.asarray(image), RGB)
        assert image.text["parameters"] == format_parameters(ENGINE_PARAMETERS, 5, 6)
        record = json.loads(image.text["collagen"])
    assert record["format_version"] == 1 and record["mode"] == "regions"
    assert record["regions"][0]["mask"] == {"sha256": array_sha256(mask), "shape": [6, 5], "dtype": "uint8"}
    params = read_png_parameters(path)
    assert params["source"] == "collagen"
    expected = {"prompt": ENGINE_PARAMETERS["prompt"], "negative": "blurry, lowres", "steps": 24,
                "sampler": "DPM++ 2M Karras", "cfg": 6.5, "seed": 4242424242, "width": 512, "height": 768,
                "model": "my model, v2", "model_hash": "0123abcd"}
    assert {k: params[k] for k in expected} == expected
    assert params["extra"]["clip_skip"] == 2 and params["collagen"]["settings"] == {"steps": 24}


def test_parameters_alone_are_read_the_a1111_way(tmp_path):
    path = tmp_path / "out.png"
    write_png(path, RGB, ENGINE_PARAMETERS)
    with Image.open(path) as image:
        text = image.text["parameters"]
    only_a1111 = png_with(tmp_path / "a1111.png", itxt_chunk("parameters", text))
    params = read_png_parameters(only_a1111)
    assert params["source"] == "a1111"
    assert (params["prompt"], params["steps"], params["cfg"], params["seed"], params["width"], params["height"]) == \
        (ENGINE_PARAMETERS["prompt"], 24, 6.5, 4242424242, 512, 768)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((0, 4, 3), np.uint8), "not an array"])
def test_write_refuses_what_is_not_rgb(tmp_path, bad):
    with pytest.raises(ProjectError, match="out.png: cannot be written: the image is not HxWx3"):
        write_png(tmp_path / "out.png", bad, {})


def test_write_refuses_reserved_keys_oversized_text_and_missing_folders(tmp_path):
    with pytest.raises(ProjectError, match="reserved key 'parameters'"):
        write_png(tmp_path / "a.png", RGB, {}, {"parameters": 1})
    with pytest.raises(ProjectError, match="longer than the 100 bytes"):
        write_png(tmp_path / "a.png", RGB, {"prompt": "x" * 200}, limits=ReadLimits(max_text_chunk=100))
    with pytest.raises(ProjectError, match="cannot be stored"):
        write_png(tmp_path / "a.png", RGB, {"prompt": object()})
    with pytest.raises(ProjectError, match="cannot be written"):
        write_png(tmp_path / "missing" / "a.png", RGB, {})
    assert list(tmp_path.iterdir()) == []


# ---- reading other apps' files ----------------------------------------------------------------

A1111_TEXT = (
    "masterpiece, 1girl, <lora:detail:0.6>\n"
    "Negative prompt: lowres, bad anatomy\n"
    "more negative\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3170145342, Size: 512x768, "
    'Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.5, Clip skip: 2, '
    'Lora hashes: "detail: 1b2c3d", Version: v1.10.1'
)


def test_reads_an_a1111_png(tmp_path):
    params = read_png_parameters(png_with(tmp_path / "a.png", text_chunk("parameters", A1111_TEXT)))
    assert params == {
        "source": "a1111", "prompt": "masterpiece, 1girl, <lora:detail:0.6>",
        "negative": "lowres, bad anatomy\nmore negative", "steps": 28, "sampler": "DPM++ 2M Karras", "cfg": 7.0,
        "seed": 3170145342, "width": 512, "height": 768, "model": "anything-v5", "model_hash": "7f96a1a9ca",
        "sampler_original": "DPM++ 2M", "schedule": "Karras", "clip_skip": 2, "loras": [],
        "extra": {"Schedule type": "Karras", "Denoising strength": "0.5", "Clip skip": "2",
                  "Lora hashes": "detail: 1b2c3d", "Version": "v1.10.1"},
    }


def test_a1111_text_without_a_parameter_line_is_all_prompt():
    parsed = parse_a1111("just a prompt, with: one colon")
    assert parsed["prompt"] == "just a prompt, with: one colon" and parsed.get("steps") is None


def test_a1111_parser_is_linear_on_hostile_lines():
    started = time.perf_counter()
    for line in ("a" * 1_000_000, "a:" * 500_000, '"' * 1_000_000, "Steps: 1, " * 100_000 + 'x: "' + "b" * 100_000,
                 'k: "a, ' * 150_000, 'k: "\\\\\\", ' * 100_000):
        parse_a1111("prompt\n" + line)
    assert time.perf_counter() - started < 30  # quadratic parsing would take hours on these


COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "dpmpp_2m", "scheduler": "karras",
        "denoise": 1, "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 384, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["11", 0], "clip": ["10", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["10", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "detail.safetensors", "strength_model": 1,
                                                  "strength_clip": 1, "model": ["4", 0], "clip": ["4", 1]}},
    "11": {"class_type": "PrimitiveString", "inputs": {"value": "beautiful scenery 山"}},
    "12": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 5, "model": ["12", 0]}},  # a later pass
}


def test_reads_a_comfyui_api_graph(tmp_path):
    path = png_with(tmp_path / "c.png", itxt_chunk("prompt", json.dumps(COMFY_PROMPT, ensure_ascii=False)),
                    text_chunk("workflow", "{}"))
    params = read_png_parameters(path)
    assert params == {
        "source": "comfyui", "prompt": "beautiful scenery 山", "negative": "text, watermark", "steps": 20,
        "sampler": "DPM++ 2M Karras", "cfg": 8.0, "seed": 156680208700286, "width": 640, "height": 384,
        "model": "v1-5-pruned-emaonly.safetensors", "model_hash": None,
        "sampler_original": "dpmpp_2m", "schedule": "karras", "clip_skip": None, "loras": [["detail.safetensors", 1.0]],
        "extra": {"scheduler": "karras", "denoise": 1},
    }


def test_comfyui_graph_with_a_link_loop_terminates(tmp_path):
    graph = {"1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "model": ["2", 0]}},
             "2": {"class_type": "Loop", "inputs": {"a": ["3", 0]}},
             "3": {"class_type": "Loop", "inputs": {"b": ["2", 0]}}}
    params = read_png_parameters(png_with(tmp_path / "c.png", text_chunk("prompt", json.dumps(graph))))
    assert params["source"] == "comfyui" and params["prompt"] == "" and params["model"] is None


COMFY_WORKFLOW = {
    "nodes": [
        {"id": 3, "type": "KSampler", "inputs": [{"name": "model", "link": 1}, {"name": "positive", "link": 4},
                                                 {"name": "negative", "link": 6}, {"name": "latent_image", "link": 2}],
         "widgets_values": [42, "fixed", 25, 6.5, "euler_ancestral", "normal", 1]},
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["sdxl.safetensors"]},
        {"id": 5, "type": "EmptyLatentImage", "widgets_values": [1024, 768, 1]},
        {"id": 6, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 3}], "widgets_values": ["a fox"]},
        {"id": 7, "type": "CLIPTextEncode", "inputs": [{"name": "clip", "link": 5}], "widgets_values": ["ugly"]},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
              [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"]],
}


def test_reads_a_comfyui_workflow_when_there_is_no_api_graph(tmp_path):
    params = read_png_parameters(png_with(tmp_path / "w.png", text_chunk("workflow", json.dumps(COMFY_WORKFLOW))))
    assert params == {
        "source": "comfyui", "prompt": "a fox", "negative": "ugly", "steps": 25, "sampler": "Euler a",
        "cfg": 6.5, "seed": 42, "width": 1024, "height": 768, "model": "sdxl.safetensors", "model_hash": None,
        "sampler_original": "euler_ancestral", "schedule": "normal", "clip_skip": None, "loras": [],
        "extra": {"scheduler": "normal", "denoise": 1},
    }


def test_reads_invokeai_metadata(tmp_path):
    meta = {"generation_mode": "txt2img", "positive_prompt": "castle 🏰", "negative_prompt": "fog",
            "width": 768, "height": 512, "seed": 99, "cfg_scale": 7.5, "steps": 30, "scheduler": "dpmpp_2m_k",
            "model": {"key": "k1", "hash": "blake3:abc", "name": "Juggernaut XL", "base": "sdxl", "type": "main"}}
    params = read_png_parameters(png_with(tmp_path / "i.png", itxt_chunk("invokeai_metadata", json.dumps(meta))))
    assert params == {
        "source": "invokeai", "prompt": "castle 🏰", "negative": "fog", "steps": 30, "sampler": "DPM++ 2M Karras",
        "cfg": 7.5, "seed": 99, "width": 768, "height": 512, "model": "Juggernaut XL", "model_hash": "blake3:abc",
        "sampler_original": "dpmpp_2m_k", "schedule": None, "clip_skip": None, "loras": [],
        "extra": {"generation_mode": "txt2img"},
    }


def test_reads_legacy_invokeai_sd_metadata(tmp_path):
    meta = {"model": "stable diffusion", "model_weights": "stable-diffusion-1.5", "model_hash": "cc6cb27103",
            "app_id": "invoke-ai/InvokeAI", "app_version": "2.2.5",
            "image": {"prompt": [{"prompt": "a lighthouse [blurry, dark] at dawn", "weight": 1.0}], "steps": 50,
                      "cfg_scale": 7.5, "height": 512, "width": 640, "seed": 3357757885, "sampler": "k_euler_a"}}
    params = read_png_parameters(png_with(tmp_path / "s.png", text_chunk("sd-metadata", json.dumps(meta))))
    assert (params["source"], params["prompt"], params["negative"], params["sampler"], params["steps"],
            params["seed"], params["width"], params["model"], params["model_hash"]) == \
        ("invokeai", "a lighthouse  at dawn", "blurry, dark", "Euler a", 50, 3357757885, 640,
         "stable-diffusion-1.5", "cc6cb27103")


def test_a_png_without_parameters_gives_an_empty_dict(tmp_path):
    assert read_png_parameters(png_with(tmp_path / "plain.png", text_chunk("Software", "GIMP"))) == {}


def test_compressed_text_chunks_are_read(tmp_path):
    path = png_with(tmp_path / "z.png", itxt_chunk("parameters", A1111_TEXT, compressed=True))
    assert read_png_parameters(path)["seed"] == 3170145342
    ztxt = chunk(b"zTXt", b"parameters\0\0" + zlib.compress(A1111_TEXT.encode("latin-1")))
    assert read_png_parameters(png_with(tmp_path / "z2.png", ztxt))["steps"] == 28


# ---- broken files -----------------------------------------------------------------------------


def valid_png(tmp_path: Path) -> bytes:
    return png_with(tmp_path / "valid.png", text_chunk("parameters", A1111_TEXT)).read_bytes()


def test_broken_pngs_are_project_errors(tmp_path):
    good = valid_png(tmp_path)
    flipped = bytearray(good)
    flipped[good.index(b"tEXt") + 8] ^= 0x01
    no_iend = good[:-12]
    cases = {
        "truncated.png": (good[: len(good) // 2], "truncated"),
        "crc.png": (bytes(flipped), "tEXt chunk is damaged (checksum mismatch)"),
        "no_iend.png": (no_iend, "truncated"),
        "not_png.png": (b"GIF89a" + b"\0" * 40, "not a PNG image"),
        "empty.png": (b"", "not a PNG image"),
        "no_ihdr.png": (b"\x89PNG\r\n\x1a\n" + chunk(b"IDAT", b"x") + chunk(b"IEND", b""), "IHDR"),
        "huge_chunk.png": (good[:33] + struct.pack(">I", 0x7FFFFFFF) + b"tEXt" + b"xx", "truncated"),
        "bad_type.png": (good[:33] + chunk(b"t\x00Xt", b"a\0b") + good[33:], "invalid chunk type"),
        "unknown_critical.png": (good[:33] + chunk(b"ABCD", b"") + good[33:], "unknown critical chunk ABCD"),
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ProjectError) as caught:
            read_png_parameters(path)
        message = str(caught.value)
        assert message.startswith(f"{name}: ") and expected in message and message.endswith("."), message


def test_text_limits_and_bombs(tmp_path):
    big = png_with(tmp_path / "big.png", text_chunk("parameters", "x" * (1024 * 1024 + 1)))
    with pytest.raises(ProjectError, match="text chunk longer than"):
        read_png_parameters(big)
    bomb = png_with(tmp_path / "bomb.png", itxt_chunk("parameters", "0" * (20 << 20), compressed=True))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ProjectError, match="text chunk longer than"):
        read_png_parameters(bomb)
    cut = chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"abc" * 100)[:-6])
    with pytest.raises(ProjectError, match="cut short"):
        read_png_parameters(png_with(tmp_path / "cut.png", cut))
    many = png_with(tmp_path / "many.png", *(text_chunk(f"k{i}", "y" * 1000) for i in range(20)))
    with pytest.raises(ProjectError, match="text chunks together"):
        read_png_parameters(many, ReadLimits(max_text_total=10_000))


@pytest.mark.parametrize("key", ["collagen", "prompt", "invokeai_metadata", "workflow", "sd-metadata"])
def test_metadata_that_is_not_json_is_a_project_error(tmp_path, key):
    path = png_with(tmp_path / "j.png", text_chunk(key, "{broken"))
    with pytest.raises(ProjectError, match=f"j.png: has '{key}' metadata that is not valid JSON"):
        read_png_parameters(path)
    deep = png_with(tmp_path / "deep.png", text_chunk(key, "[" * 200_000))
    with pytest.raises(ProjectError, match="nested too deeply|not valid JSON"):
        read_png_parameters(deep)


@pytest.mark.parametrize("value", ["[]", "123", '"text"', '{"nodes": 5}', '{"parameters": 3}'])
def test_json_of_the_wrong_shape_is_ignored_not_a_crash(tmp_path, value):
    for key in ("collagen", "prompt", "invokeai_metadata", "workflow", "sd-metadata"):
        assert read_png_parameters(png_with(tmp_path / f"{key}.png", text_chunk(key, value))) == {}


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ProjectError, match="nope.png: does not exist"):
        read_png_parameters(tmp_path / "nope.png")
    with pytest.raises(ProjectError, match="is a folder"):
        read_png_parameters(tmp_path)


def test_pillow_reads_what_we_write_as_itxt_for_non_latin_prompts(tmp_path):
    path = tmp_path / "jp.png"
    write_png(path, RGB, {"prompt": "桜 🌸", "steps": 1, "sampler": "Euler", "cfg": 1, "seed": 0})
    with Image.open(path) as image:
        assert isinstance(image, PngImagePlugin.PngImageFile)
        assert image.text["parameters"].startswith("桜 🌸\n")
