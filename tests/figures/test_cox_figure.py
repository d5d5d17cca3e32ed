"""The Cox table description: every HR, CI, p, PH test, C-index and LR test equals
``stats.cox`` (and ``stats.frailty``) called directly on the same filtered rows; the study's
screen picks exactly the variables whose univariate LR p, computed here one model at a time,
is below the threshold. The cohort is a small SYNTHETIC snapshot read through DuckDB."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.cox import build_cox, study_variables, table_rows, variable_spec
from pathomics_desktop.stats.cox import cox_zph, fit_cox, multivariable_from_screen, univariate_screen
from pathomics_desktop.stats.frailty import fit_frailty
from tests.figures.cohort_data import clinical_snapshot

TIME, EVENT = "os_months", "os_event"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("cox") / "cohort.parquet"
    clinical_snapshot().to_parquet(path, index=False)
    return AnalysisSource(path)


@pytest.fixture(scope="module")
def frame(source):
    return source.frame(CohortFilter())


def rows_by_term(table):
    return {r.term: r for r in table.rows if r.term}


def test_variable_kinds_and_reference_levels_follow_the_codebook(source):
    sex = variable_spec(source, "sex")
    assert (sex.kind, sex.levels) == ("category", ("female", "male"))
    assert variable_spec(source, "age").kind == "number" and variable_spec(source, "age").unit == "years"
    assert variable_spec(source, "t_group").levels == ("T1", "T2", "T3-4")  # the study's merged T3-4
    assert variable_spec(source, "pathomics_os_group").levels == ("low", "high")  # low is the reference


def test_univariate_models_equal_stats_cox(source, frame):
    variables = ["sex", "n_stage", "ca19_9_group", "pathomics_os_group"]
    table = build_cox(source, frame, {"endpoint": "os", "mode": "univariate", "variables": variables})
    screen = univariate_screen(frame, TIME, EVENT, variables, categorical=variables,
                               reference={"sex": "female", "n_stage": "N0", "ca19_9_group": "<200",
                                          "pathomics_os_group": "low"})
    got = rows_by_term(table)
    assert set(got) == {r["term"] for r in screen}
    for expected in screen:
        row = got[expected["term"]]
        assert row.uni_hr == pytest.approx(expected["hr"], rel=1e-9)
        assert (row.uni_lower, row.uni_upper) == pytest.approx((expected["hr_lower"], expected["hr_upper"]), rel=1e-9)
        assert row.uni_p == pytest.approx(expected["p"], rel=1e-9)
        assert row.uni_p_variable == pytest.approx(expected["p_term_lr"], rel=1e-9)
        assert (row.uni_n, row.uni_events) == (expected["n"], expected["events"])
    # per model: C-index, LR test and the PH test of a direct fit
    for model, var in zip(table.models, variables):
        sub = frame.dropna(subset=[var])
        fit = fit_cox(sub, TIME, EVENT, [var], categorical=[var])
        assert model.variables == [var]
        assert model.c_index == pytest.approx(fit.concordance, rel=1e-12)
        assert (model.lr_chisq, model.lr_df) == (pytest.approx(fit.lr["chisq"]), fit.lr["df"])
        ph = cox_zph(fit)[var]["p"]
        for row in table.rows:
            if row.variable == var and not row.reference:
                assert row.ph_p == pytest.approx(ph, rel=1e-9)
                assert row.ph_flag == (ph < 0.05)
    # the rows missing CA19-9 are left out of its model only
    ca_model = table.models[2]
    assert ca_model.n == int(frame["ca19_9_group"].notna().sum()) < table.models[0].n == len(frame)


def test_multivariable_model_per_ten_years_and_a_chosen_reference(source, frame):
    params = {"endpoint": "os", "mode": "multivariate", "variables": ["age", "sex", "n_stage"],
              "per": {"age": 10}, "reference": {"sex": "male", "n_stage": "N0"}}
    table = build_cox(source, frame, params)
    fit = fit_cox(frame, TIME, EVENT, ["age", "sex", "n_stage"], categorical=["sex", "n_stage"],
                  reference={"sex": "male"})
    coef = dict(zip(fit.names, fit.coef))
    se = dict(zip(fit.names, fit.se))
    got = rows_by_term(table)
    # HR per 10 years = exp(10 b) with its CI exp(10 (b -/+ 1.96 se)) (closed form)
    assert got["age"].multi_hr == pytest.approx(np.exp(10 * coef["age"]), rel=1e-8)
    assert got["age"].multi_lower == pytest.approx(np.exp(10 * (coef["age"] - 1.959963984540054 * se["age"])), rel=1e-8)
    assert got["age"].level == "per 10 years"
    # reference male: the row is female vs male
    assert got["sex=female"].level == "female vs male"
    assert got["sex=female"].multi_hr == pytest.approx(np.exp(coef["sex=female"]), rel=1e-9)
    assert [r.level for r in table.rows if r.variable == "sex"] == ["male (reference)", "female vs male"]
    model = table.multivariable
    assert (model.n, model.events) == (fit.n, fit.events)
    assert model.c_index == pytest.approx(fit.concordance, rel=1e-12)
    assert (model.lr_chisq, model.lr_df, model.lr_p) == (pytest.approx(fit.lr["chisq"]), 4, pytest.approx(fit.lr["p"]))
    zph = cox_zph(fit)
    assert model.ph_global_p == pytest.approx(zph["GLOBAL"]["p"], rel=1e-9)
    assert got["n_stage=N2"].ph_p == pytest.approx(zph["n_stage"]["p"], rel=1e-9)
    assert f"n = {fit.n}, events = {fit.events}, C-index = {fit.concordance:.3f}" in table.summary_text()


@pytest.mark.parametrize("threshold", [0.05, 0.6])
def test_screen_picks_the_variables_with_univariate_p_below_the_threshold(source, frame, threshold):
    variables = study_variables(source)
    assert variables[-1] == "pathomics_os_group" and "tnm_group" in variables
    table = build_cox(source, frame, {"endpoint": "os", "mode": "screen", "variables": variables,
                                      "threshold": threshold})
    # the rule computed here: one Cox model per variable, its likelihood-ratio p
    lr_p = {}
    for var in variables:
        sub = frame.dropna(subset=[var])
        lr_p[var] = fit_cox(sub, TIME, EVENT, [var], categorical=[var]).lr["p"]
    expected = [v for v in variables if lr_p[v] < threshold and v != "tnm_group"]  # stage: univariate only
    assert table.selected == expected
    assert 0 < len(expected) < len(variables) - 1
    for row in table.rows:
        assert row.selected == (row.variable in expected)
        assert row.uni_p_variable == pytest.approx(lr_p[row.variable], rel=1e-9)
    # the multivariable model is the stats one on the selected variables
    direct = multivariable_from_screen(frame, TIME, EVENT, [v for v in variables if v != "tnm_group"],
                                       threshold=threshold, categorical=variables,
                                       reference={"pathomics_os_group": "low"})
    assert direct["selected"] == expected
    multi = {r["term"]: r for r in direct["multivariable"].table()}
    got = rows_by_term(table)
    for term, expected_row in multi.items():
        assert got[term].multi_hr == pytest.approx(expected_row["hr"], rel=1e-9)
        assert got[term].multi_p == pytest.approx(expected_row["p"], rel=1e-9)
    assert all(r.multi_hr is None for r in table.rows if r.variable not in expected)
    assert table.multivariable.n == direct["multivariable"].n
    json.dumps(table.to_dict())  # plain JSON


def test_center_as_cluster_strata_and_random_effect(source, frame):
    variables = ["pathomics_os_group", "n_stage"]
    cluster = build_cox(source, frame, {"mode": "multivariate", "variables": variables, "center": "cluster"})
    fit = fit_cox(frame, TIME, EVENT, variables, categorical=variables, reference={"pathomics_os_group": "low"},
                  cluster="center")
    robust = {r["term"]: r for r in fit.table()}
    got = rows_by_term(cluster)
    assert got["pathomics_os_group=high"].multi_lower == pytest.approx(robust["pathomics_os_group=high"]["hr_lower"])
    assert cluster.multivariable.robust and any("3 center clusters" in n for n in cluster.notes)
    strata = build_cox(source, frame, {"mode": "multivariate", "variables": variables, "strata": "sex"})
    fit = fit_cox(frame, TIME, EVENT, variables, categorical=variables, reference={"pathomics_os_group": "low"},
                  strata="sex")
    assert rows_by_term(strata)["n_stage=N1"].multi_hr == pytest.approx(
        {r["term"]: r for r in fit.table()}["n_stage=N1"]["hr"], rel=1e-9)
    assert strata.multivariable.c_index == pytest.approx(fit.concordance)
    by_center = build_cox(source, frame, {"mode": "univariate", "variables": ["sex"], "strata": "center"})
    fit = fit_cox(frame, TIME, EVENT, ["sex"], categorical=["sex"], strata="center")
    assert by_center.rows[1].uni_hr == pytest.approx(fit.table()[0]["hr"], rel=1e-9)
    with pytest.raises(UserError, match="already the strata"):
        build_cox(source, frame, {"variables": ["sex"], "strata": "center", "center": "cluster"})
    frailty = build_cox(source, frame, {"mode": "multivariate", "variables": variables, "center": "frailty"})
    ffit = fit_frailty(frame, TIME, EVENT, variables, "center", categorical=variables,
                       reference={"pathomics_os_group": "low"})
    assert rows_by_term(frailty)["pathomics_os_group=high"].multi_hr == pytest.approx(
        {r["term"]: r for r in ffit.table()}["pathomics_os_group=high"]["hr"], rel=1e-9)
    assert frailty.multivariable.frailty_variance == pytest.approx(ffit.variance)
    assert frailty.multivariable.lr_chisq == pytest.approx(ffit.lr_chisq)
    assert all(r.ph_p is None for r in frailty.rows)  # no PH test for the frailty model


def test_copy_data_rows_and_bad_choices(source, frame):
    table = build_cox(source, frame, {"mode": "univariate", "variables": ["sex"]})
    header, rows = table_rows(table)
    assert header[:3] == ["Variable", "Level", "Univariate HR (95% CI)"]
    male = table.rows[1]
    assert rows[1][2] == f"{male.uni_hr:.2f} ({male.uni_lower:.2f}-{male.uni_upper:.2f})"
    with pytest.raises(UserError, match="Tick at least one variable"):
        build_cox(source, frame, {"variables": []})
    with pytest.raises(UserError, match="both a covariate and the strata"):
        build_cox(source, frame, {"variables": ["sex"], "strata": "sex"})
    with pytest.raises(UserError, match="at least two centers"):
        build_cox(source, frame[frame["center"] == "A"], {"variables": ["sex"], "center": "cluster"})
