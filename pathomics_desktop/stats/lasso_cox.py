"""LASSO-penalised Cox regression that reproduces R glmnet (4.1-6) with its defaults: objective,
risk sets for tied times, lambda path, coordinate descent and ``cv.glmnet`` deviance.

Objective (``glmnet(x, Surv(t, e), family = "cox")``, ``alpha = 1``), with observation weights
``q_i`` normalised to sum to one and Breslow handling of tied event times::

    minimise  -l(beta) + lambda * sum_j |beta_j|
    l(beta) = sum_i q_i e_i eta_i - sum_k d_k log( sum_{j in R_k} q_j exp(eta_j) )

``eta = X beta``, ``R_k`` the risk set of the k-th distinct event time ``tau_k``, ``d_k`` the summed
weights of the events at ``tau_k``. Columns of X are centred and scaled by their weighted (1/n)
standard deviation unless ``standardize=False``; coefficients are reported on the input scale.

What glmnet computes (read from its Fortran ``coxnet``, used for right-censored ``Surv`` without
strata, and checked against R on survival::lung and pbc in days, rows in given and reversed order):

* Risk sets (``ties="glmnet"``, the default). glmnet adds ``100 * .Machine$double.eps`` (2.2e-14,
  absolute) to censored times, sorts the rows with its quicksort ``psort7`` and cuts the sorted
  rows into groups: a group starts at an event whose time exceeds the previous group's event
  time; ``R_k`` is every row in groups ``>= k``; rows before the first event are dropped. Below
  256 the shift puts a censored time tied with an event time after the events, so the subject
  stays at risk (the usual convention). From 256 up the shift rounds away (half an ulp of 256 is
  2.8e-14), the tie stays, and ``psort7`` (not a stable sort) decides: a censored subject that it
  places before the first event of its time falls in the previous group and is *not* at risk at
  its own time (except at the first event time, where all tied rows are kept). This is not
  instability: ``psort7`` is a deterministic function of the times in row order, so glmnet's fit
  is reproducible for a given row order, but it changes with the row order: reversing the rows
  of lung (4 censored ties >= 256) moves glmnet's default coefficients by up to 13% and of pbc
  (3 such ties) by up to 8% (``tests/stats/reference/markers_glmnet_days.json``). We port
  ``psort7`` and ``groups`` exactly and agree with glmnet to ~1e-12 in both row orders.
  ``ties="breslow"`` instead keeps every censored subject with ``t_i >= tau_k`` in ``R_k``: the
  textbook Breslow likelihood, independent of row order (identical to glmnet when no censored
  time >= 256 equals an event time, e.g. times in years).
* Solver (``thresh``, ``maxit``). glmnet stops its coordinate descent when no coefficient moves by
  ``v_j delta_j^2 >= thresh * D0`` (``D0`` the null deviance / 2n, default ``thresh = 1e-7``); its
  default fits therefore differ from the exact minimiser by up to ~2% relative on lung/pbc. We
  run the same algorithm: per lambda the strong set ``|x_j' r| > 2 lambda - lambda_prev``,
  cyclic coordinate descent on the quadratic approximation with glmnet's diagonal weights
  ``w_i = e_i (B_i - e_i C_i)`` and residuals ``r_i = q_i e_i - e_i B_i`` (``B_i = sum_{k: i in R_k}
  d_k / S_k``, ``C_i = sum d_k / S_k^2``), sweeps of the strong set then of the active set, a
  recomputation of ``w, r`` after convergence, the KKT check ``|x_j' r| <= lambda`` of excluded
  features, and glmnet's single-precision constants (``lambda`` ratio ``eps ** float32(1/(nlambda-1))``,
  ``devmax = 0.999f * 0.99f / 0.999f``). ``thresh=None`` computes the exact minimiser instead
  (proximal Newton with the exact Breslow Hessian on a working set, KKT residuals ~1e-15).
* Lambda path: ``lambda_max = max_j |x_j' r(0)|``, ``nlambda = 100`` values geometrically down to
  ``lambda_max * lambda_min_ratio`` (0.01 when n < p else 1e-4) with warm starts; the first
  reported lambda is glmnet's ``fix.lam`` extrapolation; the path stops early when, from the 5th
  lambda on, the deviance ratio gains less than 1e-3 (relative) over 4 steps or exceeds 0.99.
* Cross-validation (``cv.glmnet(..., type.measure = "deviance", grouped = TRUE)``): each fold fit
  computes its own path; its coefficients are linearly interpolated at the full-data lambdas;
  the fold contributes ``(D_full(beta_k) - D_train(beta_k)) / (events in fold)`` with ``D = 2
  (l_saturated - l)`` the unweighted Breslow deviance (Verweij & van Houwelingen 1993) on the
  same kind of risk sets (glmnet's sort of the full and of the training rows); ``cvm``/``cvsd``
  are the event-weighted mean and standard error over folds, ``lambda.min`` minimises ``cvm`` and
  ``lambda.1se`` is the largest lambda with ``cvm <= cvm(lambda.min) + cvsd(lambda.min)``.
  Without a ``foldid`` the folds are drawn from ``seed`` stratified by event status
  (:func:`make_folds`): every fold's event count differs by at most one from the others'.

Measured agreement with glmnet 4.1-6 defaults (coefficients with |b| > 1e-6, relative): days
(lung, pbc; both row orders) <= 1e-12, years (lung, pbc, veteran) <= 3e-13, 25 x 30 CoxExample
~1e-10; cvm ~1e-14; lambda.min / lambda.1se identical. The previous implementation (exact
minimiser, censored ties always at risk) differed from glmnet defaults by up to 20% (lung) and
from glmnet with ``thresh = 1e-14`` by 5e-5 (lung, small entering coefficients) and 2e-2 (pbc,
ties).

References: Simon N, Friedman J, Hastie T, Tibshirani R (2011) J Stat Softw 39(5):1-13;
Friedman J, Hastie T, Tibshirani R (2010) J Stat Softw 33(1):1-22; Singleton RC (1969)
Algorithm 347, Commun ACM 12(3):185-186.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.concordance import check_survival

__all__ = ["CoxPath", "LassoCoxCV", "lasso_cox_path", "lasso_cox_fit", "lasso_cox_cv", "cox_deviance", "make_folds"]

_FDEV = 1e-5 * 100  # glmnet.control()$fdev as used by the Cox path (scaled by 100 in coxnet)
# glmnet's Fortran writes these literals in single precision (``0.999``, ``0.99``, ``0.1``,
# ``1.0/(nlam-1)``); the float32 values below are what its double-precision code then uses
_F32 = np.float32
_DEVMAX = float(_F32(0.999)) * float(_F32(0.99)) / float(_F32(0.999))
_MNLAM = 5
GLMNET_THRESH = 1e-7  # glmnet's default thresh
GLMNET_MAXIT = 100_000  # glmnet's default maxit
_BIG_ETA = float(np.log(np.finfo(float).max * float(_F32(0.1))))
_BIG = 9.9e35  # glmnet's "big": the first lambda of an automatic path before fix.lam


# ---------------------------------------------------------------------------------------------
# glmnet's ordering of the survival times (Fortran ``psort7`` + ``groups``), reproduced exactly
# ---------------------------------------------------------------------------------------------

_GLMNET_CENSOR_SHIFT = 100 * np.finfo(float).eps  # glmnet: ty + (1 - status) * 100 * .Machine$double.eps


def _glmnet_times(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """The times glmnet sorts: censored times shifted up by ``100 * eps`` (absolute), evaluated
    in glmnet's order ``ty + ((1 - status) * 100) * eps``; the shift is lost in rounding for
    times >= 256 (half an ulp of 256 is 2.8e-14 > 2.2e-14)."""
    return time + (1.0 - event.astype(float)) * _GLMNET_CENSOR_SHIFT


def _psort7(v: np.ndarray) -> np.ndarray:
    """0-based permutation sorting ``v`` increasingly, identical to glmnet's Fortran ``psort7``
    (Singleton's quicksort, CACM algorithm 347, median of three with insertion sort for
    segments of <= 11). It is not a stable sort: equal values come out in an order fixed by
    the algorithm and the input order, which is what makes glmnet's risk sets depend on the
    row order for censored times equal to event times (see the module docstring)."""
    n = int(v.size)
    vv = [0.0, *map(float, v)]  # 1-based like the Fortran
    a = list(range(n + 1))
    il = [0] * 40
    iu = [0] * 40
    ii, jj = 1, n
    m, i, j = 1, ii, jj
    k = l = t = tt = 0
    vt = 0.0
    label = 10
    while True:
        if label == 10:
            label = 80 if i >= j else 20
        elif label == 20:
            k = i
            ij = (j + i) // 2
            t = a[ij]
            vt = vv[t]
            if vv[a[i]] > vt:
                a[ij], a[i] = a[i], t
                t = a[ij]
                vt = vv[t]
            l = j
            if vv[a[j]] < vt:
                a[ij], a[j] = a[j], t
                t = a[ij]
                vt = vv[t]
                if vv[a[i]] > vt:
                    a[ij], a[i] = a[i], t
                    t = a[ij]
                    vt = vv[t]
            label = 50
        elif label == 40:
            a[l] = a[k]
            a[k] = tt
            label = 50
        elif label == 50:
            l -= 1
            while vv[a[l]] > vt:
                l -= 1
            tt = a[l]
            k += 1
            while vv[a[k]] < vt:
                k += 1
            if k <= l:
                label = 40
            elif l - i <= j - k:
                il[m], iu[m] = k, j
                j = l
                m += 1
                label = 90
            else:
                il[m], iu[m] = i, l
                i = k
                m += 1
                label = 90
        elif label == 80:
            m -= 1
            if m == 0:
                return np.asarray(a[1:], dtype=np.intp) - 1
            i, j = il[m], iu[m]
            label = 90
        elif label == 90:
            if j - i > 10:
                label = 20
            elif i == ii:
                label = 10
            else:
                i -= 1
                label = 100
        elif label == 100:
            i += 1
            if i == j:
                label = 80
                continue
            t = a[i + 1]
            vt = vv[t]
            if vv[a[i]] <= vt:
                continue
            k = i
            a[k + 1] = a[k]
            k -= 1
            while vt < vv[a[k]]:
                a[k + 1] = a[k]
                k -= 1
            a[k + 1] = t


def _glmnet_groups(time: np.ndarray, event: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Risk-set index ``k_i`` of every subject as glmnet's Fortran ``groups`` defines it.

    The jittered times are sorted with :func:`_psort7`; subjects with zero weight and those
    before the first event are dropped (``k_i = 0``). Group 1 runs from the first kept
    position up to the position before the first event with a later time; each further group
    starts at an event with a time greater than the previous group's event time. The risk
    set of the k-th event time is every subject in groups ``>= k``, so ``k_i`` (the subject's
    group) is the number of risk sets it belongs to. A censored subject whose (jittered) time
    equals an event time but that the sort puts before that event ends in the previous group
    and is *not* at risk at that event time.
    """
    y = _glmnet_times(time, event)
    jp = _psort7(y)
    jp = jp[q[jp] > 0]
    nj = jp.size
    k_i = np.zeros(time.size, dtype=np.intp)
    ev_pos = np.flatnonzero(event[jp])
    if ev_pos.size == 0:
        return k_i
    first = int(ev_pos[0])
    t0 = y[jp[first]]
    j0 = first  # positions before j0 with y < t0 are dropped
    while j0 > 0 and not y[jp[j0 - 1]] < t0:
        j0 -= 1
    jp = jp[j0:]
    nj = jp.size
    yk = t0
    group = 1
    start = 0
    j = 1
    while True:
        while j < nj and not (event[jp[j]] and y[jp[j]] > yk):
            j += 1
        k_i[jp[start:j]] = group
        if j >= nj:
            break
        group += 1
        start = j
        yk = y[jp[j]]
        j += 1
    return k_i


