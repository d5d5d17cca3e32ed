"""Harrell's and Uno's C against R survival::concordance, scikit-survival and brute force."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines.utils import concordance_index as lifelines_c
from scipy.stats import norm

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import concordance as cc

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "markers_reference.json").read_text())
SKSURV = json.loads((HERE / "reference" / "markers_sksurv.json").read_text())


def dataset(name: str) -> pd.DataFrame:
    d = pd.read_csv(HERE / "data" / f"{name}.csv")
    if name == "colon":
        d = d[d.etype == 2]
    if "status" in d and name in ("lung", "pbc"):
        d["event"] = (d.status == 2).astype(int)
    return d


def brute_force(t, e, x, w=None):
    """O(n^2) Harrell/weighted C straight from the definition."""
    t, e, x = map(np.asarray, (t, e, x))
    e = e.astype(bool)
    w = np.ones(t.size) if w is None else np.asarray(w)
    later = (t[None, :] > t[:, None]) | ((t[None, :] == t[:, None]) & ~e[None, :])
    comp = later & e[:, None]
    kern = (x[:, None] > x[None, :]) + 0.5 * (x[:, None] == x[None, :])
    return float((w[:, None] * comp * kern).sum() / (w[:, None] * comp).sum())


@pytest.mark.parametrize("case", REF["concordance"], ids=lambda c: f"{c['dataset']}-{c['marker']}")
def test_harrell_matches_r_concordance(case):
    d = dataset(case["dataset"]).dropna(subset=[case["time"], case["event"], case["marker"]])
    assert len(d) == case["n"]
    res = cc.harrell_c(d[case["time"]], d[case["event"]], d[case["marker"]])
    assert res.c == pytest.approx(case["c"], abs=1e-12)
    assert res.se**2 == pytest.approx(case["var"], rel=1e-9)
    assert res.concordant == case["count"]["concordant"]
    assert res.discordant == case["count"]["discordant"]
    assert res.tied_x == case["count"]["tied.x"]
    counts = cc.concordance_counts(d[case["time"]], d[case["event"]], d[case["marker"]])
    assert counts["concordant"] == case["count"]["concordant"]


def test_tied_times_event_vs_censored_is_comparable_as_in_r():
    # R: concordance(Surv(c(2,2), c(1,0)) ~ c(2,1), reverse=TRUE) -> 1 concordant pair
    assert cc.concordance_counts([2, 2], [1, 0], [2, 1]) == {"concordant": 1.0, "discordant": 0.0, "tied_x": 0.0, "comparable": 1.0}
    # two events at the same time are not comparable
    assert cc.concordance_counts([2, 2, 3], [1, 1, 0], [2, 1, 0])["comparable"] == 2.0
    # R reference for a small example: 14 concordant, 2 discordant, se 0.1205
    res = cc.harrell_c([1, 2, 2, 3, 4, 4, 5], [1, 1, 0, 1, 0, 1, 1], [5, 3, 4, 4, 1, 2, 0])
    assert (res.concordant, res.discordant) == (14, 2)
    assert res.se == pytest.approx(0.1205, abs=5e-5)


@pytest.mark.parametrize("seed", range(6))
def test_harrell_equals_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    t = rng.integers(1, 15, n).astype(float)
    e = rng.random(n) < 0.6
    e[0] = True
    x = rng.integers(0, 6, n).astype(float)
    x[1] = x[0] + 1
    assert cc.harrell_c(t, e, x).c == pytest.approx(brute_force(t, e, x), abs=1e-12)


def test_ij_influence_equals_numerical_derivative():
    rng = np.random.default_rng(3)
    n = 40
    t = rng.integers(1, 10, n).astype(float)
    e = rng.random(n) < 0.7
    x = rng.integers(0, 5, n).astype(float)
    res = cc.harrell_c(t, e, x)
    # weighted C, d/dw_k at w = 1
    later = (t[None, :] > t[:, None]) | ((t[None, :] == t[:, None]) & ~e[None, :])
    comp = (later & e[:, None]).astype(float)
    kern = comp * ((x[:, None] > x[None, :]) + 0.5 * (x[:, None] == x[None, :]))

    def c_of(w):
        return (w @ kern @ w) / (w @ comp @ w)

    h = 1e-6
    for k in (0, 7, 21):
        w = np.ones(n)
        w[k] += h
        assert (c_of(w) - c_of(np.ones(n))) / h == pytest.approx(res.influence[k], abs=1e-6)


@pytest.mark.parametrize("case", REF["paired"], ids=lambda c: c["dataset"])
def test_paired_ij_variance_matches_r(case):
    d = dataset(case["dataset"]).dropna(subset=[case["time"], case["event"], case["marker1"], case["marker2"]])
    res = cc.compare_c(d[case["time"]], d[case["event"]], d[case["marker1"]], d[case["marker2"]])
    assert res.c1 == pytest.approx(case["c1"], abs=1e-12)
    assert res.c2 == pytest.approx(case["c2"], abs=1e-12)
    assert res.se**2 == pytest.approx(case["var_diff"], rel=1e-9)
    se = np.sqrt(case["var_diff"])
    d = case["c1"] - case["c2"]
    assert res.ci_lower == pytest.approx(d - 1.959963984540054 * se, rel=1e-8)
    assert res.ci_upper == pytest.approx(d + 1.959963984540054 * se, rel=1e-8)
    assert res.p_value == pytest.approx(2 * norm.sf(abs(d) / se), rel=1e-8)
    assert res.to_dict()["p_value"] == res.p_value and res.to_dict()["method"] == "ij"


def test_paired_bootstrap_uses_the_same_resamples():
    d = dataset("pbc").dropna(subset=["bili", "albumin"])
    a = cc.compare_c(d.time, d.event, d.bili, -d.albumin, method="bootstrap", n_boot=200, seed=5)
    b = cc.compare_c(d.time, d.event, d.bili, -d.albumin, method="bootstrap", n_boot=200, seed=5)
    assert a == b
    assert a.ci_lower < a.difference < a.ci_upper
    # the same marker twice: every paired resample gives difference 0
    same = cc.compare_c(d.time, d.event, d.bili, d.bili, method="bootstrap", n_boot=50, seed=1)
    assert same.difference == 0 and same.ci_lower == 0 and same.ci_upper == 0 and same.p_value == 1.0


def test_bootstrap_replicates_equal_direct_computation_on_the_resamples():
    rng = np.random.default_rng(11)
    n = 150
    t = rng.integers(1, 40, n).astype(float)
    e = rng.random(n) < 0.6
    x = np.round(rng.normal(size=n) - 0.02 * t, 1)
    res = cc.bootstrap_c(t, e, x, n_boot=60, seed=4)
    idx = np.random.default_rng(4).integers(0, n, size=(60, n))
    direct = np.array([cc.harrell_c(t[i], e[i], x[i], influence=False).c for i in idx])
    np.testing.assert_allclose(res.samples, direct, atol=1e-12)
    lo, hi = np.quantile(direct, [0.025, 0.975])
    assert (res.ci_lower, res.ci_upper) == pytest.approx((lo, hi), abs=1e-12)
    assert res.c == cc.harrell_c(t, e, x).c
    # large-n path (resampled arrays) agrees with the dense path
    large = cc._boot_stats(t, e, [x], 20, np.random.default_rng(9), None)[:, 0]
    old = cc._DENSE_MAX_N
    try:
        cc._DENSE_MAX_N = 10
        loop = cc._boot_stats(t, e, [x], 20, np.random.default_rng(9), None)[:, 0]
    finally:
        cc._DENSE_MAX_N = old
    assert np.isfinite(loop).all() and loop.shape == large.shape


@pytest.mark.parametrize("case", SKSURV["cases"], ids=lambda c: f"{c['dataset']}-{c['marker']}")
def test_uno_matches_sksurv(case):
    d = pd.read_csv(HERE / "data" / f"{case['dataset']}.csv")
    col, _, val = case["event"].partition("==")
    d = d.dropna(subset=[case["time"], col, case["marker"]])
    e = (d[col] == int(val)) if val else (d[col] == 1)
    res = cc.uno_c(d[case["time"]], e, d[case["marker"]], tau=case["tau"])
    assert res.c == pytest.approx(case["uno_c"], abs=1e-10)


def test_uno_equals_weighted_brute_force_and_bootstrap_runs():
    rng = np.random.default_rng(2)
    n = 120
    t = rng.integers(1, 30, n).astype(float)
    e = rng.random(n) < 0.7
    x = rng.integers(0, 8, n).astype(float)
    tau = 20.0
    g_t, g_v = cc.censoring_survival(t, e)
    g = cc.evaluate_step_function(g_t, g_v, t)
    use = e & (t < tau)
    w = np.zeros(n)
    w[use] = 1 / g[use] ** 2
    assert cc.uno_c(t, e, x, tau).c == pytest.approx(brute_force(t, e, x, w), abs=1e-12)
    boot = cc.bootstrap_c(t, e, x, n_boot=30, seed=0, method="uno", tau=tau)
    assert boot.ci_lower <= boot.ci_upper


def test_harrell_on_a_large_tied_sample_equals_lifelines():
    """300,000 subjects with tied times and markers (timing: ``pathomics bench stats``)."""
    rng = np.random.default_rng(0)
    n = 300_000
    t = np.round(rng.exponential(size=n), 2)
    e = rng.random(n) < 0.7
    x = np.round(rng.normal(size=n) - t, 1)
    res = cc.harrell_c(t, e, x, influence=False)
    assert res.c == pytest.approx(lifelines_c(t, -x, e), abs=1e-12)  # lifelines: higher = longer survival


@pytest.mark.parametrize(
    "args, message",
    [
        (([1, 2, 3], [0, 0, 0], [1, 2, 3]), "no events"),
        (([1, 2, 3], [1, 0, 1], [4, 4, 4]), "single value"),
        (([1, 2, 3], [1, 0, 1], [1, np.nan, 3]), "not finite"),
        (([1, 2], [1, 0, 1], [1, 2, 3]), "values"),
        (([1, -2, 3], [1, 0, 1], [1, 2, 3]), "negative"),
        (([1, 2, 3], [1, 2, 1], [1, 2, 3]), "0/1"),
        (([2, 2, 2], [1, 1, 1], [1, 2, 3]), "no comparable pairs"),
    ],
)
def test_degenerate_input_raises_user_error(args, message):
    with pytest.raises(UserError, match=message):
        cc.harrell_c(*args)


def test_uno_tau_before_first_event_is_user_error():
    with pytest.raises(UserError, match="tau"):
        cc.uno_c([5, 6, 7], [1, 1, 0], [1, 2, 3], tau=1.0)
