"""LASSO-penalised Cox regression with glmnet's objective, lambda path and cross-validation.

Objective (R ``glmnet(x, Surv(t, e), family = "cox")`` with ``alpha = 1``), with observation
weights ``q_i`` normalised to sum to one and Breslow handling of tied event times::

    minimise  -l(beta) + lambda * sum_j |beta_j|
    l(beta) = sum_i q_i e_i eta_i - sum_k d_k log( sum_{j: t_j >= tau_k} q_j exp(eta_j) )

where ``eta = X beta``, ``tau_k`` are the distinct event times and ``d_k`` the summed weights of
the events at ``tau_k`` (with unit weights this is the partial log-likelihood divided by n, up to
a constant). Columns of X are standardised with the weighted (1/n) standard deviation unless
``standardize=False``; coefficients are reported on the input scale.

Solver: proximal Newton on a working set (strong rule of Tibshirani et al. 2012 plus the current
non-zeros, re-checked by the KKT conditions ``|x_j' r| <= lambda`` for every excluded j). Each
step uses the exact Breslow Hessian on the working set,
``H = X' diag(q e^eta B) X - sum_k d_k / S_k^2 S1_k S1_k'`` (``B_i = sum_{k: tau_k <= t_i} d_k / S_k``,
``S_k``/``S1_k`` the weighted risk-set sums of ``e^eta`` and ``e^eta x``), solves the L1-penalised
quadratic by coordinate descent finished by an exact solve on the sign pattern, and backtracks
on the penalised objective. glmnet uses a diagonal Hessian instead; both converge to the same
unique minimiser, which is computed here to KKT residuals ~1e-15.

Lambda path (as glmnet): ``lambda_max = max_j |x_j' r(0)|``, ``nlambda = 100`` values
geometrically down to ``lambda_max * lambda_min_ratio`` (0.01 when n < p else 1e-4), warm
starts; the path stops early like glmnet when, after the 5th lambda, the deviance ratio gains
less than 1e-3 (relative) over the last 4 steps or exceeds 0.99.

Cross-validation (``cv.glmnet(..., type.measure = "deviance", grouped = TRUE)``): each fold fit
computes its own lambda path; its coefficients are linearly interpolated at the full-data
lambdas; the fold's contribution is ``(D_full(beta_k) - D_train(beta_k)) / (events in fold)``
with ``D = 2 (l_saturated - l)`` the unweighted Breslow deviance (Verweij & van Houwelingen
1993); ``cvm`` and ``cvsd`` are the event-weighted mean and standard error over folds,
``lambda.min`` minimises ``cvm`` and ``lambda.1se`` is the largest lambda with
``cvm <= cvm(lambda.min) + cvsd(lambda.min)``.

Ties: a subject censored at an event time stays in that risk set (the usual convention). glmnet
means the same by adding ``100 * .Machine$double.eps`` to censored times, but that shift is lost
for times above 256, where its risk sets then depend on an unstable sort; on data with such ties
(e.g. survival::pbc in days) glmnet's coefficients differ from these by ~1e-4 relative, and
agree to ~1e-6 once the times are small numbers (e.g. years instead of days).

References: Simon N, Friedman J, Hastie T, Tibshirani R (2011) J Stat Softw 39(5):1-13;
Friedman J, Hastie T, Tibshirani R (2010) J Stat Softw 33(1):1-22.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.concordance import check_survival

__all__ = ["CoxPath", "LassoCoxCV", "lasso_cox_path", "lasso_cox_fit", "lasso_cox_cv", "cox_deviance", "make_folds"]

_FDEV = 1e-5 * 100  # glmnet.control()$fdev as used by the Cox path (scaled by 100 in coxnet)
_DEVMAX = 0.999 * 0.99 / 0.999
_MNLAM = 5
_BIG_ETA = np.log(np.finfo(float).max * 0.1)


class _CoxData:
    """Sorted survival data with the risk-set structure needed by the Breslow likelihood."""

    def __init__(self, time: np.ndarray, event: np.ndarray, weights: np.ndarray):
        ev_times = np.unique(time[event & (weights > 0)])
        if ev_times.size == 0:
            raise UserError("no events: the Cox model cannot be fitted")
        self.q = weights / weights.sum()
        self.event = event
        # k_i: number of event times <= t_i (subject i is in the risk sets 0..k_i-1)
        self.k_i = np.searchsorted(ev_times, time, side="right")
        # risk-set membership: subject in risk set k iff t_i >= tau_k  <=> k < k_i
        self.n_times = ev_times.size
        ev_idx = np.searchsorted(ev_times, time[event], side="left")
        self.dk = np.bincount(ev_idx, weights=self.q[event], minlength=self.n_times)
        self.ev_times = ev_times
        # rows sorted by k_i: risk set k is the suffix starting at first_in_risk[k]
        self.order_k = np.argsort(self.k_i, kind="stable")
        self.first_in_risk = np.searchsorted(self.k_i[self.order_k], np.arange(1, self.n_times + 1), side="left")

    def risk_sums(self, e: np.ndarray) -> np.ndarray:
        """``S_k = sum_{t_j >= tau_k} e_j`` for every event time k."""
        by_k = np.bincount(self.k_i, weights=e, minlength=self.n_times + 1)
        return by_k[::-1].cumsum()[::-1][1:]

    def loglik(self, eta: np.ndarray) -> float:
        eta = np.clip(eta, -_BIG_ETA, _BIG_ETA)
        s = self.risk_sums(self.q * np.exp(eta))
        return float(np.dot(self.q * self.event, eta) - np.dot(self.dk, np.log(s)))

    def saturated(self) -> float:
        d = self.dk[self.dk > 0]
        return float(-np.dot(d, np.log(d)))

    def working(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient residuals ``r`` and diagonal Newton weights ``w`` at ``eta``."""
        e = self.q * np.exp(np.clip(eta, -_BIG_ETA, _BIG_ETA))
        s = self.risk_sums(e)
        b_cum = np.concatenate(([0.0], np.cumsum(self.dk / s)))
        c_cum = np.concatenate(([0.0], np.cumsum(self.dk / s**2)))
        b = b_cum[self.k_i]
        c = c_cum[self.k_i]
        r = self.q * self.event - e * b
        w = e * b - e * e * c
        return r, np.maximum(w, 0.0)


    def grad_hess(self, eta: np.ndarray, xw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient and exact (negative) Hessian of the log-likelihood in the columns ``xw``.

        ``H = X' diag(e B) X - sum_k d_k / S_k^2 S1_k S1_k'`` with ``S1_k = sum_{R_k} e_j x_j``.
        """
        e = self.q * np.exp(np.clip(eta, -_BIG_ETA, _BIG_ETA))
        s = self.risk_sums(e)
        b = np.concatenate(([0.0], np.cumsum(self.dk / s)))[self.k_i]
        r = self.q * self.event - e * b
        grad = xw.T @ r
        root = np.sqrt(e * b)[:, None] * xw
        hess = root.T @ root
        ex = (e[:, None] * xw)[self.order_k]
        suffix = np.cumsum(ex[::-1], axis=0)[::-1]
        s1 = suffix[self.first_in_risk] * (np.sqrt(self.dk) / s)[:, None]
        hess -= s1.T @ s1
        return grad, hess


def _lasso_qp(h: np.ndarray, c: np.ndarray, lam: float, a: np.ndarray, max_rounds: int = 200) -> np.ndarray:
    """Minimise ``1/2 a'Ha - c'a + lam |a|_1`` (H positive semi-definite).

    Cyclic coordinate descent sweeps, each followed by an attempt to finish exactly: with the
    sign pattern s of the current non-zeros A, solve ``H_AA a_A = c_A - lam s_A`` and accept it when
    the signs hold and every zero coordinate satisfies ``|c_j - H_jA a_A| <= lam`` (KKT).
    """
    s_dim = c.size
    diag = np.diag(h).copy()
    diag[diag <= 0] = 1e-300
    a = a.copy()

    def polish(current: np.ndarray) -> np.ndarray | None:
        act = np.flatnonzero(current)
        if act.size == 0:
            return current if np.all(np.abs(c) <= lam) else None
        sign = np.sign(current[act])
        try:
            sol = np.linalg.solve(h[np.ix_(act, act)], c[act] - lam * sign)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.sign(sol) == sign):
            return None
        cand = np.zeros(s_dim)
        cand[act] = sol
        g2 = c - h @ cand
        inactive = np.ones(s_dim, dtype=bool)
        inactive[act] = False
        return cand if np.all(np.abs(g2[inactive]) <= lam * (1 + 1e-12)) else None

    # along a path the warm start usually has the right sign pattern already
    done = polish(a)
    if done is not None:
        return done
    grad = c - h @ a  # negative gradient of the smooth part
    failed = {tuple(np.sign(a))}
    for _round in range(max_rounds * 50):
        max_delta = 0.0
        for j in range(s_dim):
            aj = a[j]
            u = diag[j] * aj + grad[j]
            new = _soft(u, lam) / diag[j]
            if new != aj:
                grad -= (new - aj) * h[:, j]
                a[j] = new
                max_delta = max(max_delta, abs(new - aj))
        # the exact finish depends only on the sign pattern: try each pattern once
        pattern = tuple(np.sign(a))
        if pattern not in failed:
            done = polish(a)
            if done is not None:
                return done
            failed.add(pattern)
        if max_delta <= 1e-13 * (1.0 + float(np.max(np.abs(a)))):
            return a
    return a


def _prepare_x(x: np.ndarray, q: np.ndarray, standardize: bool, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = q @ x
    xc = x - mean
    sd = np.sqrt(q @ (xc**2))
    const = sd <= 1e-12 * np.maximum(1.0, np.abs(mean))
    if const.all():
        raise UserError("every feature is constant: nothing to select")
    scale = np.where(const, 1.0, sd) if standardize else np.ones(x.shape[1])
    return xc / scale, scale, const


def _soft(u: float, lam: float) -> float:
    if u > lam:
        return u - lam
    if u < -lam:
        return u + lam
    return 0.0


def _objective(data: _CoxData, eta: np.ndarray, beta: np.ndarray, lam: float) -> float:
    return -data.loglik(eta) + lam * float(np.abs(beta).sum())


def _solve_lambda(data: _CoxData, xs: np.ndarray, beta: np.ndarray, lam: float, lam_prev: float, excluded: np.ndarray,
                  tol: float, max_newton: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Minimise -l(beta) + lam |beta|_1 from the warm start ``beta``; returns (beta, eta).

    Proximal Newton with the exact Cox Hessian on a working set (strong rule plus current
    non-zeros), backtracking on the penalised objective, and KKT checks that add violators.
    """
    eta = xs @ beta
    r, _ = data.working(eta)
    grad_all = xs.T @ r
    strong = (np.abs(grad_all) > 2 * lam - lam_prev) & ~excluded
    work = np.flatnonzero(strong | (beta != 0))
    obj = _objective(data, eta, beta, lam)
    while True:
        for _ in range(max_newton):
            if work.size == 0:
                break
            xw = xs[:, work]
            b0 = beta[work]
            grad, hess = data.grad_hess(eta, xw)
            hess += 1e-12 * np.eye(work.size) * max(1.0, float(np.max(np.diag(hess))))
            target = _lasso_qp(hess, grad + hess @ b0, lam, b0)
            step = target - b0
            if not np.any(step):
                break
            t_step = 1.0
            d_eta = xw @ step
            while True:
                cand = beta.copy()
                cand[work] = b0 + t_step * step
                cand_eta = eta + t_step * d_eta
                cand_obj = _objective(data, cand_eta, cand, lam)
                if cand_obj <= obj + 1e-15 * max(1.0, abs(obj)) or t_step < 1e-10:
                    break
                t_step *= 0.5
            beta, eta = cand, cand_eta
            change = t_step * float(np.max(np.abs(step)))
            obj_old, obj = obj, cand_obj
            if change < 1e-10 * max(1.0, float(np.max(np.abs(beta)))) or obj_old - obj < tol * 1e-3 * max(1.0, abs(obj)):
                break
        r, _ = data.working(eta)
        grad_all = xs.T @ r
        viol = (np.abs(grad_all) > lam * (1 + 1e-9)) & ~excluded
        viol[work] = False
        if not viol.any():
            return beta, eta
        work = np.union1d(work, np.flatnonzero(viol))


@dataclass
class CoxPath:
    """A fitted path: ``coef[:, k]`` are input-scale coefficients at ``lambdas[k]``."""

    lambdas: np.ndarray
    coef: np.ndarray
    dev_ratio: np.ndarray
    names: list[str]
    null_deviance: float
    scale: np.ndarray = field(repr=False)


def _as_matrix(x, names) -> tuple[np.ndarray, list[str]]:
    xa = np.asarray(x, dtype=float)
    if xa.ndim == 1:
        xa = xa[:, None]
    names = list(names) if names is not None else [f"x{j + 1}" for j in range(xa.shape[1])]
    if len(names) != xa.shape[1]:
        raise UserError(f"{len(names)} feature names for {xa.shape[1]} columns")
    bad = ~np.isfinite(xa)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise UserError(f"feature {names[j]!r} is missing or not finite at row {i}")
    return xa, names


def lasso_cox_path(
    time,
    event,
    x,
    *,
    names: list[str] | None = None,
    lambdas=None,
    nlambda: int = 100,
    lambda_min_ratio: float | None = None,
    standardize: bool = True,
    weights=None,
    tol: float = 1e-12,
) -> CoxPath:
    """glmnet's Cox LASSO path (see module docstring). ``lambdas`` overrides the automatic path
    (given in decreasing order; no early stopping then)."""
    t, e = check_survival(time, event)
    xa, names = _as_matrix(x, names)
    n, p = xa.shape
    if xa.shape[0] != t.size:
        raise UserError(f"the feature matrix has {xa.shape[0]} rows but time has {t.size}")
    if int(e.sum()) < 2:
        raise UserError("fewer than two events: the LASSO-Cox path is undefined")
    wts = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    data = _CoxData(t, e, wts)
    xs, scale, const = _prepare_x(xa, data.q, standardize, names)
    ll0 = data.loglik(np.zeros(n))
    lsat = data.saturated()
    null_dev = lsat - ll0
    r0, _ = data.working(np.zeros(n))
    grad0 = np.abs(xs.T @ r0)
    grad0[const] = 0.0
    lam_max = float(grad0.max())
    if lam_max <= 0:
        raise UserError("no feature is associated with the outcome at all (zero gradient): lambda_max is 0")
    user = lambdas is not None
    if user:
        lam_seq = np.sort(np.atleast_1d(np.asarray(lambdas, dtype=float)))[::-1]
        if (lam_seq <= 0).any():
            raise UserError("lambda must be positive")
    else:
        ratio = lambda_min_ratio if lambda_min_ratio is not None else (0.01 if n < p else 1e-4)
        ratio = max(ratio, 1e-6)
        lam_seq = lam_max * ratio ** (np.arange(nlambda) / (nlambda - 1))
    beta = np.zeros(p)
    coefs, devs, used = [], [], []
    lam_prev = lam_max
    for k, lam in enumerate(lam_seq):
        if lam >= lam_max:
            beta = np.zeros(p)
            eta = np.zeros(n)
        else:
            beta, eta = _solve_lambda(data, xs, beta, lam, lam_prev, const, tol)
        lam_prev = lam
        dev = (data.loglik(eta) - ll0) / null_dev
        coefs.append(beta / scale)
        devs.append(dev)
        used.append(lam)
        if not user and k + 1 >= _MNLAM:
            if devs[-1] > 0 and (devs[-1] - devs[-_MNLAM]) / devs[-1] < _FDEV:
                break
            if devs[-1] > _DEVMAX:
                break
    return CoxPath(
        lambdas=np.array(used), coef=np.array(coefs).T, dev_ratio=np.array(devs), names=names,
        null_deviance=2 * null_dev * wts.sum(), scale=scale,
    )


def lasso_cox_fit(time, event, x, lam: float, *, names=None, standardize: bool = True) -> dict:
    """Coefficients at a single ``lam`` (reached through glmnet's path for warm starts):
    ``{"lambda", "coef": {name: value}, "selected": [names with non-zero coefficients]}``."""
    path = lasso_cox_path(time, event, x, names=names, standardize=standardize)
    grid = path.lambdas[path.lambdas > lam]
    full = lasso_cox_path(time, event, x, names=names, standardize=standardize, lambdas=np.concatenate((grid, [lam])))
    coef = full.coef[:, -1]
    return _coef_dict(lam, coef, full.names)


def _coef_dict(lam, coef, names) -> dict:
    return {
        "lambda": float(lam),
        "coef": {nm: float(c) for nm, c in zip(names, coef)},
        "selected": [nm for nm, c in zip(names, coef) if c != 0],
    }


def cox_deviance(t, e, x, coef_mat) -> np.ndarray:
    """Unweighted Breslow deviance ``2 (l_sat - l)`` for each column of ``coef_mat`` (p x L), as
    glmnet ``coxnet.deviance``; ``l_sat = -sum_k d_k log d_k``."""
    t = np.asarray(t, dtype=float)
    e = np.asarray(e, dtype=bool)
    x = np.asarray(x, dtype=float)
    coef_mat = np.asarray(coef_mat, dtype=float).reshape(x.shape[1], -1)
    ev_times, ev_counts = np.unique(t[e], return_counts=True)
    k_i = np.searchsorted(ev_times, t, side="right")
    ev_idx = np.searchsorted(ev_times, t[e])
    dk = np.bincount(ev_idx, minlength=ev_times.size).astype(float)
    lsat = -float(np.dot(ev_counts, np.log(ev_counts)))
    eta = x @ coef_mat
    eta = eta - eta.mean(axis=0)  # centring leaves the partial likelihood unchanged
    out = np.empty(coef_mat.shape[1])
    for k in range(coef_mat.shape[1]):
        ek = np.exp(np.clip(eta[:, k], -_BIG_ETA, _BIG_ETA))
        by_k = np.bincount(k_i, weights=ek, minlength=ev_times.size + 1)
        s = by_k[::-1].cumsum()[::-1][1:]
        ll = float(eta[e, k].sum() - np.dot(dk, np.log(s)))
        out[k] = 2 * (lsat - ll)
    return out


def _interp_coef(path: CoxPath, s: np.ndarray) -> np.ndarray:
    """Coefficients at ``s`` by linear interpolation in lambda (glmnet ``lambda.interp``),
    clamped to the fitted range."""
    lam = path.lambdas
    if lam.size == 1:
        return np.repeat(path.coef[:, :1], s.size, axis=1)
    lo, hi = lam[-1], lam[0]
    sc = np.clip(s, lo, hi)
    # lam is decreasing; locate the bracketing pair
    idx = np.searchsorted(-lam, -sc, side="left")
    idx = np.clip(idx, 1, lam.size - 1)
    left, right = idx - 1, idx
    frac = (sc - lam[right]) / (lam[left] - lam[right])
    exact_left = np.isclose(sc, lam[left], rtol=0, atol=0)
    frac = np.where(exact_left, 1.0, frac)
    return path.coef[:, left] * frac + path.coef[:, right] * (1 - frac)


@dataclass
class LassoCoxCV:
    lambdas: np.ndarray
    cvm: np.ndarray
    cvsd: np.ndarray
    lambda_min: float
    lambda_1se: float
    path: CoxPath
    foldid: np.ndarray = field(repr=False)

    def coef_at(self, which: str = "min") -> dict:
        lam = self.lambda_min if which == "min" else self.lambda_1se
        k = int(np.flatnonzero(self.lambdas == lam)[0])
        return _coef_dict(lam, self.path.coef[:, k], self.path.names)


def make_folds(n: int, k: int, seed: int) -> np.ndarray:
    """Balanced random fold labels 1..k (like ``sample(rep(seq(k), length = n))``), seeded."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.resize(np.arange(1, k + 1), n))


def lasso_cox_cv(
    time,
    event,
    x,
    *,
    names=None,
    folds: int = 10,
    seed: int = 0,
    foldid=None,
    standardize: bool = True,
    nlambda: int = 100,
    lambda_min_ratio: float | None = None,
) -> LassoCoxCV:
    """K-fold cross-validated LASSO-Cox (see module docstring); deterministic for a given seed."""
    t, e = check_survival(time, event)
    xa, names = _as_matrix(x, names)
    n = xa.shape[0]
    if foldid is None:
        if folds < 3:
            raise UserError("--folds must be at least 3")
        if folds > n:
            raise UserError(f"--folds {folds} is larger than the number of subjects ({n})")
        fid = make_folds(n, folds, seed)
    else:
        fid = np.asarray(foldid, dtype=int)
        if fid.size != n:
            raise UserError("foldid must have one label per subject")
    k = int(fid.max())
    full = lasso_cox_path(t, e, xa, names=names, standardize=standardize, nlambda=nlambda, lambda_min_ratio=lambda_min_ratio)
    lam = full.lambdas
    cvraw = np.full((k, lam.size), np.nan)
    ev_per_fold = np.zeros(k)
    for f in range(1, k + 1):
        test = fid == f
        train = ~test
        ev_per_fold[f - 1] = e[test].sum()
        if e[train].sum() < 2:
            raise UserError(f"fold {f}: fewer than two events remain for training; use fewer folds")
        fit = lasso_cox_path(t[train], e[train], xa[train], names=names, standardize=standardize, nlambda=nlambda,
                             lambda_min_ratio=lambda_min_ratio)
        coefs = _interp_coef(fit, lam)
        cvraw[f - 1] = cox_deviance(t, e, xa, coefs) - cox_deviance(t[train], e[train], xa[train], coefs)
    if (ev_per_fold == 0).any():
        raise UserError("a fold has no events; use fewer folds")
    cvraw = cvraw / ev_per_fold[:, None]
    wts = ev_per_fold
    cvm = (wts[:, None] * cvraw).sum(axis=0) / wts.sum()
    cvsd = np.sqrt(((wts[:, None] * (cvraw - cvm) ** 2).sum(axis=0) / wts.sum()) / (k - 1))
    imin = np.flatnonzero(cvm <= cvm.min())
    lam_min = float(lam[imin].max())
    idx_min = int(np.flatnonzero(lam == lam_min)[0])
    lam_1se = float(lam[cvm <= cvm[idx_min] + cvsd[idx_min]].max())
    return LassoCoxCV(lambdas=lam, cvm=cvm, cvsd=cvsd, lambda_min=lam_min, lambda_1se=lam_1se, path=full, foldid=fid)
