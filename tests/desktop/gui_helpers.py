"""Driving the canvas like a user: mouse drags in document coordinates, small image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication


def send_mouse(view, kind: QEvent.Type, doc_point: tuple[float, float], button: Qt.MouseButton,
               buttons: Qt.MouseButton) -> None:
    viewport = view.viewport()
    local = view.map_from_document(QPointF(*doc_point))
    event = QMouseEvent(kind, local, viewport.mapToGlobal(local), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, event)


def drag(view, points: list[tuple[float, float]]) -> None:
    """Press at the first point, move through the rest, release at the last (left button)."""
    left = Qt.MouseButton.LeftButton
    send_mouse(view, QEvent.Type.MouseButtonPress, points[0], left, left)
    for point in points[1:]:
        send_mouse(view, QEvent.Type.MouseMove, point, Qt.MouseButton.NoButton, left)
    send_mouse(view, QEvent.Type.MouseButtonRelease, points[-1], left, Qt.MouseButton.NoButton)


def line(start: tuple[float, float], end: tuple[float, float], n: int = 8) -> list[tuple[float, float]]:
    return [(start[0] + (end[0] - start[0]) * i / n, start[1] + (end[1] - start[1]) * i / n) for i in range(n + 1)]


def write_image(path: Path, size: tuple[int, int] = (24, 16), color=(30, 160, 90, 255)) -> Path:
    pixels = np.zeros((size[1], size[0], 4), np.uint8)
    pixels[...] = color
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Process Qt events until `condition()` holds, sleeping in between with the GIL released.

    pytest-qt's waitUntil spins QTest.qWait, which keeps the GIL while it waits; an inference
    thread running many small torch operations then waits for the GIL at every one of them.
    """
    import time

    from PySide6.QtCore import QEventLoop

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.003)
