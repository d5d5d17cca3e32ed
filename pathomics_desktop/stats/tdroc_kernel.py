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

    @numba.njit(cache=True, nogil=True)
    def prefix(tree, pos):  # pragma: no cover
        """Sum of the first ``pos`` entries of a 1-based Fenwick tree."""
        total = 0.0
        while pos > 0:
            total += tree[pos]
            pos -= pos & (-pos)
        return total

    @numba.njit(cache=True, nogil=True)
    def add(tree, pos, value):  # pragma: no cover
        """Add ``value`` at 0-based entry ``pos``."""
        pos += 1
        while pos < tree.size:
            tree[pos] += value
            pos += pos & (-pos)

    @numba.njit(cache=True, nogil=True)
    def walk(g, w, a, cut, n_groups):  # pragma: no cover
        count = np.zeros(n_groups + 1)
        weight = np.zeros(n_groups + 1)
        num = np.empty(cut.size)
        wsum = np.empty(cut.size)
        linear = 0.0
        pairs = 0.0
        total_w = 0.0
        m = 0
        for k in range(cut.size):
            while m < cut[k]:
                gm = g[m]
                w_le = prefix(weight, gm + 1)
                w_lt = prefix(weight, gm)
                # j = m against the cases before it: those above its group, half those equal
                pairs += (total_w - w_le) + 0.5 * (w_le - w_lt)
                if w[m] != 0.0:
                    c_lt = prefix(count, gm)
                    c_le = prefix(count, gm + 1)
                    # i = m against the subjects before it, and against itself
                    pairs += w[m] * (c_lt + 0.5 * (c_le - c_lt) + 0.5)
                    linear += w[m] * a[m]
                    total_w += w[m]
                    add(weight, gm, w[m])
                add(count, gm, 1.0)
                m += 1
            num[k] = linear - pairs
            wsum[k] = total_w
        return num, wsum

    _KERNEL = walk
    return walk
