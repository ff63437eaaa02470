"""`collagen` command line (SPEC §8).

    collagen [PROJECT.ora]                      open the editor
    collagen render PROJECT.ora --out OUT.png   run the project's saved generation headless
    collagen models [NAME] [--json]             what model discovery found, and what it skipped and why
    collagen info FILE                          layers of a project, or the parameters of a PNG
    collagen --self-test                        a tiny offline generation end to end

Every failure is one sentence on stderr and a non-zero exit status, never a traceback. stderr
carries only the CLI's own lines (`step ...`, `wrote ...`, `warning: ...`, `error: ...`): library
logging, Python warnings and progress bars go to the log file, or to stderr with --verbose.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

# Before anything can import diffusers/transformers: no code path may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 130
log = logging.getLogger("collagen")


class CliError(Exception):
    """One sentence for stderr."""


def _say(message: str) -> None:
    print(shown(message), file=sys.stderr, flush=True)


def _out(line: str) -> None:
    print(shown(line), flush=True)


_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Text that came from a file, safe for a terminal: control characters (escape sequences that
    retitle or recolour the terminal) are printed escaped, and lone surrogates (valid in a project's
    JSON, not in UTF-8) as "?" instead of failing the whole command."""
    text = _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return text.encode("utf-8", "replace").decode("utf-8")


# ---- render --------------------------------------------------------------------------------


def render(project: Path, out: Path, *, model: str | None = None, steps: int | None = None,
           seed: int | None = None, models_dir: str | None = None, quiet: bool = False,
           backends: list[str] | None = None, open_large: bool = False) -> list[Path]:
    """Run a project's saved generation settings and write the result PNG(s) with metadata.
    `open_large`: open a project that asks for more memory than a file of its size may (--open-large)."""
    from canvas.io.errors import CostlyFileError
    from canvas.io.limits import DEFAULT_LIMITS, trusting
    from canvas.io.ora import load_ora
    from canvas.io.png_info import write_png
    from canvas.model.compose import compose
    from canvas.model.document import DocumentError
    from desktop.request_builder import build_plan, check_canvas_size
    from inference.api import Cancelled, Failed, Finished, Notice, Progress, RequestError
    from inference.engine import Engine
    from inference.sd.fastpath import FastPathHook

    check_project_file(project)
    try:
        document = load_ora(project, trusting(DEFAULT_LIMITS) if open_large else DEFAULT_LIMITS)
    except CostlyFileError as exc:
        if open_large:
            raise
        raise CliError(f"{exc} If you made it yourself (a large, nearly empty canvas packs that small), "
                       "add --open-large to open it anyway.") from None
    targets = output_paths(out, max(1, int(document.settings.batch_count)))  # before any generating
    if steps is not None:
        document.settings.steps = int(steps)
    if seed is not None:
        document.settings.seed = int(seed)
    managers: list = []

    def manager():  # one discovery for the family look-up and the engine
        if not managers:
            managers.append(_model_manager(models_dir))
        return managers[0]

    try:  # the whole request is validated here, before any model is loaded
        check_canvas_size(document.width, document.height)  # before the canvas is frozen
        composition = compose(document)
        plan = build_plan(composition, document.settings, preview="none", model=model,
                          family=_model_family(model or document.settings.model, manager, local=not backends))
    except (RequestError, DocumentError) as error:
        raise CliError(f"{project}: {error}") from None
    request = plan.request
    quiet_libraries()
    if plan.notice and not quiet:
        _say(f"note: {plan.notice}")

    from inference.backends.config import build_backend

    # No --backend: the local engine (built here, so the model folders are only scanned when used).
    # One render pays a compile and never earns it back: channels_last and fused QKV only (on CUDA).
    engine = build_backend(list(backends or ()), lambda: Engine(manager(),
                                                                fast_path=FastPathHook("auto", compile=False)))
    finished: list[Finished] = []
    failure: list[str] = []
    started = time.monotonic()
    first_step: dict = {}

    def on_event(event) -> None:
        event = plan.to_canvas(event)  # a generation at another size than the canvas comes back canvas-size
        if isinstance(event, Progress) and not quiet:
            # Time left from the pace since the first step (model loading is not a step).
            now = time.monotonic()
            first_step.setdefault("at", (now, event.step))
            t0, s0 = first_step["at"]
            eta = f", ~{(now - t0) / (event.step - s0) * (event.total - event.step):.1f}s left" \
                if event.step > s0 else ""
            _say(f"step {event.step}/{event.total}  {now - started:.1f}s elapsed{eta}")
        elif isinstance(event, Notice):
            _say(f"warning: {event.message}")
        elif isinstance(event, Finished):
            finished.append(event)
        elif isinstance(event, Failed):
            failure.append(event.message)
        elif isinstance(event, Cancelled):
            failure.append("the generation was cancelled")

    engine.run(request, on_event, threading.Event())
    if failure:
        raise CliError(f"{project}: {failure[0]}")
    if not finished:
        raise CliError(f"{project}: the engine finished without an image")

    result = finished[0]
    written = []
    for i, (image, params) in enumerate(zip(result.images, result.parameters)):
        target = targets[i] if i < len(targets) else batch_path(out, i)
        collagen_record = {
            **params,
            "project": project.name,
            "mode": request.mode,
            **({"generated_at": [request.width, request.height]} if plan.notice else {}),
            "regions": [{"prompt": r.prompt, "negative": r.negative, "strength": r.strength}
                        for r in request.regions],
        }
        write_png(target, image, params, collagen_record)
        written.append(target)
        if not quiet:
            where = f" on {params['backend']}" if params.get("backend") else ""
            _say(f"wrote {target} (seed {params.get('seed')}{where})")
    return written


