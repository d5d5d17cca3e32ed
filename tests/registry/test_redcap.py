"""REDCap in one step: a raw longitudinal export + its data dictionary -> patients and visits.

The SYNTHETIC example under ``resources/redcap/`` has 4 records (11 rows, shuffled): baseline
rows with numeric codes and a checkbox, repeating ``follow_up`` instances, ``*_complete``
columns, and a field (``ecog``) that matches no codebook variable.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

import pytest
from sqlalchemy import select

from pathomics_desktop.registry.codebook import Codebook
from pathomics_desktop.registry.importer import ColumnMapping
from pathomics_desktop.registry.models import FollowUpVisit, Patient
from pathomics_desktop.registry.records import patient_query, patient_values
from pathomics_desktop.registry.redcap import (
    import_redcap,
    parse_choices,
    plan_redcap,
    read_dictionary,
)
from tests.registry.helpers import table_counts

REDCAP = Path(__file__).resolve().parents[2] / "resources" / "redcap"
EXPORT = REDCAP / "SYNTHETIC_pdac_export.csv"
DICTIONARY = REDCAP / "SYNTHETIC_pdac_DataDictionary.csv"
D = dt.date

#: what the export says, decoded by hand from the dictionary's choices
EXPECTED = {
    "SYN-RC01": dict(center="SYN-A", mrn="SYN-MRN-0001", sex="male", age=64, surgery_date=D(2018, 3, 12),
                     surgery_type="PD", margin="R0", differentiation="I-II", t_stage="T2", n_stage="N1",
                     m_stage="M0", microvascular_invasion=False, perineural_invasion=True, ca19_9=152.5,
                     neoadjuvant_therapy=False, adjuvant_chemotherapy=True, diabetes=True,
                     hypertension=False, concurrent_malignancy=False,
                     last_followup_date=D(2019, 11, 2), vital_status="dead", death_date=D(2019, 11, 2),
                     recurrence=True, recurrence_date=D(2019, 2, 20)),
    "SYN-RC02": dict(center="SYN-B", mrn="SYN-MRN-0002", sex="female", age=71, surgery_date=D(2019, 6, 3),
                     surgery_type="DP", margin="R1", differentiation="III", t_stage="T3", n_stage="N0",
                     m_stage="M0", microvascular_invasion=True, perineural_invasion=True, ca19_9=48.0,
                     neoadjuvant_therapy=False, adjuvant_chemotherapy=True, diabetes=False,
                     hypertension=True, concurrent_malignancy=False,
                     last_followup_date=D(2021, 1, 11), vital_status="alive", death_date=None,
                     recurrence=False, recurrence_date=None),
    "SYN-RC03": dict(center="SYN-A", mrn="SYN-MRN-0003", sex="male", age=58, surgery_date=D(2020, 1, 20),
                     surgery_type="PD", margin="R0", differentiation="I-II", t_stage="T1", n_stage="N0",
                     m_stage="M0", microvascular_invasion=False, perineural_invasion=False, ca19_9=12.0,
                     neoadjuvant_therapy=False, adjuvant_chemotherapy=False, diabetes=False,
                     hypertension=False, concurrent_malignancy=False,
                     last_followup_date=D(2020, 7, 20), vital_status="alive", death_date=None,
                     recurrence=True, recurrence_date=D(2020, 7, 1)),
    "SYN-RC04": dict(center="SYN-C", mrn="SYN-MRN-0004", sex="female", age=66, surgery_date=D(2018, 11, 5),
                     surgery_type="TP", margin="R0", differentiation="I-II", t_stage="T2", n_stage="N2",
                     m_stage="M0", microvascular_invasion=True, perineural_invasion=True, ca19_9=890.0,
                     neoadjuvant_therapy=False, adjuvant_chemotherapy=True, diabetes=True,
                     hypertension=True, concurrent_malignancy=False,
                     last_followup_date=None, vital_status=None, death_date=None,
                     recurrence=None, recurrence_date=None),
}
VISITS = {  # (visit date, vital status, recurrence, recurrence date, death date)
    "SYN-RC01": [(D(2018, 9, 10), "alive", False, None, None),
                 (D(2019, 3, 4), "alive", True, D(2019, 2, 20), None),
                 (D(2019, 11, 2), "dead", True, D(2019, 2, 20), D(2019, 11, 2))],
    "SYN-RC02": [(D(2019, 12, 2), "alive", False, None, None), (D(2020, 6, 15), "alive", False, None, None),
                 (D(2021, 1, 11), "alive", False, None, None)],
    "SYN-RC03": [(D(2020, 7, 20), "alive", True, D(2020, 7, 1), None)],
    "SYN-RC04": [],
}


def shuffled_copy(path: Path, out: Path, seed: int, edit=None) -> Path:
    """The export with its data rows in another order (``edit(row)`` may change a row)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    random.Random(seed).shuffle(rows)
    if edit is not None:
        for row in rows:
            edit(row)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return out


