"""Where the T5 tokenizer of the FLUX.1 text encoder comes from (offline, never downloaded).

Single-file FLUX checkpoints and the tiny built-in models come without tokenizers. The project ships
the T5 v1.1 tokenizer in resources/; until that copy lands, the shared tokenizer folder of this
workplace serves (COLLAGEN_T5_TOKENIZER names another folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from inference.api import ModelError

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
SHIPPED_T5_FOLDERS = (RESOURCES / "tokenizers" / "t5", RESOURCES / "tokenizer-t5")
SHARED_T5_FOLDER = Path("/work/shared/tokenizers/t5-v1_1-xxl")


def t5_tokenizer_folder() -> Path:
    """The first folder holding a T5 `tokenizer.json`: COLLAGEN_T5_TOKENIZER, the shipped copy, the shared one."""
    candidates = []
    if os.environ.get("COLLAGEN_T5_TOKENIZER"):
        candidates.append(Path(os.environ["COLLAGEN_T5_TOKENIZER"]))
    candidates += [*SHIPPED_T5_FOLDERS, SHARED_T5_FOLDER]
    for folder in candidates:
        if (folder / "tokenizer.json").is_file():
            return folder
    raise ModelError(
        "The T5 tokenizer FLUX needs was not found (looked in "
        + ", ".join(str(folder) for folder in candidates) + ")."
    )


def load_t5_tokenizer(folder: Path | None = None):
    from transformers import T5TokenizerFast

    folder = Path(folder) if folder is not None else t5_tokenizer_folder()
    try:
        return T5TokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelError(f"The T5 tokenizer in {folder} could not be read: {str(error).splitlines()[0]}") from None
