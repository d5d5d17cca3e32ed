"""The vectorised Cox derivatives against a plain per-death loop, and the fit against lifelines.

``pathomics_desktop.stats.cox`` computes risk-set sums per (censored, dead) segment of each
tied-time group and folds the Efron terms into per-group sums. Here every quantity is
recomputed the slow, obvious way (one Python loop over death times, one over the Efron
terms) on small data built to hit the awkward cases: many ties, groups where censored
subjects and deaths share a time, groups where everyone at risk dies, several strata.
"""

from __future__ import annotations

import lifelines
import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.stats import cox
from pathomics_desktop.stats.concordance import harrell_c


def _tied_data(n: int, p: int, seed: int, *, n_times: int = 12, n_strata: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    time_ = rng.integers(1, n_times + 1, size=n).astype(float)
    event = rng.random(n) < 0.6
    # the largest time of stratum 0 only has deaths: the whole last risk set dies there
    strata = rng.integers(0, n_strata, size=n)
    last = (strata == 0) & (time_ == n_times)
    event[last] = True
    return time_, event, x, strata


def _brute_force(time_, event, x, strata, beta, ties):
    """loglik, score, information and score residuals by explicit loops (input row order).

    For each stratum and death time t with d deaths D and risk set R = {time >= t}:
    Efron term l = 0..d-1 has weight f = l/d (0 for Breslow) on the dying subjects,
    a_l = sum_R r - f sum_D r, m_l = (sum_R r x - f sum_D r x) / a_l.
    """
    x = x - x.mean(axis=0)
    n, p = x.shape
    eta = x @ beta
    r = np.exp(eta)
    loglik, score, info = 0.0, np.zeros(p), np.zeros((p, p))
    resid = np.zeros((n, p))
    for s in np.unique(strata):
        in_s = strata == s
        for t in np.unique(time_[in_s & event]):
            at_risk = in_s & (time_ >= t)
            dying = in_s & (time_ == t) & event
            d = int(dying.sum())
            loglik += eta[dying].sum()
            score += x[dying].sum(axis=0)
            m_terms = []
            for ell in range(d):
                f = ell / d if ties == "efron" else 0.0
                weight = np.where(dying, 1.0 - f, 1.0) * at_risk
                a = np.sum(weight * r)
                s1 = (weight * r) @ x
                s2 = (x * (weight * r)[:, None]).T @ x
                m = s1 / a
                loglik -= np.log(a)
                score -= m
                info += s2 / a - np.outer(m, m)
                resid -= (weight * r)[:, None] * (x - m) / a
                m_terms.append(m)
            resid[dying] += x[dying] - np.mean(m_terms, axis=0)
    return loglik, score, info, resid


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("n_strata", [1, 3])
def test_derivatives_and_score_residuals_match_loops(ties, n_strata):
    time_, event, x, strata = _tied_data(160, 3, seed=11 + n_strata, n_strata=n_strata)
    beta = np.array([0.4, -0.3, 0.2])
    data = cox.CoxData(time_, event, x, strata if n_strata > 1 else None, ties)
    dv = data.derivatives(beta)
    ll, u, info, resid = _brute_force(time_, event, x, strata, beta, ties)
    # derivatives() shifts eta by its maximum; the log-likelihood is shift invariant
    assert dv["loglik"] == pytest.approx(ll, rel=1e-12)
    np.testing.assert_allclose(dv["score"], u, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(dv["info"], info, rtol=1e-10, atol=1e-11)
    # score residuals come in sorted order (and do not depend on the shift of eta)
    got = data.unsort(data.score_residuals(beta, dv))
    np.testing.assert_allclose(got, resid, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got.sum(axis=0), u, rtol=1e-9, atol=1e-10)


def test_every_subject_dies_at_one_time_and_no_ties():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 2))
    beta = np.array([0.7, -0.2])
    # all deaths at one time (one group of 40): every Efron weight is used
    same = np.full(40, 5.0)
    dv = cox.CoxData(same, np.ones(40, bool), x).derivatives(beta)
    ll, u, info, _ = _brute_force(same, np.ones(40, bool), x, np.zeros(40), beta, "efron")
    assert dv["loglik"] == pytest.approx(ll, rel=1e-12)
    np.testing.assert_allclose(dv["info"], info, rtol=1e-10, atol=1e-12)
    # distinct times: Efron and Breslow coincide
    distinct = rng.permutation(40).astype(float) + 1
    ev = rng.random(40) < 0.7
    a = cox.CoxData(distinct, ev, x, None, "efron").derivatives(beta)
    b = cox.CoxData(distinct, ev, x, None, "breslow").derivatives(beta)
    ll, u, info, _ = _brute_force(distinct, ev, x, np.zeros(40), beta, "efron")
    for dv in (a, b):
        assert dv["loglik"] == pytest.approx(ll, rel=1e-12)
        np.testing.assert_allclose(dv["score"], u, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dv["info"], info, rtol=1e-10, atol=1e-12)


