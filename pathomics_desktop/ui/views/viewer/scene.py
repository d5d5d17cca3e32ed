"""The slide canvas: a QGraphicsView whose scene coordinates are level-0 pixels.

The slide itself is painted in :meth:`SlideGraphicsView.drawBackground` from the tile
cache: for the current downsample ``s`` the level is :func:`~pathomics_desktop.slides.viewport.choose_level`
(largest ``d_L <= s``); a tile of that level that is not cached yet is covered by the
cached tiles of the nearest coarser level, stretched, so the view is never blank (the
coarsest level is loaded first and never evicted). Overlays (ROI, tile grid, heatmaps,
selection) are ordinary graphics items above it. The scale bar is drawn in screen
coordinates in :meth:`drawForeground`.
"""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QTransform
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView

from pathomics_desktop.slides.viewport import (
    choose_level,
    decode_scale,
    fit_downsample,
    format_length,
    scale_bar,
    zoom_about,
)

#: screen pixels a press may move and still count as a click (not a pan)
CLICK_SLOP = 4
#: one wheel notch (120 units) zooms by this factor
WHEEL_STEP = 2 ** 0.5
#: the most a view may zoom in: 4 screen pixels per level-0 pixel
MIN_DOWNSAMPLE = 0.25
BACKGROUND = QColor(236, 236, 236)
#: while tiles keep arriving, repaint at most this often (ms)
REPAINT_MS = 30