def stored(registry) -> tuple[dict, dict]:
    with registry.session() as s:
        book = Codebook.for_session(s)
        patients = list(s.scalars(patient_query().order_by(Patient.study_id)))
        values = {p.study_id: patient_values(p, book, include_identifiers=True) for p in patients}
        visits = {p.study_id: sorted((v.visit_date, v.vital_status, v.recurrence, v.recurrence_date, v.death_date)
                                     for v in p.followups if v.source == "visit") for p in patients}
    return values, visits


def test_parse_choices_reads_redcap_syntax():
    assert parse_choices("1, Female | 2, Male") == {"1": "Female", "2": "Male"}
    assert parse_choices(" 0,R0|1 , R1, with margin ") == {"0": "R0", "1": "R1, with margin"}
    assert parse_choices("") == {}


@pytest.mark.parametrize("seed", [1, 2])
def test_longitudinal_export_imports_patients_visits_and_derived_followup(registry, tmp_path, seed):
    export = shuffled_copy(EXPORT, tmp_path / "export.csv", seed)
    report = import_redcap(registry, export, DICTIONARY, development_center="SYN-A")
    assert report.errors == [], report.errors
    assert report.committed and report.kind == "redcap"
    assert (report.created, report.updated, report.visits_created) == (4, 0, 7)
    assert [(w.column, w.row) for w in report.warnings] == [("ecog", 1)]  # proposed, not imported
    values, visits = stored(registry)
    for sid, expected in EXPECTED.items():
        got = {k: values[sid][k] for k in expected}
        assert got == expected, sid
    assert visits == VISITS
    # the cohort's endpoints come out of the derived summary: OS = surgery -> death / last contact
    from pathomics_desktop.cohort.table import build_rows

    with registry.session() as s:
        rows = {r["study_id"]: r for r in build_rows(s)[0]}
    rc01 = rows["SYN-RC01"]
    assert (rc01["os_event"], rc01["rfs_event"]) == (1, 1)
    assert rc01["os_months"] == pytest.approx((D(2019, 11, 2) - D(2018, 3, 12)).days / 30.4375, abs=1e-4)
    assert rc01["rfs_months"] == pytest.approx((D(2019, 2, 20) - D(2018, 3, 12)).days / 30.4375, abs=1e-4)
    assert rows["SYN-RC02"]["os_months"] == pytest.approx((D(2021, 1, 11) - D(2019, 6, 3)).days / 30.4375,
                                                          abs=1e-4)
    assert rows["SYN-RC04"]["exclusion_reason"] == "incomplete required data"  # no follow-up yet
    # importing the same export again changes nothing
    again = import_redcap(registry, export, DICTIONARY)
    assert again.errors == [] and (again.created, again.updated, again.unchanged) == (0, 0, 4)
    assert (again.visits_created, again.visits_unchanged, again.changed_fields) == (0, 7, 0)


def test_new_visit_on_existing_patient_updates_the_derived_summary(registry, tmp_path):
    assert import_redcap(registry, EXPORT, DICTIONARY).committed
    later = tmp_path / "later.csv"
    later.write_text("record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,visit_date,"
                     "vital_status,recurrence,recurrence_date,death_date,follow_up_complete\n"
                     "SYN-RC04,follow_up_arm_1,follow_up,1,2019-05-06,0,1,2019-04-01,,2\n"
                     "SYN-RC04,follow_up_arm_1,follow_up,2,2019-09-30,1,1,2019-04-01,2019-09-30,2\n")
    report = import_redcap(registry, later, DICTIONARY)
    assert report.errors == [] and (report.visits_created, report.created) == (2, 0)
    assert report.changed_fields == 5  # the five summary fields of SYN-RC04
    values, visits = stored(registry)
    assert {k: values["SYN-RC04"][k] for k in ("last_followup_date", "vital_status", "death_date",
                                               "recurrence", "recurrence_date")} == {
        "last_followup_date": D(2019, 9, 30), "vital_status": "dead", "death_date": D(2019, 9, 30),
        "recurrence": True, "recurrence_date": D(2019, 4, 1)}
    assert len(visits["SYN-RC04"]) == 2


