"""Prompt text -> FLUX.1 conditioning: the CLIP pooled vector and the T5 token sequence.

As FLUX.1 was trained (and as diffusers' FluxPipeline encodes): CLIP-L reads the text padded or
truncated to 77 tokens and gives its pooled output; T5 reads it padded to `max_sequence_length`
tokens (512 for dev and Fill, 256 for schnell) and gives the last hidden states, padding included
(FLUX attends the padding tokens: no attention mask). Text beyond the T5 length is cut off, and the
run says so once. `<lora:...>` tags are taken out by the caller (inference.sd.prompt.parse_lora_tags).

Embeddings travel as `inference.sd.prompt.PromptEmbedding` (hidden_states = T5 sequence,
pooled = CLIP pooled), so the shared region code (latent couple's evaluation sharing) takes them.
"""

from __future__ import annotations

from inference.sd.prompt import PromptEmbedding
from inference.validate import encodable_text

CLIP_TOKENS = 77
T5_TOKENS = {"flux-dev": 512, "flux-fill": 512, "flux-schnell": 256}


def max_sequence_length(model) -> int:
    return T5_TOKENS.get(model.family, 512)


def encode_flow_prompts(model, texts: list[str], *, sequence_length: int | None = None,
                        on_truncated=None, pooled: bool = True) -> list[PromptEmbedding]:
    """Every text in one batched call per encoder; one PromptEmbedding per text (1 x L x D, 1 x P).

    `pooled=False` leaves CLIP out (pooled is None): region prompts, whose pooled vector FLUX never reads.
    """
    import torch

    if not texts:
        return []
    texts = [encodable_text(text) for text in texts]  # a lone surrogate fails inside the tokenizers
    length = sequence_length or max_sequence_length(model)
    device = model.text_encoder.device
    with torch.no_grad():
        vectors = None
        if pooled:
            clip_ids = model.tokenizer(list(texts), padding="max_length", max_length=CLIP_TOKENS, truncation=True,
                                       return_tensors="pt").input_ids
            vectors = model.text_encoder(clip_ids.to(device), output_hidden_states=False).pooler_output
        t5 = model.tokenizer_2(list(texts), padding="max_length", max_length=length, truncation=True,
                               return_overflowing_tokens=False, return_length=True, return_tensors="pt")
        if on_truncated is not None:
            full = model.tokenizer_2(list(texts), padding=False, truncation=False).input_ids
            if any(len(ids) > length for ids in full):
                on_truncated(f"A prompt is longer than the {length} T5 tokens FLUX reads; the rest is ignored.")
        states = model.text_encoder_2(t5.input_ids.to(model.text_encoder_2.device), output_hidden_states=False)[0]
    dtype = model.dtype or states.dtype
    return [
        PromptEmbedding(hidden_states=states[i : i + 1].to(dtype),
                        pooled=None if vectors is None else vectors[i : i + 1].to(dtype))
        for i in range(len(texts))
    ]


def encode_flow_prompt_pair(model, prompt: str, negative: str, *, on_truncated=None):
    cond, uncond = encode_flow_prompts(model, [prompt, negative], on_truncated=on_truncated)
    return cond, uncond
