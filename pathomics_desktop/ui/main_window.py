"""The main window: the start page, then a navigation pane beside the stack of views.

Opening a project (in a worker thread) builds one :class:`ProjectContext` and hands it to
every view (``set_context``); the views' navigation requests (``ctx.request_view``,
``request_patient``, ``request_slide``) switch the stack. Menus carry the standard
shortcuts: Ctrl+N new, Ctrl+O open, Ctrl+Z / Ctrl+Shift+Z undo and redo on the project's
undo stack, Ctrl+F the current view's search, F5 refresh it. The status bar shows the user,
the database (SQLite file, or PostgreSQL host/database without password) and the schema
version. Window geometry, splitters, table columns, the palette and the recent projects
are remembered (:mod:`pathomics_desktop.ui.settings`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoGroup
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.ui import settings as app_settings
from pathomics_desktop.ui.crash import record_action, show_task_failure
from pathomics_desktop.ui.start_page import StartPage
from pathomics_desktop.ui.theme import BANNER_STYLE, apply_theme, is_dark
from pathomics_desktop.ui.views import VIEWS, view_class
from pathomics_desktop.ui.views.base import View
from pathomics_desktop.ui.workers import FunctionWorker, start_worker, wait_for_workers

SYNTHETIC_BANNER = "SYNTHETIC DATA - this demo project holds generated records, not real patients."


# -- Qt-free helpers (run in workers) ------------------------------------------------------
@dataclass
class OpenOutcome:
    """The result of opening a project folder: an open registry, or the problem."""

    root: str
    project: Any = None
    registry: Any = None
    schema: str = ""
    problem: str = ""        # "", "outdated" or "error"
    message: str = ""


def open_project_for_gui(root: str) -> OpenOutcome:
    """Load the project settings, open its registry and read the schema version."""
    from pathomics_desktop.errors import UserError
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.database import SchemaOutdated, schema_state
    from pathomics_desktop.registry.service import open_project_registry

    try:
        project = Project.load(root)
        registry = open_project_registry(project)
    except SchemaOutdated as exc:
        return OpenOutcome(root=root, problem="outdated", message=str(exc))
    except UserError as exc:
        return OpenOutcome(root=root, problem="error", message=str(exc))
    return OpenOutcome(root=str(project.root), project=project, registry=registry,
                       schema=schema_state(registry.engine).current or "")


def upgrade_project(root: str) -> str:
    """Upgrade the project's registry to the newest schema, after a backup; returns the
    backup file ("" when nothing needed saving)."""
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry import database

    project = Project.load(root)
    saved = database.upgrade(project.database_url, backup_dir=project.folder("backups"))
    return str(saved) if saved else ""


def describe_database(url: str) -> str:
    """The SQLite file, or ``PostgreSQL user@host:port/database`` (never the password)."""
    from pathomics_desktop.registry.connection import describe_url

    shown = describe_url(url)
    if url.startswith("sqlite"):
        return f"SQLite {shown}"
    return "PostgreSQL " + shown.split("://", 1)[-1]


# -- views ---------------------------------------------------------------------------------
def build_views() -> list[View]:
    """One instance of every view in :data:`VIEWS`, in navigation order; a view module that
    is missing or raises on import fails loudly here."""
    views: list[View] = []
    for view_id, title, target in VIEWS:
        cls = view_class(target)
        view = cls()
        view.view_id = view.view_id or view_id
        view.title = view.title or title
        views.append(view)
    for view in views:
        view.setObjectName(f"view_{view.view_id}")
    return views


def scrolling(widget: QWidget) -> QScrollArea:
    """``widget`` filling a frameless scroll area: the window can be smaller than a view's
    minimum size (a laptop screen); the view then scrolls instead of forcing the size."""
    area = QScrollArea()
    area.setObjectName(f"frame_{widget.objectName()}")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setWidget(widget)
    return area


class MainWindow(QMainWindow):
    """See the module docstring. ``headless=True`` (``--screenshots``) opens no modal dialog:
    problems are printed and collected in :attr:`errors`."""

    def __init__(self, *, headless: bool = False) -> None:
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("Pathomics Desktop")
        self.headless = headless
        self.errors: list[tuple[str, str]] = []
        self.ctx = None
        self.project = None
        self.schema_revision = ""
        self._opening: str | None = None
        self._stale: set[str] = set()
        self.undo_group = QUndoGroup(self)

        self.banner = QLabel("")
        self.banner.setObjectName("banner")
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setVisible(False)

        self.start_page = StartPage()
        self.start_page.project_chosen.connect(self.open_project)
        self.views = build_views()
        self.navigation = QListWidget()
        self.navigation.setObjectName("navigation")
        self.navigation.setMinimumWidth(150)
        self.stack = QStackedWidget()
        self.stack.setObjectName("views")
        self._frames: dict[str, QScrollArea] = {}
        for view in self.views:
            self.navigation.addItem(view.title)
            self._frames[view.view_id] = frame = scrolling(view)
            self.stack.addWidget(frame)
        self.navigation.currentRowChanged.connect(self._navigated)
        self.workspace = QSplitter(Qt.Horizontal)
        self.workspace.setObjectName("workspace")
        self.workspace.addWidget(self.navigation)
        self.workspace.addWidget(self.stack)
        self.workspace.setStretchFactor(1, 1)
        self.workspace.setSizes([170, 1100])
        self.pages = QStackedWidget()
        self.pages.setObjectName("pages")
        self.pages.addWidget(scrolling(self.start_page))
        self.pages.addWidget(self.workspace)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)

        self._build_status_bar()
        self._build_menus()
        self._busy_timer = QTimer(self)
        self._busy_timer.setInterval(250)
        self._busy_timer.timeout.connect(self._update_busy)
        self._busy_timer.start()
        if headless:  # deterministic pictures: no remembered geometry or palette
            self.resize(1400, 900)
        else:
            self._restore_settings()
        self._update_actions()

    # -- construction ----------------------------------------------------------------
    def _action(self, menu, text: str, name: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        action.triggered.connect(lambda _checked=False: (record_action(f"menu: {name}"), slot()))
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.new_action = self._action(file_menu, "&New project...", "new_project", self.new_project,
                                       QKeySequence.New)
        self.open_action = self._action(file_menu, "&Open project...", "open_project", self.choose_project,
                                        QKeySequence.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.close_action = self._action(file_menu, "&Close project", "close_project", self.close_project)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", "quit", self.close, QKeySequence.Quit)

        edit_menu = bar.addMenu("&Edit")
        self.undo_action = self.undo_group.createUndoAction(self, "&Undo")
        self.undo_action.setObjectName("undo")
        self.undo_action.setShortcuts([QKeySequence(QKeySequence.Undo)])
        self.redo_action = self.undo_group.createRedoAction(self, "&Redo")
        self.redo_action.setObjectName("redo")
        redo_keys = [QKeySequence("Ctrl+Shift+Z")]
        redo_keys += [k for k in QKeySequence.keyBindings(QKeySequence.Redo) if k not in redo_keys]
        self.redo_action.setShortcuts(redo_keys)
        for action in (self.undo_action, self.redo_action):
            action.triggered.connect(lambda _c=False, n=action.objectName(): record_action(f"menu: {n}"))
            edit_menu.addAction(action)
        edit_menu.addSeparator()
        self.find_action = self._action(edit_menu, "&Find...", "find", self.start_find, QKeySequence.Find)

        view_menu = bar.addMenu("&View")
        self.view_actions = QActionGroup(self)
        self.view_actions.setExclusive(True)
        for i, view in enumerate(self.views):
            action = self._action(view_menu, view.title, f"show_{view.view_id}",
                                  lambda v=view.view_id: self.show_view(v),
                                  f"Ctrl+{i + 1}" if i < 9 else None)
            action.setCheckable(True)
            action.setData(view.view_id)
            self.view_actions.addAction(action)
        view_menu.addSeparator()
        self.refresh_action = self._action(view_menu, "&Refresh", "refresh", self.refresh_current,
                                           QKeySequence.Refresh)
        if QKeySequence("F5") not in self.refresh_action.shortcuts():
            self.refresh_action.setShortcuts([QKeySequence("F5"), *self.refresh_action.shortcuts()])
        self.dark_action = self._action(view_menu, "&Dark mode", "dark_mode",
                                        lambda: self.set_dark(self.dark_action.isChecked()), "Ctrl+Shift+D")
        self.dark_action.setCheckable(True)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About Pathomics Desktop", "about", self.about)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.user_label = QLabel("")
        self.database_label = QLabel("")
        self.schema_label = QLabel("")
        for label in (self.user_label, self.database_label, self.schema_label):
            bar.addPermanentWidget(label)
        self.user_label.setObjectName("status_user")
        self.database_label.setObjectName("status_database")
        self.schema_label.setObjectName("status_schema")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(140)
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        bar.addPermanentWidget(self.progress)
        bar.showMessage("Create or open a project")

    # -- settings --------------------------------------------------------------------
    def _restore_settings(self) -> None:
        store = app_settings.app_settings()
        geometry = store.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry) or self.width() < 640 or self.height() < 400:
            self._default_size()
        state = store.value("window/state")
        if state is not None:
            self.restoreState(state)
        app_settings.restore_widget_states(self, store)
        dark = app_settings.dark_mode()
        self.dark_action.setChecked(dark)
        if dark != is_dark():
            apply_theme(dark)

    def _default_size(self) -> None:
        """1280 x 800, or 90 % of a smaller screen (a remembered window too small to use is
        replaced by this too)."""
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        width, height = 1280, 800
        if screen is not None and screen.width() > 0:
            width, height = min(width, int(screen.width() * 0.9)), min(height, int(screen.height() * 0.9))
        self.resize(width, height)

    def save_settings(self) -> None:
        store = app_settings.app_settings()
        store.setValue("window/geometry", self.saveGeometry())
        store.setValue("window/state", self.saveState())
        app_settings.save_widget_states(self, store)
        store.sync()

    def set_dark(self, dark: bool) -> None:
        """Switch the palette and remember the choice."""
        self.dark_action.setChecked(dark)
        apply_theme(dark)
        app_settings.set_dark_mode(dark)

    # -- projects --------------------------------------------------------------------
    def new_project(self) -> None:
        self.pages.setCurrentIndex(0)
        self.start_page.focus_create()

    def choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a Pathomics project")
        if folder:
            self.open_project(folder)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        roots = app_settings.recent_projects()
        for root in roots:
            action = self.recent_menu.addAction(root)
            action.triggered.connect(lambda _c=False, r=root: (record_action("menu: open recent"),
                                                               self.open_project(r)))
        if not roots:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def busy(self) -> bool:
        """A project is opening, or a task of the open project or the start page runs."""
        return (self._opening is not None or self.start_page.busy()
                or bool(self.ctx is not None and self.ctx.busy()))

    def open_project(self, root: str | Path) -> None:
        """Open ``root`` in a worker; on success every view gets the new context."""
        self._opening = str(root)
        self.statusBar().showMessage(f"Opening {root} ...")
        self._update_busy()
        worker = FunctionWorker(open_project_for_gui, self._opening)
        worker.finished.connect(self._project_opened)
        worker.failed.connect(self._open_failed)
        start_worker(self, worker)

    def _project_opened(self, outcome: OpenOutcome) -> None:
        root, self._opening = outcome.root, None
        if outcome.problem == "outdated":
            self._offer_upgrade(root, outcome.message)
        elif outcome.problem:
            self.statusBar().showMessage("Could not open the project")
            self.show_error("Could not open the project",
                            f"{outcome.message}\n\nChoose another folder (File > Open project), or create a "
                            "project (File > New project).")
        else:
            self._install_context(outcome)
        self._update_busy()

    def _open_failed(self, message: str, trace: str) -> None:
        self._opening = None
        self.statusBar().showMessage("Could not open the project")
        self.report_task_failure("Could not open the project", message, trace)
        self._update_busy()

    def _offer_upgrade(self, root: str, message: str) -> None:
        if self.headless:
            self.show_error("Could not open the project", message)
            return
        answer = QMessageBox.question(self, "Upgrade the registry?",
                                      f"{message}\n\nUpgrade now? A backup of the registry is taken first.")
        if answer != QMessageBox.Yes:
            self.statusBar().showMessage("The registry was not upgraded; the project stays closed")
            return
        record_action("upgrade registry")
        self._opening = root
        worker = FunctionWorker(upgrade_project, root)

        def upgraded(saved: str) -> None:
            self._opening = None
            self.statusBar().showMessage(f"Registry upgraded; backup in {saved}" if saved else "Registry upgraded")
            self.open_project(root)

        def failed(msg: str, trace: str) -> None:
            self._opening = None
            self.report_task_failure("Upgrade failed", msg, trace)

        worker.finished.connect(upgraded)
        worker.failed.connect(failed)
        start_worker(self, worker)

    def _install_context(self, outcome: OpenOutcome) -> None:
        from pathomics_desktop.ui.context import ProjectContext

        if self.ctx is not None:
            self.close_project()
        ctx = ProjectContext(outcome.project, outcome.registry, parent=self)
        ctx.request_view.connect(self.show_view)
        ctx.request_patient.connect(self.show_patient)
        ctx.request_slide.connect(self.show_slide)
        ctx.request_analysis.connect(self.show_analysis)
        ctx.status_message.connect(lambda m: self.statusBar().showMessage(m, 10000))
        ctx.task_failed.connect(self.report_task_failure)
        ctx.data_changed.connect(self._data_changed)
        self.ctx, self.project = ctx, outcome.project
        self.schema_revision = outcome.schema
        self.undo_group.addStack(ctx.undo_stack)
        self.undo_group.setActiveStack(ctx.undo_stack)
        self.pages.setCurrentWidget(self.workspace)
        if self.navigation.currentRow() < 0:
            self.navigation.setCurrentRow(0)
        for view in self.views:
            view.set_context(ctx)
        self._stale.clear()
        self._load_role(ctx)
        settings = outcome.project.settings["project"]
        name = settings.get("name") or outcome.project.root.name
        synthetic = bool(settings.get("synthetic"))
        self.setWindowTitle(f"Pathomics Desktop - {name}" + (" [SYNTHETIC]" if synthetic else ""))
        self.banner.setText(SYNTHETIC_BANNER if synthetic else "")
        self.banner.setVisible(synthetic)
        self._update_status_labels()
        self.statusBar().showMessage(f"Opened {outcome.project.root}", 10000)
        app_settings.add_recent_project(outcome.project.root)
        self.start_page.reload_recent()
        self._update_actions()
        record_action("project opened")

    def _load_role(self, ctx) -> None:
        """Ask the registry for the login's role (a worker: a server round trip), then grey out
        what the role cannot do in every view."""
        from pathomics_desktop.registry.users import current_role_of

        def loaded(result) -> None:
            if self.ctx is ctx:
                self.apply_role(result[1])

        ctx.run(current_role_of, ctx.registry, on_done=loaded, key="main:role", title="Cannot read your role")

    def apply_role(self, role: str) -> None:
        from pathomics_desktop.ui.permissions import apply_permissions

        if self.ctx is not None:
            self.ctx.role = role
        for view in self.views:
            apply_permissions(view, role)

    def close_project(self) -> None:
        """Hand ``None`` to every view, close the registry and show the start page."""
        ctx, self.ctx, self.project = self.ctx, None, None
        if ctx is None:
            return
        for view in self.views:
            view.set_context(None)
        self.undo_group.removeStack(ctx.undo_stack)
        ctx.close()
        ctx.deleteLater()
        self.banner.setVisible(False)
        self.setWindowTitle("Pathomics Desktop")
        self.pages.setCurrentIndex(0)
        self._update_status_labels()
        self._update_actions()

    def _update_status_labels(self) -> None:
        from pathomics_desktop.registry.database import head_revision

        if self.ctx is None:
            for label in (self.user_label, self.database_label, self.schema_label):
                label.setText("")
            return
        from pathomics_desktop.registry.users import user_label_text  # role on PostgreSQL
        self.user_label.setText(user_label_text(self.ctx.user, self.ctx.registry))
        self.database_label.setText(f"Database: {describe_database(self.ctx.registry.url)}")
        head = head_revision()
        state = "current" if self.schema_revision == head else f"program knows {head}"
        self.schema_label.setText(f"Schema: {self.schema_revision} ({state})")

    def _update_actions(self) -> None:
        has = self.ctx is not None
        self.close_action.setEnabled(has)
        self.refresh_action.setEnabled(True)
        for action in self.view_actions.actions():
            action.setEnabled(has)
        self.navigation.setEnabled(has)

    def _update_busy(self) -> None:
        self.progress.setVisible(self.busy())

    # -- navigation ------------------------------------------------------------------
    def view(self, view_id: str) -> View:
        for view in self.views:
            if view.view_id == view_id:
                return view
        raise KeyError(f"no view {view_id!r}")

    def current_view(self) -> View | None:
        if self.pages.currentWidget() is not self.workspace:
            return None
        return self.stack.currentWidget().widget()

    def show_view(self, view_id: str) -> View:
        view = self.view(view_id)
        self.pages.setCurrentWidget(self.workspace)
        self.navigation.setCurrentRow(self.views.index(view))
        return view

    def _navigated(self, row: int) -> None:
        if row < 0:
            return
        view = self.views[row]
        self.stack.setCurrentWidget(self._frames[view.view_id])
        for action in self.view_actions.actions():
            if action.data() == view.view_id:
                action.setChecked(True)
        record_action(f"view: {view.view_id}")
        if view.view_id in self._stale and self.ctx is not None:
            self._stale.discard(view.view_id)
            view.refresh()

    def show_patient(self, study_id: str) -> None:
        view = self.show_view("patient")
        if hasattr(view, "show_patient"):
            view.show_patient(study_id)

    def show_slide(self, slide_id: int) -> None:
        view = self.show_view("viewer")
        if hasattr(view, "show_slide"):
            view.show_slide(slide_id)

    def show_analysis(self, view_id: str, request: dict) -> None:
        """``ctx.request_analysis``: open an analysis view in a given state (a forest row
        opens its KM): the view's ``apply_request(request)`` sets its choices."""
        view = self.show_view(view_id)
        if hasattr(view, "apply_request"):
            view.apply_request(dict(request))

    def _data_changed(self, _what: str) -> None:
        current = self.current_view()
        self._stale = {v.view_id for v in self.views if v is not current}

    def refresh_current(self) -> None:
        view = self.current_view()
        if view is None:
            self.start_page.reload_recent()
        elif self.ctx is not None:
            view.refresh()

    def start_find(self) -> None:
        """Ctrl+F: the current view focuses its own search box (``View.find``)."""
        view = self.current_view()
        if view is not None and self.ctx is not None:
            view.find("")

    # -- errors ----------------------------------------------------------------------
    def show_error(self, title: str, message: str) -> None:
        """A problem the user can act on: the message says what to do."""
        if self.headless:
            self.errors.append((title, message))
            print(f"error: {title}: {message}", file=sys.stderr)
            return
        QMessageBox.critical(self, title, message)

    def report_task_failure(self, title: str, message: str, trace: str) -> None:
        """``ctx.task_failed``: a user error as it is, anything else with details on demand."""
        if self.headless:
            self.show_error(title, message)
            return
        show_task_failure(self, title, message, trace)

    def about(self) -> None:
        import pathomics_desktop

        QMessageBox.about(self, "About Pathomics Desktop",
                          f"Pathomics Desktop {pathomics_desktop.__version__}\n\n"
                          "Registry, whole-slide pipeline, patch models and survival statistics for "
                          "multi-center pathomics studies.")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if not self.headless:
            self.save_settings()
        self._busy_timer.stop()
        self.close_project()
        wait_for_workers(self.start_page)
        wait_for_workers(self)
        super().closeEvent(event)
