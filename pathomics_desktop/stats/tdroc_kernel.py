"""The IPCW AUC(t) sums at every evaluation time in one O(n log n) pass (numba).

With tie groups ``g`` of the marker (ascending), case weights ``w`` (0 for non-events) and
``Early_k = {j : T_j <= t_k}`` (controls at t_k are the others), the numerator of
:meth:`pathomics_desktop.stats.tdroc.IpcwMarker.auc` is::

    N_k = sum_{i case, T_i <= t_k} w_i (#{j ctrl: g_j < g_i} + 0.5 #{j ctrl: g_j = g_i})
        = sum_{i case in Early_k} w_i a_i  -  sum_{i case in Early_k} sum_{j in Early_k} w_i k(g_i, g_j)

with ``a_i = #{j: g_j < g_i} + 0.5 #{j: g_j = g_i}`` over everyone and ``k = [g_j < g_i] +
0.5 [g_j = g_i]`` (the pairs of i with the early subjects, itself included, leave the
controls). Walking the subjects in time order, subject m adds to the double sum its pairs with
the subjects before it, both ways, and with itself (``0.5 w_m``), from two Fenwick trees over
the tie groups (the count of the subjects so far, and the weight of the cases so far); the sums
are read once every subject up to t_k is in. One pass for all K times, where the direct sum
takes O(n) numpy passes per time.
"""

from __future__ import annotations

import numpy as np

_KERNEL = None


def auc_sums(groups: np.ndarray, case_weight: np.ndarray, static: np.ndarray, cut: np.ndarray,
             n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(N_k, sum of the case weights in Early_k) for each k, with the subjects in time order:
    ``groups`` their tie group, ``case_weight`` w (0 for non-events), ``static`` a_i, and
    ``cut[k]`` (non-decreasing) the number of subjects with T <= t_k."""
    return _kernel()(groups.astype(np.int64), case_weight.astype(np.float64), static.astype(np.float64),
                     cut.astype(np.int64), int(n_groups))


def _kernel():
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import numba

    # the Fenwick-tree steps are written out: a compiled function that calls other compiled
    # closures is recompiled (and cached anew) in every process
    @numba.njit(cache=True, nogil=True)
    def walk(g, w, a, cut, n_groups):  # pragma: no cover
        size = n_groups + 1
        count = np.zeros(size)  # 1-based Fenwick trees over the tie groups
        weight = np.zeros(size)
        num = np.empty(cut.size)
        wsum = np.empty(cut.size)
        linear = 0.0
        pairs = 0.0
        total_w = 0.0
        m = 0
        for k in range(cut.size):
            while m < cut[k]:
                gm = g[m]
                # sums over the groups below gm (c_lt, w_lt) and up to it (c_le, w_le)
                c_lt = 0.0
                w_lt = 0.0
                pos = gm
                while pos > 0:
                    c_lt += count[pos]
                    w_lt += weight[pos]
                    pos -= pos & (-pos)
                c_le = 0.0
                w_le = 0.0
                pos = gm + 1
                while pos > 0:
                    c_le += count[pos]
                    w_le += weight[pos]
                    pos -= pos & (-pos)
                # j = m against the cases before it: those above its group, half those equal
                pairs += (total_w - w_le) + 0.5 * (w_le - w_lt)
                wm = w[m]
                if wm != 0.0:
                    # i = m against the subjects before it, and against itself
                    pairs += wm * (c_lt + 0.5 * (c_le - c_lt) + 0.5)
                    linear += wm * a[m]
                    total_w += wm
                pos = gm + 1
                while pos < size:
                    count[pos] += 1.0
                    weight[pos] += wm
                    pos += pos & (-pos)
                m += 1
            num[k] = linear - pairs
            wsum[k] = total_w
        return num, wsum

    _KERNEL = walk
    return walk
