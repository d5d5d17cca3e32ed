"""pyqtgraph set-up shared by the analysis views: a white (or dark) plot with the
colour-blind-safe palette of :mod:`pathomics_desktop.figures.style`."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor

from pathomics_desktop.figures.style import group_colour
from pathomics_desktop.ui.theme import is_dark


def qcolor(hex_colour: str, alpha: int = 255) -> QColor:
    colour = QColor(hex_colour)
    colour.setAlpha(alpha)
    return colour


def plot_widget(*, x_label: str = "", y_label: str = "") -> pg.PlotWidget:
    """A PlotWidget with the theme's background, a light grid and axis labels."""
    dark = is_dark()
    pg.setConfigOptions(antialias=True)
    widget = pg.PlotWidget(background="#1e1e1e" if dark else "w")
    foreground = "#dddddd" if dark else "#222222"
    item = widget.getPlotItem()
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(foreground))
        axis.setTextPen(pg.mkPen(foreground))
    item.showGrid(x=True, y=True, alpha=0.15)
    if x_label:
        item.setLabel("bottom", x_label)
    if y_label:
        item.setLabel("left", y_label)
    item.setMenuEnabled(False)
    return widget


def group_pen(index: int, width: float = 2.0, style=None) -> "pg.QtGui.QPen":
    pen = pg.mkPen(qcolor(group_colour(index)), width=width)
    if style is not None:
        pen.setStyle(style)
    return pen


def group_brush(index: int, alpha: int = 60):
    return pg.mkBrush(qcolor(group_colour(index), alpha))
