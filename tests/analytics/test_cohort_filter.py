"""The analysis views' cohort filter: parameterised DuckDB SQL on the snapshot, checked
against the same selection done with pandas on the Parquet file."""

from __future__ import annotations

import pandas as pd
import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter, footnote
from pathomics_desktop.errors import UserError


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("filter") / "cohort.parquet"
    frame = pd.DataFrame({
        "study_id": [f"P{i:03d}" for i in range(12)],
        "center": list("AAAABBBBCCCC"),
        "split": ["training", "internal", "external"] * 4,
        "included": [True] * 10 + [False] * 2,
        "age": [30, 41, 52, 63, 74, 85, 45, 55, 65, None, 50, 60],
        "sex": ["male", "female", "male", "female", None, "male", "female", "male", "female", "male", "x'; DROP", "male"],
        "tnm_group": ["I", "II", "III", "IV"] * 3,
        "t_stage": ["T1", "T2", "T3", "T4"] * 3,
        "ca19_9": [10.0, 250.0, 36.0, 1000.0, 5.0, 199.0, 200.0, 80.0, 40.0, 3.0, 7.0, 9.0],
        "os_months": [float(i + 1) for i in range(12)],
        "os_event": [1, 0] * 6,
    })
    frame.to_parquet(path, index=False)
    return path, frame


def brute(frame, flt: CohortFilter):
    keep = pd.Series(True, index=frame.index)
    if flt.included_only:
        keep &= frame["included"]
    if flt.datasets:
        keep &= frame["split"].isin(flt.datasets)
    if flt.centers:
        keep &= frame["center"].isin(flt.centers)
    for col, lo, hi in flt.ranges:
        keep &= frame[col].notna()
        if lo is not None:
            keep &= frame[col] >= lo
        if hi is not None:
            keep &= frame[col] <= hi
    for col, levels in flt.categories:
        keep &= frame[col].isin(levels)
    return sorted(frame.loc[keep, "study_id"])


@pytest.mark.parametrize("flt", [
    CohortFilter(),
    CohortFilter(included_only=False),
    CohortFilter(datasets=("training", "external")),
    CohortFilter(centers=("B",), included_only=False),
    CohortFilter().with_range("age", 45, 65),
    CohortFilter().with_range("age", None, 50).with_categories("sex", ["male"]),
    CohortFilter(included_only=False).with_categories("sex", ["x'; DROP"]),
    CohortFilter().with_range("ca19_9", 200, None).with_categories("tnm_group", ["III", "IV"]),
    CohortFilter().with_categories("sex", ["(none ticked)"]),
])
def test_filter_selects_what_pandas_selects(snapshot, flt):
    path, frame = snapshot
    got = AnalysisSource(path).frame(flt)
    assert sorted(got["study_id"]) == brute(frame, flt)


def test_values_are_bound_parameters_never_sql_text(snapshot):
    path, _ = snapshot
    flt = CohortFilter(included_only=False).with_categories("sex", ["x'; DROP"])
    query = AnalysisSource(path).query()
    clause, params = query.where(flt.filters())
    assert "DROP" not in clause and params == ["x'; DROP"]
    query.close()


def test_unknown_column_is_a_user_error(snapshot):
    path, _ = snapshot
    with pytest.raises(UserError, match="unknown column 'weight'"):
        AnalysisSource(path).frame(CohortFilter().with_range("weight", 1, 2))


def test_derived_study_columns_are_added(snapshot):
    path, frame = snapshot
    got = AnalysisSource(path).frame(CohortFilter(included_only=False)).set_index("study_id")
    # CA19-9 split at 200 U/mL and T3/T4 merged, as the study's analysis table
    expected_ca = frame.set_index("study_id")["ca19_9"].map(lambda v: "<200" if v < 200 else ">=200")
    assert got["ca19_9_group"].to_dict() == expected_ca.to_dict()
    assert set(got.loc[got["t_stage"].isin(["T3", "T4"]), "t_group"]) == {"T3-4"}


def test_options_come_from_the_snapshot_in_codebook_order(snapshot):
    path, _ = snapshot
    options = AnalysisSource(path).options()
    assert options.datasets == ("training", "internal", "external")
    assert options.centers == ("A", "B", "C")
    age = options.variable("age")
    assert (age.kind, age.low, age.high, age.unit) == ("number", 30.0, 85.0, "years")
    t = options.variable("t_stage")
    assert t.levels == ("T1", "T2", "T3", "T4")
    assert "os_event" not in [v.column for v in options.variables]
    with pytest.raises(UserError):
        options.variable("study_id")


def test_filter_round_trip_and_footnote(snapshot):
    path, _ = snapshot
    flt = CohortFilter(datasets=("training",), centers=("A", "B")).with_range("age", 40, 70) \
        .with_categories("sex", ["female"])
    assert CohortFilter.from_dict(flt.to_dict()) == flt
    source = AnalysisSource(path)
    import hashlib

    assert source.snapshot_id == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert footnote(flt, source.snapshot_id, 3) == (
        "Cohort: included patients; data set: training; center: A, B; age 40-70; sex: female; n = 3. "
        f"Snapshot {source.snapshot_id}.")


@pytest.mark.parametrize("column, level, condition", [
    ("ca19_9_group", "<200", lambda f: f["ca19_9"] < 200),
    ("ca19_9_group", ">=200", lambda f: f["ca19_9"] >= 200),
    ("age_group", ">=65", lambda f: f["age"] >= 65),
    ("t_group", "T3-4", lambda f: f["t_stage"].isin(["T3", "T4"])),
    ("stage_2", "I-II", lambda f: f["tnm_group"].isin(["I", "II"])),
    ("sex", "male", lambda f: f["sex"] == "male"),
])
def test_a_forest_subgroup_of_a_derived_column_selects_its_patients(snapshot, column, level, condition):
    path, frame = snapshot
    flt = CohortFilter(included_only=False).with_subgroup(column, level)
    got = AnalysisSource(path).frame(flt)
    assert sorted(got["study_id"]) == sorted(frame.loc[condition(frame).fillna(False), "study_id"])
    # the derived column of every selected patient is the level asked for
    assert set(got[column]) == {level}


def test_a_strict_upper_bound_reads_as_such():
    assert "ca19_9 < 200" in CohortFilter().with_subgroup("ca19_9_group", "<200").describe()
    assert "age <= 64" in CohortFilter().with_range("age", None, 64).describe()


@pytest.mark.parametrize("flt", [
    CohortFilter(),
    CohortFilter(included_only=False),
    CohortFilter(datasets=("internal",)).with_range("age", 40, None),
    CohortFilter().with_categories("sex", ["(none ticked)"]),
])
def test_frame_is_the_filtered_rows_with_their_derived_columns(snapshot, flt):
    """The filtered frame is taken from the analysis table (derived once per snapshot): equal,
    values and dtypes, to deriving the columns of the rows DuckDB returns for the filter."""
    from pathomics_desktop.signature.report import derive_clinical_columns

    path, _ = snapshot
    source = AnalysisSource(path)
    got = source.frame(flt)
    query = source.query()
    try:
        expected = derive_clinical_columns(query.frame(flt.filters()))
        positions = query.positions(flt.filters())
    finally:
        query.close()
    pd.testing.assert_frame_equal(got, expected)
    assert positions.tolist() == sorted(positions.tolist())
    assert source.analysis_table() is source.analysis_table()  # made once
