"""Light and dark palettes on Qt's Fusion style (the same look on every platform).

The light palette is Fusion's own; the dark one keeps text contrast at or above WCAG AA
(about 4.5:1) for body text on its window and base colours. The SYNTHETIC banner keeps its
amber colours in both, so it reads the same.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

BANNER_STYLE = ("QLabel#banner { background: #fff3cd; color: #664d03; padding: 6px;"
                " font-weight: bold; border: 1px solid #e0c36a; }")


def dark_palette() -> QPalette:
    p = QPalette()
    window, base, text = QColor(45, 45, 48), QColor(30, 30, 32), QColor(230, 230, 230)
    disabled = QColor(140, 140, 140)
    for role, color in (
        (QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
        (QPalette.AlternateBase, QColor(40, 40, 44)), (QPalette.ToolTipBase, QColor(60, 60, 64)),
        (QPalette.ToolTipText, text), (QPalette.Text, text), (QPalette.Button, QColor(55, 55, 60)),
        (QPalette.ButtonText, text), (QPalette.BrightText, QColor(255, 90, 90)),
        (QPalette.Link, QColor(110, 170, 255)), (QPalette.Highlight, QColor(42, 110, 200)),
        (QPalette.HighlightedText, QColor(255, 255, 255)), (QPalette.PlaceholderText, QColor(150, 150, 150)),
        (QPalette.Light, QColor(75, 75, 80)), (QPalette.Midlight, QColor(62, 62, 66)),
        (QPalette.Mid, QColor(50, 50, 54)), (QPalette.Dark, QColor(25, 25, 27)),
        (QPalette.Shadow, QColor(10, 10, 10)),
    ):
        p.setColor(role, color)
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, disabled)
    return p


def apply_theme(dark: bool, app: QApplication | None = None) -> None:
    """Fusion style with the light or the dark palette."""
    app = app or QApplication.instance()
    if app is None:
        return
    if app.style().name().lower() != "fusion":
        app.setStyle(QStyleFactory.create("Fusion"))
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    app.setProperty("pathomics_dark", bool(dark))


def is_dark(app: QApplication | None = None) -> bool:
    app = app or QApplication.instance()
    return bool(app is not None and app.property("pathomics_dark"))