def _risk_index(time: np.ndarray, event: np.ndarray, weights: np.ndarray, ties: str) -> tuple[np.ndarray, int]:
    """``(k_i, number of risk sets)`` for ``ties`` = ``"glmnet"`` or ``"breslow"`` (see the module
    docstring); subjects with zero weight or censored before the first event have ``k_i = 0``."""
    if ties == "glmnet":
        k_i = _glmnet_groups(time, event, weights)
        return k_i, int(k_i.max(initial=0))
    if ties != "breslow":
        raise UserError(f"ties must be 'glmnet' or 'breslow', not {ties!r}")
    used = weights > 0
    ev_times = np.unique(time[event & used])
    k_i = np.where(used, np.searchsorted(ev_times, time, side="right"), 0)
    return k_i.astype(np.intp), int(ev_times.size)


class _CoxData:
    """Survival data with the risk-set structure needed by the Breslow likelihood.

    ``k_i`` is the number of risk sets subject i belongs to (risk sets are nested: subject i is
    in the risk sets ``0 .. k_i - 1``); ``dk`` the summed normalised event weights of each set.
    ``ties="glmnet"`` takes the risk sets from glmnet's sort (:func:`_glmnet_groups`),
    ``ties="breslow"`` keeps every subject with ``t_i >= tau_k`` in the k-th risk set.
    """

    def __init__(self, time: np.ndarray, event: np.ndarray, weights: np.ndarray, ties: str = "glmnet"):
        self.q = weights / weights.sum()
        self.event = event
        self.k_i, self.n_times = _risk_index(time, event, weights, ties)
        if self.n_times == 0:
            raise UserError("no events: the Cox model cannot be fitted")
        self.dk = np.bincount(self.k_i, weights=self.q * event, minlength=self.n_times + 1)[1:]
        # rows sorted by k_i: risk set k is the suffix starting at first_in_risk[k]
        self.order_k = np.argsort(self.k_i, kind="stable")
        self.first_in_risk = np.searchsorted(self.k_i[self.order_k], np.arange(1, self.n_times + 1), side="left")

    def risk_sums(self, e: np.ndarray) -> np.ndarray:
        """``S_k = sum_{j in R_k} e_j`` for every risk set k."""
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
    const = (x == x[:1]).all(axis=0)  # glmnet's chkvars: every value equal to the first
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


