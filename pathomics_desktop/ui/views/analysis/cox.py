"""The Cox view: univariate or multivariable Cox models of chosen variables, and the study's
Table 2 rule (univariate screen, then the multivariable model of the variables with p below
the threshold).

Left of the results, a checkable list of the cohort's variables with, per variable, its
reference level (categorical) or the units one HR step stands for (continuous, e.g. age per
10 years). The results are the HR table (95% CI, p; the proportional-hazards test p per
variable, highlighted where p < 0.05) and a line with the model's n, events, C-index and LR
test. The numbers come from :func:`pathomics_desktop.figures.cox.build_cox` (the ``stats``
package) in a worker thread; this module only draws them.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.cox import (
    MODES,
    build_cox,
    risk_group_column,
    table_header,
    table_rows,
)
from pathomics_desktop.ui.models.base import DictTableModel
from pathomics_desktop.ui.theme import is_dark
from pathomics_desktop.ui.views.analysis.base import AnalysisView
from pathomics_desktop.ui.views.analysis.filter_panel import OptionsCache
from pathomics_desktop.ui.views.common import row_table

MODE_TITLES = {"univariate": "Univariate (one model per variable)", "multivariate": "Multivariable (one model)",
               "screen": "Screen univariate, then multivariable"}
CENTER_TITLES = {"none": "Not in the model", "cluster": "Cluster (robust sandwich SE)",
                 "frailty": "Random effect (Gaussian frailty)"}
#: background of a row whose proportional-hazards test is p < 0.05
PH_FLAG_LIGHT, PH_FLAG_DARK = "#FBE3C8", "#6B4A1E"
#: the widest the variable column gets (pixels; longer labels are elided, the tooltip has them)
LABEL_WIDTH = 170


class CoxTableModel(DictTableModel):
    """The HR table: a row with a flagged PH test is shaded and says why in its tooltip;
    reference rows are in italics."""

    def data(self, index, role=Qt.DisplayRole):
        if index.isValid():
            row = self.rows[index.row()]
            if role == Qt.BackgroundRole and row.get("ph_flag"):
                return QBrush(QColor(PH_FLAG_DARK if is_dark() else PH_FLAG_LIGHT))
            if role == Qt.ToolTipRole and row.get("ph_flag"):
                return ("Proportional-hazards test p < 0.05 (Grambsch-Therneau): the hazard ratio "
                        "changes with time; consider strata or a time-varying effect")
            if role == Qt.ToolTipRole and row.get("note"):
                return row["note"]
            if role == Qt.ToolTipRole and self.column_key(index.column()) == "label":
                return row.get("label") or None
            if role == Qt.FontRole and row.get("reference") and self.column_key(index.column()) != "label":
                from PySide6.QtGui import QFont

                font = QFont()
                font.setItalic(True)
                return font
        return super().data(index, role)


class VariablePicker(QTableWidget):
    """The checkable variable list: column 0 the variable (ticked = in the model), column 1
    its reference level (a combo) or its HR step in units (a spin box)."""

    def __init__(self, parent=None):
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Variable", "Reference / HR per"])
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        self.setSelectionMode(QAbstractItemView.NoSelection)
        self.specs: dict = {}
        self.editors: dict = {}

    def set_specs(self, specs, ticked) -> None:
        """Fill the list from :class:`~pathomics_desktop.figures.cox.VariableSpec` s, keeping
        ``ticked`` (columns) ticked and earlier choices of reference/step."""
        previous = {c: self.choice(c) for c in self.specs}
        self.blockSignals(True)
        self.setRowCount(0)
        self.specs, self.editors = {}, {}
        for spec in specs:
            row = self.rowCount()
            self.insertRow(row)
            item = QTableWidgetItem(spec.label)
            item.setData(Qt.UserRole, spec.column)
            item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if spec.column in ticked else Qt.Unchecked)
            item.setToolTip(spec.column)
            self.setItem(row, 0, item)
            if spec.categorical:
                editor = QComboBox()
                editor.addItems(list(spec.levels))
                editor.setToolTip("Reference level (HR = 1)")
            else:
                editor = QDoubleSpinBox()
                editor.setRange(0.001, 1e6)
                editor.setDecimals(3)
                editor.setValue(10.0 if spec.unit == "years" else 1.0)  # age: HR per 10 years, as journals
                editor.setSuffix(f" {spec.unit}" if spec.unit else "")
                editor.setToolTip("The HR is per this many units (e.g. 10 years)")
            self.setCellWidget(row, 1, editor)
            self.specs[spec.column] = spec
            self.editors[spec.column] = editor
            if spec.column in previous and previous[spec.column] is not None:
                self.set_choice(spec.column, previous[spec.column])
        self.blockSignals(False)
        self.resizeRowsToContents()

    def ticked(self) -> list[str]:
        return [self.item(r, 0).data(Qt.UserRole) for r in range(self.rowCount())
                if self.item(r, 0).checkState() == Qt.Checked]

    def set_ticked(self, columns) -> None:
        wanted = set(columns)
        self.blockSignals(True)
        for r in range(self.rowCount()):
            item = self.item(r, 0)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in wanted else Qt.Unchecked)
        self.blockSignals(False)

    def choice(self, column: str):
        editor = self.editors.get(column)
        if editor is None:
            return None
        return editor.currentText() if isinstance(editor, QComboBox) else editor.value()

    def set_choice(self, column: str, value) -> None:
        editor = self.editors[column]
        editor.blockSignals(True)
        if isinstance(editor, QComboBox):
            index = editor.findText(str(value))
            if index >= 0:
                editor.setCurrentIndex(index)
        else:
            editor.setValue(float(value))
        editor.blockSignals(False)


class VariablesView(AnalysisView):
    """An analysis view offering the cohort's variables (:class:`VariableSpec` list, read in a
    worker once the filter options are loaded, and again after every registry change) and an
    OS/RFS endpoint choice. Subclasses implement ``_set_specs(specs)``."""

    def endpoint_combo(self) -> QComboBox:
        combo = QComboBox()
        combo.addItem("Overall survival (OS)", "os")
        combo.addItem("Recurrence-free survival (RFS)", "rfs")
        combo.currentIndexChanged.connect(self.recompute)
        return combo

    def set_context(self, ctx) -> None:
        super().set_context(ctx)
        if ctx is not None:
            cache = OptionsCache.of(ctx)
            cache.ready.connect(self._options_ready)
            cache.request()

    def _options_ready(self, _options) -> None:
        """Offer the snapshot's variables (listed in a worker: it reads the snapshot)."""
        self.run_task("variables", load_variable_specs, self.ctx.project, on_done=self._set_specs)

    def _set_specs(self, specs) -> None:
        raise NotImplementedError


