"""The slide canvas: a QGraphicsView whose scene coordinates are level-0 pixels.

The slide itself is painted in :meth:`SlideGraphicsView.drawBackground` from the tile
cache: for the current downsample ``s`` the level is :func:`~pathomics_desktop.slides.viewport.choose_level`
(largest ``d_L <= s``); a tile of that level that is not cached yet is covered by the
cached tiles of the nearest coarser level, stretched, so the view is never blank (the
coarsest level is loaded first and never evicted). Those coarser tiles are drawn first, each
once (clipped to the missing tiles it stands in for), then the tiles of the right level on
top. While the view moves or fills in (a zoom or pan less than :data:`SETTLE_MS` ago, or
tiles it wants still loading) tiles are drawn with nearest-neighbour scaling, cheaper than
bilinear; once it has been still for :data:`SETTLE_MS` and every wanted tile is in, it is
painted once more with smooth (bilinear) scaling. Tiles arriving from the loader come in
batches and cause at most one repaint per :data:`REPAINT_MS`. Every paint is logged in
:attr:`SlideGraphicsView.paint_log` (what ``pathomics bench viewer`` attributes stalls to).

Overlays (ROI, tile grid, heatmaps, selection) are ordinary graphics items above it. The
scale bar is drawn in screen coordinates in :meth:`drawForeground`.
"""

from __future__ import annotations

import math
import time
from collections import deque

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
#: a view still for this long (ms) after its last move is repainted with smooth scaling
SETTLE_MS = 120


