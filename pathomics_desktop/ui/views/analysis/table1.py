"""Table 1 view: baseline characteristics by a grouping variable (the data set by default),
computed by :func:`pathomics_desktop.figures.table1.build_table1` in a worker thread. Clicking
a count cell lists those patients."""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import QComboBox, QHeaderView, QLabel, QMenu, QTableView, QToolButton, QVBoxLayout, QWidget

from pathomics_desktop.figures.table1 import OVERALL, build_table1, default_variables
from pathomics_desktop.ui.models.base import DictTableModel
from pathomics_desktop.ui.views.analysis.base import AnalysisView
from pathomics_desktop.ui.views.analysis.patient_list import PatientListDialog
from pathomics_desktop.ui.views.common import row_table

#: grouping columns offered before the codebook's categorical variables
GROUPINGS = (("split", "Data set"), ("center", "Center"), ("center_role", "Center role"))
#: a grouping variable with more levels than this is not offered
MAX_GROUPS = 12


class CheckableMenuButton(QToolButton):
    """A button opening a menu of checkable choices (``choices``: (key, label) pairs);
    ``changed`` is emitted when a tick changes. The button text counts the ticked ones."""

    changed = Signal()

    def __init__(self, noun: str, parent=None):
        super().__init__(parent)
        self.noun = noun
        self.setPopupMode(QToolButton.InstantPopup)
        self.setMenu(QMenu(self))
        self.actions_by_key: dict[str, QAction] = {}

    def set_choices(self, choices: Sequence[tuple[str, str]], checked: Sequence[str]) -> None:
        menu = self.menu()
        menu.clear()
        self.actions_by_key = {}
        for key, label in choices:
            action = QAction(label, menu)
            action.setCheckable(True)
            action.setChecked(key in checked)
            action.toggled.connect(self._toggled)
            menu.addAction(action)
            self.actions_by_key[key] = action
        self._update_text()

    def checked(self) -> list[str]:
        return [k for k, a in self.actions_by_key.items() if a.isChecked()]

    def set_checked(self, key: str, on: bool) -> None:
        self.actions_by_key[key].setChecked(on)

    def _toggled(self, _on: bool) -> None:
        self._update_text()
        self.changed.emit()

    def _update_text(self) -> None:
        self.setText(f"{len(self.checked())} of {len(self.actions_by_key)} {self.noun}")


class Table1Model(DictTableModel):
    """The Table 1 grid: variable headings bold, clickable count cells with a tooltip."""

    def __init__(self, parent=None):
        super().__init__(["label"], ["Characteristic"], parent=parent)
        self.table = None
        self.clickable: set[str] = set()

    def set_table(self, table) -> None:
        keys = ["label"] + table.columns + ["p", "test"]
        self.beginResetModel()
        # "Training (n = 255)" on two lines keeps the columns narrow
        self.COLUMNS = tuple(zip(keys, [h.replace(" (n = ", "\n(n = ") for h in table.header()]))
        self.table = table
        self.clickable = set(table.columns)
        self.rows = [{"label": table.row_label(r), **{c: r.cells.get(c, "") for c in table.columns},
                      "p": r.p_text, "test": TEST_ABBREVIATIONS.get(r.test or "", r.test or ""), "_row": r}
                     for r in table.rows]
        self.endResetModel()

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]["_row"]
        key = self.column_key(index.column())
        if role == Qt.FontRole and row.kind in ("header", "continuous", "count") and key == "label":
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ToolTipRole and key in self.clickable and row.ids.get(key):
            return f"Click to list these {len(row.ids[key])} patient(s)"
        if role == Qt.TextAlignmentRole and key != "label":
            return int(Qt.AlignCenter)
        return super().data(index, role)


#: the tests as a table column names them (journal style); the notes spell them out
TEST_ABBREVIATIONS = {"Pearson chi-square": "χ²", "Fisher's exact test": "Fisher", "Welch t-test": "Welch t",
                      "Student t-test": "t", "Mann-Whitney U": "MWU", "ANOVA": "ANOVA", "Kruskal-Wallis": "KW"}


def tests_footnote(tests) -> str:
    named = set(tests)
    used = [t for t in TEST_ABBREVIATIONS if t in named]
    return "Tests: " + "; ".join(f"{TEST_ABBREVIATIONS[t]}, {t}" for t in used) + "." if used else ""


