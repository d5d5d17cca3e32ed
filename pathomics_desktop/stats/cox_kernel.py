"""The Cox partial likelihood, score and information in one compiled pass (numba).

The Newton-Raphson iterations of :func:`pathomics_desktop.stats.cox.newton_raphson` need
only ``loglik``, ``U`` and ``I`` (module docstring of :mod:`pathomics_desktop.stats.cox`).
The kernel walks the subjects once in the order of :class:`~pathomics_desktop.stats.cox.CoxData`
(stratum, time descending, censored before deaths), keeping the running sums ``S0r = sum r``
and ``S1r = sum r x`` of the subjects at risk and not dying at the current time, and per tied
group the sums ``D0``, ``D1`` of its deaths. The death terms ``l = 0..d-1`` of a group, with
``g = 1 - l/d`` (Efron; ``g = 1`` for Breslow) and ``a_l = S0r + g D0``, are summed per group:
``w = sum 1/a``, ``u = sum g/a``, ``P = sum 1/a^2``, ``Q = sum g/a^2``, ``R = sum g^2/a^2``, so

* ``loglik = sum_deaths eta - sum log a``, ``U = sum_deaths x - sum_groups (S1r w + D1 u)``;
* ``I = X' diag(r c) X - sum_groups [S1r S1r' P + (S1r D1' + D1 S1r') Q + D1 D1' R]``, where
  a subject of group k has ``c = sum_{h after k} w_h + (w_k if censored, u_k if it died)``
  (the death groups whose risk sets hold it), from one backward pass; then ``X' diag(r c) X``
  column pair by column pair, vectorised (no BLAS call: a threaded BLAS on a thin n x p
  matrix spins every core for nothing).

These are the sums of the vectorised numpy path (:meth:`CoxData.derivatives`) in another
order: the two agree to ~1e-13 relative (tested). O(n p^2) per call; compiled
once and cached on disk; the GIL is released, so a GUI worker computing a forest does not
stall the event loop. Division follows IEEE (``error_model="numpy"``), as numpy's: a risk-set
sum that underflows to 0 on a diverging step gives an infinite log-likelihood, which the
Newton-Raphson step halving rejects.
"""

from __future__ import annotations

import numpy as np

_KERNEL = None