def test_dictionary_decodes_choices_through_labels_and_synonyms(tmp_path):
    dictionary = read_dictionary(DICTIONARY)
    assert dictionary.record_id == "record_id" and dictionary.fields["mrn"].identifier
    with open(EXPORT, newline="", encoding="utf-8") as fh:
        columns = next(csv.reader(fh))
    plan = plan_redcap(dictionary, Codebook.builtin(), columns, export_name=EXPORT.name)
    m = plan.mapping
    assert m.values["sex"] == {"1": "female", "2": "male"}
    assert m.values["differentiation"] == {"1": "I-II", "2": "I-II", "3": "III"}  # well/moderate/poor
    assert m.values["surgery_type"] == {"1": "PD", "2": "DP", "3": "TP"}          # whipple = PD
    assert m.values["vital_status"] == {"0": "alive", "1": "dead"}
    assert m.values["center"] == {"1": "SYN-A", "2": "SYN-B", "3": "SYN-C"}       # text: the label
    assert m.values["perineural_invasion"] == {"1": "yes", "0": "no"}             # implicit yes/no
    assert {c: m.columns[c] for c in ("record_id", "comorbidities___1", "comorbidities___2",
                                      "comorbidities___3", "visit_date")} == {
        "record_id": "study_id", "comorbidities___1": "diabetes", "comorbidities___2": "hypertension",
        "comorbidities___3": "concurrent_malignancy", "visit_date": "visit_date"}
    assert {"redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance", "baseline_complete",
            "follow_up_complete", "ecog"} <= set(m.ignore)
    assert plan.visit_forms == {"follow_up"}
    assert [(p.name, p.type, p.codes) for p in plan.proposed] == [
        ("ecog", "category", {"0": ["0", "0 - fully active"], "1": ["1", "1 - restricted activity"],
                              "2": ["2", "2 - ambulatory and capable of self-care"]})]
    # a differently named field maps by its label; labels go through the codebook's synonyms
    other = tmp_path / "dd.csv"
    other.write_text('"Variable / Field Name","Form Name","Field Type","Field Label",'
                     '"Choices, Calculations, OR Slider Labels"\n'
                     'pid,base,text,Patient,\n'
                     'gender,base,radio,Sex,"1, Woman | 2, Man | 3, Other"\n'
                     'grade,base,dropdown,Tumour grade,"1, G1 | 2, G2 | 3, G3"\n')
    plan = plan_redcap(read_dictionary(other), Codebook.builtin(), ["pid", "gender", "grade"],
                       mapping=ColumnMapping(columns={"grade": "differentiation"}))
    assert plan.mapping.columns == {"pid": "study_id", "gender": "sex", "grade": "differentiation"}
    assert plan.mapping.values["sex"] == {"1": "female", "2": "male"}
    assert plan.mapping.values["differentiation"] == {"1": "I-II", "2": "I-II", "3": "III"}
    undecoded = [i for i in plan.issues if i.column == "gender"]
    assert len(undecoded) == 1 and "choice 3 ('Other')" in undecoded[0].message


def test_proposed_variable_once_added_is_imported(registry, tmp_path):
    from pathomics_desktop.registry.service import add_variable

    with registry.session() as s:
        book = Codebook.for_session(s)
    with open(EXPORT, newline="", encoding="utf-8") as fh:
        columns = next(csv.reader(fh))
    (ecog,) = plan_redcap(read_dictionary(DICTIONARY), book, columns).proposed
    add_variable(registry, name=ecog.name, type=ecog.type, label=ecog.label, codes=ecog.codes)
    report = import_redcap(registry, EXPORT, DICTIONARY)
    assert report.errors == [] and report.warnings == []
    values, _ = stored(registry)
    assert {sid: v["ecog"] for sid, v in values.items()} == {"SYN-RC01": "0", "SYN-RC02": "1",
                                                             "SYN-RC03": "0", "SYN-RC04": "2"}


