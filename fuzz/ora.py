"""Fuzz `canvas.io.ora.load_ora`: `python -m fuzz.ora --cases 10000 [--seed 0]`.

Mutations work on the archive's members (stack.xml attributes, project.json values, the layer
PNGs' chunks and declared sizes) and re-pack it, or on the raw zip bytes. The hypothesis
strategy builds archives from parts: a mimetype, a stack.xml, a project.json whose records mix
valid and hostile values, and layer PNGs of drawn (sometimes lying) sizes.

Groups (nested stacks and project.json group records, circular ones included) and blend modes
(known, unknown and other programs' composite-ops) are part of both.
Accepted projects must be sound: within the limits, composable, and saved again they load equal.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.harness import Target
from fuzz.mutator import mutate_json_bytes, mutate_png, mutate_xml, mutate_zip, zip_bytes

ROUND_TRIP_MAX_PIXELS = 256 * 256  # bigger canvases are checked for limits only (compose would dominate)


def read(path: Path):
    from canvas.io.ora import load_ora

    return load_ora(path)


def check_result(document, path: Path) -> None:
    from canvas.io.limits import DEFAULT_LIMITS
    from canvas.io.ora import load_ora, save_ora
    from canvas.model.compose import compose
    from canvas.model.document import Document, DocumentError
    from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer

    assert isinstance(document, Document), f"load_ora returned {type(document).__name__}"
    assert 0 < document.width <= DEFAULT_LIMITS.max_side and 0 < document.height <= DEFAULT_LIMITS.max_side
    assert len(document.layers) <= DEFAULT_LIMITS.max_layers
    for layer in document.layers:
        if isinstance(layer, ImageLayer):
            pixels = layer.pixels
            assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 4 and pixels.size
            assert pixels.flags.writeable, "layer pixels must be paintable in place"
        elif isinstance(layer, MaskLayer):
            assert layer.pixels.dtype == np.uint8 and layer.pixels.ndim == 2
        elif isinstance(layer, RegionLayer) and layer.mask is not None:
            assert layer.mask.dtype == np.uint8 and layer.mask.ndim == 2
    if document.width * document.height > ROUND_TRIP_MAX_PIXELS:
        return
    try:
        compose(document)
    except DocumentError:
        pass  # a clear sentence the editor shows; not a crash
    with tempfile.TemporaryDirectory(prefix="collagen-fuzz-resave-") as folder:
        again = Path(folder) / "again.ora"
        save_ora(document, again)  # what the user opened, the user can save
        assert load_ora(again).same_as(document), "saved again, the project loads different"


def mutate(rng: random.Random, data: bytes) -> bytes:
    return mutate_zip(rng, data, {"png": mutate_png, "xml": mutate_xml, "json": mutate_json_bytes})


def seeds() -> list[bytes]:
    from fuzz.corpus import ora_seeds

    return ora_seeds()


def target() -> Target:
    from canvas.io.errors import ProjectError

    return Target(name="ora", suffix=".ora", errors=(ProjectError,), read=read, check_result=check_result,
                  seeds=seeds, mutate=mutate)


# ---- hypothesis: archives built from parts -------------------------------------------------------


def strategy():
    from hypothesis import strategies as st

    from fuzz.corpus import _png_of

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=8,
    )
    rare = st.sampled_from([False] * 9 + [True])  # hypothesis favours the first choice: the normal case
    odd_sides = st.sampled_from([16385, 0, -1, 16384, 2**31, 10**30])
    coordinates = st.one_of(st.floats(-50, 50), st.floats(-50, 50), st.sampled_from([1e7, -1e8, 1e300]))

    def valid_or(valid):
        return st.one_of(valid, valid, valid, json_values)

    @st.composite
    def png(draw) -> bytes:
        h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        mode = draw(st.sampled_from(["RGBA", "RGB", "L", "LA"]))
        channels = {"RGBA": 4, "RGB": 3, "L": 1, "LA": 2}[mode]
        array = np.full((h, w, channels) if channels > 1 else (h, w), draw(st.integers(0, 255)), np.uint8)
        data = _png_of(array)
        if draw(rare):  # a header that lies about the size
            rng = random.Random(draw(st.integers(0, 2**32)))
            data = mutate_png(rng, data)
        return data

    @st.composite
    def layer_record(draw, index: int) -> dict[str, Any]:
        kind = draw(valid_or(st.sampled_from(["image", "mask", "region", "scribble", "group"])))
        record = {
            "id": draw(valid_or(st.just(f"layer-{index}"))), "kind": kind, "name": draw(valid_or(st.text(max_size=8))),
            "visible": draw(valid_or(st.booleans())), "opacity": draw(valid_or(st.floats(0, 1))),
            "locked": draw(valid_or(st.booleans())), "src": draw(valid_or(st.just(f"data/layer-{index:04d}.png"))),
        }
        record.update(blend=draw(valid_or(st.sampled_from(["normal", "multiply", "dst-atop", "color"]))),
                      group=draw(valid_or(st.sampled_from(["", "layer-0", "layer-1", f"layer-{index}"]))))
        if kind == "group":
            record.update(isolated=draw(valid_or(st.booleans())))
        if kind == "image":
            if draw(rare):
                record["source"] = draw(valid_or(st.just(f"data/collagen/source-{index:04d}.png")))
            record.update(x=draw(valid_or(coordinates)), y=draw(valid_or(coordinates)),
                          scale=draw(valid_or(st.floats(0.01, 4))), rotation=draw(valid_or(coordinates)),
                          collage=draw(valid_or(st.booleans())), reference=draw(valid_or(st.booleans())))
        elif kind == "region":
            record.update(rect=draw(valid_or(st.lists(st.integers(-5, 40), min_size=4, max_size=4))),
                          painted=draw(valid_or(st.booleans())), prompt=draw(valid_or(st.text(max_size=10))),
                          negative=draw(valid_or(st.text(max_size=10))), strength=draw(valid_or(st.floats(0, 2))),
                          loras=draw(valid_or(st.lists(st.tuples(st.text(max_size=5), st.floats(-2, 2)).map(list),
                                                       max_size=2))),
                          color=draw(valid_or(st.sampled_from(["#ff0000", "#00ff00", "#123456"]))))
        elif kind == "scribble":
            point = st.tuples(coordinates, coordinates).map(list)
            stroke = st.fixed_dictionaries({"points": st.lists(point, min_size=1, max_size=4),
                                            "color": st.sampled_from(["#ff0000", "#abcdef"]),
                                            "width": st.floats(0.5, 10)})
            record.update(mode=draw(valid_or(st.sampled_from(["sketch", "annotation"]))),
                          strokes=draw(valid_or(st.lists(valid_or(stroke), max_size=3))))
        return record

    @st.composite
    def archive(draw) -> bytes:
        import json

        width = draw(odd_sides) if draw(rare) else draw(st.integers(1, 24))
        height = draw(odd_sides) if draw(rare) else draw(st.integers(1, 24))
        count = draw(st.integers(0, 4))
        records = [draw(layer_record(i)) for i in range(count)]
        members: list[tuple[str, bytes]] = []
        mimetype = draw(st.sampled_from([b"image/openraster\n", b"image/png", b"", None])) if draw(rare) \
            else b"image/openraster"
        if mimetype is not None:
            members.append(("mimetype", mimetype))
        ops = st.sampled_from(["svg:src-over", "svg:multiply", "svg:dst-in", "svg:hue", "svg:plus", "svg:nonsense",
                               "krita:linear_dodge", "krita:burn", "", "svg:"])
        layers_xml = "".join(
            f'<layer src="{r.get("src") if isinstance(r.get("src"), str) else "data/x.png"}" '
            f'x="{draw(valid_or(st.integers(-3, 3)))}" y="0" opacity="{draw(st.sampled_from(["1.0", "0.5", "nan", "x"]))}" '
            f'composite-op="{draw(ops)}"/>'
            for r in records)
        for _ in range(draw(st.integers(0, 3))):  # nested groups with their own mode, opacity, isolation
            layers_xml = (f'<stack name="g" composite-op="{draw(ops)}" opacity="{draw(st.sampled_from(["0.5", "1", "-2"]))}"'
                          f' isolation="{draw(st.sampled_from(["isolate", "auto", "x"]))}"'
                          f' visibility="{draw(st.sampled_from(["visible", "hidden"]))}">{layers_xml}</stack>'
                          + (layers_xml if draw(rare) else ""))
        stack_xml = f'<?xml version="1.0"?><image w="{width}" h="{height}"><stack>{layers_xml}</stack></image>'
        if not draw(rare):
            members.append(("stack.xml", stack_xml.encode("utf-8", "surrogatepass")))
        project = {"format_version": draw(valid_or(st.sampled_from([1, 2]))), "width": draw(valid_or(st.just(width))),
                   "height": draw(valid_or(st.just(height))),
                   "settings": draw(valid_or(st.dictionaries(st.sampled_from(["steps", "cfg", "seed", "prompt",
                                                                              "loras", "lcm", "mode"]),
                                                             json_values, max_size=3))),
                   "layers": records}
        if not draw(rare):
            text = json.dumps(project, allow_nan=True, default=str)
            members.append(("data/collagen/project.json", text.encode("utf-8", "surrogatepass")))
        for record in records:
            src = record.get("src")
            if isinstance(src, str) and not draw(rare):
                members.append((src, draw(png())))
        try:
            return zip_bytes(members)
        except (ValueError, OSError):
            return b"PK\x05\x06" + b"\0" * 18

    return archive()


if __name__ == "__main__":
    from fuzz.cli import main

    sys.exit(main(target(), strategy))
