"""Prompt text -> CLIP conditioning, computed by us rather than by a diffusers pipeline.

Why not the pipeline's `encode_prompt`: its SD1 `clip_skip` path reaches for
`text_encoder.text_model`, which `CLIPTextModel` no longer has in transformers >= 5.6, and it
truncates at 77 tokens. Here:

- `clip_skip` uses A1111 numbering. SD1: 1 = the last layer through `final_layer_norm` (what the
  model was trained with), n = `hidden_states[-n]` through `final_layer_norm`. SDXL: both encoders
  already use the penultimate layer without the final norm (as SDXL was trained), and clip_skip n
  moves to `hidden_states[-(n + 1)]`; the pooled vector always comes from encoder 2's projection.
- Prompts longer than 75 tokens are split A1111-style into chunks of 75, each encoded as its own
  77-token sequence (start + 75 + end/padding) and concatenated along the sequence axis.
- An empty negative prompt is encoded as the empty text (as A1111 does), not as zeros (diffusers'
  SDXL default), so SD1.5 and SDXL treat it alike.
- `<lora:name:weight>` tags are taken out of the text and returned for the engine to apply.
- Textual-inversion names with several vectors (`name`, `name_1`, ...) are spelled out in the text
  (inference.adapters loads them and keeps the record in `model.extra`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from inference.api import LoraSpec, RequestError
from inference.validate import encodable_text

CHUNK_TOKENS = 75  # tokens of text per chunk; + start and end tokens = CLIP's 77 positions
LORA_TAG = re.compile(r"<lora:([^:>]+)((?::[^:>]*)*)>", re.IGNORECASE)


@dataclass
class PromptEmbedding:
    """The conditioning of one prompt: token states (1 x 77*chunks x D) and, for SDXL, the pooled vector."""

    hidden_states: Any  # torch.Tensor
    pooled: Any = None  # torch.Tensor (1 x D2) for SDXL, else None

    @property
    def chunks(self) -> int:
        return int(self.hidden_states.shape[1]) // (CHUNK_TOKENS + 2)


def parse_lora_tags(prompt: str) -> tuple[str, list[LoraSpec]]:
    """Remove `<lora:name>` tags; return the cleaned text and the LoRAs in order.

    As A1111: `<lora:name:w>` weighs text encoder and UNet alike, `<lora:name:te:unet>` each on its
    own; `te=`, `unet=` (and `dyn=`, which only LyCORIS' dynamic rank uses and is ignored) may be named.
    """
    loras: list[LoraSpec] = []

    def take(match: re.Match) -> str:
        tag, name = match.group(0), match.group(1).strip()
        if not name:
            raise RequestError(f"The LoRA tag {tag!r} names no LoRA.")
        positional: list[float] = []
        named: dict[str, float] = {}
        for part in match.group(2).split(":")[1:]:
            key, equals, value = part.partition("=")
            key = key.strip().lower() if equals else ""
            value = (value if equals else part).strip()
            if key not in ("", "te", "unet", "dyn"):
                raise RequestError(f"The LoRA tag {tag!r} has an unknown setting {key!r} (te, unet or dyn).")
            if not value and not key:
                continue
            try:
                number = float(value)
            except ValueError:
                raise RequestError(f"The LoRA tag {tag!r} has a weight that is not a number.") from None
            if not math.isfinite(number):
                raise RequestError(f"The LoRA tag {tag!r} has a weight that is not a finite number.")
            if key:
                named[key] = number
            else:
                positional.append(number)
        if len(positional) > 3:
            raise RequestError(f"The LoRA tag {tag!r} has more than a text-encoder and a UNet weight.")
        te = named.get("te", positional[0] if positional else 1.0)
        unet = named.get("unet", positional[1] if len(positional) > 1 else None)
        loras.append(LoraSpec(name=name, weight=te, unet_weight=None if unet is None or unet == te else unet))
        return ""

    cleaned = LORA_TAG.sub(take, prompt)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), loras


# ComfyUI's way of naming an embedding in a prompt; A1111 users write the bare name.
EMBEDDING_REFERENCE = re.compile(r"(?<![\w-])embedding:([^\s,()\[\]{}<>|:]+)", re.IGNORECASE)
_EMBEDDING_SUFFIX = re.compile(r"\.(safetensors|pt|pth|bin|ckpt)$", re.IGNORECASE)


def strip_embedding_syntax(prompt: str) -> str:
    """`embedding:name` and `embedding:name.pt` become `name`: the prefix is no text to encode."""
    return EMBEDDING_REFERENCE.sub(lambda m: _EMBEDDING_SUFFIX.sub("", m.group(1)), prompt)


def embedding_notices(texts: list[str], usable: list[str], everywhere: list[str], family: str) -> list[str]:
    """Sentences for prompt words that name an embedding this model cannot use: read as plain text
    otherwise, without a word (A1111 warns). `usable`: names that fit the model's family;
    `everywhere`: every discovered embedding name; `family`: the model family's display name."""
    fits = {name.casefold() for name in usable}
    known = {name.casefold(): name for name in everywhere}
    notices: list[str] = []
    told: set[str] = set()
    for text in texts:
        for match in EMBEDDING_REFERENCE.finditer(text):
            name = _EMBEDDING_SUFFIX.sub("", match.group(1))
            key = name.casefold()
            if key in fits or key in told:
                continue
            told.add(key)
            if key in known:
                notices.append(f"The embedding {name!r} is not for {family} models; {match.group(0)!r} is read "
                               "as plain text.")
            else:
                notices.append(f"No embedding named {name!r} was found in the model folders; "
                               f"{match.group(0)!r} is read as plain text.")
    others = [name for key, name in known.items() if key not in fits and key not in told]
    for name in find_embedding_names(texts, others):
        notices.append(f"The prompt word {name!r} names an embedding for another model family, not {family}; "
                       "it is read as plain text.")
    return notices


def find_embedding_names(texts: list[str], available: list[str]) -> list[str]:
    """The textual-inversion names (file stems) that occur as whole words in any of the texts."""
    found = []
    for name in available:
        pattern = re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", re.IGNORECASE)
        if any(pattern.search(text) for text in texts):
            found.append(name)
    return found


def expand_embeddings(prompt: str, model) -> str:
    """Spell out multi-vector textual-inversion names the model has loaded (`name` -> `name name_1 ...`)."""
    if not model.extra.get("embeddings"):
        return prompt
    from inference.adapters import expand_embedding_names

    return expand_embedding_names(prompt, model)


def tokenize_chunks(prompt: str, tokenizer) -> list[list[int]]:
    """Token ids of the prompt as 77-id chunks: start, up to 75 text ids, end, padding."""
    prompt = encodable_text(prompt)
    text_ids = tokenizer(prompt, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    chunks = []
    for offset in range(0, max(len(text_ids), 1), CHUNK_TOKENS):
        piece = text_ids[offset : offset + CHUNK_TOKENS]
        ids = [start, *piece, end]
        chunks.append(ids + [pad] * (CHUNK_TOKENS + 2 - len(ids)))
    return chunks


def empty_chunk(tokenizer) -> list[int]:
    return tokenize_chunks("", tokenizer)[0]


def final_layer_norm_of(text_encoder):
    """`CLIPTextModel` keeps its final norm at the top level since transformers 5.6; older ones in text_model."""
    inner = getattr(text_encoder, "text_model", text_encoder)
    return inner.final_layer_norm


def encoder_layers(text_encoder) -> int:
    return int(text_encoder.config.num_hidden_layers)


def check_clip_skip(model, clip_skip: int) -> None:
    """clip_skip must leave at least one transformer layer (SDXL already skips one)."""
    already = 1 if model.family == "sdxl" else 0
    limit = encoder_layers(model.text_encoder) - already
    if not 1 <= clip_skip <= limit:
        raise RequestError(f"clip_skip {clip_skip} is out of range for {model.name}: use 1 to {limit}.")


def encode_chunks(model, chunks: list[list[int]], chunks_2: list[list[int]] | None, clip_skip: int):
    """Run the text encoder(s) on token chunks; return (1 x 77*n x D hidden states, pooled or None)."""
    hidden, pooled = encode_chunk_rows(model, chunks, chunks_2, clip_skip)
    hidden = hidden.reshape(1, -1, hidden.shape[-1])
    # A1111 takes the pooled vector of the first chunk.
    return hidden, (pooled[:1] if pooled is not None else None)


def encode_chunk_rows(model, chunks: list[list[int]], chunks_2: list[list[int]] | None, clip_skip: int):
    """One text-encoder call over every chunk (one row each): (n x 77 x D hidden states, n x D2 pooled or None)."""
    import torch

    device = model.text_encoder.device
    ids = torch.tensor(chunks, dtype=torch.long, device=device)
    output = model.text_encoder(ids, output_hidden_states=True)
    if model.family == "sdxl":
        hidden = output.hidden_states[-(clip_skip + 1)]
    else:
        hidden = final_layer_norm_of(model.text_encoder)(output.hidden_states[-clip_skip])
    pooled = None
    if model.family == "sdxl":
        ids_2 = torch.tensor(chunks_2, dtype=torch.long, device=model.text_encoder_2.device)
        output_2 = model.text_encoder_2(ids_2, output_hidden_states=True)
        hidden_2 = output_2.hidden_states[-(clip_skip + 1)]
        hidden = torch.cat([hidden, hidden_2.to(hidden.device, hidden.dtype)], dim=-1)
        pooled = output_2.text_embeds
    return hidden, pooled


def prepare_token_chunks(model, prompt: str, min_chunks: int = 1) -> tuple[list, list | None]:
    """Chunks for encoder 1 (and 2 for SDXL), padded with empty chunks to a common count >= min_chunks."""
    prompt = expand_embeddings(strip_embedding_syntax(prompt), model)
    chunks = tokenize_chunks(prompt, model.tokenizer)
    chunks_2 = None
    count = max(len(chunks), min_chunks)
    if model.family == "sdxl":
        chunks_2 = tokenize_chunks(prompt, model.tokenizer_2)
        count = max(count, len(chunks_2))
        chunks_2 = chunks_2 + [empty_chunk(model.tokenizer_2)] * (count - len(chunks_2))
    chunks = chunks + [empty_chunk(model.tokenizer)] * (count - len(chunks))
    return chunks, chunks_2


def count_chunks(model, prompt: str) -> int:
    chunks, _ = prepare_token_chunks(model, prompt)
    return len(chunks)


def encode_prompt(model, prompt: str, clip_skip: int = 1, min_chunks: int = 1) -> PromptEmbedding:
    """Encode one prompt (LoRA tags already removed) with A1111 chunking and clip_skip."""
    import torch

    check_clip_skip(model, clip_skip)
    chunks, chunks_2 = prepare_token_chunks(model, prompt, min_chunks)
    with torch.no_grad():
        hidden, pooled = encode_chunks(model, chunks, chunks_2, clip_skip)
    return PromptEmbedding(hidden_states=hidden, pooled=pooled)


def encode_prompt_pair(model, prompt: str, negative: str, clip_skip: int = 1) -> tuple[PromptEmbedding, PromptEmbedding]:
    """Encode prompt and negative to the same number of chunks, so they stack into one CFG batch."""
    chunks = max(count_chunks(model, prompt), count_chunks(model, negative))
    cond = encode_prompt(model, prompt, clip_skip, min_chunks=chunks)
    uncond = encode_prompt(model, negative, clip_skip, min_chunks=chunks)
    return cond, uncond


def encode_prompts(model, texts: list[tuple[str, int]], clip_skip: int = 1) -> list[PromptEmbedding]:
    """Encode several (prompt, min_chunks) pairs in ONE text-encoder call: their chunks are rows of one
    batch (each chunk is encoded on its own anyway), split back per prompt afterwards."""
    import torch

    if not texts:
        return []
    check_clip_skip(model, clip_skip)
    prepared = [prepare_token_chunks(model, text, min_chunks) for text, min_chunks in texts]
    chunks = [row for rows, _ in prepared for row in rows]
    chunks_2 = [row for _, rows in prepared for row in rows] if model.family == "sdxl" else None
    with torch.no_grad():
        hidden, pooled = encode_chunk_rows(model, chunks, chunks_2, clip_skip)
    embeddings, start = [], 0
    for rows, _ in prepared:
        count = len(rows)
        states = hidden[start : start + count].reshape(1, -1, hidden.shape[-1])
        first_pooled = pooled[start : start + 1] if pooled is not None else None
        embeddings.append(PromptEmbedding(hidden_states=states, pooled=first_pooled))
        start += count
    return embeddings
