"""What every analysis view (KM, Cox, forest, ROC, Table 1, cutpoint, signature) shares.

Layout: the cohort filter panel on the left; on the right the view's controls, its content
(plots, tables), a footnote with the filter, n and the snapshot id, and the buttons Copy image,
Copy data (tab-separated) and Export (PNG or SVG of the widget with the footnote drawn under it,
PDF of the figure, DOCX/XLSX/CSV of the table; each export recorded in the ledger).

A subclass supplies (Orange's task-state habit, napari's Qt-free model + thin view):

- ``build_controls(form)``: its choices, added to a ``QFormLayout``; call ``self.recompute()``
  when one changes;
- ``build_content()`` -> the widget that shows the result (and is exported);
- ``params()`` -> a plain dict of the current choices;
- ``compute(source, frame, params)``, a **static** function run in a worker thread: it gets
  the :class:`~pathomics_desktop.analytics.cohort_filter.AnalysisSource` and the filtered
  frame and returns a Qt-free figure description (``pathomics_desktop.figures``), calling the
  ``stats`` package; it never touches widgets;
- ``render(model)``: draw the description (GUI thread);
- ``table_data(model)`` -> ``(header, rows)``, what Copy data puts on the clipboard;
- ``snapshot_data(model)`` -> the numbers shown, for ``--screenshots`` JSON.

Only the visible view recomputes when the filter or the registry changes; a hidden one is
marked stale and recomputes when shown. A newer computation replaces a running one, whose
result is dropped. A :class:`~pathomics_desktop.errors.UserError` of ``compute`` (no patients
match, too few events...) is shown inline, in words, in place of the content.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QFont, QGuiApplication, QImage, QPainter
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter, footnote
from pathomics_desktop.errors import UserError
from pathomics_desktop.ui.views.analysis.filter_panel import CohortFilterPanel
from pathomics_desktop.ui.views.base import View
from pathomics_desktop.ui.views.common import show_message

EXPORT_FORMATS = ("PNG image (*.png);;SVG vector drawing (*.svg);;PDF vector drawing (*.pdf);;"
                  "Word table (*.docx);;Excel workbook (*.xlsx);;CSV table (*.csv)")
#: the table formats of Export (the view's table: ``reports.view_tables``, else its Copy data)
TABLE_EXPORTS = (".docx", ".xlsx", ".csv")


@dataclass
class Computed:
    """A view's result: the description, the filter and snapshot it came from, and n."""

    model: Any
    cohort_filter: CohortFilter
    snapshot_id: str
    n: int
    seconds: float


class SourceCache:
    """The project's :class:`AnalysisSource`, reopened when the registry changed (the
    snapshot refresh is checked on every call; it costs one query when nothing changed)."""

    def __init__(self):
        self._source: AnalysisSource | None = None
        self._key: tuple | None = None

    def get(self, project) -> AnalysisSource:
        from pathomics_desktop.analytics.snapshot import refresh_snapshot

        parquet = refresh_snapshot(project)
        stat = parquet.stat()
        key = (str(parquet), stat.st_mtime_ns, stat.st_size)
        if self._source is None or key != self._key:
            self._source, self._key = AnalysisSource.open(project), key
        return self._source


def compute_view(project, cohort_filter: CohortFilter, compute: Callable, params: dict,
                 cache: SourceCache) -> Computed:
    """Worker function: the filtered frame, then the view's ``compute``."""
    start = time.perf_counter()
    source = cache.get(project)
    frame = source.frame(cohort_filter)
    if len(frame) == 0:
        raise UserError("No patients match the cohort filter. Widen it (Reset shows every included patient).")
    model = compute(source, frame, params)
    return Computed(model, cohort_filter, source.snapshot_id, len(frame), time.perf_counter() - start)


def labelled_row(controls) -> QHBoxLayout:
    """One line of controls, each after its label ("" for none), then stretch."""
    row = QHBoxLayout()
    for label, widget in controls:
        if label:
            row.addWidget(QLabel(label))
        row.addWidget(widget)
    row.addStretch(1)
    return row


