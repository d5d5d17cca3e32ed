"""Table model of the codebook (built-in and user-defined variables), over the plain rows of
:func:`pathomics_desktop.cohort.study_overview.variable_row`."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QFont

COLUMNS = (("name", "Name"), ("label", "Label"), ("type", "Type"), ("unit", "Unit"),
           ("codes", "Codes (accepted labels)"), ("limits", "Hard limits"), ("soft_limits", "Soft limits"),
           ("required", "Required"), ("identifier", "Identifier"), ("origin", "Origin"))


class CodebookModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self._bold = QFont()
        self._bold.setBold(True)

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802 (Qt API)
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return COLUMNS[section][1]
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        key = COLUMNS[index.column()][0]
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
