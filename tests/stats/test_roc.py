"""Binary ROC: AUC, DeLong CI and test against R pROC and an O(n^2) DeLong implementation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import roc

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "markers_reference.json").read_text())


def direct_delong(y, scores):
    """DeLong et al. (1988) structural components computed pair by pair (O(m n))."""
    y = np.asarray(y, dtype=bool)
    v10, v01, aucs = [], [], []
    for s in scores:
        s = np.asarray(s, dtype=float)
        psi = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = y.sum(), (~y).sum()
    cov = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    return np.array(aucs), np.atleast_2d(cov)


@pytest.mark.parametrize("case", REF["roc"], ids=lambda c: c["dataset"])
def test_matches_proc(case):
    d = pd.read_csv(HERE / "data" / f"{case['dataset']}.csv")
    d["event"] = (d.status == 2).astype(int)
    d = d.dropna(subset=[case["label"], case["score"], case["vs"]])
    res = roc.roc_analysis(d[case["label"]], d[case["score"]], vs=d[case["vs"]])
    assert res.auc == pytest.approx(case["auc"], abs=1e-12)
    assert res.auc2 == pytest.approx(case["auc2"], abs=1e-12)
    assert res.se**2 == pytest.approx(case["var"], rel=1e-9)
    assert res.ci_lower == pytest.approx(case["ci_lower"], abs=1e-10)
    assert res.ci_upper == pytest.approx(case["ci_upper"], abs=1e-10)
    assert res.delong_p == pytest.approx(case["delong_p"], rel=1e-8)
    # the Youden point: same sensitivity/specificity/PPV/NPV as pROC (pROC reports the midpoint
    # threshold, we report the observed score c of the rule "score >= c")
    for key in ("sensitivity", "specificity", "ppv", "npv"):
        if case[key] is None:
            assert getattr(res, key) is None
        else:
            assert getattr(res, key) == pytest.approx(case[key], abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_fast_delong_equals_direct(seed):
    rng = np.random.default_rng(seed)
    n = 120
    y = rng.random(n) < 0.4
    s1 = np.round(rng.normal(size=n) + y, 1)
    s2 = np.round(s1 + rng.normal(size=n), 1)
    aucs, cov = direct_delong(y, [s1, s2])
    test = roc.delong_test(y, s1, s2)
    assert test["auc1"] == pytest.approx(aucs[0], abs=1e-12)
    z = (aucs[0] - aucs[1]) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert test["z"] == pytest.approx(z, rel=1e-10)
    assert test["p"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)
    auc, se, lo, hi = roc.delong_auc(y, s1)
    assert se == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-10)


def test_classification_table_and_youden():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9, 0.5, 0.3])
    tab = roc.classification_at(y, s, 0.4)
    assert (tab["tp"], tab["fp"], tab["tn"], tab["fn"]) == (3, 1, 3, 1)
    assert tab["sensitivity"] == 0.75 and tab["specificity"] == 0.75 and tab["ppv"] == 0.75 and tab["npv"] == 0.75
    cut = roc.youden_cut(y, s)
    j = {c: roc.classification_at(y, s, c) for c in s}
    best = max(v["sensitivity"] + v["specificity"] for v in j.values())
    assert j[cut]["sensitivity"] + j[cut]["specificity"] == best


@pytest.mark.parametrize(
    "label, score, message",
    [
        ([1, 1, 1], [1, 2, 3], "single class"),
        ([0, 1, 2], [1, 2, 3], "0/1"),
        ([0, 1, 1], [1, np.nan, 3], "not finite"),
        (["a", "b", "a"], [1, 2, 3], "0/1"),
    ],
)
def test_bad_input_is_user_error(label, score, message):
    with pytest.raises(UserError, match=message):
        roc.roc_analysis(label, score)
