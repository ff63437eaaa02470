"""LyCORIS LoHa and LoKr files (kohya key layout) rewritten exactly as plain LoRAs.

A1111 lists LoHa/LoKr files with the LoRAs and applies them the same way; here each module's
delta weight is factored into an exact `lora_up @ lora_down` pair, so the file then takes the
ordinary LoRA path (diffusers' kohya conversion, peft adapters, cheap switching and weights).

LoHa (Hadamard product of two low-rank pairs), per module:
    ΔW = (w1a @ w1b) * (w2a @ w2b) * alpha / r                 r = w1b.shape[0]
  = U @ V with U[i, (p, q)] = w1a[i, p] * w2a[i, q] and V[(p, q), j] = w1b[p, j] * w2b[q, j]
  (rank r1 * r2; no approximation).
LoKr (Kronecker product), per module:
    ΔW = kron(w1, w2) * scale      w1 = lokr_w1 or lokr_w1_a @ lokr_w1_b, w2 likewise;
    scale = alpha / rank of the decomposed factor (w2's if both are), 1 when both are full
  = kron(w1, I_c) @ kron(I_b, w2) for w1 (a x b) and w2 (c x d) (rank b * c), or
    kron(I_a, w2) @ kron(w1, I_d) (rank a * d), whichever rank is smaller.
Convolutions: LoKr's 4-D w2 keeps its kernel in the down factor; LoHa's flattened w1b/w2b are
reshaped with the kernel the model's layer has (`conv_kernels`). The Tucker forms (hada_t1/t2,
lokr_t2) are refused with a sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inference.api import ModelError

LOHA_KEYS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
LOKR_KEYS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")
TUCKER_KEYS = ("hada_t1", "hada_t2", "lokr_t1", "lokr_t2")


def lycoris_kind(state: Mapping[str, Any]) -> str | None:
    """"loha", "lokr" or None, from the key layout."""
    suffixes = {key.rsplit(".", 1)[-1] for key in state}
    if suffixes & set(LOHA_KEYS):
        return "loha"
    if suffixes & set(LOKR_KEYS):
        return "lokr"
    return None


def lycoris_as_lora(state: Mapping[str, Any], name: str,
                    conv_kernels: Mapping[str, tuple[int, int, int]] | None = None) -> dict[str, Any]:
    """The kohya LoRA (`M.lora_down.weight`, `M.lora_up.weight`, `M.alpha`) equal to a LoHa/LoKr
    state; keys of other modules (plain LoRA modules in the same file) are kept as they are.
    `conv_kernels`: module name -> (in_channels, kh, kw) of the model's convolutions."""
    import torch

    modules: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for key, tensor in state.items():
        module, _, suffix = key.rpartition(".")
        if suffix in TUCKER_KEYS:
            raise ModelError(f"{name}: uses the LyCORIS Tucker form ({suffix}), which Collagen does not apply.")
        if suffix in LOHA_KEYS or suffix in LOKR_KEYS or (suffix == "alpha" and _is_lycoris(state, module)):
            modules.setdefault(module, {})[suffix] = tensor
        else:
            out[key] = tensor
    for module, parts in modules.items():
        try:
            with torch.no_grad():
                if "hada_w1_a" in parts:
                    up, down = _loha_factors(parts, (conv_kernels or {}).get(module))
                else:
                    up, down = _lokr_factors(parts)
        except KeyError as missing:
            raise ModelError(f"{name}: the LyCORIS module {module} lacks its {missing.args[0]} weight.") from None
        except (RuntimeError, ValueError, IndexError):
            raise ModelError(f"{name}: the LyCORIS module {module} has weights whose shapes do not fit "
                             "together.") from None
        out[f"{module}.lora_up.weight"] = up.contiguous()
        out[f"{module}.lora_down.weight"] = down.contiguous()
        out[f"{module}.alpha"] = torch.tensor(float(down.shape[0]))  # the scale is already in `up`
    return out


def _is_lycoris(state: Mapping[str, Any], module: str) -> bool:
    return any(f"{module}.{suffix}" in state for suffix in ("hada_w1_a", "lokr_w1", "lokr_w1_a"))


def _loha_factors(parts: dict[str, Any], kernel: tuple[int, int, int] | None):
    w1a, w1b, w2a, w2b = (parts[k].float() for k in LOHA_KEYS)
    w1b, w2b = w1b.reshape(w1b.shape[0], -1), w2b.reshape(w2b.shape[0], -1)
    rank = w1b.shape[0]
    scale = float(parts["alpha"]) / rank if "alpha" in parts else 1.0
    out_features = w1a.shape[0]
    up = (w1a[:, :, None] * w2a[:, None, :]).reshape(out_features, -1) * scale
    down = (w1b[:, None, :] * w2b[None, :, :]).reshape(up.shape[1], -1)
    if kernel is not None and kernel[1] * kernel[2] > 1:
        in_channels, kh, kw = kernel
        down = down.reshape(down.shape[0], in_channels, kh, kw)
        up = up[:, :, None, None]
    return up, down


def _lokr_factors(parts: dict[str, Any]):
    import torch

    w1 = parts["lokr_w1"].float() if "lokr_w1" in parts else parts["lokr_w1_a"].float() @ parts["lokr_w1_b"].float()
    if "lokr_w2" in parts:
        w2 = parts["lokr_w2"].float()
    else:
        w2a, w2b = parts["lokr_w2_a"].float(), parts["lokr_w2_b"].float()
        w2 = w2a @ w2b.reshape(w2b.shape[0], -1)
    rank = (parts["lokr_w2_b"].shape[0] if "lokr_w2_b" in parts
            else parts["lokr_w1_b"].shape[0] if "lokr_w1_b" in parts else None)
    scale = float(parts["alpha"]) / rank if rank is not None and "alpha" in parts else 1.0
    w1 = w1 * scale
    a, b = w1.shape
    c, d = w2.shape[:2]
    kernel = tuple(w2.shape[2:])  # () for a Linear, (kh, kw) for a convolution's full w2
    if kernel:  # the kernel stays in the down factor: ΔW[:, :, y, x] = kron(w1, w2[:, :, y, x])
        up = torch.kron(w1, torch.eye(c))[:, :, None, None]
        down = torch.kron(torch.eye(b)[:, :, None, None], w2)
        return up, down
    if b * c <= a * d:
        return torch.kron(w1, torch.eye(c)), torch.kron(torch.eye(b), w2)
    return torch.kron(torch.eye(a), w2), torch.kron(w1, torch.eye(d))
