"""``pathomics bench lasso``: our LASSO-Cox path and CV against scikit-survival's coxnet (behaviour,
not time): the same coefficients along the path, the same CV curve and the same features at
lambda.min; the bench's own deviance against a brute-force Breslow partial likelihood."""

from __future__ import annotations

import re

import numpy as np

from pathomics_desktop.stats import lasso_bench as lb
from pathomics_desktop.stats import lasso_cox as lc


def brute_force_deviance(time, event, eta):
    """``2 (l_sat - l)`` with the Breslow likelihood written out subject by subject (O(n^2))."""
    loglik, lsat = 0.0, 0.0
    for tau in np.unique(time[event]):
        at_tau = (time == tau) & event
        d = at_tau.sum()
        loglik += eta[at_tau].sum() - d * np.log(np.exp(eta[time >= tau]).sum())
        lsat -= d * np.log(d)
    return 2 * (lsat - loglik)


def test_quick_bench_prints_agreeing_lines(capsys):
    assert lb.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC data, 80 patients x 30 features" in out
    path_line = next(line for line in out.splitlines() if line.startswith("LASSO-Cox path"))
    assert float(re.search(r"max\|diff\| (\S+)$", path_line).group(1)) < 1e-4
    sel = re.search(r"selected at lambda.min: ours (\d+) features, sksurv (\d+) features, same set: (\w+)", out)
    assert sel.group(1) == sel.group(2) and sel.group(3) == "yes"
    assert int(sel.group(1)) > 0


def test_sksurv_and_ours_agree_along_the_path_and_in_cv():
    n, p, folds, seed = 60, 20, 4, 3
    res = lb.run(n, p, folds, seed)
    coef, sk = res["coef"], res["sksurv_coef"]
    assert coef.shape == sk.shape == (p, res["lambdas"].size)
    assert np.abs(coef - sk).max() < 1e-4
    assert ((np.abs(coef) > 1e-6) == (np.abs(sk) > 1e-6)).all()
    assert (coef[:, -1] != 0).sum() > p // 2  # a real path, not all zeros
    np.testing.assert_allclose(res["sksurv_cvm"], res["cvm"], rtol=1e-6)
    assert res["sksurv_lambda_min"] == res["lambda_min"]
    # lambda.min recomputed from our own CV on the same folds
    t, e, x, _ = lb.synthetic_features(n, p, seed)
    cv = lc.lasso_cox_cv(t, e, x, foldid=lc.make_folds(n, folds, seed, event=e))
    assert cv.lambda_min == res["lambda_min"]
    np.testing.assert_array_equal(res["selected"], res["sksurv_selected"])
    expected = [j for j, name in enumerate(cv.path.names) if name in cv.coef_at("min")["selected"]]
    np.testing.assert_array_equal(res["selected"], expected)


def test_bench_deviance_matches_brute_force_with_ties():
    rng = np.random.default_rng(7)
    time = rng.integers(1, 12, size=40).astype(float)  # many tied times
    event = rng.random(40) < 0.6
    eta = rng.normal(size=40)
    expected = brute_force_deviance(time, event, eta)
    assert np.isclose(lb.breslow_deviance(time, event, eta), expected, rtol=1e-12)
    # the same deviance as lasso_cox's glmnet deviance with Breslow risk sets
    x = eta[:, None]
    assert np.isclose(lc.cox_deviance(time, event, x, np.ones((1, 1)), ties="breslow")[0], expected, rtol=1e-12)


def test_glmnet_path_end_on_sksurv_paths_matches_our_path_length():
    """sksurv runs on where glmnet stops (zero Newton weight, dev.ratio > 0.99); the bench's rule
    finds glmnet's end, checked against our glmnet path on the same data."""
    for n, p, seed in [(40, 30, 1), (50, 40, 2), (80, 30, 2)]:
        t, e, x, _ = lb.synthetic_features(n, p, seed)
        ours = lc.lasso_cox_path(t, e, x)
        model, mean, sd = lb.sksurv_path(t, e, x, alpha_min_ratio=1e-4)
        assert lb.glmnet_path_end(model, t, e, (x - mean) / sd) == ours.lambdas.size
        if (n, p) != (80, 30):
            assert model.alphas_.size == 100 > ours.lambdas.size  # sksurv computed more lambdas


def test_interpolated_coefficients_predict_as_sksurv():
    t, e, x, _ = lb.synthetic_features(50, 10, 5)
    model, mean, sd = lb.sksurv_path(t, e, x, alpha_min_ratio=1e-4)
    z = (x - mean) / sd
    alphas = model.alphas_
    at = np.array([alphas[0] * 2, alphas[3], 0.3 * alphas[5] + 0.7 * alphas[6], alphas[-1] / 2])
    coef = lb.interpolate_path(alphas, model.coef_, at)
    for k, a in enumerate(at):
        np.testing.assert_allclose(z @ coef[:, k], model.predict(z, alpha=a), rtol=1e-12, atol=1e-12)
