"""maxstat (vs R maxstat), X-tile maps (vs direct log-rank tests), validation (vs survdiff/coxph)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import cutpoint as cp

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "markers_reference.json").read_text())


def dataset(name):
    d = pd.read_csv(HERE / "data" / f"{name}.csv")
    if name == "colon":
        d = d[d.etype == 2]
    if name in ("lung", "pbc"):
        d["event"] = (d.status == 2).astype(int)
    return d


@pytest.mark.parametrize("case", REF["maxstat"], ids=lambda c: f"{c['dataset']}-{c['marker']}")
def test_maxstat_matches_r(case):
    d = dataset(case["dataset"]).dropna(subset=[case["time"], case["event"], case["marker"]])
    res = cp.maxstat_cutpoint(d[case["time"]], d[case["event"]], d[case["marker"]], minprop=case["minprop"])
    assert res.statistic == pytest.approx(case["statistic"], rel=1e-10)
    assert res.cutpoint == case["cutpoint"]
    # R's Lau94 approximation can exceed 1 for small statistics (we report 1) and loses all
    # precision below ~1e-12 (R may even print a negative value); we clip to [p_raw, 1]
    if case["p"] > 1e-9:
        assert res.p_adjusted == pytest.approx(min(1.0, case["p"]), rel=1e-6)
    else:
        assert res.p_raw <= res.p_adjusted < 1e-9
    # the unadjusted p of the selected cut: two-sided normal p of R's maximal statistic
    assert res.p_raw == pytest.approx(2 * norm.sf(case["statistic"]), rel=1e-9)
    assert res.to_dict() == {"method": "maxstat", "cutpoint": res.cutpoint, "statistic": res.statistic,
                             "p_raw": res.p_raw, "p_adjusted": res.p_adjusted}


def brute_force_maxstat(time, event, marker, minprop=0.1):
    """Every cut ``x <= c`` leaving between floor(N minprop) and floor(N (1 - minprop))
    patients low, one by one: the standardised log-rank score statistic of that split."""
    a = cp.logrank_scores(time, event)
    n = len(a)
    best = (-1.0, None)
    for c in np.unique(marker)[:-1]:
        low = marker <= c
        m = int(low.sum())
        if not max(1, int(np.floor(n * minprop))) <= m <= int(np.floor(n * (1 - minprop))):
            continue
        var = m * (n - m) / (n**2 * (n - 1)) * (n * np.sum(a**2) - a.sum() ** 2)
        s = abs(a[low].sum() - m / n * a.sum()) / np.sqrt(var)
        if s > best[0] + 1e-12:
            best = (s, c)
    return best


@pytest.mark.parametrize("name, marker", [("lung", "age"), ("veteran", "karno"), ("pbc", "bili")])
def test_maxstat_cut_and_raw_p_equal_a_brute_force_search(name, marker):
    d = dataset(name).dropna(subset=[marker])
    t = d["time"].to_numpy(float)
    e = (d["event"] if "event" in d else d["status"]).to_numpy(int)
    x = d[marker].to_numpy(float)
    stat, cut = brute_force_maxstat(t, e, x)
    res = cp.maxstat_cutpoint(t, e, x)
    assert res.cutpoint == cut
    assert res.statistic == pytest.approx(stat, rel=1e-12)
    assert res.p_raw == pytest.approx(2 * norm.sf(stat), rel=1e-12)
    assert res.p_raw < res.p_adjusted  # many cuts tried: the adjusted p is larger


def test_maxstat_statistic_is_the_standardised_score_sum_of_the_low_group():
    d = dataset("veteran")
    res = cp.maxstat_cutpoint(d.time, d.status, d.karno)
    a = cp.logrank_scores(d.time, d.status)
    low = (d.karno <= res.cutpoint).to_numpy()
    n, m = len(a), low.sum()
    var = m * (n - m) / (n**2 * (n - 1)) * (n * np.sum(a**2) - a.sum() ** 2)
    assert res.statistic == pytest.approx(abs(a[low].sum() - m / n * a.sum()) / np.sqrt(var), rel=1e-12)
    assert res.statistic == pytest.approx(np.max(res.statistics))


@pytest.mark.parametrize("case", REF["groups"], ids=lambda c: c["dataset"])
def test_validation_logrank_and_hr_match_survdiff_and_coxph(case):
    d = dataset(case["dataset"]).dropna(subset=[case["time"], case["event"], case["marker"]])
    cuts = tuple(np.atleast_1d(case["cuts"]))
    res = cp.validate_cut(d[case["time"]], d[case["event"]], d[case["marker"]], cuts)
    assert res["logrank_chi2"] == pytest.approx(case["chisq"], rel=1e-10)
    np.testing.assert_allclose(res["hr"], np.atleast_1d(case["hr"]), rtol=1e-8)
    se = np.log(np.array(res["hr_upper"]) / np.array(res["hr"])) / 1.959963984540054
    np.testing.assert_allclose(se, np.atleast_1d(case["se"]), rtol=1e-6)


def test_xtile_maps_equal_direct_logrank_tests():
    d = dataset("pbc")
    t, e, x = d.time.to_numpy(float), d.event.to_numpy(bool), d.bili.to_numpy(float)
    res = cp.xtile(t, e, x, n_perm=0, max_cuts=25)
    for k in (0, 5, 12, len(res.cuts) - 1):
        chi2, _, _ = cp.logrank_groups(t, e, x <= res.cuts[k])
        assert res.chi2_single[k] == pytest.approx(chi2, rel=1e-9)
    # the pair map is drawn on the thinned grid; the single cuts are never thinned
    assert len(res.pair_cuts) == 25 < len(res.cuts) and set(res.pair_cuts) <= set(res.cuts)
    done = 0
    for i in range(len(res.pair_cuts)):
        for j in range(i + 1, len(res.pair_cuts)):
            if np.isfinite(res.chi2_pairs[i, j]) and (i + j) % 7 == 0:
                g = (x > res.pair_cuts[i]).astype(int) + (x > res.pair_cuts[j]).astype(int)
                chi2, _, df = cp.logrank_groups(t, e, g)
                assert df == 2
                assert res.chi2_pairs[i, j] == pytest.approx(chi2, rel=1e-8)
                done += 1
    assert done > 5
    assert res.statistic == pytest.approx(np.nanmax(res.chi2_single))
    assert res.pair_statistic == pytest.approx(np.nanmax(res.chi2_pairs))
    assert np.isnan(res.chi2_pairs[np.tril_indices(len(res.pair_cuts))]).all()


def brute_force_xtile(time, event, marker, min_n):
    """Every distinct cut ``x <= c`` leaving >= min_n subjects in both groups, one log-rank
    test (:func:`logrank_groups`) each: the first cut with the largest chi-square."""
    best_chi2, best_cut, tried = -1.0, None, 0
    for c in np.unique(marker):
        low = marker <= c
        if low.sum() < min_n or (~low).sum() < min_n:
            continue
        tried += 1
        chi2, _, _ = cp.logrank_groups(time, event, low)
        if chi2 > best_chi2 + 1e-9 * max(1.0, best_chi2):
            best_chi2, best_cut = chi2, c
    return best_chi2, best_cut, tried


@pytest.mark.parametrize("name, marker, minprop", [("pbc", "bili", 0.1), ("veteran", "karno", 0.2),
                                                   ("lung", "age", 0.1), ("pbc", "albumin", 0.25)])
def test_xtile_cut_is_the_brute_force_maximum_over_every_distinct_cut(name, marker, minprop):
    d = dataset(name).dropna(subset=[marker])
    t = d["time"].to_numpy(float)
    e = (d["event"] if "event" in d else d["status"]).to_numpy(int)
    x = d[marker].to_numpy(float)
    n = len(x)
    min_n = int(np.ceil(n * minprop))
    res = cp.xtile(t, e, x, minprop=minprop, n_perm=0, max_cuts=4)
    chi2, cut, tried = brute_force_xtile(t, e, x, min_n)
    assert res.min_group_size == min_n
    assert len(res.cuts) == tried > 4  # no thinning of the single cuts, whatever max_cuts says
    assert res.cutpoint == cut
    assert res.statistic == pytest.approx(chi2, rel=1e-9)


def test_xtile_respects_the_minimum_group_size():
    """A marker whose best split isolates a few patients: with a 10% minimum the small
    extreme group cannot be chosen, with 1/n it is."""
    rng = np.random.default_rng(3)
    n = 60
    x = rng.normal(size=n)
    t = rng.exponential(1.0, size=n)
    top = np.argsort(x)[-3:]
    t[top] = 0.01 * (1 + np.arange(3))  # the three highest markers die first
    e = np.ones(n, dtype=int)
    res = cp.xtile(t, e, x, minprop=0.1, n_perm=0, pairs=False)
    assert res.min_group_size == 6
    assert (x > res.cutpoint).sum() >= 6 and (x <= res.cutpoint).sum() >= 6
    chi2, cut, _ = brute_force_xtile(t, e, x, 6)
    assert res.cutpoint == cut
    small = cp.xtile(t, e, x, minprop=1 / n, n_perm=0, pairs=False)
    chi2_1, cut_1, _ = brute_force_xtile(t, e, x, 1)
    assert small.min_group_size == 1 and small.cutpoint == cut_1
    assert small.statistic == pytest.approx(chi2_1, rel=1e-9) and chi2_1 > chi2


def test_xtile_permutation_p_is_seeded_and_small_for_a_strong_marker():
    d = dataset("pbc")
    a = cp.xtile(d.time, d.event, d.bili, n_perm=60, seed=2, max_cuts=30)
    b = cp.xtile(d.time, d.event, d.bili, n_perm=60, seed=2, max_cuts=30)
    assert a.p_adjusted == b.p_adjusted == pytest.approx(1 / 61)
    assert a.pair_p_adjusted == pytest.approx(1 / 61)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=len(d))
    c = cp.xtile(d.time, d.event, noise, n_perm=60, seed=2, max_cuts=30)
    assert c.p_adjusted > 0.05


def test_training_cut_on_validation_set():
    d = dataset("pbc")
    train, valid = d.iloc[::2], d.iloc[1::2]
    cut = cp.maxstat_cutpoint(train.time, train.event, train.bili).cutpoint
    res = cp.validate_cut(valid.time, valid.event, valid.bili, cut)
    assert res["df"] == 1 and res["logrank_p"] < 1e-6 and res["hr"][0] > 2
    assert sum(res["n"]) == len(valid)


@pytest.mark.parametrize(
    "marker, message",
    [([3.0] * 10, "single value"), ([1, 2, 2, 2, 2, 2, 2, 2, 2, 2], "no cutpoint")],
)
def test_degenerate_markers(marker, message):
    t = np.arange(1, 11, dtype=float)
    e = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 1])
    with pytest.raises(UserError, match=message):
        cp.maxstat_cutpoint(t, e, marker, minprop=0.2)
    with pytest.raises(UserError, match=message):
        cp.xtile(t, e, marker, minprop=0.2, n_perm=0)


def test_empty_validation_group_and_no_events():
    with pytest.raises(UserError, match="empty group"):
        cp.validate_cut([1, 2, 3, 4], [1, 0, 1, 1], [1, 2, 3, 4], 10.0)
    with pytest.raises(UserError, match="no events"):
        cp.maxstat_cutpoint([1, 2, 3, 4], [0, 0, 0, 0], [1, 2, 3, 4])
