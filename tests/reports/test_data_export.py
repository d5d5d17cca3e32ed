"""De-identified data exports of the SYNTHETIC demo cohort, read back with their own readers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from scipy import stats as sps

from pathomics_desktop.cli import main
from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.patient_list import identifier_columns
from pathomics_desktop.reports.data_export import (
    MAX_SHIFT_DAYS, date_offsets, export_cohort_data, patient_offset, write_cohort_data)

READERS = {"sav": pyreadstat.read_sav, "dta": pyreadstat.read_dta}
DATES = ["surgery_date", "ca19_9_date", "chemo_start_date", "recurrence_date", "death_date", "last_followup_date"]


def _as_date(value):
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def _text(value):
    """A text value; missing as None (SPSS and Stata write a missing text as "")."""
    return None if value is None or value == "" or (not isinstance(value, str) and pd.isna(value)) else str(value)


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_labelled_exports_read_back(demo_snapshot, tmp_path, fmt):
    project, snapshot, book = demo_snapshot
    result = export_cohort_data(project, tmp_path / f"cohort.{fmt}")
    assert result.rows == len(snapshot) and not result.shifted_columns
    back, meta = READERS[fmt](str(result.path))
    labelled, _ = READERS[fmt](str(result.path), apply_value_formats=True)
    assert list(back.columns) == list(snapshot.columns)
    assert not identifier_columns(book) & set(back.columns)
    assert not {"name", "mrn", "birth_date"} & set(back.columns)
    assert meta.file_label.startswith("SYNTHETIC data - Pathomics cohort snapshot ")
    # variable labels from the codebook, value labels for categories
    assert meta.column_names_to_labels["age"] == "Age at surgery (years)"
    assert meta.column_names_to_labels["ca19_9"] == book["ca19_9"].display_label
    assert meta.column_names_to_labels["os_months"] == "OS (months)"
    assert {int(k): v for k, v in meta.variable_value_labels["sex"].items()} == {1: "female", 2: "male"}
    assert {int(k): v for k, v in meta.variable_value_labels["diabetes"].items()} == {0: "no", 1: "yes"}
    assert {int(k): v for k, v in meta.variable_value_labels["split"].items()} == {
        1: "training", 2: "internal", 3: "external"}
    # values: numbers equal, coded categories give back the snapshot's text, dates the dates
    for column in ("age", "os_months", "os_event", "rfs_months", "ca19_9"):
        np.testing.assert_array_equal(back[column].to_numpy(float), snapshot[column].to_numpy(float))
    for column in ("sex", "split", "tnm_stage", "t_stage", "diabetes", "exclusion_reason", "study_id",
                   "chemo_regimen"):
        assert [_text(v) for v in labelled[column]] == [_text(v) for v in snapshot[column]], column
    assert [_text(v) for v in labelled["included"]] == ["yes" if v else "no" for v in snapshot["included"]]
    for column in DATES:
        assert [_as_date(v) for v in back[column]] == [_as_date(v) for v in snapshot[column]], column
    assert isinstance(next(v for v in back["surgery_date"] if v is not None), dt.date)


def test_csv_and_xlsx_exports(demo_snapshot, tmp_path):
    project, snapshot, _book = demo_snapshot
    csv_out = export_cohort_data(project, tmp_path / "cohort.csv", included_only=True).path
    frame = pd.read_csv(csv_out)
    included = snapshot[snapshot["included"]].reset_index(drop=True)
    assert list(frame.columns) == list(snapshot.columns) and len(frame) == len(included)
    assert frame["surgery_date"].tolist() == included["surgery_date"].dt.strftime("%Y-%m-%d").tolist()
    assert frame["sex"].tolist() == included["sex"].tolist()
    xlsx_out = export_cohort_data(project, tmp_path / "cohort.xlsx").path
    sheets = pd.read_excel(xlsx_out, sheet_name=None)
    assert list(sheets) == ["cohort", "variables", "about"]
    data, variables = sheets["cohort"], sheets["variables"].set_index("variable")
    np.testing.assert_allclose(data["os_months"].to_numpy(float), snapshot["os_months"].to_numpy(float))
    assert [_as_date(v) for v in data["death_date"]] == [_as_date(v) for v in snapshot["death_date"]]
    assert variables.loc["age", "label"] == "Age at surgery (years)"
    assert variables.loc["sex", "values"] == "female; male"
    assert sheets["about"]["note"][0].startswith("SYNTHETIC data")


def test_date_shifting_keeps_intervals(demo_snapshot, tmp_path):
    project, snapshot, _book = demo_snapshot
    shifted = export_cohort_data(project, tmp_path / "shifted.dta", shift=True, seed=11)
    assert shifted.shifted_columns == DATES
    back, _ = pyreadstat.read_dta(str(shifted.path))
    assert list(back.columns) == list(snapshot.columns)  # no offset column
    offsets = date_offsets(snapshot["study_id"].tolist(), 11)
    moved = 0
    for (_, old), (_, new) in zip(snapshot.iterrows(), back.iterrows()):
        assert new["study_id"] == old["study_id"]
        shift = dt.timedelta(days=offsets[old["study_id"]])
        for column in DATES:
            if pd.isna(old[column]):
                assert pd.isna(new[column]) or new[column] is None
                continue
            assert new[column] == old[column].date() + shift  # every date moved by the same days
            moved += 1
        # the intervals, e.g. surgery -> death and surgery -> last follow-up, stay exact
        for column in ("death_date", "recurrence_date", "last_followup_date"):
            if not pd.isna(old[column]):
                assert (new[column] - new["surgery_date"]) == (old[column] - old["surgery_date"]).to_pytimedelta()
        assert new["os_months"] == old["os_months"]
    assert moved > 2000
    values = np.array(list(offsets.values()))
    assert 0 not in values and np.abs(values).max() <= MAX_SHIFT_DAYS
    assert len(set(values)) > 250  # per patient, not one offset for all
    # the same seed gives the same offsets, another seed others
    again, _ = pyreadstat.read_dta(str(export_cohort_data(project, tmp_path / "again.dta", shift=True, seed=11).path))
    assert again["surgery_date"].tolist() == back["surgery_date"].tolist()
    assert date_offsets(["SYN-A-0001"], 11) == {"SYN-A-0001": patient_offset("SYN-A-0001", 11)}
    other = date_offsets(snapshot["study_id"].tolist(), 12)
    assert sum(other[k] != offsets[k] for k in offsets) > 0.9 * len(offsets)


def test_offsets_are_uniform_over_the_range():
    """-180..-1 and 1..180, each with probability 1/360: a chi-square check over 7,200 draws (20 expected per value)."""
    values = np.array([patient_offset(f"P{i}", 5) for i in range(7_200)])
    counts = np.array([np.sum(values == v) for v in [*range(-180, 0), *range(1, 181)]])
    assert counts.sum() == len(values)
    chisq = float(((counts - 20.0) ** 2 / 20.0).sum())
    assert sps.chi2.sf(chisq, 359) > 1e-4


def test_identifiers_are_refused(demo_snapshot, tmp_path):
    _project, snapshot, book = demo_snapshot
    frame = snapshot.head(5).copy()
    frame["mrn"] = "12345"
    with pytest.raises(UserError, match="identifier column.*mrn"):
        write_cohort_data(frame, tmp_path / "leak.sav", book)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_cohort(demo_root, tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["export", "cohort", "--out", str(out), "--format", "dta", "--shift-dates", "--seed", "3",
                 "--included-only", "--project", str(demo_root)]) == 0
    message = capsys.readouterr().out
    assert "cohort.dta" in message and "de-identified" in message and "dates shifted" in message
    back, meta = pyreadstat.read_dta(str(tmp_path / "cohort.dta"))
    assert len(back) == 667 and not {"name", "mrn", "birth_date"} & set(back.columns)
    assert main(["export", "cohort", "--out", str(tmp_path / "x.sav"), "--include-identifiers",
                 "--project", str(demo_root)]) == 2
    assert "de-identified only" in capsys.readouterr().err
    assert main(["export", "cohort", "--out", str(tmp_path / "x.csv"), "--format", "sav",
                 "--project", str(demo_root)]) == 2
    assert "does not match --format sav" in capsys.readouterr().err
    assert main(["export", "cohort", "--out", str(tmp_path / "x.json"), "--project", str(demo_root)]) == 2
    err = capsys.readouterr().err
    assert "'.json'" in err and "sav" in err and "dta" in err
    assert main(["export", "cohort", "--out", str(tmp_path / "y.csv"), "--seed", "3",
                 "--project", str(demo_root)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.dta"]
