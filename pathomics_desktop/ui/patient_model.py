"""Table model of the patient list (study id, center, data set, inclusion, endpoints)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

COLUMNS = [
    ("study_id", "Study ID"), ("center", "Center"), ("split", "Data set"), ("included", "Included"),
    ("exclusion_reason", "Exclusion reason"), ("tnm_stage", "AJCC 8th stage"),
    ("os_months", "OS (months)"), ("os_event", "Death"), ("rfs_months", "RFS (months)"),
    ("rfs_event", "Recurrence or death"),
]


class PatientTableModel(QAbstractTableModel):
    def __init__(self, rows: list[dict[str, Any]] | None = None):
        super().__init__()
        self._rows = rows or []

    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return COLUMNS[section][1]
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        key = COLUMNS[index.column()][0]
        value = self._rows[index.row()].get(key)
        if role == Qt.DisplayRole:
            if value is None:
                return ""
            if key == "included":
                return "yes" if value else "no"
            if key in ("os_event", "rfs_event"):
                return "yes" if value else "no"
            if isinstance(value, float):
                return f"{value:.1f}"
            return str(value)
        if role == Qt.TextAlignmentRole and key.endswith("_months"):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == Qt.UserRole:
            return value
        return None
