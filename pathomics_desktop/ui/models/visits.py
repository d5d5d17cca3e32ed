"""Table model of a patient's follow-up: the summary record (edited in the form's follow-up
section) and the visits (added, edited and deleted from the visits table)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from pathomics_desktop.ui.models.base import RowTableModel
from pathomics_desktop.ui.models.patients import display_text

COLUMNS = [("visit_date", "Date"), ("vital_status", "Status"), ("recurrence", "Recurrence"),
           ("recurrence_date", "Recurred on"), ("death_date", "Died on"), ("source", "Record")]
SOURCE_LABELS = {"summary": "summary", "visit": "visit"}


class VisitTableModel(RowTableModel):
    """Rows: :func:`pathomics_desktop.registry.service.visit_values` dicts, newest first."""

    COLUMNS = tuple(COLUMNS)

    def set_visits(self, visits: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self.rows = sorted(visits, key=lambda v: (v.get("visit_date") is None, v.get("visit_date")),
                           reverse=True)
        self.endResetModel()

    def visit(self, row: int) -> dict[str, Any]:
        return self.rows[row]

    def row_of(self, visit_date) -> int:
        for row, v in enumerate(self.rows):
            if v.get("source") == "visit" and v.get("visit_date") == visit_date:
                return row
        return -1

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        visit = self.rows[index.row()]
        key = self.column_key(index.column())
        if role == Qt.DisplayRole:
            if key == "source":
                return SOURCE_LABELS.get(visit.get("source"), visit.get("source"))
            return display_text(key, visit.get(key))
        if role == Qt.ForegroundRole and visit.get("source") == "summary":
            return QColor("#6b7280")
        if role == Qt.ToolTipRole and visit.get("source") == "summary":
            return "The follow-up summary: edit it in the form's Follow-up section"
        return None
