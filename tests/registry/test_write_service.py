"""The audited write service behind the GUI's commands: several fields in one transaction,
soft-limit notes, locked records, follow-up visits, a field's history, the live derivation."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from pathomics_desktop.cohort.endpoints import Visit, derive_endpoints, summarise
from pathomics_desktop.cohort.live import derive_from_values
from pathomics_desktop.cohort.table import build_rows
from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.models import AuditEvent, FollowUpVisit, Patient
from pathomics_desktop.registry.service import (
    NoteRequired,
    ReasonRequired,
    add_variable,
    add_visit,
    delete_visit,
    edit_value,
    edit_values,
    edit_visit,
    field_history,
    list_visits,
    load_patient_record,
    set_lock,
)
from tests.registry.helpers import patient, table_counts, write_csv

ALIVE = dict(recurrence="no", recurrence_date="", vital_status="alive", death_date="",
             last_followup_date="2020-01-10")


@pytest.fixture
def two_patients(registry, tmp_path):
    rows = [patient("P1", name="Ann Example", mrn="M-1"), patient("P2", **ALIVE)]
    assert import_file(registry, write_csv(tmp_path / "p.csv", rows), user="importer").committed
    return registry


def updates(registry, field):
    with registry.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == "update", AuditEvent.field == field)
                              .order_by(AuditEvent.id)))


def test_edit_values_is_one_transaction_with_a_reason_per_field(two_patients):
    changes = edit_values(two_patients, "P1", {"age": "97", "t_stage": "t3"}, user="carol",
                          reason="CRF review", notes={"age": "checked the chart"}, require_notes=True)
    assert changes == {"age": (64, 97), "t_stage": ("T2", "T3")}
    (age,) = updates(two_patients, "age")
    (t_stage,) = updates(two_patients, "t_stage")
    assert (age.old_value, age.new_value, age.user, age.reason) == ("64", "97", "carol", "checked the chart; CRF review")
    assert (t_stage.old_value, t_stage.new_value, t_stage.reason) == ("T2", "T3", "CRF review")
    # a hard error in the second field writes neither
    before = table_counts(two_patients)
    with pytest.raises(UserError, match=r"P1, age: 130 is above the upper limit 120"):
        edit_values(two_patients, "P1", {"t_stage": "T4", "age": "130"})
    assert table_counts(two_patients) == before
    with two_patients.session() as s:
        p = s.scalars(select(Patient).where(Patient.study_id == "P1")).one()
        assert p.age == 97 and p.pathology.t_stage == "T3"


def test_soft_limit_needs_a_note_when_asked(two_patients):
    with pytest.raises(NoteRequired) as info:
        edit_value(two_patients, "P1", "ca19_9", "25000", require_note=True)
    assert info.value.warnings == {"ca19_9": "25000.0 is above the expected range (<= 20000); accepted, please check"}
    assert updates(two_patients, "value") == []
    assert edit_value(two_patients, "P1", "ca19_9", "25000", require_note=True, note="repeat lab: 24800") == (150.0, 25000.0)
    (row,) = updates(two_patients, "value")
    assert (row.table_name, row.old_value, row.new_value, row.reason) == ("lab_results", "150.0", "25000.0",
                                                                         "repeat lab: 24800")
    # the command line keeps accepting it without a note
    assert edit_value(two_patients, "P2", "ca19_9", "21000") == (150.0, 21000.0)


def test_locked_record_needs_a_reason(two_patients):
    set_lock(two_patients, "P1", True)
    with pytest.raises(ReasonRequired, match="P1 is locked"):
        edit_values(two_patients, "P1", {"age": "70"}, notes={"age": "a note is not a reason"})
    with pytest.raises(ReasonRequired):
        add_visit(two_patients, "P1", {"visit_date": "2018-06-01", "vital_status": "alive"})
    edit_value(two_patients, "P1", "age", "70", reason="typo in CRF")
    (row,) = updates(two_patients, "age")
    assert (row.old_value, row.new_value, row.reason) == ("64", "70", "typo in CRF")


def test_visits_add_edit_delete_are_validated_and_audited(two_patients):
    reg = two_patients
    stored = add_visit(reg, "P2", {"visit_date": "2019-05-01", "vital_status": "alive", "recurrence": "no"}, user="dan")
    assert (stored["visit_date"], stored["vital_status"], stored["recurrence"], stored["source"]) == \
        (dt.date(2019, 5, 1), "alive", False, "visit")
    with pytest.raises(UserError, match="already has a follow-up visit on 2019-05-01"):
        add_visit(reg, "P2", {"visit_date": "2019-05-01"})
    with pytest.raises(UserError, match="visit date 2017-05-01 is before surgery"):
        add_visit(reg, "P2", {"visit_date": "2017-05-01"})
    with pytest.raises(UserError, match="visit vital_status: 'zombie' is not a code"):
        add_visit(reg, "P2", {"visit_date": "2019-07-01", "vital_status": "zombie"})
    with pytest.raises(UserError, match="recurrence is yes but there is no recurrence date"):
        add_visit(reg, "P2", {"visit_date": "2019-07-01", "recurrence": "yes"})
    old, new = edit_visit(reg, "P2", "2019-05-01", {"visit_date": "2019-06-01", "vital_status": "alive",
                                                    "recurrence": "yes", "recurrence_date": "2019-05-20"})
    assert old["visit_date"] == dt.date(2019, 5, 1) and new["recurrence_date"] == dt.date(2019, 5, 20)
    dates = [(v["source"], v["visit_date"]) for v in list_visits(reg, "P2")]
    assert dates == [("visit", dt.date(2019, 6, 1)), ("summary", dt.date(2020, 1, 10))]
    gone = delete_visit(reg, "P2", dt.date(2019, 6, 1), reason="entered twice")
    assert gone["recurrence"] is True
    with reg.session() as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.table_name == "followup_visits",
                                                         AuditEvent.record_id == str(stored["id"]))
                                .order_by(AuditEvent.id)))
        left = s.scalars(select(FollowUpVisit).where(FollowUpVisit.source == "visit")).all()
    assert [e.action for e in events] == ["insert"] + ["update"] * 3 + ["delete"]
    assert events[0].user == "dan" and events[-1].reason == "entered twice"
    assert {e.field: (e.old_value, e.new_value) for e in events[1:4]} == {
        "visit_date": ("2019-05-01", "2019-06-01"), "recurrence": ("false", "true"),
        "recurrence_date": (None, "2019-05-20")}
    assert left == []


def test_field_history_follows_the_storage_of_a_variable(two_patients):
    reg = two_patients
    edit_value(reg, "P1", "ca19_9", "300", user="erin", reason="lab report")
    edit_value(reg, "P1", "last_followup_date", "2020-02-01", user="erin", reason="clinic letter")
    edit_value(reg, "P1", "center", "B", user="erin", reason="transferred")
    # a follow-up visit of the patient does not belong to the summary's history
    add_visit(reg, "P1", {"visit_date": "2019-01-05", "vital_status": "alive", "recurrence": "no"})
    ca = field_history(reg, "P1", "ca19_9")
    number = lambda text: None if text is None else float(text)  # noqa: E731 (backends print 150 or 150.0)
    assert [(h["action"], number(h["old"]), number(h["new"]), h["user"], h["reason"]) for h in ca] == [
        ("insert", None, 150.0, "importer", "import p.csv"), ("update", 150.0, 300.0, "erin", "lab report")]
    fu = field_history(reg, "P1", "last_followup_date")
    assert [(h["old"], h["new"]) for h in fu] == [(None, "2020-03-01"), ("2020-03-01", "2020-02-01")]
    center = field_history(reg, "P1", "center")
    assert [(h["old"], h["new"], h["reason"]) for h in center] == [(None, "A", "import p.csv"), ("A", "B", "transferred")]
    assert [(h["old"], h["new"]) for h in field_history(reg, "P1", "mrn")] == [(None, "M-1")]
    with pytest.raises(UserError, match="unknown variable 'shoe_size'"):
        field_history(reg, "P1", "shoe_size")
    add_variable(reg, name="ecog", type="integer", label="ECOG", min_value=0, max_value=5)
    edit_value(reg, "P1", "ecog", "1", user="erin", reason="clinic letter")
    edit_value(reg, "P2", "ecog", "3")
    edit_value(reg, "P1", "ecog", "2", reason="re-assessed")
    edit_value(reg, "P1", "ecog", "", reason="not assessed after all")
    assert [(h["action"], h["old"], h["new"], h["reason"]) for h in field_history(reg, "P1", "ecog")] == [
        ("insert", None, "1", "clinic letter"), ("update", "1", "2", "re-assessed"),
        ("delete", "2", None, "not assessed after all")]


def test_live_derivation_equals_the_cohort_functions(two_patients):
    """The form's OS/RFS/stage/inclusion equal the analysis table for stored values, and the
    endpoints computed directly for changed ones."""
    reg = two_patients
    add_visit(reg, "P2", {"visit_date": "2019-03-01", "vital_status": "alive", "recurrence": "no"})
    with reg.session() as s:
        rows = {r["study_id"]: r for r in build_rows(s)[0]}
    for sid in ("P1", "P2"):
        record = load_patient_record(reg, sid)
        live = derive_from_values(sid, record["values"], record["codebook"], visits=record["visits"],
                                  slide_qc=record["slide_qc"])
        row = rows[sid]
        assert (round(live.os_months, 4), live.os_event, round(live.rfs_months, 4), live.rfs_event) == \
            (row["os_months"], row["os_event"], row["rfs_months"], row["rfs_event"])
        assert (live.stage, live.stage_group, live.included, live.exclusion_reason) == \
            (row["tnm_stage"], row["tnm_group"], row["included"], row["exclusion_reason"])
    record = load_patient_record(reg, "P2")
    values = dict(record["values"], last_followup_date=dt.date(2021, 6, 30), t_stage="T4",
                  neoadjuvant_therapy=True)
    live = derive_from_values("P2", values, record["codebook"], visits=record["visits"])
    direct = derive_endpoints("P2", dt.date(2018, 1, 10), summarise([
        Visit(dt.date(2021, 6, 30), "alive", False), Visit(dt.date(2019, 3, 1), "alive", False)]))
    assert live.os_months == direct.os_months == (dt.date(2021, 6, 30) - dt.date(2018, 1, 10)).days / 30.4375
    assert (live.os_event, live.rfs_event, live.stage, live.included, live.exclusion_reason) == \
        (0, 0, "III", False, "neoadjuvant therapy")
    assert "name" not in record["values"]
    assert load_patient_record(reg, "P1", include_identifiers=True)["values"]["name"] == "Ann Example"
