"""Crafted hostile inputs for the command line, and a runner that measures what answering costs.

Each builder writes its files into a folder and returns the `collagen` arguments that use them.
`run_collagen` runs the command in a fresh interpreter and measures that one child's peak RSS
(os.wait4's rusage) and CPU time; a child still running after `hang_after` seconds is killed and
reported as a hang.

The child is started by a small launcher interpreter, not forked from pytest itself: Linux carries a
process's peak RSS across fork and exec, so a child forked straight from a test process that has
grown to gigabytes reports the parent's size as its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STACK_XML = ('<?xml version="1.0" encoding="UTF-8"?><image w="{w}" h="{h}" version="0.0.5">'
             "<stack></stack></image>")


@dataclass(frozen=True)
class Measured:
    status: int | None  # None: killed as a hang
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float


# Forks and execs the command, waits for it and writes [wait status, ru_maxrss KiB, CPU s] to argv[1].
LAUNCHER = ("import json, os, sys\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.execv(sys.argv[2], sys.argv[2:])\n"
            "_, status, usage = os.wait4(pid, 0)\n"
            "with open(sys.argv[1], 'w') as report:\n"
            "    json.dump([status, usage.ru_maxrss, usage.ru_utime + usage.ru_stime], report)\n")


def run_collagen(args: list[str], *, cwd: Path, hang_after: float = 60.0, module: str = "desktop.cli") -> Measured:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "COLLAGEN"))}
    env.update(PYTHONPATH=str(REPO), HOME=str(cwd), XDG_DATA_HOME=str(cwd / "data"), COLLAGEN_MODELS="",
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    report = cwd / f".rusage-{os.getpid()}-{time.monotonic_ns()}.json"
    started = time.monotonic()
    launcher = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, str(report),
                                 sys.executable, "-m", module, *args],
                                cwd=cwd, env=env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    hung = threading.Event()

    def kill_if_hung() -> None:
        hung.set()
        os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and the command it runs

    timer = threading.Timer(hang_after, kill_if_hung)
    timer.start()
    try:
        out, err = launcher.communicate()
    finally:
        timer.cancel()
    wall = time.monotonic() - started
    status, maxrss_kib, cpu_s = None, 0, 0.0
    if report.exists():
        wait_status, maxrss_kib, cpu_s = json.loads(report.read_text())
        report.unlink()
        status = os.waitstatus_to_exitcode(wait_status)
    return Measured(None if hung.is_set() else status,
                    out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                    wall, cpu_s, maxrss_kib / 1024)  # ru_maxrss: KiB on Linux


# ---- project builders ---------------------------------------------------------------------------


def raw_project(path: Path, project: dict, width: int = 512, height: int = 512) -> Path:
    """A project zip written by hand, so it can hold what Collagen itself would never write."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "image/openraster", zipfile.ZIP_STORED)
        archive.writestr("stack.xml", STACK_XML.format(w=width, h=height), zipfile.ZIP_DEFLATED)
        archive.writestr("data/collagen/project.json", json.dumps(project), zipfile.ZIP_DEFLATED)
    return path


def stroke_project(path: Path, points: list, width: float, side: int = 512) -> Path:
    layer = {"kind": "scribble", "id": "pen", "name": "pen", "visible": True, "opacity": 1.0, "locked": False,
             "mode": "sketch", "strokes": [{"points": points, "color": "#ff0000", "width": width}]}
    return raw_project(path, {"format_version": 1, "width": side, "height": side, "settings": {},
                              "layers": [layer]}, side, side)


def huge_stroke(folder: Path) -> Path:
    """Issue 17: ~6 KB, one stroke of 200 000 points 10 000 px wide (rendering took an hour)."""
    return stroke_project(folder / "huge-stroke.ora", [[0.0, 0.0], [1.0, 1.0]] * 100_000, 10_000.0)


def circle_stroke(folder: Path) -> Path:
    """40 000 points on a circle around the canvas, as wide as the circle: every segment reaches every
    pixel and none covers the canvas alone, so little can be pruned (the worst ordering)."""
    import math

    n = 40_000
    points = [[round(256 + 5000 * math.cos(i * 2 * math.pi / n), 1), round(256 + 5000 * math.sin(i * 2 * math.pi / n), 1)]
              for i in range(n)]
    return stroke_project(folder / "circle-stroke.ora", points, 10_000.0)


def small_project(folder: Path) -> Path:
    """A genuine 64x64 project (for commands whose hostile part is elsewhere, e.g. --out)."""
    from canvas.io.ora import save_ora
    from canvas.model.document import Document, GenerationSettings

    path = folder / "small.ora"
    save_ora(Document(64, 64, settings=GenerationSettings(steps=2)), path)
    return path


