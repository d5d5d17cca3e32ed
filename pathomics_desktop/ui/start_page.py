"""The start page: create a project (embedded SQLite, or a PostgreSQL server after a
connection test), open a project folder, or pick one of the recent projects.

Creating a project and testing a connection run in worker threads through the same Qt-free
functions as the CLI (:func:`pathomics_desktop.registry.service.init_project`,
:func:`pathomics_desktop.registry.connection.check_database_url`).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.ui.crash import is_user_error_trace, record_action
from pathomics_desktop.ui.settings import recent_projects
from pathomics_desktop.ui.workers import FunctionWorker, start_worker

OK_STYLE = "color: #1b7a32;"
FAIL_STYLE = "color: #b3261e;"


def create_project(root: str, name: str, database_url: str, development_center: str) -> str:
    """Qt-free: create the project folder and its registry; returns the folder."""
    from pathomics_desktop.errors import UserError
    from pathomics_desktop.registry.service import init_project

    if not root:
        raise UserError("choose a folder for the new project")
    project = init_project(root, name=name, database_url=database_url,
                           development_center=development_center.strip())
    return str(project.root)


def _unexpected(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return (f"An unexpected problem stopped this ({first[:200]}). Check the entries and try "
            "again; if it happens again, contact your support.")


class StartPage(QWidget):
    """Emits :attr:`project_chosen` with a project folder to open."""

    project_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("start_page")
        self._tasks = 0

        title = QLabel("<h1>Pathomics Desktop</h1>"
                       "<p>Multi-center pathomics survival studies: registry, slides, models and "
                       "survival analysis.</p>")
        title.setWordWrap(True)

        # -- create ----------------------------------------------------------------------
        self.location = QLineEdit(str(Path.home()))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse_location)
        where = QHBoxLayout()
        where.addWidget(self.location, 1)
        where.addWidget(browse)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. PDAC-pathomics")
        self.center = QLineEdit()
        self.center.setPlaceholderText("code of the development center, e.g. A (optional)")
        self.embedded = QRadioButton("Embedded: a SQLite file inside the project folder (one user)")
        self.server = QRadioButton("PostgreSQL server (several users and sites)")
        self.embedded.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.embedded)
        group.addButton(self.server)
        self.url = QLineEdit()
        self.url.setPlaceholderText("postgresql://user:password@host:5432/database")
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        url_row = QHBoxLayout()
        url_row.addWidget(self.url, 1)
        url_row.addWidget(self.test_button)
        self.connection_result = QLabel("")
        self.connection_result.setWordWrap(True)
        self.connection_result.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.server.toggled.connect(self._database_kind_changed)
        self.create_button = QPushButton("Create project")
        self.create_button.setDefault(True)
        self.create_button.clicked.connect(self.create)
        self.create_result = QLabel("")
        self.create_result.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Location", where)
        form.addRow("Name", self.name)
        form.addRow("Development center", self.center)
        form.addRow("Registry", self.embedded)
        form.addRow("", self.server)
        form.addRow("Server URL", url_row)
        form.addRow("", self.connection_result)
        create_box = QGroupBox("New project")
        create_layout = QVBoxLayout(create_box)
        create_layout.addLayout(form)
        create_layout.addWidget(self.create_button, 0, Qt.AlignRight)
        create_layout.addWidget(self.create_result)
        create_layout.addStretch(1)

        # -- open ------------------------------------------------------------------------
        open_button = QPushButton("Open project folder...")
        open_button.clicked.connect(self.choose_folder)
        self.recent = QListWidget()
        self.recent.setObjectName("recent_projects")
        self.recent.itemActivated.connect(lambda item: self._open(item.data(Qt.UserRole)))
        open_recent = QPushButton("Open selected")
        open_recent.clicked.connect(self._open_selected)
        open_box = QGroupBox("Open a project")
        open_layout = QVBoxLayout(open_box)
        open_layout.addWidget(open_button, 0, Qt.AlignLeft)
        open_layout.addWidget(QLabel("Recent projects"))
        open_layout.addWidget(self.recent, 1)
        open_layout.addWidget(open_recent, 0, Qt.AlignRight)

        grid = QGridLayout()
        grid.addWidget(create_box, 0, 0)
        grid.addWidget(open_box, 0, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(32, 24, 32, 24)
        layout.addWidget(title)
        layout.addLayout(grid, 1)
        self._database_kind_changed(False)
        self.reload_recent()

    # -- state -------------------------------------------------------------------------
    def busy(self) -> bool:
        return self._tasks > 0

    def reload_recent(self) -> None:
        self.recent.clear()
        for root in recent_projects():
            item = QListWidgetItem(f"{Path(root).name}    {root}")
            item.setData(Qt.UserRole, root)
            item.setToolTip(root)
            self.recent.addItem(item)
        if self.recent.count():
            self.recent.setCurrentRow(0)

    def focus_create(self) -> None:
        self.name.setFocus()
        self.name.selectAll()

    def _database_kind_changed(self, server: bool) -> None:
        self.url.setEnabled(server)
        self.test_button.setEnabled(server)
        if not server:
            self.connection_result.setText("")

    def _browse_location(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Where to create the project", self.location.text())
        if folder:
            self.location.setText(folder)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a Pathomics project")
        if folder:
            self._open(folder)

    def _open_selected(self) -> None:
        item = self.recent.currentItem()
        if item is not None:
            self._open(item.data(Qt.UserRole))

    def _open(self, root: str) -> None:
        record_action("open project")
        self.project_chosen.emit(str(root))

    def _run(self, fn, *args, on_done, on_error) -> None:
        worker = FunctionWorker(fn, *args)
        self._tasks += 1

        def finished(result):
            self._tasks -= 1
            on_done(result)

        def failed(message, trace):
            self._tasks -= 1
            on_error(message, trace)

        worker.finished.connect(finished)
        worker.failed.connect(failed)
        start_worker(self, worker)

    # -- connection test ----------------------------------------------------------------
    def test_connection(self) -> None:
        from pathomics_desktop.registry.connection import check_database_url

        record_action("test database connection")
        self.test_button.setEnabled(False)
        self.connection_result.setStyleSheet("")
        self.connection_result.setText("Connecting...")
        self._run(check_database_url, self.url.text(), on_done=self._connection_ok,
                  on_error=self._connection_failed)

    def _connection_ok(self, report) -> None:
        self.test_button.setEnabled(self.server.isChecked())
        good = report.state in ("empty", "current", "outdated")
        self.connection_result.setStyleSheet(OK_STYLE if good else FAIL_STYLE)
        self.connection_result.setText(f"{'Success' if good else 'Not usable'}: {report.url} "
                                       f"({report.server}): {report.message}.")

    def _connection_failed(self, message: str, trace: str) -> None:
        self.test_button.setEnabled(self.server.isChecked())
        self.connection_result.setStyleSheet(FAIL_STYLE)
        text = message[:1].upper() + message[1:] if is_user_error_trace(trace) else _unexpected(message)
        self.connection_result.setText(f"Connection failed: {text}")

    # -- create -------------------------------------------------------------------------
    def new_project_folder(self) -> str:
        name = self.name.text().strip()
        location = self.location.text().strip()
        return str(Path(location).expanduser() / name) if name and location else ""

    def create(self) -> None:
        record_action("create project")
        root = self.new_project_folder()
        url = self.url.text().strip() if self.server.isChecked() else ""
        self.create_button.setEnabled(False)
        self.create_result.setStyleSheet("")
        self.create_result.setText("Creating the project...")
        if not root:
            self._create_failed("Enter the project's name and where to create it.", "")
            return
        self._run(create_project, root, self.name.text().strip(), url, self.center.text(),
                  on_done=self._created, on_error=self._create_failed)

    def _created(self, root: str) -> None:
        self.create_button.setEnabled(True)
        self.create_result.setStyleSheet(OK_STYLE)
        self.create_result.setText(f"Created {root}.")
        self.project_chosen.emit(root)

    def _create_failed(self, message: str, trace: str) -> None:
        self.create_button.setEnabled(True)
        self.create_result.setStyleSheet(FAIL_STYLE)
        text = message[:1].upper() + message[1:] if is_user_error_trace(trace) else _unexpected(message)
        self.create_result.setText(text)
