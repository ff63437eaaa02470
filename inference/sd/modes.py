"""A generation mode is a list of loop extensions: this is the one place that decides which.

`generate` is the bare loop (txt2img, or img2img at `strength` when there is an image). `inpaint`
adds `InpaintExtension`. Regions, composite and refine plug in here as their extensions appear:
regional prompting lives in inference/sd/regions.py and exposes `region_extensions(request, model)`.
"""

from __future__ import annotations

import importlib

from inference.api import GenerationRequest, RequestError
from inference.components import SDModel
from inference.sd.context import LoopExtension
from inference.sd.inpaint import InpaintExtension, WholeImageConditioning

# mode -> (module, function) that returns that mode's extensions; imported only when the mode is used.
MODE_PROVIDERS = {
    "regions": ("inference.sd.regions", "region_extensions"),
    "composite": ("inference.sd.composite", "composite_extensions"),
    "refine": ("inference.sd.refine", "refine_extensions"),
}


def build_extensions(request: GenerationRequest, model: SDModel) -> list[LoopExtension]:
    extensions: list[LoopExtension] = []
    # Inpaint sketch: in generate/inpaint the sketched strokes' area is (part of) the inpaint mask.
    if request.sketch_mask is not None and request.mode in ("generate", "inpaint"):
        from inference.sd.sketch import sketch_extension

        extensions.append(sketch_extension(request))
    # Regions combine with inpaint: with a mask they regenerate only under it.
    elif request.mode == "inpaint" or (request.mode == "regions" and request.mask is not None):
        extensions.append(InpaintExtension.from_request(request))
    elif model.inpaint:
        extensions.append(WholeImageConditioning())
    if request.mode in MODE_PROVIDERS:
        extensions.extend(provider_for(request.mode)(request, model))
    elif request.regions:
        # Regions ride along in generate and inpaint too (refine and composite add them themselves).
        extensions.extend(provider_for("regions")(request, model))
    return extensions


def provider_for(mode: str):
    module_name, function_name = MODE_PROVIDERS[mode]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise RequestError(f"The {mode!r} mode is not available in this version of Collagen.") from None
    return getattr(module, function_name)