class BaselineTableView(AnalysisView):
    """Table 1 of the filtered cohort (see :mod:`pathomics_desktop.figures.table1`)."""

    view_id = "table1"
    title = "Table 1"
    compute = staticmethod(build_table1)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.last_patient_list: PatientListDialog | None = None

    # -- controls and content ------------------------------------------------------------
    def build_controls(self, form) -> None:
        self.group_combo = QComboBox()
        for column, label in GROUPINGS:
            self.group_combo.addItem(label, column)
        self.group_combo.currentIndexChanged.connect(self.recompute)
        form.addRow("Group by", self.group_combo)
        self.variable_button = CheckableMenuButton("variables")
        self.variable_button.setToolTip("The rows of the table (the study's Table 1 by default)")
        self._set_variable_choices(self._variable_choices(None))
        self.variable_button.changed.connect(self.recompute)
        form.addRow("Variables", self.variable_button)

    def build_content(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        self.model = Table1Model(page)
        self.table = row_table(self.model, sortable=False)
        self.table.setSelectionBehavior(QTableView.SelectItems)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        self.table.clicked.connect(self.cell_clicked)
        layout.addWidget(self.table, 1)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        layout.addWidget(self.notes)
        return page

    def set_context(self, ctx) -> None:
        super().set_context(ctx)
        if ctx is not None:
            from pathomics_desktop.ui.views.analysis.filter_panel import OptionsCache

            cache = OptionsCache.of(ctx)
            cache.ready.connect(self.set_options)
            if cache.options is not None:  # (request() would make every panel rebuild)
                self.set_options(cache.options)
            else:
                cache.request()

    def set_options(self, options) -> None:
        """Offer every categorical variable as a grouping and every variable as a row."""
        from pathomics_desktop.signature.report import clinical_variables

        current = self.group_combo.currentData()
        self.group_combo.blockSignals(True)
        self.group_combo.clear()
        for column, label in GROUPINGS:
            self.group_combo.addItem(label, column)
        for option in options.variables:
            if option.kind == "category" and 2 <= len(option.levels) <= MAX_GROUPS and option.column != "center_role":
                self.group_combo.addItem(option.label, option.column)
        for var in clinical_variables():
            if self.group_combo.findData(var.column) < 0:
                self.group_combo.addItem(var.label, var.column)
        index = self.group_combo.findData(current)
        self.group_combo.setCurrentIndex(max(index, 0))
        self.group_combo.blockSignals(False)
        self._set_variable_choices(self._variable_choices(options))

    @staticmethod
    def _variable_choices(options) -> list[tuple[str, str]]:
        """(column, label): the study's clinical variables, age and CA19-9, then every other
        variable of the snapshot (``options`` None: the study's only)."""
        from pathomics_desktop.figures.table1 import CONTINUOUS
        from pathomics_desktop.signature.report import clinical_variables

        choices = {v.column: v.label for v in clinical_variables()}
        offered = {o.column: o.label + (f" ({o.unit})" if o.unit else "")
                   for o in (options.variables if options is not None else ())}
        choices.update({c: offered.get(c, {"age": "Age (years)", "ca19_9": "CA19-9 (U/mL)"}.get(c, c))
                        for c in CONTINUOUS})
        choices.update({c: lbl for c, lbl in offered.items() if c not in choices and c != "center_role"})
        return list(choices.items())

    def _set_variable_choices(self, choices) -> None:
        checked = self.variable_button.checked() or default_variables()
        self.variable_button.blockSignals(True)
        self.variable_button.set_choices(choices, checked)
        self.variable_button.blockSignals(False)

    def params(self) -> dict[str, Any]:
        return {"by": self.group_combo.currentData() or "split", "variables": self.variable_button.checked()}

    # -- drawing ---------------------------------------------------------------------------
    def render(self, model) -> None:
        self.model.set_table(model)
        notes = [tests_footnote(r.test for r in model.rows if r.test)] + list(model.notes)
        self.notes.setText("\n".join(n for n in notes if n))
        self.notes.setVisible(any(notes))

    def table_data(self, model):
        return model.header(), model.table_rows()

    def snapshot_data(self, model) -> dict[str, Any]:
        return {"table1": model.to_dict()}

    def prepare_screenshot(self) -> None:
        self.group_combo.setCurrentIndex(max(self.group_combo.findData("split"), 0))
        super().prepare_screenshot()

    # -- click-through -------------------------------------------------------------------
    def cell_clicked(self, index) -> PatientListDialog | None:
        """A count cell: list its patients (non-modal, kept on ``last_patient_list``)."""
        if self.computed is None or not index.isValid():
            return None
        table = self.computed.model
        key = self.model.column_key(index.column())
        if key not in table.columns:
            return None
        row = table.rows[index.row()]
        ids = row.ids.get(key) or []
        if not ids or row.kind == "header":
            return None
        where = table.group_labels.get(key, key) if key != OVERALL else "all groups"
        rows = [table.patients.get(s, {"study_id": s}) for s in ids]
        columns = [c for c in ("study_id", "center", "split") if c in rows[0]]
        self.last_patient_list = PatientListDialog(self.ctx, f"{row.what()} ({where})", rows, columns, parent=self)
        self.last_patient_list.show()
        return self.last_patient_list