# ---------------------------------------------------------------------------------------------
# glmnet's coordinate descent (Fortran ``coxnet1``), reproduced step by step
# ---------------------------------------------------------------------------------------------


@dataclass
class _RawPath:
    lambdas: list[float]
    beta: list[np.ndarray]  # standardised-scale coefficients
    dev: list[float]


_PATH_KERNEL = None


def _cd_path_kernel():
    """glmnet's Cox path loop (Fortran ``coxnet1``, ``alpha = 1``) as one numba-compiled function
    (cached on disk; one function without references to other compiled functions, so that the
    cache is reused across processes): no Python runs per sweep or per quadratic approximation.

    A sweep visits the features of ``order`` in turn: ``g_k = x_k' r``, ``u = a_k v_k + g_k``,
    ``a_k <- S(u, lambda) / v_k`` (soft threshold, ``v_k = sum_i w_i x_ik^2``); on a change ``delta``
    the working residuals follow, ``r <- r - delta w x_k``, and ``v_k delta^2`` enters the
    convergence measure ``dli``. The update of ``r`` after one change is done in the same pass over
    ``r`` as the next feature's ``x_k' r``, with ``w x_k`` computed once per round. ``w`` and ``r``
    are recomputed (:meth:`_CoxData.working`, O(n) suffix sums over the nested risk sets) only
    between coordinate-descent rounds. Sums are compiled with reassociation allowed (vectorised);
    that changes their rounding (~1e-16 relative), not the algorithm."""
    global _PATH_KERNEL
    if _PATH_KERNEL is not None:
        return _PATH_KERNEL
    import numba

    # reassociation lets the inner products vectorise; no assumptions about NaN or infinity
    @numba.njit(cache=True, fastmath={"reassoc", "contract"})
    def path(xs, q, ev, k_i, dk, eligible, wr, w, ga, r0, rr, lam_user, nlam, alf, cthr, maxit, mnl, fdev, devmax,
             big, big_eta, lams, betas, devs):  # pragma: no cover
        """Fills ``lams[:m]``, ``betas[:m]``, ``devs[:m]`` and returns ``m`` (lambdas done).
        ``wr``, ``w``, ``ga`` (residuals, weights, ``|x_j' r|`` at beta = 0) are updated in place."""
        n, p = xs.shape
        m = dk.size
        e = np.empty(n)
        s = np.empty(m + 1)
        bcum = np.empty(m + 1)
        ccum = np.empty(m + 1)
        resid = np.empty(n)
        wx = np.empty((p, n))  # wx[j, i] = w_i x_ij for the strong set (rows contiguous)
        f = np.zeros(n)
        a = np.zeros(p)
        a_start = np.zeros(p)
        v = np.zeros(p)
        in_strong = np.zeros(p, dtype=np.bool_)
        is_active = np.zeros(p, dtype=np.bool_)
        active = np.empty(p, dtype=np.intp)
        strong = np.empty(p, dtype=np.intp)
        nin = 0
        user = lam_user.size > 0
        nlp = 0
        al = 0.0
        done = 0
        for ilm in range(nlam):
            al0 = al
            if user:
                al = lam_user[ilm]
            elif ilm > 1:
                al = al * alf
            elif ilm == 0:
                al = big
            else:
                gmax = 0.0
                for j in range(p):
                    if eligible[j] and ga[j] > gmax:
                        gmax = ga[j]
                al0 = gmax / max(1.0, 1e-3)
                al = alf * al0
            tlam = 2.0 * al - al0
            for j in range(p):
                if eligible[j] and ga[j] > tlam:
                    in_strong[j] = True
            failed = False
            while True:  # glmnet's ':again:' loop
                if nlp > maxit:
                    failed = True
                    break
                a_start[:] = a
                ns = 0
                for j in range(p):
                    if in_strong[j]:
                        strong[ns] = j
                        ns += 1
                if ns > 0:
                    for c in range(ns):
                        j = strong[c]
                        vj = 0.0
                        for i in range(n):
                            wx[j, i] = w[i] * xs[i, j]
                            vj += xs[i, j] * wx[j, i]
                        v[j] = vj
                    resid[:] = wr
                    # a sweep of the strong set; while it moves, sweeps of the active set until
                    # they converge, then the strong set again
                    over_strong = True
                    while True:
                        nlp += 1
                        order = strong if over_strong else active
                        count = ns if over_strong else nin
                        dli = 0.0
                        last = -1  # the residual update of the previous change is fused with the next x_k' r
                        last_delta = 0.0
                        for c in range(count):
                            k = order[c]
                            ak = a[k]
                            vk = v[k]
                            gk = 0.0
                            if last >= 0:
                                for i in range(n):
                                    ri = resid[i] - last_delta * wx[last, i]
                                    resid[i] = ri
                                    gk += xs[i, k] * ri
                                last = -1
                            else:
                                for i in range(n):
                                    gk += xs[i, k] * resid[i]
                            u = ak * vk + gk
                            au = abs(u)
                            at = 0.0 if au <= al else math.copysign(au - al, u) / vk
                            if at != ak:
                                delta = at - ak
                                a[k] = at
                                d = vk * delta * delta
                                if d > dli:
                                    dli = d
                                last = k
                                last_delta = delta
                                if not is_active[k]:  # enters the active set (glmnet's order)
                                    is_active[k] = True
                                    active[nin] = k
                                    nin += 1
                        if last >= 0:
                            for i in range(n):
                                resid[i] -= last_delta * wx[last, i]
                        if dli < cthr:
                            if over_strong:
                                break
                            over_strong = True
                            continue
                        if nlp > maxit:
                            failed = True
                            break
                        over_strong = False
                    if failed:
                        break
                    for c in range(ns):
                        j = strong[c]
                        dj = a[j] - a_start[j]
                        if dj != 0.0:
                            for i in range(n):
                                f[i] += xs[i, j] * dj
                else:
                    nlp += 1
                # the quadratic approximation at the new eta: w and r (see _CoxData.working)
                s[:] = 0.0
                for i in range(n):
                    e[i] = q[i] * math.exp(min(max(f[i], -big_eta), big_eta))
                    s[k_i[i]] += e[i]
                for k in range(m - 1, -1, -1):
                    s[k] += s[k + 1]
                bcum[0] = 0.0
                ccum[0] = 0.0
                for k in range(m):
                    bcum[k + 1] = bcum[k] + dk[k] / s[k + 1]
                    ccum[k + 1] = ccum[k] + dk[k] / (s[k + 1] * s[k + 1])
                for i in range(n):
                    b = bcum[k_i[i]]
                    wr[i] = q[i] * ev[i] - e[i] * b
                    w[i] = max(e[i] * b - e[i] * e[i] * ccum[k_i[i]], 0.0)
                    if k_i[i] > 0 and w[i] <= 0.0:  # glmnet's outer(): jerr = -30000, path truncated
                        failed = True
                if failed:
                    break
                moved = False
                for c in range(nin):
                    j = active[c]
                    dj = a[j] - a_start[j]
                    if v[j] * dj * dj >= cthr:
                        moved = True
                        break
                if moved:
                    continue
                violated = False  # KKT check of the features outside the strong set
                for j in range(p):
                    if eligible[j] and not in_strong[j]:
                        g = 0.0
                        for i in range(n):
                            g += wr[i] * xs[i, j]
                        ga[j] = abs(g)
                        if ga[j] > al:
                            in_strong[j] = True
                            violated = True
                if violated:
                    continue
                break
            if failed:
                break
            # log-likelihood at eta = f (see _CoxData.loglik); s holds the risk sums of this f
            ll = 0.0
            for i in range(n):
                ll += q[i] * ev[i] * min(max(f[i], -big_eta), big_eta)
            for k in range(m):
                ll -= dk[k] * math.log(s[k + 1])
            lams[done] = al
            betas[done, :] = a
            devs[done] = (ll - r0) / rr
            done += 1
            if ilm + 1 < mnl or user:
                continue
            if (devs[done - 1] - devs[done - mnl]) / devs[done - 1] < fdev:
                break
            if devs[done - 1] > devmax:
                break
        return done

    _PATH_KERNEL = path
    return path


