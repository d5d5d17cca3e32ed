"""The main window: open a project and list its patients with their derived endpoints."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.ui.patient_model import PatientTableModel
from pathomics_desktop.ui.workers import FunctionWorker, start_worker, wait_for_workers


def load_project_rows(root: str) -> dict:
    """Qt-free: open the project's registry and build the patient rows (runs in a worker)."""
    from pathomics_desktop.cohort.table import build_rows
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry

    project = Project.load(root)
    registry = open_project_registry(project)
    try:
        with registry.session() as session:
            rows, _ = build_rows(session)
    finally:
        registry.dispose()
    return {"project": project, "rows": rows}


def upgrade_project(root: str) -> str:
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry import database

    project = Project.load(root)
    saved = database.upgrade(project.database_url, backup_dir=project.folder("backups"))
    return str(saved) if saved else ""


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Pathomics Desktop")
        self.resize(1200, 720)
        self.project = None
        self.model = PatientTableModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseInsensitive)
        self.proxy.setSortRole(Qt.UserRole)

        self.banner = QLabel("")
        self.banner.setObjectName("banner")
        self.banner.setVisible(False)
        self.banner.setStyleSheet("QLabel#banner { background: #fff3cd; color: #664d03; padding: 6px;"
                                  " font-weight: bold; border: 1px solid #ffecb5; }")
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter patients (study id, center, data set, reason...)")
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionBehavior(QTableView.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.banner)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)
        self.setCentralWidget(central)

        menu = self.menuBar().addMenu("&File")
        menu.addAction("&Open project...", self.choose_project)
        menu.addSeparator()
        menu.addAction("&Quit", self.close)
        self.statusBar().showMessage("Open a project (File > Open project...)")

    # -- actions ---------------------------------------------------------------------
    def choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a Pathomics project")
        if folder:
            self.open_project(folder)

    def open_project(self, root: str | Path) -> None:
        self._root = str(root)
        self.statusBar().showMessage(f"Loading {root} ...")
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        worker = FunctionWorker(load_project_rows, self._root)
        worker.finished.connect(self._project_loaded)
        worker.failed.connect(self._project_failed)
        start_worker(self, worker)

    def _project_loaded(self, result: dict) -> None:
        self.progress.setVisible(False)
        self.project = result["project"]
        rows = result["rows"]
        self.model.set_rows(rows)
        self.table.resizeColumnsToContents()
        name = self.project.settings["project"].get("name") or self.project.root.name
        self.setWindowTitle(f"Pathomics Desktop - {name}")
        synthetic = bool(self.project.settings["project"].get("synthetic"))
        self.banner.setText("SYNTHETIC DATA - this demo project holds generated records, not real patients."
                            if synthetic else "")
        self.banner.setVisible(synthetic)
        included = sum(1 for r in rows if r["included"])
        self.statusBar().showMessage(f"{len(rows)} patients, {included} included - {self.project.root}")

    def _project_failed(self, message: str, _traceback: str) -> None:
        self.progress.setVisible(False)
        self.statusBar().showMessage("Could not open the project")
        if "pathomics db upgrade" in message:
            answer = QMessageBox.question(
                self, "Upgrade the registry?",
                f"{message}\n\nUpgrade now? A backup of the registry is taken first.")
            if answer == QMessageBox.Yes:
                worker = FunctionWorker(upgrade_project, self._root)
                worker.finished.connect(lambda _saved: self.open_project(self._root))
                worker.failed.connect(lambda m, _t: QMessageBox.critical(self, "Upgrade failed", m))
                start_worker(self, worker)
            return
        QMessageBox.critical(self, "Could not open the project", message)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        wait_for_workers(self)
        super().closeEvent(event)
