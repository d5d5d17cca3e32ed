"""The cohort filter panel shown beside every analysis view.

The filter itself is one Qt-free value on the project context (``ctx.cohort_filter``, a
:class:`~pathomics_desktop.analytics.cohort_filter.CohortFilter`); each analysis view has a
panel bound to it, so a change in one view's panel is the change of every view. What the panel
offers (data sets, centers, variables with their levels or ranges) is read from the snapshot
once per registry change, in the background, and shared by the panels (:class:`OptionsCache`).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.analytics.cohort_filter import CohortFilter, FilterOptions, VariableOption

#: risk-group columns written by `signature apply`, offered as their own section
RISK_GROUP_COLUMNS = ("pathomics_os_group", "pathomics_rfs_group")
#: the filter value of a tick list with nothing ticked (matches no patient)
NOTHING = "(none ticked)"


def load_filter_options(project) -> FilterOptions:
    """Worker function: the filter options of the project's fresh snapshot."""
    from pathomics_desktop.analytics.cohort_filter import AnalysisSource

    return AnalysisSource.open(project).options()


class OptionsCache(QObject):
    """The context's filter options, loaded in the background when first asked for and again
    after every registry change; ``ready`` carries the new :class:`FilterOptions`."""

    ready = Signal(object)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.ctx = ctx
        self.options: FilterOptions | None = None
        self._loading = False
        ctx.data_changed.connect(self.reload)

    @classmethod
    def of(cls, ctx) -> "OptionsCache":
        cache = getattr(ctx, "_filter_options_cache", None)
        if cache is None:
            cache = cls(ctx)
            ctx._filter_options_cache = cache
        return cache

    def request(self) -> None:
        if self.options is not None:
            self.ready.emit(self.options)
        elif not self._loading:
            self.reload()

    def reload(self, *_args) -> None:
        self._loading = True
        self.ctx.run(load_filter_options, self.ctx.project, on_done=self._loaded,
                     on_error=self._failed, key="cohort-filter:options")

    def _loaded(self, options: FilterOptions) -> None:
        self._loading = False
        self.options = options
        self.ready.emit(options)

    def _failed(self, message: str, _trace: str) -> None:
        self._loading = False
        self.ctx.status_message.emit(f"Cohort filter: {message}")


