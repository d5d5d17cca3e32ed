"""The Kaplan-Meier view: survival curves per group with CI bands, censor marks and median
lines; the number-at-risk table (at risk, cumulative events, censored) in a second plot under
the curves whose x axis is linked to theirs, so its columns stay under the curve's times when
the user pans or zooms; a legend table beside the plot (n, events, median (95% CI), HR (95% CI)
against the reference) with the log-rank (and trend) p under it.

Hover shows S(t) and its CI of every curve at the cursor time. Clicking a curve or a legend
row lists the group's patients, clicking a censor mark (+) lists the patients censored then;
from the list a patient opens in the form and their slide in the viewer.

The numbers come from :func:`pathomics_desktop.figures.km.build_km` (the ``stats`` package),
computed in a worker thread; this module only draws them.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QDoubleValidator, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.figures.km import (
    DEFAULT_STEP,
    ENDPOINTS,
    RISK,
    UNITS,
    build_km,
    grouping_choices,
    legend_rows,
    parse_breaks,
    risk_group_column,
)
from pathomics_desktop.figures.style import format_p, group_colour
from pathomics_desktop.ui.theme import is_dark
from pathomics_desktop.ui.views.analysis.base import AnalysisView, labelled_row
from pathomics_desktop.ui.views.analysis.patient_list import PatientListDialog
from pathomics_desktop.ui.views.analysis.plotting import group_brush, group_pen, plot_widget, qcolor

#: the grouping choice "let the figure decide" (the risk group when applied, else all patients)
DEFAULT = "@default"
#: left-axis width shared by the curve plot and the at-risk plot (pixels), so their x pixels agree
LEFT_AXIS_WIDTH = 132
RISK_ROW_HEIGHT = 17
#: how near (pixels) a click must be to a censor mark or a curve
CENSOR_PICK_PX = 7
CURVE_PICK_PX = 9
RISK_BLOCKS = (("Number at risk", "at_risk"), ("Cumulative events", "events_by"), ("Censored", "censored_by"))
LEGEND_COLUMNS = ("Group", "n", "Events", "Median (95% CI)", "HR (95% CI)", "p")
#: room left of t = 0 (fraction of the time range), so the numbers at t = 0 are not clipped
X_MARGIN = 0.04


def step_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points of a right-continuous step function through (x_i, y_i) (y_i holds on [x_i, x_i+1))."""
    return np.repeat(x, 2)[1:], np.repeat(y, 2)[:-1]


def _p_phrase(p) -> str:
    """``"< 0.001"`` or ``"= 0.042"`` (p as journals write it)."""
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def _swatch(colour: str) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(colour))
    return QIcon(pixmap)


