"""Kaplan-Meier estimator and log-rank tests (numpy/scipy only, no Qt).

Formulas (agreeing with R ``survival`` 3.x ``survfit``, ``print.survfit``, ``summary.survfit``
and ``survdiff``):

* Product-limit estimate at the distinct times t_j with n_j at risk and d_j events:
  ``S(t) = prod_{t_j <= t} (1 - d_j / n_j)`` (Kaplan & Meier 1958).
* Greenwood variance on the log scale (= standard error of the Nelson-type cumulative
  hazard reported by R as ``std.err``): ``se^2(t) = sum_{t_j <= t} d_j / (n_j (n_j - d_j))``.
* Confidence intervals (``conf_type``): ``"log"`` (R's default)
  ``exp(log S +- z se)`` capped at 1; ``"log-log"``
  ``S^exp(+-z se / log S)``; ``"plain"`` ``S (1 +- z se)`` clipped to [0, 1].
* Median and other quantiles (R ``print.survfit`` / ``quantile.survfit``): the first time with ``S(t) <= 0.5``; when the curve is
  exactly 0.5 on an interval, the midpoint between that time and the next drop. The CI of
  the median applies the same rule to the lower and upper confidence curves
  (Brookmeyer & Crowley 1982).
* Log-rank (Mantel-Haenszel) test for k groups: with O_g, E_g = sum_t d_t n_gt / n_t and
  ``V_gh = sum_t d_t (n_t - d_t) / (n_t - 1) * n_gt / n_t * (delta_gh - n_ht / n_t)``,
  ``chisq = (O - E)' V^- (O - E)`` on k - 1 df; stratified: O, E, V summed over strata.
* Test for trend with scores w: ``chisq = (w'(O - E))^2 / (w' V w)`` on 1 df
  (Collett, *Modelling Survival Data in Medical Research*, section 2.6).
* Pairwise log-rank tests for every pair of groups with Holm's step-down adjustment.
* Times equal up to rounding error are merged first (R's ``timefix``/``aeqSurv``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Sequence

import numpy as np
from scipy import stats as sps

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.levels import label_array, sorted_levels
from pathomics_desktop.stats.results import StatResult

CONF_TYPES = ("log", "log-log", "plain")
_TOL = float(np.sqrt(np.finfo(float).eps))


def as_event_array(event: Sequence, name: str = "event") -> np.ndarray:
    """Return a boolean event indicator; accepts 0/1, booleans, or R's 1/2 coding."""
    arr = np.asarray(event)
    if arr.dtype == bool:
        return arr
    values = np.asarray(arr, dtype=float)
    if np.isnan(values).any():
        raise UserError(f"{name} has missing values")
    uniq = set(np.unique(values).tolist())
    if uniq <= {0.0, 1.0}:
        return values == 1.0
    if uniq <= {1.0, 2.0}:  # R's Surv() convention: 1 = censored, 2 = dead
        return values == 2.0
    raise UserError(f"{name} must hold 0/1 (or 1/2) values, found {sorted(uniq)[:5]}")


def as_time_array(time: Sequence, name: str = "time") -> np.ndarray:
    """Return finite, non-negative follow-up times as float."""
    try:
        values = np.asarray(time, dtype=float)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{name} must be numeric") from exc
    if not np.isfinite(values).all():
        raise UserError(f"{name} has missing or infinite values")
    if (values < 0).any():
        raise UserError(f"{name} has negative values")
    return values


def timefix(time: np.ndarray, tolerance: float = _TOL) -> np.ndarray:
    """Merge follow-up times equal up to rounding error, as R ``aeqSurv`` (timefix = TRUE).

    Sorted distinct times y with ``diff(y) <= tol`` or ``diff(y) / mean|y| <= tol`` are
    replaced by the first of their run, so 0.1 + 0.2 and 0.3 are the same tied time.
    """
    y = np.unique(time[np.isfinite(time)])
    if y.size < 2:
        return time
    dy = np.diff(y)
    tied = (dy <= tolerance) | (dy / np.mean(np.abs(y)) <= tolerance)
    if not tied.any():
        return time
    cuts = y[np.concatenate(([True], ~tied))]
    return cuts[np.searchsorted(cuts, time, side="right") - 1]