class _TickList(QWidget):
    """Check boxes for the levels of one variable; ``changed`` when one is toggled."""

    changed = Signal()

    def __init__(self, levels, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.setSpacing(1)
        self.boxes: dict[str, QCheckBox] = {}
        for level in levels:
            box = QCheckBox(str(level))
            box.setChecked(True)
            box.toggled.connect(self.changed)
            layout.addWidget(box)
            self.boxes[str(level)] = box

    def ticked(self) -> list[str]:
        return [lvl for lvl, box in self.boxes.items() if box.isChecked()]

    def set_ticked(self, levels) -> None:
        wanted = None if levels is None else {str(v) for v in levels}
        for lvl, box in self.boxes.items():
            box.blockSignals(True)
            box.setChecked(wanted is None or lvl in wanted)
            box.blockSignals(False)


class _VariableRow(QFrame):
    """One variable filter: a range (numbers) or a tick list (categories), removable."""

    changed = Signal()
    removed = Signal(str)

    def __init__(self, option: VariableOption, parent=None):
        super().__init__(parent)
        self.option = option
        self.setFrameShape(QFrame.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 4)
        head = QHBoxLayout()
        unit = f" ({option.unit})" if option.unit else ""
        title = QLabel(f"<b>{option.label}</b>{unit}")
        title.setWordWrap(True)
        head.addWidget(title, 1)
        remove = QToolButton()
        remove.setText("x")
        remove.setToolTip(f"Remove the filter on {option.label}")
        remove.clicked.connect(lambda: self.removed.emit(option.column))
        head.addWidget(remove)
        layout.addLayout(head)
        self.ticks: _TickList | None = None
        self.low = self.high = None
        if option.kind == "category":
            self.ticks = _TickList(option.levels)
            self.ticks.changed.connect(self.changed)
            layout.addWidget(self.ticks)
        else:
            row = QHBoxLayout()
            self.low, self.high = QDoubleSpinBox(), QDoubleSpinBox()
            for spin, value in ((self.low, option.low), (self.high, option.high)):
                spin.setDecimals(2)
                spin.setRange(float(option.low), float(option.high))
                spin.setValue(float(value))
                spin.setKeyboardTracking(False)
                spin.valueChanged.connect(self.changed)
            row.addWidget(self.low)
            row.addWidget(QLabel("to"))
            row.addWidget(self.high)
            layout.addLayout(row)

    def apply_to(self, cohort_filter: CohortFilter) -> CohortFilter:
        if self.ticks is not None:
            ticked = self.ticks.ticked()
            return cohort_filter.with_categories(self.option.column, ticked or [NOTHING])
        return cohort_filter.with_range(self.option.column, self.low.value(), self.high.value())

    def show_filter(self, cohort_filter: CohortFilter) -> None:
        if self.ticks is not None:
            levels = dict(cohort_filter.categories).get(self.option.column)
            self.ticks.set_ticked(levels)
            return
        for column, low, high in cohort_filter.ranges:
            if column == self.option.column:
                for spin, value, default in ((self.low, low, self.option.low), (self.high, high, self.option.high)):
                    spin.blockSignals(True)
                    spin.setValue(float(default if value is None else value))
                    spin.blockSignals(False)


class CohortFilterPanel(QScrollArea):
    """The filter panel of one analysis view, bound to ``ctx.cohort_filter``."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = None
        self.options: FilterOptions | None = None
        self.setWidgetResizable(True)
        self.setMinimumWidth(230)
        self.setMaximumWidth(300)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Expanding)
        body = QWidget()
        self.body = QVBoxLayout(body)
        self.body.setContentsMargins(6, 6, 6, 6)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Cohort filter</b>"), 1)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Included patients of every data set and center")
        self.reset_button.clicked.connect(self.reset)
        head.addWidget(self.reset_button)
        self.body.addLayout(head)
        self.who = QComboBox()
        self.who.addItems(["Included patients", "All enrolled patients"])
        self.who.currentIndexChanged.connect(self._edited)
        self.body.addWidget(self.who)
        self.dataset_box = QGroupBox("Data set")
        self.center_box = QGroupBox("Center")
        self.risk_box = QGroupBox("Risk group (applied signature)")
        self.datasets = self.centers = None
        self.risk_lists: dict[str, _TickList] = {}
        for box in (self.dataset_box, self.center_box, self.risk_box):
            QVBoxLayout(box).setContentsMargins(4, 2, 4, 2)
            self.body.addWidget(box)
        self.risk_box.setVisible(False)
        self.add_combo = QComboBox()
        self.add_combo.setToolTip("Filter on any codebook variable")
        self.add_combo.activated.connect(self._add_chosen)
        self.body.addWidget(self.add_combo)
        self.rows: dict[str, _VariableRow] = {}
        self.rows_layout = QVBoxLayout()
        self.body.addLayout(self.rows_layout)
        self.body.addStretch(1)
        self.setWidget(body)
        # spin boxes and ticks are applied together a moment after the last edit
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(150)
        self._debounce.timeout.connect(self.apply)

    # -- binding ----------------------------------------------------------------------
    def set_context(self, ctx) -> None:
        if self.ctx is not None:
            self.ctx.cohort_filter_changed.disconnect(self.show_filter)
        self.ctx = ctx
        if ctx is None:
            return
        ctx.cohort_filter_changed.connect(self.show_filter)
        cache = OptionsCache.of(ctx)
        cache.ready.connect(self.set_options)
        cache.request()

    def set_options(self, options: FilterOptions) -> None:
        """Rebuild the sections from the snapshot's options, then show the current filter."""
        self.options = options
        self.datasets = self._rebuild_ticks(self.dataset_box, options.datasets)
        self.centers = self._rebuild_ticks(self.center_box, options.centers)
        self.risk_lists.clear()
        layout = self.risk_box.layout()
        while layout.count():  # the section's labels and tick lists of the previous options
            item = layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for column in RISK_GROUP_COLUMNS:
            try:
                option = options.variable(column)
            except Exception:
                continue
            layout.addWidget(QLabel(option.column.replace("pathomics_", "").replace("_group", "").upper()))
            lst = _TickList(option.levels)
            lst.changed.connect(self._edited)
            layout.addWidget(lst)
            self.risk_lists[column] = lst
        self.risk_box.setVisible(bool(self.risk_lists))
        self.add_combo.blockSignals(True)
        self.add_combo.clear()
        self.add_combo.addItem("Add a filter on a variable...", None)
        for option in options.variables:
            if option.column not in RISK_GROUP_COLUMNS:
                self.add_combo.addItem(option.label, option.column)
        self.add_combo.blockSignals(False)
        if self.ctx is not None:
            self.show_filter(self.ctx.cohort_filter)

    def _rebuild_ticks(self, box: QGroupBox, levels) -> _TickList:
        layout = box.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        ticks = _TickList(levels)
        ticks.changed.connect(self._edited)
        layout.addWidget(ticks)
        return ticks

    # -- filter -> widgets --------------------------------------------------------------
    def show_filter(self, cohort_filter: CohortFilter) -> None:
        """Show ``cohort_filter`` without emitting a change."""
        self.who.blockSignals(True)
        self.who.setCurrentIndex(0 if cohort_filter.included_only else 1)
        self.who.blockSignals(False)
        if self.datasets is not None:
            self.datasets.set_ticked(cohort_filter.datasets or None)
            self.centers.set_ticked(cohort_filter.centers or None)
        categories = dict(cohort_filter.categories)
        for column, lst in self.risk_lists.items():
            lst.set_ticked(categories.get(column))
        wanted = [c for c in cohort_filter.variable_columns() if c not in RISK_GROUP_COLUMNS]
        for column in list(self.rows):
            if column not in wanted:
                self.rows.pop(column).deleteLater()
        for column in wanted:
            if column not in self.rows and self.options is not None:
                try:
                    self._add_row(self.options.variable(column))
                except Exception:
                    continue
            if column in self.rows:
                self.rows[column].show_filter(cohort_filter)

    # -- widgets -> filter --------------------------------------------------------------
    def current_filter(self) -> CohortFilter:
        """The filter the widgets show."""
        def chosen(ticks: _TickList | None) -> tuple[str, ...]:
            if ticks is None:
                return ()
            ticked = ticks.ticked()
            if len(ticked) == len(ticks.boxes):
                return ()
            return tuple(ticked) or (NOTHING,)

        result = CohortFilter(datasets=chosen(self.datasets), centers=chosen(self.centers),
                              included_only=self.who.currentIndex() == 0)
        for column, lst in self.risk_lists.items():
            ticked = lst.ticked()
            if len(ticked) != len(lst.boxes):
                result = result.with_categories(column, ticked or [NOTHING])
        for row in self.rows.values():
            result = row.apply_to(result)
        return result

    def _edited(self, *_args) -> None:
        self._debounce.start()

    def apply(self) -> None:
        self._debounce.stop()
        if self.ctx is not None:
            self.ctx.set_cohort_filter(self.current_filter())

    def reset(self) -> None:
        for column in list(self.rows):
            self.rows.pop(column).deleteLater()
        if self.ctx is not None:
            self.ctx.set_cohort_filter(CohortFilter())

    def _add_chosen(self, index: int) -> None:
        column = self.add_combo.itemData(index)
        self.add_combo.setCurrentIndex(0)
        if column and self.options is not None and column not in self.rows:
            self._add_row(self.options.variable(column))
            self.apply()

    def _add_row(self, option: VariableOption) -> _VariableRow:
        row = _VariableRow(option)
        row.changed.connect(self._edited)
        row.removed.connect(self._remove_row)
        self.rows_layout.addWidget(row)
        self.rows[option.column] = row
        return row

    def _remove_row(self, column: str) -> None:
        row = self.rows.pop(column, None)
        if row is not None:
            row.deleteLater()
            self.apply()

