"""The application shell: start page, opening projects, menus and shortcuts, the status bar,
remembered settings, error messages and the crash report (real widgets, real SQLite)."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer, qVersion
from PySide6.QtGui import QUndoCommand
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

import pathomics_desktop
from pathomics_desktop.registry import database
from pathomics_desktop.registry.importer import import_file
from tests.registry.helpers import patient, write_csv

OPEN_TIMEOUT_MS = 60000


@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch):
    """Each test gets its own settings file and starts (and ends) with the light palette."""
    from pathomics_desktop.ui.theme import apply_theme

    monkeypatch.setenv("PATHOMICS_SETTINGS_DIR", str(tmp_path / "settings"))
    monkeypatch.setenv("PATHOMICS_USER", "coordinator1")
    apply_theme(False)
    yield
    apply_theme(False)


@pytest.fixture
def small_project(tmp_path):
    """Three patients; P1 carries a name, MRN and birth date (identifiers)."""
    from pathomics_desktop.registry.service import init_project, open_project_registry

    project = init_project(tmp_path / "study", development_center="A")
    reg = open_project_registry(project)
    rows = [patient("PX-4242", name="Zebediah Quux", mrn="MRN-99173", birth_date="1950-02-03"),
            patient("P2", center="B", recurrence="no", recurrence_date="", vital_status="alive",
                    death_date="", last_followup_date="2021-01-10"),
            patient("P3", neoadjuvant_therapy="yes")]
    assert import_file(reg, write_csv(tmp_path / "p.csv", rows)).committed
    reg.dispose()
    return project


def make_window(qtbot):
    from pathomics_desktop.ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    return window


def open_and_wait(qtbot, window, root) -> None:
    window.open_project(root)
    qtbot.waitUntil(lambda: window.ctx is not None and not window.busy(), timeout=OPEN_TIMEOUT_MS)


def value_of(ctx, study_id: str, variable: str):
    from pathomics_desktop.registry.codebook import Codebook
    from pathomics_desktop.registry.records import get_value
    from pathomics_desktop.registry.service import get_patient

    with ctx.registry.session() as session:
        return get_value(get_patient(session, study_id), Codebook.for_session(session)[variable])


def test_start_page_creates_a_sqlite_project_that_opens(qtbot, tmp_path):
    window = make_window(qtbot)
    page = window.start_page
    assert window.pages.currentIndex() == 0
    page.location.setText(str(tmp_path))
    page.name.setText("new-study")
    page.center.setText("A")
    qtbot.mouseClick(page.create_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.ctx is not None and not window.busy(), timeout=OPEN_TIMEOUT_MS)

    root = (tmp_path / "new-study").resolve()
    assert window.project.root == root
    assert (root / "registry.sqlite").is_file()
    assert window.pages.currentWidget() is window.workspace
    assert window.database_label.text() == f"Database: SQLite {root / 'registry.sqlite'}"
    with window.ctx.registry.session() as session:
        from sqlalchemy import select

        from pathomics_desktop.registry.models import Center
        assert [(c.code, c.role) for c in session.scalars(select(Center))] == [("A", "development")]
    from pathomics_desktop.ui.settings import recent_projects
    assert recent_projects() == [str(root)]
    window.close_project()
    assert window.pages.currentIndex() == 0
    assert page.recent.item(0).data(Qt.UserRole) == str(root)


def test_creating_over_an_existing_project_says_so_inline(qtbot, small_project):
    window = make_window(qtbot)
    page = window.start_page
    page.location.setText(str(small_project.root.parent))
    page.name.setText(small_project.root.name)
    qtbot.mouseClick(page.create_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not page.busy() and page.create_button.isEnabled(), timeout=OPEN_TIMEOUT_MS)
    assert page.create_result.text() == (f"{small_project.root} already holds a project "
                                         "(project.toml exists)")
    assert window.ctx is None


@pytest.mark.parametrize("url, expected", [
    ("postgresql://alice:s3cret@127.0.0.1:1/registry",
     "Connection failed: Cannot connect to postgresql://alice@127.0.0.1:1/registry: nothing answers at that "
     "host and port; check that the PostgreSQL server is running and accepts connections from this computer"),
    ("mysql://bob@db/registry",
     "Connection failed: 'mysql' is not a PostgreSQL URL; it must start with postgresql:// "
     "(e.g. postgresql://user:password@host:5432/database)"),
])
def test_connection_test_reports_a_failure_clearly(qtbot, url, expected):
    window = make_window(qtbot)
    page = window.start_page
    page.server.setChecked(True)
    page.url.setText(url)
    qtbot.mouseClick(page.test_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: page.connection_result.text().startswith("Connection failed"), timeout=30000)
    assert page.connection_result.text() == expected
    assert "s3cret" not in page.connection_result.text() and "Traceback" not in page.connection_result.text()
    assert page.test_button.isEnabled()


def test_a_postgresql_project_is_tested_created_and_opened(qtbot, postgres_server, tmp_path):
    url = postgres_server.create_database().replace("postgres@", "postgres:pw@")  # trust: any password
    shown = url.split("://", 1)[1].replace(":pw@", "@")
    window = make_window(qtbot)
    page = window.start_page
    page.server.setChecked(True)
    page.url.setText(url)
    qtbot.mouseClick(page.test_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: page.connection_result.text().startswith("Success"), timeout=30000)
    assert page.connection_result.text().startswith(f"Success: postgresql://{shown} (PostgreSQL 15")
    assert page.connection_result.text().endswith(
        "connected; the database is empty, so a new registry will be created in it.")
    page.location.setText(str(tmp_path))
    page.name.setText("multi-site")
    qtbot.mouseClick(page.create_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.ctx is not None and not window.busy(), timeout=OPEN_TIMEOUT_MS)
    assert window.ctx.registry.dialect == "postgresql"
    assert not (tmp_path / "multi-site" / "registry.sqlite").exists()
    assert window.database_label.text() == f"Database: PostgreSQL {shown}"
    assert window.schema_label.text() == f"Schema: {database.head_revision()} (current)"
    window.close()
    postgres_server.drop_database(url)


def test_status_bar_shows_user_database_and_schema_version(qtbot, small_project):
    window = make_window(qtbot)
    open_and_wait(qtbot, window, small_project.root)
    assert window.user_label.text() == "User: coordinator1"
    assert window.database_label.text() == f"Database: SQLite {small_project.root / 'registry.sqlite'}"
    assert window.schema_label.text() == f"Schema: {database.head_revision()} (current)"
    assert not window.banner.isVisible()  # not a synthetic project
    assert [window.navigation.item(i).text() for i in range(window.navigation.count())] == [
        "Patients", "Patient", "Study set-up", "Import", "Slides", "QC", "Slide viewer", "Jobs",
        "Kaplan-Meier", "Cox models", "Subgroup forest", "ROC", "Table 1", "Cutpoint", "Signature"]


def test_describe_database_never_shows_a_password():
    from pathomics_desktop.ui.main_window import describe_database

    assert describe_database("postgresql://u:pw@db.example.org:5433/reg") == "PostgreSQL u@db.example.org:5433/reg"
    assert describe_database("sqlite:////data/x/registry.sqlite") == "SQLite /data/x/registry.sqlite"


class EditAge(QUndoCommand):
    """A real audited edit (``service.edit_value``) as an undo command."""

    def __init__(self, ctx, study_id, old, new):
        super().__init__(f"age of {study_id}")
        self.ctx, self.study_id, self.old, self.new = ctx, study_id, old, new

    def redo(self):
        from pathomics_desktop.registry.service import edit_value
        edit_value(self.ctx.registry, self.study_id, "age", self.new, user=self.ctx.user, reason="test")

    def undo(self):
        from pathomics_desktop.registry.service import edit_value
        edit_value(self.ctx.registry, self.study_id, "age", self.old, user=self.ctx.user, reason="undo")


def test_shortcuts_undo_redo_refresh_and_find(qtbot, small_project):
    from pathomics_desktop.cohort.study_overview import variable_row
    from pathomics_desktop.registry.codebook import Codebook
    from pathomics_desktop.registry.service import add_variable

    window = make_window(qtbot)
    open_and_wait(qtbot, window, small_project.root)
    ctx = window.ctx
    assert value_of(ctx, "P2", "age") == 64
    ctx.undo_stack.push(EditAge(ctx, "P2", 64, 71))
    assert value_of(ctx, "P2", "age") == 71
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert value_of(ctx, "P2", "age") == 64
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert value_of(ctx, "P2", "age") == 71

    study = window.show_view("study")
    qtbot.waitUntil(lambda: not window.busy(), timeout=OPEN_TIMEOUT_MS)
    assert "albumin" not in [r["name"] for r in study.codebook_model.rows]
    add_variable(ctx.registry, name="albumin", type="number", unit="g/L")  # e.g. by another user
    qtbot.keyClick(window, Qt.Key_F5)
    qtbot.waitUntil(lambda: "albumin" in [r["name"] for r in study.codebook_model.rows], timeout=OPEN_TIMEOUT_MS)

    study.tabs.setCurrentIndex(1)
    qtbot.keyClick(window, Qt.Key_F, Qt.ControlModifier)
    assert study.tabs.currentIndex() == 0 and study.codebook_filter.hasFocus()
    qtbot.keyClicks(study.codebook_filter, "ca19")
    with ctx.registry.session() as session:
        rows = [variable_row(v) for v in Codebook.for_session(session)]
    expected = sum(1 for r in rows if any("ca19" in str(v).lower() for v in r.values() if not isinstance(v, bool)))
    assert expected >= 2 and study.codebook_proxy.rowCount() == expected


def test_navigation_requests_switch_views(qtbot, small_project):
    window = make_window(qtbot)
    open_and_wait(qtbot, window, small_project.root)
    window.ctx.request_view.emit("jobs")
    assert window.current_view() is window.view("jobs")
    assert window.navigation.currentItem().text() == "Jobs"
    window.ctx.request_patient.emit("P2")
    assert window.current_view() is window.view("patient")
    qtbot.keyClick(window, Qt.Key_3, Qt.ControlModifier)
    assert window.current_view() is window.view("study")


def test_a_remembered_window_too_small_to_use_opens_at_the_default_size(qtbot):
    first = make_window(qtbot)
    first.resize(500, 300)  # e.g. left by a window manager that shrank it
    first.close()
    second = make_window(qtbot)
    screen = second.screen().availableGeometry()  # the offscreen screen: 800 x 800
    assert (second.width(), second.height()) == (min(1280, int(screen.width() * 0.9)),
                                                 min(800, int(screen.height() * 0.9))) == (720, 720)
    second.close()


def test_geometry_splitters_columns_and_dark_mode_are_remembered(qtbot, small_project):
    from pathomics_desktop.ui.theme import dark_palette

    first = make_window(qtbot)
    open_and_wait(qtbot, first, small_project.root)
    first.resize(720, 560)  # inside the offscreen screen (800x800)
    first.workspace.setSizes([210, 490])
    sizes = first.workspace.sizes()
    study = first.view("study")
    study.codebook_table.setColumnWidth(1, 222)
    first.set_dark(True)
    assert QApplication.instance().palette().window().color() == dark_palette().window().color()
    first.close()

    from pathomics_desktop.ui.theme import apply_theme
    apply_theme(False)  # a fresh start: the light default until the settings are read
    second = make_window(qtbot)
    assert (second.width(), second.height()) == (720, 560)
    assert second.workspace.sizes()[0] == sizes[0] == 210  # the navigation pane's width
    assert second.dark_action.isChecked()
    assert QApplication.instance().palette().window().color() == dark_palette().window().color()
    open_and_wait(qtbot, second, small_project.root)
    assert second.workspace.sizes() == sizes
    assert second.view("study").codebook_table.columnWidth(1) == 222
    second.set_dark(False)
    second.close()
    third = make_window(qtbot)
    assert not third.dark_action.isChecked()


def test_outdated_schema_offers_upgrade_with_backup(qtbot, small_project, monkeypatch):
    database.downgrade(small_project.database_url, revision="-1")
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Yes)
    window = make_window(qtbot)
    open_and_wait(qtbot, window, small_project.root)
    assert asked and "backup" in asked[0]
    assert list((small_project.root / "backups").glob("registry-*.sqlite"))
    assert window.schema_label.text() == f"Schema: {database.head_revision()} (current)"


def test_a_folder_that_is_no_project_gets_a_message_that_says_what_to_do(qtbot, tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *a, **k: errors.append(a[2]))
    window = make_window(qtbot)
    window.open_project(tmp_path / "nothing-here")
    qtbot.waitUntil(lambda: bool(errors), timeout=OPEN_TIMEOUT_MS)
    root = (tmp_path / "nothing-here").resolve()
    assert errors == [f"{root} is not a Pathomics project (no project.toml); create one with `pathomics init DIR` "
                      "or `pathomics demo DIR`\n\nChoose another folder (File > Open project), or create a "
                      "project (File > New project)."]
    assert window.ctx is None


def _close_next_modal(seen: list) -> None:
    """Close the next modal dialog once it is up, remembering its texts."""
    def check():
        box = QApplication.activeModalWidget()
        if box is None:
            QTimer.singleShot(20, check)
            return
        seen.append((box.text(), box.informativeText(), box.detailedText()))
        box.done(0)
    QTimer.singleShot(20, check)


def test_task_failures_show_a_message_and_only_unexpected_ones_have_details(qtbot, small_project):
    from pathomics_desktop.errors import UserError

    window = make_window(qtbot)
    open_and_wait(qtbot, window, small_project.root)

    def refused():
        raise UserError("patients.csv, row 4, age: 'abc' is not a whole number")

    def broken():
        return {}["missing"]

    seen: list = []
    _close_next_modal(seen)
    window.ctx.run(refused, title="Import failed")
    qtbot.waitUntil(lambda: bool(seen), timeout=OPEN_TIMEOUT_MS)
    assert seen[0] == ("patients.csv, row 4, age: 'abc' is not a whole number", "", "")

    _close_next_modal(seen)
    window.ctx.run(broken, title="Export failed")
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=OPEN_TIMEOUT_MS)
    text, informative, details = seen[1]
    assert "Traceback" not in text and "Traceback" not in informative
    assert text.startswith("The task stopped because of an unexpected problem. Your saved data are safe.")
    assert informative == "'missing'"
    assert details.startswith("Traceback") and "KeyError: 'missing'" in details


def test_crash_report_has_versions_and_actions_but_no_identifiers(qtbot, small_project):
    from pathomics_desktop.ui.crash import CrashHandler

    window = make_window(qtbot)
    open_and_wait(qtbot, window, small_project.root)
    window.show_view("study")
    window.show_view("patients")

    def save_form():
        raise ValueError("could not save 'Zebediah Quux' (MRN-99173, born 1950-02-03) for PX-4242, value 123456")

    try:
        save_form()
    except ValueError as exc:
        error = exc
    handler = CrashHandler(lambda: window.ctx)
    path = handler.handle(error)
    assert path.parent == small_project.root / "reports" / "crash"
    text = path.read_text(encoding="utf-8")
    for expected in (f"python: {platform.python_version()}", f"qt: {qVersion()}",
                     f"pathomics-desktop: {pathomics_desktop.__version__}", "view: study", "view: patients",
                     "in save_form", "builtins.ValueError: could not save"):
        assert expected in text
    for secret in ("Zebediah", "Quux", "MRN-99173", "99173", "1950-02-03", "PX-4242", "123456"):
        assert secret not in text
    dialog = handler.dialogs[-1]
    assert dialog.isVisible()
    assert str(path) in " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert dialog.details.toPlainText() == text
    dialog.reject()


def test_scrub_removes_known_identifiers_and_data_patterns():
    from pathomics_desktop.ui.crash import scrub

    assert scrub('Jane Roe: "x y", 2021-03-04, 55512, ok', ["Jane Roe"]) == \
        "<identifier>: '<value>', <date>, <number>, ok"


def test_user_error_traces_are_told_apart_from_bugs():
    import traceback

    from pathomics_desktop.errors import ValidationFailed
    from pathomics_desktop.ui.crash import is_user_error_trace

    def trace_of(exc):
        try:
            raise exc
        except Exception:
            return traceback.format_exc()

    assert is_user_error_trace(trace_of(ValidationFailed("3 errors")))
    assert not is_user_error_trace(trace_of(KeyError("x")))
    assert is_user_error_trace("")


def test_recent_projects_keep_order_and_drop_missing_folders(small_project, tmp_path):
    from pathomics_desktop.registry.service import init_project
    from pathomics_desktop.ui.settings import add_recent_project, recent_projects

    other = init_project(tmp_path / "other")
    add_recent_project(small_project.root)
    add_recent_project(other.root)
    add_recent_project(small_project.root)
    assert recent_projects() == [str(small_project.root), str(other.root)]
    (other.root / "project.toml").unlink()
    assert recent_projects() == [str(small_project.root)]
    assert Path(recent_projects()[0]).is_dir()


def test_a_missing_view_module_fails_loudly(qtbot, monkeypatch):
    import pathomics_desktop.ui.main_window as main_window

    monkeypatch.setattr(main_window, "VIEWS", [*main_window.VIEWS,
                                               ("km", "Kaplan-Meier", "pathomics_desktop.ui.views.not_built:KMView")])
    with pytest.raises(ModuleNotFoundError, match="pathomics_desktop.ui.views.not_built"):
        main_window.build_views()
