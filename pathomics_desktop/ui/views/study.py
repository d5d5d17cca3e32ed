"""Study set-up: the codebook with its user-defined variables, the patient flow (the study's
Figure 1) and the data sets.

Everything shown comes from one Qt-free call,
:func:`pathomics_desktop.cohort.study_overview.study_overview` (run in a worker): the flow
counts are :func:`pathomics_desktop.cohort.flow.patient_flow`'s, the data-set counts and
events come from the analysis rows. New variables are added through
:func:`pathomics_desktop.registry.service.add_variable` (validated there; the message of a
refused variable is shown inline).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QPointF, QRectF, QSortFilterProxyModel, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGraphicsScene,
    QGraphicsTextItem,
    QGraphicsView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.cohort.study_overview import DATA_SET_LABELS, DATA_SETS, study_overview
from pathomics_desktop.registry.codebook import TYPES
from pathomics_desktop.ui.crash import is_user_error_trace
from pathomics_desktop.ui.models.codebook import CodebookModel
from pathomics_desktop.ui.settings import header_restored
from pathomics_desktop.ui.views.base import View

TABS = ("codebook", "flow", "splits")
BOX_FILL = {"enrolled": "#dbe9f7", "excluded": "#f6dede", "included": "#dcefdc", "set": "#fbecc8"}
BOX_FILL_DARK = {"enrolled": "#24405e", "excluded": "#5a2c2c", "included": "#24502c", "set": "#5a4a1c"}


def _percent(part: int, whole: int) -> str:
    return f"{part} ({100.0 * part / whole:.1f}%)" if whole else str(part)


class FlowDiagramView(QGraphicsView):
    """Draws a :class:`~pathomics_desktop.cohort.study_overview.Diagram`: boxes on a grid and
    elbow arrows; the picture shrinks to fit the view, never grows past 100 %."""

    H_GAP, V_GAP, PAD = 22, 40, 8

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing)
        self.setAlignment(Qt.AlignCenter)
        self.rects: dict[str, QRectF] = {}
        self.texts: dict[str, str] = {}

    def draw(self, diagram, *, dark: bool = False) -> None:
        scene = self.scene()
        scene.clear()
        self.rects, self.texts = {}, {}
        if not diagram.boxes:
            scene.addText("No patients in the registry yet: import a spreadsheet (Import view).")
            return
        ink = QColor("#e6e6e6" if dark else "#202020")
        fills = BOX_FILL_DARK if dark else BOX_FILL
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF(), 10.0))
        items = {}
        for box in diagram.boxes:
            first, *rest = box.lines
            html = f"<b>{first}</b>" + "".join(f"<br>{line}" for line in rest)
            item = QGraphicsTextItem()
            item.setFont(font)
            item.setDefaultTextColor(ink)
            item.setHtml(f"<div style='text-align:center'>{box.title}<br>{html}</div>"
                         if box.kind == "enrolled" else html)
            items[box.key] = item
            self.texts[box.key] = item.toPlainText()
        natural = {b.key: items[b.key].boundingRect().width() + 2 * self.PAD for b in diagram.boxes}
        main_w = max(natural[b.key] for b in diagram.boxes if b.kind in ("enrolled", "included"))
        # each grid unit (column) is as wide as its widest box; fractional units interpolate
        units = sorted({int(b.x) for b in diagram.boxes if float(b.x).is_integer()} | {0})
        unit_w = {u: max([natural[b.key] for b in diagram.boxes if b.x == u] + [main_w]) for u in units}
        centres, left = {}, 0.0
        for u in range(max(units) + 2):
            width = unit_w.get(u, main_w)
            centres[u] = left + width / 2
            left += width + self.H_GAP

        def px(x: float) -> float:
            base = int(x)
            return centres[base] + (x - base) * (centres[base + 1] - centres[base])

        rows = sorted({b.y for b in diagram.boxes})
        row_h = {r: max(items[b.key].boundingRect().height() for b in diagram.boxes if b.y == r) + 2 * self.PAD
                 for r in rows}
        row_top, y = {}, 0.0
        for r in rows:
            row_top[r] = y
            y += row_h[r] + self.V_GAP
        pen = QPen(ink, 1.4)
        for box in diagram.boxes:
            item = items[box.key]
            text_w, text_h = item.boundingRect().width(), item.boundingRect().height()
            width = max(natural[box.key], main_w)
            height = text_h + 2 * self.PAD
            rect = QRectF(px(box.x) - width / 2, row_top[box.y], width, height)
            scene.addRect(rect, pen, QBrush(QColor(fills[box.kind])))
            item.setPos(rect.center().x() - text_w / 2, rect.top() + self.PAD)
            scene.addItem(item)
            self.rects[box.key] = rect
        for arrow in diagram.arrows:
            self._arrow(self.rects[arrow.source], self.rects[arrow.target], arrow.kind, pen)
        self.setSceneRect(scene.itemsBoundingRect().adjusted(-20, -20, 20, 20))
        self._fit()

    def _arrow(self, src: QRectF, dst: QRectF, kind: str, pen: QPen) -> None:
        scene = self.scene()
        path = QPainterPath()
        if kind == "side":
            start, end = QPointF(src.center().x(), dst.center().y()), QPointF(dst.left(), dst.center().y())
            path.moveTo(start)
            path.lineTo(end)
        else:
            start, end = QPointF(src.center().x(), src.bottom()), QPointF(dst.center().x(), dst.top())
            path.moveTo(start)
            if abs(start.x() - end.x()) > 0.5:
                mid = dst.top() - self.V_GAP / 2
                path.lineTo(start.x(), mid)
                path.lineTo(end.x(), mid)
            path.lineTo(end)
        scene.addPath(path, pen)
        tail = path.pointAtPercent(0.999) if path.length() > 10 else start
        direction = end - tail
        length = max((direction.x() ** 2 + direction.y() ** 2) ** 0.5, 1e-6)
        ux, uy = direction.x() / length, direction.y() / length
        size = 7.0
        head = QPolygonF([end, QPointF(end.x() - size * ux - size * 0.5 * uy, end.y() - size * uy + size * 0.5 * ux),
                          QPointF(end.x() - size * ux + size * 0.5 * uy, end.y() - size * uy - size * 0.5 * ux)])
        scene.addPolygon(head, pen, QBrush(pen.color()))

    def _fit(self) -> None:
        rect = self.sceneRect()
        if rect.isEmpty():
            return
        self.resetTransform()
        view = self.viewport().rect()
        if rect.width() > view.width() or rect.height() > view.height():
            self.fitInView(rect, Qt.KeepAspectRatio)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._fit()


class StudySetupView(View):

    #: action -> widgets that do it (greyed out when the role lacks it: ui/permissions.py)
    PERMISSIONS = {"edit_codebook": ("add_button",)}
    view_id = "study"
    title = "Study set-up"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.overview = None
        self._generation = 0
        self.tabs = QTabWidget()
        self.tabs.setObjectName("study_tabs")
        self.tabs.addTab(self._codebook_tab(), "Codebook")
        self.tabs.addTab(self._flow_tab(), "Patient flow")
        self.tabs.addTab(self._splits_tab(), "Data sets")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)

    # -- construction ----------------------------------------------------------------
    def _codebook_tab(self) -> QWidget:
        self.codebook_model = CodebookModel(self)
        self.codebook_proxy = QSortFilterProxyModel(self)
        self.codebook_proxy.setSourceModel(self.codebook_model)
        self.codebook_proxy.setFilterKeyColumn(-1)
        self.codebook_proxy.setFilterCaseSensitivity(Qt.CaseInsensitive)
        self.codebook_table = QTableView()
        self.codebook_table.setObjectName("codebook_table")
        self.codebook_table.setModel(self.codebook_proxy)
        self.codebook_table.setSortingEnabled(True)
        self.codebook_table.horizontalHeader().setSortIndicator(-1, Qt.AscendingOrder)  # codebook order
        self.codebook_proxy.sort(-1)
        self.codebook_table.setWordWrap(False)
        self.codebook_table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.codebook_table.setAlternatingRowColors(True)
        self.codebook_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.codebook_table.verticalHeader().setVisible(False)
        self.codebook_table.horizontalHeader().setStretchLastSection(True)
        self.codebook_summary = QLabel("")
        self.codebook_filter = QLineEdit()
        self.codebook_filter.setObjectName("codebook_filter")
        self.codebook_filter.setPlaceholderText("Filter variables (name, label, codes...)  Ctrl+F")
        self.codebook_filter.setClearButtonEnabled(True)
        self.codebook_filter.textChanged.connect(self.codebook_proxy.setFilterFixedString)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.codebook_filter)
        left_layout.addWidget(self.codebook_summary)
        left_layout.addWidget(self.codebook_table, 1)

        form_box = QGroupBox("Add a user-defined variable")
        self.var_name = QLineEdit()
        self.var_name.setPlaceholderText("lower_case_name")
        self.var_label = QLineEdit()
        self.var_type = QComboBox()
        self.var_type.addItems(TYPES)
        self.var_type.setCurrentText("number")
        self.var_unit = QLineEdit()
        self.var_unit.setPlaceholderText("e.g. U/mL")
        self.codes_table = QTableWidget(0, 2)
        self.codes_table.setObjectName("codes_table")
        self.codes_table.setHorizontalHeaderLabels(["Code", "Labels and synonyms (comma-separated)"])
        self.codes_table.horizontalHeader().setStretchLastSection(True)
        self.codes_table.verticalHeader().setVisible(False)
        self.codes_table.setMinimumHeight(90)
        add_code = QPushButton("Add code")
        add_code.clicked.connect(lambda: self.add_code_row())
        remove_code = QPushButton("Remove code")
        remove_code.clicked.connect(lambda: self.codes_table.removeRow(self.codes_table.currentRow()))
        code_buttons = QHBoxLayout()
        code_buttons.addWidget(add_code)
        code_buttons.addWidget(remove_code)
        code_buttons.addStretch(1)
        self.codes_box = QWidget()
        codes_layout = QVBoxLayout(self.codes_box)
        codes_layout.setContentsMargins(0, 0, 0, 0)
        codes_layout.addWidget(self.codes_table)
        codes_layout.addLayout(code_buttons)
        self.var_min, self.var_max, self.var_soft_min, self.var_soft_max = (QLineEdit() for _ in range(4))
        hard = QHBoxLayout()
        hard.addWidget(self.var_min)
        hard.addWidget(QLabel("to"))
        hard.addWidget(self.var_max)
        soft = QHBoxLayout()
        soft.addWidget(self.var_soft_min)
        soft.addWidget(QLabel("to"))
        soft.addWidget(self.var_soft_max)
        self.var_required = QCheckBox("Required for analysis (missing excludes the patient)")
        self.var_identifier = QCheckBox("Identifier (kept out of exports unless asked for)")
        self.add_button = QPushButton("Add variable")
        self.add_button.clicked.connect(self.add_variable)
        self.add_message = QLabel("")
        self.add_message.setWordWrap(True)
        self.add_message.setObjectName("add_message")
        form = QFormLayout()
        form.addRow("Name", self.var_name)
        form.addRow("Label", self.var_label)
        form.addRow("Type", self.var_type)
        form.addRow("Unit", self.var_unit)
        form.addRow("Codes", self.codes_box)
        form.addRow("Hard limits", hard)
        form.addRow("Soft limits", soft)
        form.addRow("", self.var_required)
        form.addRow("", self.var_identifier)
        hint = QLabel("A value outside the hard limits is refused; outside the soft limits it is "
                      "accepted with a note. Limits apply to numbers and dates (YYYY-MM-DD).")
        hint.setWordWrap(True)
        box_layout = QVBoxLayout(form_box)
        box_layout.addLayout(form)
        box_layout.addWidget(hint)
        box_layout.addWidget(self.add_button, 0, Qt.AlignRight)
        box_layout.addWidget(self.add_message)
        box_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setMaximumWidth(480)
        scroll.setWidget(form_box)
        self.var_type.currentTextChanged.connect(self._type_changed)
        self._type_changed(self.var_type.currentText())

        splitter = QSplitter(Qt.Horizontal)
        splitter.setObjectName("codebook_splitter")
        splitter.addWidget(left)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        return splitter

    def _flow_tab(self) -> QWidget:
        self.flow_view = FlowDiagramView()
        self.flow_view.setObjectName("flow_diagram")
        self.flow_caption = QLabel("")
        self.flow_caption.setWordWrap(True)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(self.flow_view, 1)
        layout.addWidget(self.flow_caption)
        return tab

    def _splits_tab(self) -> QWidget:
        self.center_table = QTableWidget()
        self.center_table.setObjectName("center_sets_table")
        self.events_table = QTableWidget()
        self.events_table.setObjectName("set_events_table")
        for table in (self.center_table, self.events_table):
            table.setEditTriggers(QAbstractItemView.NoEditTriggers)
            table.verticalHeader().setVisible(False)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
            table.setSizeAdjustPolicy(QAbstractItemView.AdjustToContents)
            table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.splits_note = QLabel("")
        self.splits_note.setWordWrap(True)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(QLabel("<b>Patients per center and data set</b> (included patients; the "
                                "development center is split 7:3, stratified by the RFS event)"))
        layout.addWidget(self.center_table, 0, Qt.AlignLeft)
        layout.addSpacing(12)
        layout.addWidget(QLabel("<b>Events per data set</b> (OS: deaths; RFS: recurrence or death)"))
        layout.addWidget(self.events_table, 0, Qt.AlignLeft)
        layout.addWidget(self.splits_note)
        layout.addStretch(1)
        return tab

    # -- View API --------------------------------------------------------------------
    def set_context(self, ctx) -> None:
        super().set_context(ctx)
        if ctx is None:
            self.overview = None
            self.codebook_model.set_rows([])
            self.flow_view.scene().clear()
            self.center_table.setRowCount(0)
            self.events_table.setRowCount(0)

    def refresh(self) -> None:
        if self.ctx is None:
            return
        # stale answers are dropped by a generation number (not ctx.run's key: see the report)
        self._generation += 1
        generation = self._generation
        self.ctx.run(study_overview, self.ctx.registry, title="Could not load the study set-up",
                     on_done=lambda overview: generation == self._generation and self._loaded(overview))

    def find(self, text: str) -> None:
        """Show the codebook and focus its filter (applying ``text`` when given)."""
        self.tabs.setCurrentIndex(TABS.index("codebook"))
        self.codebook_filter.setFocus(Qt.ShortcutFocusReason)
        if text:
            self.codebook_filter.setText(text)
        self.codebook_filter.selectAll()

    def prepare_screenshot(self) -> None:
        self.tabs.setCurrentIndex(TABS.index("flow"))
        self.refresh()

    def snapshot(self) -> dict[str, Any]:
        data: dict[str, Any] = {"view": self.view_id, "tab": TABS[self.tabs.currentIndex()]}
        if self.overview is None:
            return data
        variables = self.overview.variables
        data["variables"] = {"count": len(variables),
                             "user_defined": [v["name"] for v in variables if v["origin"] == "user-defined"],
                             "shown": self.codebook_proxy.rowCount()}
        data["flow"] = self.overview.flow.to_dict()
        data["diagram"] = [{"key": b.key, "count": b.count, "text": self.flow_view.texts.get(b.key, "")}
                           for b in self.overview.diagram.boxes]
        data["splits"] = self.overview.splits
        return data

    # -- drawing ---------------------------------------------------------------------
    def _loaded(self, overview) -> None:
        self.overview = overview
        self.codebook_model.set_rows(overview.variables)
        if not header_restored(self.codebook_table.horizontalHeader()):  # keep the user's widths
            self.codebook_table.resizeColumnsToContents()
            for column in range(self.codebook_model.columnCount()):
                if self.codebook_table.columnWidth(column) > 240:
                    self.codebook_table.setColumnWidth(column, 240)
        custom = sum(1 for v in overview.variables if v["origin"] == "user-defined")
        self.codebook_summary.setText(f"{len(overview.variables)} variables: "
                                      f"{len(overview.variables) - custom} built-in, {custom} user-defined "
                                      "(user-defined in bold)")
        self._draw_diagram()
        total = overview.flow.total
        self.flow_caption.setText(
            f"Patient flow as in the study's Figure 1: {total.enrolled} enrolled, "
            f"{sum(total.excluded.values())} excluded, {total.included} included. Exclusion reasons "
            "are applied in order (neoadjuvant therapy, concurrent malignancy, insufficient tissue, "
            "lost to follow-up within 30 days, incomplete required data); each patient is counted "
            "once, under the first reason that applies.")
        self._fill_splits(overview)

    def _draw_diagram(self) -> None:
        if self.overview is not None:
            dark = self.palette().window().color().lightness() < 128
            self.flow_view.draw(self.overview.diagram, dark=dark)

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().changeEvent(event)
        if event.type() == QEvent.PaletteChange:  # light/dark switched: redraw the boxes
            self._draw_diagram()

    def _fill_splits(self, overview) -> None:
        flow = {c.center: c for c in overview.flow.centers}
        centers = overview.splits["centers"]
        columns = ["Center", "Role", "Enrolled", "Excluded", "Included", "Training", "Internal validation",
                   "External validation", "Not yet assigned"]
        rows = []
        for code, c in flow.items():
            counts = centers.get(code, {})
            rows.append([code, c.role, c.enrolled, sum(c.excluded.values()), c.included,
                         *(counts.get(s, 0) for s in (*DATA_SETS, "unassigned"))])
        total = overview.flow.total
        rows.append(["All", "", total.enrolled, sum(total.excluded.values()), total.included,
                     *(sum(r[5 + i] for r in rows) for i in range(4))])
        self._fill(self.center_table, columns, rows)

        sets = overview.splits["sets"]
        names = [s for s in (*DATA_SETS, "unassigned") if s != "unassigned" or sets[s]["patients"]]
        event_rows = [[DATA_SET_LABELS[s], ", ".join(sets[s]["centers"]), sets[s]["patients"],
                       _percent(sets[s]["os_events"], sets[s]["patients"]),
                       _percent(sets[s]["rfs_events"], sets[s]["patients"])] for s in names]
        self._fill(self.events_table, ["Data set", "Centers", "Patients", "OS events (deaths)",
                                       "RFS events (recurrence or death)"], event_rows)
        unassigned = sets["unassigned"]["patients"]
        self.splits_note.setText(
            f"{unassigned} included patients have no data set yet: assign them with `pathomics split` "
            "(the split is frozen: patients already assigned never move)." if unassigned else
            "Every included patient has its data set; the split is frozen (patients already assigned "
            "never move when new ones arrive).")

    @staticmethod
    def _fill(table: QTableWidget, columns: list[str], rows: list[list[Any]]) -> None:
        table.clear()
        table.setColumnCount(len(columns))
        table.setHorizontalHeaderLabels(columns)
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(str(value))
                if isinstance(value, int) or (isinstance(value, str) and value[:1].isdigit()):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if row[0] == "All":
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(r, c, item)

    # -- adding a variable -----------------------------------------------------------
    def _type_changed(self, kind: str) -> None:
        self.codes_box.setEnabled(kind == "category")
        if kind == "category" and self.codes_table.rowCount() == 0:
            self.add_code_row()
        for field in (self.var_min, self.var_max, self.var_soft_min, self.var_soft_max):
            field.setEnabled(kind in ("integer", "number", "date"))
            field.setPlaceholderText("YYYY-MM-DD" if kind == "date" else "")

    def add_code_row(self, code: str = "", labels: str = "") -> None:
        row = self.codes_table.rowCount()
        self.codes_table.insertRow(row)
        self.codes_table.setItem(row, 0, QTableWidgetItem(code))
        self.codes_table.setItem(row, 1, QTableWidgetItem(labels))

    def variable_fields(self) -> dict[str, Any]:
        """The form as keyword arguments of ``service.add_variable``."""
        kind = self.var_type.currentText()

        def text(field: QLineEdit):
            value = field.text().strip()
            return value if value and field.isEnabled() else None

        codes = None
        if kind == "category":
            codes = {}
            for row in range(self.codes_table.rowCount()):
                code_item, labels_item = self.codes_table.item(row, 0), self.codes_table.item(row, 1)
                code = code_item.text().strip() if code_item else ""
                if code:
                    labels = labels_item.text() if labels_item else ""
                    codes[code] = [s.strip() for s in labels.split(",") if s.strip()]
        return {"name": self.var_name.text().strip(), "type": kind, "label": self.var_label.text().strip(),
                "unit": self.var_unit.text().strip(), "codes": codes, "min_value": text(self.var_min),
                "max_value": text(self.var_max), "soft_min": text(self.var_soft_min),
                "soft_max": text(self.var_soft_max), "required": self.var_required.isChecked(),
                "identifier": self.var_identifier.isChecked()}

    def add_variable(self) -> None:
        if self.ctx is None:
            return
        from pathomics_desktop.registry.service import add_variable

        fields = self.variable_fields()
        self.add_button.setEnabled(False)
        self.add_message.setStyleSheet("")
        self.add_message.setText("Adding...")

        def done(_result) -> None:
            self.add_button.setEnabled(True)
            self.add_message.setStyleSheet("color: #1b7a32;")
            self.add_message.setText(f"Variable {fields['name']} added to the codebook.")
            for field in (self.var_name, self.var_label, self.var_unit, self.var_min, self.var_max,
                          self.var_soft_min, self.var_soft_max):
                field.clear()
            self.codes_table.setRowCount(0)
            self._type_changed(self.var_type.currentText())
            self.ctx.status_message.emit(f"variable {fields['name']} added to the codebook")
            self.ctx.data_changed.emit("variables")
            self.refresh()

        def failed(message: str, trace: str) -> None:
            self.add_button.setEnabled(True)
            if not is_user_error_trace(trace):
                self.add_message.setText("")
                self.ctx.task_failed.emit("Could not add the variable", message, trace)
                return
            self.add_message.setStyleSheet("color: #b3261e;")
            self.add_message.setText(f"Not added: {message[:1].upper() + message[1:]}. Correct the form "
                                     "and try again.")

        self.ctx.run(add_variable, self.ctx.registry, user=self.ctx.user, on_done=done, on_error=failed,
                     **fields)
