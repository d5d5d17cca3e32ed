"""Graphics items laid over the slide (scene coordinates = level-0 pixels): the QuPath ROI
with its holes, the tile grid, heatmaps (patch probability, Grad-CAM) and the selected tile,
plus the colour bar widget. Colours come from the Qt-free lookup tables of
:mod:`pathomics_desktop.slides.overlays`."""

from __future__ import annotations

import hashlib

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPainterPath, QPen, QPixmap, QPolygonF, QTransform
from PySide6.QtWidgets import QGraphicsItem, QGraphicsItemGroup, QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsRectItem, QWidget

from pathomics_desktop.slides.overlays import colorize, colormap_lut

#: default ROI colours by QuPath class name (QuPath's own defaults for the common classes)
CLASS_COLORS = {"tumor": (200, 0, 0), "tumour": (200, 0, 0), "stroma": (150, 200, 150), "immune cells": (160, 90, 160),
                "necrosis": (50, 50, 50), "other": (255, 200, 0), "region*": (0, 0, 180), "ignore*": (180, 180, 180)}


def roi_color(roi) -> QColor:
    """The ROI's QuPath colour (``classification.color`` as [r, g, b] or a packed int),
    else the default of its class, else a stable colour from the class name."""
    cls = roi.properties.get("classification") if isinstance(roi.properties, dict) else None
    color = cls.get("color") if isinstance(cls, dict) else None
    if isinstance(color, (list, tuple)) and len(color) >= 3:
        return QColor(int(color[0]), int(color[1]), int(color[2]))
    if isinstance(color, int):
        return QColor((color >> 16) & 255, (color >> 8) & 255, color & 255)
    name = (roi.classification or roi.name or "").lower()
    if name in CLASS_COLORS:
        return QColor(*CLASS_COLORS[name])
    digest = hashlib.sha256(name.encode()).digest()
    return QColor.fromHsv(digest[0] * 360 // 256, 200, 200)


def _ring(coords) -> QPolygonF:
    return QPolygonF([QPointF(float(x), float(y)) for x, y in coords])


def geometry_path(geometry) -> QPainterPath:
    """A QPainterPath of a shapely (Multi)Polygon; holes are sub-paths, and the odd-even
    fill rule leaves them empty."""
    path = QPainterPath()
    path.setFillRule(Qt.FillRule.OddEvenFill)
    polygons = getattr(geometry, "geoms", [geometry])
    for poly in polygons:
        if poly.geom_type != "Polygon":
            continue
        path.addPolygon(_ring(poly.exterior.coords))
        path.closeSubpath()
        for hole in poly.interiors:
            path.addPolygon(_ring(hole.coords))
            path.closeSubpath()
    return path


class RoiLayer(QGraphicsItemGroup):
    """One outlined, lightly filled path per ROI, in its class colour."""

    def __init__(self, rois):
        super().__init__()
        self.rois = list(rois)
        self.items: list[QGraphicsPathItem] = []
        for roi in self.rois:
            color = roi_color(roi)
            item = QGraphicsPathItem(geometry_path(roi.geometry))
            pen = QPen(color, 2.5)
            pen.setCosmetic(True)
            item.setPen(pen)
            fill = QColor(color)
            fill.setAlpha(45)
            item.setBrush(QBrush(fill))
            item.setToolTip(roi.label)
            self.addToGroup(item)
            self.items.append(item)


class TileGridLayer(QGraphicsItem):
    """The tile-index squares (level-0 x, y, side), drawn only where exposed."""

    def __init__(self, x, y, size, color: QColor = QColor(0, 110, 220)):
        super().__init__()
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.size = np.broadcast_to(np.asarray(size, dtype=np.float64), self.x.shape)
        self.color = color
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        if self.x.size:
            self._bounds = QRectF(self.x.min(), self.y.min(), float((self.x + self.size).max() - self.x.min()),
                                  float((self.y + self.size).max() - self.y.min()))
        else:
            self._bounds = QRectF()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt API)
        return self._bounds

    def paint(self, painter: QPainter, option, widget=None) -> None:
        r = option.exposedRect
        sel = ((self.x + self.size >= r.left()) & (self.x <= r.right())
               & (self.y + self.size >= r.top()) & (self.y <= r.bottom()))
        if not sel.any():
            return
        pen = QPen(self.color, 1.0)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRects([QRectF(a, b, s, s) for a, b, s in zip(self.x[sel], self.y[sel], self.size[sel])])


