"""Qt item model over the slide catalogue rows (:mod:`pathomics_desktop.registry.slide_list`).

Thumbnails are decoded in the worker that loads the rows (:func:`load_slide_rows`, QImage is
safe off the GUI thread) and turned into pixmaps on first paint.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPixmap
from PySide6.QtWidgets import QApplication, QStyle

from pathomics_desktop.ui.models.base import RowTableModel

THUMB_SIZE = 64
#: QC status -> background colour of the status cell
STATUS_COLOURS = {"pending": "#fff3cd", "ok": "#d1e7dd", "excluded": "#e2e3e5", "failed": "#f8d7da"}
SLIDE_ID_ROLE = Qt.UserRole + 1


def load_slide_rows(registry, project, thumb_size: int = THUMB_SIZE) -> dict[str, Any]:
    """Worker function: the catalogue rows and their thumbnails as QImages (by slide id)."""
    from pathomics_desktop.registry.slide_list import slide_rows

    rows = slide_rows(registry, project)
    images = {}
    for row in rows:
        if row.thumbnail:
            image = QImage(row.thumbnail)
            if not image.isNull():
                images[row.slide_id] = image.scaled(thumb_size, thumb_size, Qt.KeepAspectRatio,
                                                    Qt.SmoothTransformation)
    return {"rows": rows, "images": images}


def warning_pixmap(size: int = 16) -> QPixmap:
    """The style's warning icon as a small pixmap (a pixmap decoration keeps its size)."""
    return QApplication.style().standardIcon(QStyle.SP_MessageBoxWarning).pixmap(size, size)


class SlideTableModel(RowTableModel):
    """Columns: thumbnail, patient, scanner, MPP, size, status, tiles (sort role: UserRole)."""

    COLUMNS = ("Thumbnail", "Patient", "Scanner", "MPP (um/px)", "Size (px)", "QC status", "Tiles")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._images: dict[int, QImage] = {}
        self._pixmaps: dict[int, QPixmap] = {}
        #: font of the patient column (a link: double-click opens the patient)
        self.patient_font = None
        self._warning: QPixmap | None = None

    def set_rows(self, rows: list, images: dict[int, QImage] | None = None) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self._images = dict(images or {})
        self._pixmaps = {}
        self.endResetModel()

    def row_at(self, row: int):
        return self.rows[row]

    def pixmap(self, slide_id: int) -> QPixmap | None:
        if slide_id not in self._pixmaps and slide_id in self._images:
            self._pixmaps[slide_id] = QPixmap.fromImage(self._images[slide_id])
        return self._pixmaps.get(slide_id)

    @staticmethod
    def mpp_text(r) -> str:
        if r.mpp_override is not None:
            return f"{r.mpp_override:.3f} (override)"
        if r.mpp is not None:
            return f"{r.mpp:.3f}"
        return "missing" if r.mpp_scanner is None else f"{r.mpp_scanner:.3f} (flagged)"

    def display(self, r, column: int) -> str:
        return ["", r.study_id or "(unassigned)", r.scanner or r.vendor or "", self.mpp_text(r), r.size_text,
                r.qc_status + (f": {r.qc_reason}" if r.qc_reason else ""),
                "not tiled" if r.tile_count is None else str(r.tile_count)][column]

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        r, c = self.rows[index.row()], index.column()
        if role == Qt.DisplayRole:
            return self.display(r, c) if c else None
        if role == Qt.DecorationRole:
            if c == 0:
                return self.pixmap(r.slide_id)
            if c == 3 and r.mpp_warning:
                if self._warning is None:
                    self._warning = warning_pixmap()
                return self._warning
        if role == Qt.ToolTipRole:
            if c == 3:
                return r.mpp_warning or f"{self.mpp_text(r)} um/px from the scanner"
            if c == 0:
                return r.file_name
            if c == 5 and r.qc_reason:
                return r.qc_reason
            if c == 1 and r.study_id:
                return "Double-click to open the patient"
        if role == Qt.FontRole and c == 1 and r.study_id and self.patient_font is not None:
            return self.patient_font
        if role == Qt.ForegroundRole and c == 1 and r.study_id:
            return QBrush(QColor("#0b5ed7"))
        if role == Qt.BackgroundRole and c == 5:
            return QBrush(QColor(STATUS_COLOURS.get(r.qc_status, "#ffffff")))
        if role == Qt.ForegroundRole and c == 5:
            return QBrush(QColor("#212529"))
        if role == Qt.ForegroundRole and c == 6 and r.tile_count is None:
            return QBrush(QColor("#6c757d"))
        if role == Qt.SizeHintRole and c == 0:
            return QSize(THUMB_SIZE + 8, THUMB_SIZE + 4)
        if role == Qt.UserRole:
            return [r.slide_id, r.study_id or "", r.scanner or "", r.mpp if r.mpp is not None else -1.0,
                    (r.width or 0) * (r.height or 0), r.qc_status, r.tile_count if r.tile_count is not None else -1][c]
        if role == SLIDE_ID_ROLE:
            return r.slide_id
        return None

    def shown_rows(self, order: list[int] | None = None) -> list[dict[str, Any]]:
        """The rows as displayed (for ``snapshot``): no file names or paths."""
        indices = order if order is not None else range(len(self.rows))
        out = []
        for i in indices:
            r = self.rows[i]
            out.append({"patient": r.study_id, "scanner": r.scanner, "mpp": r.mpp, "mpp_text": self.mpp_text(r),
                        "mpp_warning": r.mpp_warning, "size": r.size_text, "qc_status": r.qc_status,
                        "qc_reason": r.qc_reason, "tiles": r.tile_count, "thumbnail": r.slide_id in self._images})
        return out
