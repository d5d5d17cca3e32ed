"""``pathomics bench lasso``: our LASSO-Cox path + 10-fold CV against scikit-survival's coxnet.

Both fit the same SYNTHETIC data in the same run (default 255 patients x 206 correlated,
skewed features like pathomics features; 8 true non-zero coefficients; continuous times, so
glmnet's and Breslow's risk sets coincide): the objective ``-(1/n) loglik + lambda |beta|_1`` on
features standardised by their (1/n) standard deviation (sksurv ``CoxnetSurvivalAnalysis(
l1_ratio=1, normalize=False)`` on features we standardise; its ``alpha`` is glmnet's
``lambda``), glmnet's defaults (100 lambdas, ``lambda.min.ratio`` 1e-4 when n > p else 0.01,
threshold 1e-7, the same early stop of the path).

* Path: ours (:func:`lasso_cox_path`) against sksurv on our lambdas; max |coefficient
  difference| (input scale) over the path, and at a few lambdas.
* Path + CV: ours (:func:`lasso_cox_cv`) against sksurv on the same folds with the same
  criterion, cv.glmnet's ``type.measure = "deviance"``, ``grouped = TRUE``: each fold fits its own
  path (features standardised on the training rows), its coefficients are interpolated
  linearly at the full-data lambdas (as sksurv's ``predict(X, alpha=...)``; a fold path ends where
  glmnet ends it, :func:`glmnet_path_end`: sksurv lacks glmnet's stops at a zero Newton weight
  and at ``dev.ratio > 0.99`` and may compute more lambdas, timed but not used), and the fold scores
  ``(D_all(beta_k) - D_train(beta_k)) / events in fold`` (Breslow deviance ``2 (l_sat - l)``,
  Verweij & van Houwelingen 1993; computed here independently of ``lasso_cox``); ``cvm`` is the
  event-weighted mean and ``lambda.min`` the largest lambda minimising it.

``ratio = sksurv time / our time``. Our numba kernel is compiled (or loaded from its disk
cache) before the clock starts. ``--quick``: 80 x 30, 5 folds (for tests).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np

from pathomics_desktop.stats.bench import _line  # prints bench.LINE_FORMAT

PROBES = (0.05, 0.25, 0.5, 0.75, 1.0)  # positions along the path where coefficients are printed


def synthetic_features(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SYNTHETIC survival data ``(time in days, event, x, true beta)``.

    ``x = exp(0.3 (Z L + E))``: 10 latent factors ``Z`` with sparse loadings ``L`` (30% non-zero)
    plus noise ``E`` give blocks of correlated, right-skewed features. 8 features carry
    ``|beta| ~ U(0.3, 0.8)`` per standard deviation; event times are exponential with hazard
    ``exp(x_std beta)``, censoring exponential with mean 2 (about 40% censored)."""
    rng = np.random.default_rng(seed)
    n_factors = 10
    loadings = rng.normal(size=(n_factors, p)) * (rng.random((n_factors, p)) < 0.3)
    x = np.exp(0.3 * (rng.normal(size=(n, n_factors)) @ loadings + rng.normal(size=(n, p))))
    beta = np.zeros(p)
    k = min(8, p)
    idx = rng.choice(p, k, replace=False)
    beta[idx] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.3, 0.8, k)
    xs = (x - x.mean(axis=0)) / x.std(axis=0)
    t_event = rng.exponential(scale=np.exp(-(xs @ beta)))
    t_cens = rng.exponential(scale=2.0, size=n)
    return np.minimum(t_event, t_cens) * 365.25, t_event <= t_cens, x, beta


def breslow_deviance(time: np.ndarray, event: np.ndarray, eta: np.ndarray) -> float:
    """``2 (l_sat - l)``, ``l = sum_k [sum_{events at tau_k} eta_i - d_k log sum_{t_j >= tau_k} exp(eta_j)]``,
    ``l_sat = -sum_k d_k log d_k`` (Breslow ties; eta centred for stability)."""
    order = np.argsort(-time, kind="stable")  # decreasing time: risk sets are prefixes
    t, d, h = time[order], event[order].astype(float), eta[order] - eta.mean()
    risk = np.cumsum(np.exp(h))
    last = np.r_[t[1:] != t[:-1], True]  # last row of each run of equal times closes its risk set
    tau_risk = risk[last]
    d_k = np.add.reduceat(d, np.flatnonzero(np.r_[True, t[1:] != t[:-1]]))
    used = d_k > 0
    loglik = float(h[d > 0].sum() - np.dot(d_k[used], np.log(tau_risk[used])))
    return 2.0 * (-float(np.dot(d_k[used], np.log(d_k[used]))) - loglik)


