"""Table 1 figure description (Qt-free): its numbers equal ``stats.table1.baseline_table``
called directly, and the count of every cell (and the patients kept for its click-through)
equals a pandas count on the filtered snapshot.

The snapshot is a SYNTHETIC cohort written to Parquet (300 patients, three data sets, missing
values and a rare surgery type that makes Fisher's test necessary)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.style import format_p
from pathomics_desktop.figures.table1 import OVERALL, build_table1, default_variables
from pathomics_desktop.stats.table1 import baseline_table

N = 300


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    rng = np.random.default_rng(42)
    split = rng.choice(["training", "internal", "external"], size=N, p=[0.5, 0.2, 0.3])
    ca = np.exp(rng.normal(4.5, 1.2, size=N))
    ca[rng.random(N) < 0.05] = np.nan
    chemo = rng.choice(["yes", "no"], size=N).astype(object)
    chemo[rng.random(N) < 0.08] = None
    frame = pd.DataFrame({
        "study_id": [f"SYN-T-{i:04d}" for i in range(N)],
        "center": rng.choice(["A", "B", "C"], size=N),
        "split": split,
        "included": rng.random(N) < 0.9,
        "age": np.round(rng.normal(64, 9, size=N) + 3 * (split == "external"), 1),
        "sex": rng.choice(["female", "male"], size=N),
        "surgery_type": rng.choice(["PD", "DP", "TP"], size=N, p=[0.6, 0.37, 0.03]),
        "differentiation": rng.choice(["I-II", "III"], size=N),
        "t_stage": rng.choice(["T1", "T2", "T3", "T4"], size=N, p=[0.2, 0.5, 0.2, 0.1]),
        "n_stage": rng.choice(["N0", "N1", "N2"], size=N, p=[0.6, 0.3, 0.1]),
        "tnm_group": rng.choice(["I", "II", "III", "IV"], size=N, p=[0.4, 0.4, 0.15, 0.05]),
        "ca19_9": ca,
        "adjuvant_chemotherapy": chemo,
        "diabetes": rng.choice(["yes", "no"], size=N),
        "os_months": rng.exponential(30, size=N),
        "os_event": rng.integers(0, 2, size=N),
    })
    path = tmp_path_factory.mktemp("table1") / "cohort.parquet"
    frame.to_parquet(path, index=False)
    return AnalysisSource(path)


def test_numbers_equal_baseline_table(source):
    frame = source.frame(CohortFilter())
    model = build_table1(source, frame, {})
    assert model.groups == ["training", "internal", "external"] and model.by == "split"
    present = [v for v in default_variables() if v in frame.columns]
    assert "hypertension: not in the cohort snapshot" not in model.notes  # labels, not columns
    assert any("Hypertension" in n for n in model.notes)
    categorical = [v for v in present if v not in ("age", "ca19_9")]
    direct = baseline_table(frame, "split", present, categorical=categorical, group_order=model.groups)
    first = {}
    for row in direct.rows:
        first.setdefault(row.variable, row)
    for var in present:
        ours = next(r for r in model.rows if r.variable == var and r.kind in ("header", "continuous"))
        assert ours.p == first[var].p and ours.test == first[var].test
        assert ours.p_text == format_p(first[var].p)
    age = next(r for r in model.rows if r.variable == "age")
    assert age.cells == first["age"].cells and age.kind == "continuous"
    assert age.label.endswith(first["age"].statistic_kind)
    surgery = next(r for r in model.rows if r.variable == "surgery_type" and r.kind == "header")
    assert surgery.test.startswith("Fisher's exact test")
    by_level = {(r.variable, r.level): r for r in direct.rows}
    for row in model.rows:
        if row.kind == "level":
            assert row.cells == by_level[(row.variable, row.level)].cells
    # levels in the study's order (the codebook's)
    from pathomics_desktop.signature.report import clinical_variables

    study = {v.column: list(v.levels) for v in clinical_variables()}
    for var in ("surgery_type", "t_group", "tnm_group"):
        assert [r.level for r in model.rows if r.variable == var and r.kind == "level"] == study[var]


def test_cell_counts_and_patients_equal_pandas(source):
    flt = CohortFilter(centers=("A", "B"))
    frame = pd.read_parquet(source.parquet)
    frame = frame[frame["included"] & frame["center"].isin(["A", "B"])]
    model = build_table1(source, source.frame(flt), {})
    groups = {g: frame["split"] == g for g in model.groups}
    groups[OVERALL] = pd.Series(True, index=frame.index)
    t_group = frame["t_stage"].replace({"T3": "T3-4", "T4": "T3-4"})
    checked = 0
    for row in model.rows:
        if row.kind not in ("count", "level", "missing"):
            continue
        if row.kind == "count":
            mask = pd.Series(True, index=frame.index)
        else:
            column = t_group if row.variable == "t_group" else frame.get(row.variable)
            if column is None:
                continue
            mask = column.isna() if row.kind == "missing" else (column == row.level)
        for g, in_group in groups.items():
            want = frame.loc[mask & in_group, "study_id"]
            assert row.counts[g] == len(want), (row.variable, row.level, g)
            assert sorted(row.ids[g]) == sorted(want)
            assert int(row.cells[g].split()[0]) == len(want)
            checked += 1
    assert checked > 60
    missing = next(r for r in model.rows if r.variable == "ca19_9" and r.kind == "missing")
    assert missing.counts[OVERALL] == int(frame["ca19_9"].isna().sum()) > 0
    assert model.header()[1] == f"Overall (n = {len(frame)})"


def test_grouping_by_another_variable(source):
    frame = source.frame(CohortFilter())
    model = build_table1(source, frame, {"by": "sex", "variables": ["sex", "age", "diabetes"]})
    assert model.groups == ["female", "male"] and model.by_label == "Sex"
    assert [r.variable for r in model.rows if r.kind != "count"][0] == "age"  # the grouping is not a row
    direct = baseline_table(frame, "sex", ["age", "diabetes"], categorical=["diabetes"])
    assert next(r for r in model.rows if r.variable == "diabetes").p == direct.rows[1].p
    data = model.to_dict()
    json.dumps(data)
    assert "ids" not in data["rows"][0] and data["rows"][0]["counts"][OVERALL] == len(frame)


def test_bad_groupings_are_explained(source):
    frame = source.frame(CohortFilter(datasets=("training",)))
    with pytest.raises(UserError, match="needs at least two groups"):
        build_table1(source, frame, {})
    with pytest.raises(UserError, match="no such column"):
        build_table1(source, frame, {"by": "nonsense"})
    frame = source.frame(CohortFilter())
    model = build_table1(source, frame, {"by": "adjuvant_chemotherapy", "variables": ["sex"]})
    lost = int(frame["adjuvant_chemotherapy"].isna().sum())
    assert model.n_without_group == lost and model.rows[0].counts[OVERALL] == len(frame) - lost
