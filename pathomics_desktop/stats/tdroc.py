"""Time-dependent ROC: cumulative/dynamic AUC(t) with Uno's IPCW weights.

At a time t, cases are subjects with an event at ``T_i <= t`` and controls are subjects still
event-free, ``T_j > t``. Cases are weighted by ``w_i = 1 / G(T_i)``, ``G`` the Kaplan-Meier
survival of the censoring times (events removed first at tied times), so that censoring before
t does not bias the estimate::

    AUC(t) = sum_{i case} sum_{j control} w_i ([x_i > x_j] + 0.5 [x_i == x_j])
             / (sum_{i case} w_i * n_controls)

A higher marker means a higher risk. Marker values closer than ``tied_tol`` (1e-8, chained
over sorted neighbours) count as ties, so results equal scikit-survival's
``cumulative_dynamic_auc`` (which integrates the ROC curve with the trapezoid rule).

References: Uno H, Cai T, Tian L, Wei LJ (2007) JASA 102:527-537; Hung H, Chiang CT (2010)
Can J Stat 38:8-26.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.results import StatResult
from pathomics_desktop.stats.concordance import censoring_reference, check_survival, evaluate_step_function

__all__ = ["TimeDependentAUC", "IpcwMarker", "cumulative_dynamic_auc", "roc_curve_at", "bootstrap_td_auc"]


@dataclass
class TimeDependentAUC(StatResult):
    times: np.ndarray
    auc: np.ndarray
    ci_lower: np.ndarray | None = None
    ci_upper: np.ndarray | None = None

    def to_dict(self) -> dict:
        def lst(a):
            return None if a is None else [None if not np.isfinite(v) else float(v) for v in a]

        return {"times": lst(self.times), "auc": lst(self.auc), "ci_lower": lst(self.ci_lower), "ci_upper": lst(self.ci_upper)}


def _ipcw(t, e, train_time, train_event) -> np.ndarray:
    g_t, g_v, t_max = censoring_reference(t, e, train_time, train_event)
    if np.any(e & (t > t_max)):
        raise UserError("test event times lie beyond the largest training time: the censoring survival is unknown there")
    g = evaluate_step_function(g_t, g_v, t)
    w = np.zeros(t.size)
    ok = e & (g > 0)
    w[ok] = 1.0 / g[ok]
    w[e & (g <= 0)] = np.inf
    return w


def _tie_groups(x: np.ndarray, tied_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted representative values and group index of each ``x``; values whose sorted
    neighbours differ by at most ``tied_tol`` form one tie group (scikit-survival's rule)."""
    uniq, inv = np.unique(x, return_inverse=True)
    if tied_tol > 0 and uniq.size > 1:
        gid = np.concatenate(([0], np.cumsum(np.diff(uniq) > tied_tol)))
        first = np.concatenate(([True], np.diff(gid) > 0))
        return uniq[first], gid[inv]
    return uniq, inv


class IpcwMarker:
    """One marker's IPCW weights, marker tie groups and time order, made once for AUC(t) at any
    times (:meth:`auc`) and ROC curves (:meth:`curve`); ``t, e, x`` checked (``check_survival``).
    ``train_time``/``train_event`` estimate the censoring distribution (default: these data)."""

    def __init__(self, t: np.ndarray, e: np.ndarray, x: np.ndarray, *, train_time=None, train_event=None,
                 tied_tol: float = 1e-8):
        self.t, self.e, self.x = t, e, x
        self.w = _ipcw(t, e, train_time, train_event)
        self.levels, self.group = _tie_groups(x, tied_tol)
        self.order = np.argsort(t, kind="stable")
        self.sorted_time = t[self.order]

    def auc(self, times) -> np.ndarray:
        """AUC(t) at each of ``times``: the sums of every time in one pass over the subjects in
        time order (:mod:`pathomics_desktop.stats.tdroc_kernel`). UserError, for the first such
        time in the order given, when a time has no cases or no controls, or a case weight up
        to it is infinite."""
        from pathomics_desktop.stats.tdroc_kernel import auc_sums

        tt = np.asarray(times, dtype=float)
        n = self.t.size
        case = self.e[self.order]
        by_time = np.argsort(tt, kind="stable")
        cut = np.empty(tt.size, dtype=np.int64)
        cut[by_time] = np.searchsorted(self.sorted_time, tt[by_time], side="right")  # subjects with T <= t_k
        per_group = np.bincount(self.group, minlength=self.levels.size).astype(float)
        static = (np.cumsum(per_group) - 0.5 * per_group)[self.group]  # #{x_j < x_i} + 0.5 #{x_j = x_i}
        weight = np.where(case, self.w[self.order], 0.0)
        finite = np.isfinite(weight)
        first_infinite = int(np.argmin(finite)) if not finite.all() else n
        cases_before = np.concatenate([[0], np.cumsum(case)])  # events among the first m subjects
        num_s, wsum_s = auc_sums(self.group[self.order], np.where(finite, weight, 0.0), static[self.order],
                                 cut[by_time], self.levels.size)
        num, wsum = np.empty(tt.size), np.empty(tt.size)
        num[by_time], wsum[by_time] = num_s, wsum_s
        out = np.empty(tt.size)
        for k, tk in enumerate(tt):
            n_ctrl = n - int(cut[k])
            if n_ctrl == 0 or not cases_before[cut[k]]:
                raise UserError(
                    f"time {tk:g} has no {'controls (nobody event-free beyond it)' if n_ctrl == 0 else 'cases (no events up to it)'}: "
                    "choose a time inside the follow-up range"
                )
            if cut[k] > first_infinite:
                raise UserError(f"the censoring survival is zero before time {tk:g}: AUC({tk:g}) cannot be weighted")
            out[k] = float(num[k] / (wsum[k] * n_ctrl))
        return out

    def curve(self, at: float) -> dict:
        """The ROC curve at ``at`` (see :func:`roc_curve_at`)."""
        auc = self.auc([float(at)])[0]
        case = self.e & (self.t <= at)
        ctrl = self.t > at
        tp = np.bincount(self.group[case], weights=self.w[case], minlength=self.levels.size)[::-1].cumsum()
        fp = np.bincount(self.group[ctrl], minlength=self.levels.size)[::-1].cumsum().astype(float)
        tpr = np.concatenate(([0.0], tp / tp[-1]))
        fpr = np.concatenate(([0.0], fp / fp[-1]))
        thr = np.concatenate(([np.inf], self.levels[::-1]))
        return {"fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": float(auc)}