def _survival_array(time, event):
    y = np.empty(time.size, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return y


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (1/n) standard deviation, as glmnet's ``standardize = TRUE``."""
    return x.mean(axis=0), x.std(axis=0)


def sksurv_path(time, event, x, *, alphas=None, alpha_min_ratio=None, n_alphas: int = 100):
    """sksurv coxnet LASSO path on standardised ``x``: ``(model, mean, sd)``; input-scale
    coefficients are ``model.coef_ / sd[:, None]``."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    mean, sd = _standardise(x)
    opts = {"l1_ratio": 1.0, "normalize": False, "tol": 1e-7, "max_iter": 100_000, "n_alphas": n_alphas}
    if alphas is not None:
        opts["alphas"] = alphas
    else:
        opts["alpha_min_ratio"] = alpha_min_ratio
    model = CoxnetSurvivalAnalysis(**opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sksurv warns "all coefficients are zero" for the first lambda
        model.fit((x - mean) / sd, _survival_array(time, event))
    return model, mean, sd


@dataclass
class CVResult:
    lambdas: np.ndarray
    cvm: np.ndarray
    lambda_min: float
    selected: np.ndarray  # indices of the non-zero coefficients at lambda.min (full-data fit)
    n_fold_lambdas: int  # lambdas of the fold paths that glmnet keeps
    n_computed: int  # lambdas of the fold paths that sksurv computed
    not_counted_wall: float  # seconds spent in glmnet_path_end, to subtract from the timing
    not_counted_cpu: float


def sksurv_cv(time, event, x, foldid: np.ndarray, lambdas: np.ndarray, alpha_min_ratio: float, n_alphas: int) -> CVResult:
    """cv.glmnet's grouped deviance with sksurv fits (see the module docstring)."""
    full, _, sd = sksurv_path(time, event, x, alphas=lambdas)
    folds = np.unique(foldid)
    score = np.zeros(lambdas.size)
    n_fold_lambdas = n_computed = 0
    not_counted = [0.0, 0.0]  # wall, CPU seconds of glmnet_path_end (ours, not sksurv's work)
    for f in folds:
        train = foldid != f
        model, mean, fsd = sksurv_path(time[train], event[train], x[train], alpha_min_ratio=alpha_min_ratio, n_alphas=n_alphas)
        z_all = (x - mean) / fsd
        cut, wall, cpu = _timed(lambda: max(1, glmnet_path_end(model, time[train], event[train], z_all[train])))
        not_counted[0] += wall
        not_counted[1] += cpu
        n_fold_lambdas += cut
        n_computed += model.alphas_.size
        eta = z_all @ interpolate_path(model.alphas_[:cut], model.coef_[:, :cut], lambdas)
        for k in range(lambdas.size):
            score[k] += breslow_deviance(time, event, eta[:, k]) - breslow_deviance(time[train], event[train], eta[train, k])
    cvm = score / event.sum()  # sum_f events_f * (cvraw_f / events_f) / total events
    k_min = int(np.flatnonzero(cvm <= cvm.min())[0])  # lambdas decrease: the first minimiser is the largest
    return CVResult(lambdas, cvm, float(lambdas[k_min]), np.flatnonzero(full.coef_[:, k_min] / sd != 0), n_fold_lambdas,
                    n_computed, *not_counted)


def interpolate_path(alphas: np.ndarray, coef: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Coefficients (p x len(at)) at ``at`` by linear interpolation in alpha between the path's
    decreasing ``alphas`` (sksurv's ``_interpolate_coefficients``, vectorised), constant beyond
    the ends."""
    s = np.clip(at, alphas[-1], alphas[0])
    return np.array([np.interp(s, alphas[::-1], c[::-1]) for c in coef]).reshape(coef.shape[0], at.size)


def glmnet_path_end(model, time, event, z) -> int:
    """How many lambdas glmnet keeps of the sksurv path ``model`` fitted on ``z`` (standardised):
    it drops the path from the first lambda whose fit has a Newton weight ``w_i <= 0`` for a
    subject at risk (glmnet's ``outer()`` error -30000, evaluated at the fitted coefficients with
    ``lasso_cox``'s Breslow weights) and stops after the k-th lambda (k >= 5) when
    ``(dev_k - dev_{k-4}) / dev_k < 1e-3`` or ``dev_k > devmax`` (0.99). sksurv applies only the
    first deviance rule, so it may compute more lambdas."""
    from pathomics_desktop.stats.lasso_cox import _DEVMAX, _FDEV, _MNLAM, _CoxData

    data = _CoxData(time, event, np.ones(time.size), "breslow")
    dev = model.deviance_ratio_
    for k in range(dev.size):
        _, w = data.working(z @ model.coef_[:, k])
        if np.any(w[data.k_i > 0] <= 0):
            return k
        if k >= _MNLAM - 1 and ((dev[k] - dev[k - _MNLAM + 1]) / dev[k] < _FDEV or dev[k] > _DEVMAX):
            return k + 1
    return int(dev.size)


def _timed(fn):
    """``(result, wall seconds, CPU seconds of this process)``."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def _cpu_line(ours_cpu: float, peer_cpu: float) -> None:
    print(f"  CPU time (robust on a shared machine): ours {ours_cpu:.3f} s, sksurv {peer_cpu:.3f} s, "
          f"ratio {peer_cpu / max(ours_cpu, 1e-9):.1f}x", flush=True)


def run(n: int, p: int, folds: int, seed: int) -> dict:
    """Run both benchmarks and print the lines; returns the numbers (for tests)."""
    from pathomics_desktop.stats import lasso_cox as lc

    t, e, x, _ = synthetic_features(n, p, seed)
    names = [f"f{j + 1}" for j in range(p)]
    ratio = 0.01 if n < p else 1e-4  # glmnet's lambda.min.ratio default, as lasso_cox
    warm = synthetic_features(30, 5, seed)
    lc.lasso_cox_path(warm[0], warm[1], warm[2])  # compiles / loads our kernel outside the clock
    sksurv_path(warm[0], warm[1], warm[2], alpha_min_ratio=0.01)  # imports sksurv outside the clock

    path, t_ours, cpu_ours = _timed(lambda: lc.lasso_cox_path(t, e, x, names=names))
    (sk, _, sd), t_peer, cpu_peer = _timed(lambda: sksurv_path(t, e, x, alphas=path.lambdas))
    sk_coef = sk.coef_ / sd[:, None]
    diff_path = np.abs(path.coef - sk_coef).max(axis=0)
    out = {"path": _line(f"LASSO-Cox path (n={n}, p={p}, {path.lambdas.size} lambdas)", t_ours,
                         "sksurv CoxnetSurvivalAnalysis", t_peer, float(diff_path.max()))}
    _cpu_line(cpu_ours, cpu_peer)
    for q in PROBES:
        k = min(path.lambdas.size - 1, int(round(q * (path.lambdas.size - 1))))
        print(f"  lambda {path.lambdas[k]:.5f}: non-zero ours {int((path.coef[:, k] != 0).sum()):3d}, "
              f"sksurv {int((sk_coef[:, k] != 0).sum()):3d}, max|diff| {diff_path[k]:.1e}", flush=True)

    foldid = lc.make_folds(n, folds, seed, event=e)
    cv, t_ours_cv, cpu_ours = _timed(lambda: lc.lasso_cox_cv(t, e, x, names=names, foldid=foldid))
    peer, t_peer_cv, cpu_peer = _timed(lambda: sksurv_cv(t, e, x, foldid, cv.lambdas, ratio, 100))
    t_peer_cv -= peer.not_counted_wall
    cpu_peer -= peer.not_counted_cpu
    diff_cvm = float(np.max(np.abs(cv.cvm - peer.cvm)))
    out["cv"] = _line(f"path + {folds}-fold CV (grouped deviance)", t_ours_cv, "sksurv coxnet, same folds", t_peer_cv, diff_cvm)
    _cpu_line(cpu_ours, cpu_peer)
    print(f"  fold paths: {peer.n_fold_lambdas} lambdas as glmnet stops them (sksurv computed {peer.n_computed}; "
          f"the {peer.not_counted_wall:.3f} s of finding glmnet's stops are not counted); max|diff| is of cvm, whose "
          f"minimum is {cv.cvm.min():.4f}", flush=True)
    ours_sel = np.flatnonzero(cv.path.coef[:, int(np.flatnonzero(cv.lambdas == cv.lambda_min)[0])] != 0)
    same = bool(np.array_equal(ours_sel, peer.selected))
    print(f"lambda.min: ours {cv.lambda_min:.6g}, sksurv {peer.lambda_min:.6g}; selected at lambda.min: ours {ours_sel.size} "
          f"features, sksurv {peer.selected.size} features, same set: {'yes' if same else 'no'}", flush=True)
    out.update(lambdas=path.lambdas, coef=path.coef, sksurv_coef=sk_coef, cvm=cv.cvm, sksurv_cvm=peer.cvm,
               lambda_min=cv.lambda_min, sksurv_lambda_min=peer.lambda_min, selected=ours_sel,
               sksurv_selected=peer.selected, same_selection=same)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pathomics bench lasso", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="80 x 30 features, 5 folds (seconds), for tests")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--n", type=int, default=None, help="patients (default 255)")
    parser.add_argument("--p", type=int, default=None, help="features (default 206)")
    parser.add_argument("--folds", type=int, default=None, help="CV folds (default 10)")
    args = parser.parse_args(argv or [])
    n, p, folds = (80, 30, 5) if args.quick else (255, 206, 10)
    n, p, folds = args.n or n, args.p or p, args.folds or folds
    print(f"pathomics bench lasso: SYNTHETIC data, {n} patients x {p} features; ratio = sksurv time / our time "
          "(same data, same run)", flush=True)
    run(n, p, folds, args.seed)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
