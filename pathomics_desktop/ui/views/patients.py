"""The patient table: every patient with derived endpoints, stage and inclusion; search,
filters (center, data set, inclusion, exclusion reason, any codebook variable), the columns
a user chooses, and a double-click that opens the patient form.

Rows are loaded in a worker (:func:`pathomics_desktop.registry.patient_list.load_patient_rows`);
the table is one model over them (:class:`pathomics_desktop.ui.models.patients.PatientTableModel`).
Identifiers are neither loaded nor offered as columns unless "Show identifiers" is ticked.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QStackedWidget,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.cohort.table import EXCLUSION_REASONS
from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.patient_list import (
    DATA_SETS,
    DEFAULT_COLUMNS,
    NOT_ASSIGNED,
    PatientFilter,
    PatientRows,
    choosable_columns,
    column_label,
    identifier_columns,
    load_patient_rows,
    parse_variable_filter,
)
from pathomics_desktop.ui.models.patients import PatientTableModel
from pathomics_desktop.ui.settings import app_settings, header_restored
from pathomics_desktop.ui.views.base import View

ANY = "(any)"
ROW_HEIGHT = 22
SNAPSHOT_ROWS = 20


COLUMNS_KEY = "views/patients/columns"


def remembered_columns() -> list[str]:
    """The columns the user chose last time (QSettings; identifiers are never remembered)."""
    value = app_settings().value(COLUMNS_KEY)
    if isinstance(value, str):
        value = [value]
    return [str(c) for c in value] if value else []


def remember_columns(columns: list[str]) -> None:
    app_settings().setValue(COLUMNS_KEY, list(columns))


class PatientsView(View):

    #: action -> widgets that do it (greyed out when the role lacks it: ui/permissions.py)
    PERMISSIONS = {"view_identifiers": ("show_identifiers",)}
    view_id = "patients"
    title = "Patients"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.data: PatientRows | None = None
        self.model = PatientTableModel()
        self._visible = remembered_columns() or list(DEFAULT_COLUMNS)
        self._loading = False

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search (study id and shown columns)  Ctrl+F")
        self.search.setClearButtonEnabled(True)
        self.center = QComboBox()
        self.data_set = QComboBox()
        self.data_set.addItems([ANY, *DATA_SETS, NOT_ASSIGNED])
        self.included = QComboBox()
        self.included.addItems([ANY, "included", "excluded"])
        self.reason = QComboBox()
        self.reason.addItems([ANY, *EXCLUSION_REASONS])
        self.variable = QComboBox()
        self.variable.setMinimumContentsLength(14)
        self.value_stack = QStackedWidget()
        self.value_choice = QComboBox()
        self.value_low, self.value_high = QLineEdit(), QLineEdit()
        self.value_low.setPlaceholderText("from")
        self.value_high.setPlaceholderText("to")
        self.value_text = QLineEdit()
        self.value_text.setPlaceholderText("contains")
        range_box = QWidget()
        range_layout = QHBoxLayout(range_box)
        range_layout.setContentsMargins(0, 0, 0, 0)
        range_layout.addWidget(self.value_low)
        range_layout.addWidget(QLabel("–"))
        range_layout.addWidget(self.value_high)
        for w in (QWidget(), self.value_choice, range_box, self.value_text):
            self.value_stack.addWidget(w)
        self.value_stack.setMaximumHeight(self.value_choice.sizeHint().height())
        self.clear_button = QPushButton("Clear filters")
        self.columns_button = QToolButton()
        self.columns_button.setText("Columns")
        self.columns_button.setPopupMode(QToolButton.InstantPopup)
        self.columns_menu = QMenu(self)
        self.columns_button.setMenu(self.columns_menu)
        self.columns_menu.aboutToShow.connect(self._fill_columns_menu)
        self.show_identifiers = QCheckBox("Show identifiers")
        self.show_identifiers.setToolTip("Load and offer names, record numbers and birth dates as columns")
        self.count = QLabel("")
        self.message = QLabel("")
        self.message.setStyleSheet("color: #b00020;")

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.horizontalHeader().setSortIndicator(0, Qt.AscendingOrder)  # Qt's default: descending
        self.table.setSortingEnabled(True)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setWordWrap(False)
        vertical = self.table.verticalHeader()
        vertical.setVisible(False)
        vertical.setSectionResizeMode(QHeaderView.Fixed)   # uniform row heights: no per-row sizing
        vertical.setDefaultSectionSize(ROW_HEIGHT)
        header = self.table.horizontalHeader()
        header.setObjectName("patients_table_header")
        header.setSectionsMovable(True)
        header.setContextMenuPolicy(Qt.CustomContextMenu)
        header.customContextMenuRequested.connect(self._header_menu)
        self.table.doubleClicked.connect(lambda index: self.open_patient(index.row()))

        row1 = QHBoxLayout()
        row1.addWidget(self.search, 3)
        for label, widget in (("Center", self.center), ("Data set", self.data_set),
                              ("Included", self.included), ("Exclusion", self.reason)):
            row1.addWidget(QLabel(label))
            row1.addWidget(widget, 1)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Variable"))
        row2.addWidget(self.variable, 1)
        row2.addWidget(self.value_stack, 2)
        row2.addWidget(self.clear_button)
        row2.addStretch(1)
        row2.addWidget(self.show_identifiers)
        row2.addWidget(self.columns_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addWidget(self.table, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.count)
        bottom.addWidget(self.message, 1)
        layout.addLayout(bottom)

        self._apply_timer = QTimer(self)
        self._apply_timer.setSingleShot(True)
        self._apply_timer.setInterval(150)  # debounce typing
        self._apply_timer.timeout.connect(self.apply_filters)
        for edit in (self.search, self.value_low, self.value_high, self.value_text):
            edit.textChanged.connect(lambda _t: self._apply_timer.start())
        for combo in (self.center, self.data_set, self.included, self.reason, self.value_choice):
            combo.currentIndexChanged.connect(lambda _i: self.apply_filters())
        self.variable.currentIndexChanged.connect(self._variable_chosen)
        self.clear_button.clicked.connect(self.clear_filters)
        self.show_identifiers.toggled.connect(self._identifiers_toggled)

    # -- context and loading -------------------------------------------------------------
    def set_context(self, ctx) -> None:
        if self.ctx is not None:
            try:
                self.ctx.data_changed.disconnect(self._data_changed)
            except (RuntimeError, TypeError):
                pass
        if ctx is None:
            self.data = None
            self.model.set_rows([])
        else:
            ctx.data_changed.connect(self._data_changed)
        super().set_context(ctx)

    def _data_changed(self, what: str) -> None:
        # a hidden view is refreshed by the shell when it is shown again
        if self.isVisible() and what in ("patients", "visits", "variables", "slides", ""):
            self.refresh()

    def refresh(self) -> None:
        if self.ctx is None:
            return
        self._loading = True
        self.count.setText("Loading patients…")
        self.ctx.run(load_patient_rows, self.ctx.registry,
                     include_identifiers=self.show_identifiers.isChecked(),
                     on_done=self._loaded, on_error=self._load_failed, key=f"patients:rows:{id(self)}")

    def _load_failed(self, message: str, _trace: str) -> None:
        self._loading = False
        self.count.setText("")
        self.message.setText(f"Could not load the patients: {message}")

    def _loaded(self, data: PatientRows) -> None:
        self._loading = False
        self.data = data
        self.message.setText("")
        self._fill_filter_choices()
        offered = set(self.offered_columns())
        self._visible = [c for c in self._visible if c in offered] or list(DEFAULT_COLUMNS)
        self.model.set_rows(data.rows, data.codebook)
        self.model.set_columns(self._visible)
        self.apply_filters()
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Widths from the rows in view (Qt measures only those), capped for long texts;
        not when the shell restored the user's own widths."""
        header = self.table.horizontalHeader()
        if header_restored(header):
            return
        self.table.resizeColumnsToContents()
        for section in range(header.count()):
            header.resizeSection(section, min(max(header.sectionSize(section), 70), 260))

    def busy(self) -> bool:
        return self._loading or super().busy()

    # -- filters -------------------------------------------------------------------------
    def _fill_filter_choices(self) -> None:
        book = self.data.codebook
        centers = sorted({r["center"] for r in self.data.rows if r.get("center")})
        _refill(self.center, [ANY, *centers])
        hidden = set() if self.show_identifiers.isChecked() else identifier_columns(book)
        variables = [v for v in book if v.name not in hidden and v.name != "study_id"]
        current = self.variable.currentData()
        self.variable.blockSignals(True)
        self.variable.clear()
        self.variable.addItem("(none)", None)
        for var in variables:
            self.variable.addItem(var.display_label, var.name)
        index = self.variable.findData(current)
        self.variable.setCurrentIndex(max(index, 0))
        self.variable.blockSignals(False)
        self._variable_chosen(apply=False)

    def _variable_chosen(self, _index: int = 0, apply: bool = True) -> None:
        var = self._chosen_variable()
        if var is None:
            self.value_stack.setCurrentIndex(0)
        elif var.type in ("category", "yesno"):
            codes = list(var.codes) if var.type == "category" else ["yes", "no"]
            _refill(self.value_choice, [ANY, *codes])
            self.value_stack.setCurrentIndex(1)
        elif var.type in ("integer", "number", "date"):
            hint = "YYYY-MM-DD" if var.type == "date" else var.unit or "number"
            self.value_low.setPlaceholderText(f"from ({hint})")
            self.value_high.setPlaceholderText(f"to ({hint})")
            self.value_stack.setCurrentIndex(2)
        else:
            self.value_stack.setCurrentIndex(3)
        if apply:
            self.apply_filters()

    def _chosen_variable(self):
        name = self.variable.currentData()
        if name is None or self.data is None or name not in self.data.codebook:
            return None
        return self.data.codebook[name]

    def current_filter(self) -> PatientFilter:
        """The filter the widgets describe (raises UserError for an unreadable value)."""
        def choice(combo: QComboBox) -> str | None:
            text = combo.currentText()
            return None if not text or text == ANY else text

        included = choice(self.included)
        flt = PatientFilter(center=choice(self.center), data_set=choice(self.data_set),
                            included=None if included is None else included == "included",
                            exclusion_reason=choice(self.reason), text=self.search.text().strip())
        var = self._chosen_variable()
        if var is not None:
            condition = parse_variable_filter(
                var, equals=choice(self.value_choice) or "", low=self.value_low.text(),
                high=self.value_high.text(), contains=self.value_text.text())
            if any(x is not None for x in (condition.equals, condition.low, condition.high, condition.contains)):
                flt.variables.append(condition)
        return flt

    def apply_filters(self) -> None:
        try:
            flt = self.current_filter()
        except UserError as exc:
            self.message.setText(str(exc))
            return
        self.message.setText("")
        self.model.set_filter(flt)
        self._update_count()

    def _update_count(self) -> None:
        self.count.setText(f"{self.model.rowCount()} of {self.model.total} patients")

    def set_variable_filter(self, variable: str, *, equals: str = "", low: str = "", high: str = "",
                            contains: str = "") -> None:
        """Choose a codebook variable and its value or range (as a user would)."""
        index = self.variable.findData(variable)
        if index < 0:
            raise UserError(f"variable {variable!r} is not offered as a filter")
        self.variable.setCurrentIndex(index)
        if equals:
            self.value_choice.setCurrentIndex(self.value_choice.findText(equals))
        self.value_low.setText(low)
        self.value_high.setText(high)
        self.value_text.setText(contains)
        self.apply_filters()

    def clear_filters(self) -> None:
        for combo in (self.center, self.data_set, self.included, self.reason, self.variable):
            combo.blockSignals(True)
            combo.setCurrentIndex(0)
            combo.blockSignals(False)
        for edit in (self.search, self.value_low, self.value_high, self.value_text):
            edit.blockSignals(True)
            edit.clear()
            edit.blockSignals(False)
        self._variable_chosen(apply=False)
        self.apply_filters()

    def find(self, text: str) -> None:
        self.search.setFocus()
        if text:
            self.search.setText(text)
        self.search.selectAll()
        self.apply_filters()

    # -- columns -------------------------------------------------------------------------
    def offered_columns(self) -> list[str]:
        """Every column the user may show (no identifiers unless "Show identifiers")."""
        if self.data is None:
            return list(DEFAULT_COLUMNS)
        return choosable_columns(self.data.columns, self.data.codebook,
                                 show_identifiers=self.show_identifiers.isChecked())

    def set_columns(self, columns: list[str]) -> None:
        offered = set(self.offered_columns())
        unknown = [c for c in columns if c not in offered]
        if unknown:
            raise UserError(f"column(s) not available: {', '.join(unknown)}")
        self._visible = list(dict.fromkeys(["study_id", *columns]))
        remember_columns([c for c in self._visible if c not in identifier_columns(self.data.codebook)]
                         if self.data else self._visible)
        self.model.set_columns(self._visible)
        self.apply_filters()
        self._fit_columns()

    def visible_columns(self) -> list[str]:
        return list(self._visible)

    def _fill_columns_menu(self, menu: QMenu | None = None) -> QMenu:
        menu = menu or self.columns_menu
        menu.clear()
        book = self.data.codebook if self.data else None
        for column in self.offered_columns():
            action = QAction(column_label(column, book), menu)
            action.setCheckable(True)
            action.setChecked(column in self._visible)
            action.setEnabled(column != "study_id")
            action.toggled.connect(lambda on, c=column: self._toggle_column(c, on))
            menu.addAction(action)
        return menu

    def _header_menu(self, pos) -> None:
        menu = self._fill_columns_menu(QMenu(self))
        menu.popup(self.table.horizontalHeader().mapToGlobal(pos))

    def _toggle_column(self, column: str, on: bool) -> None:
        visible = [c for c in self._visible if c != column]
        if on:
            visible.append(column)
        self.set_columns(visible)

    def _identifiers_toggled(self, on: bool) -> None:
        if not on and self.data is not None:
            hidden = identifier_columns(self.data.codebook)
            self._visible = [c for c in self._visible if c not in hidden]
            self.model.set_columns(self._visible)
        self.refresh()  # identifiers are loaded only while they are shown

    # -- navigation ----------------------------------------------------------------------
    def open_patient(self, row: int) -> str | None:
        """Open the patient form of the table's ``row`` (double-click)."""
        if not 0 <= row < self.model.rowCount():
            return None
        study_id = self.model.study_id(row)
        if self.ctx is not None:
            self.ctx.request_patient.emit(study_id)
        return study_id

    # -- screenshots ---------------------------------------------------------------------
    def prepare_screenshot(self) -> None:
        self.table.sortByColumn(0, Qt.AscendingOrder)

    def snapshot(self) -> dict[str, Any]:
        hidden = identifier_columns(self.data.codebook) if self.data else set()
        columns = [c for c in self._visible if c not in hidden]
        rows = []
        for r in range(min(SNAPSHOT_ROWS, self.model.rowCount())):
            rows.append({c: self.model.index(r, self._visible.index(c)).data() for c in columns})
        return {"view": self.view_id, "patients": self.model.total, "shown": self.model.rowCount(),
                "columns": columns, "filters": self.model.filter.describe(), "rows": rows}


def _refill(combo: QComboBox, items: list[str]) -> None:
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(items)
    index = combo.findText(current)
    combo.setCurrentIndex(max(index, 0))
    combo.blockSignals(False)
