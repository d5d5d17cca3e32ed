"""The jobs panel: every job of the registry (queued, running, done, failed, cancelled),
with progress bars, time remaining, cancel, resume, log and error, and "New job" forms for
tiling, training, inference, Grad-CAM and signature fits.

The table is the registry's ``jobs`` table, polled every second in a worker thread while the
panel is visible (:func:`pathomics_desktop.jobs.listing.job_rows`), so jobs started from the
CLI or by a headless worker (``pathomics jobs worker``) appear too. A job started here is
created with :func:`pathomics_desktop.jobs.runner.submit` and run by a
:class:`~pathomics_desktop.ui.workers.JobWorker` in a QThread (:class:`JobLauncher`); the GUI
thread only receives its signals.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.jobs.listing import (
    STATUSES,
    build_params,
    count_by_status,
    device_choices,
    error_summary,
    job_detail,
    job_forms,
    job_rows,
    model_runs,
)
from pathomics_desktop.ui.models.jobs import JOB_ID_ROLE, PROGRESS_COLUMN, JobTableModel, ProgressBarDelegate
from pathomics_desktop.ui.views.base import View
from pathomics_desktop.ui.views.common import filter_proxy, on_gui_thread, row_table, show_message
from pathomics_desktop.ui.workers import JobWorker, start_worker

POLL_MS = 1000


# -- running registry jobs from the GUI ---------------------------------------------------------
class JobLauncher(QObject):
    """Creates registry jobs and runs them in JobWorker threads; one per ProjectContext
    (:func:`job_launcher`), shared by every view that starts jobs.

    Signals carry the job id: ``started(id)``, ``progress(id, fraction, message)``,
    ``finished(id, job row)`` (status done, failed or cancelled) and ``failed(id, message)``
    (the job could not be run at all, e.g. another worker claimed it).
    """

    started = Signal(int)
    progress = Signal(int, float, str)
    finished = Signal(int, object)
    failed = Signal(int, str)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.ctx = ctx
        self.workers: dict[int, JobWorker] = {}

    def start(self, job_type: str, params: dict[str, Any], *, on_started: Callable[[int], None] | None = None,
              on_error: Callable[[str, str], None] | None = None) -> None:
        """Submit a job (in a worker thread) and run it in a JobWorker."""
        from pathomics_desktop.jobs.runner import submit

        def submitted(job_id: int) -> None:
            if on_started is not None:
                on_started(job_id)
            self.run(job_id)

        self.ctx.run(submit, self.ctx.registry, job_type, params, user=self.ctx.user, on_done=submitted,
                     on_error=on_error, title=f"Could not start the {job_type} job")

    def run(self, job_id: int) -> JobWorker:
        """Run an existing queued job in a new JobWorker thread."""
        worker = JobWorker(self.ctx.project, job_id)
        self.workers[job_id] = worker
        worker.progress.connect(lambda f, m: self.progress.emit(job_id, f, m))  # queued to the GUI
        worker.finished.connect(on_gui_thread(self, lambda job: self._finished(job_id, job)))
        worker.failed.connect(on_gui_thread(self, lambda message, _trace: self._failed(job_id, message)))
        start_worker(self.ctx, worker)  # ctx.close() cancels and joins it
        self.started.emit(job_id)
        return worker

    def resume(self, job_id: int, *, on_error: Callable[[str, str], None] | None = None) -> None:
        """Queue a failed or cancelled job again and run it here."""
        from pathomics_desktop.jobs.runner import resume

        self.ctx.run(resume, self.ctx.registry, job_id, on_done=lambda _none: self.run(job_id), on_error=on_error,
                     title=f"Could not resume job {job_id}")

    def cancel(self, job_id: int, *, on_done: Callable[[Any], None] | None = None) -> None:
        """Stop a job: its token at once when it runs here, and ``cancel_requested`` in the
        registry (a job of another process stops at its next check; a queued one at once)."""
        from pathomics_desktop.jobs.runner import request_cancel

        worker = self.workers.get(job_id)
        if worker is not None:
            worker.cancel()
        self.ctx.run(request_cancel, self.ctx.registry, job_id, on_done=on_done, title=f"Could not cancel job {job_id}")

    def _finished(self, job_id: int, job) -> None:
        self.workers.pop(job_id, None)
        self.ctx.data_changed.emit("jobs")
        self.finished.emit(job_id, job)

    def _failed(self, job_id: int, message: str) -> None:
        self.workers.pop(job_id, None)
        self.failed.emit(job_id, message)


def job_launcher(ctx) -> JobLauncher:
    """The context's JobLauncher (created on first use)."""
    launcher = getattr(ctx, "_job_launcher", None)
    if launcher is None:
        launcher = JobLauncher(ctx)
        ctx._job_launcher = launcher
    return launcher


