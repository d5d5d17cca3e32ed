"""The base of the flat table models: ``self.rows`` (plain row objects) under the headers
``COLUMNS`` (a header string, or a ``(key, header)`` pair)."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt


class RowTableModel(QAbstractTableModel):
    """A flat, read-only table over ``self.rows`` with the headers ``COLUMNS``."""

    COLUMNS: tuple = ()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list = []

    def column_key(self, column: int) -> str:
        entry = self.COLUMNS[column]
        return entry[0] if isinstance(entry, tuple) else entry

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            entry = self.COLUMNS[section]
            return entry[1] if isinstance(entry, tuple) else entry
        return None
