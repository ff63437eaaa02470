"""Hand-made documents shared by the canvas tests."""

from __future__ import annotations

import numpy as np

from canvas.model.document import Document, GenerationSettings
from canvas.model.layers import ImageLayer, LoraRef, MaskLayer, RegionLayer, ScribbleLayer, Stroke


def rgba(h: int, w: int, rgb: tuple[int, int, int], alpha: int = 255) -> np.ndarray:
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3] = rgb
    out[..., 3] = alpha
    return out


def every_kind_document(width: int = 96, height: int = 64, seed: int = 7) -> Document:
    """One layer of every kind and flag, non-trivial transforms, Japanese and emoji text."""
    rng = np.random.default_rng(seed)
    settings = GenerationSettings(mode="regions", prompt="夕焼けの海辺 🌅, highly detailed", negative="ぼやけ, 低品質",
                                  sampler="DPM++ 2M Karras", steps=24, cfg=6.5, seed=1234567, clip_skip=2,
                                  loras=[["film grain", 0.4]], strength=0.6)
    doc = Document(width, height, settings=settings)
    background = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    background[..., 3] = 255
    doc.add_layer_untracked(ImageLayer(name="背景", pixels=background))
    piece = rng.integers(0, 256, (23, 17, 4), dtype=np.uint8)  # random alpha too, colours under alpha 0
    doc.add_layer_untracked(ImageLayer(name="piece 🍣", pixels=piece, x=12.375, y=-3.5, scale=1.75,
                                       rotation=-33.25, opacity=0.8, collage=True))
    doc.add_layer_untracked(ImageLayer(name="moved", pixels=rng.integers(0, 256, (9, 11, 4), dtype=np.uint8),
                                       x=50, y=40, locked=True))
    doc.add_layer_untracked(ImageLayer(name="reference 参照", pixels=rng.integers(0, 256, (30, 20, 4), dtype=np.uint8),
                                       x=5, y=6, scale=0.5, reference=True))
    doc.add_layer_untracked(ImageLayer(name="hidden", pixels=rng.integers(0, 256, (4, 4, 4), dtype=np.uint8),
                                       visible=False, rotation=90.0))
    mask = np.zeros((height, width), np.uint8)
    mask[10:30, 20:60] = 255
    mask[31, 5:9] = (1, 77, 128, 254)
    doc.add_layer_untracked(MaskLayer(name="マスク", pixels=mask, opacity=0.5))
    doc.add_layer_untracked(RegionLayer(name="猫の領域", rect=(4, 8, 30, 20), prompt="眠る猫 😺, soft light",
                                        negative="犬", strength=1.35, color="#3366cc",
                                        loras=(LoraRef("cat-style", 0.7), LoraRef("ライティング", -0.25))))
    painted = rng.integers(0, 256, (height, width), dtype=np.uint8)
    doc.add_layer_untracked(RegionLayer(name="painted", mask=painted, prompt="sky ☁️", strength=0.5,
                                        visible=False, rect=(1, 2, 3, 4)))
    doc.add_layer_untracked(ScribbleLayer(name="sketch", mode="sketch", strokes=(
        Stroke(((3.5, 4.25), (40.0, 30.5), (60.125, 12.0)), "#ff8800", 5.5),
        Stroke(((80.0, 50.0),), "#00ff00", 3.0),
    )))
    doc.add_layer_untracked(ScribbleLayer(name="注釈 ✏️", mode="annotation", opacity=0.6, strokes=(
        Stroke(tuple((float(x), 20.0 + (x % 7)) for x in range(10, 90, 3)), "#123456", 2.0),
    )))
    doc.add_layer_untracked(ScribbleLayer(name="empty scribble", strokes=()))
    return doc
