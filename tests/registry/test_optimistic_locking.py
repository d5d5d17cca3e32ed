"""Optimistic locking of patient records: a save from an older version is a conflict that
shows both values, never a silent overwrite; 8 concurrent writers lose no update."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.models import AuditEvent
from pathomics_desktop.registry.service import (
    EditConflict,
    add_visit,
    edit_values,
    load_patient_record,
)
from tests.registry.helpers import patient, write_csv


@pytest.fixture
def one_patient(registry, tmp_path):
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1", age=40)]))
    return registry


def test_every_change_of_the_record_bumps_its_version(one_patient):
    registry = one_patient
    v0 = load_patient_record(registry, "P1")["version"]
    edit_values(registry, "P1", {"age": 41}, user="ann")
    v1 = load_patient_record(registry, "P1")["version"]
    assert v1 > v0
    edit_values(registry, "P1", {"t_stage": "T3"}, user="ann")  # a pathology row, not the patient row
    v2 = load_patient_record(registry, "P1")["version"]
    assert v2 > v1
    add_visit(registry, "P1", {"visit_date": "2019-06-01", "vital_status": "alive"}, user="ann")
    assert load_patient_record(registry, "P1")["version"] > v2


def test_second_save_from_an_old_version_is_a_conflict_showing_both_values(one_patient):
    registry = one_patient
    loaded = load_patient_record(registry, "P1")
    base = {"age": loaded["values"]["age"], "t_stage": loaded["values"]["t_stage"]}
    # Ann saves first
    edit_values(registry, "P1", {"age": 45}, user="ann", expected_version=loaded["version"], base_values=base)
    # Bob saved from the same loaded version: refused, nothing written
    with pytest.raises(EditConflict) as caught:
        edit_values(registry, "P1", {"age": 50, "t_stage": "T3"}, user="bob",
                    expected_version=loaded["version"], base_values=base)
    conflict = caught.value
    fields = {f["variable"]: f for f in conflict.fields}
    assert fields["age"] == {"variable": "age", "label": fields["age"]["label"], "base": 40, "mine": 50,
                             "theirs": 45, "conflict": True}
    assert fields["t_stage"]["conflict"] is False and fields["t_stage"]["theirs"] == "T2"
    assert conflict.changed_by == "ann" and conflict.current_version > loaded["version"]
    assert "yours 50, theirs 45" in str(conflict)
    now = load_patient_record(registry, "P1")
    assert now["values"]["age"] == 45 and now["values"]["t_stage"] == "T2"
    # saving against the current version (Bob chose "keep mine") goes through
    edit_values(registry, "P1", {"age": 50, "t_stage": "T3"}, user="bob",
                expected_version=conflict.current_version, base_values={"age": 45, "t_stage": "T2"})
    assert load_patient_record(registry, "P1")["values"]["age"] == 50


def test_eight_concurrent_writers_lose_no_update(one_patient):
    """Each writer adds 1 to age five times (read, then save against the version read),
    retrying on every conflict; the final age counts every increment exactly once."""
    registry = one_patient
    writers, increments = 8, 5
    conflicts = [0] * writers
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            done = 0
            while done < increments:
                record = load_patient_record(registry, "P1")
                age = record["values"]["age"]
                try:
                    edit_values(registry, "P1", {"age": age + 1}, user=f"w{index}",
                                expected_version=record["version"], base_values={"age": age})
                except EditConflict as exc:
                    assert exc.fields[0]["theirs"] > age  # shows the value another writer saved
                    conflicts[index] += 1
                    continue
                done += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert load_patient_record(registry, "P1")["values"]["age"] == 40 + writers * increments
    with registry.session() as s:
        updates = s.scalar(select(func.count()).select_from(AuditEvent)
                           .where(AuditEvent.field == "age", AuditEvent.action == "update"))
    assert updates == writers * increments  # one audited update per successful save
    assert sum(conflicts) > 0  # they did collide, and every collision was reported
