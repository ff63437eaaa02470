"""Seed inputs the mutators start from: small, valid files of every shape the readers accept.

Built in code (nothing is downloaded or checked in), small enough that one read takes a few
milliseconds, and varied enough that mutations reach every branch: every layer kind in a project,
a plain OpenRaster from another app, PNGs carrying Collagen, A1111, ComfyUI and InvokeAI metadata
in tEXt, zTXt and iTXt chunks, and safetensors files with metadata and several dtypes.
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fuzz.mutator import png_bytes, png_chunks


def _saved_ora(document) -> bytes:
    from canvas.io.ora import save_ora

    with tempfile.TemporaryDirectory(prefix="collagen-seed-") as folder:
        path = Path(folder) / "seed.ora"
        save_ora(document, path)
        return path.read_bytes()


def small_project(width: int = 24, height: int = 16, seed: int = 3):
    """A document with one layer of every kind (and the flags other apps see) at a tiny size."""
    from canvas.model.document import Document, GenerationSettings
    from canvas.model.layers import ImageLayer, LoraRef, MaskLayer, RegionLayer, ScribbleLayer, Stroke

    rng = np.random.default_rng(seed)
    settings = GenerationSettings(mode="regions", prompt="a fox, 狐", negative="blurry", steps=4, seed=42,
                                  loras=[["style", 0.5]])
    document = Document(width, height, settings=settings)
    background = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    background[..., 3] = 255
    document.add_layer_untracked(ImageLayer(name="background", pixels=background))
    document.add_layer_untracked(ImageLayer(name="piece", pixels=rng.integers(0, 256, (5, 7, 4), dtype=np.uint8),
                                            x=3.5, y=-1.25, scale=1.5, rotation=12.0, opacity=0.8, collage=True))
    document.add_layer_untracked(ImageLayer(name="ref", pixels=rng.integers(0, 256, (3, 3, 4), dtype=np.uint8),
                                            reference=True, visible=False, locked=True))
    mask = np.zeros((height, width), np.uint8)
    mask[2:9, 4:15] = 255
    document.add_layer_untracked(MaskLayer(name="mask", pixels=mask, opacity=0.5))
    document.add_layer_untracked(RegionLayer(name="box", rect=(1, 2, 10, 8), prompt="a cat", negative="dog",
                                             strength=1.25, color="#3366cc", loras=(LoraRef("cat", 0.7),)))
    document.add_layer_untracked(RegionLayer(name="painted", mask=rng.integers(0, 256, (height, width), dtype=np.uint8),
                                             prompt="sky", strength=0.5))
    document.add_layer_untracked(ScribbleLayer(name="sketch", mode="sketch", strokes=(
        Stroke(((1.0, 2.0), (10.5, 12.0)), "#ff8800", 2.5), Stroke(((20.0, 3.0),), "#00ff00", 1.0))))
    document.add_layer_untracked(ScribbleLayer(name="note", mode="annotation", strokes=(
        Stroke(((2.0, 2.0), (5.0, 9.0), (9.0, 1.0)), "#123456", 1.5),)))
    return document


def image_only_project(width: int = 8, height: int = 8):
    from canvas.model.document import Document
    from canvas.model.layers import ImageLayer

    document = Document(width, height)
    pixels = np.zeros((height, width, 4), np.uint8)
    pixels[..., 0] = np.arange(width, dtype=np.uint8)[None, :] * 30
    pixels[..., 3] = 255
    document.add_layer_untracked(ImageLayer(name="only", pixels=pixels))
    return document


def plain_ora(width: int = 12, height: int = 10) -> bytes:
    """An OpenRaster file as another app writes it: nested stacks, offsets, no project.json."""
    layer = _png_of(np.full((height // 2, width // 2, 4), (10, 200, 30, 255), np.uint8))
    base = _png_of(np.full((height, width, 4), (250, 250, 250, 255), np.uint8))
    stack = (f'<?xml version="1.0" encoding="UTF-8"?><image version="0.0.3" w="{width}" h="{height}">'
             '<stack><stack x="1" y="2" opacity="0.5" name="group">'
             '<layer src="data/top.png" name="top" x="1" y="1" visibility="visible"/></stack>'
             '<layer src="data/base.png" name="base" opacity="1.0" composite-op="svg:src-over"/>'
             '</stack></image>').encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), b"image/openraster")
        archive.writestr("stack.xml", stack, zipfile.ZIP_DEFLATED)
        archive.writestr("data/top.png", layer)
        archive.writestr("data/base.png", base)
        archive.writestr("mergedimage.png", base)
    return buffer.getvalue()


def grouped_project(width: int = 20, height: int = 14, seed: int = 5):
    """Blend modes, a half-opaque isolated group holding a pass-through group, transformed members."""
    from canvas.model.document import Document
    from canvas.model.layers import BLEND_MODES, GroupLayer, ImageLayer

    rng = np.random.default_rng(seed)
    document = Document(width, height)
    outer, inner = GroupLayer(name="outer", opacity=0.5, blend="multiply"), GroupLayer(name="inner", isolated=False)
    inner.group = outer.id
    for number, mode in enumerate(BLEND_MODES[:6]):
        document.add_layer_untracked(ImageLayer(name=mode, pixels=rng.integers(0, 256, (6, 5, 4), dtype=np.uint8),
                                                x=number * 3, y=number, blend=mode))
    document.add_layer_untracked(ImageLayer(name="in inner", pixels=rng.integers(0, 256, (4, 4, 4), dtype=np.uint8),
                                            x=2.5, scale=0.5, rotation=30.0, blend="dst-in", group=inner.id))
    document.add_layer_untracked(inner)
    document.add_layer_untracked(ImageLayer(name="in outer", pixels=rng.integers(0, 256, (5, 5, 4), dtype=np.uint8),
                                            blend="hue", group=outer.id))
    document.add_layer_untracked(outer)
    return document


def ora_seeds() -> list[bytes]:
    return [_saved_ora(small_project()), _saved_ora(image_only_project()), plain_ora(), _saved_ora(grouped_project())]


def psd_seeds() -> list[bytes]:
    """Layered PSDs as Collagen writes them: every kind of layer, and groups with blend modes."""
    import tempfile
    from pathlib import Path

    from canvas.io.psd import save_psd

    out = []
    with tempfile.TemporaryDirectory(prefix="collagen-fuzz-seed-") as folder:
        for document in (small_project(), grouped_project()):
            path = Path(folder) / "seed.psd"
            save_psd(document, path)
            out.append(path.read_bytes())
    return out


# ---- PNG ----------------------------------------------------------------------------------------


def _png_of(array: np.ndarray, **save_options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", **save_options)
    return buffer.getvalue()


def _with_texts(image_png: bytes, texts: list[tuple[bytes, bytes]]) -> bytes:
    chunks = png_chunks(image_png)
    assert chunks is not None
    return png_bytes([chunks[0], *texts, *chunks[1:]])


COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                                                "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                "positive": ["6", 0], "negative": ["7", 0],
                                                "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
}
COMFY_WORKFLOW = {
    "nodes": [
        {"id": 3, "type": "KSampler", "widgets_values": [5, "fixed", 20, 7.5, "euler", "normal", 1.0],
         "inputs": [{"name": "positive", "link": 1}, {"name": "negative", "link": 2},
                    {"name": "latent_image", "link": 3}]},
        {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a fox"], "inputs": []},
        {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["blurry"], "inputs": []},
        {"id": 5, "type": "EmptyLatentImage", "widgets_values": [512, 512, 1], "inputs": []},
        {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["model.safetensors"]},
    ],
    "links": [[1, 6, 0, 3, 1, "CONDITIONING"], [2, 7, 0, 3, 2, "CONDITIONING"], [3, 5, 0, 3, 3, "LATENT"]],
}
INVOKE_METADATA = {"positive_prompt": "a fox", "negative_prompt": "blurry", "steps": 30, "scheduler": "euler_a",
                   "cfg_scale": 7, "seed": 9, "width": 512, "height": 768,
                   "model": {"model_name": "sd-1.5", "hash": "abc"}}
SD_METADATA = {"model_weights": "sd-1.4", "image": {"prompt": [{"prompt": "a fox [blurry]"}], "steps": 50,
                                                      "sampler": "k_euler_a", "cfg_scale": 7.5, "seed": 3,
                                                      "width": 512, "height": 512}}
A1111_TEXT = ("a fox in the snow, (detailed:1.2)\nNegative prompt: blurry, lowres\n"
              'Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, '
              'Model hash: abcdef1234, Model: sd15, Lora hashes: "a: 1, b: 2", Version: v1.9.0')


def png_seeds() -> list[bytes]:
    """PNGs with each app's metadata, written by Collagen's own writer and by hand."""
    from canvas.io.png_info import write_png

    rgb = np.arange(8 * 6 * 3, dtype=np.uint8).reshape(6, 8, 3)
    seeds = []
    with tempfile.TemporaryDirectory(prefix="collagen-seed-") as folder:
        path = Path(folder) / "seed.png"
        write_png(path, rgb, {"prompt": "a fox, 狐", "negative_prompt": "blurry", "steps": 4, "sampler": "Euler a",
                              "cfg_scale": 7.0, "seed": 42, "width": 8, "height": 6, "model": "builtin:tiny-sd15",
                              "model_hash": "0123456789", "denoising_strength": 0.5},
                  {"mode": "regions", "regions": [{"prompt": "a cat", "mask": np.ones((2, 2), np.float32)}]})
        seeds.append(path.read_bytes())
    plain = _png_of(rgb)
    seeds += [
        _with_texts(plain, [(b"tEXt", b"parameters\0" + A1111_TEXT.encode("latin-1"))]),
        _with_texts(plain, [(b"tEXt", b"prompt\0" + json.dumps(COMFY_PROMPT).encode()),
                            (b"tEXt", b"workflow\0" + json.dumps(COMFY_WORKFLOW).encode())]),
        _with_texts(plain, [(b"zTXt", b"workflow\0\0" + zlib.compress(json.dumps(COMFY_WORKFLOW).encode()))]),
        _with_texts(plain, [(b"iTXt", b"invokeai_metadata\0\0\0en\0\0" + json.dumps(INVOKE_METADATA).encode())]),
        _with_texts(plain, [(b"iTXt", b"sd-metadata\0\x01\0\0\0" + zlib.compress(json.dumps(SD_METADATA).encode()))]),
        plain,
        _png_of(np.arange(64, dtype=np.uint8).reshape(8, 8), optimize=True),
        _png_of((np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)),
    ]
    return seeds


# ---- safetensors --------------------------------------------------------------------------------


def safetensors_bytes(tensors: dict[str, tuple[str, tuple[int, ...]]], metadata: dict[str, str] | None = None,
                      *, fill: int = 0) -> bytes:
    """A valid safetensors file with zero-filled (or `fill`-filled) data of the given dtypes and shapes."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "F64": 8, "I32": 4, "BOOL": 1}
    header: dict = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        count = int(np.prod(shape)) if shape else 1
        size = count * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + bytes([fill]) * offset


