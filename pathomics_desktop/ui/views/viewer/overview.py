"""The overview map: the whole slide from the coarsest pyramid level (the tiles the loader
keeps for good), with the main view's rectangle; a click or drag moves the view there.

The slide picture is composed once into an image (again only when the widget's size, the
slide or the number of coarsest tiles cached changes); a move of the main view only
redraws the rectangle."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class OverviewMap(QWidget):
    #: level-0 point to centre the main view on
    move_requested = Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.view = None
        self.setMinimumSize(200, 160)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(200)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip("Overview: click or drag to move the view")
        self._picture: QImage | None = None
        self._picture_key = None

    def set_view(self, view) -> None:
        """Follow ``view`` (a :class:`SlideGraphicsView`)."""
        self.view = view
        view.viewport_changed.connect(self.update)
        self.update()

    def _frame(self) -> tuple[QRectF, float] | None:
        """Where the slide is drawn in this widget and its scale (widget px per level-0 px)."""
        if self.view is None or self.view.grid is None:
            return None
        w, h = self.view.grid.size
        k = min((self.width() - 8) / w, (self.height() - 8) / h)
        rect = QRectF((self.width() - w * k) / 2, (self.height() - h * k) / 2, w * k, h * k)
        return rect, k

    def viewport_box(self) -> QRectF | None:
        """The main view's rectangle in widget coordinates."""
        frame = self._frame()
        if frame is None:
            return None
        rect, k = frame
        x0, y0, x1, y1 = self.view.visible_rect()
        return QRectF(rect.left() + x0 * k, rect.top() + y0 * k, (x1 - x0) * k, (y1 - y0) * k)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(236, 236, 236))
        frame = self._frame()
        if frame is None:
            p.end()
            return
        rect, k = frame
        p.drawImage(rect.topLeft(), self.picture(rect, k))
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(rect)
        box = self.viewport_box().intersected(rect.adjusted(-2, -2, 2, 2))
        if box.width() < 3 or box.height() < 3:  # zoomed far in: keep the box findable
            c = box.center()
            box = QRectF(c.x() - 3, c.y() - 3, 6, 6)
        p.setPen(QPen(QColor(220, 0, 0), 2))
        p.drawRect(box)
        p.end()

    def picture(self, rect: QRectF, k: float) -> QImage:
        """The slide from the coarsest level's cached tiles, ``k`` widget px per level-0 px,
        as big as ``rect`` (white where no tile is cached yet)."""
        grid, loader = self.view.grid, self.view.loader
        top = grid.levels - 1
        key = (rect.width(), rect.height(), getattr(loader, "serial", None),
               loader.cached_count(top) if loader is not None else 0)
        if self._picture is not None and self._picture_key == key:
            return self._picture
        img = QImage(max(1, int(round(rect.width()))), max(1, int(round(rect.height()))), QImage.Format.Format_RGB32)
        img.fill(Qt.GlobalColor.white)
        p = QPainter(img)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        for c, r in grid.tiles_in_rect(top, 0, 0, *grid.size):
            entry = loader.any_entry(top, c, r) if loader is not None else None
            if entry is None:
                continue
            x0, y0, x1, y1 = grid.tile_bounds(top, c, r)
            p.drawImage(QRectF(x0 * k, y0 * k, (x1 - x0) * k, (y1 - y0) * k), entry[1])
        p.end()
        self._picture, self._picture_key = img, key
        return img

    def _move_to(self, pos) -> None:
        frame = self._frame()
        if frame is None:
            return
        rect, k = frame
        self.move_requested.emit((pos.x() - rect.left()) / k, (pos.y() - rect.top()) / k)

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.button() == Qt.MouseButton.LeftButton:
            self._move_to(event.position())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._move_to(event.position())
