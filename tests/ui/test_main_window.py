"""The GUI shell: opens a project in a worker thread and lists patients with endpoints."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from pathomics_desktop.registry.importer import import_file  # noqa: E402
from tests.registry.helpers import patient, write_csv  # noqa: E402


@pytest.fixture
def sqlite_project(tmp_path):
    from pathomics_desktop.registry.service import init_project, open_project_registry

    project = init_project(tmp_path / "study", development_center="A")
    reg = open_project_registry(project)
    rows = [patient("P1"), patient("P2", center="B", recurrence="no", recurrence_date="", vital_status="alive",
                                   death_date="", last_followup_date="2021-01-10"),
            patient("P3", neoadjuvant_therapy="yes")]
    assert import_file(reg, write_csv(tmp_path / "p.csv", rows)).committed
    reg.dispose()
    return project


def test_main_window_lists_patients_with_endpoints(qtbot, sqlite_project, tmp_path):
    from pathomics_desktop.ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.open_project(sqlite_project.root)
    qtbot.waitUntil(lambda: window.model.rowCount() == 3, timeout=10000)
    model = window.model
    from PySide6.QtCore import Qt
    headers = [model.headerData(c, Qt.Horizontal) for c in range(model.columnCount())]
    assert "OS (months)" in headers and "RFS (months)" in headers
    values = {model.index(r, 0).data(): [model.index(r, c).data() for c in range(model.columnCount())]
              for r in range(model.rowCount())}
    assert values["P1"][headers.index("OS (months)")] == "25.7"
    assert values["P2"][headers.index("Death")] == "no"
    assert values["P3"][headers.index("Exclusion reason")] == "neoadjuvant therapy"
    window.filter.setText("P2")
    assert window.proxy.rowCount() == 1
    window.grab().save(str(tmp_path / "main_window.png"))
    assert not window.banner.isVisible()


def test_outdated_schema_offers_upgrade_with_backup(qtbot, sqlite_project, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from pathomics_desktop.registry import database
    from pathomics_desktop.ui.main_window import MainWindow

    database.downgrade(sqlite_project.database_url, revision="-1")
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Yes)
    window = MainWindow()
    qtbot.addWidget(window)
    window.open_project(sqlite_project.root)
    qtbot.waitUntil(lambda: window.model.rowCount() == 3, timeout=15000)
    assert asked and "backup" in asked[0]
    assert list((sqlite_project.root / "backups").glob("registry-*.sqlite"))


def test_broken_project_shows_an_error_not_a_crash(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from pathomics_desktop.ui.main_window import MainWindow

    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *a, **k: errors.append(a[2]))
    window = MainWindow()
    qtbot.addWidget(window)
    window.open_project(tmp_path / "nothing-here")
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert "not a Pathomics project" in errors[0]
