"""What the desktop app remembers between sessions (QSettings, INI format).

Keys: ``window/geometry`` and ``window/state`` (the main window), ``splitters/<path>`` and
``headers/<path>`` (every QSplitter and table header inside it, by object path),
``theme/dark``, ``recent/projects`` (newest first, at most :data:`MAX_RECENT`).

The file lives in Qt's per-user configuration folder; set ``$PATHOMICS_SETTINGS_DIR`` (or
call ``QSettings.setPath``) to keep it elsewhere, e.g. in tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QObject, QSettings
from PySide6.QtWidgets import QHeaderView, QSplitter, QWidget

ORGANIZATION = "Pathomics"
APPLICATION = "Pathomics Desktop"
MAX_RECENT = 8


def app_settings() -> QSettings:
    """The application's settings store."""
    folder = os.environ.get("PATHOMICS_SETTINGS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return QSettings(str(Path(folder) / "pathomics-desktop.ini"), QSettings.IniFormat)
    return QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANIZATION, APPLICATION)


def _to_bool(value) -> bool:
    return value in (True, "true", "1", 1)


def dark_mode() -> bool:
    return _to_bool(app_settings().value("theme/dark", False))


def set_dark_mode(dark: bool) -> None:
    app_settings().setValue("theme/dark", bool(dark))


# -- recent projects ----------------------------------------------------------------------
def recent_projects() -> list[str]:
    """Recently opened project folders, newest first (folders that no longer exist are kept
    out)."""
    value = app_settings().value("recent/projects", [])
    items = [value] if isinstance(value, str) else list(value or [])
    return [p for p in items if p and Path(p, "project.toml").is_file()]


def add_recent_project(root: str | Path) -> None:
    root = str(Path(root).resolve())
    items = [root] + [p for p in recent_projects() if p != root]
    app_settings().setValue("recent/projects", items[:MAX_RECENT])


# -- widget state -------------------------------------------------------------------------
def object_path(widget: QObject, top: QObject) -> str:
    """A stable name for ``widget`` below ``top``: object names where set, else the class
    name and the index among siblings of that class (``views.study/QSplitter1``)."""
    parts = []
    node = widget
    while node is not None and node is not top:
        parent = node.parent()
        name = node.objectName()
        if not name:
            siblings = [c for c in (parent.children() if parent else []) if type(c) is type(node)]
            name = f"{type(node).__name__}{siblings.index(node) if node in siblings else 0}"
        parts.append(name)
        node = parent
    return "/".join(reversed(parts))


def save_widget_states(top: QWidget, settings: QSettings | None = None) -> None:
    """Store the state of every splitter and table header below ``top``."""
    settings = settings or app_settings()
    for splitter in top.findChildren(QSplitter):
        settings.setValue(f"splitters/{object_path(splitter, top)}", splitter.saveState())
    for header in top.findChildren(QHeaderView):
        if header.count():
            settings.setValue(f"headers/{object_path(header, top)}", header.saveState())


def restore_widget_states(top: QWidget, settings: QSettings | None = None) -> None:
    """Restore splitters now, and table headers as soon as their model has columns (models
    are often filled later, by a background task). A restored header carries the property
    ``_state_restored`` (see :func:`header_restored`), so a view can skip its own column sizing."""
    settings = settings or app_settings()
    for splitter in top.findChildren(QSplitter):
        state = settings.value(f"splitters/{object_path(splitter, top)}")
        if state is not None:
            splitter.restoreState(state)
    for header in top.findChildren(QHeaderView):
        state = settings.value(f"headers/{object_path(header, top)}")
        if state is None:
            continue
        if header.count():
            header.restoreState(state)
            header.setProperty("_state_restored", True)
            continue

        def restore_once(_old, new, header=header, state=state):
            if new and not header.property("_state_restored"):
                header.setProperty("_state_restored", True)
                header.restoreState(state)

        header.sectionCountChanged.connect(restore_once)


def header_restored(header: QHeaderView) -> bool:
    """Did :func:`restore_widget_states` give this header the user's remembered columns?"""
    return bool(header.property("_state_restored"))
