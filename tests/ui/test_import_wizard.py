"""The import wizard on real widgets and a real SQLite registry: file -> mapping -> dry run ->
import -> summary; a dry run with errors writes nothing and keeps Import disabled."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtCore import Qt
from sqlalchemy import func, select

from pathomics_desktop.registry.importer import ColumnMapping, import_file
from pathomics_desktop.registry.models import AuditEvent, FollowUpVisit, Patient
from pathomics_desktop.ui.views.import_wizard import (
    ERROR_COLOR,
    EXAMPLE_DIR,
    IGNORE,
    WARNING_COLOR,
    ImportWizardView,
)
from tests.registry.helpers import patient, write_csv

EXPORT_WITH_ERRORS = EXAMPLE_DIR / "SYNTHETIC_pdac_export_with_errors.csv"
EXPORT = EXAMPLE_DIR / "SYNTHETIC_pdac_export.csv"
DICTIONARY = EXAMPLE_DIR / "SYNTHETIC_pdac_DataDictionary.csv"


@pytest.fixture
def tiny_context(qtbot, tmp_path):
    """A ProjectContext on a new SQLite project holding two patients (P1, P2)."""
    from pathomics_desktop.registry.service import init_project, open_project_registry
    from pathomics_desktop.ui.context import ProjectContext

    project = init_project(tmp_path / "study", development_center="A")
    registry = open_project_registry(project)
    assert import_file(registry, write_csv(tmp_path / "seed.csv", [patient("P1"), patient("P2")])).committed
    ctx = ProjectContext(project, registry, user="coordinator")
    yield ctx
    ctx.close()


def counts(ctx) -> tuple[int, int, int]:
    with ctx.registry.session() as s:
        return (s.scalar(select(func.count()).select_from(Patient)),
                s.scalar(select(func.count()).select_from(FollowUpVisit)),
                s.scalar(select(func.count()).select_from(AuditEvent)))


def open_wizard(qtbot, ctx) -> ImportWizardView:
    view = ImportWizardView()
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.set_context(ctx)
    view.show()
    return view


def load(qtbot, view, path, dictionary=""):
    view.file_edit.setText(str(path))
    view.dictionary_edit.setText(str(dictionary))
    assert view.next_button.isEnabled()
    view.next_button.click()
    qtbot.waitUntil(lambda: view.step == 1 and not view.busy(), timeout=20000)


def check(qtbot, view):
    view.next_button.click()  # mapping -> check: runs the dry run in a worker
    assert view.step == 2
    qtbot.waitUntil(lambda: view.report is not None and not view.busy(), timeout=20000)


def cell(view, file_row: int, column: str):
    model = view.preview_model
    return model.index(file_row - 2, model.columns.index(column))


def background(view, file_row, column):
    brush = view.preview_model.data(cell(view, file_row, column), role=Qt.BackgroundRole)
    return None if brush is None else brush.color().name()


def test_dry_run_errors_are_listed_highlighted_and_nothing_is_written(qtbot, tiny_context):
    view = open_wizard(qtbot, tiny_context)
    before = counts(tiny_context)
    load(qtbot, view, EXPORT_WITH_ERRORS, DICTIONARY)
    assert view.mapping_table.rowCount() == 31  # one row per export column
    check(qtbot, view)
    rows = [[view.issue_table.item(r, c).text() for c in range(5)] for r in range(view.issue_table.rowCount())]
    assert [r[:4] for r in rows] == [["error", "3", "vital_status", "7"], ["warning", "5", "age", "97"]]
    assert rows[0][4] == "'7' is not a choice of REDCap field vital_status (choices: 0 = Alive, 1 = Dead)"
    # the offending cells are highlighted in the preview: red error, amber warning, nothing else
    assert background(view, 3, "vital_status") == ERROR_COLOR.name()
    assert background(view, 5, "age") == WARNING_COLOR.name()
    marked = {(r, c) for r in range(view.preview_model.rowCount())
              for c in range(view.preview_model.columnCount())
              if view.preview_model.data(view.preview_model.index(r, c), Qt.BackgroundRole) is not None}
    assert marked == {(1, view.preview_model.columns.index("vital_status")),
                      (3, view.preview_model.columns.index("age"))}
    assert not view.next_button.isEnabled() and not view.import_button.isEnabled()
    view.run_import()  # refused: the dry run has an error
    assert not view.busy() and view.result is None
    snap = view.snapshot()
    assert (snap["step_name"], snap["errors"], snap["warnings"], snap["import_enabled"]) == ("Check", 1, 1, False)
    assert snap["highlighted_cells"] == {"error": 1, "warning": 1}
    assert snap["issues"][0]["row"] == 3 and snap["issues"][0]["column"] == "vital_status"
    assert counts(tiny_context) == before  # no patient, visit or audit row written


def test_clean_file_with_a_saved_mapping_imports_and_shows_what_changed(qtbot, tiny_context, tmp_path):
    rows = [{"Patient": "P1", "center": "A", "Gender": "M", "age": "66", "t_stage": "T3", "colour": "red"},
            {"Patient": "P2", "center": "A", "Gender": "M", "age": "64", "t_stage": "T2", "colour": "blue"},
            {"Patient": "P3", "center": "B", "Gender": "F", "age": "97", "t_stage": "T1", "colour": "red"}]
    sheet = write_csv(tmp_path / "sheet.csv", rows)
    view = open_wizard(qtbot, tiny_context)
    load(qtbot, view, sheet)
    check(qtbot, view)  # unmapped: Patient, Gender and colour are unknown columns
    assert {view.issue_table.item(r, 2).text() for r in range(view.issue_table.rowCount())
            if view.issue_table.item(r, 0).text() == "error"} == {"Patient", "Gender", "colour", "study_id"}
    view.back_button.click()
    view.set_target("Patient", "study_id")
    view.set_target("Gender", "sex", "F=female; M=male")
    view.set_target("colour", IGNORE)
    view.save_name.setText("clinic sheet")
    view.save_button.click()
    saved = ColumnMapping.load(tiny_context.project.root / "mappings" / "clinic sheet.json")
    assert saved == ColumnMapping(name="clinic sheet", columns={"Patient": "study_id", "Gender": "sex"},
                                  values={"sex": {"F": "female", "M": "male"}}, ignore=["colour"])
    before = counts(tiny_context)
    check(qtbot, view)
    assert view.report.errors == [] and [w.column for w in view.report.warnings] == ["age"]
    assert counts(tiny_context) == before
    view.next_button.click()
    assert view.step == 3
    assert not view.import_button.isEnabled()  # a warning must be acknowledged first
    view.ack_warnings.setChecked(True)
    assert view.import_button.isEnabled()
    with qtbot.waitSignal(tiny_context.data_changed, timeout=20000) as changed:
        view.import_button.click()
    assert changed.args == ["patients"]
    qtbot.waitUntil(lambda: view.step == 4 and not view.busy(), timeout=20000)
    # P1: age 64 -> 66 and t_stage T2 -> T3; P2 unchanged; P3 new
    shown = {k: int(label.text()) for k, label in view.summary_labels.items()}
    assert shown == {"patients_added": 1, "patients_updated": 1, "fields_updated": 2, "patients_unchanged": 1,
                     "visits_added": 0, "visits_updated": 0}
    assert view.snapshot()["summary"] == shown and view.snapshot()["imported"]
    with tiny_context.registry.session() as s:
        got = {p.study_id: (p.sex, p.age, p.pathology.t_stage)
               for p in s.scalars(select(Patient).order_by(Patient.study_id))}
        audit_user = s.scalars(select(AuditEvent.user).order_by(AuditEvent.id.desc()).limit(1)).one()
    assert got == {"P1": ("male", 66, "T3"), "P2": ("male", 64, "T2"), "P3": ("female", 97, "T1")}
    assert audit_user == "coordinator"
    # the saved mapping is offered the next time
    view.reset()
    load(qtbot, view, sheet)
    assert view.saved_combo.findData("clinic sheet") > 0


def test_redcap_export_imports_patients_and_visits_through_the_wizard(qtbot, tiny_context):
    view = open_wizard(qtbot, tiny_context)
    load(qtbot, view, EXPORT, DICTIONARY)
    assert "follow_up" in view.mapping_info.text() and "ecog" in view.mapping_info.text()
    check(qtbot, view)
    # ecog matches no codebook variable: the proposed mapping ignores it (said on the mapping page)
    assert view.report.issues == []
    view.next_button.click()
    assert view.ack_warnings.isHidden() and view.import_button.isEnabled()
    view.import_button.click()
    qtbot.waitUntil(lambda: view.step == 4 and not view.busy(), timeout=20000)
    assert view.summary_counts() == {"patients_added": 4, "patients_updated": 0, "patients_unchanged": 0,
                                     "fields_updated": 0, "visits_added": 7, "visits_updated": 0}
    assert view.summary_labels["visits_added"].text() == "7"
    with tiny_context.registry.session() as s:
        rc01 = s.scalars(select(Patient).where(Patient.study_id == "SYN-RC01")).one()
        summary = [v for v in rc01.followups if v.source == "summary"]
        assert [(v.visit_date, v.vital_status, v.death_date) for v in summary] == [
            (dt.date(2019, 11, 2), "dead", dt.date(2019, 11, 2))]
        assert len([v for v in rc01.followups if v.source == "visit"]) == 3
        assert s.scalar(select(func.count()).select_from(Patient)) == 6


def test_prepare_screenshot_shows_the_error_table(qtbot, tiny_context):
    view = open_wizard(qtbot, tiny_context)
    view.prepare_screenshot()
    assert view.busy()
    qtbot.waitUntil(lambda: not view.busy() and view.report is not None, timeout=20000)
    snap = view.snapshot()
    assert (snap["step_name"], snap["file"], snap["errors"]) == ("Check", EXPORT_WITH_ERRORS.name, 1)
    assert snap["highlighted_cells"] == {"error": 1, "warning": 1}
    # identifiers are masked in what the view shows and in the snapshot
    assert view.preview_model.data(cell(view, 4, "mrn")) == "\u2022\u2022\u2022"
    assert "SYN-MRN" not in str(snap)
    assert not view.grab().isNull()


def test_a_file_that_is_no_spreadsheet_gets_a_message_not_a_traceback(qtbot, tiny_context, tmp_path):
    bad = tmp_path / "scan.csv"
    bad.write_bytes(b"\x00\x01\x02 not text")
    view = open_wizard(qtbot, tiny_context)
    view.file_edit.setText(str(bad))
    view.next_button.click()
    qtbot.waitUntil(lambda: not view.busy(), timeout=20000)
    assert view.step == 0 and view.loaded is None
    assert view.last_message.startswith(f"{bad}: not a text spreadsheet (binary content)")
    assert "Traceback" not in view.last_message