@dataclass
class KaplanMeier(StatResult):
    """A fitted Kaplan-Meier curve at every distinct observed time (events and censorings)."""

    time: np.ndarray
    n_risk: np.ndarray
    n_event: np.ndarray
    n_censor: np.ndarray
    survival: np.ndarray
    std_err: np.ndarray  #: standard error of log S (Greenwood); NaN once S reaches 0
    lower: np.ndarray
    upper: np.ndarray
    conf_level: float = 0.95
    conf_type: str = "log"

    @property
    def n(self) -> int:
        return int(self.n_risk[0]) if len(self.n_risk) else 0

    @property
    def events(self) -> int:
        return int(self.n_event.sum())

    def median(self) -> tuple[float | None, float | None, float | None]:
        """Median survival and its CI as R's print.survfit (None where not reached)."""
        return self.quantile(0.5)

    def quantile(self, prob: float) -> tuple[float | None, float | None, float | None]:
        """Time by which a fraction ``prob`` had the event, with CI (R ``quantile.survfit``).

        Estimate: first time with S(t) <= 1 - prob (midpoint rule on an exact plateau);
        CI: the same rule on the lower and upper confidence curves.
        """
        if not 0.0 < prob < 1.0:
            raise UserError(f"quantile probability must be in (0, 1), got {prob}")
        target = 1.0 - prob
        return (_first_at_or_below(self.survival, self.time, target),
                _first_at_or_below(self.lower, self.time, target),
                _first_at_or_below(self.upper, self.time, target))

    def at(self, times: Sequence[float]) -> list[dict]:
        """Survival, CI and number at risk at given times (R ``summary(fit, times=)``).

        ``at_risk`` counts subjects with follow-up >= t. Times beyond the last observed
        time have survival/CI ``None`` (the estimate is undefined there) and at_risk 0.
        """
        rows = []
        last = self.time[-1] if len(self.time) else -np.inf
        for t in times:
            t = float(t)
            idx = int(np.searchsorted(self.time, t, side="right")) - 1
            later = np.searchsorted(self.time, t, side="left")
            at_risk = int(self.n_risk[later]) if later < len(self.time) else 0
            if t > last:
                rows.append({"time": t, "survival": None, "lower": None, "upper": None,
                             "at_risk": 0})
                continue
            if idx < 0:
                surv, lo, up = 1.0, 1.0, 1.0
            else:
                surv, lo, up = self.survival[idx], self.lower[idx], self.upper[idx]
            rows.append({"time": t, "survival": float(surv), "lower": _none_if_nan(lo),
                         "upper": _none_if_nan(up), "at_risk": at_risk})
        return rows

    def to_dict(self, times: Sequence[float] = ()) -> dict:
        """``n, events, median, median_lower, median_upper`` and ``at``: :meth:`at` of ``times``."""
        med, lo, hi = self.median()
        return {"n": self.n, "events": self.events, "median": med, "median_lower": lo,
                "median_upper": hi, "at": self.at(times)}


