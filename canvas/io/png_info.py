"""PNG export with generation parameters, and reading them back from PNGs of several apps.

`write_png(path, rgb, parameters, collagen)` writes (atomically):
- a `parameters` text chunk in the AUTOMATIC1111 layout other tools read:
      <prompt lines>
      Negative prompt: <negative lines>
      Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: ab12, Model: x, ...
  values with a comma, colon or newline are JSON-quoted, as A1111 does;
- a `collagen` JSON chunk: {"format_version": 1, "parameters": {...}, **collagen} with everything
  (mode, regions, settings; arrays are stored as their sha256, shape and dtype).

`read_png_parameters(path)` understands Collagen's chunk, Fooocus's JSON `parameters` (and its A1111
scheme), A1111 `parameters`, InvokeAI `invokeai_metadata`, the older `sd-metadata` and `Dream`,
NovelAI (`Software`, `Description`, `Comment`), ComfyUI `prompt` (API node graph) and `workflow`
(UI graph), in that order of preference. It returns {} when the PNG carries none of them, else:
    source, prompt, negative, steps, sampler, sampler_original, schedule, cfg, seed, width, height,
    clip_skip, loras, model, model_hash, extra
(unknown values are None; `sampler` is Collagen's name when it is the same sampler, else the name
as written, see canvas.io.sampler_names; `clip_skip` in A1111's numbering; `loras` [[name, weight]]
beside the prompt's own `<lora:>` tags; `extra` holds the other key/value pairs; `collagen` the chunk).
A damaged or truncated PNG, or metadata that is not valid JSON, raises ProjectError.

Over 500 lines: one reader per app's metadata format (nine of them), each short; the chunk layer
is canvas.io.png_chunks.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from canvas.io.atomic import atomic_file
from canvas.io.errors import ProjectError
from canvas.io.limits import DEFAULT_LIMITS, ReadLimits
from canvas.io.png_chunks import PngFormatError, read_png_info
from canvas.io.regular_file import open_regular_file
from canvas.io.sampler_names import match_sampler

COLLAGEN_FORMAT_VERSION = 1
PARAMETERS_KEY = "parameters"
COLLAGEN_KEY = "collagen"
_RESERVED = ("format_version", "parameters")

# Aliases the engines use for the same value -> the name read_png_parameters returns.
_ALIASES = {
    "prompt": "prompt", "negative": "negative", "negative_prompt": "negative",
    "steps": "steps", "sampler": "sampler", "sampler_name": "sampler",
    "cfg": "cfg", "cfg_scale": "cfg", "seed": "seed", "width": "width", "height": "height",
    "model": "model", "model_name": "model", "model_hash": "model_hash",
}
_LINE_ORDER = (("steps", "Steps"), ("sampler", "Sampler"), ("cfg", "CFG scale"), ("seed", "Seed"))
_LABELS = {
    "denoising_strength": "Denoising strength", "strength": "Denoising strength", "clip_skip": "Clip skip",
    "vae": "VAE", "lcm": "LCM", "lcm_lora": "LCM LoRA", "mask_blur": "Mask blur",
    "image_guidance_scale": "Image CFG scale", "true_cfg_scale": "True CFG scale",
}
_SKIPPED_ON_LINE = {"size"}  # written as "Size: WxH" from width and height
_A1111_KEYS = {"Steps": "steps", "Sampler": "sampler", "CFG scale": "cfg", "Seed": "seed",
               "Model": "model", "Model hash": "model_hash"}
_KEY = re.compile(r"\w[\w \-/]*")
_SIZE = re.compile(r"(\d{1,9})x(\d{1,9})")


# ==== writing ==================================================================================


def write_png(path: str | os.PathLike[str], rgb: np.ndarray, parameters: dict[str, Any],
              collagen: dict[str, Any] | None = None, *, limits: ReadLimits = DEFAULT_LIMITS) -> None:
    """Write an RGB image with its generation parameters, atomically."""
    target = Path(path)
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            and rgb.size):
        raise ProjectError(target, "cannot be written: the image is not HxWx3 8-bit RGB")
    collagen = dict(collagen or {})
    clash = [key for key in _RESERVED if key in collagen]
    if clash:
        raise ProjectError(target, f"cannot be written: the Collagen record uses the reserved key {clash[0]!r}")
    height, width = rgb.shape[:2]
    text = format_parameters(parameters, width, height)
    try:
        record = json.dumps({"format_version": COLLAGEN_FORMAT_VERSION, "parameters": parameters, **collagen},
                            ensure_ascii=False, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ProjectError(target, f"cannot be written: {exc}") from None
    for name, chunk in ((PARAMETERS_KEY, text), (COLLAGEN_KEY, record)):
        if len(chunk.encode("utf-8", "surrogatepass")) > limits.max_text_chunk:
            raise ProjectError(target, f"cannot be written: its {name} text is longer than the "
                                       f"{limits.max_text_chunk} bytes a PNG text chunk may hold here")

    from PIL import Image, PngImagePlugin  # imported on export, not at GUI start-up

    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, _utf8_safe(text))  # tEXt when Latin-1, else iTXt (as A1111)
    info.add_itxt(COLLAGEN_KEY, _utf8_safe(record), zip=len(record) > 4096)
    try:
        with atomic_file(target) as fileobj:
            Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(fileobj, "PNG", pnginfo=info)
    except OSError as exc:
        raise ProjectError(target, f"cannot be written: {exc.strerror or exc}") from None


def _utf8_safe(text: str) -> str:
    # A lone surrogate cannot be stored as UTF-8; replace it rather than fail the export.
    return text.encode("utf-8", "replace").decode("utf-8")


def array_sha256(array: np.ndarray) -> str:
    """Hex sha256 of an array's C-order bytes (how masks are identified in the Collagen record)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"sha256": array_sha256(value), "shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored in PNG metadata")