def _glmnet_cd_path(data: _CoxData, xs: np.ndarray, const: np.ndarray, lam_user: np.ndarray | None, nlambda: int,
                    flmin: float, thresh: float, maxit: int) -> _RawPath:
    """glmnet's path algorithm for the Cox LASSO (``alpha = 1``, unit penalty factors).

    Per lambda: strong-rule set ``|x_j' r| > 2 lambda - lambda_prev``; cyclic coordinate descent
    on the quadratic approximation with the diagonal Newton weights ``w`` and working residuals
    ``r`` (a full sweep of the strong set, then sweeps of the active set until the largest
    ``v_j delta_j^2`` is below ``thresh * D0``, ``D0 = -(sum d_k log d_k + l(0))``); then ``w``
    and ``r`` are recomputed at the new ``eta``, and the lambda is done when no active
    coefficient moved by ``v_j delta_j^2 >= thresh * D0`` since the last recomputation and no
    excluded feature violates ``|x_j' r| <= lambda``. ``maxit`` bounds the total number of sweeps
    (glmnet then returns the path so far, as here). The loop runs compiled (:func:`_cd_path_kernel`).
    """
    n, p = xs.shape
    xs = np.asfortranarray(xs, dtype=float)
    eligible = ~const
    f = np.zeros(n)
    r0 = data.loglik(f)
    dk = data.dk[data.dk > 0]
    rr = -(float(np.dot(dk, np.log(dk))) + r0)
    wr, w = data.working(f)
    ga = np.zeros(p)
    ga[eligible] = np.abs(wr @ xs[:, eligible])
    user = lam_user is not None
    nlam = lam_user.size if user else nlambda
    alf = 1.0
    if not user:
        alf = max(1e-6, flmin) ** float(_F32(1.0) / _F32(nlam - 1))  # eqs**(1.0/(nlam-1)), single precision
    lams = np.empty(nlam)
    betas = np.empty((nlam, p))
    devs = np.empty(nlam)
    done = _cd_path_kernel()(
        xs, np.ascontiguousarray(data.q, dtype=float), np.ascontiguousarray(data.event, dtype=float),
        np.ascontiguousarray(data.k_i, dtype=np.intp), np.ascontiguousarray(data.dk, dtype=float),
        np.ascontiguousarray(eligible), np.array(wr, dtype=float), np.array(w, dtype=float), ga, float(r0), float(rr),
        np.ascontiguousarray(lam_user if user else np.empty(0), dtype=float), int(nlam), float(alf),
        float(thresh * rr), int(maxit), int(min(_MNLAM, nlam)), float(_FDEV), float(_DEVMAX), float(_BIG),
        float(_BIG_ETA), lams, betas, devs,
    )
    return _RawPath(list(lams[:done]), [betas[k].copy() for k in range(done)], list(devs[:done]))


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
    thresh: float | None = GLMNET_THRESH,
    maxit: int = GLMNET_MAXIT,
    ties: str = "glmnet",
) -> CoxPath:
    """glmnet's Cox LASSO path (see module docstring). ``lambdas`` overrides the automatic path
    (given in decreasing order; no early stopping then). ``thresh``/``maxit``: glmnet's
    convergence threshold and sweep limit (defaults as glmnet); ``thresh=None`` computes the exact
    minimiser at every lambda instead (KKT residuals ``<= tol``-level). ``ties``: ``"glmnet"``
    (default, glmnet's risk sets) or ``"breslow"`` (censored at an event time stay at risk)."""
    t, e = check_survival(time, event)
    xa, names = _as_matrix(x, names)
    n, p = xa.shape
    if xa.shape[0] != t.size:
        raise UserError(f"the feature matrix has {xa.shape[0]} rows but time has {t.size}")
    if int(e.sum()) < 2:
        raise UserError("fewer than two events: the LASSO-Cox path is undefined")
    if thresh is not None and not thresh > 0:
        raise UserError("thresh must be positive")
    wts = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if wts.shape != (n,) or not np.isfinite(wts).all() or (wts < 0).any() or wts.sum() <= 0:
        raise UserError("weights must be one non-negative number per subject, not all zero")
    data = _CoxData(t, e, wts, ties)
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
        if (lam_seq <= 0).any() or not np.isfinite(lam_seq).all():
            raise UserError("lambda must be positive")
    ratio = lambda_min_ratio if lambda_min_ratio is not None else (0.01 if n < p else 1e-4)
    if not user and not 0 < ratio < 1:
        raise UserError("lambda_min_ratio must be between 0 and 1")
    if not user and nlambda < 3:
        raise UserError("nlambda must be at least 3")
    if thresh is not None:
        raw = _glmnet_cd_path(data, xs, const, lam_seq if user else None, nlambda, ratio, thresh, maxit)
        if not raw.lambdas:
            raise UserError(f"LASSO-Cox did not converge at the first lambda within maxit = {maxit} sweeps")
        used = np.array(raw.lambdas)
        if not user:  # glmnet's fix.lam: the first lambda extrapolated from the next two
            used[0] = math.exp(2 * math.log(used[1]) - math.log(used[2])) if used.size > 2 else lam_max
        coefs = [b / scale for b in raw.beta]
        devs = raw.dev
    else:
        if not user:
            lam_seq = lam_max * max(ratio, 1e-6) ** (np.arange(nlambda) / (nlambda - 1))
        beta = np.zeros(p)
        coefs, devs, used_l = [], [], []
        lam_prev = lam_max
        for k, lam in enumerate(lam_seq):
            if lam >= lam_max:
                beta = np.zeros(p)
                eta = np.zeros(n)
            else:
                beta, eta = _solve_lambda(data, xs, beta, lam, lam_prev, const, tol)
            lam_prev = lam
            coefs.append(beta / scale)
            devs.append((data.loglik(eta) - ll0) / null_dev)
            used_l.append(lam)
            if not user and k + 1 >= _MNLAM:
                if devs[-1] > 0 and (devs[-1] - devs[-_MNLAM]) / devs[-1] < _FDEV:
                    break
                if devs[-1] > _DEVMAX:
                    break
        used = np.array(used_l)
    return CoxPath(
        lambdas=used, coef=np.array(coefs).T, dev_ratio=np.array(devs), names=names,
        null_deviance=2 * null_dev * wts.sum(), scale=scale,
    )


