"""The local engine as a backend (the default): `inference.engine.Engine`, named "local"."""

from __future__ import annotations

import dataclasses
import threading
from typing import Callable

from inference.api import Event, Finished, GenerationRequest
from inference.backends.base import LOCAL_BACKEND


class LocalBackend:
    """Runs jobs in this process; it cannot be lost, so `execute` is `run`."""

    def __init__(self, engine, name: str = LOCAL_BACKEND):
        self.engine = engine
        self.name = name

    def run(self, request: GenerationRequest, on_event: Callable[[Event], None], cancel: threading.Event) -> None:
        self.engine.run(request, lambda event: on_event(with_backend(event, self.name)), cancel)

    def execute(self, request: GenerationRequest, on_event: Callable[[Event], None], cancel: threading.Event) -> None:
        self.run(request, on_event, cancel)


def with_backend(event: Event, name: str) -> Event:
    """A Finished event whose records say which backend made the images; other events as they are."""
    if not isinstance(event, Finished):
        return event
    parameters = tuple({**record, "backend": name} for record in event.parameters)
    return dataclasses.replace(event, parameters=parameters)
