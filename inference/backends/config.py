"""Backends as the settings and the CLI name them, and the engine-like object they make.

A backend entry is `local`, or a ComfyUI server's URL optionally followed by space-separated
`token=SECRET` and `header:Name=Value` words:

    local
    http://127.0.0.1:8188
    https://gpu-box.example:8188 token=abc123 header:X-Team=art

No entries means the local engine alone (the default). One entry runs every job there; several
form a `BackendPool` and each job runs on whichever is free.
"""

from __future__ import annotations

from typing import Callable

from inference.api import RequestError
from inference.backends.base import LOCAL_BACKEND
from inference.backends.comfyui.client import ServerAddress


def parse_backend(entry: str) -> ServerAddress | str:
    """`LOCAL_BACKEND`, or the server address an entry names; RequestError with one sentence otherwise."""
    words = str(entry).split()
    if not words:
        raise RequestError("A backend entry is empty; write 'local' or a ComfyUI server's URL.")
    if words[0] == LOCAL_BACKEND:
        if len(words) > 1:
            raise RequestError("The local backend takes no token or headers.")
        return LOCAL_BACKEND
    token, headers = "", []
    for word in words[1:]:
        if word.startswith("token="):
            token = word[len("token="):]
        elif word.startswith("header:") and "=" in word:
            name, value = word[len("header:"):].split("=", 1)
            if not name:
                raise RequestError(f"The backend header {word!r} has no name.")
            headers.append((name, value))
        else:
            raise RequestError(f"Unknown backend option {word!r} after {words[0]}; use token=... or header:Name=Value.")
    return ServerAddress(words[0], token=token, headers=tuple(headers))


def build_backend(entries: list[str], local_engine: Callable[[], object]):
    """The object the inference worker runs jobs on: the local engine, one backend, or a pool."""
    from inference.backends.comfyui.backend import ComfyUIBackend
    from inference.backends.local import LocalBackend
    from inference.backends.pool import BackendPool

    if not entries:
        return local_engine()
    backends = []
    for entry in entries:
        parsed = parse_backend(entry)
        backends.append(LocalBackend(local_engine()) if parsed == LOCAL_BACKEND else ComfyUIBackend(parsed))
    names = [backend.name for backend in backends]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RequestError(f"The backend {duplicates[0]} is listed twice.")
    return backends[0] if len(backends) == 1 else BackendPool(backends)
