"""Discovery against hostile models folders: one bad entry is skipped with its reason, never hides the others,
and nothing in a folder costs more than a bounded read (link loops, FIFOs, devices, sparse giants)."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest

from inference.api import ModelError
from inference.bounded_read import MAX_JSON_BYTES, read_json
from inference.models import MAX_SCAN_DEPTH, ModelManager
from inference.safetensors_header import MAX_HEADER_BYTES, read_safetensors_header
from tests.inference.test_models import (
    LORA_KEYS,
    SD15_KEYS,
    SDXL_KEYS,
    VAE_KEYS,
    write_diffusers_folder,
    write_keys,
)
from tests.reliability.allocation import peak_allocation, sparse_file

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
SD2_KEYS = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
            "cond_stage_model.model.token_embedding.weight": (4, 1024)}
SD3_KEYS = {"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (4,)}
REFINER_KEYS = {"model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
                "conditioner.embedders.0.model.text_projection": (1280, 1280)}


def hostile_webui(root: Path) -> Path:
    """An A1111 install with good models and one broken entry of each kind beside them."""
    models = root / "models"
    ckpts, loras = models / "Stable-diffusion", models / "Lora"
    write_keys(ckpts / "good-sd15.safetensors", SD15_KEYS)
    write_keys(ckpts / "deep" / "good-xl.safetensors", SDXL_KEYS)
    write_keys(loras / "style.safetensors", LORA_KEYS)
    write_keys(models / "VAE" / "vae.safetensors", VAE_KEYS)
    write_diffusers_folder(ckpts / "good-diffusers", "StableDiffusionPipeline", {"in_channels": 4})
    # links: a loop of two links, a link to an ancestor, 8 links to `.` (exponential before), a broken link
    os.symlink("loop-b", ckpts / "loop-a")
    os.symlink("loop-a", ckpts / "loop-b")
    os.symlink("..", ckpts / "deep" / "up")
    for i in range(8):
        os.symlink(".", loras / f"dot{i}")
    os.symlink("missing.safetensors", ckpts / "dangling.safetensors")
    # model_index.json: diffusers' custom-pipeline list, not JSON, 3 GiB sparse, no _class_name
    custom = ckpts / "custom"
    custom.mkdir()
    (custom / "model_index.json").write_text(json.dumps({"_class_name": ["my_module", "MyPipeline"]}))
    (ckpts / "not-json").mkdir()
    (ckpts / "not-json" / "model_index.json").write_bytes(b"\xff{not json")
    (ckpts / "giant").mkdir()
    sparse_file(ckpts / "giant" / "model_index.json", b'{"_class_name": "StableDiffusionPipeline", "x": "', 3 << 30)
    (ckpts / "nameless").mkdir()
    (ckpts / "nameless" / "model_index.json").write_text("[1, 2]")
    # safetensors: a header claiming 17 MiB (sparse, so it is really there), truncated, unsupported families
    sparse_file(ckpts / "big-header.safetensors", struct.pack("<Q", MAX_HEADER_BYTES + (1 << 20)) + b"{",
                MAX_HEADER_BYTES + (2 << 20))
    (ckpts / "truncated.safetensors").write_bytes(struct.pack("<Q", 10_000) + b"{")
    write_keys(ckpts / "sd2.safetensors", SD2_KEYS)
    write_keys(ckpts / "sd3.safetensors", SD3_KEYS)
    write_keys(ckpts / "refiner.safetensors", REFINER_KEYS)
    # not regular files: a FIFO and a link to a device named like models
    if hasattr(os, "mkfifo"):
        os.mkfifo(ckpts / "pipe.safetensors")
        os.mkfifo(loras / "pipe-lora.pt")
    os.symlink("/dev/zero", ckpts / "zero.safetensors")
    return root


def skipped_reasons(manager: ModelManager) -> dict[str, str]:
    return {Path(entry.path).name: entry.reason for entry in manager.catalog.skipped}


@needs_fifo
def test_every_good_model_is_listed_and_each_bad_entry_is_skipped_with_its_reason(tmp_path):
    root = hostile_webui(tmp_path / "webui")
    manager = ModelManager([root], device="cpu")
    started = time.monotonic()
    found = {info.name for info in manager.discover() if info.kind != "builtin"}
    assert time.monotonic() - started < 5  # 8 links to `.` cost minutes before (each walked again, 8^6 times)
    assert found == {"good-sd15", "deep/good-xl", "good-diffusers"}
    assert [info.name for info in manager.catalog.loras] == ["style"]
    assert [info.name for info in manager.catalog.vaes] == ["vae"]

    reasons = skipped_reasons(manager)
    assert reasons["loop-a"] == reasons["loop-b"] == "is a symbolic link loop (it never reaches a file)."
    assert "already scanned (a link loop)" in reasons["up"]
    assert all("already scanned" in reasons[f"dot{i}"] for i in range(8))
    assert reasons["dangling.safetensors"] == "is a broken symbolic link (its target does not exist)."
    assert reasons["custom"].startswith("a custom pipeline (my_module.MyPipeline)")
    problems = "\n".join(manager.catalog.problems)
    assert "not-json/model_index.json: cannot be read as JSON ('utf-8' codec can't decode" in problems
    assert "giant/model_index.json: a model_index.json of 3072 MiB is larger than any real one" in problems
    assert "does not name a pipeline" in reasons["nameless"]
    assert reasons["big-header.safetensors"].startswith("refused before reading it: a safetensors header of 17 MiB "
                                                        "is larger than any real model's")
    assert "runs past the end of the file" in reasons["truncated.safetensors"]
    assert "looks like Stable Diffusion 2.x" in reasons["sd2.safetensors"]
    assert "looks like Stable Diffusion 3" in reasons["sd3.safetensors"]
    assert "looks like an SDXL refiner" in reasons["refiner.safetensors"]
    assert reasons["pipe.safetensors"] == reasons["pipe-lora.pt"] == "is a FIFO (named pipe), not a regular file."
    assert reasons["zero.safetensors"] == "is a device, not a regular file."
    for entry in manager.catalog.skipped:  # one sentence each, never a traceback or a page
        assert entry.reason.endswith(".") and "\n" not in entry.reason and len(entry.reason) < 300


def test_a_failure_nobody_foresaw_skips_that_entry_only(tmp_path, monkeypatch):
    """The last line of defence: an exception from a detector skips the one file, naming the error."""
    write_keys(tmp_path / "checkpoints" / "a.safetensors", SD15_KEYS)
    write_keys(tmp_path / "checkpoints" / "b.safetensors", SD15_KEYS)
    import inference.models.discovery as discovery

    real = discovery.detect_checkpoint_family

    def fragile(path, shapes, families):
        if Path(path).name == "a.safetensors":
            raise TypeError("unhashable type: 'list'")
        return real(path, shapes, families)

    monkeypatch.setattr(discovery, "detect_checkpoint_family", fragile)
    manager = ModelManager([tmp_path], device="cpu")
    assert [info.name for info in manager.discover() if info.kind != "builtin"] == ["b"]
    assert manager.catalog.problems == [
        f"{tmp_path / 'checkpoints' / 'a.safetensors'}: could not be examined (unexpected TypeError: unhashable "
        "type: 'list')."
    ]


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads any file")
def test_an_unreadable_file_is_skipped(tmp_path):
    write_keys(tmp_path / "checkpoints" / "good.safetensors", SD15_KEYS)
    secret = write_keys(tmp_path / "checkpoints" / "secret.safetensors", SD15_KEYS)
    secret.chmod(0)
    manager = ModelManager([tmp_path], device="cpu")
    assert [info.name for info in manager.discover() if info.kind != "builtin"] == ["good"]
    assert skipped_reasons(manager) == {"secret.safetensors": "cannot be read (permission denied)."}


def test_walks_stop_at_a_bounded_depth_and_say_so(tmp_path):
    folder = tmp_path / "checkpoints"
    shallow = folder.joinpath(*[f"d{i}" for i in range(MAX_SCAN_DEPTH)])
    write_keys(shallow / "reached.safetensors", SD15_KEYS)
    write_keys(shallow / "deeper" / "beyond.safetensors", SD15_KEYS)
    manager = ModelManager([tmp_path], device="cpu")
    assert [info.name.rsplit("/", 1)[-1] for info in manager.discover() if info.kind != "builtin"] == ["reached"]
    assert skipped_reasons(manager) == {"deeper": f"lies more than {MAX_SCAN_DEPTH} folders deep; deeper folders "
                                                  "are not scanned."}


def test_a_linked_folder_elsewhere_is_followed_once(tmp_path):
    shared = tmp_path / "shared"
    write_keys(shared / "linked.safetensors", SD15_KEYS)
    checkpoints = tmp_path / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    os.symlink(shared, checkpoints / "one")
    os.symlink(shared, checkpoints / "two")
    manager = ModelManager([tmp_path / "models"], device="cpu")
    assert [info.name for info in manager.discover() if info.kind != "builtin"] == ["one/linked"]
    assert "already scanned" in skipped_reasons(manager)["two"]


# ---- bounded reads -------------------------------------------------------------------------------------------


def test_a_sparse_giant_model_index_costs_nothing(tmp_path):
    path = sparse_file(tmp_path / "model_index.json", b'{"_class_name": "', 3 << 30)
    peak = peak_allocation(lambda: read_json(path, what="model_index.json"), ModelError,
                           r"model_index\.json: a model_index\.json of 3072 MiB is larger than any real one")
    assert peak < 64 * 1024


def test_json_at_the_cap_is_read_and_one_byte_more_is_refused(tmp_path):
    at_cap = tmp_path / "at.json"
    at_cap.write_bytes(b'{"a": "' + b"x" * (MAX_JSON_BYTES - 10) + b'"}')
    assert len(read_json(at_cap)["a"]) == MAX_JSON_BYTES - 10
    over = tmp_path / "over.json"
    over.write_bytes(b" " * (MAX_JSON_BYTES + 1))
    with pytest.raises(ModelError, match="larger than any real one"):
        read_json(over)


def test_a_safetensors_header_over_the_cap_is_refused_before_it_is_read(tmp_path):
    declared = 97 << 20  # the review's file: a 97 MiB header, read whole before
    path = sparse_file(tmp_path / "big.safetensors", struct.pack("<Q", declared) + b"{", declared + 8)
    peak = peak_allocation(lambda: read_safetensors_header(path), ModelError,
                           r"big\.safetensors: refused before reading it: a safetensors header of 97 MiB is larger "
                           r"than any real model's \(at most 16 MiB is read\)")
    assert peak < 64 * 1024


@needs_fifo
@pytest.mark.timeout(20)
def test_a_fifo_named_like_weights_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "x.safetensors")
    with pytest.raises(ModelError, match=r"x\.safetensors: is a FIFO \(named pipe\), not a regular file"):
        read_safetensors_header(tmp_path / "x.safetensors")
    os.mkfifo(tmp_path / "model_index.json")
    with pytest.raises(ModelError, match="is a FIFO"):
        read_json(tmp_path / "model_index.json")
    os.mkfifo(tmp_path / "old.ckpt")
    from inference.models import read_weight_shapes

    with pytest.raises(ModelError, match="is a FIFO"):
        read_weight_shapes(tmp_path / "old.ckpt")
