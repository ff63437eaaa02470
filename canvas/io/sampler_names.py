"""Other apps' sampler and schedule names -> Collagen's sampler names (a pure table).

The names arrive in several spellings of the same few k-diffusion samplers:
- AUTOMATIC1111 / Forge / Fooocus-as-A1111: `Euler a`, `DPM++ 2M Karras`, or since A1111 1.9
  `DPM++ 2M` with a separate `Schedule type: Karras`;
- ComfyUI and Fooocus: `euler_ancestral`, `dpmpp_2m` + scheduler `karras`, `dpmpp_sde_gpu`, `uni_pc`;
- k-diffusion's function names and their `k_` aliases (A1111's internal names, NovelAI, old InvokeAI):
  `sample_dpmpp_sde`, `k_euler_ancestral`, `k_dpmpp_2m_ka`, `k_lms`;
- InvokeAI 3+ schedulers: `euler_a`, `dpmpp_2m_k`, `dpmpp_sde_k`, `unipc`.

Each is read as (algorithm, Karras sigmas or not). `match_sampler` returns Collagen's name and
whether it is the same sampler; a near one (the same algorithm on another noise schedule) comes
with a sentence saying what differs, and an algorithm Collagen lacks (LMS, Heun, DPM++ 2M SDE…)
gives no name. canvas must not import inference: COLLAGEN_SAMPLERS is checked against
inference.api.SAMPLERS by a desktop test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COLLAGEN_SAMPLERS = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "UniPC", "LCM")

# algorithm spelled any of these ways (after lower-casing, `sample_`/`k_` prefixes and `_gpu` cut off)
_ALGORITHMS = {
    "euler": "euler",
    "euler a": "euler_a", "euler_a": "euler_a", "euler_ancestral": "euler_a", "euler ancestral": "euler_a",
    "dpm++ 2m": "dpmpp_2m", "dpmpp_2m": "dpmpp_2m", "dpmpp_2": "dpmpp_2m",
    "dpm++ sde": "dpmpp_sde", "dpmpp_sde": "dpmpp_sde",
    "ddim": "ddim", "ddim_v3": "ddim",
    "unipc": "unipc", "uni_pc": "unipc", "uni_pc_bh2": "unipc",
    "lcm": "lcm",
}
# (algorithm, karras) -> Collagen's sampler
_COLLAGEN = {
    ("euler", False): "Euler", ("euler_a", False): "Euler a", ("dpmpp_2m", False): "DPM++ 2M",
    ("dpmpp_2m", True): "DPM++ 2M Karras", ("dpmpp_sde", True): "DPM++ SDE Karras",
    ("ddim", False): "DDIM", ("unipc", False): "UniPC", ("lcm", False): "LCM",
}
# schedules that are each app's default (the sampler's own sigmas), not a different noise schedule
_PLAIN_SCHEDULES = {"", "normal", "simple", "native", "automatic", "default", "discrete", "uniform", "none"}
# names a Karras suffix may follow, Collagen's algorithms and the ones it lacks alike
_KARRAS_BASES = {*_ALGORITHMS, "dpmpp_2m_sde", "dpm++ 2m sde", "dpmpp_3m_sde", "dpm++ 3m sde", "lms", "heun",
                 "dpm2", "dpm_2", "dpm2 a", "dpm_2_a", "dpmpp_2s_a", "dpm++ 2s a"}
_KARRAS_SUFFIX = re.compile(r"(?:[ _]karras|_ka|_k)$")


@dataclass(frozen=True)
class SamplerMatch:
    name: str | None  # Collagen's sampler; None when Collagen has none like it
    exact: bool  # the same algorithm on the same schedule
    note: str = ""  # what differs (empty when exact)


def match_sampler(sampler: str | None, schedule: str | None = None) -> SamplerMatch:
    """Collagen's sampler for another app's `sampler` (and its separate `schedule`, if any)."""
    if not isinstance(sampler, str) or not sampler.strip():
        return SamplerMatch(None, False, "no sampler is named")
    written = sampler.strip()
    if written in COLLAGEN_SAMPLERS and not _is_karras(schedule) and _plain(schedule):
        return SamplerMatch(written, True)
    text = written.lower()
    for prefix in ("sample_", "k_"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    karras = False
    suffix = _KARRAS_SUFFIX.search(text)
    if suffix and text[:suffix.start()] in _KARRAS_BASES:
        karras, text = True, text[:suffix.start()]
    if text.endswith("_gpu"):  # ComfyUI's GPU-noise variant of the same sampler
        text = text[:-4]
    algorithm = _ALGORITHMS.get(text)
    label = written if schedule in (None, "") else f"{written} ({schedule})"
    if algorithm is None:
        return SamplerMatch(None, False, f"Collagen has no {label} sampler")
    karras = karras or _is_karras(schedule)
    other_schedule = not karras and not _plain(schedule)
    name = _COLLAGEN.get((algorithm, karras))
    if name is not None and not other_schedule:
        return SamplerMatch(name, True)
    near = _COLLAGEN.get((algorithm, False)) if other_schedule else None
    near = near or _COLLAGEN.get((algorithm, not karras))
    if near is None:
        return SamplerMatch(None, False, f"Collagen has no {label} sampler")
    if karras:
        why = "without Karras sigmas"
    elif other_schedule:
        why = f"on its own noise schedule instead of {schedule}"
    else:
        why = "with Karras sigmas (Collagen has it only so)"
    return SamplerMatch(near, False, f"{label} runs as {near}, {why}")


def _is_karras(schedule: str | None) -> bool:
    return isinstance(schedule, str) and schedule.strip().lower() == "karras"


def _plain(schedule: str | None) -> bool:
    return schedule is None or (isinstance(schedule, str) and schedule.strip().lower() in _PLAIN_SCHEDULES)
