"""Gaussian frailty (mixed-effects) Cox model vs R coxph(... + frailty(center, "gaussian")).

Reference values: tests/stats/reference/frailty.json, written by
tests/stats/r/frailty_reference.R (survival 3.5-3). ``<case>_default`` is R with its
default ``coxph.control()`` - what ``print(fit)`` shows and what our default reproduces,
iteration for iteration; ``<case>_tight`` is R with eps = 1e-12, outer.max = 60, which our
``exact=True`` (fully converged REML) matches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import frailty
from pathomics_desktop.stats.cox import design_matrix, fit_cox

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "frailty.json").read_text())


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


def lung() -> pd.DataFrame:
    return data("lung")[["time", "status", "age", "sex", "inst", "ph.ecog"]].dropna()  # as R


def colon_deaths() -> pd.DataFrame:
    colon = data("colon")
    deaths = colon[colon["etype"] == 2].copy()
    deaths["site"] = "s" + (deaths["id"] % 12).astype(str)  # made-up 12-site center
    return deaths


def pbc() -> pd.DataFrame:
    df = data("pbc")
    df = df[df["stage"].notna()].copy()
    df["death"] = (df["status"] == 2).astype(int)
    df["logbili"] = np.log(df["bili"])
    df["site"] = "s" + (df["id"] % 9).astype(str)  # made-up 9-site center
    return df


# case -> (frame, time, event, covariates, center, options); sparse = more than 5 centers
CASES = {
    "lung": (lung, "time", "status", ["age", "sex"], "inst", {}),  # 18 inst, theta -> 0
    "lung_ecog": (lung, "time", "status", ["age", "sex"], "ph.ecog", {}),  # 4 levels
    "veteran": (lambda: data("veteran"), "time", "status", ["karno", "trt"], "celltype", {}),
    "veteran_breslow": (lambda: data("veteran"), "time", "status", ["karno", "trt"], "celltype",
                        {"ties": "breslow"}),
    "veteran_fixed": (lambda: data("veteran"), "time", "status", ["karno", "trt"], "celltype",
                      {"theta": 0.5}),
    "veteran_sparse": (lambda: data("veteran"), "time", "status", ["karno", "trt"], "celltype",
                       {"sparse": True}),
    "sim": (lambda: data("frailty_sim"), "time", "status", ["risk", "score"], "center", {}),
    "sim8": (lambda: data("frailty_sim8"), "time", "status", ["x", "grp"], "center", {}),
    "sim8_fixed": (lambda: data("frailty_sim8"), "time", "status", ["x", "grp"], "center",
                   {"theta": 0.3}),
    "sim8_dense": (lambda: data("frailty_sim8"), "time", "status", ["x", "grp"], "center",
                   {"sparse": False}),
    "rats": (lambda: data("rats"), "time", "status", ["rx", "sex"], "litter", {}),  # 100 litters
    "colon_extent": (colon_deaths, "time", "status", ["rx", "age", "sex", "obstruct", "node4"],
                     "extent", {}),
    "colon_site12": (colon_deaths, "time", "status", ["age", "sex", "obstruct", "node4"], "site",
                     {}),
    "pbc_stage": (pbc, "time", "death", ["age", "logbili", "albumin"], "stage", {}),
    "pbc_site9": (pbc, "time", "death", ["age", "logbili", "albumin", "edema"], "site", {}),
}
SPARSE = {"lung", "veteran_sparse", "sim8", "sim8_fixed", "rats", "colon_site12", "pbc_site9"}


def fit_case(key: str, exact: bool = False) -> frailty.FrailtyFit:
    make, time, event, covariates, center, options = CASES[key]
    frame = make()
    options = dict(options)
    theta = options.pop("theta", None)
    if theta is None:
        return frailty.fit_frailty(frame, time, event, covariates, center, exact=exact, **options)
    X, names, terms = design_matrix(frame, covariates)
    return frailty.fit_frailty_arrays(frame[time], frame[event], X, frame[center], names=names,
                                      terms=terms, theta=theta, exact=exact, **options)


@pytest.fixture(scope="module")
def default_fits():
    return {key: fit_case(key) for key in CASES}


@pytest.mark.parametrize("key", list(CASES))
def test_matches_r_default_printout(default_fits, key):
    """Everything print(fit) shows, to ~1e-13 here (1e-8 asserted), with R's iteration counts."""
    fit, ref = default_fits[key], REF[f"{key}_default"]
    rtol = 1e-8
    assert not fit.exact and fit.sparse == (key in SPARSE)
    np.testing.assert_allclose(fit.coef, ref["coef"], rtol=rtol)
    np.testing.assert_allclose(fit.se, ref["se"], rtol=rtol)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.var2)), ref["se2"], rtol=rtol)
    # "Variance of random effect=": the theta of the last fit, not R's next proposal
    np.testing.assert_allclose(fit.variance, ref["theta"], rtol=rtol)
    np.testing.assert_allclose([fit.loglik_init, fit.loglik], ref["loglik"], rtol=rtol)
    np.testing.assert_allclose(fit.center_effects, ref["frail"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([fit.frailty_chisq, fit.frailty_df, fit.frailty_p],
                               [ref["frail_chisq"], ref["frail_df"], ref["frail_p"]], rtol=rtol)
    np.testing.assert_allclose(list(fit.term_df.values()), ref["df"], rtol=rtol)
    assert fit.lr_df == ref["lr_df"]
    np.testing.assert_allclose([fit.lr_chisq, fit.lr_p], [ref["lr_chisq"], ref["lr_p"]], rtol=1e-7)
    # "Iterations: k outer, m Newton-Raphson" and the REML history (theta, residual)
    assert [fit.outer_iterations, fit.newton_iterations] == ref["iter"]
    if ref["history"]:  # (none for a fixed theta)
        np.testing.assert_allclose([h[:2] for h in fit.history], ref["history"], rtol=1e-7,
                                   atol=1e-12)
    assert fit.n == ref["n"] and fit.events == ref["nevent"]


def test_printed_digits_of_rats():
    """The rats printout, digit for digit (R: coef 0.794 / -3.095, se 0.313 / 0.735, ...)."""
    fit = fit_case("rats")
    printed = "\n".join(REF["rats_default"]["printed"])
    for value in (fit.coef[0], fit.se[0], np.sqrt(fit.var2[0, 0]), (fit.coef[0] / fit.se[0]) ** 2):
        assert f"{value:.3f}" in printed
    assert f"{fit.coef[1]:.3f}" in printed and f"{fit.frailty_chisq:.3f}" in printed
    assert f"Variance of random effect= {fit.variance:.3g}" in printed
    assert f"Iterations: {fit.outer_iterations} outer, {fit.newton_iterations} Newton" in printed


def test_lung_reports_last_halving_step():
    # REML pushes theta to 0; R halves theta from 1/3 and stops after 10 outer fits,
    # printing the 10th fit's theta 1/768 (its fit$history[[1]]$theta is the next, 1/1536)
    fit = fit_case("lung")
    assert fit.variance == pytest.approx(1 / 768, rel=1e-12)
    assert [h[0] for h in fit.history] == pytest.approx([1, 1 / 3] + [1 / 3 / 2 ** k
                                                                      for k in range(1, 9)])
    assert REF["lung_default"]["theta_next"] == pytest.approx(1 / 1536)


# R's tight run is itself converged to ~1e-7 in these cases (REML residual < 1e-6)
TIGHT = ["lung_ecog", "veteran", "veteran_breslow", "veteran_fixed", "sim", "sim8", "sim8_fixed",
         "sim8_dense", "rats", "colon_extent", "pbc_stage"]


@pytest.mark.parametrize("key", TIGHT)
def test_exact_matches_r_tight(key):
    fit, ref = fit_case(key, exact=True), REF[f"{key}_tight"]
    assert fit.exact
    np.testing.assert_allclose(fit.variance, ref["theta"], rtol=3e-6)
    np.testing.assert_allclose(fit.coef, ref["coef"], rtol=1e-6)
    np.testing.assert_allclose(fit.se, ref["se"], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.var2)), ref["se2"], rtol=1e-6)
    np.testing.assert_allclose(fit.loglik, ref["loglik"][1], rtol=1e-8)
    np.testing.assert_allclose(fit.center_effects, ref["frail"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fit.frailty_df, ref["frail_df"], rtol=3e-6)


def test_default_differs_from_converged_like_r():
    # the point of the default: R's early stop moves theta by ~1e-5 relative on sim
    default, exact = fit_case("sim"), fit_case("sim", exact=True)
    assert abs(default.variance / exact.variance - 1) > 5e-6
    assert default.variance == pytest.approx(REF["sim_default"]["theta"], rel=1e-10)
    assert exact.variance == pytest.approx(REF["sim_tight"]["theta"], rel=1e-6)


def test_exact_lung_gives_zero_variance():
    # lung institutions: the converged REML theta is ~0 (R: 1.3e-6 at tight tolerance)
    fit = fit_case("lung", exact=True)
    ref = REF["lung_tight"]
    assert fit.variance < 1e-4
    np.testing.assert_allclose(fit.coef, ref["coef"], rtol=1e-5)
    np.testing.assert_allclose(fit.se, ref["se"], rtol=1e-5)


def test_zero_theta_is_ordinary_cox():
    df = data("frailty_sim")
    X, names, _ = design_matrix(df, ["risk", "score"])
    fit = frailty.fit_frailty_arrays(df["time"], df["status"], X, df["center"], names=names,
                                     theta=0.0)
    cox = fit_cox(df, "time", "status", ["risk", "score"])
    np.testing.assert_allclose(fit.coef, cox.coef, rtol=1e-8)
    assert fit.variance == 0.0 and not np.any(fit.center_effects)


def test_table_rows_and_errors():
    fit = fit_case("sim")
    row = fit.table()[0]
    assert set(row) == {"term", "coef", "se", "hr", "hr_lower", "hr_upper", "z", "p"}
    assert row["hr_lower"] < row["hr"] < row["hr_upper"]
    assert row["coef"] == pytest.approx(REF["sim_default"]["coef"][0], rel=1e-10)
    df = data("frailty_sim")
    with pytest.raises(UserError, match="two centers"):
        frailty.fit_frailty(df.assign(center="A"), "time", "status", ["risk"], "center")
    with pytest.raises(UserError, match="no events|none"):
        frailty.fit_frailty(df.assign(status=0), "time", "status", ["risk"], "center")
    with pytest.raises(UserError, match="constant"):
        frailty.fit_frailty(df.assign(risk=1), "time", "status", ["risk"], "center")
    with pytest.raises(UserError, match="center column has 1 missing"):
        frailty.fit_frailty(df.assign(center=[None] + list(df["center"][1:])), "time", "status",
                            ["risk"], "center")
    X, names, _ = design_matrix(df, ["risk"])
    with pytest.raises(UserError, match=">= 0"):
        frailty.fit_frailty_arrays(df["time"], df["status"], X, df["center"], theta=-1.0)
