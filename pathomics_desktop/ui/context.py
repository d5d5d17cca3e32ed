"""The open project as the GUI sees it: one registry, one undo stack, one user, and the
background tasks of every view.

Views receive a :class:`ProjectContext` through ``set_context``; they read and write only
through Qt-free services (registry, cohort, analytics, slides, jobs, stats) and run anything
slow with :meth:`ProjectContext.run`, which wraps the function in a QThread worker
(:mod:`pathomics_desktop.ui.workers`). A task started under a ``key`` replaces an earlier
task with the same key: the earlier one is cancelled and its result dropped when it arrives
(Orange's task-state habit), so a view never draws a stale answer.
"""

from __future__ import annotations

import getpass
import os
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QUndoStack

from pathomics_desktop.ui.workers import FunctionWorker, start_worker, wait_for_workers


def current_user() -> str:
    """The user recorded in audit rows: ``$PATHOMICS_USER``, else the login name."""
    return os.environ.get("PATHOMICS_USER") or getpass.getuser()


class ProjectContext(QObject):
    """Everything a view needs of the open project."""

    #: a write changed curated data; the argument names what ("patients", "visits",
    #: "variables", "slides", "jobs", "" for anything)
    data_changed = Signal(str)
    #: navigation requests, handled by the main window
    request_view = Signal(str)
    request_patient = Signal(str)      # study id
    request_slide = Signal(int)        # slide id
    #: open an analysis view in a given state: (view id, request dict for its apply_request)
    request_analysis = Signal(str, dict)
    #: a message for the status bar
    status_message = Signal(str)
    #: a task failed: (title, user-facing message, traceback); the main window shows it
    task_failed = Signal(str, str, str)
    #: the one cohort filter of the analysis views changed (the new CohortFilter)
    cohort_filter_changed = Signal(object)

    def __init__(self, project, registry, *, user: str | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.registry = registry
        self.user = user or current_user()
        self.undo_stack = QUndoStack(self)
        self._latest: dict[str, FunctionWorker] = {}
        self._active: dict[FunctionWorker, _TaskRelay] = {}
        from pathomics_desktop.analytics.cohort_filter import CohortFilter

        self.cohort_filter = CohortFilter()
        #: the login's role (registry/permissions.py); the main window sets it once it is read
        self.role = "" if getattr(registry, "dialect", "") == "postgresql" else "admin"

    # -- the analysis views' shared cohort filter ---------------------------------------
    def set_cohort_filter(self, cohort_filter) -> None:
        """Replace the filter every analysis view reads (emits ``cohort_filter_changed``
        when it differs)."""
        if cohort_filter != self.cohort_filter:
            self.cohort_filter = cohort_filter
            self.cohort_filter_changed.emit(cohort_filter)

    # -- background tasks --------------------------------------------------------------
    def run(self, fn: Callable[..., Any], *args, on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[str, str], None] | None = None,
            on_progress: Callable[[float, str], None] | None = None, key: str | None = None,
            title: str = "Task failed", **kwargs) -> FunctionWorker:
        """Run ``fn(*args, **kwargs)`` in a worker thread.

        ``on_done(result)``, ``on_error(message, traceback)`` and ``on_progress(fraction,
        message)`` always run on the GUI thread (a relay object living there receives the
        worker's signals, queued). With ``on_progress`` the function also gets ``progress=``
        (throttled to 10 reports a second) and ``cancel=`` (a :class:`CancelToken`). Without
        ``on_error`` a failure is reported through :attr:`task_failed`. A task started under
        a ``key`` (e.g. ``"patients:rows"``) cancels the running task of that key, whose
        result is then dropped."""
        worker = FunctionWorker(fn, *args, with_progress=on_progress is not None, **kwargs)
        if key is not None:
            previous = self._latest.get(key)
            if previous is not None:
                previous.token.cancel()
            self._latest[key] = worker
        relay = _TaskRelay(self, worker, key, on_done, on_error, on_progress, title)
        self._active[worker] = relay
        start_worker(self, worker)
        return worker

    def _is_current(self, worker: FunctionWorker, key: str | None) -> bool:
        return key is None or self._latest.get(key) is worker

    def _finish(self, worker: FunctionWorker, key: str | None) -> None:
        self._active.pop(worker, None)
        if key is not None and self._latest.get(key) is worker:
            del self._latest[key]

    def busy(self) -> bool:
        """True while any task of this context is running (screenshots wait for this)."""
        return bool(self._active)

    def close(self) -> None:
        """Cancel and join every task, then release the registry."""
        wait_for_workers(self)
        self._active.clear()
        self._latest.clear()
        self.registry.dispose()


class _TaskRelay(QObject):
    """Lives on the GUI thread and receives one worker's signals there (queued), so that the
    callbacks of :meth:`ProjectContext.run` never run in the worker thread. Whether a result
    is stale is decided when it arrives, before the task is forgotten."""

    def __init__(self, ctx: ProjectContext, worker: FunctionWorker, key: str | None, on_done, on_error,
                 on_progress, title: str):
        super().__init__(ctx)
        self.ctx, self.worker, self.key, self.title = ctx, worker, key, title
        self.on_done, self.on_error, self.on_progress = on_done, on_error, on_progress
        worker.finished.connect(self.done)
        worker.failed.connect(self.failed)
        if on_progress is not None:
            worker.progress.connect(self.progress)

    @Slot(float, str)
    def progress(self, fraction: float, message: str) -> None:
        if self.ctx._is_current(self.worker, self.key):
            self.on_progress(fraction, message)

    @Slot(object)
    def done(self, result) -> None:
        current = self._close()
        if current and self.on_done is not None:
            self.on_done(result)

    @Slot(str, str)
    def failed(self, message: str, trace: str) -> None:
        if not self._close():
            return
        if self.on_error is not None:
            self.on_error(message, trace)
        else:
            self.ctx.task_failed.emit(self.title, message, trace)

    def _close(self) -> bool:
        current = self.ctx._is_current(self.worker, self.key) and not self.worker.token.cancelled
        self.ctx._finish(self.worker, self.key)
        self.deleteLater()
        return current
