"""Which file a LoRA or embedding name in a prompt means, by the rule A1111 users rely on.

A1111 lists `models/Lora` and `embeddings` recursively and knows every file by its bare file
name without the suffix, whatever sub-folder it sits in: `<lora:inkStyle:0.6>` finds
`Lora/styles/ink/inkStyle.safetensors`. A LoRA may also be found by its alias (the kohya
`ss_output_name` in its metadata). Here, in order:

1. the path relative to the folder, with or without its suffix, `/` or `\\` alike
   (`styles/ink/inkStyle`, as ComfyUI writes names) — always unambiguous;
2. the bare name, exactly (A1111's rule);
3. an alias, exactly;
4. the bare name or alias ignoring case, if exactly one file has it (A1111 would not find these;
   a name typed on another system often differs only in case).

Several files with the same bare name (`a/style.safetensors`, `b/style.pt`): A1111 takes whichever
its folder walk met last, which depends on the file system. Here the choice is fixed: the file in
the shallowest folder, then the first in sorted path order, then the preferred suffix order.
Pure functions: the model manager passes the relative paths it discovered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

SUFFIX_PREFERENCE = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def normalized(relative_path: str) -> str:
    """The relative path with `/` separators and no leading `./`."""
    parts = [p for p in relative_path.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def bare_name(relative_path: str) -> str:
    """The name A1111 knows a file by: its file name without the suffix."""
    return PurePosixPath(normalized(relative_path)).stem


def without_suffix(relative_path: str) -> str:
    path = PurePosixPath(normalized(relative_path))
    return str(path.with_suffix("")) if path.suffix else str(path)


def _preference(relative_path: str) -> tuple:
    path = PurePosixPath(normalized(relative_path))
    suffix = path.suffix.lower()
    rank = SUFFIX_PREFERENCE.index(suffix) if suffix in SUFFIX_PREFERENCE else len(SUFFIX_PREFERENCE)
    return (len(path.parts), str(path.with_suffix("")).lower(), rank, str(path))


def match_asset(name: str, relative_paths: Iterable[str], aliases: Mapping[str, str] | None = None) -> str | None:
    """The relative path (as given) of the file `name` means, or None. `aliases`: alias -> relative path."""
    wanted = normalized(name.strip())
    if not wanted:
        return None
    paths = sorted(set(relative_paths), key=_preference)
    aliases = dict(aliases or {})
    for path in paths:  # 1. the relative path, with or without its suffix
        if normalized(path) == wanted or without_suffix(path) == wanted:
            return path
    if "/" in wanted:
        return None  # a path that names no file is not a bare name either
    for path in paths:  # 2. A1111: the bare file name
        if bare_name(path) == wanted:
            return path
    if wanted in aliases:  # 3. the alias from the file's metadata
        return aliases[wanted]
    folded = wanted.casefold()  # 4. ignoring case, only when that is unambiguous
    hits = [(bare_name(path), path) for path in paths if bare_name(path).casefold() == folded]
    hits += [(alias, path) for alias, path in aliases.items() if alias.casefold() == folded]
    if hits and len({hit for hit, _ in hits}) == 1:  # "Style" and "STYLE" both there: no guess
        return sorted((path for _, path in hits), key=_preference)[0]
    return None
