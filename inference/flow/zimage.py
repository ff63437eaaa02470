"""Z-Image (Turbo) on the flow loop: its prompt encoding and its transformer call, as ZImagePipeline does them.

What differs from FLUX.1 (inference/flow/context.py), copied from diffusers' ZImagePipeline (0.42):

- prompts: the text goes through Qwen3's chat template for one user message with thinking enabled
  ("<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n"), is padded to 512 tokens, and
  the Qwen3 encoder's second-to-last hidden states of the real (unpadded) tokens are the caption
  features: a sequence of its own length per prompt, no pooled vector.
- the transformer takes a list of per-image latents (C x 1 x h x w), patchifies them itself (2x2),
  and a timestep running the other way, (1000 - t) / 1000; its output is the negative velocity.
- CFG is `guidance` (the pipeline's guidance_scale): on when > 0, with the negative prompt ("" when
  there is none), as pos + g * (pos - neg) on the raw outputs; both passes in one transformer call.
  `cfg_normalization` (> 0) caps the guided prediction's norm at that multiple of the positive's;
  `cfg_truncation` (<= 1) drops CFG on steps whose normalised time (1000 - t) / 1000 is past it.
  Turbo runs without CFG (guidance 0), 8 steps, shift 3 (its scheduler config).
- sigmas: torch.linspace(1, 1/steps, steps), as the pipeline makes them (float32, not numpy's).

The latents are FLUX.1's (the same 16-channel VAE, scale 0.3611, shift 0.1159), so previews, inpaint
blending and the shared extensions work on them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.api import ModelError
from inference.flow.context import FlowContext
from inference.sd.prompt import PromptEmbedding
from inference.validate import encodable_text

MAX_SEQUENCE_LENGTH = 512  # ZImagePipeline's max_sequence_length
HIDDEN_LAYER = -2  # the encoder's second-to-last hidden states are the caption features
# Qwen3's chat template, as far as Z-Image uses it: one user message, generation prompt, thinking
# enabled (which adds no <think> block). The Qwen2.5 tokenizer files carry Qwen2.5's template, which
# would add a default system message; a model's own tokenizer folder keeps its own template.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
RESOURCES = Path(__file__).resolve().parents[2] / "resources"
QWEN_TOKENIZER_FOLDER = RESOURCES / "tokenizer-qwen2.5"


def load_qwen_tokenizer(folder: Path | None = None, *, chat_template: str | None = QWEN3_CHAT_TEMPLATE):
    """The Qwen2.5/Qwen3 byte-level BPE tokenizer (shipped in resources/tokenizer-qwen2.5, or a folder's
    own), with Qwen3's chat template unless `chat_template` is None (keep the folder's)."""
    from transformers import Qwen2TokenizerFast

    folder = Path(folder) if folder is not None else QWEN_TOKENIZER_FOLDER
    try:
        tokenizer = Qwen2TokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise ModelError(f"The Qwen tokenizer in {folder} could not be read: {str(error).splitlines()[0]}") from None
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def chat_prompt(tokenizer, text: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=True)


def encode_zimage_prompts(model, texts: list[str], *, on_truncated=None) -> list[PromptEmbedding]:
    """One PromptEmbedding (1 x L x D caption features, L = the prompt's own token count) per text.

    Each text is encoded alone, as the pipeline encodes the prompt and the negative in two calls."""
    import torch

    embeddings = []
    encoder = model.text_encoder
    with torch.no_grad():
        for text in texts:
            formatted = chat_prompt(model.tokenizer, encodable_text(text))
            tokens = model.tokenizer([formatted], padding="max_length", max_length=MAX_SEQUENCE_LENGTH,
                                     truncation=True, return_tensors="pt")
            if on_truncated is not None and len(model.tokenizer(formatted).input_ids) > MAX_SEQUENCE_LENGTH:
                on_truncated(f"A prompt is longer than the {MAX_SEQUENCE_LENGTH} Qwen3 tokens Z-Image reads; "
                             "the rest is ignored.")
            ids = tokens.input_ids.to(encoder.device)
            mask = tokens.attention_mask.to(encoder.device).bool()
            states = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[HIDDEN_LAYER]
            features = states[0][mask[0]]
            embeddings.append(PromptEmbedding(hidden_states=features[None].to(model.dtype or features.dtype)))
    return embeddings


def encode_zimage_prompt_pair(model, prompt: str, negative: str, *, on_truncated=None):
    cond, uncond = encode_zimage_prompts(model, [prompt, negative], on_truncated=on_truncated)
    return cond, uncond


def zimage_sigmas(steps: int) -> list[float]:
    import torch

    return torch.linspace(1.0, 1 / steps, steps).tolist()


@dataclass
class ZImageContext(FlowContext):
    """A flow run of a Z-Image transformer; `guidance_scale` is the pipeline's guidance_scale (0 = off)."""

    cfg_normalization: float = 0.0
    cfg_truncation: float = 1.0

    uses_true_cfg = False  # CFG is `guidance`; request.true_cfg_scale does not apply

    @classmethod
    def guidance_fields(cls, model, guidance: float | None, true_cfg: float) -> dict:
        return dict(guidance=None, true_cfg=1.0, guidance_scale=float(guidance or 0.0))

    @classmethod
    def uses_guidance(cls, model) -> bool:
        return True

    @classmethod
    def encode_prompts(cls, model, prompt: str, negative: str, *, on_truncated=None):
        return encode_zimage_prompt_pair(model, prompt, negative, on_truncated=on_truncated)

    def schedule_sigmas(self, steps: int):
        return zimage_sigmas(steps)

    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale > 0

    def step_guidance(self, t) -> float:
        """The guidance of the step at `t`: 0 once its normalised time is past `cfg_truncation`."""
        if self.do_cfg and self.cfg_truncation <= 1 and float((1000 - t.float()) / 1000) > self.cfg_truncation:
            return 0.0
        return self.guidance_scale

    def combine_guidance(self, noise_uncond, noise_cond, scale: float | None = None):
        """cond + g * (cond - uncond) per image, its norm capped by `cfg_normalization` (the pipeline's
        formula; the predictions are negated velocities there, which changes no norm and no bit)."""
        import torch

        scale = self.guidance_scale if scale is None else scale
        guided = []
        for cond, uncond in zip(noise_cond, noise_uncond):
            prediction = cond + scale * (cond - uncond)
            if self.cfg_normalization > 0:
                cond_norm = torch.linalg.vector_norm(cond)
                new_norm = torch.linalg.vector_norm(prediction)
                limit = cond_norm * float(self.cfg_normalization)
                if new_norm > limit:
                    prediction = prediction * (limit / new_norm)
            guided.append(prediction)
        return torch.stack(guided)

    def zimage_forward(self, latents, t, features: list):
        """One transformer call on B spatial latents (B x 16 x h x w) with B caption feature sequences
        (each L_i x D); returns the velocities (the negated outputs), B x 16 x h x w float32."""
        import torch

        transformer = self.model.transformer
        batch = latents.shape[0]
        timestep = (1000 - t.expand(batch)) / 1000
        images = list(latents.to(transformer.dtype).unsqueeze(2).unbind(dim=0))
        outputs = transformer(images, timestep, [f.to(self.device, transformer.dtype) for f in features],
                              return_dict=False)[0]
        return -torch.stack([output.float() for output in outputs], dim=0).squeeze(2)

    def transformer_forward(self, latents, t, embedding, joint_attention_kwargs=None):
        features = [embedding.hidden_states[0]] * latents.shape[0]
        return self.zimage_forward(latents, t, features)

    def model_batch(self, latent_inputs: list, embeddings: list, t) -> list:
        import torch

        features = [embedding.hidden_states[0] for embedding in embeddings]
        return list(self.zimage_forward(torch.cat(latent_inputs), t, features).split(1))

    def predict_noise_default(self, latents, t):
        """The prompt, then (CFG on this step) the negative, in one call as the pipeline batches them."""
        scale = self.step_guidance(t)
        if scale <= 0:
            return self.transformer_forward(latents, t, self.cond)
        import torch

        features = [self.cond.hidden_states[0], self.uncond.hidden_states[0]]
        velocity = self.zimage_forward(torch.cat([latents, latents]), t, features)
        cond, uncond = velocity.chunk(2)
        return self.combine_guidance(uncond, cond, scale)

    def encode_prompt_pair(self, prompt: str, negative: str, clip_skip: int = 1):
        return encode_zimage_prompt_pair(self.model, prompt, negative)
