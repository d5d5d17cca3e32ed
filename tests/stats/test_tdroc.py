"""Cumulative/dynamic AUC(t) against scikit-survival values and a brute-force definition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import tdroc
from pathomics_desktop.stats.concordance import censoring_survival, evaluate_step_function

HERE = Path(__file__).parent
SKSURV = json.loads((HERE / "reference" / "markers_sksurv.json").read_text())


def load(case):
    d = pd.read_csv(HERE / "data" / f"{case['dataset']}.csv")
    col, _, val = case["event"].partition("==")
    d = d.dropna(subset=[case["time"], col, case["marker"]])
    e = ((d[col] == int(val)) if val else (d[col] == 1)).to_numpy()
    return d[case["time"]].to_numpy(float), e, d[case["marker"]].to_numpy(float)


@pytest.mark.parametrize("case", SKSURV["cases"], ids=lambda c: f"{c['dataset']}-{c['marker']}")
def test_auc_matches_sksurv(case):
    t, e, x = load(case)
    res = tdroc.cumulative_dynamic_auc(t, e, x, case["times"])
    np.testing.assert_allclose(res.auc, case["auc"], atol=1e-10, rtol=0)
    for k, at in enumerate(case["times"]):
        curve = tdroc.roc_curve_at(t, e, x, at)
        assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(case["auc"][k], abs=1e-10)
        assert curve["fpr"][0] == 0 and curve["tpr"][0] == 0 and curve["fpr"][-1] == 1 and curve["tpr"][-1] == 1
        assert np.all(np.diff(curve["fpr"]) >= 0) and np.all(np.diff(curve["tpr"]) >= 0)


def test_auc_equals_brute_force_definition_with_ties():
    rng = np.random.default_rng(8)
    n = 200
    t = rng.integers(1, 50, n).astype(float)
    e = rng.random(n) < 0.6
    x = np.round(rng.integers(0, 10, n) - 0.05 * t, 6)
    g_t, g_v = censoring_survival(t, e)
    g = evaluate_step_function(g_t, g_v, t)
    for at in (10.0, 25.0):
        case = e & (t <= at)
        ctrl = t > at
        w = 1 / g[case]
        k = (x[case][:, None] > x[ctrl][None, :]) + 0.5 * (x[case][:, None] == x[ctrl][None, :])
        expected = float((w[:, None] * k).sum() / (w.sum() * ctrl.sum()))
        assert tdroc.cumulative_dynamic_auc(t, e, x, [at]).auc[0] == pytest.approx(expected, abs=1e-12)


def test_all_times_in_one_pass_equal_the_pairwise_definition():
    """The one-pass kernel (every time at once, Fenwick trees over the marker's tie groups)
    against the pairwise sum at each of many times, given unsorted and repeated, on data with
    tied times, tied markers and censoring."""
    rng = np.random.default_rng(12)
    n = 300
    t = rng.integers(1, 40, n).astype(float)
    e = rng.random(n) < 0.55
    x = rng.integers(0, 25, n) + np.where(rng.random(n) < 0.2, 1e-9, 0.0)  # ties within 1e-8
    g_t, g_v = censoring_survival(t, e)
    g = evaluate_step_function(g_t, g_v, t)
    times = [30.0, 3.0, 17.5, 3.0, 9.0, 36.0, 22.0]
    res = tdroc.cumulative_dynamic_auc(t, e, x, times)
    xr = np.round(x)  # the tie groups: values within 1e-8 of each other
    for k, at in enumerate(times):
        case = e & (t <= at)
        ctrl = t > at
        w = 1 / g[case]
        kern = (xr[case][:, None] > xr[ctrl][None, :]) + 0.5 * (xr[case][:, None] == xr[ctrl][None, :])
        assert res.auc[k] == pytest.approx(float((w[:, None] * kern).sum() / (w.sum() * ctrl.sum())), abs=1e-12)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    case = SKSURV["cases"][2]
    t, e, x = load(case)
    a = tdroc.bootstrap_td_auc(t, e, x, case["times"], n_boot=40, seed=3)
    b = tdroc.bootstrap_td_auc(t, e, x, case["times"], n_boot=40, seed=3)
    np.testing.assert_array_equal(a.ci_lower, b.ci_lower)
    assert np.all(a.ci_lower <= a.auc) and np.all(a.auc <= a.ci_upper)
    out = a.to_dict()
    assert out == {"times": [float(v) for v in case["times"]], "auc": a.auc.tolist(),
                   "ci_lower": a.ci_lower.tolist(), "ci_upper": a.ci_upper.tolist()}


def test_training_censoring_distribution_is_used_when_given():
    case = SKSURV["cases"][0]
    t, e, x = load(case)
    same = tdroc.cumulative_dynamic_auc(t, e, x, [365.0], train_time=t, train_event=e)
    assert same.auc[0] == pytest.approx(case["auc"][1], abs=1e-10)


@pytest.mark.parametrize(
    "times, message",
    [([5000.0], "no controls"), ([0.5], "no cases"), ([], "at least one"), ([np.nan], "at least one")],
)
def test_times_outside_follow_up_are_user_errors(times, message):
    t = np.array([1.0, 2, 3, 4, 5, 6])
    e = np.array([1, 0, 1, 1, 0, 1])
    with pytest.raises(UserError, match=message):
        tdroc.cumulative_dynamic_auc(t, e, [1, 2, 3, 4, 5, 6], times)


def test_single_valued_marker_is_user_error():
    with pytest.raises(UserError, match="single value"):
        tdroc.cumulative_dynamic_auc([1, 2, 3, 4], [1, 1, 0, 1], [2, 2, 2, 2], [2.5])


def test_marker_values_closer_than_1e8_are_ties_like_sksurv():
    t = np.array([1.0, 2, 3, 4, 5, 6])
    e = np.array([1, 1, 0, 1, 0, 1])
    x_exact = np.array([2.0, 1, 1, 1, 0, 0])
    x_near = x_exact + np.array([0, 0, 1e-10, -1e-10, 0, 5e-11])
    a = tdroc.cumulative_dynamic_auc(t, e, x_exact, [2.5]).auc
    b = tdroc.cumulative_dynamic_auc(t, e, x_near, [2.5]).auc
    assert a[0] == pytest.approx(b[0], abs=1e-15)
