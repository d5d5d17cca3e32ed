"""A registry job run from the GUI: progress through signals, cancel honoured before the next
step starts, no widget access from the worker, the event loop keeps running while it works."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QWidget

from pathomics_desktop.jobs.core import register_job_type
from pathomics_desktop.jobs.runner import get_job, submit
from pathomics_desktop.registry.service import init_project, open_project_registry
from pathomics_desktop.ui.workers import JobWorker, start_worker, wait_for_workers

#: what the job did, shared with the test (the job runs in the worker's thread)
STARTED: list[int] = []
PAUSED = threading.Event()  # set by the job when it reaches ``pause_at``
RELEASE = threading.Event()  # set by the test to let the job go on


def stepping_job(project, params, ctx):
    """``steps`` steps; records each step it starts; at ``pause_at`` it waits for the test."""
    for step in range(params["steps"]):
        ctx.check_cancelled()
        STARTED.append(step)
        if step == params.get("pause_at"):
            PAUSED.set()
            assert RELEASE.wait(30), "the test never released the job"
        ctx.progress((step + 1) / params["steps"], f"step {step + 1}")
    return {"steps": params["steps"]}


@pytest.fixture
def project(tmp_path):
    register_job_type("ui-steps", stepping_job)
    STARTED.clear()
    PAUSED.clear()
    RELEASE.clear()
    yield init_project(tmp_path / "p")
    RELEASE.set()  # never leave a worker thread waiting


def _submit(project, **params):
    reg = open_project_registry(project)
    try:
        return submit(reg, "ui-steps", params)
    finally:
        reg.dispose()


def _job_status(project, job_id):
    reg = open_project_registry(project)
    try:
        return get_job(reg, job_id).status
    finally:
        reg.dispose()


def test_job_worker_reports_progress_and_finishes(qtbot, project):
    owner = QWidget()
    qtbot.addWidget(owner)
    job_id = _submit(project, steps=10)
    worker = JobWorker(project, job_id)
    seen, done = [], []
    worker.progress.connect(lambda f, m: seen.append((f, m)))
    worker.finished.connect(done.append)
    start_worker(owner, worker)
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert done[0].status == "done" and done[0].result == {"steps": 10}
    # every step's progress reached the GUI, in order, before ``finished``
    assert seen == [((i + 1) / 10, f"step {i + 1}") for i in range(10)]
    assert STARTED == list(range(10))
    assert _job_status(project, job_id) == "done"
    wait_for_workers(owner)


def test_job_worker_cancel_is_honoured_before_the_next_step(qtbot, project):
    """The job is held inside step 4 (index 3); meanwhile the GUI's timer keeps firing, the
    user cancels, the job is let go: it finishes step 4 and never starts step 5."""
    owner = QWidget()
    qtbot.addWidget(owner)
    job_id = _submit(project, steps=1000, pause_at=3)
    worker = JobWorker(project, job_id)
    done, seen = [], []
    worker.finished.connect(done.append)
    worker.progress.connect(lambda f, m: seen.append(m))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    start_worker(owner, worker)
    qtbot.waitUntil(PAUSED.is_set, timeout=10000)
    before = len(ticks)
    qtbot.waitUntil(lambda: len(ticks) >= before + 3, timeout=10000)  # the loop runs on
    assert not done and STARTED == [0, 1, 2, 3]  # ... while the job is still at work
    worker.cancel()
    RELEASE.set()
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    timer.stop()
    assert done[0].status == "cancelled" and done[0].result is None
    assert STARTED == [0, 1, 2, 3]  # step 5 (index 4) never started
    assert seen == ["step 1", "step 2", "step 3", "step 4"]
    assert _job_status(project, job_id) == "cancelled"
    wait_for_workers(owner)
