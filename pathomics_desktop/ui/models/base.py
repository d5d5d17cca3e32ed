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


class DictTableModel(RowTableModel):
    """A read-only table over dict rows with per-instance columns: ``columns`` are keys,
    ``headers`` their titles. Floats are shown with ``digits`` decimals (``Qt.UserRole`` keeps
    the raw value for sorting and for tests); ``None`` is shown as an empty cell."""

    def __init__(self, columns, headers=None, *, digits: int = 3, parent=None):
        super().__init__(parent)
        headers = list(headers) if headers is not None else list(columns)
        self.COLUMNS = tuple(zip(columns, headers))
        self.digits = digits

    def set_rows(self, rows) -> None:
        self.beginResetModel()
        self.rows = [dict(r) for r in rows]
        self.endResetModel()

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        value = self.rows[index.row()].get(self.column_key(index.column()))
        if role == Qt.UserRole:
            return value
        if role == Qt.DisplayRole:
            if value is None:
                return ""
            if isinstance(value, float):
                return f"{value:.{self.digits}f}"
            return str(value)
        if role == Qt.TextAlignmentRole and isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None