def test_a_bad_visit_row_writes_nothing_and_names_row_field_and_value(registry, tmp_path):
    before = table_counts(registry)
    report = import_redcap(registry, REDCAP / "SYNTHETIC_pdac_export_with_errors.csv", DICTIONARY)
    assert not report.committed
    assert [(i.file, i.row, i.column, i.value) for i in report.errors] == [
        ("SYNTHETIC_pdac_export_with_errors.csv", 3, "vital_status", "7")]
    assert report.errors[0].message == ("'7' is not a choice of REDCap field vital_status "
                                        "(choices: 0 = Alive, 1 = Dead)")
    assert ("SYNTHETIC_pdac_export_with_errors.csv", 5, "age", "97") in [
        (i.file, i.row, i.column, i.value) for i in report.warnings]
    assert table_counts(registry) == before

    # a visit after the death recorded on another visit: found while writing, rolled back
    def after_death(row):
        if row["record_id"] == "SYN-RC01" and row["redcap_repeat_instance"] == "1":
            row["visit_date"] = "2020-01-15"
    export = shuffled_copy(EXPORT, tmp_path / "late.csv", 3, edit=after_death)
    report = import_redcap(registry, export, DICTIONARY)
    assert not report.committed and table_counts(registry) == before
    (error,) = report.errors
    assert "patient SYN-RC01" in error.message and "after death" in error.message
    with open(export, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert error.row is not None and rows[error.row - 2]["record_id"] == "SYN-RC01"


def test_conflicting_baseline_rows_and_a_coded_mapping_override(registry, tmp_path):
    def conflict(row):
        if row["record_id"] == "SYN-RC02" and row["redcap_repeat_instance"] == "1":
            row.update(redcap_repeat_instrument="", redcap_event_name="baseline_arm_1", age="72",
                       visit_date="", vital_status="", recurrence="")
    export = shuffled_copy(EXPORT, tmp_path / "dup.csv", 4, edit=conflict)
    report = import_redcap(registry, export, DICTIONARY)
    (error,) = report.errors
    with open(export, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    baseline = [i + 2 for i, r in enumerate(rows) if r["record_id"] == "SYN-RC02" and r["age"]]
    assert (error.row, error.column) == (max(baseline), "age")  # the later of the two rows
    assert error.value == rows[error.row - 2]["age"] and {r["age"] for r in rows if r["age"] and
                                                         r["record_id"] == "SYN-RC02"} == {"71", "72"}
    assert "record SYN-RC02: age is" in error.message and f"in row {min(baseline)}" in error.message
    assert table_counts(registry)["patients"] == 0
    # --mapping wins over the proposal: here the centre codes are recoded by hand
    override = ColumnMapping(name="sites", values={"center": {"1": "A", "2": "B", "3": "C"}})
    report = import_redcap(registry, EXPORT, DICTIONARY, mapping=override, development_center="A")
    assert report.committed, report.errors
    with registry.session() as s:
        centers = dict(s.execute(select(Patient.study_id, Patient.center_id)).all())
        from pathomics_desktop.registry.models import Center

        codes = dict(s.execute(select(Center.id, Center.code)).all())
        assert {sid: codes[c] for sid, c in centers.items()} == {
            "SYN-RC01": "A", "SYN-RC02": "B", "SYN-RC03": "A", "SYN-RC04": "C"}
        assert s.scalar(select(FollowUpVisit.id).where(FollowUpVisit.source == "visit").limit(1)) is not None


def test_cli_import_redcap_dry_run_then_import(tmp_path, capsys, monkeypatch):
    from pathomics_desktop.cli import main

    root = tmp_path / "study"
    assert main(["init", str(root), "--development-center", "SYN-A"]) == 0
    monkeypatch.setenv("PATHOMICS_PROJECT", str(root))
    capsys.readouterr()
    assert main(["import", str(EXPORT), "--redcap-dictionary", str(DICTIONARY), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("SYNTHETIC_pdac_export.csv: 11 redcap rows; 0 errors, 1 warnings. 4 created, 0 updated (0 fields), "
            "0 unchanged; follow-up visits: 7 created, 0 updated, 0 unchanged would be written "
            "(dry run: nothing was written).") in out
    assert "column ecog: matches no codebook variable" in out and "pathomics variables add ecog" in out
    bad = REDCAP / "SYNTHETIC_pdac_export_with_errors.csv"
    assert main(["import", str(bad), "--redcap-dictionary", str(DICTIONARY), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert ("ERROR: SYNTHETIC_pdac_export_with_errors.csv, row 3, column vital_status (value '7'): "
            "'7' is not a choice of REDCap field vital_status (choices: 0 = Alive, 1 = Dead)") in out
    assert "1 errors, 2 warnings. Nothing was written." in out
    assert main(["import", str(EXPORT), "--redcap-dictionary", str(DICTIONARY),
                 "--save-mapping", "redcap-pdac"]) == 0
    assert "4 created" in capsys.readouterr().out
    saved = ColumnMapping.load(root / "mappings" / "redcap-pdac.json")
    assert saved.columns["comorbidities___2"] == "hypertension" and saved.values["sex"]["2"] == "male"
    assert main(["import", str(EXPORT), "--redcap-dictionary", str(DICTIONARY), "--mapping", "redcap-pdac",
                 "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert (report["created"], report["unchanged"], report["visits_unchanged"], report["errors"]) == (0, 4, 7, 0)
