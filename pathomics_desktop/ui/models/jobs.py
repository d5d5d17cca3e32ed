"""Qt item model over the jobs panel rows (:mod:`pathomics_desktop.jobs.listing`) and a
progress-bar delegate for the progress column."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionProgressBar

from pathomics_desktop.jobs.listing import estimate_remaining, format_duration
from pathomics_desktop.ui.models.base import RowTableModel

STATUS_COLOURS = {"queued": "#e7f1ff", "running": "#fff3cd", "done": "#d1e7dd", "failed": "#f8d7da",
                  "cancelled": "#e2e3e5"}
JOB_ID_ROLE = Qt.UserRole + 1
PROGRESS_COLUMN = 3


def params_text(params: dict[str, Any]) -> str:
    """``key=value`` pairs of a job's parameters, short."""
    parts = []
    for key, value in sorted(params.items()):
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value) if len(value) <= 6 else f"{len(value)} items"
        elif isinstance(value, dict):
            value = "{...}"
        parts.append(f"{key}={value}")
    return " ".join(parts)


class JobTableModel(RowTableModel):
    """Columns: job, type, status, progress, time remaining, elapsed, parameters, message."""

    COLUMNS = ("Job", "Type", "Status", "Progress", "Remaining", "Elapsed", "Parameters", "Message")

    def __init__(self, parent=None):
        super().__init__(parent)
        #: live progress of jobs run by this GUI (fraction, message), newer than the table's
        self.live: dict[int, tuple[float, str]] = {}

    def set_rows(self, rows: list) -> None:
        """Replace the rows; keeps the views' selection when the job ids did not change."""
        if [r.job_id for r in rows] == [r.job_id for r in self.rows]:
            self.rows = list(rows)
            if rows:
                self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(self.COLUMNS) - 1))
            return
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def set_live(self, job_id: int, fraction: float, message: str) -> None:
        self.live[job_id] = (fraction, message)
        for i, r in enumerate(self.rows):
            if r.job_id == job_id:
                self.dataChanged.emit(self.index(i, PROGRESS_COLUMN), self.index(i, len(self.COLUMNS) - 1))

    def row_of(self, job_id: int) -> int | None:
        return next((i for i, r in enumerate(self.rows) if r.job_id == job_id), None)

    def progress_of(self, r) -> tuple[float, str]:
        """(fraction, message): the live value of a running job of this GUI, else the table's."""
        if r.status == "running" and r.job_id in self.live:
            fraction, message = self.live[r.job_id]
            if fraction >= r.progress:
                return fraction, message
        return r.progress, r.message

    def display(self, r, column: int) -> str:
        fraction, message = self.progress_of(r)
        status = r.status + (" (cancel requested)" if r.cancel_requested and r.status == "running" else "")
        remaining = estimate_remaining(r.elapsed_s, fraction) if r.status == "running" else None
        return [str(r.job_id), r.type, status, f"{fraction:.0%}", format_duration(remaining),
                format_duration(r.elapsed_s), params_text(r.params), r.error or message][column]

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        r, c = self.rows[index.row()], index.column()
        if role == Qt.DisplayRole:
            return self.display(r, c)
        if role == Qt.UserRole:  # progress bar value / sort key
            if c == PROGRESS_COLUMN:
                return self.progress_of(r)[0]
            return [r.job_id, r.type, r.status, None, r.remaining_s or -1.0, r.elapsed_s or -1.0, "", ""][c]
        if role == Qt.BackgroundRole and c == 2:
            return QBrush(QColor(STATUS_COLOURS.get(r.status, "#ffffff")))
        if role == Qt.ForegroundRole and c == 2:
            return QBrush(QColor("#212529"))
        if role == Qt.ForegroundRole and c == 7 and r.error:
            return QBrush(QColor("#b02a37"))
        if role == Qt.ToolTipRole and c == 4 and r.status == "running":
            return "estimated as elapsed x (1 - progress) / progress"
        if role == JOB_ID_ROLE:
            return r.job_id
        return None

    def shown_rows(self) -> list[dict[str, Any]]:
        return [{c.lower().replace(" ", "_"): self.display(r, i) for i, c in enumerate(self.COLUMNS)}
                for r in self.rows]


class ProgressBarDelegate(QStyledItemDelegate):
    """Draws the ``Qt.UserRole`` fraction (0..1) of a cell as a progress bar."""

    def paint(self, painter, option, index):
        fraction = index.data(Qt.UserRole)
        if fraction is None:
            return super().paint(painter, option, index)
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawPrimitive(QStyle.PE_PanelItemViewItem, option, painter, option.widget)  # selection background
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(3, 4, -3, -4)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(round(float(fraction) * 1000))
        bar.text = f"{float(fraction):.0%}"
        bar.textVisible = True
        bar.state = QStyle.State_Enabled | QStyle.State_Horizontal
        bar.palette = option.palette
        style.drawControl(QStyle.CE_ProgressBar, bar, painter, option.widget)
