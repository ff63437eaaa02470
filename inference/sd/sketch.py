"""Inpaint sketch (A1111 "inpaint sketch"): the sketched strokes' area is what gets regenerated.

The controller paints the sketch strokes' colours into `init_image` and passes their coverage as
`sketch_mask`. In `generate` and `inpaint` the stroke area, grown by `SKETCH_DILATION` px so the
strokes' edges are repainted along with them, becomes (part of) the inpaint mask: the model turns
the scribble into picture there, and everything else is pasted back from the input untouched.
In `inpaint` it joins the painted mask (after mask_mode: strokes are always regenerated).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from inference.api import GenerationRequest, RequestError
from inference.sd.context import LoopExtension
from inference.sd.diagnostics import VISIBLE
from inference.sd.inpaint import InpaintExtension, prepare_inpaint_mask
from inference.sd.masks import dilate

SKETCH_DILATION = 8  # px around the strokes that are regenerated with them


SKETCH_MODES = ("generate", "inpaint")  # the modes whose strokes' area is the inpaint mask


def uses_sketch(request: GenerationRequest) -> bool:
    """Whether the request's sketch strokes decide what is regenerated (generate and inpaint)."""
    return request.sketch_mask is not None and request.mode in SKETCH_MODES


def sketch_area(sketch_mask: np.ndarray, dilation: int = SKETCH_DILATION) -> np.ndarray:
    """The strokes' area grown by `dilation` px, as an HxW float32 mask of 0 and 1."""
    return dilate(np.asarray(sketch_mask) > VISIBLE, dilation).astype(np.float32)


def sketch_inpaint_mask(request: GenerationRequest) -> np.ndarray:
    """What to regenerate: the dilated strokes, plus the painted inpaint mask in inpaint mode."""
    area = sketch_area(request.sketch_mask)
    if request.mode == "inpaint" and request.mask is not None:
        area = np.maximum(area, prepare_inpaint_mask(request))
    return area


def sketch_extension(request: GenerationRequest) -> LoopExtension:
    """An inpaint over the sketched area (with the request's other inpaint settings)."""
    if request.init_image is None:
        raise RequestError("An inpaint sketch needs the picture the strokes are painted on.")
    mask = sketch_inpaint_mask(request)
    if not (mask > 0).any():
        raise RequestError("The sketch has no visible strokes to turn into picture.")
    return InpaintExtension.from_request(dataclasses.replace(request, mask=mask, mask_mode="masked"))