def rgba_to_pixmap(rgba: np.ndarray) -> QPixmap:
    """A QPixmap of an (h, w, 4) uint8 RGBA array (GUI thread)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = rgba.shape[:2]
    img = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    return QPixmap.fromImage(img)


class HeatmapLayer(QGraphicsPixmapItem):
    """A :class:`~pathomics_desktop.slides.overlays.HeatmapGrid` as one pixmap, one pixel per
    tile, scaled to the tiles' level-0 squares (nearest neighbour: crisp tile blocks)."""

    def __init__(self, grid, colormap: str):
        super().__init__()
        self.grid = grid
        self.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self.setTransform(QTransform.fromScale(grid.cell, grid.cell))
        self.setPos(grid.x0, grid.y0)
        self.set_colormap(colormap)

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        self.rgba = colorize(self.grid.values, name)
        self.setPixmap(rgba_to_pixmap(self.rgba))


class CamLayer(QGraphicsItemGroup):
    """Grad-CAM maps of single tiles (:class:`~pathomics_desktop.slides.overlays.CamTile`),
    each stretched over its tile's level-0 square (bilinear)."""

    def __init__(self, cams, colormap: str):
        super().__init__()
        self.cams = list(cams)
        self.items: list[QGraphicsPixmapItem] = []
        for cam in self.cams:
            item = QGraphicsPixmapItem()
            item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
            h, w = cam.cam.shape
            item.setTransform(QTransform.fromScale(cam.size / w, cam.size / h))
            item.setPos(cam.x, cam.y)
            self.addToGroup(item)
            self.items.append(item)
        self.set_colormap(colormap)

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        for cam, item in zip(self.cams, self.items):
            item.setPixmap(rgba_to_pixmap(colorize(np.clip(cam.cam, 0.0, 1.0), name)))


class SelectionLayer(QGraphicsRectItem):
    def __init__(self):
        super().__init__()
        pen = QPen(QColor(255, 214, 0), 3.0)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setBrush(Qt.BrushStyle.NoBrush)
        self.setZValue(100)
        self.setVisible(False)

    def select(self, x: float, y: float, size: float) -> None:
        self.setRect(QRectF(x, y, size, size))
        self.setVisible(True)


class ColorBar(QWidget):
    """A horizontal colour bar of a lookup table from ``low`` (0) to ``high`` (1)."""

    def __init__(self, colormap: str = "viridis", low: str = "0", high: str = "1", parent=None):
        super().__init__(parent)
        self.colormap, self.low, self.high = colormap, low, high
        self.setMinimumHeight(30)
        self.setMaximumHeight(34)

    def set_colormap(self, name: str) -> None:
        self.colormap = name
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        lut = colormap_lut(self.colormap)
        strip = np.ascontiguousarray(np.repeat(lut[None], 1, axis=0))
        img = QImage(strip.data, 256, 1, 3 * 256, QImage.Format.Format_RGB888).copy()
        p = QPainter(self)
        w = self.width() - 2
        bar = QRectF(1, 1, w, 14)
        p.drawImage(bar, img)
        p.setPen(QColor(90, 90, 90))
        p.drawRect(bar)
        fm = p.fontMetrics()
        y = 16 + fm.ascent()
        p.drawText(QPointF(1, y), self.low)
        mid = "0.5"
        p.drawText(QPointF(1 + w / 2 - fm.horizontalAdvance(mid) / 2, y), mid)
        p.drawText(QPointF(1 + w - fm.horizontalAdvance(self.high), y), self.high)
        p.end()
