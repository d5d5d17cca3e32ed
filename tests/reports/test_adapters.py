"""Adapters: the numbers of a publication table are those of the statistics result objects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from pathomics_desktop.reports.adapters import (
    baseline_publication, cox_model_publication, cox_tables_publication)
from pathomics_desktop.reports.tables import CountPercent, Estimate, PValue, TableStyle, Text
from pathomics_desktop.reports.writers import write_table

Z975 = sps.norm.ppf(0.975)


def labels_of(table) -> list[str]:
    return [row.cells[0].text for row in table.rows]


def row_of(table, label: str, after: str | None = None):
    labels = labels_of(table)
    start = labels.index(after) if after else 0
    return table.rows[labels.index(label, start)]


# --------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------


@pytest.fixture
def baseline_frame():
    rng = np.random.default_rng(7)
    n = 120
    frame = pd.DataFrame({
        "arm": np.where(np.arange(n) < 60, "A", "B"),
        "age": np.round(rng.normal(64, 8, n), 1),
        "sex": rng.choice(["female", "male"], n),
    })
    frame.loc[[3, 70], "sex"] = None
    return frame


def test_baseline_publication_numbers(baseline_frame):
    from pathomics_desktop.stats.table1 import baseline_table

    result = baseline_table(baseline_frame, "arm", ["age", "sex"], categorical=["sex"])
    table = baseline_publication(result, labels={"age": "Age (years)", "sex": "Sex"},
                                 group_n={"A": 60, "B": 60, "Overall": 120})
    assert [c.label for c in table.columns] == ["Characteristic", "A (n = 60)", "B (n = 60)",
                                                "Overall (n = 120)", "p"]
    assert table.number == "Table 1"
    age = result.rows[0]
    kind = age.statistic_kind
    assert labels_of(table) == [f"Age (years), {kind}", "Sex", "female", "male", "Missing"]
    first = table.rows[0]
    assert [c.text for c in first.cells[1:4]] == [age.cells["A"], age.cells["B"], age.cells["Overall"]]
    assert first.cells[4] == PValue(age.p)
    sex_p = next(r for r in result.rows if r.variable == "sex" and r.p is not None).p
    assert table.rows[1].cells[4] == PValue(sex_p)
    # n (%) cells: the counts and percentages of the data, counted here with pandas
    counts = pd.crosstab(baseline_frame["sex"], baseline_frame["arm"])
    for level in ("female", "male"):
        row = row_of(table, level)
        assert row.indent == 1
        for j, arm in enumerate(["A", "B"]):
            cell = row.cells[1 + j]
            assert isinstance(cell, CountPercent)
            assert cell.count == counts.loc[level, arm]
            assert cell.percent == round(100 * counts.loc[level, arm] / counts[arm].sum(), 1)
    missing = row_of(table, "Missing")
    assert [c.value for c in missing.cells[1:4]] == [1, 1, 2]
    tests = {"Pearson chi-square": "chi-square test", "Fisher's exact test": "Fisher's exact test",
             "Welch t-test": "Welch's t test", "Mann-Whitney U": "Mann-Whitney U test"}
    sex_test = next(r for r in result.rows if r.variable == "sex" and r.test).test
    assert table.footnotes == [f"Values are {kind} or n (%).",
                               f"p values: {tests[sex_test]}; {tests[age.test]}."]


def test_baseline_docx_shows_the_same_text(baseline_frame, tmp_path):
    from docx import Document

    from pathomics_desktop.stats.table1 import baseline_table

    result = baseline_table(baseline_frame, "arm", ["age", "sex"], categorical=["sex"])
    table = baseline_publication(result)
    doc_table = Document(str(write_table(table, tmp_path / "t1.docx"))).tables[0]
    female = next(r for r in result.rows if r.level == "female")
    texts = [[c.text for c in row.cells] for row in doc_table.rows]
    assert texts[3][:3] == ["female", female.cells["A"], female.cells["B"]]  # "27 (45.0%)" as in Table 1
    assert texts[2][-1] == TableStyle().p_value(next(r.p for r in result.rows if r.variable == "sex"))


# --------------------------------------------------------------------------------------
# one Cox model
# --------------------------------------------------------------------------------------


@pytest.fixture
def cox_frame():
    rng = np.random.default_rng(11)
    n = 300
    x = rng.normal(0, 1, n)
    g = rng.choice(["a", "b", "c"], n)
    rate = np.exp(0.5 * x + np.where(g == "b", 0.4, np.where(g == "c", -0.3, 0.0)))
    t = rng.exponential(1 / rate)
    c = rng.exponential(2.0, n)
    return pd.DataFrame({"time": np.minimum(t, c), "event": (t <= c).astype(int), "x": x, "g": g})


def test_cox_model_publication_numbers(cox_frame):
    from pathomics_desktop.stats.cox import CoxModelResult, fit_cox

    fit = fit_cox(cox_frame, "time", "event", ["x", "g"], categorical=["g"])
    result = CoxModelResult(fit, fit.concordance)
    table = cox_model_publication(result, labels={"x": "Marker x", "g": "Group"},
                                  references={"g": "a"}, number="Table S9")
    assert labels_of(table) == ["Marker x", "Group", "a", "b", "c"]
    assert [r.indent for r in table.rows] == [0, 0, 1, 1, 1]
    assert table.rows[2].cells[1:] == [Text("Reference"), Text("")]
    se = np.sqrt(np.diag(fit.var))
    for label, j in (("Marker x", 0), ("b", 1), ("c", 2)):
        hr, p = row_of(table, label).cells[1:]
        b = fit.coef[j]  # HR = exp(b), Wald CI exp(b -/+ z se), p = 2 (1 - Phi(|b / se|)), by hand
        assert hr.value == pytest.approx(math.exp(b), rel=1e-12)
        assert hr.lower == pytest.approx(math.exp(b - Z975 * se[j]), rel=1e-9)
        assert hr.upper == pytest.approx(math.exp(b + Z975 * se[j]), rel=1e-9)
        assert p.value == pytest.approx(2 * sps.norm.sf(abs(b / se[j])), rel=1e-9)
    assert table.footnotes[1] == (f"n = 300, {int(cox_frame['event'].sum())} events; "
                                  f"Harrell's C = {result.concordance:.3f}.")


# --------------------------------------------------------------------------------------
# Table 2 (CoxTables of the signature report), on the SYNTHETIC demo cohort
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_frame(demo_snapshot):
    from pathomics_desktop.signature.report import RISK, derive_clinical_columns

    _project, cohort, _book = demo_snapshot
    frame = derive_clinical_columns(cohort[cohort["included"] & (cohort["split"] == "training")])
    rng = np.random.default_rng(3)  # a stand-in risk group (SYNTHETIC), related to N stage
    frame[RISK] = np.where(rng.random(len(frame)) < np.where(frame["n_stage"] == "N0", 0.3, 0.6),
                           "high", "low")
    return frame.reset_index(drop=True)


def test_cox_tables_publication_numbers(training_frame, tmp_path):
    from docx import Document

    from pathomics_desktop.signature.report import cox_tables
    from pathomics_desktop.stats.cox import fit_cox

    result = cox_tables(training_frame, "os_months", "os_event", figure="Table 2; Table S3", threshold=0.05)
    assert result.multivariable is not None
    table = cox_tables_publication(result)
    assert table.number == "Table 2"
    assert [(c.group, c.label) for c in table.columns] == [
        (None, "Variable"), ("Univariate", "HR (95% CI)"), ("Univariate", "p"),
        ("Multivariate", "HR (95% CI)"), ("Multivariate", "p")]
    multi = {r["term"]: r for r in result.multivariable.table()}
    labels = labels_of(table)
    # a binary variable on one row; a variable with more levels: its reference, then the levels
    sex = row_of(table, "Sex, male vs female")
    sex_uni = next(r for r in result.univariate if r["term"] == "sex=male")
    assert sex.cells[1] == Estimate(sex_uni["hr"], sex_uni["hr_lower"], sex_uni["hr_upper"])
    assert sex.cells[2] == PValue(sex_uni["p"])
    direct = fit_cox(training_frame[["os_months", "os_event", "sex"]].dropna(), "os_months", "os_event",
                     ["sex"], categorical=["sex"], reference={"sex": "female"}).table()[0]
    assert sex.cells[1].value == pytest.approx(direct["hr"], rel=1e-12)  # the same model fitted here
    n_rows = [labels.index("N stage") + k for k in range(4)]
    assert [labels[i] for i in n_rows] == ["N stage", "N0", "N1", "N2"]
    assert table.rows[n_rows[1]].cells[1] == Text("Reference")
    for i, term in zip(n_rows[2:], ("n_stage=N1", "n_stage=N2")):
        uni = next(r for r in result.univariate if r["term"] == term)
        cells = table.rows[i].cells
        assert cells[1] == Estimate(uni["hr"], uni["hr_lower"], uni["hr_upper"]) and cells[2] == PValue(uni["p"])
        if term in multi:
            m = multi[term]
            assert cells[3] == Estimate(m["hr"], m["hr_lower"], m["hr_upper"]) and cells[4] == PValue(m["p"])
    risk = row_of(table, "Pathomics risk group, high vs low")
    m = multi["risk_group=high"]  # always in the multivariate model
    assert risk.cells[3] == Estimate(m["hr"], m["hr_lower"], m["hr_upper"]) and risk.cells[4] == PValue(m["p"])
    not_selected = [v for v in dict.fromkeys(r["variable"] for r in result.univariate) if v not in result.selected]
    assert not_selected  # some variable is left out of the multivariate model: its cells are blank
    # every univariate term's numbers appear in the table, once
    estimates = [r.cells[1] for r in table.rows if isinstance(r.cells[1], Estimate)]
    assert sorted(e.value for e in estimates) == sorted(r["hr"] for r in result.univariate)
    # the DOCX shows the style's text of the same numbers
    doc_rows = [[c.text for c in row.cells] for row in
                Document(str(write_table(table, tmp_path / "t2.docx"))).tables[0].rows]
    style = TableStyle()
    doc_risk = next(r for r in doc_rows if r[0] == "Pathomics risk group, high vs low")
    assert doc_risk[3:] == [style.estimate(m["hr"], m["hr_lower"], m["hr_upper"]), style.p_value(m["p"])]
    assert doc_risk[3] == f"{m['hr']:.2f} ({m['hr_lower']:.2f}-{m['hr_upper']:.2f})"


def test_source_note_names_the_filter_and_snapshot(demo_snapshot):
    import hashlib

    from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
    from pathomics_desktop.reports.tables import SourceNote

    project, _frame, _book = demo_snapshot
    source = AnalysisSource.open(project)
    digest = hashlib.sha256(source.parquet.read_bytes()).hexdigest()[:12]
    note = SourceNote.of(CohortFilter(datasets=("training",)), source)
    assert note.text() == f"Source: included patients; data set: training; cohort snapshot {digest}."