def _none_if_nan(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _first_at_or_below(curve: np.ndarray, time: np.ndarray, target: float) -> float | None:
    """R's ``survmean`` rule: first time the curve is <= target; on an exact plateau at the
    target, the midpoint between its start and the next drop."""
    ok = np.isfinite(curve) & (curve < target + _TOL)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return None
    y, x = curve[idx], time[idx]
    if abs(y[0] - target) < _TOL:
        lower = np.flatnonzero(y < y[0])
        if lower.size:
            return float((x[0] + x[lower[0]]) / 2.0)
    return float(x[0])


def kaplan_meier(time: Sequence[float], event: Sequence, *, conf_level: float = 0.95,
                 conf_type: str = "log", fix_times: bool = True) -> KaplanMeier:
    """Fit a Kaplan-Meier curve with Greenwood standard errors (see module docstring).

    ``fix_times`` merges times equal up to rounding error first (R's timefix).
    """
    if conf_type not in CONF_TYPES:
        raise UserError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    t = as_time_array(time)
    if fix_times:
        t = timefix(t)
    e = as_event_array(event)
    if t.size == 0:
        raise UserError("no observations for the Kaplan-Meier estimate")
    uniq, inverse = np.unique(t, return_inverse=True)
    n_event = np.bincount(inverse, weights=e.astype(float), minlength=uniq.size)
    n_total = np.bincount(inverse, minlength=uniq.size).astype(float)
    n_risk = n_total[::-1].cumsum()[::-1]
    n_censor = n_total - n_event
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - n_event / n_risk)
        term = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
    var = np.cumsum(term)  # becomes inf once n_risk == n_event
    se = np.sqrt(var)
    se[surv <= 0] = np.nan  # undefined once the curve reaches 0 (R reports NaN)
    z = sps.norm.ppf(1.0 - (1.0 - conf_level) / 2.0)
    lower, upper = _confidence_band(surv, se, z, conf_type)
    return KaplanMeier(uniq, n_risk, n_event, n_censor, surv, se, lower, upper,
                       conf_level, conf_type)


def _confidence_band(surv: np.ndarray, se: np.ndarray, z: float,
                     conf_type: str) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "log":
            lower = np.exp(np.log(surv) - z * se)
            upper = np.minimum(np.exp(np.log(surv) + z * se), 1.0)
        elif conf_type == "log-log":
            loglog = np.log(-np.log(surv))
            width = z * se / np.log(surv)
            lower = np.exp(-np.exp(loglog - width))
            upper = np.exp(-np.exp(loglog + width))
            one = surv >= 1.0
            lower[one], upper[one] = np.nan, np.nan
        else:
            lower = np.maximum(surv - z * se * surv, 0.0)
            upper = np.minimum(surv + z * se * surv, 1.0)
    zero = (surv <= 0) | ~np.isfinite(se)
    lower[zero], upper[zero] = np.nan, np.nan
    if conf_type in ("log", "plain"):
        full = (surv >= 1.0) & (se == 0)
        lower[full], upper[full] = 1.0, 1.0
    return lower, upper


# --------------------------------------------------------------------------------------
# log-rank family
# --------------------------------------------------------------------------------------


@dataclass
class LogRankResult(StatResult):
    """Observed/expected counts, variance matrix and the chi-square test."""

    groups: list
    observed: np.ndarray
    expected: np.ndarray
    variance: np.ndarray
    chisq: float
    df: int
    p: float
    n: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict:
        return {"chisq": self.chisq, "df": self.df, "p": self.p}


def _group_codes(values: Sequence, order: Sequence | None = None) -> tuple[list, np.ndarray]:
    arr = np.asarray(values, dtype=object)
    if order is None:
        levels = sorted(set(arr.tolist()), key=_sort_key)
    else:
        levels = list(order)
        unknown = set(arr.tolist()) - set(levels)
        if unknown:
            raise UserError(f"group values {sorted(map(str, unknown))} are not in the given order")
    index = {lvl: i for i, lvl in enumerate(levels)}
    return levels, np.array([index[v] for v in arr.tolist()], dtype=int)


