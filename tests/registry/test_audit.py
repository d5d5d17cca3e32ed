"""Audit trail: inserts, updates, deletes, locking and the `pathomics audit` command."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.models import AuditEvent
from pathomics_desktop.registry.service import (
    audit_history,
    delete_patient,
    edit_value,
    set_lock,
)
from tests.registry.helpers import patient, write_csv


def test_insert_update_delete_are_audited(registry, tmp_path):
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1", name="Ann Example", mrn="M-1")]))
    old, new = edit_value(registry, "P1", "t_stage", "t3", user="alice", reason="slide review")
    assert (old, new) == ("T2", "T3")
    events = audit_history(registry, "P1")
    inserts = {e.table_name for e in events if e.action == "insert"}
    assert {"patients", "surgeries", "pathology", "lab_results", "followup_visits",
            "patient_identifiers", "treatments", "comorbidities"} <= inserts
    update = [e for e in events if e.action == "update"]
    assert len(update) == 1
    u = update[0]
    assert (u.user, u.table_name, u.field, u.old_value, u.new_value, u.reason) == \
        ("alice", "pathology", "t_stage", "T2", "T3", "slide review")
    assert u.at is not None
    with pytest.raises(UserError, match="needs a reason"):
        delete_patient(registry, "P1")
    delete_patient(registry, "P1", reason="withdrew consent")
    events = audit_history(registry, "P1")
    deletes = [e for e in events if e.action == "delete"]
    assert {e.table_name for e in deletes} >= {"patients", "pathology", "surgeries"}
    assert json.loads(next(e for e in deletes if e.table_name == "patients").old_value)["study_id"] == "P1"


def test_edit_is_validated_by_the_codebook(registry, tmp_path):
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1")]))
    with pytest.raises(UserError, match="not a code"):
        edit_value(registry, "P1", "n_stage", "N7")
    with pytest.raises(UserError, match="unknown variable"):
        edit_value(registry, "P1", "shoe_size", "42")
    with pytest.raises(UserError, match="not found"):
        edit_value(registry, "NOPE", "age", "42")


def test_locked_record_needs_a_reason(registry, tmp_path):
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1")]))
    set_lock(registry, "P1", True)
    with pytest.raises(UserError, match="locked"):
        edit_value(registry, "P1", "age", "70")
    with pytest.raises(UserError, match="locked"):
        set_lock(registry, "P1", False)
    edit_value(registry, "P1", "age", "70", reason="typo in CRF")
    set_lock(registry, "P1", False, reason="re-opened for review")
    edit_value(registry, "P1", "age", "71")
    with registry.session() as s:
        reasons = [e.reason for e in s.scalars(select(AuditEvent).where(AuditEvent.field == "age"))]
    assert reasons == ["typo in CRF", None]


def test_audit_cli(project, registry, tmp_path, capsys):
    from pathomics_desktop.cli import main

    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1")]))
    edit_value(registry, "P1", "age", "70", user="bob", reason="chart")
    assert main(["audit", "P1", "--project", str(project.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[-1]["field"] == "age" and rows[-1]["old"] == "64" and rows[-1]["new"] == "70"
    assert rows[-1]["user"] == "bob" and rows[-1]["reason"] == "chart" and rows[-1]["at"].endswith("Z")
    assert main(["audit", "P1", "--project", str(project.root)]) == 0
    assert "pathology" in capsys.readouterr().out


def test_bulk_and_orm_inserts_write_the_same_audit_record(registry, tmp_path):
    """A patient created by the bulk import and one created through the ORM session carry
    audit insert rows with the same fields."""
    from pathomics_desktop.registry.models import Center, Patient, Surgery

    import_file(registry, write_csv(tmp_path / "p.csv", [patient("BULK1")]))
    with registry.session(reason="orm") as s:
        center = s.scalars(select(Center).where(Center.code == "A")).one()
        p = Patient(study_id="ORM1", center=center, sex="male", age=64)
        p.surgery = Surgery(surgery_date=None, surgery_type="PD")
        s.add(p)
    with registry.session() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.action == "insert",
                                                  AuditEvent.table_name.in_(("patients", "surgeries")))).all()
    by = {}
    for e in rows:
        by.setdefault(e.table_name, []).append(json.loads(e.new_value))
    for table in ("patients", "surgeries"):
        bulk, orm = by[table]
        assert set(bulk) == set(orm)
    bulk_p = next(r for r in by["patients"] if r["study_id"] == "BULK1")
    assert bulk_p["sex"] == "male" and bulk_p["age"] == "64" and bulk_p["locked"] == "false"
    assert all(e.patient_id is not None for e in rows)