def format_parameters(parameters: dict[str, Any], width: int | None = None, height: int | None = None) -> str:
    """The A1111 `parameters` text for a parameters dict (engine key names or A1111-style aliases)."""
    values: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in parameters.items():
        canonical = _ALIASES.get(key)
        if canonical is not None:
            values.setdefault(canonical, value)
        else:
            extras[key] = value
    lines = [str(values.get("prompt") or "")]
    if values.get("negative"):
        lines.append(f"Negative prompt: {values['negative']}")
    pairs: list[tuple[str, Any]] = [(label, values[key]) for key, label in _LINE_ORDER if values.get(key) is not None]
    size = _size_text(values, extras, width, height)
    if size:
        pairs.append(("Size", size))
    for key, label in (("model_hash", "Model hash"), ("model", "Model")):
        if values.get(key):
            pairs.append((label, values[key]))
    used = {label for label, _ in pairs}
    for key, value in extras.items():
        label = _LABELS.get(key) or _clean_label(str(key).replace("_", " ").capitalize())
        if key in _SKIPPED_ON_LINE or not label or label in used or not _is_scalar(value):
            continue
        used.add(label)
        pairs.append((label, value))
    lines.append(", ".join(f"{label}: {_quote(_scalar_text(value))}" for label, value in pairs))
    return "\n".join(lines)


def _size_text(values: dict, extras: dict, width: int | None, height: int | None) -> str | None:
    w, h = values.get("width"), values.get("height")
    if isinstance(w, int) and isinstance(h, int):
        return f"{w}x{h}"
    if isinstance(extras.get("size"), str) and _SIZE.fullmatch(extras["size"]):
        return extras["size"]
    return f"{width}x{height}" if width and height else None


def _clean_label(label: str) -> str:
    label = re.sub(r"[^\w \-/]", "", label).strip()
    return label if _KEY.fullmatch(label or "-") else ""


def _is_scalar(value: Any) -> bool:
    return value is not None and isinstance(value, (str, int, float, bool, np.generic)) and value != ""


