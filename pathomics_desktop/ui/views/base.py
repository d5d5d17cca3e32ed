"""What every view of the main window offers the shell.

The shell (``ui/main_window.py``) calls, on each view:

- ``set_context(ctx)`` when a project opens (``None`` when it closes);
- ``refresh()`` on F5 and when the view is shown after ``ctx.data_changed``;
- ``find(text)`` on Ctrl+F (views without a search box ignore it);
- ``prepare_screenshot()`` before ``--screenshots`` renders the view: select a
  representative item (the first patient, a slide with a heatmap...) so the picture shows
  what a user would see; the shell then waits until ``busy()`` is false;
- ``snapshot()`` -> a JSON-able dict of the numbers and rows the view shows, written beside
  the picture as ``OUT/<view>.json``.

Views never compute statistics or touch the database on the GUI thread for long work:
they call services through ``ctx.run``.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWidget


class View(QWidget):
    view_id: str = ""
    title: str = ""
    #: action of :mod:`pathomics_desktop.registry.permissions` -> attribute names of the widgets
    #: that do it; the main window greys them out when the login's role lacks the action
    PERMISSIONS: dict[str, tuple[str, ...]] = {}

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = None

    def set_context(self, ctx) -> None:
        self.ctx = ctx
        if ctx is not None:
            self.refresh()

    def refresh(self) -> None:
        """Reload what the view shows from the services (override)."""

    def find(self, text: str) -> None:
        """Ctrl+F: focus or apply the view's search (override where there is one)."""

    def prepare_screenshot(self) -> None:
        """Bring the view into a representative state for ``--screenshots`` (override)."""

    def run_task(self, name: str, fn, *args, on_done, on_error=None, **kwargs):
        """``ctx.run`` under a key of this view instance and ``name``: a newer task of the same
        name replaces a running one, whose result is dropped; two views of one type never
        drop each other's results. Callbacks run on the GUI thread."""
        return self.ctx.run(fn, *args, on_done=on_done, on_error=on_error,
                            key=f"{self.view_id}@{id(self)}:{name}", **kwargs)

    def busy(self) -> bool:
        return bool(self.ctx is not None and self.ctx.busy())

    def snapshot(self) -> dict[str, Any]:
        """The numbers and rows the view shows, as plain JSON data (override)."""
        return {"view": self.view_id}