def efron_kernel():
    """The compiled ``(shifted_linear_predictor(XT, beta) -> eta, kernel(XT, eta, r,
    group_start, dead_start, strata, efron, need_info) -> (sum of eta over deaths, a_l of every
    death term, score, info))`` (``XT``: ``X.T``, contiguous p x n; ``r = exp(eta)``, computed by numpy,
    whose vectorised exp is ~5x numba's, as its log is for ``loglik = sum eta - sum log a_l``;
    ``dead_start``: the first death row of each tied group; ``info`` zero unless ``need_info``)."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import numba

    # reassociation lets the X' diag(c) X column sums vectorise (rounding ~1e-16 relative); no
    # assumption about NaN or infinity (a diverging fit must still see an infinite loglik)
    @numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
    def kernel(XT, eta, r, group_start, dead_start, strata, efron, need_info):  # pragma: no cover
        p, n = XT.shape
        G = group_start.size
        n_terms = 0
        for g in range(G):
            n_terms += (group_start[g + 1] if g + 1 < G else n) - dead_start[g]
        a_terms = np.empty(n_terms)  # the Efron denominators a_l (their logs are summed outside)
        term = 0
        S1 = np.zeros(p)
        D1 = np.zeros(p)
        score = np.zeros(p)
        mm = np.zeros((p, p))
        w = np.zeros(G)
        u = np.zeros(G)
        S0 = 0.0
        loglik = 0.0
        for g in range(G):
            lo = group_start[g]
            hi = group_start[g + 1] if g + 1 < G else n
            mid = dead_start[g]  # censored rows [lo, mid), deaths [mid, hi)
            if g > 0 and strata[lo] != strata[group_start[g - 1]]:
                S0 = 0.0
                for j in range(p):
                    S1[j] = 0.0
            for i in range(lo, mid):
                ri = r[i]
                S0 += ri
                for j in range(p):
                    S1[j] += ri * XT[j, i]
            D0 = 0.0
            for j in range(p):
                D1[j] = 0.0
            d = hi - mid
            for i in range(mid, hi):
                ri = r[i]
                D0 += ri
                loglik += eta[i]
                for j in range(p):
                    score[j] += XT[j, i]
                    D1[j] += ri * XT[j, i]
            if d:
                wg = 0.0
                ug = 0.0
                P = 0.0
                Q = 0.0
                R = 0.0
                for ell in range(d):
                    gk = (d - ell) / d if efron else 1.0
                    a = S0 + gk * D0
                    a_terms[term] = a
                    term += 1
                    ia = 1.0 / a
                    wg += ia
                    ug += gk * ia
                    if need_info:
                        ia2 = ia * ia
                        P += ia2
                        Q += gk * ia2
                        R += gk * gk * ia2
                w[g] = wg
                u[g] = ug
                for j in range(p):
                    score[j] -= S1[j] * wg + D1[j] * ug
                if need_info:
                    for j in range(p):
                        for k in range(j + 1):
                            mm[j, k] += (S1[j] * S1[k] * P + (S1[j] * D1[k] + D1[j] * S1[k]) * Q
                                         + D1[j] * D1[k] * R)
                S0 += D0
                for j in range(p):
                    S1[j] += D1[j]
        info = np.zeros((p, p))
        if need_info:
            c = np.empty(n)
            later = 0.0  # sum of w over the later death groups of the stratum
            for g in range(G - 1, -1, -1):
                lo = group_start[g]
                hi = group_start[g + 1] if g + 1 < G else n
                if g + 1 < G and strata[lo] != strata[group_start[g + 1]]:
                    later = 0.0
                for i in range(lo, dead_start[g]):
                    c[i] = r[i] * (later + w[g])
                for i in range(dead_start[g], hi):
                    c[i] = r[i] * (later + u[g])
                later += w[g]
            # X' diag(c) X column pair by column pair (contiguous columns of XT: vectorised)
            for j in range(p):
                xj = XT[j]
                for k in range(j + 1):
                    xk = XT[k]
                    total = 0.0
                    for i in range(n):
                        total += c[i] * xj[i] * xk[i]
                    info[j, k] = total - mm[j, k]
                    info[k, j] = info[j, k]
        return loglik, a_terms, score, info

    @numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
    def shifted_linear_predictor(XT, beta):  # pragma: no cover
        """``X beta - max(X beta)`` from the columns (vectorised sums)."""
        p, n = XT.shape
        eta = np.zeros(n)
        for j in range(p):
            bj = beta[j]
            xj = XT[j]
            for i in range(n):
                eta[i] += bj * xj[i]
        if n:
            eta -= eta.max()
        return eta

    _KERNEL = (shifted_linear_predictor, kernel)
    return _KERNEL


_SLOPES_KERNEL = None


def stratum_slopes_kernel():
    """The compiled ``kernel(x, eta, r, group_start, dead_start, strata, n_strata, efron) ->
    (sum of eta over deaths, a_l of every death term, score, info)`` of one covariate with its
    own coefficient in each stratum (:class:`pathomics_desktop.stats.cox.StratumSlopes`): the
    information is diagonal, so ``score`` and ``info`` are per stratum (length ``n_strata``).

    Per death term l of a tied group with ``g = 1 - l/d`` (1 for Breslow): ``a = S0r + g D0``,
    ``m = (S1r + g D1) / a``, ``U_s -= m`` and ``I_s += (S2r + g D2) / a - m^2`` (the Efron
    formulas of :mod:`pathomics_desktop.stats.cox` with p = 1; ``S2 = sum r x^2``), in one pass."""
    global _SLOPES_KERNEL
    if _SLOPES_KERNEL is not None:
        return _SLOPES_KERNEL
    import numba

    @numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
    def kernel(x, eta, r, group_start, dead_start, strata, n_strata, efron):  # pragma: no cover
        n = x.size
        G = group_start.size
        n_terms = 0
        for g in range(G):
            n_terms += (group_start[g + 1] if g + 1 < G else n) - dead_start[g]
        a_terms = np.empty(n_terms)
        score = np.zeros(n_strata)
        info = np.zeros(n_strata)
        term = 0
        loglik = 0.0
        S0 = 0.0
        S1 = 0.0
        S2 = 0.0
        for g in range(G):
            lo = group_start[g]
            hi = group_start[g + 1] if g + 1 < G else n
            mid = dead_start[g]
            s = strata[lo]
            if g > 0 and s != strata[group_start[g - 1]]:
                S0 = 0.0
                S1 = 0.0
                S2 = 0.0
            for i in range(lo, mid):
                rx = r[i] * x[i]
                S0 += r[i]
                S1 += rx
                S2 += rx * x[i]
            D0 = 0.0
            D1 = 0.0
            D2 = 0.0
            for i in range(mid, hi):
                rx = r[i] * x[i]
                D0 += r[i]
                D1 += rx
                D2 += rx * x[i]
                loglik += eta[i]
                score[s] += x[i]
            d = hi - mid
            for ell in range(d):
                gk = (d - ell) / d if efron else 1.0
                a = S0 + gk * D0
                m = (S1 + gk * D1) / a
                score[s] -= m
                info[s] += (S2 + gk * D2) / a - m * m
                a_terms[term] = a
                term += 1
            S0 += D0
            S1 += D1
            S2 += D2
        return loglik, a_terms, score, info

    _SLOPES_KERNEL = kernel
    return kernel


_CHOLESKY_SOLVE = None


def cholesky_solve():
    """The compiled ``solve(A, b) -> (ok, x)``: ``x = A^-1 b`` by the Cholesky factor of a small
    symmetric A (the Newton step ``I^-1 U``); ``ok`` is False when A is not positive definite
    (a pivot not > 0, NaN included). LAPACK through numpy costs ~25 us a call in overhead; this
    ~1 us for the p <= 20 of a Cox model (the same arithmetic, rounding aside)."""
    global _CHOLESKY_SOLVE
    if _CHOLESKY_SOLVE is not None:
        return _CHOLESKY_SOLVE
    import numba

    @numba.njit(cache=True, nogil=True)
    def solve(A, b):  # pragma: no cover
        p = b.size
        L = np.zeros((p, p))
        for j in range(p):
            s = A[j, j]
            for k in range(j):
                s -= L[j, k] * L[j, k]
            if not s > 0.0:
                return False, np.zeros(p)
            L[j, j] = np.sqrt(s)
            for i in range(j + 1, p):
                t = A[i, j]
                for k in range(j):
                    t -= L[i, k] * L[j, k]
                L[i, j] = t / L[j, j]
        y = np.empty(p)  # L y = b, then L' x = y
        for i in range(p):
            t = b[i]
            for k in range(i):
                t -= L[i, k] * y[k]
            y[i] = t / L[i, i]
        x = np.empty(p)
        for i in range(p - 1, -1, -1):
            t = y[i]
            for k in range(i + 1, p):
                t -= L[k, i] * x[k]
            x[i] = t / L[i, i]
        return True, x

    _CHOLESKY_SOLVE = solve
    return solve
