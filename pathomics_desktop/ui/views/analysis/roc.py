"""ROC view: the time-dependent ROC of the survival markers (signature, TNM stage, CA19-9) with
AUC(t), and the patch- and slide-level ROC of the patch models with DeLong CIs and tests.

Both are computed by :func:`pathomics_desktop.figures.roc.build_roc` in a worker thread; the
view draws the description with pyqtgraph. Bootstrap CIs of AUC(t) are computed only when
asked for ("Compute CIs (bootstrap)"), for the filter and choices of that moment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.roc import (
    ENDPOINTS,
    LEVELS,
    MARKER_LABELS,
    VIEW_BOOTSTRAP,
    ModelComparison,
    build_roc,
    default_times,
    score_column,
)
from pathomics_desktop.ui.models.base import DictTableModel
from pathomics_desktop.ui.views.analysis.base import AnalysisView
from pathomics_desktop.ui.views.analysis.plotting import group_pen, plot_widget
from pathomics_desktop.ui.views.analysis.table1 import CheckableMenuButton
from pathomics_desktop.ui.views.common import row_table

MODES = (("td", "Time-dependent ROC"), ("models", "Patch models"))
#: marker choices: "signature" stands for the endpoint's score column
MARKER_CHOICES = (("signature", "Pathomics signature"), ("tnm_ordinal", MARKER_LABELS["tnm_ordinal"]),
                  ("ca19_9", MARKER_LABELS["ca19_9"]), ("age", MARKER_LABELS["age"]))
DEFAULT_MARKERS = ("signature", "tnm_ordinal", "ca19_9")
TEXT = "#222222"


def _prepare(plot, title: str = "") -> None:
    """Clear ``plot``; give it a legend (bottom right, inside the axes) and a title in the
    theme's text colour."""
    from pathomics_desktop.ui.theme import is_dark

    dark = is_dark()
    text = "#dddddd" if dark else TEXT
    plot.clear()
    item = plot.getPlotItem()
    if item.legend is None:
        plot.addLegend(offset=(-10, -10), labelTextSize="9pt", labelTextColor=text,
                       brush=pg.mkBrush(30, 30, 30, 220) if dark else pg.mkBrush(255, 255, 255, 220),
                       pen=pg.mkPen("#666666" if dark else "#cccccc"))
    item.legend.clear()
    item.setTitle(title, color=text, size="10pt")


def _diagonal(plot) -> None:
    plot.plot([0, 1], [0, 1], pen=pg.mkPen("#888888", width=1, style=Qt.DashLine))


def _roc_axes(plot) -> None:
    item = plot.getPlotItem()
    item.setXRange(0, 1, padding=0.02)
    item.setYRange(0, 1, padding=0.02)
    item.setAspectLocked(False)


def _table(headers) -> tuple[DictTableModel, Any]:
    model = DictTableModel([str(i) for i in range(len(headers))], headers)
    table = row_table(model, sortable=False)
    table.horizontalHeader().setStretchLastSection(True)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 8)
    return model, table


def _set_table(model: DictTableModel, table, header: list[str], rows: list[list[Any]]) -> None:
    keys = [str(i) for i in range(len(header))]
    model.beginResetModel()
    model.COLUMNS = tuple(zip(keys, header))
    model.rows = [dict(zip(keys, row)) for row in rows]
    model.endResetModel()
    table.resizeColumnsToContents()


