"""The state of one flow-matching denoise run: `DenoiseContext` with what a FLUX transformer reads.

`FlowContext` is a `DenoiseContext` (inference/sd/context.py), so the shared extensions — inpaint,
per-pixel strength, refine, composite, sketch, regions — see the same fields and hooks in both loops:
latents stay spatial (1 x 16 x h x w) everywhere outside the transformer call, which packs them
(inference/flow/packing.py). What differs:

- the prediction is a velocity, not noise; "guidance" is FLUX's distilled guidance embedding (not
  CFG, no second pass); true CFG (`true_cfg`, with a negative prompt) runs a second pass with the
  negative conditioning, as diffusers' `true_cfg_scale` does: uncond + scale * (cond - uncond).
- `cond`/`uncond` are PromptEmbeddings of (T5 sequence, CLIP pooled).
- `conditioning_channels` (FLUX.1 Fill) are spatial too: [masked-image latents (16), the 8x8 pixel
  mask of each latent pixel (64)], packed with the latents into the transformer's 384 inputs.
- `joint_attention_kwargs` / `negative_joint_attention_kwargs` reach the attention processors of
  the cond and the uncond pass (regions put their joint-attention mask there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.flow import packing
from inference.sd.context import DenoiseContext


@dataclass
class FlowContext(DenoiseContext):
    guidance: float | None = None  # distilled guidance (None: the transformer has no guidance embedding)
    true_cfg: float = 1.0  # true CFG scale; 1 = one pass
    image_ids: Any = None
    joint_attention_kwargs: dict | None = None
    negative_joint_attention_kwargs: dict | None = None

    @classmethod
    def guidance_fields(cls, model, guidance: float | None, true_cfg: float) -> dict:
        """The context's guidance fields for a run: FLUX's distilled guidance (when the transformer has the
        embedding) and true CFG."""
        embeds = bool(model.transformer.config.get("guidance_embeds", False))
        return dict(guidance=float(guidance) if embeds and guidance is not None else None,
                    true_cfg=float(true_cfg), guidance_scale=float(true_cfg))

    @classmethod
    def uses_guidance(cls, model) -> bool:
        """Whether `request.guidance` means anything to this model (FLUX: its guidance embedding)."""
        return bool(model.transformer.config.get("guidance_embeds", False))

    uses_true_cfg = True  # request.true_cfg_scale with a negative prompt runs a second pass

    @classmethod
    def encode_prompts(cls, model, prompt: str, negative: str, *, on_truncated=None):
        """(cond, uncond) of the run's prompt pair."""
        from inference.flow.prompt import encode_flow_prompt_pair

        return encode_flow_prompt_pair(model, prompt, negative, on_truncated=on_truncated)

    def schedule_sigmas(self, steps: int):
        """The unshifted sigmas of `steps` steps, or None for the FLUX pipelines' float64 linspace."""
        return None

    @property
    def do_cfg(self) -> bool:
        return self.true_cfg > 1.0

    def combine_guidance(self, noise_uncond, noise_cond):
        return noise_uncond + self.true_cfg * (noise_cond - noise_uncond)

    def start_steps(self, latent_strength: np.ndarray) -> np.ndarray:
        from inference.flow.schedule import start_steps

        return start_steps(latent_strength, self.steps, self.run_start, len(self.timesteps))

    def transformer_forward(self, latents, t, embedding, joint_attention_kwargs=None):
        """One transformer evaluation of spatial latents (B x 16 x h x w) under a PromptEmbedding
        (batch 1, or B matching the latents); adds `conditioning_channels`. Returns B x 16 x h x w float32."""
        import torch

        model_input = latents
        if self.conditioning_channels is not None:
            extra = self.conditioning_channels
            if extra.shape[0] != latents.shape[0]:
                extra = extra.expand(latents.shape[0], *extra.shape[1:])
            model_input = torch.cat([latents, extra.to(latents.dtype)], dim=1)
        batch = latents.shape[0]
        states = embedding.hidden_states
        pooled = embedding.pooled
        if states.shape[0] != batch:
            states, pooled = states.expand(batch, -1, -1), pooled.expand(batch, -1)
        timestep = t.expand(batch).to(self.dtype) / 1000
        guidance = None
        if self.guidance is not None:
            guidance = torch.full([1], self.guidance, device=self.device, dtype=torch.float32).expand(batch)
        height, width = latents.shape[-2:]
        velocity = self.model.transformer(
            hidden_states=packing.pack(model_input.to(self.dtype)),
            timestep=timestep,
            guidance=guidance,
            pooled_projections=pooled.to(self.device, self.dtype),
            encoder_hidden_states=states.to(self.device, self.dtype),
            txt_ids=packing.text_ids(states.shape[1], self.device, self.dtype),
            img_ids=self.image_ids,
            joint_attention_kwargs=joint_attention_kwargs,
            return_dict=False,
        )[0]
        return packing.unpack(velocity, height, width).float()

    def encode_prompt_pair(self, prompt: str, negative: str, clip_skip: int = 1):
        """(cond, uncond) of a part's own prompt pair; FLUX has no clip skip."""
        from inference.flow.prompt import encode_flow_prompt_pair

        return encode_flow_prompt_pair(self.model, prompt, negative)

    def model_batch(self, latent_inputs: list, embeddings: list, t) -> list:
        """One transformer call on several (latents, prompt) pairs of equal token length."""
        import torch

        from inference.sd.prompt import PromptEmbedding

        stacked = PromptEmbedding(hidden_states=torch.cat([e.hidden_states for e in embeddings]),
                                  pooled=torch.cat([e.pooled for e in embeddings]))
        return list(self.transformer_forward(torch.cat(latent_inputs), t, stacked).split(1))

    def predict_noise_default(self, latents, t):
        """The plain evaluation: the prompt, then (true CFG) the negative, as two passes like diffusers."""
        velocity = self.transformer_forward(latents, t, self.cond, self.joint_attention_kwargs)
        if not self.do_cfg:
            return velocity
        negative = self.transformer_forward(latents, t, self.uncond, self.negative_joint_attention_kwargs)
        return self.combine_guidance(negative, velocity)

    def inpaint_conditioning(self, image: np.ndarray | None, grid_mask: np.ndarray | None, latent_mask):
        """FLUX.1 Fill's extra inputs: latents of the image with the regenerated pixels zeroed (in the VAE's
        [-1, 1] range, as diffusers' FluxFillPipeline does), and the binary pixel mask, 64 channels per
        latent pixel. `image` None: everything is regenerated (txt2img/img2img with a Fill model)."""
        import torch

        from inference.flow.vae import encode_pixels
        from inference.sd.vae import image_to_tensor

        cell = self.model.vae_scale_factor
        if image is None:
            pixels = torch.zeros((1, 3, self.height, self.width))
            mask = torch.ones((1, 1, self.height, self.width))
        else:
            mask = torch.from_numpy((np.asarray(grid_mask) > 0).astype(np.float32))[None, None]
            pixels = image_to_tensor(image) * (1 - mask)
        masked_latents = encode_pixels(self.model, pixels, self.device)
        mask_channels = packing.pixel_mask_channels(mask.to(self.device), cell)
        return torch.cat([masked_latents, mask_channels.to(masked_latents.dtype)], dim=1)


def flow_context_class(model) -> type[FlowContext]:
    """The FlowContext subclass that runs this model's transformer (its `context`; FLUX.1's by default)."""
    return getattr(model, "context", None) or FlowContext