def _sort_key(value):
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _logrank_parts(t: np.ndarray, e: np.ndarray, g: np.ndarray, k: int,
                   rho: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """O, E and V of the (G-rho) log-rank statistic within one stratum."""
    uniq, inv = np.unique(t, return_inverse=True)
    m = uniq.size
    d_gt = np.zeros((m, k))
    n_gt = np.zeros((m, k))
    np.add.at(d_gt, (inv, g), e.astype(float))
    np.add.at(n_gt, (inv, g), 1.0)
    n_gt = n_gt[::-1].cumsum(axis=0)[::-1]  # at risk: time >= t
    d_t = d_gt.sum(1)
    n_t = n_gt.sum(1)
    keep = d_t > 0
    d_gt, n_gt, d_t, n_t = d_gt[keep], n_gt[keep], d_t[keep], n_t[keep]
    if rho != 0.0:
        # Fleming-Harrington weight: left-continuous pooled KM to the power rho.
        surv = np.cumprod(1.0 - d_t / n_t)
        weight = np.concatenate(([1.0], surv[:-1])) ** rho
    else:
        weight = np.ones_like(d_t)
    frac = n_gt / n_t[:, None]
    observed = (weight[:, None] * d_gt).sum(0)
    expected = (weight[:, None] * d_t[:, None] * frac).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n_t > 1, weight**2 * d_t * (n_t - d_t) / (n_t - 1), 0.0)
    variance = np.diag((factor[:, None] * frac).sum(0)) - (factor[:, None, None]
                                                          * frac[:, :, None]
                                                          * frac[:, None, :]).sum(0)
    return observed, expected, variance


def logrank_test(time: Sequence[float], event: Sequence, group: Sequence, *,
                 strata: Sequence | None = None, rho: float = 0.0) -> LogRankResult:
    """k-sample log-rank test (R ``survdiff``), optionally stratified; ``rho`` as survdiff."""
    t = timefix(as_time_array(time))
    e = as_event_array(event)
    levels, g = _group_codes(group)
    k = len(levels)
    if k < 2:
        raise UserError(f"the log-rank test needs at least two groups, found {k}")
    if e.sum() == 0:
        raise UserError("the log-rank test needs at least one event; there are none")
    observed = np.zeros(k)
    expected = np.zeros(k)
    variance = np.zeros((k, k))
    if strata is None:
        s_codes = np.zeros(t.size, dtype=int)
    else:
        _, s_codes = _group_codes(strata)
    for s in np.unique(s_codes):
        mask = s_codes == s
        o, ex, v = _logrank_parts(t[mask], e[mask], g[mask], k, rho)
        observed += o
        expected += ex
        variance += v
    chisq, df = _quadratic_form(observed - expected, variance)
    n = np.bincount(g, minlength=k)
    return LogRankResult(levels, observed, expected, variance, chisq, df,
                         float(sps.chi2.sf(chisq, df)) if df > 0 else float("nan"), n)


def _quadratic_form(diff: np.ndarray, variance: np.ndarray) -> tuple[float, int]:
    """(O-E)' V^- (O-E) with a generalised inverse, df = rank(V) (as survdiff)."""
    k = diff.size
    sub = variance[: k - 1, : k - 1]
    rank = np.linalg.matrix_rank(variance, tol=1e-9 * max(np.abs(variance).max(), 1e-300))
    if rank == k - 1:
        chisq = float(diff[: k - 1] @ np.linalg.solve(sub, diff[: k - 1]))
    else:
        chisq = float(diff @ np.linalg.pinv(variance, rcond=1e-9) @ diff)
    return chisq, int(rank)


def logrank_trend(time: Sequence[float], event: Sequence, group: Sequence, *,
                  scores: Sequence[float] | None = None, order: Sequence | None = None,
                  strata: Sequence | None = None) -> dict:
    """Log-rank test for trend across ordered groups; scores default to 1..k in ``order``."""
    t = timefix(as_time_array(time))
    e = as_event_array(event)
    levels, g = _group_codes(group, order)
    k = len(levels)
    if k < 2:
        raise UserError("the trend test needs at least two ordered groups")
    w = np.arange(1, k + 1, dtype=float) if scores is None else np.asarray(scores, float)
    if w.size != k:
        raise UserError(f"{w.size} scores given for {k} groups")
    s_codes = np.zeros(t.size, int) if strata is None else _group_codes(strata)[1]
    o = np.zeros(k)
    ex = np.zeros(k)
    v = np.zeros((k, k))
    for s in np.unique(s_codes):
        m = s_codes == s
        a, b, c = _logrank_parts(t[m], e[m], g[m], k)
        o, ex, v = o + a, ex + b, v + c
    u = float(w @ (o - ex))
    var = float(w @ v @ w)
    if var <= 0:
        raise UserError("the trend test variance is zero (no events in the compared groups)")
    chisq = u * u / var
    return {"groups": levels, "scores": w.tolist(), "statistic": u, "variance": var,
            "chisq": chisq, "df": 1, "p": float(sps.chi2.sf(chisq, 1))}


