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


def _gradient_patch(h: int, w: int, seed: int, alpha_low: int = 90) -> np.ndarray:
    """Smooth colours (blend modes show their shape) with alpha from alpha_low to opaque."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((h, w, 4), np.uint8)
    for c in range(3):
        a, b, phase = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 6.3)
        out[..., c] = (127.5 + 127.5 * np.sin(a * xx + b * yy + phase)).astype(np.uint8)
    out[..., 3] = (alpha_low + (255 - alpha_low) * (xx / max(w - 1, 1))).astype(np.uint8)
    return out


def interchange_document(modes: tuple[str, ...] | None = None) -> Document:
    """What another program must render as Collagen does: every blend mode (one tile each over
    an opaque background), a group at 50 % holding a multiply layer and a nested group, and
    layers with a fractional offset, 0.5 scale and a 30 degree rotation."""
    from canvas.model.layers import BLEND_MODES, GroupLayer

    modes = BLEND_MODES if modes is None else modes
    tile, columns = 20, 5
    rows = -(-len(modes) // columns)
    width, height = tile * columns, tile * rows + 60
    doc = Document(width, height)
    doc.add_layer_untracked(ImageLayer(name="background", pixels=_gradient_patch(height, width, 1, 255)))
    for number, mode in enumerate(modes):
        x, y = (number % columns) * tile, (number // columns) * tile
        group = ""
        if mode in ("dst-in", "dst-atop"):  # transparent wherever the layer is not: kept to a group
            holder = GroupLayer(name=f"tile {mode}")
            doc.add_layer_untracked(ImageLayer(name=f"under {mode}", pixels=_gradient_patch(tile - 2, tile - 2, 40 + number),
                                               x=x, y=y, group=holder.id))
            group = holder.id
        doc.add_layer_untracked(ImageLayer(name=f"mode {mode}", pixels=_gradient_patch(tile - 4, tile - 4, 10 + number),
                                           x=x + 2, y=y + 2, blend=mode, group=group))
        if group:  # a group sits right above its members
            doc.add_layer_untracked(holder)
    top = tile * rows
    outer = GroupLayer(name="group 50%", opacity=0.5)
    doc.add_layer_untracked(ImageLayer(name="in group", pixels=_gradient_patch(24, 40, 50), x=4, y=top + 4,
                                       group=outer.id))
    doc.add_layer_untracked(ImageLayer(name="multiply in group", pixels=_gradient_patch(20, 30, 51), x=20, y=top + 14,
                                       blend="multiply", group=outer.id))
    inner = GroupLayer(name="nested screen", blend="screen", opacity=0.8, group=outer.id)
    doc.add_layer_untracked(ImageLayer(name="in nested", pixels=_gradient_patch(18, 18, 52), x=30, y=top + 30,
                                       group=inner.id))
    doc.add_layer_untracked(inner)
    doc.add_layer_untracked(outer)
    doc.add_layer_untracked(ImageLayer(name="fractional", pixels=_gradient_patch(14, 14, 60), x=52.25, y=top + 3.5))
    doc.add_layer_untracked(ImageLayer(name="half scale", pixels=_gradient_patch(40, 40, 61), x=70, y=top + 4,
                                       scale=0.5))
    doc.add_layer_untracked(ImageLayer(name="rotated 30", pixels=_gradient_patch(16, 24, 62), x=70, y=top + 30,
                                       rotation=30.0, opacity=0.9))
    return doc
