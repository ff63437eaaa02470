"""Write the sample projects in resources/samples/ (one per mode), drawn procedurally.

    python scripts/make_samples.py

The pictures are simple shapes (sky, hills, a house, a sun, a rough cut-out cat) so that the
samples are small, reproducible and free of anyone else's copyright. Tests and the README use them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from canvas.io.ora import save_ora  # noqa: E402
from canvas.model.document import Document, GenerationSettings  # noqa: E402
from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer, ScribbleLayer, Stroke  # noqa: E402

OUT = ROOT / "resources" / "samples"
W = H = 512


def landscape() -> np.ndarray:
    """Sky gradient, two hills, a little house: an RGBA background."""
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    sky = np.stack([120 + 80 * y, 170 + 60 * y, 235 + 0 * y], -1) * np.ones((1, W, 1), np.float32)
    img = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.ellipse((-200, 300, 360, 760), fill=(88, 150, 72))
    d.ellipse((180, 330, 760, 800), fill=(70, 128, 60))
    d.rectangle((300, 300, 400, 380), fill=(200, 170, 130))
    d.polygon([(290, 300), (350, 250), (410, 300)], fill=(150, 60, 50))
    d.rectangle((335, 335, 360, 380), fill=(90, 60, 40))
    return np.dstack([np.asarray(img), np.full((H, W), 255, np.uint8)])


def cutout(kind: str, size: int) -> np.ndarray:
    """A rough collage piece with a hard alpha edge, the way a quick cut-out looks."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = size
    if kind == "sun":
        d.ellipse((0, 0, s - 1, s - 1), fill=(250, 210, 60, 255))
    elif kind == "cat":
        d.ellipse((s * 0.15, s * 0.35, s * 0.85, s * 0.98), fill=(230, 140, 60, 255))  # body
        d.ellipse((s * 0.25, s * 0.05, s * 0.75, s * 0.55), fill=(240, 150, 70, 255))  # head
        d.polygon([(s * 0.27, s * 0.2), (s * 0.33, s * 0.0), (s * 0.45, s * 0.12)], fill=(240, 150, 70, 255))
        d.polygon([(s * 0.55, s * 0.12), (s * 0.67, s * 0.0), (s * 0.73, s * 0.2)], fill=(240, 150, 70, 255))
        d.ellipse((s * 0.36, s * 0.25, s * 0.44, s * 0.33), fill=(30, 30, 30, 255))
        d.ellipse((s * 0.56, s * 0.25, s * 0.64, s * 0.33), fill=(30, 30, 30, 255))
    return np.asarray(img).copy()


def settings(**kw) -> GenerationSettings:
    base = dict(model="builtin:tiny-sd15", steps=20, cfg=7.0, seed=1234, sampler="Euler a")
    base.update(kw)
    return GenerationSettings(**base)


def background(doc: Document, name: str = "Background") -> ImageLayer:
    layer = ImageLayer(name=name, pixels=landscape())
    doc.add_layer_untracked(layer)
    return layer


def make_prompt() -> Document:
    return Document(W, H, settings=settings(mode="generate", prompt="a cosy cottage on green hills, blue sky",
                                            negative="blurry, low quality"))


def make_inpaint() -> Document:
    doc = Document(W, H, settings=settings(mode="inpaint", prompt="a red vintage car parked on the grass",
                                           strength=0.9, masked_content="original", mask_blur=8,
                                           inpaint_area="only_masked", padding=32))
    background(doc)
    m = Image.new("L", (W, H), 0)
    ImageDraw.Draw(m).ellipse((60, 360, 260, 470), fill=255)
    doc.add_layer_untracked(MaskLayer(name="Car mask", pixels=np.asarray(m).copy()))
    return doc


def make_regions(method: str) -> Document:
    doc = Document(W, H, settings=settings(mode="regions", region_method=method,
                                           prompt="a sunny landscape, detailed, photo"))
    doc.add_layer_untracked(RegionLayer(name="Left", rect=(0, 0, 256, 512), prompt="a snowy mountain",
                                        color="#4f8fe0"))
    doc.add_layer_untracked(RegionLayer(name="Right", rect=(256, 0, 256, 512), prompt="a palm beach at sunset",
                                        negative="people", strength=1.2, color="#e0a04f"))
    return doc


def make_composite() -> Document:
    doc = make_regions("attention")
    doc.settings.mode = "composite"
    doc.settings.composite_step = 0.5
    return doc


def make_refine() -> Document:
    doc = Document(W, H, settings=settings(mode="refine", prompt="a cat sitting on a hill under the sun, photo",
                                           strength=0.6))
    background(doc)
    doc.add_layer_untracked(ImageLayer(name="Sun", pixels=cutout("sun", 96), x=40, y=30, collage=True))
    doc.add_layer_untracked(ImageLayer(name="Cat", pixels=cutout("cat", 160), x=120, y=250, scale=1.1,
                                       rotation=-8, collage=True))
    return doc


def make_sketch() -> Document:
    doc = Document(W, H, settings=settings(mode="inpaint", prompt="a hot air balloon in the sky", strength=0.8,
                                           mask_blur=6))
    background(doc)
    circle = tuple((150 + 50 * np.cos(a), 120 + 60 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 40))
    doc.add_layer_untracked(ScribbleLayer(name="Balloon sketch", mode="sketch", strokes=(
        Stroke(points=tuple((float(x), float(y)) for x, y in circle), color="#d03030", width=24.0),
        Stroke(points=((130.0, 185.0), (140.0, 230.0), (160.0, 230.0), (170.0, 185.0)), color="#704020",
               width=10.0),
    )))
    return doc


def make_edit() -> Document:
    doc = Document(W, H, settings=settings(mode="edit", model="builtin:tiny-ip2p",
                                           prompt="put a red balloon where the circle is", steps=20,
                                           image_guidance_scale=1.5))
    background(doc)
    ring = tuple((120 + 45 * np.cos(a), 110 + 45 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 36))
    doc.add_layer_untracked(ScribbleLayer(name="Where", mode="annotation", strokes=(
        Stroke(points=tuple((float(x), float(y)) for x, y in ring), color="#ff2020", width=6.0),
    )))
    return doc


SAMPLES = {
    "prompt.ora": make_prompt,
    "inpaint.ora": make_inpaint,
    "regions.ora": lambda: make_regions("attention"),
    "regions-latent.ora": lambda: make_regions("latent"),
    "composite.ora": make_composite,
    "refine.ora": make_refine,
    "sketch.ora": make_sketch,
    "edit.ora": make_edit,
}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in SAMPLES.items():
        save_ora(make(), OUT / name)
        print(f"wrote {OUT / name} ({(OUT / name).stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
