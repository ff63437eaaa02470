"""`collagen` CLI: render a sample with the tiny model, read its parameters back, and broken inputs
give one sentence and a non-zero exit status, never a traceback."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from desktop.cli import main
from desktop.settings import LOG_FILE_NAME, log_dir

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"
# Every line `collagen render` itself writes to stderr; anything else is library chatter.
OWN_LINES = re.compile(r"step \d+/\d+  \d+\.\d+s elapsed(, ~\d+\.\d+s left)?|wrote .+ \(seed -?\d+\)|warning: .+")


@pytest.fixture(autouse=True)
def private_log_dir(tmp_path, monkeypatch):
    """The CLI's log file goes to the user's log folder: a private one here."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_render_inpaint_sample_then_info(tmp_path, capsys, tmp_models):
    out_png = tmp_path / "x.png"
    code, _, err = run_cli(["render", SAMPLES / "inpaint.ora", "--model", "builtin:tiny-sd15",
                            "--steps", "2", "--out", out_png], capsys)
    assert code == 0, err
    assert "step 1/1" in err and "wrote" in err
    with Image.open(out_png) as im:
        assert im.size == (512, 512)
        parameters = im.info["parameters"]
    assert parameters.startswith("a red vintage car parked on the grass")
    # only_masked: the crop around the mask at its own size, not the 512x512 canvas (issue 16)
    assert "Steps: 2, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 328x224" in parameters

    code, out, err = run_cli(["info", out_png], capsys)
    assert code == 0, err
    assert "prompt: a red vintage car parked on the grass" in out
    assert "seed: 1234" in out and "steps: 2" in out and "model: builtin:tiny-sd15" in out


def test_render_output_outside_mask_is_the_input(tmp_path, capsys, tmp_models):
    """The pixels the user did not ask to change do not change, through the whole CLI path."""
    import numpy as np

    from canvas.io.ora import load_ora
    from canvas.model.compose import compose

    out_png = tmp_path / "x.png"
    code, _, err = run_cli(["render", SAMPLES / "inpaint.ora", "--steps", "2", "--out", out_png], capsys)
    assert code == 0, err
    comp = compose(load_ora(SAMPLES / "inpaint.ora"))
    result = np.asarray(Image.open(out_png).convert("RGB"))
    far = np.ones_like(comp.inpaint_mask, bool)
    ys, xs = np.nonzero(comp.inpaint_mask)
    # well outside the mask's bounding box plus blur and padding: exactly the input
    far[max(ys.min() - 64, 0):ys.max() + 64, max(xs.min() - 64, 0):xs.max() + 64] = False
    assert np.array_equal(result[far], comp.init_image[far])
    assert not np.array_equal(result[~far], comp.init_image[~far])


def test_models_lists_builtins(capsys, tmp_models):
    code, out, _ = run_cli(["models", "--json"], capsys)
    assert code == 0
    assert "builtin:tiny-sd15" in out and "builtin:tiny-sdxl" in out
    listed = {entry["name"]: entry for entry in json.loads(out)}
    for name in ("builtin:tiny-ip2p", "builtin:tiny-kontext", "builtin:tiny-qwen-edit", "builtin:tiny-qwen-edit-plus"):
        assert listed[name]["modes"] == ["edit"], name  # the edit models are listed, for Edit mode
    assert "edit" not in listed["builtin:tiny-sd15"]["modes"]


def test_info_on_a_project(capsys):
    code, out, _ = run_cli(["info", SAMPLES / "refine.ora"], capsys)
    assert code == 0
    assert "mode refine" in out and "collage piece" in out


def _truncated_zip(path: Path) -> None:
    data = (SAMPLES / "inpaint.ora").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_ora(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "not a painting")