class SlideGraphicsView(QGraphicsView):
    """Tiles from the right level, navigation, and what a test or benchmark needs to know
    about the last paint (:attr:`last_paint`)."""

    viewport_changed = Signal()
    cursor_moved = Signal(float, float)   # level-0 x, y under the mouse
    clicked = Signal(float, float)        # level-0 x, y of a click (not a drag)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.setMouseTracking(True)
        self.setMinimumSize(200, 200)
        self.loader = None
        self.grid = None
        self.mpp: float | None = None
        self._repaint_timer = QTimer(self)
        self._repaint_timer.setSingleShot(True)
        self._repaint_timer.setInterval(REPAINT_MS)
        self._repaint_timer.timeout.connect(self.viewport().update)
        self._press = None
        self._fitted = False
        #: facts about the last paint: level, visible tiles, drawn at the right level, time
        self.last_paint: dict = {"level": None, "visible": [], "drawn": [], "fallback": 0, "complete": False,
                                 "time": 0.0}

    # -- slide -----------------------------------------------------------------------
    def set_loader(self, loader, mpp: float | None) -> None:
        """Show the slide of ``loader`` (a :class:`TileLoader`); ``mpp`` in um/px (or None)."""
        self.loader, self.grid, self.mpp = loader, loader.grid, mpp
        w, h = self.grid.size
        # room around the slide so that any point can be centred at any zoom
        self.scene().setSceneRect(QRectF(-4.0 * w, -4.0 * h, 9.0 * w, 9.0 * h))
        loader.tile_ready.connect(self._tile_arrived)
        self._fitted = False
        self.fit()

    def clear_slide(self) -> None:
        self.loader, self.grid = None, None
        self.last_paint = {"level": None, "visible": [], "drawn": [], "fallback": 0, "complete": False, "time": 0.0}
        self.viewport().update()

    # -- geometry ----------------------------------------------------------------------
    def downsample(self) -> float:
        """Level-0 pixels per screen pixel."""
        return 1.0 / self.transform().m11()

    def device_downsample(self) -> float:
        """Level-0 pixels per device pixel (what decides the level on high-DPI screens)."""
        return self.downsample() / max(1.0, self.devicePixelRatioF())

    def target_level(self) -> int:
        return choose_level(self.grid.downsamples, self.device_downsample())

    def center(self) -> tuple[float, float]:
        """The level-0 point in the middle of the viewport."""
        x0, y0, x1, y1 = self.visible_rect()
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0

    def scene_point(self, view_pos: QPointF) -> tuple[float, float]:
        """Level-0 coordinates of a (fractional) viewport position."""
        tl = self.mapToScene(0, 0)
        ds = self.downsample()
        return tl.x() + view_pos.x() * ds, tl.y() + view_pos.y() * ds

    def visible_rect(self) -> tuple[float, float, float, float]:
        """The viewport in level-0 coordinates ``(x0, y0, x1, y1)`` (not clipped)."""
        tl = self.mapToScene(0, 0)
        ds = self.downsample()
        return tl.x(), tl.y(), tl.x() + self.viewport().width() * ds, tl.y() + self.viewport().height() * ds

    def target_scale(self, level: int) -> int:
        """JPEG DCT scale of the level's tiles for this view (1 unless the reader can)."""
        scales = getattr(self.loader.reader, "scales", (1,)) if self.loader is not None else (1,)
        return decode_scale(self.grid.downsamples[level], self.device_downsample(), scales)

    def visible_tiles(self, level: int | None = None) -> list[tuple[int, int, int, int]]:
        """Keys (level, col, row, scale) of the tiles of ``level`` (default: the target
        level) that overlap the viewport, nearest to its centre first."""
        if self.grid is None:
            return []
        level = self.target_level() if level is None else level
        scale = self.target_scale(level)
        x0, y0, x1, y1 = self.visible_rect()
        return [(level, c, r, scale) for c, r in self.grid.tiles_by_distance(level, x0, y0, x1, y1)]

    def set_view(self, center: tuple[float, float], downsample: float) -> None:
        """Show level-0 point ``center`` in the middle at ``downsample`` (the centre is kept
        on the slide, so the slide never leaves the view)."""
        ds = max(MIN_DOWNSAMPLE, min(self.max_downsample(), float(downsample)))
        if self.grid is not None:
            w, h = self.grid.size
            center = (min(max(center[0], 0.0), float(w)), min(max(center[1], 0.0), float(h)))
        self.setTransform(QTransform.fromScale(1.0 / ds, 1.0 / ds))
        self.centerOn(QPointF(*center))
        self._fitted = False
        self._changed()

    def max_downsample(self) -> float:
        if self.grid is None:
            return 1.0
        return 4.0 * fit_downsample(self.grid.size, (self.viewport().width(), self.viewport().height()))

    def fit(self) -> None:
        """The whole slide in the view."""
        if self.grid is None:
            return
        w, h = self.grid.size
        self.set_view((w / 2.0, h / 2.0), fit_downsample((w, h), (self.viewport().width(), self.viewport().height())))
        self._fitted = True

    def zoom_at(self, view_pos: QPointF, factor: float) -> None:
        """Zoom by ``factor`` keeping the slide point under ``view_pos`` where it is."""
        anchor = self.scene_point(view_pos)
        center, ds = zoom_about(self.center(), self.downsample(), anchor, factor,
                                (MIN_DOWNSAMPLE, self.max_downsample()))
        self.set_view(center, ds)

    def pan_by(self, dx_screen: float, dy_screen: float) -> None:
        """Move the view by screen pixels (positive: the slide moves left/up)."""
        cx, cy = self.center()
        ds = self.downsample()
        self.set_view((cx + dx_screen * ds, cy + dy_screen * ds), ds)

    # -- tiles ------------------------------------------------------------------------
    def _changed(self) -> None:
        if self.loader is not None:
            wanted = self.visible_tiles()
            top = self.grid.levels - 1
            first = [(top, c, r, 1) for c, r in self.grid.tiles_in_rect(top, 0, 0, *self.grid.size)]
            self.loader.request(first + wanted)
        self.viewport().update()
        self.viewport_changed.emit()

    def _tile_arrived(self, key) -> None:
        """Repaint when the last wanted tile has come, else at most every ``REPAINT_MS``
        (one paint per arriving tile would cost more than the reads)."""
        if self.loader is not None and self.loader.pending() == 0:
            self._repaint_timer.stop()
            self.viewport().update()
        elif not self._repaint_timer.isActive():
            self._repaint_timer.start()

    def is_complete(self) -> bool:
        """Whether the last paint drew every visible tile at the right level for the
        current view (what ``pathomics bench viewer`` waits for)."""
        lp = self.last_paint
        return bool(lp["complete"]) and lp.get("rect") == self.visible_rect() and lp["level"] == self.target_level()

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt API)
        painter.fillRect(rect, BACKGROUND)
        if self.grid is None or self.loader is None:
            return
        w, h = self.grid.size
        painter.fillRect(QRectF(0, 0, w, h).intersected(rect), Qt.GlobalColor.white)
        level = self.target_level()
        visible = self.visible_tiles(level)
        grid, loader = self.grid, self.loader
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        drawn, fallback = [], 0
        for key in visible:
            entry = loader.entry(key)
            if entry is None and loader.synchronous:
                loader.read_now(key)
                entry = loader.entry(key)
            x0, y0, x1, y1 = grid.tile_bounds(*key[:3])
            if entry is not None:
                self._draw_tile(painter, key[0], entry, (x0, y0, x1, y1), (x0, y0, x1, y1))
                drawn.append(key)
                continue
            fallback += self._draw_coarser(painter, level, (x0, y0, x1, y1))
        self.last_paint = {"level": level, "visible": visible, "drawn": drawn, "fallback": fallback,
                           "complete": len(drawn) == len(visible), "time": time.perf_counter(),
                           "rect": self.visible_rect()}

    def _draw_coarser(self, painter: QPainter, level: int, bounds: tuple[float, float, float, float]) -> int:
        """Cover a missing tile with a coarser decode of itself or the cached tiles of the
        nearest coarser level that has them all (stretched); 1 if covered, else 0 (the white
        slide shows)."""
        grid, loader = self.grid, self.loader
        x0, y0, x1, y1 = bounds
        eps = 1e-6 * (x1 - x0)
        for coarse in range(level, grid.levels):
            keys = grid.tiles_in_rect(coarse, x0 + eps, y0 + eps, x1 - eps, y1 - eps)
            entries = [loader.any_entry(coarse, c, r) for c, r in keys]
            if not keys or any(e is None for e in entries):
                continue
            for (c, r), entry in zip(keys, entries):
                cb = grid.tile_bounds(coarse, c, r)
                part = (max(x0, cb[0]), max(y0, cb[1]), min(x1, cb[2]), min(y1, cb[3]))
                if part[2] > part[0] and part[3] > part[1]:
                    self._draw_tile(painter, coarse, entry, cb, part)
            return 1
        return 0

    def _draw_tile(self, painter: QPainter, level: int, entry, bounds, part) -> None:
        """Draw the ``part`` (level-0 x0, y0, x1, y1) of a cached tile whose level-0
        rectangle is ``bounds``; the image holds the tile at 1/scale (image px = level-0 px
        / (d_L scale))."""
        scale, img = entry
        k = self.grid.downsamples[level] * scale
        bx, by = bounds[0], bounds[1]
        x0, y0, x1, y1 = part
        source = QRectF((x0 - bx) / k, (y0 - by) / k, (x1 - x0) / k, (y1 - y0) / k)
        painter.drawImage(QRectF(x0, y0, x1 - x0, y1 - y0), img, source)

    def scale_bar(self) -> tuple[float, float] | None:
        """``(length_um, length_px)`` of the scale bar now shown, None without an MPP."""
        if not self.mpp:
            return None
        return scale_bar(self.mpp, self.downsample())

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt API)
        bar = self.scale_bar() if self.grid is not None else None
        painter.save()
        painter.resetTransform()
        h = self.viewport().height()
        font = QFont(painter.font())
        font.setPointSizeF(9.0)
        painter.setFont(font)
        if bar is None:
            if self.grid is not None:
                painter.setPen(QColor(150, 0, 0))
                painter.drawText(12, h - 14, "no MPP: no scale bar (set an MPP override)")
            painter.restore()
            return
        um, px = bar
        text = format_length(um)
        x, y = 14.0, h - 18.0
        box = QRectF(x - 8, y - 22, max(px, painter.fontMetrics().horizontalAdvance(text)) + 16, 32)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(255, 255, 255, 200))
        painter.drawRoundedRect(box, 4, 4)
        painter.setBrush(QColor(20, 20, 20))
        painter.drawRect(QRectF(x, y, px, 4))
        painter.setPen(QPen(QColor(20, 20, 20)))
        painter.drawText(QPointF(x, y - 6), text)
        painter.restore()

    # -- navigation --------------------------------------------------------------------
    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if self.grid is None:
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_at(event.position(), WHEEL_STEP ** steps)
        event.accept()

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802 (Qt API)
        super().scrollContentsBy(dx, dy)
        self._changed()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        if self.grid is not None and self._fitted:
            self.fit()
        else:
            self._changed()

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position()
            self._fitted = False
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.cursor_moved.emit(*self.scene_point(event.position()))
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt API)
        press, self._press = self._press, None
        super().mouseReleaseEvent(event)
        if press is not None and event.button() == Qt.MouseButton.LeftButton:
            d = event.position() - press
            if math.hypot(d.x(), d.y()) <= CLICK_SLOP:
                self.clicked.emit(*self.scene_point(event.position()))