def quiet_libraries() -> None:
    """diffusers and transformers print to stderr through handlers of their own: hand their records to
    the root logger (the log file, or stderr with --verbose) and turn their progress bars off."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()


class LogSetup:
    """The root logger's handlers for one command: the log file always, stderr only with --verbose.
    Python warnings (peft's, torch's) become log records too. `close` puts everything back (the
    tests call `main` many times in one process)."""

    def __init__(self, verbose: bool):
        from desktop.settings import open_log_file

        root = logging.getLogger()
        self.level = root.level
        self.handlers: list[logging.Handler] = []
        log_file = open_log_file()
        if log_file is not None:
            self.handlers.append(log_file)
        if verbose:
            console = logging.StreamHandler(sys.stderr)
            console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            self.handlers.append(console)
        if not self.handlers:  # no file and no console: without a handler Python prints warnings anyway
            self.handlers.append(logging.NullHandler())
        for handler in self.handlers:
            root.addHandler(handler)
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
        logging.captureWarnings(True)

    def close(self) -> None:
        logging.captureWarnings(False)
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(self.level)


def batch_path(out: Path, index: int) -> Path:
    """Where image `index` of a batch goes: OUT.png, OUT-1.png, OUT-2.png, ..."""
    return out if index == 0 else out.with_name(f"{out.stem}-{index}{out.suffix}")


def output_paths(out: Path, count: int) -> list[Path]:
    """The `count` files a render writes, each checked before the generation starts (a missing
    folder, a device, a FIFO or a folder as --out would otherwise fail only after it)."""
    from canvas.io.regular_file import output_target

    paths = [batch_path(out, i) for i in range(count)]
    for path in paths:
        output_target(path)
    return paths


def check_project_file(path: Path) -> None:
    """A project path must be a regular file of at most the size a project may have: the zip
    reader would otherwise wait forever on a FIFO or read a device without end."""
    from canvas.io.limits import DEFAULT_LIMITS
    from canvas.io.regular_file import open_regular_file

    with open_regular_file(path, DEFAULT_LIMITS.max_project_bytes, what="project"):
        pass


def _model_family(model: str, manager, *, local: bool = False) -> str | None:
    """The family discovery gives the model (for its native size); None when it is not found here. With
    `local` (no backend server that may have it) a model not found is refused now, before the model
    libraries are imported, in the sentence the engine would give."""
    from desktop.request_builder import family_entry
    from inference.api import InferenceError, RequestError

    if family_entry(model) is not None:  # a built-in: no folder scan needed
        return None
    try:
        return manager().find(model).family
    except InferenceError as error:
        if local:
            raise RequestError(str(error)) from None
        return None
    except OSError:
        return None


def _model_manager(models_dir: str | None):
    """Discovery in SPEC §6 order: --models DIR first, then COLLAGEN_MODELS, settings, default folder."""
    from inference.models import ModelManager, default_hash_cache_file, find_model_folders

    # The hash cache: a checkpoint is hashed (seconds for GBs) once, not at every render.
    return ModelManager(find_model_folders([models_dir] if models_dir else ()), hash_cache_file=default_hash_cache_file())


# ---- models / info -------------------------------------------------------------------------


def list_models(models_dir: str | None, as_json: bool, name: str | None = None) -> int:
    """The models discovery found, then the files it skipped and why; with `name`, that one model
    (a skipped file's name or path says why it was skipped, not 'not found')."""
    manager = _model_manager(models_dir)
    infos = manager.discover()
    skipped = list(manager.catalog.skipped)
    if name is not None:
        infos, skipped = [manager.find(name)], []
    if as_json:  # skipped entries are kind "skipped", with their reason
        print(json.dumps([{"name": m.name, "path": m.path, "family": m.family, "kind": m.kind, **m.extra}
                          for m in infos] +
                         [{"name": s.name, "path": s.path, "family": "", "kind": "skipped", "reason": s.reason}
                          for s in skipped], indent=2, default=str))
        return EXIT_OK
    width = max((len(m.name) for m in infos), default=4)
    for m in infos:
        _out(f"{m.name:<{width}}  {m.family:<14} {m.kind:<10} {m.path}")
    if skipped:
        _out("")
        _out(f"Skipped ({len(skipped)}):")
        for entry in skipped:
            _out(f"  {entry.path}: {entry.reason}")
    return EXIT_OK


def info(path: Path) -> int:
    if path.suffix.lower() == ".png":
        from canvas.io.png_info import read_png_parameters

        params = read_png_parameters(path)
        if not params:
            _out(f"{path.name}: no generation parameters found")
            return EXIT_OK
        for key, value in params.items():
            if key != "collagen":
                _out(f"{key}: {value}")
        return EXIT_OK

    from canvas.io.ora import load_ora
    from canvas.model.layers import ImageLayer, MaskLayer, RegionLayer, ScribbleLayer

    check_project_file(path)
    doc = load_ora(path, pixels=False)  # sizes from the PNG headers: nothing is decoded
    s = doc.settings
    _out(f"{path.name}: {doc.width}x{doc.height}, {len(doc.layers)} layers, mode {s.mode}, model {s.model}")
    if s.prompt:
        _out(f"prompt: {s.prompt}")
    if s.negative:
        _out(f"negative: {s.negative}")
    _out(f"sampler {s.sampler}, steps {s.steps}, CFG {s.cfg:g}, seed {s.seed}, strength {s.strength:g}")
    for i, layer in reversed(list(enumerate(doc.layers))):
        flags = "" if layer.visible else " (hidden)"
        if isinstance(layer, ImageLayer):
            role = "reference" if layer.reference else ("collage piece" if layer.collage else "image")
            w, h = layer.size
            detail = f"{role} {w}x{h} at ({layer.x:g}, {layer.y:g}) scale {layer.scale:g} rot {layer.rotation:g}"
            if layer.generation is not None:
                detail += f", generated with seed {layer.generation.get('seed', '?')}"
        elif isinstance(layer, MaskLayer):
            detail = f"mask {layer.pixels.shape[1]}x{layer.pixels.shape[0]}"
        elif isinstance(layer, RegionLayer):
            shape = "painted" if layer.mask is not None else "rect {}".format(tuple(layer.rect))
            detail = f"region {shape}, strength {layer.strength:g}: {layer.prompt!r}"
        elif isinstance(layer, ScribbleLayer):
            detail = f"scribble ({layer.mode}), {len(layer.strokes)} strokes"
        else:
            detail = layer.kind
        _out(f"  [{i}] {layer.name}: {detail}{flags}")
    return EXIT_OK


# ---- entry point ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="collagen", description="Compose pictures with local diffusion models.")
    p.add_argument("--self-test", action="store_true", help="run a tiny offline generation end to end")
    p.add_argument("--models", metavar="DIR", help="models folder (A1111/ComfyUI layouts recognised)")
    p.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks) to stderr")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("render", help="run a project's saved generation settings headless")
    r.add_argument("project", type=Path)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--model", help="model name, path, or builtin:tiny-sd15 / builtin:tiny-sdxl")
    r.add_argument("--steps", type=int)
    r.add_argument("--seed", type=int)
    r.add_argument("--open-large", action="store_true",
                   help="open a project that needs more memory than a file of its size usually may")
    r.add_argument("--models", dest="sub_models", metavar="DIR")
    r.add_argument("--backend", action="append", metavar="URL", dest="backends",
                   help="run on this ComfyUI server (repeat for a pool; 'local' is the built-in engine)")
    m = sub.add_parser("models", help="list discovered models")
    m.add_argument("name", nargs="?", help="show this one model (or why it was skipped)")
    m.add_argument("--json", action="store_true")
    m.add_argument("--models", dest="sub_models", metavar="DIR")
    i = sub.add_parser("info", help="show a project's layers or a PNG's parameters")
    i.add_argument("file", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    from inference.allocator import configure_process_allocator

    configure_process_allocator()  # the console script, `python -m desktop` and the frozen launcher start here
    argv = list(sys.argv[1:] if argv is None else argv)
    # `collagen PROJECT.ora` opens the editor; anything else that is not a subcommand is parsed as usual.
    if argv and not argv[0].startswith("-") and argv[0] not in ("render", "models", "info"):
        return _open_editor(argv[0], None)
    args = _parser().parse_args(argv)
    logs = LogSetup(args.verbose)
    models_dir = getattr(args, "sub_models", None) or args.models
    try:
        if args.self_test:
            from desktop.selftest import run_self_test

            return run_self_test(models_dir)
        if args.command == "render":
            render(args.project, args.out, model=args.model, steps=args.steps, seed=args.seed,
                   models_dir=models_dir, backends=args.backends, open_large=args.open_large)
            return EXIT_OK
        if args.command == "models":
            return list_models(models_dir, args.json, args.name)
        if args.command == "info":
            return info(args.file)
        return _open_editor(None, models_dir)
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_CANCELLED
    except Exception as exc:  # noqa: BLE001 - the CLI's promise: one sentence, never a traceback
        log.error("command failed", exc_info=True)  # the traceback: the log file (stderr with --verbose)
        _say(f"error: {_sentence(exc)}")
        return EXIT_FAILED
    finally:
        logs.close()


def _sentence(exc: Exception) -> str:
    from canvas.io.errors import ProjectError
    from inference.api import InferenceError

    if isinstance(exc, (CliError, ProjectError, InferenceError)):
        return str(exc)
    if isinstance(exc, OSError):
        name = Path(exc.filename).name if getattr(exc, "filename", None) else "file"
        return f"{name}: {exc.strerror or exc}"
    if isinstance(exc, MemoryError):
        return "not enough memory for this request; try a smaller size or batch"
    return f"unexpected {type(exc).__name__}: {exc}"


def _open_editor(project: str | None, models_dir: str | None) -> NoReturn:
    """The editor's window until it closes; then the process ends at once (desktop.app.exit_process)."""
    from desktop.app import exit_process, run_editor

    exit_process(run_editor(project, models_dir))


if __name__ == "__main__":
    raise SystemExit(main())
