"""Kaplan-Meier, log-rank, stratified, trend and pairwise tests against R survival 3.x.

Reference values: tests/stats/reference/km_cox.json made by tests/stats/r/km_cox_reference.R
on the CSV copies of R's data sets in tests/stats/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import km

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "km_cox.json").read_text())
RTOL = 1e-9


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


def close(actual, expected, rtol=RTOL):
    a = np.asarray([np.nan if v is None else v for v in np.atleast_1d(actual)], float)
    e = np.asarray([np.nan if v is None else v for v in np.atleast_1d(expected)], float)
    np.testing.assert_allclose(a, e, rtol=rtol, atol=1e-12, equal_nan=True)


def as_list(value):
    """R's write_json(auto_unbox=TRUE) writes length-1 vectors as scalars."""
    return value if isinstance(value, list) else [value]


def check_curve(fit: km.KaplanMeier, ref: dict, start: int, stop: int, idx: int, times):
    close(fit.time, ref["time"][start:stop])
    close(fit.survival, ref["surv"][start:stop])
    close(fit.std_err, ref["std_err"][start:stop])
    close(fit.lower, ref["lower"][start:stop])
    close(fit.upper, ref["upper"][start:stop])
    close(fit.n_risk, ref["n_risk"][start:stop])
    med = fit.median()
    close(med[0], as_list(ref["median"])[idx])
    close(med[1], as_list(ref["median_lower"])[idx])
    close(med[2], as_list(ref["median_upper"])[idx])


@pytest.mark.parametrize("key, conf_type", [("km_lung_all", "log"), ("km_lung_loglog", "log-log"),
                                            ("km_lung_plain", "plain")])
def test_single_curve_matches_survfit(key, conf_type):
    lung = data("lung")
    ref = REF[key]
    fit = km.kaplan_meier(lung.time, lung.status, conf_type=conf_type)
    check_curve(fit, ref, 0, len(ref["time"]), 0, ref["at_time"])
    rows = fit.at(as_list(ref["at_time"]))
    close([r["survival"] for r in rows], as_list(ref["at_surv"]))
    close([r["lower"] for r in rows], ref["at_lower"])
    close([r["upper"] for r in rows], ref["at_upper"])
    assert [r["at_risk"] for r in rows] == as_list(ref["at_risk"])


@pytest.mark.parametrize("key, dataset, time, event, group", [
    ("km_lung_sex", "lung", "time", "status", "sex"),
    ("km_veteran_celltype", "veteran", "time", "status", "celltype"),
    ("km_ovarian_rx", "ovarian", "futime", "fustat", "rx"),
])
def test_grouped_curves_median_ci_and_at_risk(key, dataset, time, event, group):
    df = data(dataset)
    ref = REF[key]
    comparison = km.km_comparison(df[time], df[event], df[group], at=[100.0])
    curves = comparison.curves
    assert list(curves) == comparison.groups
    bounds = np.concatenate([[0], np.cumsum(ref["strata"])])
    at_strata = ref["at_strata"]
    for idx, (label, fit) in enumerate(curves.items()):
        check_curve(fit, ref, bounds[idx], bounds[idx + 1], idx, ref["at_time"])
        # summary(fit, times=) rows of this group (R drops times after the last follow-up)
        mine = [r for r in fit.at(sorted(set(ref["at_time"]))) if r["survival"] is not None]
        theirs = [i for i, s in enumerate(at_strata) if s.endswith(f"={label}")]
        assert len(mine) == len(theirs)
        close([r["survival"] for r in mine], [ref["at_surv"][i] for i in theirs])
        close([r["lower"] for r in mine], [ref["at_lower"][i] for i in theirs])
        assert [r["at_risk"] for r in mine] == [ref["at_risk"][i] for i in theirs]
    # to_dict is the `analyze km --json` object: per group the median (CI) and the `at` rows
    out = comparison.to_dict()
    assert [g["group"] for g in out["groups"]] == comparison.groups
    for g in out["groups"]:
        fit = curves[g["group"]]
        assert (g["median"], g["median_lower"], g["median_upper"]) == fit.median()
        assert (g["n"], g["events"], g["at"]) == (fit.n, fit.events, fit.at([100.0]))
    direct = km.logrank_test(df[time], df[event], df[group])
    assert out["logrank"] == {"chisq": direct.chisq, "df": direct.df, "p": direct.p}


def test_quantiles_with_ci_match_quantile_survfit():
    lung = data("lung")
    ref = REF["quantile_lung_sex"]
    curves = km.km_comparison(lung.time, lung.status, lung.sex).curves
    for i, fit in enumerate(curves.values()):
        for j, prob in enumerate((0.25, 0.75)):
            est, lo, hi = fit.quantile(prob)
            close([est, lo, hi], [ref["q"][i][j], ref["lower"][i][j], ref["upper"][i][j]])


def test_median_on_exact_half_plateau_is_midpoint():
    ref = REF["km_half"]
    fit = km.kaplan_meier([1, 2, 3, 4, 5, 6], [1, 1, 1, 0, 1, 1])
    med, lo, hi = fit.median()
    assert med == ref["median"] == 4.0  # S = 0.5 on [3, 5): midpoint of 3 and 5
    assert lo == ref["median_lower"]
    assert hi is None and ref["median_upper"] is None