def form_choices(project, need_devices: bool) -> dict[str, list[str]]:
    """Worker function: model runs of the project and, when asked, the compute devices
    (imports torch)."""
    return {"runs": model_runs(project), "devices": device_choices() if need_devices else ["cpu"]}


# -- the "New job" dialog ---------------------------------------------------------------------
class NewJobDialog(QDialog):
    """A form for one job type, built from :func:`pathomics_desktop.jobs.listing.job_forms`."""

    def __init__(self, job_type: str, choices: dict[str, list[str]], parent=None):
        super().__init__(parent)
        self.job_type = job_type
        title, self.specs = job_forms()[job_type]
        self.setWindowTitle(f"New job: {title}")
        self.fields: dict[str, QWidget] = {}
        form = QFormLayout()
        for spec in self.specs:
            if spec.kind in ("choice", "device", "run"):
                widget = QComboBox()
                items = {"choice": list(spec.choices), "device": choices.get("devices", ["cpu"]),
                         "run": choices.get("runs", [])}[spec.kind]
                widget.addItems(items)
                if spec.kind == "run":
                    widget.setEditable(True)
                    widget.lineEdit().setPlaceholderText("no model runs yet: train one first")
                if spec.default is not None and str(spec.default) in items:
                    widget.setCurrentText(str(spec.default))
            elif spec.kind == "bool":
                widget = QCheckBox()
                widget.setChecked(bool(spec.default))
            else:
                widget = QLineEdit()
                if spec.default is not None:
                    widget.setText(str(spec.default))
                else:
                    widget.setPlaceholderText("default" if not spec.required else "required")
            widget.setObjectName(spec.name)
            widget.setToolTip(spec.help)
            self.fields[spec.name] = widget
            form.addRow(spec.label + (" *" if spec.required else ""), widget)
        self.error = QLabel("")
        self.error.setObjectName("formError")
        self.error.setStyleSheet("color: #b02a37;")
        self.error.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Start")
        self.buttons.accepted.connect(self._check)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.params: dict[str, Any] | None = None

    def set_value(self, name: str, value: Any) -> None:
        widget = self.fields[name]
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QComboBox):
            widget.setCurrentText(str(value))
        else:
            widget.setText(str(value))

    def values(self) -> dict[str, Any]:
        return {name: (w.isChecked() if isinstance(w, QCheckBox) else w.currentText() if isinstance(w, QComboBox)
                       else w.text()) for name, w in self.fields.items()}

    def _check(self) -> None:
        from pathomics_desktop.errors import UserError

        try:
            self.params = build_params(self.job_type, self.values())
        except UserError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


