"""The subgroup forest view: the HR of one exposure (the risk group by default) within each
level of the study's subgroup variables.

One pyqtgraph scene holds three plots side by side whose y axes are linked, so a row's text
and its marker cannot drift apart: the text columns subgroup, n and events on the left; the
forest (log-scale HR axis, dashed reference line at 1, a box per row sized by its events,
95% CI whiskers, a diamond for the overall row) in the middle; HR (95% CI), p and the
interaction p on the right. Flagged rows (fewer than ``min_events`` events, or HR not
estimable) are grey and marked with a dagger. Clicking a row opens the KM view of the
exposure groups within that subgroup (``ctx.request_analysis``).

The numbers come from :func:`pathomics_desktop.figures.forest.build_forest` (``stats.subgroups``)
in a worker thread; this module only draws them.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QFont, QPolygonF
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsPolygonItem,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.figures.cox import risk_group_column
from pathomics_desktop.figures.forest import MIN_EVENTS, ForestFigure, build_forest, table_rows
from pathomics_desktop.figures.style import PALETTE
from pathomics_desktop.ui.theme import is_dark
from pathomics_desktop.ui.views.analysis.cox import VariablesView
from pathomics_desktop.ui.views.analysis.plotting import qcolor

#: the exposure choice "the endpoint's risk group"
DEFAULT = "@risk-group"
ROW_PX = 15  #: the least height of a row (pixels); taller when the view has room
HEADER_ROWS = 1.0  #: rows above the first one, for the column titles
TOP = -1.7  #: the top of the y range (row units; row i is drawn at y = i)
LEFT_PX, RIGHT_PX = 330, 290  #: widths of the text columns (pixels)
#: HR axis ticks offered (the ones inside the range are shown)
TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
HR_LIMITS = (0.02, 50.0)  #: the axis never goes beyond; longer CIs end in an arrow
GREY = "#9A9A9A"
BOX_MIN_PX, BOX_MAX_PX = 5.0, 17.0


def _log(x: float) -> float:
    return math.log10(x)


class ForestView(VariablesView):
    view_id = "forest"
    title = "Subgroup forest"

    compute = staticmethod(build_forest)

    def build_controls(self, form) -> None:
        self.endpoint = self.endpoint_combo()
        self.exposure = QComboBox()
        self.exposure.addItem("Pathomics risk group (high vs low)", DEFAULT)
        self.exposure.setToolTip("The HR of this two-level variable is shown within each subgroup")
        self.exposure.currentIndexChanged.connect(self.recompute)
        self.min_events = QSpinBox()
        self.min_events.setRange(1, 1000)
        self.min_events.setValue(MIN_EVENTS)
        self.min_events.setToolTip("Rows with fewer events than this (or a non-estimable HR) are flagged")
        self.min_events.valueChanged.connect(self.recompute)
        row = QWidget()
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        for label, widget in (("Endpoint", self.endpoint), ("Exposure", self.exposure),
                              ("Flag subgroups with fewer events than", self.min_events)):
            line.addWidget(QLabel(label))
            line.addWidget(widget)
        line.addStretch(1)
        form.addRow(row)

    def build_content(self) -> QWidget:
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#1e1e1e" if is_dark() else "w")
        self.graphics.ci.layout.setContentsMargins(4, 4, 8, 4)
        self.graphics.ci.layout.setHorizontalSpacing(0)
        self.left = self.graphics.addPlot(row=0, col=0)
        self.forest = self.graphics.addPlot(row=0, col=1)
        self.right = self.graphics.addPlot(row=0, col=2)
        self.graphics.ci.layout.setColumnFixedWidth(0, LEFT_PX)
        self.graphics.ci.layout.setColumnFixedWidth(2, RIGHT_PX)
        foreground = "#dddddd" if is_dark() else "#222222"
        for plot in (self.left, self.forest, self.right):
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(x=False, y=False)
            plot.hideAxis("left")
            plot.getViewBox().invertY(True)
            axis = plot.getAxis("bottom")
            axis.setPen(pg.mkPen(foreground))
            axis.setTextPen(pg.mkPen(foreground))
            axis.setHeight(40)
        for plot in (self.left, self.right):
            plot.getAxis("bottom").setStyle(showValues=False)
            plot.getAxis("bottom").setPen(pg.mkPen(None))
            plot.setYLink(self.forest)
            plot.setXRange(0, 1, padding=0)
        self.graphics.scene().sigMouseClicked.connect(self._scene_clicked)
        self.graphics.setCursor(Qt.PointingHandCursor)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        # the canvas (plots and legend) is what scrolls and what Copy image / Export draw
        self.canvas = QWidget()
        column = QVBoxLayout(self.canvas)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.graphics, 1)
        column.addWidget(self.legend)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.NoFrame)
        self.scroll.setWidget(self.canvas)
        self.figure: ForestFigure | None = None
        self.texts: list[list[pg.TextItem]] = []  #: per drawn row, its text items (tests read them)
        return self.scroll

    def export_widget(self) -> QWidget:
        return self.canvas

    # -- choices --------------------------------------------------------------------------
    def _set_specs(self, specs) -> None:
        """Offer every two-level categorical variable as the exposure."""
        current = self.exposure.currentData()
        self.exposure.blockSignals(True)
        self.exposure.clear()
        self.exposure.addItem("Pathomics risk group (high vs low)", DEFAULT)
        for spec in specs:
            if spec.categorical and len(spec.levels) == 2:
                self.exposure.addItem(f"{spec.label} ({spec.levels[1]} vs {spec.levels[0]})", spec.column)
        self.exposure.setCurrentIndex(max(self.exposure.findData(current), 0))
        self.exposure.blockSignals(False)

    def exposure_column(self) -> str:
        chosen = self.exposure.currentData()
        return risk_group_column(self.endpoint.currentData()) if chosen in (None, DEFAULT) else chosen

    def params(self) -> dict:
        return {"endpoint": self.endpoint.currentData(), "exposure": self.exposure_column(),
                "min_events": self.min_events.value()}

    def prepare_screenshot(self) -> None:
        """The study's Figure S2: the OS risk group, every included patient's subgroups."""
        self.endpoint.blockSignals(True)
        self.endpoint.setCurrentIndex(self.endpoint.findData("os"))
        self.endpoint.blockSignals(False)
        self.exposure.setCurrentIndex(0)
        super().prepare_screenshot()

    # -- drawing --------------------------------------------------------------------------
    def render(self, model: ForestFigure) -> None:
        self.figure = model
        for plot in (self.left, self.forest, self.right):
            plot.clear()
        self.texts = []
        n_rows = len(model.rows)
        self.graphics.setMinimumHeight(int((n_rows - TOP - 0.5) * ROW_PX) + 56)
        dark = is_dark()
        ink = "#dddddd" if dark else "#222222"
        bold = QFont()
        bold.setBold(True)
        self._bands(model, dark)
        # column titles
        for plot, x, anchor, text in ((self.left, 0.01, (0, 0.5), "Subgroup"), (self.left, 0.74, (1, 0.5), "n"),
                                      (self.left, 0.98, (1, 0.5), "Events"),
                                      (self.right, 0.03, (0, 0.5), "HR (95% CI)"), (self.right, 0.62, (1, 0.5), "p"),
                                      (self.right, 0.99, (1, 0.5), "p interaction")):
            self._text(plot, x, -HEADER_ROWS - 0.1, text, anchor, ink, bold)
        for y, row in enumerate(model.rows):
            colour = GREY if row.flagged else ink
            font = bold if row.kind in ("header", "overall") else None
            cells = row.texts()
            self.texts.append([
                self._text(self.left, 0.01, y, cells["subgroup"].replace("  ", "    ", 1), (0, 0.5), colour, font),
                self._text(self.left, 0.74, y, cells["n"], (1, 0.5), colour),
                self._text(self.left, 0.98, y, cells["events"], (1, 0.5), colour),
                self._text(self.right, 0.03, y, cells["hr"], (0, 0.5), colour),
                self._text(self.right, 0.62, y, cells["p"], (1, 0.5), colour),
                self._text(self.right, 0.99, y, cells["p_interaction"], (1, 0.5), colour, font),
            ])
        self._draw_forest(model, ink)
        self.forest.setYRange(TOP, n_rows - 0.5, padding=0)
        self.legend.setText(f"Boxes: HR of {model.exposure_label} {model.exposure_level} vs {model.reference_level} "
                            f"within the subgroup, area by events; whiskers: 95% CI; diamond: all patients. "
                            f"Interaction p: likelihood-ratio test of exposure x subgroup. {model.flag_rule}. "
                            "Click a row to open its Kaplan-Meier curves.")

    def _text(self, plot, x: float, y: float, text: str, anchor, colour: str, font: QFont | None = None):
        item = pg.TextItem(text, color=colour, anchor=anchor)
        if font is not None:
            item.setFont(font)
        item.setPos(x, y)
        plot.addItem(item)
        return item

    def _bands(self, model: ForestFigure, dark: bool) -> None:
        """Light bands behind every other subgroup variable, across all three plots."""
        groups: list[list[int]] = []
        for y, row in enumerate(model.rows):
            if row.kind != "level" or not groups:
                groups.append([])
            groups[-1].append(y)
        shade = qcolor("#ffffff" if dark else "#000000", 14)
        for index, ys in enumerate(groups):
            if index % 2:
                for plot in (self.left, self.forest, self.right):
                    band = pg.LinearRegionItem((ys[0] - 0.5, ys[-1] + 0.5), orientation="horizontal",
                                               movable=False, brush=pg.mkBrush(shade), pen=pg.mkPen(None))
                    band.setZValue(-20)
                    plot.addItem(band)

    def _x_range(self, model: ForestFigure) -> tuple[float, float]:
        lows = [r.hr_lower for r in model.rows if r.estimable] + [1.0]
        highs = [r.hr_upper for r in model.rows if r.estimable] + [1.0]
        low = max(min(lows), HR_LIMITS[0])
        high = min(max(highs), HR_LIMITS[1])
        return _log(low) - 0.08, _log(high) + 0.08

    def _draw_forest(self, model: ForestFigure, ink: str) -> None:
        x_low, x_high = self._x_range(model)
        self.forest.setXRange(x_low, x_high, padding=0)
        ticks = [(_log(t), f"{t:g}") for t in TICKS if x_low <= _log(t) <= x_high]
        self.forest.getAxis("bottom").setTicks([ticks])
        self.forest.setLabel("bottom", f"HR ({model.exposure_level} vs {model.reference_level}), log scale")
        line = pg.InfiniteLine(pos=0.0, angle=90, pen=pg.mkPen(ink, width=1, style=Qt.DashLine))
        line.setZValue(-5)
        self.forest.addItem(line)
        max_events = max([r.events or 0 for r in model.rows if r.kind == "level"] + [1])
        # per flag state: whisker end points (pairs), boxes (x, y, size), arrows (x, y, symbol)
        whiskers = {False: ([], []), True: ([], [])}
        boxes = {False: ([], [], []), True: ([], [], [])}
        arrows = {False: ([], [], []), True: ([], [], [])}
        for y, row in enumerate(model.rows):
            if row.kind == "header" or not row.estimable:
                continue
            lo, hi = _log(row.hr_lower), _log(row.hr_upper)
            lo_c, hi_c = max(lo, x_low), min(hi, x_high)
            whiskers[row.flagged][0].extend((lo_c, hi_c))
            whiskers[row.flagged][1].extend((y, y))
            for beyond, x, symbol in ((lo < x_low, x_low, "t3"), (hi > x_high, x_high, "t2")):
                if beyond:
                    for target, value in zip(arrows[row.flagged], (x, y, symbol)):
                        target.append(value)
            if row.kind == "overall":
                self._diamond(lo_c, _log(row.hr), hi_c, y, row.flagged)
                continue
            size = BOX_MIN_PX + (BOX_MAX_PX - BOX_MIN_PX) * math.sqrt((row.events or 0) / max_events)
            for target, value in zip(boxes[row.flagged], (min(max(_log(row.hr), x_low), x_high), y, size)):
                target.append(value)
        for flagged in (False, True):
            box_colour = GREY if flagged else PALETTE[0]
            line_colour = GREY if flagged else ink
            wx, wy = whiskers[flagged]
            if wx:
                # not antialiased: every whisker the same crisp width, whatever its pixel row
                curve = pg.PlotCurveItem(wx, wy, connect="pairs", pen=pg.mkPen(line_colour, width=2),
                                         antialias=False)
                curve.setZValue(-1)
                self.forest.addItem(curve)
            bx, by, size = boxes[flagged]
            if bx:
                self.forest.addItem(pg.ScatterPlotItem(bx, by, size=size, symbol="s", pen=pg.mkPen(box_colour),
                                                       brush=pg.mkBrush(box_colour)))
            ax, ay, symbols = arrows[flagged]
            if ax:
                self.forest.addItem(pg.ScatterPlotItem(ax, ay, size=9, symbol=symbols, pen=pg.mkPen(line_colour),
                                                       brush=pg.mkBrush(line_colour)))

    def _diamond(self, lo: float, mid: float, hi: float, y: float, flagged: bool) -> None:
        half = 0.38
        polygon = QPolygonF([QPointF(lo, y), QPointF(mid, y - half), QPointF(hi, y), QPointF(mid, y + half)])
        item = QGraphicsPolygonItem(polygon)
        colour = GREY if flagged else PALETTE[1]
        pen = pg.mkPen(colour)
        pen.setCosmetic(True)
        item.setPen(pen)
        item.setBrush(pg.mkBrush(colour))
        self.forest.addItem(item)
        self.overall_item = item

    # -- clicking -------------------------------------------------------------------------
    def row_at(self, scene_pos) -> int | None:
        """The drawn row under a scene position (None outside the rows)."""
        if self.figure is None:
            return None
        view = self.forest.getViewBox()
        y = view.mapSceneToView(scene_pos).y()
        index = int(round(y))
        if not -0.5 <= y < len(self.figure.rows) - 0.5:
            return None
        return index

    def row_scene_pos(self, index: int, column: str = "forest") -> QPointF:
        """The scene position of the middle of row ``index`` in a plot (tests click there)."""
        plot = {"left": self.left, "forest": self.forest, "right": self.right}[column]
        view = plot.getViewBox()
        x_low, x_high = view.viewRange()[0]
        return view.mapViewToScene(QPointF((x_low + x_high) / 2, float(index)))

    def _scene_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        index = self.row_at(event.scenePos())
        if index is not None:
            self.open_row(index)

    def open_row(self, index: int) -> None:
        """Open the KM of row ``index``: the exposure groups within its subgroup (a variable
        header row opens nothing)."""
        if self.figure is None or self.ctx is None:
            return
        row = self.figure.rows[index]
        if not row.clickable:
            return
        self.ctx.request_analysis.emit("km", self.figure.km_request(row))

    # -- copy and screenshots ---------------------------------------------------------------
    def table_data(self, model):
        return table_rows(model)

    def snapshot_data(self, model) -> dict:
        return {"forest": model.to_dict()}
