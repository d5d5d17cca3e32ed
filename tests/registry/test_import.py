"""Validated import: every error with file, row, column and value; all-or-nothing writes."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from pathomics_desktop.registry.importer import ColumnMapping, import_file
from pathomics_desktop.registry.models import AuditEvent, FollowUpVisit, Patient
from tests.registry.helpers import patient, table_counts, write_csv


def test_valid_import_creates_patients_with_all_tables(registry, tmp_path):
    f = write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2", center="B", sex="F",
                                                                recurrence="no", recurrence_date="",
                                                                vital_status="alive", death_date="")])
    report = import_file(registry, f, development_center="A")
    assert report.errors == [] and report.committed
    assert report.created == 2
    with registry.session() as s:
        p1 = s.scalars(select(Patient).where(Patient.study_id == "P1")).one()
        assert p1.center.code == "A" and p1.center.role == "development"
        assert p1.sex == "male" and p1.age == 64
        assert p1.surgery.surgery_date == dt.date(2018, 1, 10) and p1.surgery.surgery_type == "PD"
        assert p1.pathology.t_stage == "T2" and p1.pathology.perineural_invasion is True
        assert p1.treatment.adjuvant_chemotherapy is True and p1.comorbidity.hypertension is True
        assert [(l.test, l.value, l.unit) for l in p1.labs] == [("ca19_9", 150.0, "U/mL")]
        assert p1.followups[0].vital_status == "dead" and p1.followups[0].death_date == dt.date(2020, 3, 1)
        p2 = s.scalars(select(Patient).where(Patient.study_id == "P2")).one()
        assert p2.center.role == "external" and p2.sex == "female"


def test_dry_run_reports_and_writes_nothing(registry, tmp_path):
    f = write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2")])
    before = table_counts(registry)
    report = import_file(registry, f, dry_run=True)
    assert report.errors == [] and report.created == 2 and not report.committed
    assert table_counts(registry) == before


def test_every_error_is_reported_with_file_row_column_value(registry, tmp_path):
    rows = [patient("P1"),
            patient("P2", age="abc", sex="x", surgery_date="2018-02-30"),
            patient("P1"),  # duplicate study id
            patient("P4", t_stage="T9", ca19_9="-5", surgery_type="whipple")]
    f = write_csv(tmp_path / "bad.csv", rows)
    before = table_counts(registry)
    report = import_file(registry, f)
    got = {(i.row, i.column) for i in report.errors}
    assert {(3, "age"), (3, "sex"), (3, "surgery_date"), (4, "study_id"), (5, "t_stage"),
            (5, "ca19_9")} <= got
    assert all(i.file == "bad.csv" for i in report.errors)
    age = next(i for i in report.errors if i.column == "age")
    assert age.value == "abc" and "not a number" in age.message
    assert "bad.csv, row 3, column age (value 'abc')" in str(age)
    # the synonym 'whipple' is accepted for PD
    assert (5, "surgery_type") not in got
    assert table_counts(registry) == before and not report.committed


def test_unknown_columns_and_missing_study_id(registry, tmp_path):
    f = write_csv(tmp_path / "u.csv", [{"patient": "P1", "center": "A", "colour": "red"}])
    report = import_file(registry, f)
    columns = {i.column for i in report.errors}
    assert {"patient", "colour", "study_id"} <= columns
    assert any("unknown column" in i.message for i in report.errors)


@pytest.mark.parametrize("content,expected", [
    (b"", "empty"),
    (b"\x00\x01\x02binary\x00garbage", "binary"),
    (b"study_id,center\n", "no data rows"),
])
def test_not_a_spreadsheet_or_empty(registry, tmp_path, content, expected):
    f = tmp_path / "x.csv"
    f.write_bytes(content)
    report = import_file(registry, f)
    assert report.errors and expected in report.errors[0].message
    fake_xlsx = tmp_path / "x.xlsx"
    fake_xlsx.write_text("this is not a workbook")
    report = import_file(registry, fake_xlsx)
    assert report.errors and "not an Excel workbook" in report.errors[0].message
    report = import_file(registry, tmp_path / "data.pdf")
    assert report.errors


def test_xlsx_import_with_excel_dates_and_numbers(registry, tmp_path):
    import pandas as pd

    row = patient("X1")
    frame = pd.DataFrame([row])
    frame["age"] = 71
    frame["surgery_date"] = pd.Timestamp("2017-05-06")
    frame["ca19_9"] = 37.5
    path = tmp_path / "p.xlsx"
    frame.to_excel(path, index=False)
    report = import_file(registry, path)
    assert report.errors == [], report.errors
    with registry.session() as s:
        p = s.scalars(select(Patient).where(Patient.study_id == "X1")).one()
        assert p.age == 71 and p.surgery.surgery_date == dt.date(2017, 5, 6)


def test_reimport_updates_by_study_id_and_audits_each_changed_field(registry, tmp_path):
    import_file(registry, write_csv(tmp_path / "a.csv", [patient("P1"), patient("P2")]))
    changed = [patient("P1", age="65", ca19_9="300"), patient("P2")]
    report = import_file(registry, write_csv(tmp_path / "b.csv", changed), reason="corrected from chart")
    assert report.errors == [] and report.updated == 1 and report.unchanged == 1
    assert report.changed_fields == 2
    with registry.session() as s:
        updates = s.scalars(select(AuditEvent).where(AuditEvent.action == "update")).all()
        fields = {(e.table_name, e.field, e.old_value, e.new_value) for e in updates}
        assert ("patients", "age", "64", "65") in fields
        assert ("lab_results", "value", "150.0", "300.0") in fields
        assert all(e.reason == "import b.csv: corrected from chart" for e in updates)
        assert all(e.user == "tester" for e in updates)


def test_partial_columns_only_touch_those_columns(registry, tmp_path):
    import_file(registry, write_csv(tmp_path / "a.csv", [patient("P1")]))
    report = import_file(registry, write_csv(tmp_path / "b.csv", [{"study_id": "P1", "age": "70"}]))
    assert report.errors == [] and report.updated == 1
    with registry.session() as s:
        p = s.scalars(select(Patient).where(Patient.study_id == "P1")).one()
        assert p.age == 70 and p.pathology.t_stage == "T2"


def test_new_patient_without_center_is_an_error(registry, tmp_path):
    report = import_file(registry, write_csv(tmp_path / "b.csv", [{"study_id": "NEW", "age": "70"}]))
    assert any(i.column == "center" for i in report.errors)
    assert table_counts(registry)["patients"] == 0


@pytest.mark.parametrize("overrides,column,text", [
    (dict(death_date="2017-12-01", last_followup_date="2017-12-01", recurrence_date="2017-11-01"),
     "death_date", "before surgery"),
    (dict(recurrence_date="2017-01-01"), "recurrence_date", "before surgery"),
    (dict(vital_status="alive", death_date="", recurrence="no", recurrence_date="",
          last_followup_date="2017-06-01"), "last_followup_date", "before surgery"),
    (dict(recurrence_date="2020-06-01"), "recurrence_date", "after death"),
    (dict(last_followup_date="2021-01-01"), "last_followup_date", "after death"),
    (dict(death_date=""), "death_date", "no death date"),
])
def test_inconsistent_followup_names_the_patient(registry, tmp_path, overrides, column, text):
    report = import_file(registry, write_csv(tmp_path / "f.csv", [patient("BAD7", **overrides)]))
    messages = [i for i in report.errors if text in i.message]
    assert messages, report.errors
    assert "patient BAD7" in messages[0].message and messages[0].column == column
    assert table_counts(registry)["patients"] == 0


def test_followup_long_file_adds_visits_and_checks_consistency(registry, tmp_path):
    import_file(registry, write_csv(tmp_path / "a.csv", [patient("P1")]))
    visits = [{"study_id": "P1", "visit_date": "2018-06-01", "vital_status": "alive", "recurrence": "no"},
              {"study_id": "P1", "visit_date": "2018-12-01", "vital_status": "alive", "recurrence": "no"}]
    report = import_file(registry, write_csv(tmp_path / "v.csv", visits))
    assert report.kind == "followup" and report.errors == [] and report.created == 2
    bad = [{"study_id": "P1", "visit_date": "2021-01-01", "vital_status": "alive"},
           {"study_id": "NOPE", "visit_date": "2019-01-01", "vital_status": "alive"}]
    report = import_file(registry, write_csv(tmp_path / "w.csv", bad))
    msgs = " | ".join(i.message for i in report.errors)
    assert "unknown patient" in msgs
    with registry.session() as s:
        assert s.scalars(select(FollowUpVisit).where(FollowUpVisit.source == "visit")).all().__len__() == 2
    # a visit after death is refused, naming the patient
    report = import_file(registry, write_csv(tmp_path / "x.csv", bad[:1]))
    assert any("patient P1" in i.message and "after death" in i.message for i in report.errors)


def test_soft_limits_warn_and_accept(registry, tmp_path):
    report = import_file(registry, write_csv(tmp_path / "s.csv", [patient("P1", age="99", ca19_9="50000")]))
    assert report.errors == [] and report.committed
    assert {i.column for i in report.warnings} >= {"age", "ca19_9"}


def test_hard_limit_rejects(registry, tmp_path):
    report = import_file(registry, write_csv(tmp_path / "s.csv", [patient("P1", age="130")]))
    assert any(i.column == "age" and "upper limit" in i.message for i in report.errors)


def test_locked_patient_needs_reason_on_reimport(registry, tmp_path):
    from pathomics_desktop.registry.service import set_lock

    import_file(registry, write_csv(tmp_path / "a.csv", [patient("P1")]))
    set_lock(registry, "P1", True)
    report = import_file(registry, write_csv(tmp_path / "b.csv", [patient("P1", age="66")]))
    assert any("locked" in i.message for i in report.errors)
    report = import_file(registry, write_csv(tmp_path / "b.csv", [patient("P1", age="66")]),
                         reason="pathology review")
    assert report.errors == [] and report.updated == 1


def test_redcap_mapping_is_saved_and_reused(registry, tmp_path):
    mapping = ColumnMapping(name="redcap", columns={"record_id": "study_id", "site": "center",
                                                   "gender": "sex", "age_at_op": "age"},
                            values={"sex": {"1": "female", "2": "male"}},
                            ignore=["redcap_event_name", "baseline_complete"])
    saved = mapping.save(tmp_path / "mappings" / "redcap.json")
    loaded = ColumnMapping.load(saved)
    assert loaded == mapping
    row = patient("R1")
    for src, dst in mapping.columns.items():
        row[src] = row.pop(dst)
    row["gender"] = "1"
    row["redcap_event_name"] = "baseline_arm_1"
    row["baseline_complete"] = "2"
    report = import_file(registry, write_csv(tmp_path / "redcap.csv", [row]), mapping=loaded)
    assert report.errors == [], report.errors
    with registry.session() as s:
        assert s.scalars(select(Patient.sex).where(Patient.study_id == "R1")).one() == "female"
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(Exception, match="broken.json"):
        ColumnMapping.load(bad)


def test_user_defined_variable_is_imported_validated_and_exported(registry, tmp_path):
    from pathomics_desktop.registry.service import add_variable, export_cohort

    add_variable(registry, name="tumour_budding", type="category", label="Tumour budding",
                 codes={"low": ["bd1"], "high": ["bd3"]})
    add_variable(registry, name="albumin", type="number", unit="g/L", min_value=0, max_value=100,
                 soft_min=25)
    rows = [patient("P1", tumour_budding="BD3", albumin="41"), patient("P2", tumour_budding="low", albumin="20")]
    report = import_file(registry, write_csv(tmp_path / "c.csv", rows))
    assert report.errors == [] and [w.column for w in report.warnings] == ["albumin"]
    bad = import_file(registry, write_csv(tmp_path / "d.csv", [patient("P3", tumour_budding="medium")]))
    assert any(i.column == "tumour_budding" for i in bad.errors)
    out = export_cohort(registry, tmp_path / "cohort.csv")
    import pandas as pd

    frame = pd.read_csv(out)
    assert dict(zip(frame.study_id, frame.tumour_budding)) == {"P1": "high", "P2": "low"}
    assert dict(zip(frame.study_id, frame.albumin)) == {"P1": 41.0, "P2": 20.0}


def test_shipped_redcap_example_mapping_imports_a_raw_export(registry, tmp_path):
    from pathlib import Path

    mapping = ColumnMapping.load(Path(__file__).resolve().parents[2] / "resources" / "mappings" / "redcap_example.json")
    reverse = {v: k for k, v in mapping.columns.items()}
    row = {reverse[k]: v for k, v in patient("RC1").items()}
    row.update({"gender": "2", "op_type": "1", "grade": "3", "status": "1", "redcap_event_name": "baseline_arm_1",
                "baseline_complete": "2"})
    report = import_file(registry, write_csv(tmp_path / "redcap_raw.csv", [row]), mapping=mapping)
    assert report.errors == [], report.errors
    with registry.session() as s:
        p = s.scalars(select(Patient).where(Patient.study_id == "RC1")).one()
        assert (p.sex, p.surgery.surgery_type, p.pathology.differentiation) == ("male", "PD", "III")
