"""The slide catalogue: every registered slide with its thumbnail, patient, scanner, MPP
(override and warning; "Set MPP..." stores an override as an undoable command), size, QC
status and tile count; adding slides runs the registry's
``slides-add`` job (:func:`pathomics_desktop.registry.slides.add_slides_job`) in a JobWorker,
so it shows in the Jobs panel too. Double-click opens the slide in the viewer; the patient
column opens the patient.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHeaderView,
    QInputDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
)

from pathomics_desktop.registry.slide_list import count_by_status
from pathomics_desktop.ui.commands import RegistryCommand, push
from pathomics_desktop.ui.models.slides import SLIDE_ID_ROLE, THUMB_SIZE, SlideTableModel, load_slide_rows
from pathomics_desktop.ui.views.base import View
from pathomics_desktop.jobs.listing import error_summary
from pathomics_desktop.ui.views.common import filter_proxy, row_table, show_message
from pathomics_desktop.ui.views.jobs import job_launcher

PATIENT_COLUMN = 1


class AddSlidesDialog(QDialog):
    """Files or folders to register, and how each file finds its patient: the file stem is
    the study id (default), a mapping CSV (``path``/``file`` and ``study_id``), or a regular
    expression with a ``(?P<study_id>...)`` group matched on the file name."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Add slides")
        self.paths = QListWidget()
        add_files = QPushButton("Add files...")
        add_files.clicked.connect(self._add_files)
        add_folder = QPushButton("Add folder...")
        add_folder.clicked.connect(self._add_folder)
        remove = QPushButton("Remove")
        remove.clicked.connect(lambda: [self.paths.takeItem(self.paths.row(i)) for i in self.paths.selectedItems()])
        self.by_stem = QRadioButton("The file name (without extension) is the study id")
        self.by_mapping = QRadioButton("Mapping CSV (columns path or file, and study_id):")
        self.by_pattern = QRadioButton("Pattern on the file name, with a (?P<study_id>...) group:")
        self.by_stem.setChecked(True)
        group = QButtonGroup(self)
        for b in (self.by_stem, self.by_mapping, self.by_pattern):
            group.addButton(b)
        self.mapping = QLineEdit()
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse_mapping)
        self.pattern = QLineEdit()
        self.pattern.setPlaceholderText(r"e.g. (?P<study_id>[A-Z]+-\d+)_HE")
        self.thumbnails = QCheckBox("Cache thumbnails")
        self.thumbnails.setChecked(True)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #b02a37;")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Add")
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)

        row = QHBoxLayout()
        for w in (add_files, add_folder, remove):
            row.addWidget(w)
        row.addStretch(1)
        grid = QGridLayout()
        grid.addWidget(self.by_stem, 0, 0, 1, 3)
        grid.addWidget(self.by_mapping, 1, 0)
        grid.addWidget(self.mapping, 1, 1)
        grid.addWidget(browse, 1, 2)
        grid.addWidget(self.by_pattern, 2, 0)
        grid.addWidget(self.pattern, 2, 1, 1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Slide files and folders (folders are searched for slide files):"))
        layout.addWidget(self.paths)
        layout.addLayout(row)
        layout.addLayout(grid)
        layout.addWidget(self.thumbnails)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.params: dict[str, Any] | None = None

    def add_paths(self, paths) -> None:
        for p in paths:
            if p and not self.paths.findItems(str(p), Qt.MatchExactly):
                self.paths.addItem(str(p))

    def _add_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Slide files", "", "Slides (*.svs *.tif *.tiff *.ndpi *.vms "
                                                "*.vmu *.scn *.mrxs *.svslide *.bif *.dcm);;All files (*)")
        self.add_paths(files)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of slides")
        self.add_paths([folder])

    def _browse_mapping(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Slide mapping", "", "CSV (*.csv);;All files (*)")
        if path:
            self.mapping.setText(path)
            self.by_mapping.setChecked(True)

    def build_params(self) -> dict[str, Any]:
        """The ``slides-add`` job's params; UserError when something is missing."""
        from pathomics_desktop.errors import UserError

        paths = [self.paths.item(i).text() for i in range(self.paths.count())]
        if not paths:
            raise UserError("Add at least one slide file or folder.")
        params: dict[str, Any] = {"paths": paths, "thumbnails": self.thumbnails.isChecked()}
        if self.by_mapping.isChecked():
            if not self.mapping.text().strip():
                raise UserError("Choose the mapping CSV file, or pick another way to find the patients.")
            params["mapping"] = self.mapping.text().strip()
        elif self.by_pattern.isChecked():
            if not self.pattern.text().strip():
                raise UserError("Type the pattern, or pick another way to find the patients.")
            params["pattern"] = self.pattern.text().strip()
        return params

    def _check(self) -> None:
        from pathomics_desktop.errors import UserError

        try:
            self.params = self.build_params()
        except UserError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


class SetMppCommand(RegistryCommand):
    """Store (or clear, with None) a slide's MPP override through the registry's service
    (:func:`pathomics_desktop.registry.slides.set_mpp_override`, as ``pathomics slides
    set-mpp``); undo puts the previous override back."""

    what = "slides"

    def __init__(self, ctx, slide_id: int, label: str, new: float | None, old: float | None, *,
                 reason: str | None = None):
        shown = "cleared" if new is None else f"{new:g} um/px"
        super().__init__(ctx, label, f"MPP override {label}: {shown}", reason=reason)
        self.slide_id, self.new, self.old = slide_id, new, old

    def _write(self, value: float | None, reason: str | None) -> None:
        from pathomics_desktop.registry.slides import set_mpp_override

        set_mpp_override(self.ctx.registry, self.slide_id, value, user=self.ctx.user, reason=reason)

    def apply(self, reason: str | None = None) -> None:
        self._write(self.new, reason if reason is not None else self.reason)

    def revert(self, reason: str | None) -> None:
        self._write(self.old, reason)


class SlideRowsView(View):
    """A view over the slide catalogue rows: loads them in a worker on ``refresh`` and again
    when slides or jobs change (at once when visible, else when next shown)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._stale = False

    def set_context(self, ctx) -> None:
        if self.ctx is not None:
            self.ctx.data_changed.disconnect(self._data_changed)
        self._clear()
        super().set_context(ctx)
        if ctx is not None:
            ctx.data_changed.connect(self._data_changed)

    def _data_changed(self, what: str) -> None:
        if what in ("slides", "jobs", ""):
            if self.isVisible():
                self.refresh()
            else:
                self._stale = True

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self._stale and self.ctx is not None:
            self._stale = False
            self.refresh()

    def refresh(self) -> None:
        if self.ctx is None:
            return
        self.run_task("rows", load_slide_rows, self.ctx.registry, self.ctx.project, on_done=self._rows_loaded,
                   title="Could not read the slide catalogue")

    def _clear(self) -> None:
        """Forget the rows of the previous project (override)."""

    def _rows_loaded(self, result: dict[str, Any]) -> None:
        """Show ``{"rows": [SlideRow], "images": {slide_id: QImage}}`` (override)."""


NO_SLIDES_HINT = "No slides yet: Add slides... registers files or a folder"
DEMO_SLIDES_HINT = "; on this SYNTHETIC demo, Jobs > New job > SYNTHETIC demo makes them and runs the whole road"


class SlideCatalogView(SlideRowsView):

    #: action -> widgets that do it (greyed out when the role lacks it: ui/permissions.py)
    PERMISSIONS = {"edit_slides": ("add_button", "patient_button", "mpp_button")}
    view_id = "slides"
    title = "Slides"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = SlideTableModel(self)
        self.proxy = filter_proxy(self.model, self)
        self.add_dialog: AddSlidesDialog | None = None
        self.adding_job: int | None = None
        self.last_message = ""
        self.last_report: dict[str, Any] | None = None
        self._select_first_pending = False  # prepare_screenshot before the rows arrived

        self.add_button = QPushButton("Add slides...")
        self.add_button.clicked.connect(self.open_add_dialog)
        self.open_button = QPushButton("Open in viewer")
        self.open_button.clicked.connect(self.open_selected_slide)
        self.patient_button = QPushButton("Open patient")
        self.patient_button.clicked.connect(self.open_selected_patient)
        self.mpp_button = QPushButton("Set MPP...")
        self.mpp_button.setToolTip("Override the scanner's pixel size (um/px) of the selected slide; "
                                   "empty clears the override")
        self.mpp_button.clicked.connect(self.ask_mpp_override)
        self.mpp_dialog: QInputDialog | None = None
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter slides (patient, scanner, status...)")
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(260)
        self.progress.setVisible(False)
        self.counts_label = QLabel("")
        self.report_label = QLabel("")
        self.report_label.setWordWrap(True)
        top = QHBoxLayout()
        for w in (self.add_button, self.open_button, self.patient_button, self.mpp_button, self.search, self.progress):
            top.addWidget(w)
        top.addStretch(1)
        top.addWidget(self.counts_label)

        self.table = row_table(self.proxy, row_height=THUMB_SIZE + 6)
        self.table.sortByColumn(PATIENT_COLUMN, Qt.AscendingOrder)
        header = self.table.horizontalHeader()
        for col, width in enumerate((THUMB_SIZE + 12, 120, 110, 150, 110, 220, 70)):
            header.resizeSection(col, width)
        header.setSectionResizeMode(5, QHeaderView.Stretch)
        self.table.doubleClicked.connect(self._double_clicked)
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._update_buttons())
        link = QFont(self.table.font())
        link.setUnderline(True)
        self.model.patient_font = link

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.report_label)
        layout.addWidget(self.table)
        self._update_buttons()

    # -- loading -------------------------------------------------------------------------
    def _clear(self) -> None:
        self.model.set_rows([])

    def _rows_loaded(self, result: dict[str, Any]) -> None:
        selected = self.selected_slide_id()
        self.model.set_rows(result["rows"], result["images"])
        counts = count_by_status(result["rows"])
        if result["rows"]:
            self.counts_label.setText(f"{len(result['rows'])} slides - "
                                      + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        else:
            self.counts_label.setText(NO_SLIDES_HINT + (DEMO_SLIDES_HINT if self._synthetic() else ""))
        if selected is not None:
            self.select_slide(selected)
        elif self._select_first_pending and self.proxy.rowCount():
            self._select_first_pending = False
            self.table.setCurrentIndex(self.proxy.index(0, 0))
        self._update_buttons()

    def _synthetic(self) -> bool:
        return bool(self.ctx is not None and self.ctx.project.settings["project"].get("synthetic"))

    # -- selection and navigation ------------------------------------------------------------
    def selected_slide_id(self) -> int | None:
        index = self.table.currentIndex()
        return index.data(SLIDE_ID_ROLE) if index.isValid() else None

    def selected_row(self):
        index = self.table.currentIndex()
        return self.model.row_at(self.proxy.mapToSource(index).row()) if index.isValid() else None

    def select_slide(self, slide_id: int) -> bool:
        for i in range(self.proxy.rowCount()):
            if self.proxy.index(i, 0).data(SLIDE_ID_ROLE) == slide_id:
                self.table.setCurrentIndex(self.proxy.index(i, 0))
                return True
        return False

    def _update_buttons(self) -> None:
        row = self.selected_row()
        self.open_button.setEnabled(row is not None)
        self.mpp_button.setEnabled(row is not None)
        self.patient_button.setEnabled(bool(row and row.study_id))

    def _double_clicked(self, index) -> None:
        row = self.model.row_at(self.proxy.mapToSource(index).row())
        if index.column() == PATIENT_COLUMN and row.study_id:
            self.ctx.request_patient.emit(row.study_id)
        else:
            self.ctx.request_slide.emit(row.slide_id)

    def open_selected_slide(self) -> None:
        row = self.selected_row()
        if row is not None:
            self.ctx.request_slide.emit(row.slide_id)

    def open_selected_patient(self) -> None:
        row = self.selected_row()
        if row is not None and row.study_id:
            self.ctx.request_patient.emit(row.study_id)

    # -- MPP override -------------------------------------------------------------------------
    def ask_mpp_override(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        dialog = QInputDialog(self)
        dialog.setWindowTitle("MPP override")
        dialog.setLabelText(f"Pixel size of {row.study_id or row.file_name} in um/px "
                            f"(scanner: {row.mpp_scanner if row.mpp_scanner is not None else 'none'}; "
                            "empty clears the override):")
        dialog.setTextValue("" if row.mpp_override is None else f"{row.mpp_override:g}")
        dialog.textValueSelected.connect(lambda text, r=row: self.set_mpp_override(r.slide_id, text))
        self.mpp_dialog = dialog
        dialog.open()

    def set_mpp_override(self, slide_id: int, text: str, reason: str | None = None) -> bool:
        """Store the override typed as ``text`` (empty: clear it) as an undoable command."""
        from pathomics_desktop.errors import UserError

        row = next(r for r in self.model.rows if r.slide_id == slide_id)
        try:
            value = float(text) if text.strip() else None
        except ValueError:
            show_message(self, "MPP not changed", f"{text!r} is not a number: type the pixel size in um/px, "
                                                  "e.g. 0.25 for a 40x scan.")
            return False
        command = SetMppCommand(self.ctx, slide_id, row.study_id or f"slide {slide_id}", value, row.mpp_override,
                                reason=reason)
        try:
            push(self.ctx, command)
        except UserError as exc:
            show_message(self, "MPP not changed", str(exc))
            return False
        return True

    def find(self, text: str) -> None:
        self.search.setText(text)
        self.search.setFocus()

    # -- adding slides ------------------------------------------------------------------------------
    def open_add_dialog(self, paths=None) -> AddSlidesDialog:
        dialog = AddSlidesDialog(self)
        dialog.add_paths(paths or [])
        dialog.accepted.connect(lambda: self.add_slides(dialog.params or {}))
        self.add_dialog = dialog
        dialog.open()
        return dialog

    def add_slides(self, params: dict[str, Any]) -> None:
        """Run the ``slides-add`` job for ``params`` (paths, mapping or pattern, thumbnails)."""
        launcher = job_launcher(self.ctx)
        self.add_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setFormat("registering slides %p%")
        self.progress.setVisible(True)
        self.report_label.setText("")
        launcher.progress.connect(self._add_progress)
        launcher.finished.connect(self._add_finished)
        launcher.failed.connect(self._add_could_not_run)
        launcher.start("slides-add", params, on_started=self._add_started, on_error=self._add_error)

    def _add_started(self, job_id: int) -> None:
        self.adding_job = job_id
        self.ctx.status_message.emit(f"registering slides (job {job_id})")

    def _add_progress(self, job_id: int, fraction: float, message: str) -> None:
        if job_id == self.adding_job:
            self.progress.setValue(int(round(fraction * 1000)))
            self.progress.setToolTip(message)

    def _add_done(self) -> None:
        launcher = job_launcher(self.ctx)
        launcher.progress.disconnect(self._add_progress)
        launcher.finished.disconnect(self._add_finished)
        launcher.failed.disconnect(self._add_could_not_run)
        self.adding_job = None
        self.progress.setVisible(False)
        self.add_button.setEnabled(True)

    def _add_finished(self, job_id: int, job) -> None:
        if job_id != self.adding_job:
            return
        self._add_done()
        if job.status == "done":
            self.last_report = job.result
            counts = (job.result or {}).get("counts", {})
            text = "Slides: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            failed = [o for o in (job.result or {}).get("outcomes", []) if o["status"] in ("failed", "unassigned")]
            if failed:
                text += "\n" + "\n".join(f"{o['status']}: {o['message']}" for o in failed[:5])
            self.report_label.setText(text)
            self.ctx.data_changed.emit("slides")
        elif job.status == "failed":
            show_message(self, "Adding slides failed", f"{error_summary(job.error)}\n\nFix the input and add the "
                                                       "slides again (the Jobs panel keeps the full error).")
        else:
            self.report_label.setText(f"Adding slides {job.status}; resume it from the Jobs panel.")

    def _add_could_not_run(self, job_id: int, message: str) -> None:
        if job_id == self.adding_job:
            self._add_done()
            show_message(self, "Adding slides failed", message)

    def _add_error(self, message: str, _trace: str) -> None:
        self._add_done()
        show_message(self, "Could not add slides", message)

    # -- shell hooks -----------------------------------------------------------------------------------
    def prepare_screenshot(self) -> None:
        if self.proxy.rowCount():
            self.table.setCurrentIndex(self.proxy.index(0, 0))
        else:
            self._select_first_pending = True

    def snapshot(self) -> dict[str, Any]:
        order = [self.proxy.mapToSource(self.proxy.index(i, 0)).row() for i in range(self.proxy.rowCount())]
        selected = self.selected_row()
        return {"view": self.view_id, "slides": len(self.model.rows), "shown": len(order),
                "counts": count_by_status(self.model.rows), "rows": self.model.shown_rows(order),
                "selected_patient": selected.study_id if selected else None}
