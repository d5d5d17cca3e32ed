"""Small Qt helpers shared by the views: a non-blocking message box, a filtered table, and
a relay that queues a callback to the GUI thread."""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, QSize, QSortFilterProxyModel, Qt, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QTableView, QWidget


def show_message(parent: QWidget, title: str, text: str, icon=QMessageBox.Warning) -> QMessageBox:
    """A non-blocking message box (the event loop keeps running); kept on ``parent.last_message``."""
    box = QMessageBox(icon, title, text, QMessageBox.Ok, parent)
    box.setAttribute(Qt.WA_DeleteOnClose)
    parent.last_message = text
    box.open()
    return box


class GuiRelay(QObject):
    """Calls functions on the thread it lives in (the GUI thread): a callback invoked from a
    worker thread is queued to the GUI event loop instead of running in the worker."""

    call = Signal(object, object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.call.connect(self._run)

    @Slot(object, object)
    def _run(self, fn, args) -> None:
        fn(*args)


def on_gui_thread(owner: QObject, fn: Callable[..., Any]) -> Callable[..., None]:
    """``fn`` wrapped so that calling it from any thread runs it on ``owner``'s (GUI) thread
    (for the JobWorker's signals; :meth:`ProjectContext.run` does this itself).

    Call this on the GUI thread (it creates ``owner``'s relay on first use)."""
    relay = owner.__dict__.get("_gui_relay")
    if relay is None:
        relay = owner.__dict__["_gui_relay"] = GuiRelay(owner)
    return lambda *args: relay.call.emit(fn, args)


def filter_proxy(model, parent) -> QSortFilterProxyModel:
    """A case-insensitive filter over every column, sorting by ``Qt.UserRole``."""
    proxy = QSortFilterProxyModel(parent)
    proxy.setSourceModel(model)
    proxy.setFilterKeyColumn(-1)
    proxy.setFilterCaseSensitivity(Qt.CaseInsensitive)
    proxy.setSortRole(Qt.UserRole)
    return proxy


def row_table(model, *, sortable: bool = True, row_height: int | None = None) -> QTableView:
    """A table selecting one whole row at a time, without row numbers."""
    table = QTableView()
    table.setModel(model)
    table.setSelectionBehavior(QTableView.SelectRows)
    table.setSelectionMode(QTableView.SingleSelection)
    table.setSortingEnabled(sortable)
    table.setAlternatingRowColors(True)
    table.verticalHeader().setVisible(False)
    if row_height is not None:
        table.verticalHeader().setDefaultSectionSize(row_height)
        table.setIconSize(QSize(row_height - 6, row_height - 6))
    return table
