"""The Qt binding keeps Python's reference counts: PySide6 6.12.0 returns None from every void method
without a reference of its own, so on Python 3.11 (where None is counted) the editor dies with
"Fatal Python error: none_dealloc" after a few thousand calls: a minute of painting a big project.
pyproject.toml excludes that release; this says so at once if another one does the same."""

from __future__ import annotations

import sys

import pytest


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 (PEP 683)")
def test_void_qt_calls_keep_the_reference_count_of_none(qapp):
    from PySide6.QtCore import QObject, QTimer
    from PySide6.QtGui import QImage, QPainter

    target = QImage(8, 8, QImage.Format.Format_RGBA8888)
    painter = QPainter(target)
    timer, named = QTimer(), QObject()
    calls = {
        "QObject.setObjectName": lambda: named.setObjectName("x"),
        "QTimer.setInterval": lambda: timer.setInterval(5),
        "QPainter.setRenderHint": lambda: painter.setRenderHint(QPainter.RenderHint.Antialiasing, True),
    }
    lost = {}
    try:
        for name, call in calls.items():
            before = sys.getrefcount(None)
            for _ in range(200):
                call()
            lost[name] = before - sys.getrefcount(None)
    finally:
        painter.end()
    assert all(count < 100 for count in lost.values()), f"references to None lost per 200 calls: {lost}"
