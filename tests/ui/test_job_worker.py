"""A registry job run from the GUI: progress through signals, cancel within 2 s, no widget
access from the worker, the event loop stays responsive."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("PySide6")


def slow_job(project, params, ctx):
    for step in range(params["steps"]):
        ctx.check_cancelled()
        time.sleep(0.02)
        ctx.progress((step + 1) / params["steps"], f"step {step + 1}")
    return {"steps": params["steps"]}


@pytest.fixture
def project(tmp_path):
    from pathomics_desktop.jobs.core import register_job_type
    from pathomics_desktop.registry.service import init_project

    register_job_type("ui-slow", slow_job)
    return init_project(tmp_path / "p")


def _submit(project, steps):
    from pathomics_desktop.jobs.runner import submit
    from pathomics_desktop.registry.service import open_project_registry

    reg = open_project_registry(project)
    try:
        return submit(reg, "ui-slow", {"steps": steps})
    finally:
        reg.dispose()


def test_job_worker_reports_progress_and_finishes(qtbot, project):
    from PySide6.QtWidgets import QWidget

    from pathomics_desktop.ui.workers import JobWorker, start_worker, wait_for_workers

    owner = QWidget()
    qtbot.addWidget(owner)
    worker = JobWorker(project, _submit(project, 10))
    seen, done = [], []
    worker.progress.connect(lambda f, m: seen.append(f))
    worker.finished.connect(done.append)
    start_worker(owner, worker)
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert done[0].status == "done" and done[0].result == {"steps": 10}
    assert seen and seen[-1] == 1.0
    wait_for_workers(owner)


def test_job_worker_cancel_within_two_seconds(qtbot, project):
    from PySide6.QtWidgets import QWidget

    from pathomics_desktop.ui.workers import JobWorker, start_worker, wait_for_workers

    owner = QWidget()
    qtbot.addWidget(owner)
    worker = JobWorker(project, _submit(project, 1000))
    done = []
    worker.finished.connect(done.append)
    from PySide6.QtCore import QTimer

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    start_worker(owner, worker)
    qtbot.wait(400)
    assert len(ticks) >= 5  # the event loop keeps running while the job works
    t0 = time.monotonic()
    worker.cancel()
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
    assert time.monotonic() - t0 < 2.0
    assert done[0].status == "cancelled"
    wait_for_workers(owner)
