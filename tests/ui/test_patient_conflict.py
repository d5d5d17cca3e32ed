"""Two users edit the same patient: the second save in the form opens the conflict dialog
with both values, writes nothing until the user chooses, and undo never overwrites a later
change of someone else."""

from __future__ import annotations

from pathomics_desktop.registry.service import edit_values
from tests.ui.test_patient_form import STUDY, audit_rows, form, open_patient, stored_age, type_into  # noqa: F401


def test_second_save_opens_the_conflict_dialog_and_keep_mine_saves(qtbot, form, demo_context):  # noqa: F811
    ctx = demo_context
    open_patient(qtbot, form)
    before = stored_age(ctx)
    type_into(qtbot, form.fields["age"], str(before + 2))
    form.fields["diabetes"].set_raw("yes" if form.fields["diabetes"].original is not True else "no")
    # meanwhile a colleague changes the age in the registry
    edit_values(ctx.registry, STUDY, {"age": before + 1}, user="colleague")
    assert form.save() is False
    assert stored_age(ctx) == before + 1  # nothing of ours was written
    dialog = form.last_conflict_dialog
    fields = {f["variable"]: f for f in dialog.conflict.fields}
    assert (fields["age"]["base"], fields["age"]["mine"], fields["age"]["theirs"], fields["age"]["conflict"]) == \
        (before, before + 2, before + 1, True)
    assert fields["diabetes"]["conflict"] is False
    # the default is a field-by-field merge: theirs where they changed it, mine elsewhere
    assert dialog.choices() == {"age": "theirs", "diabetes": "mine"}
    dialog.keep_mine.click()
    assert stored_age(ctx) == before + 2
    rows = audit_rows(ctx, "age")
    assert rows[-2][:3] == ("colleague", str(before), str(before + 1))
    assert rows[-1][:3] == ("tester", str(before + 1), str(before + 2))  # ours applied over theirs, audited
    assert not form.dirty_fields()


def test_take_theirs_writes_nothing_and_shows_their_value(qtbot, form, demo_context):  # noqa: F811
    ctx = demo_context
    open_patient(qtbot, form)
    before = stored_age(ctx)
    type_into(qtbot, form.fields["age"], str(before + 2))
    edit_values(ctx.registry, STUDY, {"age": before + 1}, user="colleague")
    assert form.save() is False
    form.last_conflict_dialog.take_theirs.click()
    assert stored_age(ctx) == before + 1
    assert form.fields["age"].widget.text() == str(before + 1) and not form.dirty_fields()
    assert [r[0] for r in audit_rows(ctx, "age")] == ["colleague"]


def test_undo_refuses_to_overwrite_a_later_change_of_someone_else(qtbot, form, demo_context):  # noqa: F811
    ctx = demo_context
    open_patient(qtbot, form)
    before = stored_age(ctx)
    type_into(qtbot, form.fields["age"], str(before + 1))
    assert form.save() is True
    edit_values(ctx.registry, STUDY, {"age": before + 5}, user="colleague")
    failures = []
    ctx.task_failed.connect(lambda title, message, _trace: failures.append((title, message)))
    ctx.undo_stack.undo()
    assert stored_age(ctx) == before + 5  # the colleague's value stands
    assert failures and failures[0][0] == "Undo failed" and f"theirs {before + 5}" in failures[0][1]
