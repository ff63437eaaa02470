"""Which extensions a request's mode puts around the flow loop (the flow twin of inference/sd/modes.py).

The extensions are the shared ones (inference/sd/*): inpaint and sketch, per-pixel strength, refine,
composite; only regions have FLUX versions of their own (inference/flow/regions.py). FLUX.1 Fill
outside inpainting regenerates everything (`WholeImageConditioning`).
"""

from __future__ import annotations

from inference.api import GenerationRequest
from inference.flow.regions import FlowAttentionCoupleExtension, flow_region_extensions
from inference.sd.context import LoopExtension
from inference.sd.inpaint import InpaintExtension, WholeImageConditioning


def build_flow_extensions(request: GenerationRequest, model) -> list[LoopExtension]:
    extensions: list[LoopExtension] = []
    if request.sketch_mask is not None and request.mode in ("generate", "inpaint"):
        from inference.sd.sketch import sketch_extension

        extensions.append(sketch_extension(request))
    elif request.mode == "inpaint" or (request.mode == "regions" and request.mask is not None):
        extensions.append(InpaintExtension.from_request(request))
    elif model.inpaint:
        extensions.append(WholeImageConditioning())
    regions = flow_region_extensions(request, model)
    if request.mode == "composite":
        from inference.sd.composite import CompositeExtension

        attention = next((e for e in regions if isinstance(e, FlowAttentionCoupleExtension)), None)
        extensions.append(CompositeExtension.from_request(request, attention_regions=attention))
    elif request.mode == "refine":
        from inference.sd.refine import RefineExtension

        extensions.append(RefineExtension.from_request(request))
    extensions.extend(regions)
    return extensions
