"""ProjectContext.run: callbacks on the GUI thread, stale results dropped, busy until delivered,
throttled progress."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from pathomics_desktop.ui.context import ProjectContext
from pathomics_desktop.ui.workers import ThrottledProgress


class _NoRegistry:
    def dispose(self):
        pass


def _ctx(tmp_path):
    return ProjectContext(project=None, registry=_NoRegistry(), user="tester")


def test_callbacks_run_on_the_gui_thread_and_busy_lasts_until_delivery(qtbot, tmp_path):
    ctx = _ctx(tmp_path)
    seen = {}

    def work():
        seen["worker_thread"] = threading.get_ident()
        return 41 + 1

    def done(result):
        seen["result"], seen["busy_in_callback"] = result, ctx.busy()
        seen["callback_thread"] = QThread.currentThread()

    ctx.run(work, on_done=done)
    assert ctx.busy()
    qtbot.waitUntil(lambda: "result" in seen, timeout=10000)
    assert seen["result"] == 42
    assert seen["callback_thread"] is QApplication.instance().thread()
    assert seen["worker_thread"] != threading.get_ident()
    assert not ctx.busy() and not seen["busy_in_callback"]
    ctx.close()


def test_a_newer_task_under_the_same_key_drops_the_older_result(qtbot, tmp_path):
    ctx = _ctx(tmp_path)
    release = threading.Event()
    results, errors = [], []

    def slow(value):
        release.wait(10)
        return value

    ctx.run(slow, "old", on_done=results.append, key="view:rows")
    ctx.run(lambda: "new", on_done=results.append, key="view:rows")
    qtbot.waitUntil(lambda: results == ["new"], timeout=10000)
    release.set()
    qtbot.waitUntil(lambda: not ctx.busy(), timeout=10000)
    assert results == ["new"]
    ctx.run(lambda: 1 / 0, on_error=lambda message, trace: errors.append((message, "ZeroDivisionError" in trace)))
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert errors == [("division by zero", True)]
    ctx.close()


def test_unhandled_failure_goes_to_task_failed(qtbot, tmp_path):
    ctx = _ctx(tmp_path)
    with qtbot.waitSignal(ctx.task_failed, timeout=10000) as blocker:
        ctx.run(lambda: (_ for _ in ()).throw(ValueError("bad row 3")), title="Loading failed")
    assert blocker.args[:2] == ["Loading failed", "bad row 3"]
    ctx.close()


def test_throttled_progress_keeps_first_last_and_message_changes():
    sent = []
    clock = iter([0.0, 0.01, 0.02, 0.03, 0.2, 0.21])
    progress = ThrottledProgress(lambda f, m: sent.append((f, m)), interval=0.1, clock=lambda: next(clock))
    progress(0.1, "tiling")   # first: sent
    progress(0.2, "tiling")   # 10 ms later: dropped
    progress(0.3, "writing")  # message changed: sent
    progress(0.4, "writing")  # dropped
    progress(0.5, "writing")  # 170 ms after the last: sent
    progress(1.0, "writing")  # final: sent
    assert sent == [(0.1, "tiling"), (0.3, "writing"), (0.5, "writing"), (1.0, "writing")]