def _check_times(times) -> np.ndarray:
    tt = np.atleast_1d(np.asarray(times, dtype=float))
    if tt.size == 0 or not np.isfinite(tt).all():
        raise UserError("give at least one finite evaluation time (--at t1,t2)")
    return tt


def cumulative_dynamic_auc(time, event, marker, times, *, train_time=None, train_event=None) -> TimeDependentAUC:
    """Cumulative/dynamic AUC(t) at each of ``times`` (IPCW; see module docstring).

    ``train_time``/``train_event`` estimate the censoring distribution (default: the same data).
    """
    t, e, x = check_survival(time, event, marker, names=("marker",))
    if np.unique(x).size < 2:
        raise UserError("the marker has a single value: the AUC is undefined")
    tt = _check_times(times)
    return TimeDependentAUC(times=tt, auc=IpcwMarker(t, e, x, train_time=train_time, train_event=train_event).auc(tt))


def roc_curve_at(time, event, marker, at: float, *, train_time=None, train_event=None) -> dict:
    """The IPCW ROC curve at time ``at``: ``{"fpr", "tpr", "thresholds", "auc"}`` for plotting.

    Point k is the rule "marker >= thresholds[k]"; the curve starts at (0, 0)
    (threshold +inf) and ends at (1, 1). ``TPR = sum_{case, x >= c} w_i / sum_{case} w_i``,
    ``FPR = #{control, x >= c} / #controls``; the trapezoid area equals :func:`cumulative_dynamic_auc`.
    """
    t, e, x = check_survival(time, event, marker, names=("marker",))
    return IpcwMarker(t, e, x, train_time=train_time, train_event=train_event).curve(at)


def bootstrap_td_auc(
    time, event, marker, times, *, n_boot: int = 500, seed: int = 0, level: float = 0.95
) -> TimeDependentAUC:
    """AUC(t) with percentile bootstrap CIs (subjects resampled; G re-estimated in each resample).

    Resamples in which a time has no case or no control are skipped for that time.
    """
    res = cumulative_dynamic_auc(time, event, marker, times)
    if n_boot < 10:
        raise UserError("--bootstrap needs at least 10 resamples")
    t, e, x = check_survival(time, event, marker)
    tt = res.times
    rng = np.random.default_rng(seed)
    boots = np.full((n_boot, tt.size), np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, t.size, size=t.size)
        resample = IpcwMarker(t[idx], e[idx], x[idx])
        try:
            boots[b] = resample.auc(tt)
        except UserError:  # some time has no case or no control here: each time alone
            for k, tk in enumerate(tt):
                try:
                    boots[b, k] = resample.auc([tk])[0]
                except UserError:
                    pass
    a = (1 - level) / 2
    lo = np.full(tt.size, np.nan)
    hi = np.full(tt.size, np.nan)
    for k in range(tt.size):
        v = boots[:, k][np.isfinite(boots[:, k])]
        if v.size >= n_boot // 2:
            lo[k], hi[k] = np.quantile(v, [a, 1 - a])
    res.ci_lower, res.ci_upper = lo, hi
    return res