def _scalar_text(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _quote(text: str) -> str:
    """A1111's rule: a value with a comma, colon or newline is written as a JSON string."""
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


# ==== reading ==================================================================================


def read_png_parameters(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Generation parameters stored in a PNG by Collagen, A1111, Fooocus, InvokeAI, NovelAI or
    ComfyUI ({} if none)."""
    source = Path(path)
    try:
        with open_regular_file(source, limits.max_png_bytes, what="PNG image") as stream:
            info = read_png_info(stream, limits)
    except OSError as exc:
        raise ProjectError(source, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    except PngFormatError as exc:
        raise ProjectError(source, f"is not a usable PNG: {exc}") from None
    texts = info.texts
    fooocus = texts.get("fooocus_scheme", "").strip().lower() in ("fooocus", "a1111")
    parameters_json = _json_object(texts.get(PARAMETERS_KEY, ""))  # JSON there is never A1111 text
    readers: tuple[tuple[str, str, Callable[[Any], dict | None], bool], ...] = (
        (COLLAGEN_KEY, "collagen", _from_collagen, True),
        # Fooocus writes JSON into `parameters` (its "fooocus" scheme) or A1111 text (its "a1111" scheme)
        (PARAMETERS_KEY, "fooocus", lambda _text: _from_fooocus(parameters_json), False),
        (PARAMETERS_KEY, "fooocus" if fooocus else "a1111",
         lambda text: _from_a1111(text) if parameters_json is None else None, False),
        ("invokeai_metadata", "invokeai", _from_invokeai, True),
        ("sd-metadata", "invokeai", _from_invokeai_legacy, True),
        ("Dream", "invokeai", _from_invokeai_dream, False),
        ("Comment", "novelai", lambda comment: _from_novelai(comment, texts), False),
        ("prompt", "comfyui", _from_comfy_prompt, True),
        ("workflow", "comfyui", _from_comfy_workflow, True),
    )
    for keyword, name, reader, is_json in readers:
        if keyword not in texts:
            continue
        raw = texts[keyword]
        if is_json:
            raw = _json(source, keyword, raw)
        found = reader(raw)
        if found is not None:
            return {"source": name, **_normalized(found)}
    return {}


def collagen_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """What `read_png_parameters` gives for a PNG Collagen wrote with these generation parameters
    (a kept generation's record), without a file."""
    found = _from_collagen({"format_version": COLLAGEN_FORMAT_VERSION, "parameters": dict(parameters)})
    return {"source": "collagen", **_normalized(found)} if found is not None else {}


def _json(source: Path, keyword: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise ProjectError(source, f"has {keyword!r} metadata nested too deeply") from None
    except ValueError:
        raise ProjectError(source, f"has {keyword!r} metadata that is not valid JSON") from None


def _json_object(text: str) -> dict | None:
    """`text` as a JSON object, or None when it is not one (an A1111 prompt may start with `{`)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _normalized(found: dict[str, Any]) -> dict[str, Any]:
    written = _text(found.get("sampler"))
    schedule = _text(found.get("schedule"))
    match = match_sampler(written, schedule) if written else None
    out = {
        "prompt": _text(found.get("prompt")) or "",
        "negative": _text(found.get("negative")) or "",
        "steps": _integer(found.get("steps")),
        # Collagen's name when it is the same sampler, else the name as the app wrote it
        "sampler": match.name if match is not None and match.exact else written,
        "sampler_original": written,
        "schedule": schedule,
        "cfg": _number(found.get("cfg")),
        "seed": _integer(found.get("seed")),
        "width": _integer(found.get("width")),
        "height": _integer(found.get("height")),
        "clip_skip": _integer(found.get("clip_skip")),  # A1111's numbering: 1 = the last layer
        "loras": _loras(found.get("loras")),
        "model": _text(found.get("model")),
        "model_hash": _text(found.get("model_hash")),
        "extra": found.get("extra") or {},
    }
    if "collagen" in found:
        out["collagen"] = found["collagen"]
    return out


def _loras(value: Any) -> list[list]:
    """[[name, weight], ...] from the readers' (name, weight) pairs; malformed entries are left out."""
    out = []
    for item in _listed(value):
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str) and item[0].strip():
            weight = _number(item[1])
            if weight is not None:
                out.append([item[0].strip(), weight])
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,30}\s*", value):
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) and len(str(value)) < 64 else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


# ---- Collagen ---------------------------------------------------------------------------------


def _from_collagen(record: Any) -> dict | None:
    if not isinstance(record, dict) or not isinstance(record.get("parameters"), dict):
        return None
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in record["parameters"].items():
        canonical = _ALIASES.get(key)
        if canonical is not None:
            values.setdefault(canonical, value)
        elif _is_scalar(value):
            extra[key] = value
    if (values.get("width") is None or values.get("height") is None) and isinstance(extra.get("size"), str):
        size = _SIZE.fullmatch(extra["size"])
        if size:
            values["width"], values["height"] = int(size.group(1)), int(size.group(2))
    return {**values, "clip_skip": extra.get("clip_skip"), "loras": _collagen_loras(record["parameters"]),
            "extra": extra, "collagen": record}


_LORA_TAG = re.compile(r"<lora:([^:>]+)", re.IGNORECASE)


def _collagen_loras(parameters: dict) -> list[tuple[Any, Any]]:
    """The LoRA list of the panel: the record names every LoRA the engine applied, so those that
    came from `<lora:>` tags in the prompts, and the LCM LoRA, are left out (they would apply twice)."""
    tagged = set()
    for key in ("prompt", "negative_prompt", "negative"):
        if isinstance(parameters.get(key), str):
            tagged.update(name.strip().lower() for name in _LORA_TAG.findall(parameters[key]))
    if parameters.get("lcm") is True and isinstance(parameters.get("lcm_lora"), str):
        tagged.add(parameters["lcm_lora"].strip().lower())
    out = []
    for item in _listed(parameters.get("loras")):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            if item["name"].strip().lower() not in tagged:
                out.append((item["name"], item.get("weight")))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out.append((item[0], item[1]))
    return out


# ---- AUTOMATIC1111 ----------------------------------------------------------------------------


def parse_a1111(text: str) -> dict[str, Any]:
    """Prompt, negative and the key/value line of an A1111 `parameters` text (A1111's own rules)."""
    lines = text.strip().split("\n")
    pairs = _param_pairs(lines[-1]) if lines else []
    if len(pairs) < 3:  # as A1111: a last line with fewer than three pairs is still prompt text
        pairs = []
    else:
        lines = lines[:-1]
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    values: dict[str, Any] = {"prompt": "\n".join(prompt), "negative": "\n".join(negative)}
    extra: dict[str, Any] = {}
    for key, value in pairs:
        if key in _A1111_KEYS:
            values.setdefault(_A1111_KEYS[key], value)
        elif key == "Size" and _SIZE.fullmatch(value):
            w, h = _SIZE.fullmatch(value).groups()
            values["width"], values["height"] = int(w), int(h)
        else:
            extra.setdefault(key, value)
    values["schedule"] = extra.get("Schedule type")
    values["clip_skip"] = extra.get("Clip skip")
    values["extra"] = extra
    return values


def _from_a1111(text: str) -> dict | None:
    return parse_a1111(text) if text.strip() else None


def _param_pairs(line: str) -> list[tuple[str, str]]:
    """Split `Key: value, Key: "quoted, value", ...` in one linear pass (no backtracking regex,
    so a hostile megabyte-long line costs a megabyte of work)."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(line)
    # Once a quote runs to the end of the line unclosed, every later quote does too (escapes parse
    # the same from there on), so later quotes are not scanned again: the pass stays linear.
    unclosed_after = n + 1
    while i < n:
        colon = line.find(":", i)
        if colon < 0:
            break
        comma = line.find(",", i)
        if 0 <= comma < colon:  # a fragment without a key: skip it, as A1111's regex does
            i = comma + 1
            continue
        key = line[i:colon].strip()
        i = colon + 1
        while i < n and line[i] == " ":
            i += 1
        if unclosed_after > i < n and line[i] == '"':
            end = _end_of_json_string(line, i)
            if end < 0:
                unclosed_after = i
            if end > 0:
                try:
                    value = json.loads(line[i:end])
                except ValueError:
                    value = line[i + 1:end - 1]
                i = end
                comma = line.find(",", i)
                i = n if comma < 0 else comma + 1
                if len(key) <= 100 and _KEY.fullmatch(key):
                    pairs.append((key, value))
                continue
        comma = line.find(",", i)
        value = line[i:] if comma < 0 else line[i:comma]
        i = n if comma < 0 else comma + 1
        if len(key) <= 100 and _KEY.fullmatch(key):
            pairs.append((key, value.strip()))
    return pairs


def _end_of_json_string(line: str, start: int) -> int:
    """Index after the closing quote of the JSON string opening at `start`, or -1."""
    i = start + 1
    while True:
        quote = line.find('"', i)
        if quote < 0:
            return -1
        k, run = quote - 1, 0
        while k > start and line[k] == "\\":
            run, k = run + 1, k - 1
        if run % 2 == 0:  # not escaped
            return quote + 1
        i = quote + 1


# ---- InvokeAI ---------------------------------------------------------------------------------

def _from_invokeai(meta: Any) -> dict | None:
    """InvokeAI 3+ `invokeai_metadata`: the scheduler is the sampler; clip_skip counts skipped layers."""
    if not isinstance(meta, dict) or not ({"positive_prompt", "seed", "steps"} & meta.keys()):
        return None
    model = meta.get("model")
    model_name = model.get("model_name") or model.get("name") if isinstance(model, dict) else model
    model_hash = model.get("hash") if isinstance(model, dict) else None
    if isinstance(model_hash, str) and model_hash.startswith("sha256:"):
        model_hash = model_hash[len("sha256:"):][:10]  # A1111's short form, as other apps match it
    clip_skip = _integer(meta.get("clip_skip"))
    loras = []
    for item in _listed(meta.get("loras")):
        if isinstance(item, dict):  # 3.x: {"lora": {"model_name"}}, 4.x+: {"model": {"name", "key", "hash"}}
            lora = item.get("lora") if isinstance(item.get("lora"), dict) else item.get("model")
            name = (lora.get("model_name") or lora.get("name")) if isinstance(lora, dict) else None
            loras.append((name, item.get("weight")))
    known = {"positive_prompt", "negative_prompt", "steps", "scheduler", "cfg_scale", "seed", "width",
             "height", "model", "clip_skip", "loras"}
    return {
        "prompt": meta.get("positive_prompt"), "negative": meta.get("negative_prompt"),
        "steps": meta.get("steps"), "sampler": meta.get("scheduler"),
        "cfg": meta.get("cfg_scale"), "seed": meta.get("seed"), "width": meta.get("width"),
        "height": meta.get("height"), "model": model_name, "model_hash": model_hash,
        "clip_skip": clip_skip + 1 if clip_skip is not None and clip_skip >= 0 else None, "loras": loras,
        "extra": {k: v for k, v in meta.items() if k not in known and _is_scalar(v)},
    }


def _from_invokeai_legacy(meta: Any) -> dict | None:
    """InvokeAI 2.x `sd-metadata`: the negative prompt is the [bracketed] part of the prompt."""
    if not isinstance(meta, dict) or not isinstance(meta.get("image"), dict):
        return None
    image = meta["image"]
    prompt = image.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(p.get("prompt", "") for p in prompt if isinstance(p, dict) and isinstance(p.get("prompt"), str))
    prompt = prompt if isinstance(prompt, str) else ""
    negative = " ".join(part.strip() for part in re.findall(r"\[([^\[\]]*)\]", prompt))
    positive = re.sub(r"\[[^\[\]]*\]", "", prompt).strip()
    sampler = image.get("sampler")
    return {
        "prompt": positive, "negative": negative, "steps": image.get("steps"),
        "sampler": sampler, "cfg": image.get("cfg_scale"),
        "seed": image.get("seed"), "width": image.get("width"), "height": image.get("height"),
        "model": meta.get("model_weights"), "model_hash": meta.get("model_hash"),
        "extra": {k: v for k, v in meta.items() if k not in ("image", "model_weights", "model_hash")
                  and _is_scalar(v)},
    }


def _from_invokeai_dream(text: str) -> dict | None:
    """InvokeAI 1.x-2.x `Dream`: `"a prompt [negative]" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A k_lms`."""
    found = re.fullmatch(r'\s*"(.*)"(\s+-.*)?\s*', text, re.DOTALL)
    if found is None:
        return None
    prompt, args = found.group(1), found.group(2) or ""
    options = dict(re.findall(r"(?:^|\s)-{1,2}([A-Za-z]\w*)\s+([^\s-][^\s]*|-?\d[^\s]*)", args))
    negative = " ".join(part.strip() for part in re.findall(r"\[([^\[\]]*)\]", prompt))
    names = {"s": "steps", "S": "seed", "W": "width", "H": "height", "C": "cfg", "A": "sampler", "m": "model"}
    values: dict[str, Any] = {"prompt": re.sub(r"\[[^\[\]]*\]", "", prompt).strip(), "negative": negative}
    for key, value in options.items():
        if key in names:
            values[names[key]] = value
    values["extra"] = {k: v for k, v in options.items() if k not in names and v}
    return values


# ---- Fooocus ----------------------------------------------------------------------------------

_FOOOCUS_KEYS = {"prompt", "negative_prompt", "steps", "guidance_scale", "seed", "sampler", "scheduler",
                 "resolution", "base_model", "base_model_hash", "loras", "clip_skip"}


def _from_fooocus(meta: dict | None) -> dict | None:
    """Fooocus's `parameters` JSON (its "fooocus" metadata scheme): its own key names, the
    resolution as the text "(w, h)", the seed as text, LoRAs as [name, weight, hash]."""
    if meta is None or not ({"guidance_scale", "base_model", "resolution", "metadata_scheme"} & meta.keys()):
        return None
    width = height = None
    size = re.fullmatch(r"\s*\(\s*'?(\d{1,9})'?\s*,\s*'?(\d{1,9})'?\s*\)\s*", str(meta.get("resolution", "")))
    if size:
        width, height = int(size.group(1)), int(size.group(2))
    loras = [(item[0], item[1]) for item in _listed(meta.get("loras"))
             if isinstance(item, list) and len(item) >= 2]
    if not loras:  # older Fooocus: "lora_combined_1": "name : weight" (or "True : name : weight")
        for key in sorted(k for k in meta if k.startswith("lora_combined_")):
            parts = str(meta[key]).split(" : ")
            if len(parts) in (2, 3) and parts[-2] != "None" and parts[0] != "False":
                loras.append((parts[-2], parts[-1]))
    model_hash = meta.get("base_model_hash")
    return {
        "prompt": meta.get("prompt"), "negative": meta.get("negative_prompt"), "steps": meta.get("steps"),
        "sampler": meta.get("sampler"), "schedule": meta.get("scheduler"), "cfg": meta.get("guidance_scale"),
        "seed": meta.get("seed"), "width": width, "height": height, "clip_skip": meta.get("clip_skip"),
        "model": meta.get("base_model"), "model_hash": model_hash, "loras": loras,
        "extra": {k: v for k, v in meta.items() if k not in _FOOOCUS_KEYS and _is_scalar(v)},
    }


# ---- NovelAI ----------------------------------------------------------------------------------


def _from_novelai(comment: str, texts: dict[str, str]) -> dict | None:
    """NovelAI: `Software` "NovelAI", the prompt in `Description`, the rest as JSON in `Comment`
    (scale, uc = the negative, k-diffusion sampler names), the model and its hash in `Source`."""
    if not texts.get("Software", "").strip().startswith("NovelAI"):
        return None
    meta = _json_object(comment)
    if meta is None:
        return None
    prompt = texts.get("Description")
    if not isinstance(prompt, str) or not prompt.strip():
        prompt = meta.get("prompt")
    model = model_hash = None
    source_text = texts.get("Source", "")[:1000]  # a model name, not a document: the pattern stays cheap
    source = re.fullmatch(r"\s*(.*?)\s+([0-9A-Fa-f]{8})\s*", source_text)
    if source:
        model, model_hash = source.groups()
    known = {"prompt", "uc", "steps", "sampler", "noise_schedule", "scale", "seed", "width", "height"}
    return {
        "prompt": prompt.strip() if isinstance(prompt, str) else None, "negative": meta.get("uc"),
        "steps": meta.get("steps"), "sampler": meta.get("sampler"), "schedule": meta.get("noise_schedule"),
        "cfg": meta.get("scale"), "seed": meta.get("seed"), "width": meta.get("width"),
        "height": meta.get("height"), "model": model, "model_hash": model_hash,
        "extra": {k: v for k, v in meta.items() if k not in known and _is_scalar(v)},
    }


# ---- ComfyUI ----------------------------------------------------------------------------------

_SAMPLER_NODES = ("KSampler", "KSamplerAdvanced")
_LORA_NODES = ("LoraLoader", "LoraLoaderModelOnly")
_MAX_HOPS = 64  # links followed from the sampler before giving up (graphs can loop)


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else []


def _comfy_nodes(nodes: dict[str, dict], type_key: str, types: tuple[str, ...]) -> list[dict]:
    """The nodes of those types, in node id order."""
    return [nodes[k] for k in sorted((k for k, n in nodes.items() if n.get(type_key) in types), key=_node_key)]


def _comfy_clip_skip(stop_at_layer: Any) -> int | None:
    """CLIPSetLastLayer's -2 (stop at the penultimate layer) is A1111's clip skip 2."""
    layer = _integer(stop_at_layer)
    return -layer if layer is not None and layer < 0 else None


def _node_key(node_id: Any) -> tuple[int, str]:
    text = str(node_id)
    return (int(text), text) if text.isdigit() and len(text) < 18 else (1 << 62, text)


def _from_comfy_prompt(graph: Any) -> dict | None:
    """ComfyUI's API graph: {id: {"class_type", "inputs"}}, links are [node id, output index]."""
    if not isinstance(graph, dict):
        return None
    nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict) and isinstance(v.get("inputs"), dict)}
    samplers = sorted((k for k, v in nodes.items() if v.get("class_type") in _SAMPLER_NODES), key=_node_key)
    if not samplers:
        return None
    inputs = nodes[samplers[0]]["inputs"]

    def follow(value: Any, wanted: tuple[str, ...], kind: type | tuple[type, ...]) -> Any:
        """The first input named in `wanted` of the right type, searching up the links."""
        seen: set[str] = set()
        queue = [value]
        while queue and len(seen) < _MAX_HOPS:
            item = queue.pop(0)
            if isinstance(item, kind) and not isinstance(item, (list, dict, bool)):
                return item
            if not (isinstance(item, list) and len(item) == 2 and str(item[0]) in nodes):
                continue
            node_id = str(item[0])
            if node_id in seen:
                continue
            seen.add(node_id)
            node_inputs = nodes[node_id]["inputs"]
            for name in wanted:
                if name in node_inputs:
                    queue.insert(0, node_inputs[name])
                    break
            else:
                queue.extend(v for v in node_inputs.values() if isinstance(v, list))
        return None

    texts = ("text", "text_g", "prompt", "value", "string", "text_l")
    latent = inputs.get("latent_image")
    return {
        "prompt": follow(inputs.get("positive"), texts, str),
        "negative": follow(inputs.get("negative"), texts, str),
        "steps": follow(inputs.get("steps"), ("value", "steps"), int),
        "sampler": follow(inputs.get("sampler_name"), ("value",), str),
        "schedule": follow(inputs.get("scheduler"), ("value",), str),
        "cfg": follow(inputs.get("cfg"), ("value", "cfg"), (int, float)),
        "seed": follow(inputs.get("seed", inputs.get("noise_seed")), ("seed", "noise_seed", "value"), int),
        "width": follow(latent, ("width",), int),
        "height": follow(latent, ("height",), int),
        "model": follow(inputs.get("model"), ("ckpt_name", "unet_name", "model"), str),
        "loras": [(node["inputs"].get("lora_name"), node["inputs"].get("strength_model"))
                  for node in _comfy_nodes(nodes, "class_type", _LORA_NODES)],
        "clip_skip": _comfy_clip_skip(next((node["inputs"].get("stop_at_clip_layer")
                                            for node in _comfy_nodes(nodes, "class_type", ("CLIPSetLastLayer",))),
                                           None)),
        "extra": {k: v for k, v in (("scheduler", follow(inputs.get("scheduler"), ("value",), str)),
                                    ("denoise", inputs.get("denoise"))) if _is_scalar(v)},
    }