class KaplanMeierView(AnalysisView):
    view_id = "km"
    title = "Kaplan-Meier"

    def __init__(self, parent=None):
        self._group_choice: str | None = DEFAULT
        self._group_kind = "category"
        self._choices = []
        self._options_cache = None
        self.last_patient_list: PatientListDialog | None = None
        self.hover_values: dict[str, tuple] = {}
        super().__init__(parent)

    # -- controls ---------------------------------------------------------------------
    def build_controls(self, form) -> None:
        self.endpoint_combo = QComboBox()
        for key, (_t, _e, label) in ENDPOINTS.items():
            self.endpoint_combo.addItem(label, key)
        self.endpoint_combo.currentIndexChanged.connect(self._endpoint_changed)
        self.group_combo = QComboBox()
        self.group_combo.addItem("Risk group (when a signature is applied)", DEFAULT)
        self.group_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.group_combo.currentIndexChanged.connect(self._group_changed)
        self.cut_edit = QLineEdit()
        self.cut_edit.setValidator(QDoubleValidator())
        self.cut_edit.setPlaceholderText("default")
        self.cut_edit.setToolTip("Cut of a numeric grouping: value >= cut is the upper group "
                                 "(default: 200 U/mL for CA19-9, 65 years for age, else the median)")
        self.cut_edit.setMaximumWidth(90)
        self.cut_edit.setEnabled(False)
        self.cut_edit.editingFinished.connect(self._cut_changed)
        self.reference_combo = QComboBox()
        self.reference_combo.addItem("first level", None)
        self.reference_combo.setToolTip("Reference group of the hazard ratios")
        self.reference_combo.currentIndexChanged.connect(self.recompute)
        self.unit_combo = QComboBox()
        for unit in UNITS:
            self.unit_combo.addItem(unit, unit)
        self.unit_combo.currentIndexChanged.connect(self._unit_changed)
        self.breaks_edit = QLineEdit()
        self.breaks_edit.setToolTip("Times of the number-at-risk table: a step (12) or a list (0, 6, 12, 24)")
        self.breaks_edit.setMaximumWidth(170)
        self.breaks_edit.editingFinished.connect(self.recompute)
        self._unit_changed()
        first = labelled_row((("", self.endpoint_combo), ("Group by", self.group_combo), ("Cut", self.cut_edit)))
        second = labelled_row((("", self.reference_combo), ("Time in", self.unit_combo),
                              ("At-risk times", self.breaks_edit)))
        form.addRow("Endpoint", first)
        form.addRow("Reference", second)

    def _endpoint_changed(self, *_args) -> None:
        self.recompute()

    def _group_changed(self, index: int) -> None:
        self._group_choice = self.group_combo.itemData(index)
        choice = next((c for c in self._choices if c.column == self._group_choice), None)
        self._group_kind = choice.kind if choice is not None else "category"
        self.cut_edit.blockSignals(True)
        self.cut_edit.clear()
        self.cut_edit.blockSignals(False)
        self.cut_edit.setEnabled(self._group_kind == "number")
        self._reset_reference()
        self.recompute()

    def _cut_changed(self) -> None:
        if self._group_kind == "number":
            self._reset_reference()
            self.recompute()

    def _unit_changed(self, *_args) -> None:
        unit = self.unit_combo.currentData()
        self.breaks_edit.setPlaceholderText(f"every {DEFAULT_STEP[unit]:g} {unit}")
        self.recompute()

    def _reset_reference(self) -> None:
        self.reference_combo.blockSignals(True)
        self.reference_combo.clear()
        self.reference_combo.addItem("first level", None)
        self.reference_combo.blockSignals(False)

    def params(self) -> dict:
        endpoint = self.endpoint_combo.currentData()
        params = {"endpoint": endpoint, "unit": self.unit_combo.currentData(),
                  "breaks": parse_breaks(self.breaks_edit.text()),
                  "reference": self.reference_combo.currentData()}
        if self._group_choice == RISK:
            params["group"] = risk_group_column(endpoint)
        elif self._group_choice != DEFAULT:
            params["group"] = self._group_choice
        if self._group_kind == "number" and self.cut_edit.text().strip():
            params["cut"] = float(self.cut_edit.text().replace(",", "."))
        return params

    compute = staticmethod(build_km)

    # -- the grouping choices (from the snapshot's filter options) ---------------------------
    def set_context(self, ctx) -> None:
        from pathomics_desktop.ui.views.analysis.filter_panel import OptionsCache

        if self._options_cache is not None:
            self._options_cache.ready.disconnect(self._options_ready)
            self._options_cache = None
        super().set_context(ctx)
        if ctx is not None:
            self._options_cache = OptionsCache.of(ctx)
            self._options_cache.ready.connect(self._options_ready)
            self._options_cache.request()

    def _options_ready(self, options) -> None:
        self._choices = grouping_choices(options)
        current = self._group_choice
        if current == DEFAULT:
            current = RISK if any(c.column == RISK for c in self._choices) else None
        self.group_combo.blockSignals(True)
        self.group_combo.clear()
        for choice in self._choices:
            self.group_combo.addItem(choice.label, choice.column)
        index = self.group_combo.findData(current)
        if index < 0:  # a column the options do not offer (e.g. a derived one asked for by a request)
            self.group_combo.addItem(str(current), current)
            index = self.group_combo.count() - 1
        self.group_combo.setCurrentIndex(index)
        self.group_combo.blockSignals(False)
        self._group_choice = current
        choice = next((c for c in self._choices if c.column == current), None)
        self._group_kind = choice.kind if choice is not None else self._group_kind
        self.cut_edit.setEnabled(self._group_kind == "number")

    def _select_group(self, choice: str | None, kind: str) -> None:
        if choice == DEFAULT and self._choices:  # the options are in: the default is concrete
            choice = RISK if any(c.column == RISK for c in self._choices) else None
        self._group_choice, self._group_kind = choice, kind
        index = self.group_combo.findData(choice)
        self.group_combo.blockSignals(True)
        if index < 0:
            self.group_combo.addItem(str(choice), choice)
            index = self.group_combo.count() - 1
        self.group_combo.setCurrentIndex(index)
        self.group_combo.blockSignals(False)
        self.cut_edit.setEnabled(kind == "number")

    def apply_request(self, request: dict) -> None:
        """Show the curves asked for by another view: ``{"endpoint": "os", "group":
        "pathomics_os_group", "subgroup": ("sex", "male"), "cut": 200}``; a subgroup narrows
        the shared cohort filter to that level."""
        endpoint = request.get("endpoint") or self.endpoint_combo.currentData()
        self.endpoint_combo.blockSignals(True)
        self.endpoint_combo.setCurrentIndex(max(self.endpoint_combo.findData(endpoint), 0))
        self.endpoint_combo.blockSignals(False)
        if "group" in request:
            group = request["group"] or None
            choice = RISK if group == risk_group_column(endpoint) else group
            known = next((c for c in self._choices if c.column == choice), None)
            kind = known.kind if known is not None else ("number" if request.get("cut") is not None else "category")
            self._select_group(choice, kind)
        self.cut_edit.blockSignals(True)
        self.cut_edit.setText("" if request.get("cut") is None else f"{float(request['cut']):g}")
        self.cut_edit.blockSignals(False)
        self._reset_reference()
        if request.get("reference"):
            self.reference_combo.addItem(str(request["reference"]), str(request["reference"]))
            self.reference_combo.setCurrentIndex(1)
        subgroup = request.get("subgroup")
        if subgroup and self.ctx is not None:
            column, level = subgroup
            self.ctx.set_cohort_filter(self.ctx.cohort_filter.with_subgroup(column, level))
        self.recompute()

    def prepare_screenshot(self) -> None:
        """Overall survival by the pathomics risk group (when scores exist), months, yearly breaks."""
        self.endpoint_combo.blockSignals(True)
        self.endpoint_combo.setCurrentIndex(self.endpoint_combo.findData("os"))
        self.endpoint_combo.blockSignals(False)
        has_risk = any(c.column == RISK for c in self._choices)
        self._select_group(RISK if has_risk else DEFAULT, "category")
        self._reset_reference()
        super().prepare_screenshot()

    # -- content ----------------------------------------------------------------------
    def build_content(self) -> QWidget:
        widget = QWidget()
        outer = QHBoxLayout(widget)
        outer.setContentsMargins(0, 0, 0, 0)
        splitter = QSplitter(Qt.Horizontal)
        plots = QWidget()
        column = QVBoxLayout(plots)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        self.curve_plot = plot_widget(x_label="Time (months)", y_label="Survival probability")
        self.risk_plot = plot_widget()
        for plot in (self.curve_plot, self.risk_plot):
            plot.getPlotItem().getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        risk_item = self.risk_plot.getPlotItem()
        risk_item.hideAxis("bottom")
        risk_item.showGrid(x=False, y=False)
        risk_item.setMouseEnabled(x=False, y=False)
        risk_item.hideButtons()
        risk_item.getViewBox().invertY(True)
        self.risk_plot.setXLink(self.curve_plot)
        curve_item = self.curve_plot.getPlotItem()
        curve_item.setMouseEnabled(x=True, y=False)
        curve_item.hideButtons()
        self.risk_plot.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.hover_label = QLabel(" ")
        self.hover_label.setTextFormat(Qt.RichText)
        self.hover_label.setWordWrap(True)
        column.addWidget(self.curve_plot, 1)
        column.addWidget(self.risk_plot)
        column.addWidget(self.hover_label)
        splitter.addWidget(plots)
        side = QWidget()
        side_column = QVBoxLayout(side)
        side_column.setContentsMargins(6, 0, 0, 0)
        self.legend_title = QLabel()
        self.legend_title.setWordWrap(True)
        side_column.addWidget(self.legend_title)
        self.legend_table = QTableWidget(0, len(LEGEND_COLUMNS))
        self.legend_table.setHorizontalHeaderLabels(list(LEGEND_COLUMNS))
        self.legend_table.verticalHeader().setVisible(False)
        self.legend_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.legend_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.legend_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.legend_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.legend_table.setToolTip("Click a group to list its patients")
        self.legend_table.cellClicked.connect(lambda row, _col: self.open_group(self._legend_levels[row]))
        self._legend_levels: list[str] = []
        side_column.addWidget(self.legend_table)
        self.tests_label = QLabel()
        self.tests_label.setWordWrap(True)
        self.tests_label.setTextFormat(Qt.RichText)
        side_column.addWidget(self.tests_label)
        hint = QLabel("Hover for S(t) with its 95% CI. Click a curve or a group to list its patients, "
                      "a censor mark (+) for the patients censored then.")
        hint.setWordWrap(True)
        hint.setEnabled(False)
        side_column.addWidget(hint)
        side_column.addStretch(1)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([760, 420])
        outer.addWidget(splitter)
        self.content_splitter = splitter
        self.curve_plot.scene().sigMouseMoved.connect(self._mouse_moved)
        self.curve_plot.scene().sigMouseClicked.connect(self._mouse_clicked)
        return widget

    # -- drawing ----------------------------------------------------------------------
    def _digits(self, model) -> int:
        return 1 if model.unit == "months" else 2

    def render(self, model) -> None:
        self._draw_curves(model)
        self._draw_risk_table(model)
        self._fill_legend(model)
        self._fill_reference(model)
        self.hover_label.setText(" ")
        self.hover_values = {}

    def _draw_curves(self, model) -> None:
        item = self.curve_plot.getPlotItem()
        item.clear()
        item.setTitle(f"{model.endpoint_label} by {model.group_label}" if model.group
                      else f"{model.endpoint_label}: all patients", size="11pt")
        item.setLabel("bottom", model.time_label)
        item.setLabel("left", f"{model.endpoint_label} probability")
        medians = []
        for group in model.groups:
            band_lower = np.nan_to_num(group.lower, nan=0.0)
            band_upper = np.where(np.isfinite(group.upper), group.upper, group.survival)
            lower = pg.PlotDataItem(*step_xy(group.time, band_lower), pen=pg.mkPen(None))
            upper = pg.PlotDataItem(*step_xy(group.time, band_upper), pen=pg.mkPen(None))
            item.addItem(lower)
            item.addItem(upper)
            item.addItem(pg.FillBetweenItem(lower, upper, brush=group_brush(group.index, 45)))
            curve = pg.PlotDataItem(*step_xy(group.time, group.survival), pen=group_pen(group.index, 2.0),
                                    name=group.label)
            item.addItem(curve)
            if group.censor_time.size:
                item.addItem(pg.ScatterPlotItem(group.censor_time, group.censor_survival, symbol="+", size=9,
                                                pen=group_pen(group.index, 1.2), brush=None))
            if group.median is not None:
                medians.append(group.median)
                item.addItem(pg.PlotDataItem([group.median, group.median], [0.0, 0.5],
                                             pen=group_pen(group.index, 1.0, Qt.DashLine)))
        if medians:
            item.addItem(pg.PlotDataItem([0.0, max(medians)], [0.5, 0.5],
                                         pen=pg.mkPen(qcolor("#777777"), width=1.0, style=Qt.DashLine)))
        self.hover_line = pg.InfiniteLine(angle=90, movable=False,
                                          pen=pg.mkPen(qcolor("#999999", 160), width=1, style=Qt.DotLine))
        self.hover_line.setVisible(False)
        item.addItem(self.hover_line, ignoreBounds=True)
        ticks = [(b, f"{b:g}") for b in model.breaks]
        item.getAxis("bottom").setTicks([ticks, []])
        item.getAxis("left").setTicks([[(v, f"{v:.1f}") for v in np.arange(0.0, 1.01, 0.2)], []])
        margin = X_MARGIN * model.x_max
        item.setLimits(xMin=-margin)
        item.setYRange(-0.02, 1.02, padding=0)
        item.setXRange(-margin, model.x_max * 1.02, padding=0)

    def _draw_risk_table(self, model) -> None:
        item = self.risk_plot.getPlotItem()
        item.clear()
        ticks = []
        row = 0
        dark = is_dark()
        heading = "#dddddd" if dark else "#222222"
        for title, key in RISK_BLOCKS:
            ticks.append((row, title))
            row += 1
            for group in model.groups:
                ticks.append((row, group.label))
                colour = qcolor(group_colour(group.index))
                for b, value in zip(model.breaks, getattr(group, key)):
                    text = pg.TextItem(str(value), color=colour, anchor=(0.5, 0.5))
                    text.setPos(b, row)
                    item.addItem(text)
                row += 1
        axis = item.getAxis("left")
        axis.setTicks([ticks, []])
        axis.setStyle(tickLength=0)
        axis.setTextPen(pg.mkPen(heading))
        item.setYRange(-0.6, row - 0.4, padding=0)
        self.risk_plot.setFixedHeight(row * RISK_ROW_HEIGHT + 14)

    def _fill_legend(self, model) -> None:
        reference = model.reference
        self.legend_title.setText(f"<b>{model.group_label}</b> (n = {model.n}"
                                  + (f"; {model.n_missing} without data left out)" if model.n_missing else ")"))
        self.legend_table.setRowCount(len(model.groups))
        self._legend_levels = model.levels
        for row, (group, cells) in enumerate(zip(model.groups, legend_rows(model)[1:])):
            for col, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                if col == 0:
                    cell.setIcon(_swatch(group_colour(group.index)))
                    cell.setForeground(qcolor(group_colour(group.index)))
                else:
                    cell.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.legend_table.setItem(row, col, cell)
        self._fit_legend()
        lines = [f"Median survival in {model.unit}; NR: not reached."]
        if reference is not None:
            lines.append(f"HR against {escape(reference)} (the reference): Cox model with the group as "
                         "the only covariate (Efron ties), Wald p.")
        if model.logrank is not None:
            lr = model.logrank
            lines.insert(0, f"<b>Log-rank p {escape(_p_phrase(lr['p']))}</b> "
                            f"(χ² = {lr['chisq']:.2f}, {lr['df']} df)")
        if model.trend is not None:
            lines.insert(1, f"<b>Log-rank test for trend p {escape(_p_phrase(model.trend['p']))}</b> "
                            f"(χ² = {model.trend['chisq']:.2f}, 1 df; levels scored 1..{len(model.groups)})")
        lines.extend(escape(note) for note in model.notes)
        self.tests_label.setText("<br>".join(lines))

    def _fit_legend(self) -> None:
        """Size the legend table to its rows and columns, and give the side panel its width."""
        table = self.legend_table
        table.resizeColumnsToContents()
        width = table.verticalHeader().width() + sum(table.columnWidth(c) for c in range(table.columnCount()))
        height = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(table.rowCount()))
        frame = 2 * table.frameWidth()
        table.setFixedHeight(height + frame + 2)
        table.setMinimumWidth(width + frame + 2)
        total = sum(self.content_splitter.sizes())
        side = width + frame + 12
        if total > side:
            self.content_splitter.setSizes([total - side, side])

    def _fill_reference(self, model) -> None:
        self.reference_combo.blockSignals(True)
        self.reference_combo.clear()
        self.reference_combo.addItem("first level", None)
        for level in model.levels if len(model.levels) > 1 else []:
            self.reference_combo.addItem(level, level)
        chosen = self.reference_combo.findData(model.reference) if model.reference != model.levels[0] else 0
        self.reference_combo.setCurrentIndex(max(chosen, 0))
        self.reference_combo.blockSignals(False)

    # -- hover and click --------------------------------------------------------------
    def _view_box(self):
        return self.curve_plot.getPlotItem().getViewBox()

    def _mouse_moved(self, scene_pos) -> None:
        if self.computed is None or not self._view_box().sceneBoundingRect().contains(scene_pos):
            return
        self.show_hover(self._view_box().mapSceneToView(scene_pos).x())

    def show_hover(self, t: float) -> None:
        """S(t) and its 95% CI of every curve at time ``t`` (in the figure's unit)."""
        model = self.computed.model
        self.hover_values = {}
        parts = []
        for group in model.groups:
            value = group.survival_at(t)
            if value is None:
                continue
            self.hover_values[group.label] = value
            s, lo, hi = value
            ci = f" ({lo:.2f}-{hi:.2f})" if lo is not None and hi is not None else ""
            parts.append(f"<span style='color:{group_colour(group.index)}'><b>{group.label}</b></span> "
                         f"{s:.2f}{ci}")
        self.hover_line.setPos(t)
        self.hover_line.setVisible(t >= 0)
        self.hover_label.setText(f"t = {t:.{self._digits(model)}f} {model.unit}: S(t) (95% CI) "
                                 + ("; ".join(parts) if parts else "beyond follow-up"))

    def _mouse_clicked(self, event) -> None:
        if self.computed is None or event.button() != Qt.LeftButton:
            return
        pos = event.scenePos()
        if not self._view_box().sceneBoundingRect().contains(pos):
            return
        point = self._view_box().mapSceneToView(pos)
        self.click_at(point.x(), point.y())

    def click_at(self, t: float, s: float) -> None:
        """A click at (time ``t``, survival ``s``): the nearest censor mark within a few pixels
        lists the patients censored then; else the nearest curve lists its group."""
        model = self.computed.model
        px, py = self._view_box().viewPixelSize()
        best = None
        for group in model.groups:
            if not group.censor_time.size:
                continue
            dist = np.hypot((group.censor_time - t) / px, (group.censor_survival - s) / py)
            i = int(np.argmin(dist))
            if dist[i] <= CENSOR_PICK_PX and (best is None or dist[i] < best[0]):
                best = (float(dist[i]), group, float(group.censor_time[i]))
        if best is not None:
            self.open_censored(best[1].label, best[2])
            return
        nearest = None
        for group in model.groups:
            value = group.survival_at(t)
            if value is None:
                continue
            dist = abs(value[0] - s) / py
            if dist <= CURVE_PICK_PX and (nearest is None or dist < nearest[0]):
                nearest = (dist, group)
        if nearest is not None:
            self.open_group(nearest[1].label)

    def _show_patients(self, title: str, rows: list[dict]) -> None:
        unit = self.computed.model.unit
        key = f"follow_up_{unit}"
        rows = [{"study_id": r["study_id"], key: r["follow_up"], "status": r["status"]} for r in rows]
        self.last_patient_list = PatientListDialog(self.ctx, title, rows, ["study_id", key, "status"], parent=self)
        self.last_patient_list.show()

    def open_group(self, label: str) -> None:
        """List the patients of group ``label``."""
        model = self.computed.model
        group = model.group_by_label(label)
        name = f"{model.group_label} {label}" if model.group else "All patients"
        self._show_patients(f"{model.endpoint_label}: {name}", group.patients())

    def open_censored(self, label: str, t: float) -> None:
        """List the patients of group ``label`` censored at time ``t``."""
        model = self.computed.model
        group = model.group_by_label(label)
        name = f"{model.group_label} {label}" if model.group else "all patients"
        self._show_patients(f"{model.endpoint_label}: {name}, censored at {t:.{self._digits(model)}f} {model.unit}",
                            group.censored_at(t))

    # -- data -------------------------------------------------------------------------
    def legend_rows(self, model) -> list[dict]:
        """The legend table as shown (formatted text)."""
        return [{self.legend_table.horizontalHeaderItem(c).text(): self.legend_table.item(r, c).text()
                 for c in range(self.legend_table.columnCount())} for r in range(self.legend_table.rowCount())]

    def table_data(self, model):
        """Per group n, events, median (CI), HR (CI, p); then the number-at-risk table."""
        header = ["group", "n", "events", f"median ({model.unit})", "median lower", "median upper",
                  "HR", "HR lower", "HR upper", "HR p"]
        rows = []
        for g in model.groups:
            hr = g.hr or {}
            rows.append([g.label, g.n, g.events, g.median, g.median_lower, g.median_upper,
                         1.0 if g.label == model.reference else hr.get("hr"), hr.get("hr_lower"),
                         hr.get("hr_upper"), hr.get("p")])
        if model.logrank is not None:
            rows.append(["log-rank p", model.logrank["p"]])
        if model.trend is not None:
            rows.append(["trend p", model.trend["p"]])
        rows.append([])
        rows.append([f"time ({model.unit})", *[f"{b:g}" for b in model.breaks]])
        for title, key in RISK_BLOCKS:
            for g in model.groups:
                rows.append([f"{title}: {g.label}", *getattr(g, key)])
        return header, rows

    def snapshot_data(self, model) -> dict:
        return {**model.to_dict(), "legend": self.legend_rows(model), "tests": self.tests_label.text()}
