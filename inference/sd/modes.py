"""A generation mode is a list of loop extensions: this is the one place that decides which.

`generate` is the bare loop (txt2img, or img2img at `strength` when there is an image). `inpaint`
adds `InpaintExtension`. Regions, composite and refine add what their modules build; the table
below names those functions directly, so readers, linters and PyInstaller all see the route.
"""

from __future__ import annotations

from collections.abc import Callable

from inference.api import GenerationRequest
from inference.components import SDModel
from inference.sd.composite import composite_extensions
from inference.sd.context import LoopExtension
from inference.sd.inpaint import InpaintExtension, WholeImageConditioning
from inference.sd.refine import refine_extensions
from inference.sd.regions import region_extensions
from inference.sd.sketch import sketch_extension, uses_sketch

ExtensionsOf = Callable[[GenerationRequest, SDModel], list[LoopExtension]]

# mode -> the function that returns that mode's extensions
MODE_EXTENSIONS: dict[str, ExtensionsOf] = {
    "regions": region_extensions,
    "composite": composite_extensions,
    "refine": refine_extensions,
}


def build_extensions(request: GenerationRequest, model: SDModel) -> list[LoopExtension]:
    extensions: list[LoopExtension] = []
    # Inpaint sketch: in generate/inpaint the sketched strokes' area is (part of) the inpaint mask.
    if uses_sketch(request):
        extensions.append(sketch_extension(request))
    # Regions combine with inpaint: with a mask they regenerate only under it.
    elif request.mode == "inpaint" or (request.mode == "regions" and request.mask is not None):
        extensions.append(InpaintExtension.from_request(request))
    elif model.inpaint:
        extensions.append(WholeImageConditioning())
    if request.mode in MODE_EXTENSIONS:
        extensions.extend(MODE_EXTENSIONS[request.mode](request, model))
    elif request.regions:
        # Regions ride along in generate and inpaint too (refine and composite add them themselves).
        extensions.extend(region_extensions(request, model))
    return extensions
