"""The family registry (ARCHITECTURE §Inference design): one entry per model family.

`FAMILIES` holds every family Collagen runs; `FAMILIES.get(name)` is its entry (see entry.py for
what an entry declares). Adding a family means writing its entry (in a module of this package),
adding it to `FAMILIES` and giving it a tiny model; detection, previews and the engine's dispatch
read the entry. The entries import neither torch nor diffusers.
"""

from inference.families.edit import EDIT_FAMILY_ENTRIES, FLUX_KONTEXT, IP2P, QWEN_EDIT, QWEN_EDIT_PLUS
from inference.families.entry import (
    Defaults,
    Detected,
    Family,
    LatentFormat,
    LoadSpec,
    PreviewFactors,
    PromptEncoding,
    Supports,
    TextEncoder,
)
from inference.families.flux import FLUX_DEV, FLUX_FAMILY_ENTRIES, FLUX_FILL, FLUX_SCHNELL
from inference.families.registry import FamilyRegistry
from inference.families.sd import SD15, SDXL
from inference.families.zimage import ZIMAGE, ZIMAGE_FAMILY_ENTRIES

# The order detection asks them in. An immutable table (like a dict of constants), not state.
FAMILIES = FamilyRegistry((SD15, SDXL, *FLUX_FAMILY_ENTRIES, *ZIMAGE_FAMILY_ENTRIES, *EDIT_FAMILY_ENTRIES))

__all__ = [
    "FAMILIES",
    "FLUX_DEV",
    "FLUX_FILL",
    "FLUX_KONTEXT",
    "FLUX_SCHNELL",
    "IP2P",
    "QWEN_EDIT",
    "QWEN_EDIT_PLUS",
    "SD15",
    "SDXL",
    "Defaults",
    "Detected",
    "Family",
    "FamilyRegistry",
    "LatentFormat",
    "LoadSpec",
    "PreviewFactors",
    "PromptEncoding",
    "Supports",
    "TextEncoder",
    "ZIMAGE",
]
