"""Where models run and in which precision, when the caller does not say."""

from __future__ import annotations


def choose_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(device: str, prefer_bf16: bool = False):
    """float32 on CPU (half precision is slow or unsupported there); fp16 on GPUs, bf16 when asked and able."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if prefer_bf16 and torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32
