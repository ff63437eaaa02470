"""An optional fast path for the UNet (mostly for GPUs): channels_last, fused QKV, torch.compile.

The editor and the command line turn it on through the engine's hook (`Engine(models,
fast_path=FastPathHook(setting))`, the `fast_path` setting: auto = on for CUDA devices, off on CPUs
and MPS, where it has not been measured to win); benchmarks may wrap a model manager instead:

    engine = Engine(FastPathModels(manager, FastPathOptions(compile=True)))

Every SD model the engine prepares then gets a `FastUNet` installed on its UNet (once), which decides
before EACH forward call which path is safe:

- fast: channels_last weights, fused QKV projections (`FusedAttnProcessor2_0`: one matmul for q, k, v
  in self-attention, one for k, v in cross-attention) and, with `compile`, a `torch.compile`d forward
  whose latent height/width (and prompt length) are marked dynamic, so a new canvas size reuses the
  compiled graph instead of compiling again;
- plain (eager): whenever an extension has put its own attention processors on the UNet (regional
  prompts do, on every cross-attention layer) — compiled code would guard on the processor objects
  and recompile on every regional generation — and whenever LoRA layers are loaded: the fused
  projections are copies made without the LoRA, so the attention layers go back to their original
  processors, which see the LoRA through to_q/to_k/to_v.

Compiled graphs are shared by the sizes of one bucket grid: latents whose sides are multiples of the
UNet's total down-sampling factor (8 for SD1.5, 4 for SDXL: 64 / 32 px) and at least twice it, so the
deepest level is never a 1x1 map (dynamo would specialise on a side of 1). Other sizes run eager,
which costs a generation its speed-up instead of a recompile. The first compiled call compiles
(a minute or more for a full UNet); the hook announces it with a Notice so the editor shows what it
is doing instead of freezing on step 0.

The fused copies cost the q/k/v weights' memory once more; channels_last and fusing are exact
rewrites of the same arithmetic (results equal up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FAST_PATH_KEY = "fast_path"  # SDModel.extra key of the installed FastUNet


@dataclass(frozen=True)
class FastPathOptions:
    channels_last: bool = True
    fuse_qkv: bool = True
    compile: bool = False
    compile_mode: str | None = None  # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    compile_backend: str = "inductor"  # "eager" traces and guards without generating code (tests)
    dynamic_size: bool = True  # one compiled graph for every latent size and prompt length


class FastUNet:
    """Installed on one UNet (replaces its `forward`); see the module docstring for the two paths."""

    def __init__(self, unet, options: FastPathOptions):
        import torch
        from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

        self.unet = unet
        self.options = options
        self.eager_forward = unet.forward
        self.attention = [module for module in unet.modules() if isinstance(module, Attention)]
        self.original_processors = [module.processor for module in self.attention]
        if options.channels_last:
            unet.to(memory_format=torch.channels_last)
        if options.fuse_qkv:
            fused = FusedAttnProcessor2_0()
            with torch.no_grad():
                for module in self.attention:
                    module.fuse_projections(fuse=True)
                    module.set_processor(fused)
        self.fast_processors = [module.processor for module in self.attention]
        self.compiled = None
        if options.compile:
            self.compile(options.compile_mode, options.compile_backend)
        self.calls = {"fast": 0, "eager": 0}
        self.bucket = 2 ** (len(unet.config.down_block_types) - 1)  # latent px per deepest-level cell
        self.enabled = True
        self.compiled_once = False
        self.on_first_compile = None  # called (no arguments) right before the first compiled call
        unet.forward = self.forward

    def compile(self, mode: str | None = None, backend: str = "inductor") -> None:
        """Compile the fast path's forward (also later, on a FastUNet installed without compiling)."""
        import torch

        options = {"mode": mode} if backend == "inductor" else {}
        self.compiled = torch.compile(self.eager_forward, backend=backend, dynamic=None, **options)

    # -- which path --------------------------------------------------------------------------------

    def has_lora(self) -> bool:
        return bool(getattr(self.unet, "peft_config", None))

    def processors_are_fast(self) -> bool:
        return all(module.processor is fast for module, fast in zip(self.attention, self.fast_processors))

    def restore_unfused_processors(self) -> None:
        """Fused processors bypass LoRA layers: put each layer's original back where a fused one sits."""
        for module, original, fast in zip(self.attention, self.original_processors, self.fast_processors):
            if module.processor is fast and fast is not original:
                module.set_processor(original)

    def set_enabled(self, enabled: bool) -> None:
        """Off: the original processors and the eager forward (channels_last stays: it is exact)."""
        if enabled and not self.enabled and not self.has_lora():
            for module, fast in zip(self.attention, self.fast_processors):
                if module.processor is not fast:
                    module.set_processor(fast)
        elif not enabled:
            self.restore_unfused_processors()
        self.enabled = enabled

    def bucket_px(self, vae_scale: int = 8) -> tuple[int, int]:
        """(step, smallest side) in pixels of the sizes one compiled graph serves."""
        return self.bucket * vae_scale, 2 * self.bucket * vae_scale

    def in_buckets(self, sample) -> bool:
        """Whether the compiled graph serves this latent size without compiling again (module docstring)."""
        height, width = sample.shape[-2:]
        return all(side % self.bucket == 0 and side >= 2 * self.bucket for side in (height, width))

    def forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs):
        if self.has_lora():
            self.restore_unfused_processors()
            return self.run_eager(sample, timestep, encoder_hidden_states, *args, **kwargs)
        if self.compiled is None or not self.enabled or not self.processors_are_fast() or not self.in_buckets(sample):
            return self.run_eager(sample, timestep, encoder_hidden_states, *args, **kwargs)
        if self.options.dynamic_size:
            mark_sizes_dynamic(sample, encoder_hidden_states)
        if not self.compiled_once:
            self.compiled_once = True
            if self.on_first_compile is not None:
                self.on_first_compile()
        self.calls["fast"] += 1
        return self.compiled(sample, timestep, encoder_hidden_states, *args, **kwargs)

    def run_eager(self, *args, **kwargs):
        self.calls["eager"] += 1
        return self.eager_forward(*args, **kwargs)