def fifo(folder: Path, name: str) -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def link(folder: Path, name: str, target: str) -> Path:
    path = folder / name
    path.symlink_to(target)
    return path


def sparse_png(side: int) -> bytes:
    """A side x side 1-bit grey PNG of zeros, written by hand: a few KB that decode to side² RGBA pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the packed bits
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def shared_huge_png(folder: Path, layers: int = 3, side: int = 16384) -> Path:
    """Issue 17: a small project whose image layers all use one 16384² PNG (info decoded every one:
    100 s, 7.2 GB, to print sizes)."""
    records = [{"kind": "image", "id": f"l{i}", "name": f"big {i}", "visible": True, "opacity": 1.0,
                "locked": False, "src": "data/big.png", "x": 0.0, "y": 0.0, "scale": 1.0, "rotation": 0.0,
                "collage": False, "reference": False} for i in range(layers)]
    path = raw_project(folder / "shared-png.ora", {"format_version": 1, "width": side, "height": side,
                                                   "settings": {}, "layers": records}, side, side)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("data/big.png", sparse_png(side), zipfile.ZIP_STORED)
    return path


def many_big_pngs(folder: Path, layers: int = 12, side: int = 8192) -> Path:
    """Issue 17: ~100 KB, 12 layers each with its own flat 8192² PNG (3 GiB of RGBA decoded, under the
    4 GiB cap: opening decoded all of it)."""
    records = [{"kind": "image", "id": f"l{i}", "name": f"flat {i}", "visible": True, "opacity": 1.0,
                "locked": False, "src": f"data/flat{i}.png", "x": 0.0, "y": 0.0, "scale": 1.0, "rotation": 0.0,
                "collage": False, "reference": False} for i in range(layers)]
    path = raw_project(folder / "flat-pngs.ora", {"format_version": 1, "width": side, "height": side,
                                                  "settings": {"prompt": "flat"}, "layers": records}, side, side)
    flat = sparse_png(side)
    with zipfile.ZipFile(path, "a") as archive:
        for i in range(layers):
            archive.writestr(f"data/flat{i}.png", flat, zipfile.ZIP_STORED)
    return path


def pattern_png(side: int) -> bytes:
    """A side² RGBA PNG of coloured 8 px checks with a soft alpha ramp: it packs to a few KB and is not flat,
    so every bilinear sample is real work."""
    import io

    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:side, 0:side]
    pixels = np.empty((side, side, 4), np.uint8)
    checks = ((x // 8 + y // 8) % 2).astype(np.uint8)
    pixels[..., 0] = 40 + 180 * checks
    pixels[..., 1] = 200 - 150 * checks
    pixels[..., 2] = (x // 8 % 4) * 60
    pixels[..., 3] = 255 - (y // 8 % 2) * 90
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, "PNG", compress_level=9)
    return out.getvalue()


def transformed_layers(folder: Path, layers: int = 60, side: int = 4096, source: int = 1024, scale: float = 8.0,
                       rotation: float = 0.0) -> Path:
    """Issue 17: ~20 KB, layers that all show one 1024² PNG scaled up (or turned) over a 4096² canvas: each
    covers the whole canvas, so flattening, rendering or saving warps 16.7 million pixels per layer
    (a rotated one took ~3.5 s in numpy; 60 of them passed the 1.1 billion drawn-pixel limit)."""
    records = [{"kind": "image", "id": f"t{i}", "name": f"turned {i}", "visible": True, "opacity": 0.5,
                "locked": False, "src": "data/pattern.png", "x": -100.0 - i, "y": -50.0 + i / 3, "scale": scale,
                "rotation": rotation, "collage": False, "reference": False} for i in range(layers)]
    name = f"transformed-{layers}-{scale:g}-{rotation:g}.ora"
    path = raw_project(folder / name, {"format_version": 1, "width": side, "height": side,
                                       "settings": {"prompt": "a pattern", "steps": 2, "model": "absent"},
                                       "layers": records}, side, side)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("data/pattern.png", pattern_png(source), zipfile.ZIP_STORED)
    return path


def dense_json(folder: Path, mib: int = 63, pad_bytes: int = 0) -> Path:
    """Issue 17: 64 KB whose project.json unpacks to `mib` MiB of `[],` (parsed, 1.6 GB and 8 s); with
    `pad_bytes`, a stored member of random bytes makes the file that much larger (the JSON cap follows
    the file's size, so this reaches the most a file under 1 MiB may parse)."""
    path = folder / "dense-json.ora"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "image/openraster", zipfile.ZIP_STORED)
        archive.writestr("stack.xml", STACK_XML.format(w=64, h=64), zipfile.ZIP_DEFLATED)
        count = ((mib << 20) - 40) // 3
        archive.writestr("data/collagen/project.json",
                         '{"format_version": 1, "width": 64, "height": 64, "layers": [], "junk": ['
                         + "[]," * count + "[]]}", zipfile.ZIP_DEFLATED)
        if pad_bytes:
            archive.writestr("data/padding.bin", os.urandom(pad_bytes), zipfile.ZIP_STORED)
    return path