def lasso_cox_fit(time, event, x, lam: float, *, names=None, standardize: bool = True,
                  thresh: float | None = GLMNET_THRESH, maxit: int = GLMNET_MAXIT, ties: str = "glmnet") -> dict:
    """Coefficients at a single ``lam`` as ``coef(glmnet(x, y, "cox"), s = lam, exact = TRUE,
    x = x, y = y)``: the default path's lambdas above ``lam`` followed by ``lam`` (warm starts):
    ``{"lambda", "coef": {name: value}, "selected": [names with non-zero coefficients]}``."""
    opts = dict(names=names, standardize=standardize, thresh=thresh, maxit=maxit, ties=ties)
    path = lasso_cox_path(time, event, x, **opts)
    grid = path.lambdas[path.lambdas > lam]
    full = lasso_cox_path(time, event, x, lambdas=np.concatenate((grid, [lam])), **opts)
    coef = full.coef[:, -1]
    return _coef_dict(lam, coef, full.names)


def _coef_dict(lam, coef, names) -> dict:
    return {
        "lambda": float(lam),
        "coef": {nm: float(c) for nm, c in zip(names, coef)},
        "selected": [nm for nm, c in zip(names, coef) if c != 0],
    }


def cox_deviance(t, e, x, coef_mat, *, ties: str = "glmnet") -> np.ndarray:
    """Unweighted Breslow deviance ``2 (l_sat - l)`` for each column of ``coef_mat`` (p x L), as
    glmnet ``coxnet.deviance`` (Fortran ``loglike``, with the risk sets of ``ties``);
    ``l_sat = -sum_k d_k log d_k``."""
    t = np.asarray(t, dtype=float)
    e = np.asarray(e, dtype=bool)
    x = np.asarray(x, dtype=float)
    coef_mat = np.asarray(coef_mat, dtype=float).reshape(x.shape[1], -1)
    k_i, n_sets = _risk_index(t, e, np.ones(t.size), ties)
    dk = np.bincount(k_i, weights=e.astype(float), minlength=n_sets + 1)[1:]
    lsat = -float(np.dot(dk, np.log(dk)))
    eta = (x - x.mean(axis=0)) @ coef_mat  # centring leaves the partial likelihood unchanged
    out = np.empty(coef_mat.shape[1])
    for k in range(coef_mat.shape[1]):
        ek = np.exp(np.clip(eta[:, k], -_BIG_ETA, _BIG_ETA))
        by_k = np.bincount(k_i, weights=ek, minlength=n_sets + 1)
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


