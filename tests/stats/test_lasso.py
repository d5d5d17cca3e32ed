"""LASSO-Cox against R glmnet 4.1-6 (path, coefficients, cv.glmnet with a fixed foldid).

Two reference files: ``markers_reference.json`` (times in years or without censored ties, glmnet
defaults and ``thresh = 1e-14``; written by ``r/markers_reference.R``) and
``markers_glmnet_days.json`` (lung and pbc in DAYS with censored times equal to event times,
glmnet DEFAULTS, rows in given and reversed order; written by ``r/markers_glmnet_days.R``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import lasso_cox as lc
from pathomics_desktop.stats.cox import CoxData

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "markers_reference.json").read_text())
CASES = REF["glmnet"]
DAYS = json.loads((HERE / "reference" / "markers_glmnet_days.json").read_text())
DAY_CASES = DAYS["cases"]
SMALL_N = {"coxexample25"}  # 25 subjects, 30 features
BIG_N = [c for c in CASES if c["dataset"] not in SMALL_N]


def data_for(case):
    d = pd.read_csv(HERE / "data" / f"{case['dataset']}.csv")
    if case["dataset"] in ("lung", "pbc"):
        d["event"] = (d.status == 2).astype(int)
        d["years"] = d.time / 365.25
    d = d.dropna(subset=[case["time"], case["event"], *case["features"]])
    assert len(d) == case["n"]
    return d[case["time"]].to_numpy(float), d[case["event"]].to_numpy(int), d[case["features"]].to_numpy(float)


def days_data(case, reverse=False):
    d = pd.read_csv(HERE / "data" / f"{case['dataset']}.csv")
    d["event"] = d.status if case["dataset"] == "coxexample25" else (d.status == 2).astype(int)
    d = d.dropna(subset=["time", "event", *case["features"]])
    assert len(d) == case["n"]
    if reverse:
        d = d.iloc[::-1]
    return d.time.to_numpy(float), d.event.to_numpy(int), d[case["features"]].to_numpy(float)


def ids(case):
    return f"{case['dataset']}-{'std' if case['standardize'] else 'raw'}"


def max_rel_err(ours, ref, floor=1e-6):
    """Largest relative error over reference values with ``|ref| > floor``."""
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    big = np.abs(ref) > floor
    return float(np.max(np.abs(ours - ref)[big] / np.abs(ref[big]))) if big.any() else 0.0


def assert_coef_close(ours, ref, rtol=1e-5):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert max_rel_err(ours, ref) <= rtol
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)  # coefficients below the floor
    assert ((ours != 0) == (ref != 0)).all()


# ---- times in DAYS with censored ties, glmnet defaults ------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["rows", "reversed-rows"])
@pytest.mark.parametrize("case", DAY_CASES, ids=ids)
def test_days_default_path_matches_glmnet_in_both_row_orders(case, reverse):
    t, e, x = days_data(case, reverse)
    ref = case["reversed_rows" if reverse else "default"]
    path = lc.lasso_cox_path(t, e, x, names=case["features"], standardize=case["standardize"])
    assert path.lambdas.size == len(ref["lambda"])  # same early stop of the path
    np.testing.assert_allclose(path.lambdas, ref["lambda"], rtol=1e-10)
    np.testing.assert_allclose(path.dev_ratio, ref["dev_ratio"], rtol=1e-8, atol=1e-12)
    assert path.null_deviance == pytest.approx(ref["nulldev"], rel=1e-12)
    assert_coef_close(path.coef, np.array(ref["beta"]).T)


def test_days_glmnet_depends_on_row_order_and_breslow_does_not():
    """Evidence for the module docstring: glmnet's own fits in the two row orders differ (its
    risk sets for censored ties >= 256 follow its sort); ties='breslow' is order-free."""
    for case in DAY_CASES[:3]:
        a, b = np.array(case["default"]["beta"]), np.array(case["reversed_rows"]["beta"])
        assert max_rel_err(b, a) > 1e-2
        assert case["of_which_ge_256"] > 0
        fits = [lc.lasso_cox_path(*days_data(case, rev), standardize=case["standardize"], ties="breslow")
                for rev in (False, True)]
        assert fits[0].lambdas.size == fits[1].lambdas.size
        assert max_rel_err(fits[1].coef, fits[0].coef) < 1e-9
    # pbc: glmnet (either order) is not the order-free Breslow fit
    pbc = DAY_CASES[2]
    breslow = lc.lasso_cox_path(*days_data(pbc), ties="breslow")
    assert max_rel_err(breslow.coef[:, :20], np.array(pbc["default"]["beta"]).T[:, :20]) > 1e-3


@pytest.mark.parametrize("case", DAY_CASES, ids=ids)
def test_days_cross_validation_matches_cv_glmnet_defaults(case):
    t, e, x = days_data(case)
    cv = lc.lasso_cox_cv(t, e, x, names=case["features"], foldid=case["foldid"], standardize=case["standardize"])
    np.testing.assert_allclose(cv.lambdas, case["cv_lambda"], rtol=1e-10)
    np.testing.assert_allclose(cv.cvm, case["cvm"], rtol=1e-8)
    np.testing.assert_allclose(cv.cvsd, case["cvsd"], rtol=1e-7)
    assert cv.lambda_min == pytest.approx(case["lambda_min"], rel=1e-10)
    assert cv.lambda_1se == pytest.approx(case["lambda_1se"], rel=1e-10)
    chosen = cv.coef_at("min")
    k = int(np.argmin(np.abs(np.array(case["default"]["lambda"]) - case["lambda_min"])))
    assert_coef_close([chosen["coef"][f] for f in case["features"]], case["default"]["beta"][k])


@pytest.mark.parametrize("case", DAY_CASES[:3], ids=ids)
def test_days_fit_at_a_lambda_between_path_values(case):
    t, e, x = days_data(case)
    out = lc.lasso_cox_fit(t, e, x, case["fit_lambda"], names=case["features"], standardize=case["standardize"])
    assert_coef_close([out["coef"][f] for f in case["features"]], case["fit_coef"])


def test_psort7_and_glmnet_groups_on_a_tiny_tie():
    # rows: event 100, event 300, censored 300, event 400; psort7 swaps the two 300s
    t = np.array([100.0, 300.0, 300.0, 400.0])
    e = np.array([True, True, False, True])
    assert lc._psort7(lc._glmnet_times(t, e)).tolist() == [0, 2, 1, 3]
    assert lc._glmnet_groups(t, e, np.ones(4)).tolist() == [1, 2, 1, 3]  # censored 300: not at risk at 300
    assert lc._glmnet_groups(t / 100, e, np.ones(4)).tolist() == [1, 2, 2, 3]  # shift survives below 256
    assert lc._risk_index(t, e, np.ones(4), "breslow")[0].tolist() == [1, 2, 2, 3]
    tiny = DAYS["tiny"]
    pred = np.array(tiny["pred"])
    for scale, key in ((1.0, "deviance_days"), (100.0, "deviance_scaled")):
        dev = lc.cox_deviance(np.array(tiny["time"]) / scale, tiny["status"], np.eye(4), pred)
        assert dev[0] == pytest.approx(tiny[key], rel=1e-12)
    breslow = lc.cox_deviance(t, e, np.eye(4), pred, ties="breslow")[0]
    assert breslow == pytest.approx(tiny["deviance_scaled"], rel=1e-12)


def test_psort7_sorts_and_handles_many_ties():
    rng = np.random.default_rng(3)
    for n in (1, 2, 11, 12, 50, 500):
        v = rng.integers(0, max(2, n // 5), size=n).astype(float)
        perm = lc._psort7(v)
        assert sorted(perm.tolist()) == list(range(n))
        assert np.all(np.diff(v[perm]) >= 0)


# ---- times in years / without censored ties (markers_reference.json) -----------------------------


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_years_default_path_matches_glmnet(case):
    t, e, x = data_for(case)
    path = lc.lasso_cox_path(t, e, x, names=case["features"], standardize=case["standardize"])
    assert path.lambdas.size == len(case["lambda"])
    np.testing.assert_allclose(path.lambdas, case["lambda"], rtol=1e-10)
    for item in case["coef_default"]:
        if item is None:
            continue
        k = int(np.argmin(np.abs(path.lambdas - item["lambda"])))
        assert_coef_close(path.coef[:, k], item["coef"], rtol=1e-5)


@pytest.mark.parametrize("case", BIG_N, ids=ids)
def test_years_tight_path_and_cv_match_glmnet(case):
    """glmnet with thresh = 1e-14: same algorithm with the same threshold, and the exact solver."""
    t, e, x = data_for(case)
    opts = dict(names=case["features"], standardize=case["standardize"], thresh=case["thresh"], maxit=10**6)
    path = lc.lasso_cox_path(t, e, x, **opts)
    assert path.lambdas.size == len(case["lambda_tight"])
    np.testing.assert_allclose(path.lambdas, case["lambda_tight"], rtol=1e-10)
    np.testing.assert_allclose(path.dev_ratio, case["dev_ratio"], rtol=1e-8, atol=1e-12)
    exact = lc.lasso_cox_path(t, e, x, names=case["features"], standardize=case["standardize"], thresh=None,
                              lambdas=case["lambda_tight"])
    for item in case["coef_tight"]:
        k = int(np.argmin(np.abs(path.lambdas - item["lambda"])))
        assert_coef_close(path.coef[:, k], item["coef"], rtol=1e-8)
        assert_coef_close(exact.coef[:, k], item["coef"], rtol=1e-4)  # glmnet at 1e-14 is not fully converged
    cv = lc.lasso_cox_cv(t, e, x, foldid=case["foldid"], **opts)
    np.testing.assert_allclose(cv.lambdas, case["cv_lambda"], rtol=1e-10)
    np.testing.assert_allclose(cv.cvm, case["cvm"], rtol=1e-8)
    np.testing.assert_allclose(cv.cvsd, case["cvsd"], rtol=1e-7)
    assert cv.lambda_min == pytest.approx(case["lambda_min"], rel=1e-10)
    assert cv.lambda_1se == pytest.approx(case["lambda_1se"], rel=1e-10)


@pytest.mark.parametrize("case", CASES[:2], ids=ids)
def test_fit_at_a_given_lambda(case):
    t, e, x = data_for(case)
    item = case["coef_tight"][3]
    out = lc.lasso_cox_fit(t, e, x, item["lambda"], names=case["features"], standardize=case["standardize"],
                           thresh=case["thresh"], maxit=10**6)
    assert set(out) == {"lambda", "coef", "selected"}
    # a refit on user lambdas (glmnet's exact = TRUE) starts differently from the automatic path,
    # so it stops elsewhere within thresh = 1e-14: 1e-6, not 1e-8
    assert_coef_close(np.array([out["coef"][f] for f in case["features"]]), item["coef"], rtol=1e-6)
    assert out["selected"] == [f for f, c in zip(case["features"], item["coef"]) if c != 0]


def test_cv_is_deterministic_under_a_seed():
    case = CASES[3]
    t, e, x = data_for(case)
    a = lc.lasso_cox_cv(t, e, x, folds=5, seed=7)
    b = lc.lasso_cox_cv(t, e, x, folds=5, seed=7)
    np.testing.assert_array_equal(a.foldid, b.foldid)
    np.testing.assert_array_equal(a.cvm, b.cvm)
    assert np.bincount(a.foldid)[1:].tolist() in ([28, 28, 27, 27, 27],)
    np.testing.assert_array_equal(a.foldid, lc.make_folds(t.size, 5, 7, event=e))
    assert not np.array_equal(a.foldid, lc.lasso_cox_cv(t, e, x, folds=5, seed=8).foldid)


@pytest.mark.parametrize("n, k, events", [(255, 10, 97), (31, 4, 5), (40, 3, 40), (23, 5, 0)])
def test_folds_are_stratified_by_event_status_and_reproducible(n, k, events):
    rng = np.random.default_rng(n)
    event = np.zeros(n, dtype=int)
    event[rng.choice(n, size=events, replace=False)] = 1
    fid = lc.make_folds(n, k, seed=11, event=event)
    assert sorted(set(fid.tolist())) == list(range(1, k + 1))
    ev_per_fold = np.bincount(fid, weights=event, minlength=k + 1)[1:]
    size_per_fold = np.bincount(fid, minlength=k + 1)[1:]
    assert ev_per_fold.sum() == events and ev_per_fold.max() - ev_per_fold.min() <= 1
    assert size_per_fold.max() - size_per_fold.min() <= 1
    np.testing.assert_array_equal(fid, lc.make_folds(n, k, seed=11, event=event))
    # the stratification is by event status, not by position: another seed deals other subjects
    assert not np.array_equal(fid, lc.make_folds(n, k, seed=12, event=event))


def test_exact_solver_satisfies_kkt_conditions_on_the_path():
    case = CASES[0]
    t, e, x = data_for(case)
    for ties in ("glmnet", "breslow"):
        path = lc.lasso_cox_path(t, e, x, thresh=None, ties=ties)
        data = lc._CoxData(t, e.astype(bool), np.ones(t.size), ties)
        xs, scale, _ = lc._prepare_x(x, data.q, True, case["features"])
        for k in (5, 20, path.lambdas.size - 1):
            beta_std = path.coef[:, k] * scale
            r, _ = data.working(xs @ beta_std)
            grad = xs.T @ r
            lam = path.lambdas[k]
            active = beta_std != 0
            np.testing.assert_allclose(grad[active], lam * np.sign(beta_std[active]), atol=1e-7)
            assert np.all(np.abs(grad[~active]) <= lam * (1 + 1e-7))


def test_default_solver_stops_at_glmnets_threshold():
    """Looser thresh moves the fit away from the exact minimiser, tighter brings it back."""
    case = DAY_CASES[0]
    t, e, x = days_data(case)
    exact = lc.lasso_cox_path(t, e, x, thresh=None, lambdas=case["default"]["lambda"])
    ref = exact.coef[:, 10:30]
    errs = [np.abs(lc.lasso_cox_path(t, e, x, thresh=th, maxit=10**6).coef[:, 10:30] - ref).max() / np.abs(ref).max()
            for th in (1e-5, 1e-7, 1e-12)]
    assert errs[0] > errs[1] > errs[2] and errs[1] > 1e-4 and errs[2] < 1e-5


def test_degenerate_inputs():
    t = np.arange(1.0, 11.0)
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(UserError, match="no events"):
        lc.lasso_cox_path(t, np.zeros(10), x)
    with pytest.raises(UserError, match="fewer than two events"):
        lc.lasso_cox_path(t, np.eye(10)[0], x)
    with pytest.raises(UserError, match="constant"):
        lc.lasso_cox_path(t, np.ones(10), np.ones((10, 2)))
    with pytest.raises(UserError, match="missing"):
        bad = x.copy()
        bad[2, 1] = np.nan
        lc.lasso_cox_path(t, np.ones(10), bad, names=["a", "b", "c"])
    with pytest.raises(UserError, match="folds"):
        lc.lasso_cox_cv(t, np.ones(10), x, folds=2)
    with pytest.raises(UserError, match="ties"):
        lc.lasso_cox_path(t, np.ones(10), x, ties="efron")
    with pytest.raises(UserError, match="weights"):
        lc.lasso_cox_path(t, np.ones(10), x, weights=-np.ones(10))


def test_more_features_than_subjects_uses_glmnet_ratio_and_terminates():
    rng = np.random.default_rng(4)
    n, p = 30, 60
    x = rng.normal(size=(n, p))
    t = rng.exponential(np.exp(-x[:, 0]))
    e = rng.random(n) < 0.8
    path = lc.lasso_cox_path(t, e, x)
    ratio = path.lambdas[2] / path.lambdas[1]
    assert ratio == pytest.approx(0.01 ** (1 / 99), rel=1e-7)  # lambda.min.ratio = 0.01 when n < p
    # the whole 100-lambda path: the deviance ratio stays below glmnet's devmax (0.99), so no early stop
    assert path.lambdas.size == 100
    # dev_ratio = 1 - loglik(beta) / loglik(0) (no tied times: the saturated log-likelihood is 0),
    # recomputed with the Cox model's own partial likelihood
    data = CoxData(t, e, x, ties="breslow")
    loglik_null = data.derivatives(np.zeros(p))["loglik"]
    for k in (10, 50, 99):
        expected = 1 - data.derivatives(path.coef[:, k])["loglik"] / loglik_null
        assert path.dev_ratio[k] == pytest.approx(expected, rel=1e-10)
    assert np.all(np.diff(path.dev_ratio) >= -1e-9)  # the fit improves down the path
    assert np.isfinite(path.coef).all()
