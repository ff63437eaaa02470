"""`collagen render` with the tiny Z-Image model: generate, img2img and inpaint projects render offline with
the family's parameters recorded; modes it does not run are one sentence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from canvas.io.ora import load_ora, save_ora
from canvas.model.commands import RemoveLayer
from canvas.model.layers import ImageLayer, MaskLayer
from desktop.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"
MODEL = "builtin:tiny-zimage"


@pytest.fixture(autouse=True)
def private_log_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def render(project: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["render", str(project), "--model", MODEL, "--steps", "2", "--out", str(out)])
    return code, capsys.readouterr().err


def img2img_project(tmp_path: Path) -> Path:
    """The inpaint sample without its mask: its picture is the init image of a generate run."""
    document = load_ora(SAMPLES / "inpaint.ora")
    for layer in document.layers_of(MaskLayer):
        document.execute(RemoveLayer(layer))
    document.settings.mode = "generate"
    path = tmp_path / "img2img.ora"
    save_ora(document, path)
    return path


@pytest.mark.parametrize("sample", ["prompt.ora", "inpaint.ora", "img2img"])
def test_render_generate_img2img_and_inpaint_with_tiny_zimage(tmp_path, capsys, tmp_models, sample):
    project = img2img_project(tmp_path) if sample == "img2img" else SAMPLES / sample
    out_png = tmp_path / "out.png"
    code, err = render(project, out_png, capsys)
    assert code == 0, err
    params = Image.open(out_png).info["parameters"]
    assert f'Model: "{MODEL}"' in params and "Steps: 2" in params and "Sampler: FlowMatchEuler" in params
    document = load_ora(project)
    assert np.asarray(Image.open(out_png).convert("RGB")).shape == (document.height, document.width, 3)


def test_inpaint_keeps_the_picture_outside_the_mask(tmp_path, capsys, tmp_models):
    out_png = tmp_path / "out.png"
    code, err = render(SAMPLES / "inpaint.ora", out_png, capsys)
    assert code == 0, err
    document = load_ora(SAMPLES / "inpaint.ora")
    mask = document.layers_of(MaskLayer)[0]
    picture = document.layers_of(ImageLayer)[0]
    result = np.asarray(Image.open(out_png).convert("RGB"))
    from scipy.ndimage import binary_erosion

    # away from the mask's feather (mask_blur) the result is the picture, byte for byte
    far = binary_erosion(mask.pixels == 0, iterations=64)
    assert far.any() and (mask.pixels > 0).any()
    assert np.array_equal(result[far], picture.pixels[..., :3][far])


def test_composite_is_refused_in_one_sentence(tmp_path, capsys, tmp_models):
    code, err = render(SAMPLES / "composite.ora", tmp_path / "out.png", capsys)
    assert code != 0
    assert "is a Z-Image model, which cannot run the composite mode (it runs: generate, inpaint)" in err
    assert "Traceback" not in err
