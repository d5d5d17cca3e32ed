"""Table model of the codebook (built-in and user-defined variables), over the plain rows of
:func:`pathomics_desktop.cohort.study_overview.variable_row`."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont

from pathomics_desktop.ui.models.base import RowTableModel

COLUMNS = (("name", "Name"), ("label", "Label"), ("type", "Type"), ("unit", "Unit"),
           ("codes", "Codes (accepted labels)"), ("limits", "Hard limits"), ("soft_limits", "Soft limits"),
           ("required", "Required"), ("identifier", "Identifier"), ("origin", "Origin"))


class CodebookModel(RowTableModel):
    COLUMNS = COLUMNS

    def __init__(self, parent=None):
        super().__init__(parent)
        self._bold = QFont()
        self._bold.setBold(True)

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        key = self.column_key(index.column())
        value = row[key]
        if role in (Qt.DisplayRole, Qt.ToolTipRole):
            if isinstance(value, bool):
                return "yes" if value else ""
            return "" if value is None else str(value)
        if role == Qt.UserRole:
            return value
        if role == Qt.FontRole and row["origin"] == "user-defined":
            return self._bold
        return None