def _broken_png(path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[40:48] = b"\xff" * 8  # inside IDAT: the chunk's CRC no longer matches
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("maker,name", [(_truncated_zip, "cut.ora"), (_not_ora, "plain.ora"),
                                        (_broken_png, "broken.png")])
def test_broken_inputs_give_one_sentence(tmp_path, capsys, maker, name):
    target = tmp_path / name
    maker(target)
    code, out, err = run_cli(["info", target], capsys)
    assert code != 0
    assert "Traceback" not in err and "Traceback" not in out
    assert err.startswith("error: ") and name in err
    assert len(err.strip().splitlines()) == 1


def test_render_unknown_model_is_one_sentence(tmp_path, capsys, tmp_models):
    code, _, err = run_cli(["render", SAMPLES / "prompt.ora", "--model", "no-such-model", "--out",
                            tmp_path / "x.png"], capsys)
    assert code != 0
    assert err.startswith("error: ") and "no-such-model" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


MODE_SAMPLES = ["prompt.ora", "regions.ora", "regions-latent.ora", "composite.ora", "refine.ora", "sketch.ora"]


@pytest.mark.parametrize("sample", MODE_SAMPLES)
def test_render_every_mode_sample_with_tiny_sdxl(tmp_path, capsys, tmp_models, sample):
    out_png = tmp_path / "out.png"
    code, _, err = run_cli(["render", SAMPLES / sample, "--model", "builtin:tiny-sdxl", "--steps", "2",
                            "--out", out_png], capsys)
    assert code == 0, err
    params = Image.open(out_png).info["parameters"]
    assert 'Model: "builtin:tiny-sdxl"' in params and "Steps: 2" in params


FLUX_SAMPLES = [("builtin:tiny-flux-dev", sample) for sample in ["inpaint.ora", *MODE_SAMPLES]]


@pytest.mark.parametrize(("model", "sample"), [*FLUX_SAMPLES, ("builtin:tiny-flux-fill", "inpaint.ora")])
def test_render_every_mode_sample_with_tiny_flux(tmp_path, capsys, tmp_models, model, sample):
    out_png = tmp_path / "out.png"
    code, _, err = run_cli(["render", SAMPLES / sample, "--model", model, "--steps", "2", "--out", out_png], capsys)
    assert code == 0, err
    params = Image.open(out_png).info["parameters"]
    guidance = "30" if model.endswith("fill") else "3.5"
    assert f'Model: "{model}"' in params and "Steps: 2" in params and "Sampler: FlowMatchEuler" in params
    assert f"Guidance: {guidance}" in params


def test_models_lists_the_flux_builtins_with_their_family(capsys, tmp_models):
    code, out, _ = run_cli(["models", "--json"], capsys)
    assert code == 0
    families = {entry["name"]: entry["family"] for entry in json.loads(out)}
    assert {name: families[name] for name in families if "flux" in name} == {
        "builtin:tiny-flux-dev": "flux-dev", "builtin:tiny-flux-schnell": "flux-schnell",
        "builtin:tiny-flux-fill": "flux-fill"}


@pytest.mark.parametrize("sample", sorted(path.name for path in SAMPLES.glob("*.ora")))
def test_render_prints_only_its_own_lines_on_stderr(tmp_path, tmp_models, sample):
    """The real `collagen render` process on every sample: no tracebacks, progress bars or library
    warnings on stderr (they go to the log file), only the CLI's step/wrote/warning lines."""
    out_png = tmp_path / "out.png"
    args = [sys.executable, "-m", "desktop.cli", "render", str(SAMPLES / sample), "--steps", "2",
            "--out", str(out_png)]
    if sample != "edit.ora":  # the edit sample names its own (built-in edit) model
        args += ["--model", "builtin:tiny-sd15"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if not OWN_LINES.fullmatch(line)] == []
    assert lines[-1] == f"wrote {out_png} (seed 1234)" and done.stdout == ""
    with Image.open(out_png) as im:
        assert im.size == (512, 512)
        parameters = im.info["parameters"]
    assert "Steps: 2" in parameters
    if sample == "edit.ora":
        assert parameters.startswith("put a red balloon where the circle is")
    else:
        assert 'Model: "builtin:tiny-sd15"' in parameters
    assert (log_dir() / LOG_FILE_NAME).is_file()  # where the details went


def test_cli_runs_share_the_persistent_model_hash_cache(tmp_path, tmp_models):
    import hashlib
    import os

    from desktop.cli import _model_manager
    from inference.models import default_hash_cache_file

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights" * 1000)
    first_run = _model_manager(None)
    assert first_run.hashes.cache_file == default_hash_cache_file()
    expected = hashlib.sha256(b"weights" * 1000).hexdigest()[:10]
    assert first_run.model_hash(path) == expected
    # Other bytes, same size and mtime: the next run answers from the cache without reading the file.
    stat = path.stat()
    path.write_bytes(b"WEIGHTS" * 1000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _model_manager(None).model_hash(path) == expected
