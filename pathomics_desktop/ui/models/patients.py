"""Table model of the patient list: plain rows (dicts), the chosen columns, and the rows that
pass the filters, in the chosen order.

One model over the data, no widget per cell: ``data()`` formats a value only when the view
asks for a visible cell, so 10,000 patients scroll as fast as 100. Filtering and sorting are
the Qt-free rules of :mod:`pathomics_desktop.registry.patient_list`, applied to row indices.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt

from pathomics_desktop.registry.patient_list import (
    DEFAULT_COLUMNS,
    PatientFilter,
    column_label,
    filter_rows,
    sort_rows,
)

EVENT_COLUMNS = {"os_event", "rfs_event", "included", "synthetic"}
#: the role carrying the raw value of a cell (sorting, tests)
RAW_ROLE = Qt.UserRole


def display_text(key: str, value: Any) -> str:
    """How a cell shows a value: months with one decimal, events and flags as yes/no,
    ISO dates, numbers without trailing zeros."""
    if value is None:
        return ""
    if key in EVENT_COLUMNS or isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_months") and isinstance(value, (int, float)):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


class PatientTableModel(QAbstractTableModel):
    """Rows of :func:`~pathomics_desktop.registry.patient_list.load_patient_rows`."""

    def __init__(self, rows: list[dict[str, Any]] | None = None, columns: Sequence[str] | None = None,
                 codebook=None):
        super().__init__()
        self._rows: list[dict[str, Any]] = rows or []
        self._columns: list[str] = list(columns or DEFAULT_COLUMNS)
        self._codebook = codebook
        self._filter = PatientFilter()
        self._sort: tuple[str, bool] | None = None
        self._order: list[int] = list(range(len(self._rows)))

    # -- data ----------------------------------------------------------------------------
    def set_rows(self, rows: list[dict[str, Any]], codebook=None) -> None:
        self.beginResetModel()
        self._rows = rows
        if codebook is not None:
            self._codebook = codebook
        self._order = self._compute_order()
        self.endResetModel()

    def set_columns(self, columns: Sequence[str]) -> None:
        self.beginResetModel()
        self._columns = list(columns)
        self._order = self._compute_order()  # the search looks at the shown columns
        self.endResetModel()

    def set_filter(self, flt: PatientFilter) -> None:
        self.beginResetModel()
        self._filter = flt
        self._order = self._compute_order()
        self.endResetModel()

    def _compute_order(self) -> list[int]:
        indices = filter_rows(self._rows, self._filter, self._columns)
        if self._sort is not None and self._sort[0] in self._columns:
            indices = sort_rows(self._rows, indices, self._sort[0], descending=self._sort[1])
        return indices

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def filter(self) -> PatientFilter:
        return self._filter

    @property
    def total(self) -> int:
        return len(self._rows)

    def row(self, row: int) -> dict[str, Any]:
        return self._rows[self._order[row]]

    def study_id(self, row: int) -> str:
        return self.row(row)["study_id"]

    def row_of(self, study_id: str) -> int:
        for pos, index in enumerate(self._order):
            if self._rows[index].get("study_id") == study_id:
                return pos
        return -1

    # -- Qt API --------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._columns)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if orientation == Qt.Horizontal and 0 <= section < len(self._columns):
            key = self._columns[section]
            if role == Qt.DisplayRole:
                return column_label(key, self._codebook)
            if role == Qt.ToolTipRole:
                return key
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        key = self._columns[index.column()]
        value = self._rows[self._order[index.row()]].get(key)
        if role == Qt.DisplayRole:
            return display_text(key, value)
        if role == Qt.TextAlignmentRole and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and key not in EVENT_COLUMNS:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == RAW_ROLE:
            return value.isoformat() if isinstance(value, dt.date) else value
        return None

    def sort(self, column: int, order=Qt.AscendingOrder) -> None:
        if not 0 <= column < len(self._columns):
            return
        self.layoutAboutToBeChanged.emit()
        self._sort = (self._columns[column], order == Qt.DescendingOrder)
        self._order = self._compute_order()
        self.layoutChanged.emit()