def test_information_is_the_hessian_of_the_loglik():
    time_, event, x, strata = _tied_data(120, 2, seed=5, n_strata=2)
    data = cox.CoxData(time_, event, x, strata, "efron")
    beta = np.array([0.3, 0.5])
    h = 1e-5
    num = np.empty((2, 2))
    for j in range(2):
        step = np.zeros(2)
        step[j] = h
        num[:, j] = -(data.derivatives(beta + step)["score"]
                      - data.derivatives(beta - step)["score"]) / (2 * h)
    np.testing.assert_allclose(data.derivatives(beta)["info"], num, rtol=1e-6, atol=1e-8)


def test_fit_matches_lifelines_on_tied_data_and_concordance_is_lazy():
    rng = np.random.default_rng(7)
    n, p = 3000, 4
    x = rng.normal(size=(n, p))
    t_event = rng.exponential(np.exp(-(x @ np.array([0.5, -0.4, 0.2, 0.0]))))
    t_cens = rng.exponential(1.5, size=n)
    time_ = np.ceil(np.minimum(t_event, t_cens) * 12)  # whole months: heavy ties
    event = t_event <= t_cens
    fit = cox.fit_cox_arrays(time_, event, x)
    frame = pd.DataFrame(x, columns=[f"x{j}" for j in range(p)]).assign(T=time_, E=event.astype(int))
    peer = lifelines.CoxPHFitter().fit(frame, "T", "E")
    np.testing.assert_allclose(fit.coef, peer.params_.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(fit.se, peer.standard_errors_.to_numpy(), rtol=1e-5)
    assert fit.loglik == pytest.approx(peer.log_likelihood_, rel=1e-9)
    # concordance is computed on first use, from the stored linear predictor
    assert fit._concordance is None
    expected = harrell_c(time_, event, fit.linear_predictor, influence=False).c
    assert fit.concordance == pytest.approx(expected, rel=1e-15)
    assert fit.concordance == pytest.approx(peer.concordance_index_, rel=1e-12)


def test_data_frame_strata_labels_join_the_columns():
    time_, event, x, _ = _tied_data(150, 2, seed=9)
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({"t": time_, "e": event.astype(int), "x0": x[:, 0], "x1": x[:, 1],
                          "site": rng.choice(["a", "b"], 150), "grade": rng.integers(1, 3, 150)})
    fit = cox.fit_cox(frame, "t", "e", ["x0", "x1"], strata=["site", "grade"])
    labels = [f"{s}|{g}" for s, g in zip(frame["site"], frame["grade"])]
    ref = cox.fit_cox_arrays(time_, event, x, names=["x0", "x1"], strata=labels)
    np.testing.assert_array_equal(fit.coef, ref.coef)
    assert len(np.unique(fit.data.strata)) == 4
    one = cox.fit_cox(frame, "t", "e", ["x0", "x1"], strata="site")
    np.testing.assert_array_equal(
        one.coef, cox.fit_cox_arrays(time_, event, x, strata=frame["site"].to_numpy()).coef)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("n_strata", [1, 3])
def test_compiled_kernel_matches_loops(ties, n_strata):
    """The one-pass numba kernel (Newton-Raphson's derivatives) against the explicit loops,
    on the tied data with censored rows and deaths sharing times and a stratum whose last risk
    set dies at once; beta = 0 and away from it, with and without the information."""
    time_, event, x, strata = _tied_data(160, 3, seed=21 + n_strata, n_strata=n_strata)
    data = cox.CoxData(time_, event, x, strata if n_strata > 1 else None, ties)
    for beta in (np.zeros(3), np.array([0.4, -0.3, 0.2]), np.array([-1.5, 2.0, 0.7])):
        fast = data.fast_derivatives(beta)
        ll, u, info, _ = _brute_force(time_, event, x, strata, beta, ties)
        assert fast["loglik"] == pytest.approx(ll, rel=1e-12)
        np.testing.assert_allclose(fast["score"], u, rtol=1e-10, atol=1e-11)
        np.testing.assert_allclose(fast["info"], info, rtol=1e-10, atol=1e-11)
        no_info = data.fast_derivatives(beta, need_info=False)
        assert "info" not in no_info and no_info["loglik"] == fast["loglik"]


def test_descending_time_order_is_the_lexsort_order():
    rng = np.random.default_rng(4)
    time_ = rng.integers(1, 30, size=2000).astype(float)
    event = rng.random(2000) < 0.5
    order = cox.descending_time_order(time_, event)
    reference = np.lexsort((event, -time_))
    assert sorted(order.tolist()) == list(range(2000))
    np.testing.assert_array_equal(time_[order], time_[reference])
    np.testing.assert_array_equal(event[order], event[reference])


def test_presorted_fit_equals_the_plain_fit():
    """``presorted`` (rows already merged and in CoxData's order, as subgroup_analysis passes a
    subset of them) changes nothing but rounding."""
    time_, event, x, _ = _tied_data(300, 3, seed=9)
    time_ = time_ + np.where(np.arange(300) % 7 == 0, 1e-12, 0.0)  # timefix merges these
    plain = cox.fit_cox_arrays(time_, event, x)
    fixed = cox.timefix(time_)
    order = cox.descending_time_order(fixed, event)
    pre = cox.fit_cox_arrays(fixed[order], event[order], x[order], presorted=True)
    np.testing.assert_allclose(pre.coef, plain.coef, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pre.var, plain.var, rtol=1e-8)
    assert pre.loglik == pytest.approx(plain.loglik, rel=1e-12)
    assert pre.loglik_null == pytest.approx(plain.loglik_null, rel=1e-12)
    np.testing.assert_allclose(pre.linear_predictor, plain.linear_predictor[order], atol=1e-9)


def test_estimate_alone_equals_the_full_fit_warm_started_or_not():
    """fit_cox_estimate (no null model) gives fit_cox_arrays's coefficients, variance and
    log-likelihood; a warm start changes them by rounding only, and ``loglik_only`` leaves the
    log-likelihood within 1e-9 of the maximum."""
    time_, event, x, _ = _tied_data(400, 3, seed=13)
    full = cox.fit_cox_arrays(time_, event, x)
    plain = cox.fit_cox_estimate(time_, event, x)
    np.testing.assert_allclose(plain.coef, full.coef, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(plain.var, full.naive_var, rtol=1e-12)
    assert plain.loglik == full.loglik and (plain.n, plain.events) == (full.n, full.events)
    assert [r["hr"] for r in plain.table()] == pytest.approx([r["hr"] for r in full.table()], rel=1e-12)
    warm = cox.fit_cox_estimate(time_, event, x, init=full.coef + 0.05)
    np.testing.assert_allclose(warm.coef, full.coef, atol=1e-10)
    # for a likelihood-ratio statistic: the log-likelihood within 1e-9 of the maximum, whether
    # the last point is evaluated or is the quadratic model's maximum (a start close enough
    # that the first Newton decrement is under the tolerance)
    for start in (None, full.coef + 0.3, full.coef + 1e-5):
        lr_only = cox.fit_cox_estimate(time_, event, x, init=start, loglik_only=True)
        assert abs(full.loglik - lr_only.loglik) < 1e-9
    near = cox.fit_cox_estimate(time_, event, x, init=full.coef + 1e-5, loglik_only=True)
    assert near.iterations == 1 and near.loglik != cox.CoxData(time_, event, x).fast_derivatives(near.coef)["loglik"]


def _by_stratum(n: int, seed: int, n_strata: int = 3):
    """Tied data sorted by stratum, then as CoxData sorts within each (StratumSlopes' order)."""
    time_, event, x, strata = _tied_data(n, 1, seed=seed, n_strata=n_strata)
    order = np.lexsort((event, -time_, strata))
    return time_[order], event[order], x[order, 0], strata[order]


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_stratum_slopes_derivatives_equal_the_general_kernel_on_the_split_design(ties):
    """StratumSlopes' one-pass derivatives against the general kernel on the stratified design
    with one column per stratum (x on the stratum's rows, 0 elsewhere): the same loglik, score
    and information, which is diagonal."""
    time_, event, x, strata = _by_stratum(240, seed=31)
    split = np.zeros((x.size, 3))
    split[np.arange(x.size), strata] = x
    general = cox.CoxData(time_, event, split, strata, ties)
    slopes = cox.StratumSlopes(time_, event, x, strata, ties)
    assert slopes.n_columns == 3
    for beta in (np.zeros(3), np.array([0.4, -0.8, 1.3]), np.array([-2.0, 0.1, 0.6])):
        a, b = general.fast_derivatives(beta), slopes.fast_derivatives(beta)
        assert b["loglik"] == pytest.approx(a["loglik"], rel=1e-12)
        np.testing.assert_allclose(b["score"], a["score"], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(b["info"], a["info"], rtol=1e-10, atol=1e-10)
    # the SD of each stratum's own (centred) column
    np.testing.assert_allclose(slopes.column_sd(), [x[strata == s].std() for s in range(3)], rtol=1e-12)


def test_stratum_slopes_fit_equals_each_stratum_fitted_alone():
    """One Newton-Raphson for every stratum: each coefficient and SE is the stratum's own fit,
    and the log-likelihood their sum."""
    time_, event, x, strata = _by_stratum(600, seed=32)
    joint = cox.fit_cox_stratum_slopes(time_, event, x, strata, names=["x"] * 3, init=np.full(3, 0.2))
    alone = [cox.fit_cox_estimate(time_[strata == s], event[strata == s], x[strata == s]) for s in range(3)]
    np.testing.assert_allclose(joint.coef, [f.coef[0] for f in alone], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(joint.se, [f.se[0] for f in alone], rtol=1e-9)
    assert joint.loglik == pytest.approx(sum(f.loglik for f in alone), rel=1e-12)
    assert (joint.n, joint.events) == (600, int(event.sum()))


def test_cholesky_solve_equals_lapack_and_refuses_what_is_not_positive_definite():
    rng = np.random.default_rng(5)
    for p in range(2, 9):
        a = rng.normal(size=(p + 3, p))
        spd, b = a.T @ a, rng.normal(size=p)
        np.testing.assert_allclose(cox._solve(spd, b), np.linalg.solve(spd, b), rtol=1e-10)
    for bad in (np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[np.nan, 0.0], [0.0, 1.0]])):
        with pytest.raises(np.linalg.LinAlgError):
            cox._solve(bad, np.ones(2))


def test_wald_quadratic_form_full_rank_and_rank_deficient():
    """b' V^- b: the Cholesky path of a full-rank V equals b' V^-1 b; a singular V (a column
    repeated) keeps R's generalised-inverse answer: the repeated direction is dropped."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 3))
    var = a.T @ a
    b = np.array([0.3, -0.2, 0.5])
    stat, df = cox._general_quadratic(b, var)
    assert df == 3 and stat == pytest.approx(float(b @ np.linalg.solve(var, b)), rel=1e-12)
    singular = np.array([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    stat, df = cox._general_quadratic(np.array([1.0, 1.0, 2.0]), singular)
    assert df == 2 and stat == pytest.approx(1.0 ** 2 / 2.0 + 2.0 ** 2 / 1.0, rel=1e-12)


def test_nested_fits_share_one_data_set_and_equal_separate_fits():
    """fit_cox_nested: the reduced model on the first columns (CoxData.select) and the full
    one give the log-likelihoods of separate fully converged fits; the selected data's
    derivatives are those of a data set made from those columns alone."""
    time_, event, x, _ = _tied_data(500, 4, seed=17)
    reduced, full = cox.fit_cox_nested(time_, event, x, 2, names=["a", "b", "c", "d"])
    assert reduced.names == ["a", "b"] and full.names == ["a", "b", "c", "d"]
    assert reduced.loglik == pytest.approx(cox.fit_cox_arrays(time_, event, x[:, :2]).loglik, abs=1e-8)
    assert full.loglik == pytest.approx(cox.fit_cox_arrays(time_, event, x).loglik, abs=1e-8)
    beta = np.array([0.3, -0.4])
    picked = cox.CoxData(time_, event, x).select([0, 2])
    alone = cox.CoxData(time_, event, x[:, [0, 2]])
    a, b = picked.fast_derivatives(beta), alone.fast_derivatives(beta)
    assert a["loglik"] == pytest.approx(b["loglik"], rel=1e-13)
    np.testing.assert_allclose(a["info"], b["info"], rtol=1e-12)
    np.testing.assert_allclose(picked.sum_dead_x, alone.sum_dead_x, rtol=1e-12, atol=1e-12)


def test_max_abs_propagates_nan_as_numpy_does():
    for values in ([1e-12, np.nan], [np.nan, 1e-12], [-3.0, 2.0], [], [0.0, -0.0]):
        arr = np.array(values, dtype=float)
        expected = np.max(np.abs(arr), initial=0)
        got = cox._max_abs(arr)
        assert (np.isnan(got) and np.isnan(expected)) or got == expected