def dense_xml(folder: Path, mib: int = 15) -> Path:
    """Issue 17: 15 KB whose stack.xml unpacks to `mib` MiB of `<a/>` (parsed, 420 MB and 7 s, then opened)."""
    path = folder / "dense-xml.ora"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "image/openraster", zipfile.ZIP_STORED)
        archive.writestr("stack.xml", '<image w="64" h="64"><stack>' + "<a/>" * ((mib << 20) // 4)
                         + "</stack></image>", zipfile.ZIP_DEFLATED)
    return path


def region_canvas(folder: Path, regions: int = 4, side: int = 16384) -> Path:
    """Issue 17: ~1 KB, a 16384² canvas with full-canvas region rectangles (render built a composition
    of 2-6 GB, +1 GiB per region, before refusing the size)."""
    records = [{"kind": "region", "id": f"r{i}", "name": f"region {i}", "visible": True, "opacity": 1.0,
                "locked": False, "rect": [0, 0, side, side], "painted": False, "prompt": f"thing {i}",
                "negative": "", "strength": 1.0, "loras": [], "color": "#ff0000"} for i in range(regions)]
    return raw_project(folder / "regions.ora", {"format_version": 1, "width": side, "height": side,
                                                "settings": {"prompt": "a room"}, "layers": records}, side, side)


def many_pieces(folder: Path, pieces: int = 1000, side: int = 4096) -> Path:
    """Issue 17: 4 KB, 1000 collage pieces, each a 1x1 PNG scaled over a 4096² canvas (saving raised a
    62.5 GiB MemoryError; rendering would warp 17 billion pixels)."""
    import io

    from PIL import Image

    records = [{"kind": "image", "id": f"p{i}", "name": f"piece {i}", "visible": True, "opacity": 1.0,
                "locked": False, "src": "data/dot.png", "x": 0.0, "y": 0.0, "scale": float(side), "rotation": 0.0,
                "collage": True, "reference": False} for i in range(pieces)]
    path = raw_project(folder / "pieces.ora", {"format_version": 1, "width": side, "height": side,
                                               "settings": {"prompt": "a collage", "mode": "refine"},
                                               "layers": records}, side, side)
    dot = io.BytesIO()
    Image.new("RGBA", (1, 1), (200, 100, 50, 255)).save(dot, "PNG")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("data/dot.png", dot.getvalue(), zipfile.ZIP_STORED)
    return path


def tiny_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A real safetensors file of zero F16 tensors with these names (discovery reads names and shapes)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2
        for n in shape:
            size *= n
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(offset))
    return path


SD15_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
    "first_stage_model.decoder.conv_in.weight": (4, 4, 1, 1),
}


def hostile_models(folder: Path, *, loops: int = 8) -> Path:
    """A models folder with one good checkpoint and one hostile entry of each kind under 1 MB: links to `.`
    (exponential to walk before), a loop of two links, a FIFO and a /dev/zero link named as weights, a
    custom-pipeline model_index.json, one that is not JSON, a header claiming 97 MiB, an SD3 file."""
    models = folder / "models"
    ckpts = models / "checkpoints"
    tiny_safetensors(ckpts / "good.safetensors", SD15_KEYS)
    tiny_safetensors(ckpts / "sd3.safetensors",
                     {"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (4,)})
    for i in range(loops):
        os.symlink(".", ckpts / f"dot{i}")
        os.symlink(".", models / f"dot{i}")
    os.symlink("loop-b", ckpts / "loop-a")
    os.symlink("loop-a", ckpts / "loop-b")
    os.mkfifo(ckpts / "pipe.safetensors")
    os.symlink("/dev/zero", ckpts / "zero.safetensors")
    (ckpts / "custom").mkdir()
    (ckpts / "custom" / "model_index.json").write_text('{"_class_name": ["my_module", "MyPipeline"]}')
    (ckpts / "garbage").mkdir()
    (ckpts / "garbage" / "model_index.json").write_bytes(b"\x00" * 1000)
    (ckpts / "big-header.safetensors").write_bytes((97 << 20).to_bytes(8, "little") + b"{" * 1000)
    return models
