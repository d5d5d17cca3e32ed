"""The cutpoint figure: its maxstat curve and optimum equal ``stats.cutpoint.maxstat_cutpoint``
and a brute force over the cuts; its X-tile map equals ``stats.cutpoint.xtile`` and the
log-rank test of the three groups; the bootstrap repeats the seeded resamples. On a SYNTHETIC
demo project with a real fitted and applied signature."""

from __future__ import annotations

import numpy as np
import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.cutpoint import build_cutpoint
from pathomics_desktop.stats.cutpoint import logrank_groups, logrank_scores, maxstat_cutpoint, xtile
from tests.signature.fitted import fitted_project


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    project = fitted_project(tmp_path_factory, tmp_path_factory.mktemp("cutpoint") / "p")
    return AnalysisSource.open(project)


def _training(frame, marker="pathomics_os_score", time="os_months", event="os_event"):
    part = frame[frame["split"] == "training"].dropna(subset=[time, event, marker])
    return part[time].to_numpy(float), part[event].to_numpy(float), part[marker].to_numpy(float)


def test_maxstat_equals_stats_and_a_brute_force_over_cuts(source):
    frame = source.frame(CohortFilter())
    fig = build_cutpoint(source, frame, {})
    t, e, x = _training(frame)
    direct = maxstat_cutpoint(t, e, x, minprop=0.1)
    assert (fig.n, fig.events) == (t.size, int(e.sum()))
    assert fig.cutpoint == direct.cutpoint and fig.statistic == direct.statistic
    assert fig.p_lau94 == direct.p_adjusted and fig.p_raw == direct.p_raw
    np.testing.assert_array_equal(fig.cuts, direct.cuts)
    # brute force: every distinct value whose low group (x <= c) has floor(0.1 n)..floor(0.9 n)
    # patients, S(c) = |sum_low a - m/n sum a| / sqrt(m (n-m) / (n^2 (n-1)) (n sum a^2 - (sum a)^2))
    n = t.size
    a = logrank_scores(t, e)
    brute = {}
    for c in np.unique(x):
        low = x <= c
        m = int(low.sum())
        if not np.floor(0.1 * n) <= m <= np.floor(0.9 * n):
            continue
        var = m * (n - m) / (n**2 * (n - 1)) * (n * np.sum(a**2) - a.sum() ** 2)
        brute[float(c)] = abs(a[low].sum() - m / n * a.sum()) / np.sqrt(var)
    assert list(brute) == fig.cuts
    np.testing.assert_allclose(fig.statistics, list(brute.values()), rtol=1e-10)
    best = max(brute, key=lambda c: (brute[c], -c))
    assert fig.cutpoint == best
    # at the chosen (optimal) cut: the group sizes
    assert fig.chosen["n"] == [int((x <= best).sum()), int((x > best).sum())]


def test_xtile_map_equals_stats_xtile_and_the_three_group_logrank(source):
    frame = source.frame(CohortFilter())
    fig = build_cutpoint(source, frame, {"xtile_cuts": 40})
    t, e, x = _training(frame)
    direct = xtile(t, e, x, minprop=0.1, n_perm=0, max_cuts=40)
    np.testing.assert_array_equal(fig.xtile_cuts, direct.pair_cuts)
    shown = np.array([[np.nan if v is None else v for v in row] for row in fig.xtile_chi2])
    np.testing.assert_array_equal(np.isnan(shown), np.isnan(direct.chi2_pairs))
    np.testing.assert_allclose(shown[~np.isnan(shown)], direct.chi2_pairs[~np.isnan(direct.chi2_pairs)], rtol=1e-12)
    # the best pair's chi-square is the 2-df log-rank test of low / mid / high
    c1, c2 = fig.xtile_pair
    chi2, _, df = logrank_groups(t, e, np.searchsorted([c1, c2], x, side="left"))
    assert df == 2 and fig.xtile_pair_chi2 == pytest.approx(chi2, rel=1e-9)
    single, _, _ = logrank_groups(t, e, x > fig.xtile_single_cut)
    assert fig.xtile_single_chi2 == pytest.approx(single, rel=1e-9)


def test_bootstrap_repeats_the_seeded_resamples(source):
    frame = source.frame(CohortFilter())
    fig = build_cutpoint(source, frame, {"bootstrap": 25, "seed": 4, "cut": 0.0, "window": 0.1})
    t, e, x = _training(frame)
    rng = np.random.default_rng(4)
    cuts = []
    for _ in range(25):
        idx = rng.integers(0, t.size, size=t.size)
        cuts.append(maxstat_cutpoint(t[idx], e[idx], x[idx]).cutpoint)
    boot = fig.bootstrap
    assert boot.cuts == cuts and boot.failed == 0
    assert boot.lower == pytest.approx(np.percentile(cuts, 2.5)) and boot.upper == pytest.approx(np.percentile(cuts, 97.5))
    assert boot.share_within == np.mean(np.abs(np.array(cuts)) <= 0.1)
    assert fig.chosen_cut == 0.0 and fig.chosen["n"] == [int((x <= 0).sum()), int((x > 0).sum())]


def test_any_numeric_marker_and_the_filter_decide(source):
    flt = CohortFilter(centers=("A",))
    frame = source.frame(flt)
    fig = build_cutpoint(source, frame, {"marker": "ca19_9", "endpoint": "rfs", "data_set": "all"})
    part = frame.dropna(subset=["rfs_months", "rfs_event", "ca19_9"])
    direct = maxstat_cutpoint(part["rfs_months"], part["rfs_event"], part["ca19_9"])
    assert fig.n == len(part) and fig.cutpoint == direct.cutpoint and fig.p_lau94 == direct.p_adjusted
    assert fig.marker_label == source.label("ca19_9")


def test_clear_errors(source):
    frame = source.frame(CohortFilter())
    with pytest.raises(UserError, match="signature apply NAME --all"):
        build_cutpoint(source, frame.drop(columns=["pathomics_os_score"]), {})
    with pytest.raises(UserError, match="No patients of the training set"):
        build_cutpoint(source, frame[frame["split"] != "training"], {})