class AnalysisView(View):
    """Base of the analysis views (see the module docstring)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.computed: Computed | None = None
        self.error: str | None = None
        self._stale = True
        self._cache = SourceCache()
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Horizontal)
        self.filter_panel = CohortFilterPanel()
        self.splitter.addWidget(self.filter_panel)
        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(6, 6, 6, 6)
        heading = QLabel(f"<h3>{self.title}</h3>")
        column.addWidget(heading)
        controls = QWidget()
        self.controls = QFormLayout(controls)
        self.controls.setContentsMargins(0, 0, 0, 0)
        self.controls.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.build_controls(self.controls)
        column.addWidget(controls)
        self.stack = QStackedWidget()
        self.content = self.build_content()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignCenter)
        self.message.setObjectName("analysisMessage")
        self.stack.addWidget(self.content)
        self.stack.addWidget(self.message)
        column.addWidget(self.stack, 1)
        self.footnote = QLabel()
        self.footnote.setWordWrap(True)
        self.footnote.setTextInteractionFlags(Qt.TextSelectableByMouse)
        small = QFont(self.footnote.font())
        small.setPointSizeF(max(small.pointSizeF() - 1, 7))
        self.footnote.setFont(small)
        column.addWidget(self.footnote)
        buttons = QHBoxLayout()
        self.copy_image_button = QPushButton("Copy image")
        self.copy_image_button.clicked.connect(self.copy_image)
        self.copy_data_button = QPushButton("Copy data")
        self.copy_data_button.setToolTip("Copy the numbers as tab-separated text (pastes into a spreadsheet)")
        self.copy_data_button.clicked.connect(self.copy_data)
        self.export_button = QPushButton("Export...")
        self.export_button.setToolTip("Save as PNG (300 dpi), SVG, PDF, DOCX, XLSX or CSV; the footnote names the filter and snapshot, and the ledger records the export")
        self.export_button.clicked.connect(self.export_dialog)
        buttons.addStretch(1)
        for button in (self.copy_image_button, self.copy_data_button, self.export_button):
            buttons.addWidget(button)
        column.addLayout(buttons)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        outer.addWidget(self.splitter)
        self._set_ready(False)

    # -- subclass API -----------------------------------------------------------------
    def build_controls(self, form: QFormLayout) -> None:
        """Add the view's choices to ``form`` (override)."""

    def build_content(self) -> QWidget:
        """The widget that shows the result (override)."""
        return QLabel()

    def params(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def compute(source: AnalysisSource, frame, params: dict[str, Any]):
        raise NotImplementedError

    def render(self, model) -> None:
        """Draw ``model`` (override)."""

    def table_data(self, model) -> tuple[list[str], list[list[Any]]]:
        return [], []

    def snapshot_data(self, model) -> dict[str, Any]:
        return model.to_dict() if hasattr(model, "to_dict") else {}

    def export_widget(self) -> QWidget:
        """What Copy image and Export draw (default: the content)."""
        return self.content

    # -- binding ----------------------------------------------------------------------
    def set_context(self, ctx) -> None:
        if self.ctx is not None:
            self.ctx.cohort_filter_changed.disconnect(self._filter_changed)
            self.ctx.data_changed.disconnect(self._data_changed)
        self.filter_panel.set_context(ctx)
        if ctx is not None:
            ctx.cohort_filter_changed.connect(self._filter_changed)
            ctx.data_changed.connect(self._data_changed)
        super().set_context(ctx)

    def refresh(self) -> None:
        self._stale = True
        self.recompute()

    def _filter_changed(self, _filter) -> None:
        self._stale = True
        self.recompute()

    def _data_changed(self, _what: str) -> None:
        self._stale = True
        if self.isVisible():
            self.recompute()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        if self._stale:
            self.recompute()

    def prepare_screenshot(self) -> None:
        self.recompute(force=True)

    # -- computing --------------------------------------------------------------------
    def recompute(self, *_args, force: bool = False) -> None:
        """Compute the view for the current filter and choices, if it is visible (or
        ``force``); otherwise mark it stale."""
        if self.ctx is None:
            return
        if not (self.isVisible() or force):
            self._stale = True
            return
        self._stale = False
        try:
            params = self.params()
        except UserError as exc:
            self._show_message(str(exc))
            return
        self.run_task("compute", compute_view, self.ctx.project, self.ctx.cohort_filter,
                      type(self).compute, params, self._cache,
                      on_done=self._computed, on_error=self._failed)

    def _computed(self, computed: Computed) -> None:
        self.computed, self.error = computed, None
        self.footnote.setText(footnote(computed.cohort_filter, computed.snapshot_id, computed.n))
        self.stack.setCurrentWidget(self.content)
        self._set_ready(True)
        self.render(computed.model)

    def _failed(self, message: str, trace: str) -> None:
        if "UserError" not in trace:
            # an unexpected failure is a bug: the main window reports it with details
            self.ctx.task_failed.emit(f"{self.title} failed", message, trace)
        self._show_message(message)

    def _show_message(self, message: str) -> None:
        self.computed, self.error = None, message
        self.message.setText(message)
        self.stack.setCurrentWidget(self.message)
        self.footnote.setText(footnote(self.ctx.cohort_filter, "-") if self.ctx is not None else "")
        self._set_ready(False)

    def _set_ready(self, ready: bool) -> None:
        for button in (self.copy_image_button, self.copy_data_button, self.export_button):
            button.setEnabled(ready)

    # -- copy and export --------------------------------------------------------------
    def tsv(self) -> str:
        """Copy data: the view's table as tab-separated text, the footnote as the last line."""
        if self.computed is None:
            return ""
        header, rows = self.table_data(self.computed.model)
        lines = ["\t".join(str(h) for h in header)] if header else []
        lines += ["\t".join("" if v is None else str(v) for v in row) for row in rows]
        lines.append(self.footnote.text())
        return "\n".join(lines) + "\n"

    def copy_data(self) -> None:
        QGuiApplication.clipboard().setText(self.tsv())
        if self.ctx is not None:
            self.ctx.status_message.emit(f"{self.title}: the table is on the clipboard")

    def render_image(self, scale: float = 2.0) -> QImage:
        """The exported widget with the footnote under it, at ``scale`` x screen pixels."""
        widget = self.export_widget()
        size = widget.size()
        note_height = self.footnote.heightForWidth(size.width()) if self.footnote.text() else 0
        note_height = max(note_height, 0) + (8 if note_height else 0)
        image = QImage(QSize(int(size.width() * scale), int((size.height() + note_height) * scale)),
                       QImage.Format_ARGB32)
        image.fill(Qt.white)
        painter = QPainter(image)
        painter.scale(scale, scale)
        widget.render(painter, QPoint(0, 0))
        self._paint_footnote(painter, size.width(), size.height(), note_height)
        painter.end()
        # 300 dpi is recorded after painting: fonts are laid out at screen resolution, scaled
        image.setDotsPerMeterX(int(300 / 0.0254))
        image.setDotsPerMeterY(int(300 / 0.0254))
        return image

    def _paint_footnote(self, painter: QPainter, width: int, top: int, height: int) -> None:
        if not height:
            return
        painter.setFont(self.footnote.font())
        painter.setPen(Qt.black)
        painter.drawText(QRect(4, top + 4, width - 8, height), Qt.TextWordWrap, self.footnote.text())

    def copy_image(self) -> None:
        QGuiApplication.clipboard().setImage(self.render_image())

    def export_to(self, path: str | Path) -> Path:
        """Export to ``path`` and record it in the project's ledger (``reports.ledger``):
        ``.png`` (300 dpi, 2x) or ``.svg`` (vector) of the widget; ``.pdf`` (vector) of the
        figure description through ``reports.figures.save_figure``; ``.docx``, ``.xlsx`` or
        ``.csv`` of the view's table (``reports.view_tables``, else its Copy data)."""
        path = Path(path)
        if self.computed is None:
            raise UserError(f"{self.title}: nothing to export yet")
        suffix = path.suffix.lower()
        if suffix not in (".png", ".svg", ".pdf", *TABLE_EXPORTS):
            raise UserError(f"{path.name}: export as .png, .svg, .pdf, .docx, .xlsx or .csv")
        entry = self._ledger_entry()
        if suffix == ".png":
            if not self.render_image().save(str(path)):
                raise UserError(f"cannot write {path}")
        elif suffix == ".svg":
            self._write_svg(path)
        elif suffix in TABLE_EXPORTS:
            self._write_table(path)
        else:
            self._write_pdf(path)
        self._record(entry, path)
        return path

    def _write_svg(self, path: Path) -> None:
        from PySide6.QtSvg import QSvgGenerator

        widget = self.export_widget()
        size = widget.size()
        note_height = self.footnote.heightForWidth(size.width()) + 8
        generator = QSvgGenerator()
        generator.setFileName(str(path))
        generator.setSize(QSize(size.width(), size.height() + note_height))
        generator.setViewBox(QRect(0, 0, size.width(), size.height() + note_height))
        generator.setTitle(self.title)
        generator.setDescription(self.footnote.text())
        painter = QPainter(generator)
        widget.render(painter, QPoint(0, 0))
        self._paint_footnote(painter, size.width(), size.height(), note_height)
        painter.end()

    def _write_table(self, path: Path) -> None:
        """The view's table (the same ``view_tables`` function as ``pathomics report``)."""
        from pathomics_desktop.reports.tables import SourceNote, TableStyle
        from pathomics_desktop.reports.view_tables import publication_tables
        from pathomics_desktop.reports.writers import write_tables

        computed = self.computed
        note = SourceNote(computed.cohort_filter.describe(), computed.snapshot_id)
        tables = publication_tables(computed.model, note, title=self.title,
                                    table_data=self.table_data(computed.model))
        if path.suffix.lower() == ".csv":
            tables = tables[:1]
        style = TableStyle.for_project(self.ctx.project) if self.ctx is not None else TableStyle()
        write_tables(tables, path, style)

    def _write_pdf(self, path: Path) -> None:
        """The figure description drawn for publication (``reports.figures.save_figure``)."""
        from pathomics_desktop.reports.figures import save_figure

        save_figure(self.computed.model, path, footnote=self.footnote.text() or None)

    def _ledger_entry(self) -> dict | None:
        """The ledger entry of an export, begun before the file is written (the snapshot's hash
        must still be the one the numbers came from)."""
        if self.ctx is None:
            return None
        from pathomics_desktop.analytics.snapshot import snapshot_paths
        from pathomics_desktop.reports.ledger import prepare_entry

        try:
            params = self.params()
        except UserError:
            params = {}
        self._export_params = params
        return prepare_entry(self.ctx.project, command=self.view_id, cohort_filter=self.computed.cohort_filter,
                             params=params, snapshot_path=snapshot_paths(self.ctx.project)[0],
                             snapshot_id=self.computed.snapshot_id, origin="gui", user=self.ctx.user)

    def _record(self, entry: dict | None, path: Path) -> None:
        if entry is None:
            return
        from pathomics_desktop.reports.ledger import append_entry, description_numbers

        model = self.computed.model
        self.last_ledger_entry = append_entry(
            self.ctx.project, entry, output=path, params=self._export_params,
            numbers=description_numbers(model, self.snapshot_data(model)))

    def export_dialog(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, f"Export {self.title}", f"{self.view_id}.png", EXPORT_FORMATS)
        if not name:
            return
        try:
            written = self.export_to(name)
        except UserError as exc:
            show_message(self, "Export failed", str(exc))
            return
        if self.ctx is not None:
            self.ctx.status_message.emit(f"{self.title}: exported to {written} (ledger entry "
                                         f"{self.last_ledger_entry['id']})")

    # -- screenshots ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"view": self.view_id}
        if self.ctx is not None:
            out["filter"] = self.ctx.cohort_filter.to_dict()
        if self.computed is None:
            out["message"] = self.error
            return out
        out.update({"snapshot_id": self.computed.snapshot_id, "n": self.computed.n,
                    "footnote": self.footnote.text()})
        out.update(self.snapshot_data(self.computed.model))
        return out