class RocView(AnalysisView):
    """Time-dependent ROC and the patch models' ROC (see the module docstring)."""

    view_id = "roc"
    title = "ROC"
    compute = staticmethod(build_roc)

    # -- controls ------------------------------------------------------------------------
    def build_controls(self, form) -> None:
        self._ci_request = None
        self.mode_combo = QComboBox()
        for key, label in MODES:
            self.mode_combo.addItem(label, key)
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        form.addRow("Analysis", self.mode_combo)
        self.endpoint_combo = QComboBox()
        for key, (_t, _e, label) in ENDPOINTS.items():
            self.endpoint_combo.addItem(label, key)
        self.endpoint_combo.currentIndexChanged.connect(self._endpoint_changed)
        form.addRow("Endpoint", self.endpoint_combo)
        self.times_edit = QLineEdit(", ".join(f"{t:g}" for t in default_times("os")))
        self.times_edit.setToolTip("Evaluation times in months, separated by commas")
        self.times_edit.editingFinished.connect(self.recompute)
        self.time_combo = QComboBox()
        self.time_combo.setToolTip("The time whose ROC curves are drawn")
        self.time_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.time_combo.setMinimumContentsLength(10)
        self.time_combo.currentIndexChanged.connect(self._draw_td_curves)
        times_row = QWidget()
        row = QHBoxLayout(times_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.times_edit, 1)
        row.addWidget(QLabel("ROC curves at"))
        row.addWidget(self.time_combo)
        form.addRow("Times (months)", times_row)
        self.marker_button = CheckableMenuButton("markers")
        self.marker_button.set_choices(MARKER_CHOICES, DEFAULT_MARKERS)
        self.marker_button.changed.connect(self.recompute)
        self.ci_button = QPushButton("Compute CIs (bootstrap)")
        self.ci_button.setToolTip(f"Percentile bootstrap 95% CIs of AUC(t), {VIEW_BOOTSTRAP} resamples")
        self.ci_button.clicked.connect(self.compute_cis)
        markers_row = QWidget()
        row = QHBoxLayout(markers_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.marker_button)
        row.addStretch(1)
        row.addWidget(self.ci_button)
        form.addRow("Markers", markers_row)
        self._td_rows = (self.endpoint_combo, times_row, markers_row)

    def _mode_changed(self, _index: int) -> None:
        td = self.mode() == "td"
        for widget in self._td_rows:
            self.controls.setRowVisible(widget, td)
        self.pages.setCurrentWidget(self.td_page if td else self.models_page)
        self.recompute()

    def _endpoint_changed(self, _index: int) -> None:
        self.times_edit.setText(", ".join(f"{t:g}" for t in default_times(self.endpoint())))
        self.recompute()

    def mode(self) -> str:
        return self.mode_combo.currentData()

    def endpoint(self) -> str:
        return self.endpoint_combo.currentData()

    def times(self) -> list[float]:
        text = self.times_edit.text().replace(";", ",")
        try:
            times = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise UserError(f"Times: {text!r} is not a list of months; write e.g. 12, 36, 60") from None
        if not times:
            raise UserError("Times: give at least one time in months, e.g. 12, 36, 60")
        return times

    def markers(self) -> list[str]:
        return [score_column(self.endpoint()) if k == "signature" else k for k in self.marker_button.checked()]

    def _choices(self) -> tuple:
        return (self.endpoint(), tuple(self.times()), tuple(self.markers()))

    def params(self) -> dict[str, Any]:
        if self.mode() == "models":
            return {"mode": "models", "project": str(self.ctx.project.root)}
        if not self.markers():
            raise UserError("Tick at least one marker.")
        wanted = (self.ctx.cohort_filter, self._choices())
        return {"mode": "td", "endpoint": self.endpoint(), "times": self.times(), "markers": self.markers(),
                "bootstrap": VIEW_BOOTSTRAP if self._ci_request == wanted else 0}

    def compute_cis(self) -> None:
        """Bootstrap CIs for the current filter and choices (the next choice change drops them)."""
        if self.ctx is None:
            return
        try:
            self._ci_request = (self.ctx.cohort_filter, self._choices())
        except UserError:
            return
        self.recompute(force=True)

    # -- content -------------------------------------------------------------------------
    def build_content(self) -> QWidget:
        self.pages = QStackedWidget()
        # time-dependent ROC: ROC curves at a time | AUC(t) over time; the AUC table below
        self.td_page = QWidget()
        layout = QVBoxLayout(self.td_page)
        layout.setContentsMargins(0, 0, 0, 0)
        plots = QSplitter(Qt.Horizontal)
        self.roc_plot = plot_widget(x_label="1 - specificity (false positive rate)",
                                    y_label="Sensitivity (true positive rate)")
        self.auc_plot = plot_widget(x_label="Time (months)", y_label="AUC(t)")
        plots.addWidget(self.roc_plot)
        plots.addWidget(self.auc_plot)
        layout.addWidget(plots, 4)
        self.td_model, self.td_table = _table(["Marker"])
        layout.addWidget(self.td_table, 1)
        self.td_notes = QLabel()
        self.td_notes.setWordWrap(True)
        layout.addWidget(self.td_notes)
        self.pages.addWidget(self.td_page)
        # patch models: patch- and slide-level ROC; the AUC and DeLong tables below
        self.models_page = QWidget()
        layout = QVBoxLayout(self.models_page)
        layout.setContentsMargins(0, 0, 0, 0)
        plots = QSplitter(Qt.Horizontal)
        self.level_plots = {}
        for level in LEVELS:
            plot = plot_widget(x_label="1 - specificity", y_label="Sensitivity")
            plots.addWidget(plot)
            self.level_plots[level] = plot
        layout.addWidget(plots, 3)
        self.model_model, self.model_table = _table(["Model"])
        self.test_model, self.test_table = _table(["Level"])
        layout.addWidget(self.model_table, 1)
        layout.addWidget(self.test_table, 1)
        self.model_notes = QLabel()
        self.model_notes.setWordWrap(True)
        layout.addWidget(self.model_notes)
        self.pages.addWidget(self.models_page)
        return self.pages

    # -- drawing -------------------------------------------------------------------------
    def render(self, model) -> None:
        if isinstance(model, ModelComparison):
            self.pages.setCurrentWidget(self.models_page)
            self._render_models(model)
            return
        self.pages.setCurrentWidget(self.td_page)
        current = self.time_combo.currentData()
        self.time_combo.blockSignals(True)
        self.time_combo.clear()
        for t in model.times:
            self.time_combo.addItem(f"{t:g} months", t)
        index = self.time_combo.findData(current)
        self.time_combo.setCurrentIndex(index if index >= 0 else 0)
        self.time_combo.blockSignals(False)
        self._draw_td_curves()
        self._draw_auc_over_time(model)
        _set_table(self.td_model, self.td_table, model.header(), model.table_rows())
        notes = list(model.notes) + [f"{m.label}: {n}" for m in model.markers for n in m.notes]
        if not model.bootstrap:
            notes.append("95% CIs: press Compute CIs (bootstrap).")
        else:
            notes.append(f"95% CIs: percentile bootstrap, {model.bootstrap} resamples (seed {model.seed}).")
        notes.append("AUC(t): cumulative/dynamic, IPCW (Uno 2007); a higher marker value means a higher risk.")
        self.td_notes.setText("\n".join(notes))

    def roc_time(self) -> float | None:
        return self.time_combo.currentData()

    def _draw_td_curves(self, *_args) -> None:
        plot = self.roc_plot
        model = self.computed.model if self.computed is not None else None
        if model is None or isinstance(model, ModelComparison):
            return
        at = self.roc_time()
        _prepare(plot, f"{model.endpoint_label}: ROC at {at:g} months" if at is not None else "")
        _diagonal(plot)
        for i, marker in enumerate(model.markers):
            curve = marker.curves.get(at)
            if curve is None:
                continue
            plot.plot(curve["fpr"], curve["tpr"], pen=group_pen(i),
                      name=f"{marker.label}: AUC {curve['auc']:.3f}")
        _roc_axes(plot)

    def _draw_auc_over_time(self, model) -> None:
        plot = self.auc_plot
        _prepare(plot, f"{model.endpoint_label}: AUC(t) over time (dots: the chosen times)")
        right = max([*model.times, *(t for m in model.markers for t in m.grid_times)]) * 1.03
        plot.plot([0, right], [0.5, 0.5], pen=pg.mkPen("#888888", width=1, style=Qt.DashLine))
        # the dots and CI bars of the markers are dodged sideways so that they do not overlap
        dodge = 0.012 * right
        for i, marker in enumerate(model.markers):
            if marker.grid_times:
                plot.plot(marker.grid_times, marker.grid_auc, pen=group_pen(i, width=1.5), name=marker.label)
            shift = (i - (len(model.markers) - 1) / 2) * dodge
            shown = [(t + shift, a) for t, a in zip(marker.times, marker.auc) if a is not None]
            if shown:
                xs, ys = zip(*shown)
                plot.plot(list(xs), list(ys), pen=None, symbol="o", symbolSize=7,
                          symbolBrush=group_pen(i).color(), symbolPen=group_pen(i).color())
            bars = [(t + shift, a, lo, hi) for t, a, lo, hi in zip(marker.times, marker.auc, marker.ci_lower,
                                                                   marker.ci_upper)
                    if a is not None and lo is not None and hi is not None]
            if bars:
                t, a, lo, hi = (np.array(v, dtype=float) for v in zip(*bars))
                plot.addItem(pg.ErrorBarItem(x=t, y=a, top=hi - a, bottom=a - lo, beam=1.5, pen=group_pen(i, width=1)))
        plot.getPlotItem().setYRange(0.3, 1.0, padding=0.02)

    def _render_models(self, model: ModelComparison) -> None:
        for level, plot in self.level_plots.items():
            _prepare(plot, f"{level.capitalize()} level")
            _diagonal(plot)
            for i, run in enumerate(model.runs):
                roc = model.roc(run, level)
                if roc.auc is not None:
                    plot.plot(roc.fpr, roc.tpr, pen=group_pen(i), name=f"{run}: AUC {roc.auc_text()}")
            _roc_axes(plot)
        _set_table(self.model_model, self.model_table, model.header(), model.table_rows())
        _set_table(self.test_model, self.test_table, model.test_header(), model.test_rows())
        self.test_table.setVisible(bool(model.tests))
        notes = list(model.notes) + [
            f"{model.n_patients} labelled patients (poor: recurrence within 12 months; good: recurrence-free "
            f"beyond 36 months), {model.n_slides} slides with QC ok. AUC 95% CI and tests: DeLong."]
        self.model_notes.setText("\n".join(notes))

    # -- data ----------------------------------------------------------------------------
    def table_data(self, model):
        if isinstance(model, ModelComparison):
            rows = model.table_rows()
            if model.tests:
                rows += [[], model.test_header(), *model.test_rows()]
            return model.header(), rows
        return model.header(), model.table_rows()

    def snapshot_data(self, model) -> dict[str, Any]:
        out = {"roc": model.to_dict()}
        if not isinstance(model, ModelComparison):
            out["roc_time"] = self.roc_time()
        return out

    def prepare_screenshot(self) -> None:
        self.mode_combo.setCurrentIndex(0)
        super().prepare_screenshot()
