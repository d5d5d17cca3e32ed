"""The Qt binding keeps Python's reference counts: PySide6 6.12.0 took one reference from
``None`` on every call that returns nothing, and Python 3.11 (where ``None`` is not immortal)
then aborts with "none_dealloc" after a few thousand paints. The pin in constraints.txt
excludes it; this test fails on such a binding."""

from __future__ import annotations

import sys

from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QWidget


def test_void_calls_keep_the_reference_count_of_none(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    target = QImage(64, 64, QImage.Format.Format_RGB32)
    tile = QImage(16, 16, QImage.Format.Format_RGB888)
    tile.fill(QColor(10, 20, 30))
    painter = QPainter(target)
    before = sys.getrefcount(None)
    for _ in range(200):
        painter.drawImage(QRectF(0, 0, 32, 32), tile)
        painter.save()
        painter.restore()
        widget.update()
    after = sys.getrefcount(None)
    painter.end()
    assert after - before > -50  # a leak of references is harmless; 800 lost ones crash Python