def mark_sizes_dynamic(sample, encoder_hidden_states) -> None:
    """Latent height/width and the token count vary between generations; the batch (CFG or not) rarely does."""
    import torch

    torch._dynamo.maybe_mark_dynamic(sample, 2)
    torch._dynamo.maybe_mark_dynamic(sample, 3)
    if encoder_hidden_states is not None and encoder_hidden_states.ndim == 3:
        torch._dynamo.maybe_mark_dynamic(encoder_hidden_states, 1)


def install_fast_path(model, options: FastPathOptions) -> FastUNet:
    """Install the fast path on the model's UNet once; later calls return the installed one."""
    installed = model.extra.get(FAST_PATH_KEY)
    if isinstance(installed, FastUNet) and installed.unet is model.unet:
        return installed
    fast = FastUNet(model.unet, options)
    model.extra[FAST_PATH_KEY] = fast
    return fast


class FastPathModels:
    """A model manager (inference.models.ModelManager or alike) whose SD models get the fast path."""

    def __init__(self, models: Any, options: FastPathOptions | None = None):
        self.models = models
        self.options = options or FastPathOptions()

    def load(self, name_or_path: str, vae: str | None = None):
        model = self.models.load(name_or_path, vae=vae)
        if getattr(model, "family", None) in ("sd15", "sdxl"):
            install_fast_path(model, self.options)
        return model

    def __getattr__(self, name: str):
        # Everything else (lora_path, embeddings, taesd_decoder, discover, ...) is the wrapped manager's.
        return getattr(self.models, name)


# ---- the engine's hook (the editor's and the CLI's `fast_path` setting) ------------------------------

FAST_PATH_SETTINGS = ("auto", "on", "off")
COMPILE_NOTICE = ("Compiling the model for the fast path (first generation only; a minute or more) — "
                  "later generations at any size in steps of 64 px start at once.")


def fast_path_applies(setting: str, device) -> bool:
    """auto: on CUDA devices only (where fused QKV and compiling were measured to pay); on/off: as said."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return str(device).startswith("cuda")


class FastPathHook:
    """Engine.prepare_model calls `prepare(model, on_event)` on every SD model before it runs.

    Installs the fast path when the setting applies to the model's device, switches an installed
    one off when it no longer does (the setting changed), and routes the first compile's announcement
    to this generation's events.
    """

    def __init__(self, setting: str = "auto", *, compile: bool = True, compile_mode: str | None = None,
                 compile_backend: str = "inductor"):
        self.setting = setting if setting in FAST_PATH_SETTINGS else "auto"
        self.options = FastPathOptions(compile=compile, compile_mode=compile_mode, compile_backend=compile_backend)

    def prepare(self, model, on_event=None) -> FastUNet | None:
        from inference.api import Notice

        installed = model.extra.get(FAST_PATH_KEY)
        wanted = getattr(model, "family", None) in ("sd15", "sdxl") and fast_path_applies(self.setting, model.device)
        if not wanted:
            if isinstance(installed, FastUNet):
                installed.set_enabled(False)
            return None
        fast = install_fast_path(model, self.options)
        fast.set_enabled(True)
        fast.on_first_compile = None if on_event is None else (lambda: on_event(Notice(COMPILE_NOTICE)))
        return fast
