"""The patient form on the SYNTHETIC demo registry, driven through its real widgets: audited
edits and their undo, soft and hard limits, locked records, live endpoints, follow-up visits
with undo, a field's history, and identifiers hidden until asked for."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtCore import Qt
from sqlalchemy import select

from pathomics_desktop.cohort.endpoints import Visit, derive_endpoints, summarise
from pathomics_desktop.registry.models import AuditEvent, Patient
from pathomics_desktop.registry.service import list_visits, set_lock
from pathomics_desktop.ui.views.patient_form import PatientFormView
from tests.ui.helpers import shown_view

STUDY = "SYN-A-0005"  # alive at last follow-up in the demo cohort (checked below)


@pytest.fixture
def form(qtbot, demo_context):
    view = shown_view(qtbot, PatientFormView(), demo_context, (1300, 800))
    return view


def open_patient(qtbot, view, study_id=STUDY):
    view.show_patient(study_id)
    qtbot.waitUntil(lambda: view.study_id == study_id and not view.busy(), timeout=30000)
    return view


def type_into(qtbot, editor, text):
    """Select what the field holds and type over it, as a user would."""
    line = getattr(editor.widget, "line", editor.widget)
    line.selectAll()
    qtbot.keyClick(line, Qt.Key_Delete)
    qtbot.keyClicks(line, text)


def stored_age(ctx, study_id=STUDY):
    with ctx.registry.session() as s:
        return s.scalars(select(Patient.age).where(Patient.study_id == study_id)).one()


def audit_rows(ctx, field, study_id=STUDY):
    with ctx.registry.session() as s:
        pid = s.scalars(select(Patient.id).where(Patient.study_id == study_id)).one()
        return [(e.user, e.old_value, e.new_value, e.reason) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.patient_id == pid, AuditEvent.field == field,
                                     AuditEvent.action == "update").order_by(AuditEvent.id))]


def test_an_edit_is_audited_and_undo_restores_it(qtbot, form, demo_context):
    ctx = demo_context
    open_patient(qtbot, form)
    before = stored_age(ctx)
    type_into(qtbot, form.fields["age"], str(before + 1))
    assert form.fields["age"].dirty and form.save_button.isEnabled()
    qtbot.keyClicks(form.reason, "age from the anaesthesia record")
    qtbot.mouseClick(form.save_button, Qt.LeftButton)
    assert stored_age(ctx) == before + 1
    assert audit_rows(ctx, "age") == [("tester", str(before), str(before + 1), "age from the anaesthesia record")]
    assert ctx.undo_stack.count() == 1 and not form.dirty_fields()

    ctx.undo_stack.undo()
    assert stored_age(ctx) == before
    assert audit_rows(ctx, "age")[1] == ("tester", str(before + 1), str(before), "undo: age from the anaesthesia record")
    qtbot.waitUntil(lambda: not form.busy() and form.fields["age"].widget.text() == str(before), timeout=30000)
    ctx.undo_stack.redo()
    assert stored_age(ctx) == before + 1
    assert audit_rows(ctx, "age")[2][3] == "redo: age from the anaesthesia record"

    dialog = form.show_history("age")
    cells = [[dialog.table.item(r, c).text() for c in range(6)] for r in range(dialog.table.rowCount())]
    assert [row[1:] for row in cells[-3:]] == [
        ["tester", "update", str(before), str(before + 1), "age from the anaesthesia record"],
        ["tester", "update", str(before + 1), str(before), "undo: age from the anaesthesia record"],
        ["tester", "update", str(before), str(before + 1), "redo: age from the anaesthesia record"]]
    assert cells[0][2] == "insert" and cells[0][4] == str(before)  # the import


def test_soft_limit_asks_for_a_note_and_hard_limit_blocks_save(qtbot, form, demo_context):
    ctx = demo_context
    open_patient(qtbot, form)
    before = stored_age(ctx)
    age = form.fields["age"]
    type_into(qtbot, age, "130")
    assert age.message.isVisible() and "130 is above the upper limit 120" in age.message.text()
    assert not form.save_button.isEnabled() and form.save() is False
    assert "Age at surgery: 130 is above the upper limit 120" in form.state_label.text()
    assert stored_age(ctx) == before and audit_rows(ctx, "age") == []

    type_into(qtbot, age, "97")
    assert age.note.isVisible() and "above the expected range (<= 95)" in age.message.text()
    assert not form.save_button.isEnabled() and form.save() is False
    assert "needs a note" in form.state_label.text() and stored_age(ctx) == before
    qtbot.keyClicks(age.note, "born 1921, confirmed with the family doctor")
    assert form.save_button.isEnabled()
    qtbot.mouseClick(form.save_button, Qt.LeftButton)
    assert stored_age(ctx) == 97
    assert audit_rows(ctx, "age") == [("tester", str(before), "97", "born 1921, confirmed with the family doctor")]


def test_locked_record_refuses_a_change_without_a_reason(qtbot, form, demo_context):
    ctx = demo_context
    set_lock(ctx.registry, STUDY, True, user="monitor")
    open_patient(qtbot, form)
    assert form.locked and "locked" in form.lock_badge.text()
    before = stored_age(ctx)
    type_into(qtbot, form.fields["age"], str(before - 1))
    assert not form.save_button.isEnabled() and form.save() is False
    assert "this record is locked: enter a reason" in form.state_label.text()
    assert stored_age(ctx) == before and ctx.undo_stack.count() == 0
    qtbot.keyClicks(form.reason, "source document verification")
    qtbot.mouseClick(form.save_button, Qt.LeftButton)
    assert stored_age(ctx) == before - 1
    assert audit_rows(ctx, "age") == [("tester", str(before), str(before - 1), "source document verification")]


def test_derived_os_updates_live_and_equals_the_endpoints(qtbot, form, demo_context):
    open_patient(qtbot, form)
    record = form.record
    values = record["values"]
    assert values["vital_status"] == "alive"
    surgery, last = values["surgery_date"], values["last_followup_date"]
    assert form.derived_labels["os"].text() == f"{(last - surgery).days / 30.4375:.1f} months, alive (censored)"
    new_last = last + dt.timedelta(days=200)
    type_into(qtbot, form.fields["last_followup_date"], new_last.isoformat())
    visits = [Visit(v["visit_date"], v["vital_status"], v["recurrence"], v["recurrence_date"], v["death_date"])
              for v in record["visits"] if v["source"] == "visit"]
    summary = Visit(new_last, "alive", values["recurrence"], values.get("recurrence_date"), None)
    direct = derive_endpoints(STUDY, surgery, summarise(visits + [summary]))
    assert form.derived.os_months == direct.os_months == (new_last - surgery).days / 30.4375
    assert form.derived_labels["os"].text() == f"{direct.os_months:.1f} months, alive (censored)"
    assert form.derived.rfs_months == direct.rfs_months
    # nothing is written until Save
    assert form.fields["last_followup_date"].dirty and form.record["values"]["last_followup_date"] == last
    # stage and inclusion follow too
    form.fields["m_stage"].set_raw("M1")
    form.fields["neoadjuvant_therapy"].set_raw("yes")
    assert form.derived.stage == "IV" and form.derived_labels["stage"].text() == "IV (group IV)"
    assert form.derived_labels["inclusion"].text() == "excluded: neoadjuvant therapy"


def fill(dialog, **fields):
    for name, raw in fields.items():
        dialog.fields[name].set_raw(raw)


def test_visits_add_edit_delete_with_undo(qtbot, form, demo_context):
    ctx = demo_context
    open_patient(qtbot, form)

    def visits():
        return {v["visit_date"]: v for v in list_visits(ctx.registry, STUDY) if v["source"] == "visit"}

    start = visits()
    surgery = form.record["values"]["surgery_date"]
    day = max(start) + dt.timedelta(days=1)

    dialog = form.add_visit()
    fill(dialog, visit_date=(surgery - dt.timedelta(days=3)).isoformat(), vital_status="alive", recurrence="no")
    assert dialog.submit() is False and "is before surgery" in dialog.error.text() and visits() == start
    fill(dialog, visit_date="2199-01-01")
    assert dialog.submit() is False and "is in the future" in dialog.error.text()
    fill(dialog, visit_date=day.isoformat())
    qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Ok), Qt.LeftButton)
    assert not dialog.isVisible()
    assert visits()[day]["vital_status"] == "alive" and visits()[day]["recurrence"] is False
    ctx.undo_stack.undo()
    assert day not in visits()
    ctx.undo_stack.redo()
    assert day in visits()
    qtbot.waitUntil(lambda: not form.busy() and form.visits_model.row_of(day) >= 0, timeout=30000)

    row = form.visits_model.row_of(day)
    dialog = form.edit_visit(row)
    fill(dialog, recurrence="yes", recurrence_date=day.isoformat())
    assert dialog.submit() is True
    assert (visits()[day]["recurrence"], visits()[day]["recurrence_date"]) == (True, day)
    ctx.undo_stack.undo()
    assert (visits()[day]["recurrence"], visits()[day]["recurrence_date"]) == (False, None)
    qtbot.waitUntil(lambda: not form.busy() and form.visits_model.row_of(day) >= 0, timeout=30000)

    form.visits_table.selectRow(form.visits_model.row_of(day))
    qtbot.mouseClick(form.delete_visit_button, Qt.LeftButton)
    assert day not in visits()
    ctx.undo_stack.undo()
    assert visits()[day]["vital_status"] == "alive" and visits() .keys() == start.keys() | {day}
    with ctx.registry.session() as s:
        reasons = [e.reason for e in s.scalars(select(AuditEvent).where(
            AuditEvent.table_name == "followup_visits").order_by(AuditEvent.id.desc()).limit(2))]
    assert reasons == ["undo", None]  # the undo of the delete re-adds it; the delete itself had no reason

    summary_row = next(r for r in range(form.visits_model.rowCount())
                       if form.visits_model.visit(r)["source"] == "summary")
    assert form.edit_visit(summary_row) is None and "Follow-up section" in form.visit_message.text()


def test_identifiers_hidden_until_asked_for(qtbot, form, demo_context):
    open_patient(qtbot, form)
    assert not form.sections["identifiers"].isVisible()
    assert "name" not in form.record["values"] and form.fields["name"].widget.text() == ""
    snap = form.snapshot()
    assert "identifiers" not in snap["sections"] and snap["study_id"] == STUDY
    form.show_identifiers.setChecked(True)
    qtbot.waitUntil(lambda: not form.busy() and "name" in form.record["values"], timeout=30000)
    name = form.record["values"]["name"]
    assert name and form.sections["identifiers"].isVisible() and form.fields["name"].widget.text() == name
    assert name not in str(form.snapshot())
    form.show_identifiers.setChecked(False)
    assert "name" not in form.record["values"] and form.fields["name"].widget.text() == ""


def test_lock_and_unlock_from_the_form_are_undoable(qtbot, form, demo_context):
    ctx = demo_context

    def locked():
        with ctx.registry.session() as s:
            return s.scalars(select(Patient.locked).where(Patient.study_id == STUDY)).one()

    open_patient(qtbot, form)
    qtbot.mouseClick(form.lock_button, Qt.LeftButton)
    assert locked() is True
    qtbot.waitUntil(lambda: not form.busy() and form.locked, timeout=30000)
    assert form.lock_button.text() == "Unlock record"
    assert form.toggle_lock() is False and "Unlocking needs a reason" in form.state_label.text() and locked()
    ctx.undo_stack.undo()
    assert locked() is False
    assert audit_rows(ctx, "locked")[-1] == ("tester", "true", "false", "undo")