@pytest.mark.parametrize("key, dataset, group, strata, rho", [
    ("logrank_lung_sex", "lung", "sex", None, 0),
    ("logrank_veteran_celltype", "veteran", "celltype", None, 0),
    ("logrank_veteran_celltype_strat", "veteran", "celltype", "trt", 0),
    ("logrank_colon_rx_strat", "colon", "rx", "etype", 0),
    ("logrank_lung_ecog_rho1", "lung", "ph.ecog", None, 1),
])
def test_logrank_matches_survdiff(key, dataset, group, strata, rho):
    df = data(dataset).dropna(subset=[group])
    ref = REF[key]
    res = km.logrank_test(df.time, df.status, df[group],
                          strata=None if strata is None else df[strata], rho=rho)
    close(res.chisq, ref["chisq"])
    assert res.df == ref["df"]
    close(res.p, ref["p"])
    k = len(res.groups)
    # stratified survdiff reports obs/exp per group and stratum (column-major k x strata)
    close(res.observed, np.reshape(ref["obs"], (-1, k)).sum(0))
    close(res.expected, np.reshape(ref["exp"], (-1, k)).sum(0))
    close(res.variance.ravel(order="F"), ref["var"], rtol=1e-8)


def test_trend_test_scores():
    lung = data("lung").dropna(subset=["ph.ecog"])
    res = km.logrank_trend(lung.time, lung.status, lung["ph.ecog"])
    close(res["chisq"], REF["trend_lung_ecog"]["chisq"])
    close(res["p"], REF["trend_lung_ecog"]["p"])
    # equally spaced scores give the same statistic whatever the origin
    res0 = km.logrank_trend(lung.time, lung.status, lung["ph.ecog"], scores=[0, 1, 2, 3])
    close(res0["chisq"], REF["trend_lung_ecog_scores0"]["chisq"])
    weighted = km.logrank_trend(lung.time, lung.status, lung["ph.ecog"], scores=[0, 1, 4, 9])
    assert weighted["chisq"] != pytest.approx(res["chisq"])


def test_pairwise_holm_matches_p_adjust():
    vet = data("veteran")
    rows = km.pairwise_logrank(vet.time, vet.status, vet.celltype)
    ref = REF["pairwise_veteran"]
    assert [[r["group1"], r["group2"]] for r in rows] == ref["pairs"]
    close([r["p"] for r in rows], ref["p"])
    close([r["p_adjusted"] for r in rows], ref["p_holm"])


def test_times_equal_up_to_rounding_are_tied_like_r():
    base = np.array([0.1 + 0.2, 0.3, 0.7, 0.6 + 0.1, 1.5, 1.2 + 0.3])
    time_ = np.concatenate([base + k for k in range(5)])
    status = np.tile([1, 1, 0, 1, 1, 0, 1, 0, 1, 1], 3)
    group = np.tile(["a", "b", "c"], 10)
    assert len(np.unique(time_)) > 15  # the raw floats differ
    ref = REF["neartie"]
    fit = km.kaplan_meier(time_, status)
    assert len(fit.time) == ref["n_times"]
    close(fit.survival, ref["surv"])
    close(km.logrank_test(time_, status, group).chisq, ref["logrank"])
    from pathomics_desktop.stats.cox import fit_cox_arrays

    x = np.tile([0, 1, 1, 0, 2], 6).astype(float)
    close(fit_cox_arrays(time_, status, x).coef, ref["coef"], rtol=1e-6)


def test_holm_adjust_monotone_and_capped():
    adj = km.holm_adjust([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(adj, [0.04, 0.09, 0.09, 0.5])


def test_survival_beyond_last_time_and_before_first():
    fit = km.kaplan_meier([2, 4, 6], [1, 0, 1])
    rows = fit.at([0, 5, 7])
    assert rows[0]["survival"] == 1.0 and rows[0]["at_risk"] == 3
    assert rows[1]["survival"] == pytest.approx(2 / 3) and rows[1]["at_risk"] == 1
    assert rows[2]["survival"] is None and rows[2]["at_risk"] == 0


def test_degenerate_inputs_raise_user_errors():
    with pytest.raises(UserError, match="at least two groups"):
        km.logrank_test([1, 2, 3], [1, 0, 1], ["a", "a", "a"])
    with pytest.raises(UserError, match="no events|none"):
        km.logrank_test([1, 2, 3, 4], [0, 0, 0, 0], ["a", "b", "a", "b"])
    with pytest.raises(UserError, match="0/1"):
        km.kaplan_meier([1, 2], [0, 3])
    with pytest.raises(UserError, match="negative"):
        km.kaplan_meier([-1, 2], [0, 1])
    with pytest.raises(UserError, match="missing"):
        km.kaplan_meier([np.nan, 2], [0, 1])
    # all censored: survival stays 1, no median, no NaN
    fit = km.kaplan_meier([1, 2, 3], [0, 0, 0])
    assert fit.median() == (None, None, None)
    assert np.all(fit.survival == 1.0)