def _empty_paint() -> dict:
    return {"level": None, "visible": [], "drawn": [], "fallback": 0, "complete": False, "time": 0.0,
            "smooth": True}


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
        self._settle_timer = QTimer(self)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._settle_timer.timeout.connect(self._settled)
        #: a move less than SETTLE_MS ago or wanted tiles loading: paint with fast
        #: (nearest-neighbour) scaling
        self.moving = False
        self._moved_at = 0.0  # perf_counter() of the last move
        self._in_set_view = False
        self._press = None
        self._fitted = False
        #: facts about the last paint: level, visible tiles, drawn at the right level,
        #: missing ones covered by a coarser level, smooth scaling or not, time
        self.last_paint: dict = _empty_paint()
        #: every paint of the viewport: (start, end, thread CPU seconds, smooth, level,
        #: visible tiles, drawn at that level, missing ones covered, coarser tiles drawn)
        self.paint_log: deque[tuple] = deque(maxlen=20000)

    # -- slide -----------------------------------------------------------------------
    def set_loader(self, loader, mpp: float | None) -> None:
        """Show the slide of ``loader`` (a :class:`TileLoader`); ``mpp`` in um/px (or None)."""
        self.loader, self.grid, self.mpp = loader, loader.grid, mpp
        w, h = self.grid.size
        # room around the slide so that any point can be centred at any zoom
        self.scene().setSceneRect(QRectF(-4.0 * w, -4.0 * h, 9.0 * w, 9.0 * h))
        loader.tiles_ready.connect(self._tiles_arrived)
        self._fitted = False
        self.fit()

    def clear_slide(self) -> None:
        self.loader, self.grid = None, None
        self.last_paint = _empty_paint()
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

    def visible_tiles(self, level: int | None = None, *, nearest_first: bool = True) -> list[tuple[int, int, int, int]]:
        """Keys (level, col, row, scale) of the tiles of ``level`` (default: the target
        level) that overlap the viewport, nearest to its centre first (else row-major)."""
        if self.grid is None:
            return []
        level = self.target_level() if level is None else level
        scale = self.target_scale(level)
        x0, y0, x1, y1 = self.visible_rect()
        tiles = self.grid.tiles_by_distance if nearest_first else self.grid.tiles_in_rect
        return [(level, c, r, scale) for c, r in tiles(level, x0, y0, x1, y1)]

    def set_view(self, center: tuple[float, float], downsample: float) -> None:
        """Show level-0 point ``center`` in the middle at ``downsample`` (the centre is kept
        on the slide, so the slide never leaves the view)."""
        ds = max(MIN_DOWNSAMPLE, min(self.max_downsample(), float(downsample)))
        if self.grid is not None:
            w, h = self.grid.size
            center = (min(max(center[0], 0.0), float(w)), min(max(center[1], 0.0), float(h)))
        self._in_set_view = True  # the scrolls below are one move: one request, below
        try:
            self.setTransform(QTransform.fromScale(1.0 / ds, 1.0 / ds))
            self.centerOn(QPointF(*center))
        finally:
            self._in_set_view = False
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
        """The view moved: paint fast until it settles; request the tiles it needs now."""
        self.moving = True
        self._moved_at = time.perf_counter()
        self._settle_timer.start(SETTLE_MS)
        if self.loader is not None:
            wanted = self.visible_tiles()
            top = self.grid.levels - 1
            first = [(top, c, r, 1) for c, r in self.grid.tiles_in_rect(top, 0, 0, *self.grid.size)]
            self.loader.request(first + wanted)
        self.viewport().update()
        self.viewport_changed.emit()

    def _settled(self) -> None:
        """No move for ``SETTLE_MS`` and no wanted tile loading: repaint with smooth
        scaling if the last paint was fast (else wait for the last tile)."""
        if not self.moving:
            return
        still_ms = (time.perf_counter() - self._moved_at) * 1000.0
        if still_ms < SETTLE_MS:  # a timer may fire a little early: wait for the rest
            if not self._settle_timer.isActive():
                self._settle_timer.start(max(1, int(math.ceil(SETTLE_MS - still_ms))))
            return
        if self.loader is not None and self.loader.pending() > 0:
            return
        self.moving = False
        if not self.last_paint.get("smooth", True):
            self.viewport().update()

    def _tiles_arrived(self, keys: list) -> None:
        """A batch of tiles arrived: repaint when the last wanted tile has come, else at most
        every ``REPAINT_MS`` (one paint per arriving tile would cost more than the reads);
        tiles wanted by an earlier view only (stale reads) cause no repaint."""
        loader = self.loader
        if loader is None:
            return
        done = loader.pending() == 0
        if done:
            self._settled()  # the last tile of a still view: its paint is the smooth one
        wanted = loader.wanted
        if not any(key[:3] in wanted for key in keys):
            return
        if done:
            self._repaint_timer.stop()
            self.viewport().update()
        elif not self._repaint_timer.isActive():
            self._repaint_timer.start()

    def is_complete(self) -> bool:
        """Whether the last paint drew every visible tile at the right level for the
        current view (what ``pathomics bench viewer`` waits for)."""
        lp = self.last_paint
        return bool(lp["complete"]) and lp.get("rect") == self.visible_rect() and lp["level"] == self.target_level()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        t0, c0 = time.perf_counter(), time.thread_time()
        super().paintEvent(event)
        lp = self.last_paint
        self.paint_log.append((t0, time.perf_counter(), time.thread_time() - c0, bool(lp.get("smooth")), lp["level"],
                               len(lp["visible"]), len(lp["drawn"]), lp["fallback"], lp.get("covers", 0)))

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 (Qt API)
        """The slide's tiles of the target level over the ``rect`` exposed; missing ones
        covered by coarser tiles drawn first (see the module docstring)."""
        painter.fillRect(rect, BACKGROUND)
        if self.grid is None or self.loader is None:
            return
        grid, loader = self.grid, self.loader
        w, h = grid.size
        painter.fillRect(QRectF(0, 0, w, h).intersected(rect), Qt.GlobalColor.white)
        level = self.target_level()
        visible = self.visible_tiles(level, nearest_first=False)
        smooth = not self.moving
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        present, missing = [], []
        for key in visible:
            entry = loader.entry(key)
            if entry is None and loader.synchronous:
                loader.read_now(key)
                entry = loader.entry(key)
            if entry is None:
                missing.append(key)
            else:
                present.append((key, entry))
        fallback = covers = 0
        if missing:
            under: dict[tuple[int, int, int], list] = {}
            for key in missing:
                fallback += self._cover(level, grid.tile_bounds(*key[:3]), under)
            for (coarse, c, r), (entry, x0, y0, x1, y1) in sorted(under.items(), key=lambda kv: -kv[0][0]):
                cb = grid.tile_bounds(coarse, c, r)
                part = (max(x0, cb[0], rect.left()), max(y0, cb[1], rect.top()),
                        min(x1, cb[2], rect.right()), min(y1, cb[3], rect.bottom()))
                if part[2] > part[0] and part[3] > part[1]:
                    self._draw_tile(painter, coarse, entry, cb, part)
                    covers += 1
        # the tiles of the level, whole (inlined tile_bounds / _draw_tile: this loop runs
        # for up to ~300 tiles per paint)
        d, t = grid.downsamples[level], grid.tile_size
        lw, lh = grid.level_dimensions[level]
        draw = painter.drawImage
        for (_level, c, r, _scale), (scale, img) in present:
            x, y = c * t, r * t
            tw, th = min(t, lw - x), min(t, lh - y)
            draw(QRectF(x * d, y * d, tw * d, th * d), img, QRectF(0.0, 0.0, tw / scale, th / scale))
        drawn = [key for key, _entry in present]
        self.last_paint = {"level": level, "visible": visible, "drawn": drawn, "fallback": fallback,
                           "covers": covers, "complete": not missing, "time": time.perf_counter(), "smooth": smooth,
                           "rect": self.visible_rect()}

    def _cover(self, level: int, bounds: tuple[float, float, float, float], under: dict) -> int:
        """Find cover for a missing tile (level-0 ``bounds``): a coarser decode of itself or
        the cached tiles of the nearest coarser level that has them all; add them to
        ``under`` ((level, col, row) -> [entry, x0, y0, x1, y1 of the missing area they
        cover]); 1 if covered, else 0 (the white slide shows)."""
        grid, loader = self.grid, self.loader
        x0, y0, x1, y1 = bounds
        eps = 1e-6 * (x1 - x0)
        for coarse in range(level, grid.levels):
            keys = grid.tiles_in_rect(coarse, x0 + eps, y0 + eps, x1 - eps, y1 - eps)
            entries = [loader.any_entry(coarse, c, r) for c, r in keys]
            if not keys or any(e is None for e in entries):
                continue
            for (c, r), entry in zip(keys, entries):
                have = under.get((coarse, c, r))
                if have is None:
                    under[(coarse, c, r)] = [entry, x0, y0, x1, y1]
                else:
                    have[1], have[2] = min(have[1], x0), min(have[2], y0)
                    have[3], have[4] = max(have[3], x1), max(have[4], y1)
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
        if not self._in_set_view:
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