def holm_adjust(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (R ``p.adjust(method="holm")``)."""
    p = np.asarray(pvalues, float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def pairwise_logrank(time: Sequence[float], event: Sequence, group: Sequence, *,
                     strata: Sequence | None = None, adjust: str = "holm") -> list[dict]:
    """Log-rank test for every pair of groups; p adjusted by Holm (or ``"none"``)."""
    t = as_time_array(time)
    e = as_event_array(event)
    levels, g = _group_codes(group)
    s = None if strata is None else np.asarray(strata, dtype=object)
    rows = []
    for a, b in combinations(range(len(levels)), 2):
        m = (g == a) | (g == b)
        if e[m].sum() == 0:
            chisq, p = float("nan"), 1.0
        else:
            res = logrank_test(t[m], e[m], g[m], strata=None if s is None else s[m])
            chisq, p = res.chisq, res.p
        rows.append({"group1": levels[a], "group2": levels[b], "chisq": chisq, "p": p})
    raw = [r["p"] for r in rows]
    adjusted = holm_adjust(raw) if adjust == "holm" else np.asarray(raw)
    for r, padj in zip(rows, adjusted):
        r["p_adjusted"] = float(padj)
    return rows


@dataclass
class KaplanMeierComparison(StatResult):
    """A Kaplan-Meier curve per group and the log-rank test across the groups.

    ``groups``: labels in order (numeric ones numerically, as R's ``factor``; ``["all"]``
    without a group); ``logrank`` is None with one group or no events. ``at``: the times at
    which :meth:`to_dict` reports survival and numbers at risk.
    """

    groups: list[str]
    curves: dict[str, KaplanMeier]
    logrank: LogRankResult | None = None
    at: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(curve.n for curve in self.curves.values())

    def to_dict(self) -> dict:
        """``{"groups": [{"group", "n", "events", "median", "median_lower", "median_upper",
        "at"}], "logrank": {"chisq", "df", "p"} | None}`` (``pathomics analyze km --json``)."""
        return {"groups": [{"group": g, **self.curves[g].to_dict(self.at)} for g in self.groups],
                "logrank": self.logrank.to_dict() if self.logrank is not None else None}


def km_comparison(time: Sequence[float], event: Sequence, group: Sequence | None = None, *,
                  at: Sequence[float] = (), strata: Sequence | None = None,
                  conf_level: float = 0.95, conf_type: str = "log") -> KaplanMeierComparison:
    """Kaplan-Meier curve of each group and the (optionally stratified) log-rank test.

    Group values are labelled as written (``1.0`` -> ``"1"``); times equal up to rounding
    are merged over all groups together, as R's ``survfit``.
    """
    t = timefix(as_time_array(time))
    e = as_event_array(event)
    if group is None:
        labels = np.full(t.size, "all", dtype=object)
        levels = ["all"]
    else:
        values = list(group)
        if len(values) != t.size:
            raise UserError(f"group has {len(values)} values but time has {t.size}")
        labels = label_array(values)  # one level_label per distinct value
        levels = sorted_levels(set(labels.tolist()) if len(values) else [])
    curves = {lvl: kaplan_meier(t[labels == lvl], e[labels == lvl], conf_level=conf_level,
                                conf_type=conf_type, fix_times=False)
              for lvl in levels}
    logrank = None
    if len(levels) >= 2 and int(e.sum()) > 0:
        logrank = logrank_test(t, e, labels, strata=strata)
    return KaplanMeierComparison(levels, curves, logrank, [float(x) for x in at])
