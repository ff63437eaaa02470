"""The A1111 rule for LoRA and embedding names (inference.asset_names), as a pure function."""

from __future__ import annotations

import pytest

from inference.asset_names import bare_name, match_asset

FILES = ["styles/ink/inkStyle.safetensors", "detail.pt", "a/dup.safetensors", "b/c/dup.safetensors", "dup.ckpt",
         "x/Case.safetensors", "y/CASE.pt", "win\\folder\\tweak.safetensors", "sub/detail.safetensors"]


@pytest.mark.parametrize("name, expected", [
    ("inkStyle", "styles/ink/inkStyle.safetensors"),  # a bare name finds a file in a sub-folder, as A1111
    ("styles/ink/inkStyle", "styles/ink/inkStyle.safetensors"),  # ComfyUI-style relative path
    ("styles\\ink\\inkStyle.safetensors", "styles/ink/inkStyle.safetensors"),
    ("tweak", "win\\folder\\tweak.safetensors"),
    ("win/folder/tweak", "win\\folder\\tweak.safetensors"),
    ("detail", "detail.pt"),  # the shallowest of two files with the same name
    ("sub/detail", "sub/detail.safetensors"),  # a path says which
    ("dup", "dup.ckpt"), ("a/dup", "a/dup.safetensors"), ("b/c/dup.safetensors", "b/c/dup.safetensors"),
    ("INKSTYLE", "styles/ink/inkStyle.safetensors"),  # case differs, one file: found
    ("case", None),  # Case and CASE both exist: no guess
    ("Case", "x/Case.safetensors"), ("CASE", "y/CASE.pt"),  # exact case wins
    ("missing", None), ("styles/inkStyle", None), ("", None), ("  ", None),
])
def test_match_asset(name, expected):
    assert match_asset(name, FILES) == expected


def test_aliases_come_after_file_names_and_never_shadow_them():
    aliases = {"Ink Master": "styles/ink/inkStyle.safetensors", "detail": "a/dup.safetensors"}
    assert match_asset("Ink Master", FILES, aliases) == "styles/ink/inkStyle.safetensors"
    assert match_asset("ink master", FILES, aliases) == "styles/ink/inkStyle.safetensors"
    assert match_asset("detail", FILES, aliases) == "detail.pt"


def test_the_answer_does_not_depend_on_listing_order():
    assert {match_asset("dup", order) for order in (FILES, FILES[::-1], sorted(FILES))} == {"dup.ckpt"}


def test_bare_name():
    assert bare_name("a\\b/c.d.safetensors") == "c.d" and bare_name("./x.pt") == "x"
