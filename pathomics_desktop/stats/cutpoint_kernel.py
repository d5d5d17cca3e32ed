"""The log-rank chi-square of every single cut ``x <= c`` in O(n log n) (numba).

For the low group ``L(c) = {i : x_i <= c}`` and event times ``t_k`` with ``d_k`` deaths, ``r_k``
at risk and ``w_k = d_k (r_k - d_k) / (r_k - 1)`` (0 when ``r_k <= 1``), the log-rank
``U = sum_k (d_low,k - r_low,k d_k / r_k)`` and hypergeometric variance
``V = sum_k w_k (r_low,k / r_k)(1 - r_low,k / r_k)`` are sums over the subjects of L(c)::

    U = sum_{i in L} (e_i - H_i),            H_i = sum_{k < K_i} d_k / r_k
    V = sum_{i in L} A_i - sum_{i, j in L} B[min(K_i, K_j)],
        A_i = sum_{k < K_i} w_k / r_k,       B[K] = sum_{k < K} w_k / r_k^2

with ``K_i`` the number of event times ``<= t_i`` (subject i is at risk at the first K_i of
them). Walking the subjects in marker order, subject j adds ``e_j - H_j`` to U, ``A_j`` to the
first sum, and ``2 sum_{i in L} B[min(K_i, K_j)] + B[K_j]`` to the second, where the sum over the
low group so far comes from two Fenwick trees over K (the count and the sum of ``B[K_i]``):
``sum_{K_i < K_j} B[K_i] + B[K_j] #{K_i >= K_j}``. The dense (cuts x event times) matrices of
:func:`pathomics_desktop.stats.cutpoint._pair_chi2` are needed only for the pair map.
"""

from __future__ import annotations

import numpy as np

_KERNEL = None


def event_time_terms(t: np.ndarray, e: np.ndarray):
    """The pooled log-rank terms: (event times ``t_k``, ``K_i`` = number of event times
    ``<= t_i`` (subject i is at risk at the first K_i), each event's time index, ``d_k``,
    ``r_k``, ``w_k = d_k (r_k - d_k) / (r_k - 1)``, 0 when ``r_k <= 1``)."""
    ev_times = np.unique(t[e])
    n_t = ev_times.size
    k_i = np.searchsorted(ev_times, t, side="right")
    ev_idx = np.searchsorted(ev_times, t[e], side="left")
    d = np.bincount(ev_idx, minlength=n_t).astype(float)
    # at risk at event time k: subjects with K_i > k
    r = np.cumsum(np.bincount(k_i, minlength=n_t + 1)[::-1])[::-1][1:].astype(float)
    w = np.divide(d * (r - d), r - 1, out=np.zeros(n_t), where=r > 1)
    return ev_times, k_i, ev_idx, d, r, w


def prefix_statistics(t: np.ndarray, e: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted marker, U, V): ``U[m]``, ``V[m]`` of the low group made of the first ``m + 1``
    subjects in marker order (stable), for m = 0..n-1."""
    _, k_i, _, d, r, w = event_time_terms(t, e)
    H = np.concatenate(([0.0], np.cumsum(d / r)))[k_i]
    A = np.concatenate(([0.0], np.cumsum(w / r)))[k_i]
    B = np.concatenate(([0.0], np.cumsum(w / r**2)))
    order = np.argsort(x, kind="stable")
    U, V = _kernel()(k_i[order].astype(np.int64), e[order].astype(np.float64), H[order], A[order], B)
    return x[order], U, V


def _kernel():
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import numba

    @numba.njit(cache=True, nogil=True)
    def walk(k, e, H, A, B):  # pragma: no cover
        n = k.size
        size = B.size  # K in 0..T
        count = np.zeros(size + 1)  # Fenwick trees, 1-based
        total = np.zeros(size + 1)
        U = np.empty(n)
        V = np.empty(n)
        u = 0.0
        lin = 0.0
        quad = 0.0
        added = 0.0
        for j in range(n):
            kj = k[j]
            # sums over the low group of K_i < kj: Fenwick prefix up to index kj (1-based: K+1)
            c_below = 0.0
            s_below = 0.0
            pos = kj
            while pos > 0:
                c_below += count[pos]
                s_below += total[pos]
                pos -= pos & (-pos)
            quad += 2.0 * (s_below + B[kj] * (added - c_below)) + B[kj]
            u += e[j] - H[j]
            lin += A[j]
            pos = kj + 1
            while pos <= size:
                count[pos] += 1.0
                total[pos] += B[kj]
                pos += pos & (-pos)
            added += 1.0
            U[j] = u
            V[j] = lin - quad
        return U, V

    _KERNEL = walk
    return walk