class CoxView(VariablesView):
    view_id = "cox"
    title = "Cox models"

    compute = staticmethod(build_cox)

    def build_controls(self, form) -> None:
        self.endpoint = self.endpoint_combo()
        self.mode = QComboBox()
        for mode in MODES:
            self.mode.addItem(MODE_TITLES[mode], mode)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.001, 1.0)
        self.threshold.setDecimals(3)
        self.threshold.setSingleStep(0.01)
        self.threshold.setValue(0.05)
        self.threshold.setPrefix("p < ")
        self.threshold.setToolTip("Screen: variables whose univariate likelihood-ratio p is below this enter "
                                  "the multivariable model")
        self.threshold.valueChanged.connect(self.recompute)
        self.strata = QComboBox()
        self.strata.addItem("None", None)
        self.strata.setToolTip("Each level gets its own baseline hazard (no HR for the strata variable)")
        self.strata.currentIndexChanged.connect(self.recompute)
        self.center = QComboBox()
        for key, text in CENTER_TITLES.items():
            self.center.addItem(text, key)
        self.center.currentIndexChanged.connect(self.recompute)
        self.study_button = QPushButton("Screen univariate, then multivariate (study rule)")
        self.study_button.setToolTip("The study's Table 2: the clinical variables and the risk group, univariate "
                                     "Cox, then one multivariable model of those with p < 0.05")
        self.study_button.clicked.connect(self.apply_study_rule)
        row = QWidget()
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        for label, widget in (("Endpoint", self.endpoint), ("Models", self.mode), ("Threshold", self.threshold)):
            line.addWidget(QLabel(label))
            line.addWidget(widget)
        line.addStretch(1)
        form.addRow(row)
        row2 = QWidget()
        line2 = QHBoxLayout(row2)
        line2.setContentsMargins(0, 0, 0, 0)
        for label, widget in (("Strata", self.strata), ("Center", self.center)):
            line2.addWidget(QLabel(label))
            line2.addWidget(widget)
        line2.addStretch(1)
        line2.addWidget(self.study_button)
        form.addRow(row2)
        self._mode_changed()

    def build_content(self) -> QWidget:
        self.picker = VariablePicker()
        self.picker.itemChanged.connect(self.recompute)
        picker_box = QWidget()
        column = QVBoxLayout(picker_box)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(QLabel("<b>Variables</b> (tick to include)"))
        column.addWidget(self.picker, 1)
        self.results = QWidget()
        results = QVBoxLayout(self.results)
        results.setContentsMargins(0, 0, 0, 0)
        self.heading = QLabel()
        self.heading.setWordWrap(True)
        self.table_model = CoxTableModel([], [])
        self.table = row_table(self.table_model, sortable=False, row_height=22)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.model_line = QLabel()
        self.model_line.setWordWrap(True)
        self.model_line.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        results.addWidget(self.heading)
        results.addWidget(self.table, 1)
        results.addWidget(self.model_line)
        results.addWidget(self.notes)
        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(picker_box)
        splitter.addWidget(self.results)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([270, 930])
        return splitter

    def export_widget(self) -> QWidget:
        return self.results

    # -- the variable list --------------------------------------------------------------
    def _set_specs(self, specs) -> None:
        ticked = self.picker.ticked() if self.picker.specs else self._default_ticked(specs)
        self.picker.set_specs(specs, ticked)
        current = self.strata.currentData()
        self.strata.blockSignals(True)
        self.strata.clear()
        self.strata.addItem("None", None)
        self.strata.addItem("Center (a baseline hazard per center)", "center")
        for spec in specs:
            if spec.categorical:
                self.strata.addItem(spec.label, spec.column)
        index = self.strata.findData(current)
        self.strata.setCurrentIndex(max(index, 0))
        self.strata.blockSignals(False)
        if self._pending_study_rule:
            self._pending_study_rule = False
            self.apply_study_rule()
        else:
            self.recompute()

    def _default_ticked(self, specs) -> list[str]:
        """First open: the endpoint's risk group when applied, else age and sex."""
        columns = {s.column for s in specs}
        group = risk_group_column(self.endpoint.currentData())
        return [group] if group in columns else [c for c in ("age", "sex") if c in columns]

    def _mode_changed(self, *_args) -> None:
        self.threshold.setEnabled(self.mode.currentData() == "screen")
        self.recompute()

    # -- state ----------------------------------------------------------------------------
    def params(self) -> dict:
        if not self.picker.specs:
            raise UserError("Loading the cohort's variables...")
        variables = self.picker.ticked()
        reference, per = {}, {}
        for column in variables:
            spec = self.picker.specs[column]
            if spec.categorical:
                reference[column] = self.picker.choice(column)
            else:
                per[column] = self.picker.choice(column)
        return {"endpoint": self.endpoint.currentData(), "variables": variables, "mode": self.mode.currentData(),
                "threshold": self.threshold.value(), "reference": reference, "per": per,
                "strata": self.strata.currentData(), "center": self.center.currentData()}

    def set_state(self, *, endpoint=None, mode=None, variables=None, threshold=None, strata=..., center=None) -> None:
        """Set several choices at once with one recomputation (the study-rule button, tests)."""
        widgets = (self.endpoint, self.mode, self.threshold, self.strata, self.center, self.picker)
        for widget in widgets:
            widget.blockSignals(True)
        try:
            if endpoint is not None:
                self.endpoint.setCurrentIndex(self.endpoint.findData(endpoint))
            if mode is not None:
                self.mode.setCurrentIndex(self.mode.findData(mode))
                self.threshold.setEnabled(mode == "screen")
            if threshold is not None:
                self.threshold.setValue(threshold)
            if strata is not ...:
                self.strata.setCurrentIndex(max(self.strata.findData(strata), 0))
            if center is not None:
                self.center.setCurrentIndex(self.center.findData(center))
            if variables is not None:
                self.picker.set_ticked(variables)
        finally:
            for widget in widgets:
                widget.blockSignals(False)
        self.recompute()

    def study_columns(self) -> list[str]:
        """The study's Table 2 candidates offered here: the clinical variables and the
        endpoint's risk group when a signature has been applied."""
        from pathomics_desktop.signature.report import clinical_variables

        offered = set(self.picker.specs)
        columns = [v.column for v in clinical_variables()] + [risk_group_column(self.endpoint.currentData())]
        return [c for c in columns if c in offered]

    def apply_study_rule(self) -> None:
        """The study's rule: the clinical variables (+ risk group), screen at p < 0.05, no
        strata, center not in the model."""
        self.set_state(mode="screen", threshold=0.05, variables=self.study_columns(), strata=None, center="none")

    def prepare_screenshot(self) -> None:
        if self.picker.specs:
            self.apply_study_rule()
        else:
            self._pending_study_rule = True
        super().prepare_screenshot()

    # -- drawing --------------------------------------------------------------------------
    def render(self, model) -> None:
        columns = table_header(model.mode)
        self.table_model.COLUMNS = tuple(columns)
        self.table_model.set_rows([r.display() for r in model.rows])
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(0, min(self.table.columnWidth(0), LABEL_WIDTH))
        if model.mode == "screen":
            what = (f"Univariate screen, then multivariable model of p < {model.threshold:g} "
                    f"(selected: {len(model.selected)} of {len(model.variables)})")
        else:
            what = "Univariate Cox models" if model.mode == "univariate" else "Multivariable Cox model"
        adjust = []
        if model.strata:
            spec = self.picker.specs.get(model.strata)
            adjust.append(f"stratified by {spec.label if spec else model.strata}")
        if model.center != "none":
            adjust.append("center as " + ("cluster (robust SE)" if model.center == "cluster" else "random effect"))
        self.heading.setText(f"<b>{escape(what)}</b>, {model.endpoint.upper()}"
                             + (f"; {escape('; '.join(adjust))}" if adjust else "")
                             + ". HR (95% CI), Wald p; Efron ties. PH test: Grambsch-Therneau"
                             + (" (multivariable model)" if model.mode == "screen" else "") + ".")
        self.model_line.setText(model.summary_text())
        self.notes.setText("\n".join(model.notes))

    def table_data(self, model):
        return table_rows(model)

    def snapshot_data(self, model) -> dict:
        return {"cox": model.to_dict()}

    #: the screenshot command asked for the study rule before the variables were listed
    _pending_study_rule = False


def load_variable_specs(project):
    """Worker function: the variables the Cox view offers (reads the snapshot)."""
    from pathomics_desktop.analytics.cohort_filter import AnalysisSource
    from pathomics_desktop.figures.cox import variable_specs

    return variable_specs(AnalysisSource.open(project))
