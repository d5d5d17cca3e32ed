"""Cox model (Efron/Breslow, categorical, strata, cluster), cox.zph and concordance vs R.

Reference values: tests/stats/reference/km_cox.json (tests/stats/r/km_cox_reference.R).
R stops Newton-Raphson at a relative log-likelihood change of 1e-9, so coefficients agree
to ~1e-8 relative and the PH tests (evaluated at those coefficients) to ~1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import cox

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "km_cox.json").read_text())


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


def lung_complete() -> pd.DataFrame:
    cols = ["time", "status", "age", "sex", "ph.ecog", "ph.karno", "wt.loss", "inst"]
    return data("lung")[cols].dropna()


def pbc_complete() -> pd.DataFrame:
    cols = ["time", "status", "age", "bili", "albumin", "edema", "protime", "sex"]
    df = data("pbc")[cols].dropna().copy()
    df["death"] = (df.status == 2).astype(int)
    df["log_bili"] = np.log(df.bili)
    return df


def colon_deaths() -> pd.DataFrame:
    df = data("colon")
    return df[df.etype == 2][["time", "status", "rx", "sex", "age", "nodes", "differ", "id"]].dropna()


CASES = {
    "cox_lung_efron": lambda: cox.fit_cox(lung_complete(), "time", "status", ["age", "sex", "ph.ecog"]),
    "cox_lung_breslow": lambda: cox.fit_cox(lung_complete(), "time", "status", ["age", "sex", "ph.ecog"],
                                            ties="breslow"),
    "cox_lung_cat": lambda: cox.fit_cox(lung_complete(), "time", "status",
                                        ["age", "sex", "ph.ecog", "wt.loss"], categorical=["ph.ecog"],
                                        reference={"ph.ecog": "1"}),
    "cox_lung_strata": lambda: cox.fit_cox(lung_complete(), "time", "status", ["age", "ph.ecog"],
                                           strata="sex"),
    "cox_lung_cluster": lambda: cox.fit_cox(lung_complete(), "time", "status",
                                            ["age", "sex", "ph.karno"], cluster="inst"),
    "cox_veteran_cat": lambda: cox.fit_cox(data("veteran"), "time", "status",
                                           ["trt", "celltype", "karno", "prior"]),
    "cox_veteran_breslow_strata": lambda: cox.fit_cox(data("veteran"), "time", "status",
                                                      ["karno", "age"], strata="celltype",
                                                      ties="breslow"),
    "cox_pbc": lambda: cox.fit_cox(pbc_complete(), "time", "death",
                                   ["age", "log_bili", "albumin", "edema", "protime"],
                                   categorical=["edema"]),
    "cox_colon_efron": lambda: cox.fit_cox(colon_deaths(), "time", "status",
                                           ["rx", "sex", "age", "nodes", "differ"],
                                           categorical=["differ"]),
    # 3 clusters for 4 coefficients: a rank-deficient robust variance (R's g-inverse)
    "cox_colon_robust_strata": lambda: cox.fit_cox(colon_deaths(), "time", "status",
                                                   ["rx", "age", "nodes"], strata="sex",
                                                   cluster="differ"),
    "cox_ovarian": lambda: cox.fit_cox(data("ovarian"), "futime", "fustat", ["age", "resid.ds"]),
}


@pytest.fixture(scope="module")
def fits():
    return {key: make() for key, make in CASES.items()}


@pytest.mark.parametrize("key", list(CASES))
def test_cox_matches_coxph(fits, key):
    fit, ref = fits[key], REF[key]
    np.testing.assert_allclose(fit.coef, ref["coef"], rtol=1e-6)
    np.testing.assert_allclose(fit.se, ref["se"], rtol=1e-6)
    np.testing.assert_allclose([fit.loglik_null, fit.loglik], ref["loglik"], rtol=1e-10)
    np.testing.assert_allclose(fit.lr["chisq"], ref["lr"], rtol=1e-7)
    np.testing.assert_allclose(fit.wald["chisq"], ref["wald"], rtol=1e-6)
    np.testing.assert_allclose(fit.score["chisq"], ref["score"], rtol=1e-9)
    np.testing.assert_allclose(fit.concordance, ref["concordance"], rtol=1e-12)
    assert fit.n == ref["n"] and fit.events == ref["nevent"]
    if "naive_se" in ref:
        np.testing.assert_allclose(fit.naive_se, ref["naive_se"], rtol=1e-6)
        np.testing.assert_allclose(fit.robust_score["chisq"], ref["robust_score"], rtol=1e-8)


@pytest.mark.parametrize("key", list(CASES))
def test_cox_zph_matches_r(fits, key):
    fit, ref = fits[key], REF[key]["zph"]
    zph = cox.cox_zph(fit)
    assert len(zph) == len(ref["terms"]) and list(zph)[-1] == "GLOBAL"
    np.testing.assert_allclose([v["chisq"] for v in zph.values()], ref["chisq"], rtol=1e-4)
    np.testing.assert_allclose([v["df"] for v in zph.values()], ref["df"])
    np.testing.assert_allclose([v["p"] for v in zph.values()], ref["p"], rtol=1e-4)


def test_dummy_names_and_table(fits):
    fit = fits["cox_lung_cat"]
    assert fit.names == ["age", "sex", "ph.ecog=0", "ph.ecog=2", "ph.ecog=3", "wt.loss"]
    row = fit.table()[1]
    assert set(row) == {"term", "coef", "se", "hr", "hr_lower", "hr_upper", "z", "p"}
    assert row["hr"] == pytest.approx(np.exp(row["coef"]))
    assert row["hr_lower"] == pytest.approx(np.exp(row["coef"] - 1.959963984540054 * row["se"]))


def test_stratified_concordance_of_the_fit_against_brute_force():
    """The fit's C is Harrell's C of its linear predictor over pairs within a stratum."""
    rng = np.random.default_rng(4)
    n = 300
    t = rng.integers(1, 40, n).astype(float)  # many tied times
    e = rng.random(n) < 0.6
    x = rng.integers(0, 5, n).astype(float)  # many tied risks
    s = rng.integers(0, 3, n)
    fit = cox.fit_cox_arrays(t, e, x[:, None], strata=s)
    eta = fit.linear_predictor
    conc = disc = tied = 0
    for i in range(n):
        if not e[i]:
            continue
        for j in range(n):
            if s[j] == s[i] and (t[j] > t[i] or (t[j] == t[i] and not e[j])):
                conc += eta[i] > eta[j]
                disc += eta[i] < eta[j]
                tied += eta[i] == eta[j]
    assert fit.concordance == pytest.approx((conc + tied / 2) / (conc + disc + tied), rel=1e-14)


def test_large_tied_fit_recovers_the_coefficients():
    rng = np.random.default_rng(0)
    n, p = 100_000, 10
    X = rng.normal(size=(n, p))
    beta = np.linspace(-0.5, 0.5, p)
    t = np.round(rng.exponential(np.exp(-X @ beta)) * 50)  # heavy ties
    c = np.round(rng.exponential(2, size=n) * 50)
    e = (t <= c).astype(int)
    fit = cox.fit_cox_arrays(np.minimum(t, c), e, X)  # timing: `pathomics bench stats`
    np.testing.assert_allclose(fit.coef, beta, atol=0.03)


def test_univariate_screen_and_multivariable():
    lung = data("lung")
    out = cox.multivariable_from_screen(lung, "time", "status",
                                        ["age", "sex", "ph.ecog", "meal.cal"], threshold=0.05)
    assert "sex" in out["selected"] and "ph.ecog" in out["selected"]
    assert "meal.cal" not in out["selected"]
    multi = out["multivariable"]
    assert set(multi.names) == set(out["selected"])
    uni_sex = next(r for r in out["univariate"] if r["variable"] == "sex")
    single = cox.fit_cox(lung[["time", "status", "sex"]].dropna(), "time", "status", ["sex"])
    assert uni_sex["coef"] == pytest.approx(single.coef[0])
    assert uni_sex["p_term_wald"] == pytest.approx(uni_sex["p"])  # one column: Wald z = term test
    assert uni_sex["p_term_lr"] == pytest.approx(single.lr["p"])
    wald = cox.multivariable_from_screen(lung, "time", "status", ["age", "sex"], threshold=0.05,
                                         selection_test="wald", forced=["age"])
    assert set(wald["selected"]) == {"sex", "age"}


def test_degenerate_models_raise_user_errors():
    rng = np.random.default_rng(1)
    t = rng.exponential(size=30)
    x = rng.normal(size=30)
    with pytest.raises(UserError, match="no|none"):
        cox.fit_cox_arrays(t, np.zeros(30), x)
    with pytest.raises(UserError, match="constant"):
        cox.fit_cox_arrays(t, np.ones(30), np.ones(30))
    with pytest.raises(UserError, match="too few events"):
        e = np.zeros(30)
        e[:2] = 1
        cox.fit_cox_arrays(t, e, rng.normal(size=(30, 3)))
    with pytest.raises(UserError, match="collinear"):
        cox.fit_cox_arrays(t, np.ones(30), np.column_stack([x, 2 * x]))
    # perfect separation: every event has x = 1 and happens before every x = 0 subject
    t_sep = np.arange(1, 31, dtype=float)
    x_sep = (t_sep <= 15).astype(float)
    e_sep = np.ones(30)
    with pytest.raises(UserError, match="did not converge|separated"):
        cox.fit_cox_arrays(t_sep, e_sep, x_sep)
    with pytest.raises(UserError, match="one value"):
        cox.fit_cox(pd.DataFrame({"t": t, "e": 1, "g": "a"}), "t", "e", ["g"], categorical=["g"])
    with pytest.raises(UserError, match="reference level"):
        cox.fit_cox(data("veteran"), "time", "status", ["celltype"], reference={"celltype": "x"})


def test_a_flat_monotone_likelihood_is_not_reported_as_an_estimate():
    """Two exposed subjects: one dies after everyone else has died or left, one is censored,
    so the likelihood rises forever as beta -> -inf. Newton-Raphson's step test can stop on
    the flat tail (|beta| sd ~ 14, SE ~ 1e7 SDs); the fit must refuse, not report an HR with
    an infinite interval (a subgroup of the forest hit this)."""
    t = np.array([51.8111, 34.4641, 25.4292, 24.4107, 15.6057, 14.4559, 13.0431, 10.0534, 8.9692, 5.6838,
                  5.3552, 2.4969])
    e = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1])
    x = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    for fit in (cox.fit_cox_arrays, cox.fit_cox_estimate):
        with pytest.raises(UserError, match="did not converge"):
            fit(t, e, x)
