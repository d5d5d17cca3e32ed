"""``pathomics-desktop --project DIR --screenshots OUT``: every view of the main window,
rendered offscreen to ``OUT/<view>.png`` with the numbers and rows it shows in
``OUT/<view>.json`` (the view's ``snapshot()``).

Per view: make it current, call ``prepare_screenshot()``, process events until neither the
view nor the window is busy (at most ``timeout_s``), then grab the whole main window. A view
that raises, times out or reports a failed task is listed in the result; the others are
still rendered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QCoreApplication, QEventLoop

from pathomics_desktop.ui.crash import record_action


@dataclass
class ScreenshotResult:
    written: list[Path] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def process_events_until(done: Callable[[], bool], timeout_s: float, *, settle_s: float = 0.2) -> bool:
    """Run the event loop until ``done()`` holds for ``settle_s`` in a row; False on timeout."""
    deadline = time.monotonic() + timeout_s
    calm_since = None
    while time.monotonic() < deadline:
        QCoreApplication.processEvents(QEventLoop.AllEvents, 50)
        if done():
            calm_since = calm_since or time.monotonic()
            if time.monotonic() - calm_since >= settle_s:
                return True
        else:
            calm_since = None
        time.sleep(0.01)
    return False


def take_screenshots(window, out: str | Path, *, views: list[str] | None = None,
                     timeout_s: float = 120.0, crash_handler=None) -> ScreenshotResult:
    """Render each view of ``window`` (a MainWindow with a project open) into ``out``;
    ``crash_handler`` (a :class:`~pathomics_desktop.ui.crash.CrashHandler`) turns an
    unexpected exception during a view into that view's failure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = ScreenshotResult()
    failures_seen = len(window.errors)
    reports_seen = len(crash_handler.reports) if crash_handler is not None else 0
    for view in window.views:
        if views is not None and view.view_id not in views:
            continue
        record_action(f"screenshot: {view.view_id}")
        try:
            window.show_view(view.view_id)
            view.prepare_screenshot()
            if not process_events_until(lambda v=view: not v.busy() and not window.busy(), timeout_s):
                result.failures[view.view_id] = f"still busy after {timeout_s:.0f} s"
                continue
            if len(window.errors) > failures_seen:
                title, message = window.errors[-1]
                failures_seen = len(window.errors)
                result.failures[view.view_id] = f"{title}: {message}"
            if crash_handler is not None and len(crash_handler.reports) > reports_seen:
                reports_seen = len(crash_handler.reports)
                result.failures[view.view_id] = f"unexpected error, report in {crash_handler.reports[-1]}"
            png = out / f"{view.view_id}.png"
            if not window.grab().save(str(png)):
                raise OSError(f"cannot write {png}")
            snapshot = view.snapshot()
            target = out / f"{view.view_id}.json"
            target.write_text(json.dumps(snapshot, indent=2, default=str) + "\n", encoding="utf-8")
            result.written += [png, target]
        except Exception as exc:  # reported per view; the other views are still rendered
            result.failures[view.view_id] = f"{type(exc).__name__}: {exc}"
    return result
