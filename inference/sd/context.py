"""The state of one denoise run, and the hooks through which features extend the loop.

A mode is a list of `LoopExtension`s around ONE loop (inference/sd/loop.py). The loop calls, in
this order (extensions in list order; `finish` and `cleanup` in reverse order, like nested
context managers):

1. `prepare_image(ctx)`   pixel space, before the VAE encodes anything: `ctx.canvas_image` is the
                          request's image; an extension may set `ctx.source_image`/`ctx.init_image`
                          itself (inpaint crops the masked area and pre-fills it), else the loop
                          sets both to the canvas image in generation space right after.
2. `prepare(ctx)`         latent space, before the first step: change `ctx.image_latents`, set
                          `ctx.conditioning_channels` (9-channel inpaint), replace
                          `ctx.encoder_hidden_states`, install attention processors (restore them
                          in `cleanup`).
3. per step `predict_noise(ctx, latents, t)`: the first extension that returns a tensor replaces the
                          default UNet evaluation (latent couple evaluates once per region).
4. per step `after_step(ctx, step_index, latents) -> latents`: latent blending (inpaint holds
                          unmasked pixels to the noised original; per-pixel strength holds each
                          pixel until its own start step).
5. `finish(ctx, image) -> image`: pixel space after the VAE decode (paste-back, colour match).
6. `cleanup(ctx)`         always, also after a cancel or an error.

An extension that needs canvas-sized inputs (region masks) in the generation's pixel space uses
`ctx.to_generation_space`, which follows the inpaint crop when there is one, so list inpaint first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from inference.api import Event, GenerationRequest, Notice
from inference.components import SDModel


class LoopExtension:
    """A feature of the denoise loop. Every hook is a no-op here; override the ones you need."""

    def prepare_image(self, ctx: DenoiseContext) -> None:
        pass

    def prepare(self, ctx: DenoiseContext) -> None:
        pass

    def predict_noise(self, ctx: DenoiseContext, latents, t):
        """Return the guided noise prediction for `latents` at `t`, or None to leave it to the loop."""
        return None

    def after_step(self, ctx: DenoiseContext, step_index: int, latents):
        return latents

    def finish(self, ctx: DenoiseContext, image: np.ndarray) -> np.ndarray:
        return image

    def cleanup(self, ctx: DenoiseContext) -> None:
        pass


@dataclass
class DenoiseContext:
    """Everything one image's denoise run reads and writes; extensions may change the marked fields."""

    model: SDModel
    request: GenerationRequest
    seed: int
    width: int  # generation size in pixels (multiples of 8)
    height: int
    generator: Any  # CPU torch.Generator seeded with `seed`: noise reproduces across devices
    emit: Callable[[Event], None]
    device: Any = None
    dtype: Any = None
    strength: float = 1.0  # denoising strength of the run (which part of the schedule runs)
    # Pixel space. `canvas_image` is the request's image; `source_image` the generation-space input
    # before extensions touched it; `init_image` what the VAE encodes (extensions may pre-fill it).
    canvas_image: np.ndarray | None = None
    source_image: np.ndarray | None = None
    init_image: np.ndarray | None = None
    crop_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) on the canvas, set by inpaint
    changed_box: tuple[int, int, int, int] | None = None  # where finish may change the canvas (None: all of it)
    # Conditioning (extensions may replace these in `prepare`)
    cond: Any = None  # PromptEmbedding of the prompt
    uncond: Any = None  # PromptEmbedding of the negative prompt
    guidance_scale: float = 7.0
    encoder_hidden_states: Any = None  # [uncond, cond] batch with CFG, [cond] without
    added_cond_kwargs: dict | None = None  # SDXL text_embeds + time_ids, batched like the states
    cross_attention_kwargs: dict | None = None
    # LoRAs the engine applied for the whole run (LoraSpec), and how to switch to another set of them:
    # latent couple evaluates regions under their own LoRAs and switches back (None: cannot switch).
    loras: tuple = ()
    apply_loras: Callable[[list], None] | None = None
    conditioning_channels: Any = None  # extra UNet input channels (9-channel inpaint: mask + masked image)
    # Latent space
    scheduler: Any = None
    timesteps: Any = None  # the timesteps this run steps through (after the strength cut)
    steps: int = 0  # the requested number of steps (the full schedule before the strength cut)
    run_start: int = 0  # index of timesteps[0] in the full schedule
    image_latents: Any = None  # clean latents of init_image (scaled like the loop's latents)
    noise: Any = None  # the initial noise; blending re-noises the original with this same tensor
    latents: Any = None
    state: dict = field(default_factory=dict)  # per-extension scratch space, keyed by extension

    # ---- helpers for extensions -------------------------------------------------------------

    @property
    def do_cfg(self) -> bool:
        """CFG 1 means the unconditional pass changes nothing, so it is skipped."""
        return self.guidance_scale != 1.0

    @property
    def latent_size(self) -> tuple[int, int]:
        scale = self.model.vae_scale_factor
        return self.height // scale, self.width // scale

    def notify(self, message: str) -> None:
        self.emit(Notice(message))

    @property
    def canvas_box(self) -> tuple[int, int, int, int]:
        """The whole canvas as (x0, y0, x1, y1): the request's image, or the request size without one."""
        if self.canvas_image is not None:
            return (0, 0, int(self.canvas_image.shape[1]), int(self.canvas_image.shape[0]))
        return (0, 0, int(self.request.width), int(self.request.height))

    def unet_forward(self, latent_input, t, encoder_hidden_states, added_cond_kwargs=None, cross_attention_kwargs=None):
        """One UNet evaluation; adds `conditioning_channels` for 9-channel models. Returns float32."""
        import torch

        if self.conditioning_channels is not None:
            extra = self.conditioning_channels
            if extra.shape[0] != latent_input.shape[0]:
                extra = extra.expand(latent_input.shape[0], *extra.shape[1:])
            latent_input = torch.cat([latent_input, extra.to(latent_input.dtype)], dim=1)
        noise_pred = self.model.unet(
            latent_input.to(self.dtype),
            t,
            encoder_hidden_states=encoder_hidden_states.to(self.dtype),
            added_cond_kwargs=added_cond_kwargs,
            cross_attention_kwargs=cross_attention_kwargs,
            return_dict=False,
        )[0]
        return noise_pred.float()

    def encode_prompt_pair(self, prompt: str, negative: str, clip_skip: int = 1):
        """(cond, uncond) PromptEmbeddings of a part's own prompt pair (regions, composite pieces)."""
        from inference.sd.prompt import encode_prompt_pair

        return encode_prompt_pair(self.model, prompt, negative, clip_skip)

    def model_batch(self, latent_inputs: list, embeddings: list, t) -> list:
        """One UNet call on several (latents, prompt) pairs of equal token length; one prediction per pair.

        SDXL gets each prompt's own pooled embedding and the run's time ids.
        """
        import torch

        states = torch.cat([embedding.hidden_states for embedding in embeddings])
        added_cond_kwargs = None
        if self.added_cond_kwargs is not None:
            pooled = torch.cat([embedding.pooled for embedding in embeddings]).to(self.device, self.dtype)
            time_ids = self.added_cond_kwargs["time_ids"][:1].repeat(len(embeddings), 1)
            added_cond_kwargs = {"text_embeds": pooled, "time_ids": time_ids}
        noise = self.unet_forward(torch.cat(latent_inputs), t, states, added_cond_kwargs, self.cross_attention_kwargs)
        return list(noise.split(1))

    def combine_guidance(self, noise_uncond, noise_cond):
        return noise_uncond + self.guidance_scale * (noise_cond - noise_uncond)

    def predict_noise_default(self, latents, t):
        """The plain evaluation: batch [uncond, cond] with CFG, [cond] alone at CFG 1."""
        import torch

        latent_input = torch.cat([latents, latents]) if self.do_cfg else latents
        latent_input = self.scheduler.scale_model_input(latent_input, t)
        noise_pred = self.unet_forward(
            latent_input, t, self.encoder_hidden_states, self.added_cond_kwargs, self.cross_attention_kwargs
        )
        if not self.do_cfg:
            return noise_pred
        noise_uncond, noise_cond = noise_pred.chunk(2)
        return self.combine_guidance(noise_uncond, noise_cond)

    def start_steps(self, latent_strength: np.ndarray) -> np.ndarray:
        """Per latent pixel of this strength, the index into `timesteps` where its denoising starts
        (the loop's own img2img cut applied per pixel; the flow loop rounds as FLUX's pipelines do)."""
        from inference.sd.steps import start_steps

        return start_steps(latent_strength, self.steps, self.scheduler.order, self.run_start, len(self.timesteps))

    def inpaint_conditioning(self, image: np.ndarray | None, grid_mask: np.ndarray | None, latent_mask):
        """The extra input channels of an inpaint model: 9-channel SD takes [mask, latents of the image
        with the regenerated cells greyed out]. `image` None: everything counts as masked (txt2img)."""
        import torch

        from inference.sd.vae import encode_image

        if image is None:
            image = np.full((self.height, self.width, 3), 128, dtype=np.uint8)
            latent_mask = torch.ones((1, 1, *self.latent_size), device=self.device)
        else:
            keep = (grid_mask <= 0)[..., None]
            # 127/128 grey is 0 in the VAE's [-1, 1] input range, what diffusers' masked image holds.
            image = np.where(keep, image, np.uint8(128)).astype(np.uint8)
        masked_latents = encode_image(self.model, image, self.device)
        return torch.cat([latent_mask.to(masked_latents.dtype), masked_latents], dim=1)

    def to_generation_space(self, canvas_array: np.ndarray, *, is_mask: bool = True) -> np.ndarray:
        """A canvas-sized HxW (mask) or HxWx3 (image) array as the generation sees it (crop + resize)."""
        from inference.sd.masks import resize_image, resize_mask

        array = canvas_array
        if self.crop_box is not None:
            x0, y0, x1, y1 = self.crop_box
            array = array[y0:y1, x0:x1]
        if array.shape[:2] == (self.height, self.width):
            return array
        if is_mask:
            return resize_mask(array, self.width, self.height)
        return resize_image(array, self.width, self.height)