# -- the panel -----------------------------------------------------------------------------------
class JobsView(View):

    #: action -> widgets that do it (greyed out when the role lacks it: ui/permissions.py)
    PERMISSIONS = {"run_jobs": ("new_button", "cancel_button", "resume_button")}
    view_id = "jobs"
    title = "Jobs"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = JobTableModel(self)
        self.proxy = filter_proxy(self.model, self)
        self.job_dialog: NewJobDialog | None = None
        self.detail: dict[str, Any] | None = None
        self.last_message = ""
        self._polling = False
        self._connected_ctx = None
        self._select_after_poll: int | None = None   # a job started here: select it once listed
        self._select_first_pending = False           # prepare_screenshot before the rows arrived

        self.new_button = QToolButton()
        self.new_button.setText("New job")
        self.new_button.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.new_button)
        for job_type, (title, _specs) in job_forms().items():
            action = menu.addAction(f"{title}...")
            action.setData(job_type)
            action.triggered.connect(lambda _checked=False, t=job_type: self.open_new_job(t))
        self.new_button.setMenu(menu)
        self.cancel_button = QPushButton("Cancel job")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self.resume_selected)
        self.status_filter = QComboBox()
        self.status_filter.addItems(["all"] + list(STATUSES))
        self.status_filter.currentTextChanged.connect(self._apply_filter)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter jobs (type, status, message...)")
        self.search.textChanged.connect(self._apply_filter)
        self.counts_label = QLabel("")
        top = QHBoxLayout()
        for w in (self.new_button, self.cancel_button, self.resume_button, QLabel("Status:"), self.status_filter,
                  self.search):
            top.addWidget(w)
        top.addStretch(1)
        top.addWidget(self.counts_label)

        self.table = row_table(self.proxy)
        self.table.setItemDelegateForColumn(PROGRESS_COLUMN, ProgressBarDelegate(self.table))
        self.table.sortByColumn(0, Qt.DescendingOrder)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        for col, width in ((0, 50), (1, 100), (2, 110), (3, 140), (4, 90), (5, 90), (6, 260)):
            header.resizeSection(col, width)
        header.setSectionResizeMode(QHeaderView.Interactive)
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._selection_changed())

        self.detail_title = QLabel("Select a job to see its log and error.")
        self.detail_title.setWordWrap(True)
        self.log_text = QPlainTextEdit()
        self.log_text.setReadOnly(True)
        self.error_text = QPlainTextEdit()
        self.error_text.setReadOnly(True)
        self.info_text = QPlainTextEdit()
        self.info_text.setReadOnly(True)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.log_text, "Log")
        self.tabs.addTab(self.error_text, "Error")
        self.tabs.addTab(self.info_text, "Parameters and result")
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.detail_title)
        dl.addWidget(self.tabs)
        self.splitter = QSplitter(Qt.Vertical)
        self.splitter.setObjectName("jobsSplitter")
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(detail)
        self.splitter.setSizes([360, 240])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.splitter)

        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self._update_buttons()

    # -- context and polling -------------------------------------------------------------
    def set_context(self, ctx) -> None:
        if self._connected_ctx is not None:
            launcher = job_launcher(self._connected_ctx)
            for signal, slot in ((launcher.progress, self._live_progress), (launcher.finished, self._job_finished),
                                 (launcher.started, self._job_started), (launcher.failed, self._job_failed)):
                signal.disconnect(slot)
            self._connected_ctx = None
        self.model.set_rows([])
        self.model.live.clear()
        self._polling = False  # a poll of the previous project never reports back
        if ctx is not None:
            launcher = job_launcher(ctx)
            launcher.progress.connect(self._live_progress)
            launcher.finished.connect(self._job_finished)
            launcher.started.connect(self._job_started)
            launcher.failed.connect(self._job_failed)
            self._connected_ctx = ctx
        else:
            self.timer.stop()
        super().set_context(ctx)
        if ctx is not None and self.isVisible():
            self.timer.start()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self.ctx is not None:
            self.timer.start()
            self.poll()

    def hideEvent(self, event) -> None:  # noqa: N802
        self.timer.stop()
        super().hideEvent(event)

    def refresh(self) -> None:
        self.poll()

    def poll(self) -> None:
        """Read the jobs table in a worker (skipped while the previous poll is running)."""
        if self.ctx is None or self._polling:
            return
        self._polling = True
        self.run_task("poll", job_rows, self.ctx.registry, on_done=self._rows_loaded, on_error=self._poll_failed)

    def _poll_failed(self, message: str, _trace: str) -> None:
        self._polling = False
        self.counts_label.setText(f"cannot read the jobs: {message}")

    def _rows_loaded(self, rows) -> None:
        self._polling = False
        selected = self.selected_job_id()
        before = {r.job_id: r.status for r in self.model.rows}
        self.model.set_rows(rows)
        for job_id in [j for j in self.model.live if j not in {r.job_id for r in rows if r.status == "running"}]:
            self.model.live.pop(job_id, None)
        self._apply_filter()
        if self._select_after_poll is not None and self.select_job(self._select_after_poll):
            self._select_after_poll = None
        elif selected is not None and self.selected_job_id() != selected:
            self.select_job(selected)
        elif self._select_first_pending and rows:
            self._select_first_pending = False
            self._select_representative()
        counts = count_by_status(rows)
        self.counts_label.setText("  ".join(f"{s}: {n}" for s, n in counts.items()))
        current = next((r for r in rows if r.job_id == self.selected_job_id()), None)
        if current is not None and (current.status == "running" or before.get(current.job_id) != current.status):
            self._load_detail(current.job_id)
        self._update_buttons()

    # -- selection and detail ---------------------------------------------------------------
    def selected_job_id(self) -> int | None:
        index = self.table.currentIndex()
        return index.data(JOB_ID_ROLE) if index.isValid() else None

    def selected_row(self):
        job_id = self.selected_job_id()
        return next((r for r in self.model.rows if r.job_id == job_id), None)

    def select_job(self, job_id: int) -> bool:
        row = self.model.row_of(job_id)
        if row is None:
            return False
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if not index.isValid():
            return False
        self.table.setCurrentIndex(index)
        self.table.selectRow(index.row())
        return True

    def _selection_changed(self) -> None:
        self._update_buttons()
        job_id = self.selected_job_id()
        if job_id is not None:
            self._load_detail(job_id)

    def _load_detail(self, job_id: int) -> None:
        self.run_task("detail", job_detail, self.ctx.registry, job_id, on_done=self._show_detail,
                   title="Could not read the job")

    def _show_detail(self, detail: dict[str, Any]) -> None:
        import json

        self.detail = detail
        error = detail["error"]
        self.detail_title.setText(f"Job {detail['job_id']} ({detail['type']}): {detail['status']}"
                                  + (f" - {error_summary(error)}" if error else ""))
        self.log_text.setPlainText(detail["log"])
        self.log_text.verticalScrollBar().setValue(self.log_text.verticalScrollBar().maximum())
        self.error_text.setPlainText(error)
        self.info_text.setPlainText("parameters:\n" + json.dumps(detail["params"], indent=2, default=str)
                                    + "\n\nresult:\n" + json.dumps(detail["result"], indent=2, default=str))
        self.tabs.setTabText(1, "Error (1)" if error else "Error")
        if error and detail["status"] == "failed":
            self.tabs.setCurrentWidget(self.error_text)

    def _update_buttons(self) -> None:
        row = self.selected_row()
        self.cancel_button.setEnabled(bool(row and row.can_cancel))
        self.resume_button.setEnabled(bool(row and row.can_resume))

    def _apply_filter(self, *_args) -> None:
        status = self.status_filter.currentText()
        text = self.search.text()
        if status != "all":
            self.proxy.setFilterKeyColumn(2)
            self.proxy.setFilterRegularExpression(f"^{status}")
        else:
            self.proxy.setFilterKeyColumn(-1)
            self.proxy.setFilterFixedString(text)

    def find(self, text: str) -> None:
        self.status_filter.setCurrentText("all")
        self.search.setText(text)
        self.search.setFocus()

    # -- actions ---------------------------------------------------------------------------
    def open_new_job(self, job_type: str) -> None:
        """Open the form of a job type (the model runs and devices are looked up first, in a
        worker: asking PyTorch for CUDA imports it)."""
        if self.ctx is None:
            return
        need_devices = any(s.kind == "device" for s in job_forms()[job_type][1])
        self.run_task("form", form_choices, self.ctx.project, need_devices,
                   on_done=lambda choices: self._show_form(job_type, choices), title="Could not open the form")

    def _show_form(self, job_type: str, choices: dict[str, list[str]]) -> None:
        dialog = NewJobDialog(job_type, choices, self)
        dialog.accepted.connect(lambda: self.start_job(job_type, dialog.params or {}))
        self.job_dialog = dialog
        dialog.open()

    def start_job(self, job_type: str, params: dict[str, Any]) -> None:
        """Create the job in the registry and run it in a JobWorker thread."""
        job_launcher(self.ctx).start(job_type, params, on_started=self._started_here,
                                     on_error=lambda m, _t: show_message(self, "Could not start the job", m))

    def _started_here(self, job_id: int) -> None:
        self.ctx.status_message.emit(f"job {job_id} started")
        self._select_after_poll = job_id

    def cancel_selected(self) -> None:
        row = self.selected_row()
        if row is None or not row.can_cancel:
            return
        self.cancel_button.setEnabled(False)
        job_launcher(self.ctx).cancel(row.job_id, on_done=lambda _status: self.poll())

    def resume_selected(self) -> None:
        row = self.selected_row()
        if row is None or not row.can_resume:
            return
        self.resume_button.setEnabled(False)
        job_launcher(self.ctx).resume(row.job_id,
                                      on_error=lambda m, _t: show_message(self, "Could not resume the job", m))

    # -- launcher signals ------------------------------------------------------------------------
    def _job_started(self, job_id: int) -> None:
        self.poll()

    def _live_progress(self, job_id: int, fraction: float, message: str) -> None:
        self.model.set_live(job_id, fraction, message)

    def _job_finished(self, job_id: int, job) -> None:
        self.model.live.pop(job_id, None)
        if job.status == "failed":
            self.ctx.status_message.emit(f"job {job_id} ({job.type}) failed: {error_summary(job.error)}")
        else:
            self.ctx.status_message.emit(f"job {job_id} ({job.type}): {job.status}")
        self.poll()

    def _job_failed(self, job_id: int, message: str) -> None:
        self.ctx.status_message.emit(f"job {job_id}: {message}")
        self.poll()

    # -- shell hooks -----------------------------------------------------------------------------
    def prepare_screenshot(self) -> None:
        """Select a representative job: a running one, else the newest finished one (it has a
        log), else the newest."""
        if self.model.rows:
            self._select_representative()
        else:
            self._select_first_pending = True

    def _select_representative(self) -> None:
        rank = {"running": 0, "done": 1, "failed": 2}
        best = min(self.model.rows, key=lambda r: (rank.get(r.status, 3), -r.job_id))
        self.select_job(best.job_id)

    def snapshot(self) -> dict[str, Any]:
        shown = [self.proxy.mapToSource(self.proxy.index(i, 0)).row() for i in range(self.proxy.rowCount())]
        rows = self.model.shown_rows()
        detail = None
        if self.detail is not None:
            detail = {"job": self.detail["job_id"], "type": self.detail["type"], "status": self.detail["status"],
                      "error": error_summary(self.detail["error"]), "log_lines": len(self.detail["log"].splitlines())}
        return {"view": self.view_id, "counts": count_by_status(self.model.rows), "rows": [rows[i] for i in shown],
                "selected": detail}
