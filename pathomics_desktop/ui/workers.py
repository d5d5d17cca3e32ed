"""Run a Qt-free job function in a QThread; talk to the GUI only through signals.

The job function has the signature ``fn(*args, progress=callback, cancel=token, **kwargs)``
when ``with_progress`` is set; the worker never touches widgets.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from pathomics_desktop.jobs.core import CancelToken


class ThrottledProgress:
    """A progress callback that forwards at most one report per ``interval`` seconds (and
    always the first, the last at fraction 1, and a changed message), so a job that reports
    every tile cannot flood the GUI's event queue."""

    def __init__(self, emit: Callable[[float, str], None], interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        self._emit, self._interval, self._clock = emit, interval, clock
        self._last_time, self._last_message = -1e9, None

    def __call__(self, fraction: float, message: str = "") -> None:
        now = self._clock()
        fraction, message = float(fraction), str(message)
        if (now - self._last_time >= self._interval or fraction >= 1.0
                or message != self._last_message):
            self._last_time, self._last_message = now, message
            self._emit(fraction, message)


class FunctionWorker(QObject):
    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str, str)  # message, traceback

    def __init__(self, fn: Callable[..., Any], *args, with_progress: bool = False, **kwargs):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._with_progress = with_progress
        self.token = CancelToken()

    @Slot()
    def run(self) -> None:
        try:
            kwargs = dict(self._kwargs)
            if self._with_progress:
                kwargs["progress"] = ThrottledProgress(self.progress.emit)
                kwargs["cancel"] = self.token
            result = self._fn(*self._args, **kwargs)
        except Exception as exc:  # reported to the GUI, never raised in the thread
            self.failed.emit(str(exc), traceback.format_exc())
            return
        self.finished.emit(result)


def start_worker(owner: QObject, worker: FunctionWorker) -> QThread:
    """Move ``worker`` to a new thread and start it.

    The owner keeps Python references to both (``owner._jobs``) until the thread has finished,
    so neither is garbage-collected while running; ``wait_for_workers`` joins them on close.
    """
    thread = QThread()
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    worker.failed.connect(thread.quit)
    jobs = owner.__dict__.setdefault("_jobs", [])
    jobs.append((thread, worker))
    thread.finished.connect(lambda: _forget(owner, thread))
    thread.start()
    return thread


def _forget(owner: QObject, thread: QThread) -> None:
    jobs = owner.__dict__.get("_jobs", [])
    owner.__dict__["_jobs"] = [(t, w) for t, w in jobs if t is not thread]


def wait_for_workers(owner: QObject, timeout_ms: int = 5000) -> None:
    """Cancel and join every worker thread of ``owner`` (call on close)."""
    for thread, worker in list(owner.__dict__.get("_jobs", [])):
        worker.token.cancel()
        thread.quit()
        thread.wait(timeout_ms)


class JobWorker(QObject):
    """Runs a registry job (:func:`pathomics_desktop.jobs.runner.run_job`) in a QThread.

    ``progress`` carries (fraction, message); ``finished`` the final job row (status done,
    failed or cancelled). :meth:`cancel` sets the job's token: the job stops at its next check
    (within 2 seconds). The worker never touches widgets.
    """

    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str, str)

    def __init__(self, project, job_id: int):
        super().__init__()
        self.project, self.job_id = project, job_id
        self.token = CancelToken()

    def cancel(self) -> None:
        self.token.cancel()

    @Slot()
    def run(self) -> None:
        from pathomics_desktop.jobs.runner import run_job
        from pathomics_desktop.registry.service import open_project_registry

        try:
            registry = open_project_registry(self.project)
            try:
                def echo(fraction, message):
                    if fraction is not None:
                        self.progress.emit(float(fraction), str(message))

                job = run_job(self.project, registry, self.job_id, echo=echo, token=self.token)
            finally:
                registry.dispose()
        except Exception as exc:
            self.failed.emit(str(exc), traceback.format_exc())
            return
        self.finished.emit(job)