def make_folds(n: int, k: int, seed: int, event=None) -> np.ndarray:
    """Random fold labels 1..k, seeded (deterministic for a seed).

    Without ``event``: balanced labels in random order (like ``sample(rep(seq(k), length = n))``).
    With ``event`` (0/1 per subject): stratified by event status. The subjects with an event,
    in random order, then those without, in random order, are dealt the labels
    ``1, 2, ..., k, 1, 2, ...`` in turn, so every fold's event count and every fold's size
    differ by at most one from the others'."""
    rng = np.random.default_rng(seed)
    if event is None:
        return rng.permutation(np.resize(np.arange(1, k + 1), n))
    ev = np.asarray(event).astype(bool)
    if ev.size != n:
        raise UserError("make_folds: one event status per subject is needed")
    order = np.concatenate([rng.permutation(np.flatnonzero(ev)), rng.permutation(np.flatnonzero(~ev))])
    fid = np.empty(n, dtype=int)
    fid[order] = np.resize(np.arange(1, k + 1), n)
    return fid


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
    thresh: float | None = GLMNET_THRESH,
    maxit: int = GLMNET_MAXIT,
    ties: str = "glmnet",
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
        fid = make_folds(n, folds, seed, event=e)  # stratified by event status
    else:
        fid = np.asarray(foldid, dtype=int)
        if fid.size != n:
            raise UserError("foldid must have one label per subject")
    k = int(fid.max())
    opts = dict(names=names, standardize=standardize, nlambda=nlambda, lambda_min_ratio=lambda_min_ratio, thresh=thresh,
                maxit=maxit, ties=ties)
    full = lasso_cox_path(t, e, xa, **opts)
    lam = full.lambdas
    cvraw = np.full((k, lam.size), np.nan)
    ev_per_fold = np.zeros(k)
    for f in range(1, k + 1):
        test = fid == f
        train = ~test
        ev_per_fold[f - 1] = e[test].sum()
        if e[train].sum() < 2:
            raise UserError(f"fold {f}: fewer than two events remain for training; use fewer folds")
        fit = lasso_cox_path(t[train], e[train], xa[train], **opts)
        coefs = _interp_coef(fit, lam)
        full_dev = cox_deviance(t, e, xa, coefs, ties=ties)
        cvraw[f - 1] = full_dev - cox_deviance(t[train], e[train], xa[train], coefs, ties=ties)
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
