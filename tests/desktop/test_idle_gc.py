"""Full garbage collections wait for an idle moment (desktop/idle_gc.py, issue 16)."""

from __future__ import annotations

import gc

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent


def test_the_oldest_generation_is_collected_when_the_user_is_idle_not_while_painting(qapp, qtbot):
    from desktop.idle_gc import OLDEST_NEVER, IdleCollector

    before = gc.get_threshold()
    collector = IdleCollector(qapp, idle_seconds=0.3, every_seconds=0.0, check_ms=20)
    try:
        assert gc.get_threshold() == (before[0], before[1], OLDEST_NEVER)
        move = QMouseEvent(QEvent.Type.MouseMove, QPointF(1, 1), QPointF(1, 1), Qt.MouseButton.NoButton,
                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        for _ in range(10):  # painting: input every 50 ms
            qapp.sendEvent(qapp, move)
            qtbot.wait(50)
        assert collector.collections == 0
        qtbot.waitUntil(lambda: collector.collections >= 1, timeout=3000)
    finally:
        collector.remove()
    assert gc.get_threshold() == before
