"""Instruction-edit models (InstructPix2Pix, FLUX.1 Kontext, Qwen-Image-Edit, Qwen-Image-Edit-Plus).

Entry points for the engine (torch is imported only when they are called):
- `load_edit_model(path, family, device, dtype)`: a local diffusers folder, offline;
- `build_tiny_edit(family)`: tiny random-weight pipelines (tests, the built-in demo models);
- `run_edit(model, request, emit, cancel)`: one `edit` request, events out, Finished/Cancelled back.
"""

from inference.edit.loading import load_edit_model
from inference.edit.model import BUILTIN_EDIT_MODELS, EDIT_FAMILIES, PIPELINE_CLASS_NAMES, EditModel
from inference.edit.run import run_edit
from inference.edit.tiny import build_tiny_edit

__all__ = [
    "BUILTIN_EDIT_MODELS",
    "EDIT_FAMILIES",
    "PIPELINE_CLASS_NAMES",
    "EditModel",
    "build_tiny_edit",
    "load_edit_model",
    "run_edit",
]