def safetensors_seeds() -> list[bytes]:
    return [
        safetensors_bytes({"model.diffusion_model.input_blocks.0.0.weight": ("F16", (8, 4, 3, 3)),
                           "first_stage_model.decoder.conv_in.weight": ("F32", (4, 4, 1, 1)),
                           "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight":
                               ("F16", (77, 8))},
                          {"format": "pt", "modelspec.title": "tiny"}),
        safetensors_bytes({"lora_unet_down.lora_down.weight": ("F32", (4, 16)), "lora_unet_down.alpha": ("F32", ()),
                           "lora_unet_down.lora_up.weight": ("BF16", (16, 4))}),
        safetensors_bytes({"emb_params": ("F32", (2, 8)), "step": ("I64", (1,))}, {"name": "style"}),
        safetensors_bytes({}),
        safetensors_bytes({"x": ("U8", (0,)), "y": ("BOOL", (3,)), "z": ("F64", (1, 1))}, {}),
    ]


# ---- pickled checkpoints ------------------------------------------------------------------------


def checkpoint_seeds() -> list[bytes]:
    """torch.save outputs: zip format, legacy format, a state_dict wrapper and an A1111 embedding."""
    import torch

    weights = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3),
               "first_stage_model.decoder.conv_in.weight": torch.ones(4, 4, 1, 1, dtype=torch.float16)}
    seeds = []
    for obj, legacy in ((weights, False), (weights, True), ({"state_dict": weights, "epoch": 3}, False),
                        ({"string_to_param": {"*": torch.zeros(2, 8)}, "name": "style", "step": 10}, False)):
        buffer = io.BytesIO()
        torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
        seeds.append(buffer.getvalue())
    return seeds
