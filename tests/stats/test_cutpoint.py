"""maxstat (vs R maxstat), X-tile maps (vs direct log-rank tests), validation (vs survdiff/coxph)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
    assert res.p_raw <= 1
    assert set(res.as_dict()) == {"method", "cutpoint", "statistic", "p_raw", "p_adjusted"}


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
    done = 0
    for i in range(len(res.cuts)):
        for j in range(i + 1, len(res.cuts)):
            if np.isfinite(res.chi2_pairs[i, j]) and (i + j) % 7 == 0:
                g = (x > res.cuts[i]).astype(int) + (x > res.cuts[j]).astype(int)
                chi2, _, df = cp.logrank_groups(t, e, g)
                assert df == 2
                assert res.chi2_pairs[i, j] == pytest.approx(chi2, rel=1e-8)
                done += 1
    assert done > 5
    assert res.statistic == pytest.approx(np.nanmax(res.chi2_single))
    assert res.pair_statistic == pytest.approx(np.nanmax(res.chi2_pairs))
    assert np.isnan(res.chi2_pairs[np.tril_indices(len(res.cuts))]).all()


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
