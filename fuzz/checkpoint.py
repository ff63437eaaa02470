"""Fuzz the pickled-checkpoint reader `inference.models.load_pickled_weights`:
`python -m fuzz.checkpoint --cases 2000 [--seed 0]`.

.ckpt/.pt/.pth files are pickles; Collagen reads them with `torch.load(weights_only=True)` only.
Mutations change the pickle program inside torch's zip container (re-packed, so it reaches the
unpickler), the container itself, or a legacy (non-zip) file. Whatever the bytes, the reader
returns a dict of tensors or raises ModelError. The run caps its own address space, so a forged
storage size fails as an allocation error instead of taking the machine's memory.
"""

from __future__ import annotations

import random
import resource
import sys
from pathlib import Path

from fuzz.harness import Target
from fuzz.mutator import Mutator, mutate_zip

ADDRESS_SPACE_LIMIT = 16 << 30  # bytes; torch reserves a few GiB of address space when it starts


def read(path: Path):
    from inference.models import load_pickled_weights

    return load_pickled_weights(path)


def check_result(weights, path: Path) -> None:
    import torch

    assert isinstance(weights, dict), f"returned {type(weights).__name__}"
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items())


def mutate(rng: random.Random, data: bytes) -> bytes:
    if data[:2] == b"PK":
        return mutate_zip(rng, data, {"pkl": lambda r, b: Mutator(r).mutate(b)})
    return Mutator(rng).mutate(data)


def seeds() -> list[bytes]:
    from fuzz.corpus import checkpoint_seeds

    return checkpoint_seeds()


def target() -> Target:
    from inference.api import ModelError

    return Target(name="checkpoint", suffix=".ckpt", errors=(ModelError,), read=read, check_result=check_result,
                  seeds=seeds, mutate=mutate)


def strategy():
    """Hypothesis: arbitrary bytes after a pickle protocol header, or inside a torch zip container."""
    from hypothesis import strategies as st

    from fuzz.mutator import zip_bytes

    pickles = st.binary(max_size=200).map(lambda body: b"\x80\x02" + body)
    containers = st.binary(max_size=200).map(lambda body: zip_bytes([("archive/data.pkl", b"\x80\x02" + body),
                                                                     ("archive/version", b"3\n")]))
    return st.one_of(pickles, containers)


def limit_address_space(limit: int = ADDRESS_SPACE_LIMIT) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


if __name__ == "__main__":
    from fuzz.cli import main

    limit_address_space()
    sys.exit(main(target(), strategy))
