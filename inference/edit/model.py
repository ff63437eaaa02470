"""A loaded instruction-edit pipeline and what the edit run needs to know about it.

Nothing here imports torch: the dataclass only holds the diffusers pipeline that
`load_edit_model` or `build_tiny_edit` made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from inference.families import FAMILIES

FAMILY_IP2P = "ip2p"
FAMILY_KONTEXT = "flux-kontext"
FAMILY_QWEN_EDIT = "qwen-edit"
FAMILY_QWEN_EDIT_PLUS = "qwen-edit-plus"
# The registry's entries that run on the edit pipelines (inference/families/edit.py).
EDIT_FAMILIES = tuple(entry.name for entry in FAMILIES.of_loop("edit"))

# model_index.json `_class_name` of each family's diffusers pipeline
PIPELINE_CLASS_NAMES = {entry.name: entry.diffusers_pipelines[0] for entry in FAMILIES.of_loop("edit")}

BUILTIN_EDIT_MODELS = {
    "builtin:tiny-ip2p": FAMILY_IP2P,
    "builtin:tiny-kontext": FAMILY_KONTEXT,
    "builtin:tiny-qwen-edit": FAMILY_QWEN_EDIT,
    "builtin:tiny-qwen-edit-plus": FAMILY_QWEN_EDIT_PLUS,
}

# Pixel area each family was trained at; the edit runs at this area, in the image's aspect ratio.
NATIVE_AREA = {entry.name: entry.native_area for entry in FAMILIES.of_loop("edit")}

Placement = str  # "gpu", "cpu", "model_offload" or "sequential_offload"


@dataclass
class EncodedInstruction:
    """Prompt embeddings computed outside the pipeline (tiny models whose tokenizer cannot exist offline)."""

    prompt_kwargs: dict  # passed to the pipeline instead of `prompt=`
    negative_kwargs: dict  # passed instead of `negative_prompt=`


@dataclass
class EditModel:
    name: str  # what the UI and --model use
    family: str  # one of EDIT_FAMILIES
    pipeline: Any  # the diffusers pipeline, used as it is
    device: str = "cpu"  # where the denoiser runs ("cuda" also under CPU offload)
    dtype: Any = None  # torch dtype of the weights
    placement: Placement = "cpu"
    native_area: int = 1024 * 1024  # pixels the edit runs at
    size_multiple: int = 16  # working width/height are multiples of this (VAE factor x patch size)
    max_sequence_length: int = 512  # text tokens (Kontext's T5)
    builtin: bool = False  # random weights: output is noise and the UI says so
    model_hash: str = ""
    # Tiny models only: instruction -> embeddings, because no Qwen/T5 tokenizer exists offline.
    encode_instruction: Callable[[str, str], EncodedInstruction] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def takes_several_images(self) -> bool:
        """Qwen-Image-Edit-Plus conditions on a list of pictures; the others on one image."""
        return self.family == FAMILY_QWEN_EDIT_PLUS
