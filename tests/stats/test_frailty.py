"""Gaussian frailty (mixed-effects) Cox model vs R coxph(... + frailty(center, "gaussian")).

Reference values: tests/stats/reference/frailty.json (tests/stats/r/frailty_reference.R).
R's REML outer loop stops at |residual| < 3e-5 (sqrt of eps) after at most 10 outer steps,
so we compare tightly with R run at eps = 1e-12 / outer.max = 60 ("_tight") and loosely
with R's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import frailty

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "frailty.json").read_text())


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


CASES = {
    # 4 "centers" (cell types): R's full (non-sparse) information
    "veteran": lambda: frailty.fit_frailty(data("veteran"), "time", "status", ["karno", "trt"],
                                           "celltype"),
    # 3 centers with a real center effect (synthetic, seeded in R)
    "sim": lambda: frailty.fit_frailty(data("frailty_sim"), "time", "status", ["risk", "score"],
                                       "center"),
    # 8 centers: R's sparse computation of the frailty block
    "sim8": lambda: frailty.fit_frailty(data("frailty_sim8"), "time", "status", ["x", "grp"],
                                        "center"),
}


@pytest.fixture(scope="module")
def fits():
    return {key: make() for key, make in CASES.items()}


@pytest.mark.parametrize("key", list(CASES))
def test_frailty_matches_r_tight(fits, key):
    fit, ref = fits[key], REF[f"{key}_tight"]
    p = len(fit.coef)
    np.testing.assert_allclose(fit.variance, ref["theta"], rtol=1e-6)
    np.testing.assert_allclose(fit.coef, ref["coef"][:p], rtol=1e-6)
    np.testing.assert_allclose(fit.se, ref["se"][:p], rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.var2)), ref["se2"][:p], rtol=1e-6)
    effects = ref["frail"] if ref["frail"] else ref["coef"][p:]  # sparse fits keep them apart
    np.testing.assert_allclose(fit.center_effects, effects, rtol=1e-5, atol=1e-7)
    assert fit.sparse == (key == "sim8")


@pytest.mark.parametrize("key", list(CASES))
def test_frailty_close_to_r_defaults(fits, key):
    fit, ref = fits[key], REF[f"{key}_default"]
    np.testing.assert_allclose(fit.variance, ref["theta"], rtol=1e-3)
    np.testing.assert_allclose(fit.coef, ref["coef"][: len(fit.coef)], rtol=1e-4)


def test_breslow_ties():
    fit = frailty.fit_frailty(data("veteran"), "time", "status", ["karno", "trt"], "celltype",
                              ties="breslow")
    ref = REF["veteran_breslow_tight"]
    np.testing.assert_allclose(fit.variance, ref["theta"], rtol=1e-6)
    np.testing.assert_allclose(fit.coef, ref["coef"][:2], rtol=1e-6)
    np.testing.assert_allclose(fit.se, ref["se"][:2], rtol=1e-6)


def test_no_center_variation_gives_zero_variance():
    # lung institutions: REML drives theta to ~0 (R: 1.3e-6 at tight tolerance)
    lung = data("lung")[["time", "status", "age", "sex", "inst", "ph.ecog"]].dropna()  # as R
    fit = frailty.fit_frailty(lung, "time", "status", ["age", "sex"], "inst")
    ref = REF["lung_tight"]
    assert fit.variance < 1e-4
    np.testing.assert_allclose(fit.coef, ref["coef"][:2], rtol=1e-5)
    np.testing.assert_allclose(fit.se, ref["se"][:2], rtol=1e-5)


def test_table_rows_and_errors():
    fit = CASES["sim"]()
    row = fit.table()[0]
    assert set(row) == {"term", "coef", "se", "hr", "hr_lower", "hr_upper", "z", "p"}
    assert row["hr_lower"] < row["hr"] < row["hr_upper"]
    df = data("frailty_sim")
    with pytest.raises(UserError, match="two centers"):
        frailty.fit_frailty(df.assign(center="A"), "time", "status", ["risk"], "center")
    with pytest.raises(UserError, match="no events|none"):
        frailty.fit_frailty(df.assign(status=0), "time", "status", ["risk"], "center")
    with pytest.raises(UserError, match="constant"):
        frailty.fit_frailty(df.assign(risk=1), "time", "status", ["risk"], "center")
