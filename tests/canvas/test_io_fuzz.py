"""Mutated projects and PNGs: the readers answer ProjectError or a result, never another exception."""

from __future__ import annotations

import copy
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import pytest

from canvas.io.errors import ProjectError
from canvas.io.ora import load_ora, save_ora
from canvas.io.png_info import parse_a1111, read_png_parameters
from tests.canvas.documents import every_kind_document
from tests.canvas.test_png_info import A1111_TEXT, COMFY_PROMPT, COMFY_WORKFLOW, itxt_chunk, png_with

ODD_VALUES = [None, True, False, 0, -1, 1e308, float("nan"), "", "x" * 10, [], {}, [1, 2], [[1, 2]], ["3", 0],
              ["6", 0], {"a": 1}, 2**70, "#zzzzzz", 100000, "../x", "data/layer-0000.png", "sketch", "image",
              "KSampler", {"class_type": "KSampler", "inputs": {}}, {"type": "KSampler"}]


def mutate_json(value: Any, rng: random.Random) -> Any:
    """Replace or delete one random node of a JSON tree."""
    paths: list[list] = []

    def walk(node: Any, path: list) -> None:
        paths.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            walk(child, path + [key])

    walk(value, [])
    if len(paths) < 2:
        return value
    path = rng.choice(paths[1:])
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.2:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return value


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            break
        at = rng.randrange(len(out))
        roll = rng.random()
        if roll < 0.6:
            out[at] = rng.randrange(256)
        elif roll < 0.8:
            del out[at:at + rng.randint(1, 30)]
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 10)))
    return bytes(out)


@pytest.fixture(scope="module")
def project_members(tmp_path_factory) -> dict[str, bytes]:
    path = tmp_path_factory.mktemp("fuzz") / "seed.ora"
    save_ora(every_kind_document(40, 32), path)
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def test_mutated_projects_fail_cleanly(project_members, tmp_path):
    rng = random.Random(11)
    path = tmp_path / "mutant.ora"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(150):
        members = dict(project_members)
        name = rng.choice(sorted(members))
        if name.endswith(".json") and rng.random() < 0.8:
            tree = json.loads(members[name])
            for _ in range(rng.randint(1, 3)):
                tree = mutate_json(tree, rng)
            members[name] = json.dumps(tree).encode()
        elif rng.random() < 0.1:
            del members[name]
        else:
            members[name] = mutate_bytes(members[name], rng)
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in members.items():
                zf.writestr(member, data)
        try:
            load_ora(path)
            outcomes["loaded"] += 1
        except ProjectError as exc:
            assert str(exc).startswith("mutant.ora: ") and str(exc).endswith(".")
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50  # the mutations did reach the validators


def test_mutated_metadata_fails_cleanly(tmp_path: Path):
    rng = random.Random(12)
    sources = [
        ("prompt", COMFY_PROMPT), ("workflow", COMFY_WORKFLOW),
        ("invokeai_metadata", {"positive_prompt": "c", "seed": 9, "steps": 3, "scheduler": "euler",
                               "model": {"hash": "b", "name": "J"}}),
        ("sd-metadata", {"model_weights": "s", "image": {"prompt": [{"prompt": "a [b] c"}], "sampler": "k_lms"}}),
        ("collagen", {"format_version": 1, "parameters": {"prompt": "x", "seed": 1, "size": "3x4"}}),
    ]
    for _ in range(300):
        key, tree = rng.choice(sources)
        tree = copy.deepcopy(tree)
        for _ in range(rng.randint(1, 4)):
            tree = mutate_json(tree, rng)
        text = list(A1111_TEXT)
        for _ in range(rng.randint(1, 6)):
            text[rng.randrange(len(text))] = rng.choice(['"', "\\", ",", ":", "\n", "x", " "])
        assert isinstance(parse_a1111("".join(text))["prompt"], str)
        path = png_with(tmp_path / "m.png", itxt_chunk(key, json.dumps(tree)))
        try:
            result = read_png_parameters(path)
        except ProjectError:
            continue
        assert result == {} or set(result) >= {"source", "prompt", "negative", "steps", "seed", "model"}