def _from_comfy_workflow(workflow: Any) -> dict | None:
    """ComfyUI's UI graph: nodes with `widgets_values`, links [id, from, slot, to, slot, type]."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        return None
    nodes = {str(n.get("id")): n for n in workflow["nodes"] if isinstance(n, dict)}
    origin = {}
    for link in _listed(workflow.get("links")):
        if isinstance(link, list) and len(link) >= 2:
            origin[str(link[0])] = str(link[1])
    samplers = sorted((k for k, n in nodes.items() if n.get("type") in _SAMPLER_NODES), key=_node_key)
    if not samplers:
        return None
    sampler = nodes[samplers[0]]
    widgets = sampler.get("widgets_values") if isinstance(sampler.get("widgets_values"), list) else []
    if sampler.get("type") == "KSamplerAdvanced":
        widgets = widgets[1:]  # add_noise comes first
    widgets = list(widgets) + [None] * 7
    seed, _control, steps, cfg, sampler_name, scheduler, denoise = widgets[:7]

    def upstream(input_name: str, wanted_type: str | None = None) -> dict | None:
        seen: set[str] = set()
        for item in _listed(sampler.get("inputs")):
            if isinstance(item, dict) and item.get("name") == input_name:
                node = nodes.get(origin.get(str(item.get("link"))))
                while node is not None and str(node.get("id")) not in seen and len(seen) < _MAX_HOPS:
                    seen.add(str(node.get("id")))
                    if wanted_type is None or node.get("type") == wanted_type:
                        return node
                    links = [i.get("link") for i in _listed(node.get("inputs")) if isinstance(i, dict)]
                    node = nodes.get(origin.get(str(links[0]))) if links else None
        return None

    def widget(node: dict | None, index: int) -> Any:
        values = node.get("widgets_values") if node else None
        return values[index] if isinstance(values, list) and len(values) > index else None

    checkpoints = [n for n in nodes.values() if n.get("type") in ("CheckpointLoaderSimple", "CheckpointLoader")]
    latent = upstream("latent_image", "EmptyLatentImage")
    return {
        "prompt": widget(upstream("positive"), 0), "negative": widget(upstream("negative"), 0),
        "steps": steps, "sampler": sampler_name, "schedule": scheduler, "cfg": cfg, "seed": seed,
        "width": widget(latent, 0), "height": widget(latent, 1),
        "model": widget(checkpoints[0], 0) if checkpoints else None,
        "loras": [(widget(node, 0), widget(node, 1)) for node in _comfy_nodes(nodes, "type", _LORA_NODES)],
        "clip_skip": _comfy_clip_skip(next((widget(node, 0) for node in
                                            _comfy_nodes(nodes, "type", ("CLIPSetLastLayer",))), None)),
        "extra": {k: v for k, v in (("scheduler", scheduler), ("denoise", denoise)) if _is_scalar(v)},
    }
