"""Optimal cutpoints of a continuous marker for survival: maximally selected log-rank statistic
(maxstat, Lausen-Schumacher adjusted p) and X-tile (all single cuts and all pairs of cuts).

maxstat (as R ``maxstat.test(Surv(t, e) ~ x, smethod = "LogRank", pmethod = "Lau94")``):
log-rank scores ``a_i = e_i - sum_{j: t_j <= t_i} e_j / (N - r_j + 1)`` with ``r_j`` the
maximal rank of ``t_j`` (Lausen & Schumacher 1992). With subjects sorted by the marker and a cut
after the m-th (the low group is ``x <= x_(m)``), the standardized linear rank statistic is::

    S_m = | sum_{i <= m} a_i - m/N sum a | / sqrt( m (N - m) / (N^2 (N - 1)) (N sum a^2 - (sum a)^2) )

for every m at the end of a tie run with ``max(1, floor(N minprop)) <= m <= floor(N maxprop)``.
The statistic is ``M = max S_m``, the cutpoint ``x_(m*)`` of the first maximum, and the
approximate p-value of Lausen, Sauerbrei & Schumacher (1994)::

    P(M >= b) ~= 1 - (Phi(b) - Phi(-b)) + sum_k (1/pi) exp(-b^2/2) (t_k - (b^2/4 - 1) t_k^3 / 6),
    t_k = sqrt(1 - m_k (N - m_{k+1}) / ((N - m_k) m_{k+1}))

reported clipped to ``[2 (1 - Phi(M)), 1]`` (R returns the raw approximation, which can exceed 1
for small M or turn negative for very large M).

X-tile (Camp RL, Dolled-Filhart M, Rimm DL (2004) Clin Cancer Res 10:7252-7259): the log-rank
chi-square of every low/high split (every distinct cut leaving at least ``ceil(n minprop)``
subjects per group, no thinning) and of the low/mid/high splits (2 df), shown as a map;
the p-value of the best split is a Monte Carlo permutation p ``(1 + #{max_perm >= max_obs}) /
(1 + B)`` with the marker permuted against the outcome. A training cut is checked on a
validation set by the log-rank test and the Cox hazard ratio (Efron ties) of the groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _sps

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.concordance import check_survival
from pathomics_desktop.stats.cutpoint_kernel import event_time_terms, prefix_statistics
from pathomics_desktop.stats.results import StatResult

__all__ = [
    "MaxstatResult",
    "XtileResult",
    "logrank_scores",
    "maxstat_cutpoint",
    "lausen94_pvalue",
    "xtile",
    "min_group_size",
    "logrank_groups",
    "cox_groups",
    "validate_cut",
]


def logrank_scores(time, event) -> np.ndarray:
    """Log-rank scores ``a_i = e_i - sum_{j: t_j <= t_i} e_j / (N - r_j + 1)`` (``r_j``: maximal rank)."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    n = t.size
    order = np.argsort(t, kind="stable")
    t_sorted = t[order]
    max_rank = np.searchsorted(t_sorted, t, side="right")  # 1-based maximal rank of each t_i
    fact = e / (n - max_rank + 1)
    csum = np.cumsum(fact[order])
    return e - csum[max_rank - 1]


def lausen94_pvalue(b: float, n: int, m: np.ndarray) -> float:
    """Lausen, Sauerbrei & Schumacher (1994) approximation of ``P(max S_m >= b)`` over cuts ``m``."""
    m = np.asarray(m, dtype=float)
    if m.size <= 1:
        d = 0.0
    else:
        m1, m2 = m[:-1], m[1:]
        tk = np.sqrt(1 - m1 * (n - m2) / ((n - m1) * m2))
        d = float(np.sum(1 / np.pi * np.exp(-(b**2) / 2) * (tk - (b**2 / 4 - 1) * tk**3 / 6)))
    p_raw = 2 * _sps.norm.sf(b)  # = 1 - (Phi(b) - Phi(-b)) without cancellation
    # the approximation can leave [p_raw, 1] (above 1 for small b, below 0 for large b in R);
    # an adjusted p is never smaller than the unadjusted one nor larger than 1
    return float(min(1.0, max(p_raw, p_raw + d)))


@dataclass
class MaxstatResult(StatResult):
    cutpoint: float
    statistic: float
    p_raw: float
    p_adjusted: float
    cuts: np.ndarray = field(repr=False)
    statistics: np.ndarray = field(repr=False)
    method: str = "maxstat"

    def to_dict(self) -> dict:
        return {"method": self.method, "cutpoint": self.cutpoint, "statistic": self.statistic, "p_raw": self.p_raw, "p_adjusted": self.p_adjusted}


def maxstat_cutpoint(time, event, marker, *, minprop: float = 0.1, maxprop: float | None = None) -> MaxstatResult:
    """Maximally selected log-rank statistic with the Lau94 adjusted p (see module docstring).

    ``p_raw`` is the unadjusted two-sided normal p-value of the selected cut, ``2 (1 - Phi(M))``.
    """
    t, e, x = check_survival(time, event, marker, names=("marker",))
    maxprop = 1 - minprop if maxprop is None else maxprop
    if not (0 < minprop < 0.5) or not (minprop < maxprop < 1):
        raise UserError(f"--minprop must be in (0, 0.5) (got {minprop})")
    n = t.size
    if np.unique(x).size < 2:
        raise UserError("the marker has a single value: no cutpoint can be chosen")
    a = logrank_scores(t, e)
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], a[order]
    last_of_run = np.flatnonzero(np.diff(xs) != 0) + 1  # m: number of subjects in the low group
    lo_m, hi_m = max(1, int(np.floor(n * minprop))), int(np.floor(n * maxprop))
    m = last_of_run[(last_of_run >= lo_m) & (last_of_run <= hi_m)]
    if m.size == 0:
        raise UserError(
            f"no cutpoint leaves at least {minprop:.0%} of the {n} subjects in each group "
            "(too few distinct marker values)"
        )
    ss = ys.sum()
    var_part = n * np.sum(ys**2) - ss**2
    if var_part <= 0:
        raise UserError("the log-rank scores are constant (no information in the events): maxstat is undefined")
    expected = m / n * ss
    var = m * (n - m) / (n**2 * (n - 1)) * var_part
    stat = np.abs((np.cumsum(ys)[m - 1] - expected) / np.sqrt(var))
    best = int(np.flatnonzero(stat == stat.max())[0])
    b = float(stat[best])
    return MaxstatResult(
        cutpoint=float(xs[m[best] - 1]),
        statistic=b,
        p_raw=float(2 * _sps.norm.sf(b)),
        p_adjusted=lausen94_pvalue(b, n, m),
        cuts=xs[m - 1],
        statistics=stat,
    )


# ----------------------------------------------------------------------------------------------
# log-rank and Cox for given groups
# ----------------------------------------------------------------------------------------------


def logrank_groups(time, event, group) -> tuple[float, float, int]:
    """Log-rank chi-square (k - 1 df, hypergeometric variance, as R ``survdiff``), p and df."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    _, g = np.unique(np.asarray(group), return_inverse=True)
    k = int(g.max()) + 1
    if k < 2:
        raise UserError("the log-rank test needs at least two non-empty groups")
    ut, ti = np.unique(t, return_inverse=True)
    n_t = np.bincount(ti, minlength=ut.size)
    at_risk = t.size - np.concatenate(([0], np.cumsum(n_t)[:-1]))
    d = np.bincount(ti, weights=e, minlength=ut.size)
    # per group at risk and deaths at each time
    gt = np.zeros((k, ut.size))
    np.add.at(gt, (g, ti), 1.0)
    r_g = gt[:, ::-1].cumsum(axis=1)[:, ::-1]
    dg = np.zeros((k, ut.size))
    np.add.at(dg, (g[e], ti[e]), 1.0)
    o_minus_e = (dg - d * r_g / at_risk).sum(axis=1)
    f = np.divide(d * (at_risk - d), at_risk - 1, out=np.zeros(ut.size), where=at_risk > 1) / at_risk
    p_ = r_g / at_risk
    cov = np.einsum("t,it,jt->ij", f * at_risk, p_, -p_)
    cov[np.diag_indices(k)] += (f * at_risk * p_).sum(axis=1)
    u = o_minus_e[:-1]
    v = cov[:-1, :-1]
    try:
        chi2 = float(u @ np.linalg.solve(v, u))
    except np.linalg.LinAlgError:
        chi2 = float(u @ np.linalg.pinv(v) @ u)
    return chi2, float(_sps.chi2.sf(chi2, k - 1)), k - 1


def cox_groups(time, event, covariates: np.ndarray, *, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Cox model (Efron ties, Newton-Raphson) for a few covariates: ``(beta, se)``.

    Partial log-likelihood with Efron ties: for an event time with d deaths D,
    ``l = sum_{i in D} eta_i - sum_{r=0}^{d-1} log(S0 - r/d S0_D)``.
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    x = np.atleast_2d(np.asarray(covariates, dtype=float).T).T
    n, p = x.shape
    if int(e.sum()) < max(1, p):
        raise UserError(f"too few events ({int(e.sum())}) for {p} hazard ratio(s)")
    order = np.argsort(-t, kind="stable")  # descending time: risk sets are prefixes
    t, e, x = t[order], e[order], x[order]
    ut, ti = np.unique(-t, return_inverse=True)  # groups by time, in descending time order
    last = np.searchsorted(-t, ut, side="right") - 1  # last row of each time group
    dcount = np.bincount(ti, weights=e, minlength=ut.size)
    tev = np.flatnonzero(dcount > 0)
    dk = dcount[tev]
    # expanded (time, r) pairs for Efron
    rep_t = np.repeat(tev, dk.astype(int))
    r_frac = (np.arange(rep_t.size) - np.repeat(np.cumsum(dk) - dk, dk.astype(int))) / np.repeat(dk, dk.astype(int))
    beta = np.zeros(p)
    xe = x[e]
    loglik_old = -np.inf
    for _ in range(max_iter):
        eta = x @ beta
        eta -= eta.max()
        w = np.exp(eta)
        s0 = np.cumsum(w)[last]
        s1 = np.cumsum(w[:, None] * x, axis=0)[last]
        s2 = np.cumsum(w[:, None, None] * x[:, :, None] * x[:, None, :], axis=0)[last]
        we = w * e
        d0 = np.bincount(ti, weights=we, minlength=ut.size)
        d1 = np.stack([np.bincount(ti, weights=we * x[:, j], minlength=ut.size) for j in range(p)], axis=1)
        d2 = np.zeros((ut.size, p, p))
        np.add.at(d2, ti[e], (w[e])[:, None, None] * xe[:, :, None] * xe[:, None, :])
        den0 = s0[rep_t] - r_frac * d0[rep_t]
        den1 = s1[rep_t] - r_frac[:, None] * d1[rep_t]
        den2 = s2[rep_t] - r_frac[:, None, None] * d2[rep_t]
        loglik = float(np.sum(eta[e]) - np.sum(np.log(den0)))
        mean = den1 / den0[:, None]
        grad = xe.sum(axis=0) - mean.sum(axis=0)
        info = (den2 / den0[:, None, None] - mean[:, :, None] * mean[:, None, :]).sum(axis=0)
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError as exc:
            raise UserError("the Cox model is singular (a group has no events or no subjects)") from exc
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10 or abs(loglik - loglik_old) < 1e-12:
            break
        loglik_old = loglik
    if not np.isfinite(beta).all() or np.max(np.abs(beta)) > 30:
        raise UserError("the hazard ratio is not estimable (a group has no events: monotone likelihood)")
    cov = np.linalg.inv(info)
    return beta, np.sqrt(np.diag(cov))


# ----------------------------------------------------------------------------------------------
# X-tile
# ----------------------------------------------------------------------------------------------


@dataclass
class XtileResult(StatResult):
    cuts: np.ndarray  # every candidate single cut (low group: marker <= cut)
    chi2_single: np.ndarray  # (C,) log-rank chi-square, 1 df, of each cut in ``cuts``
    chi2_pairs: np.ndarray  # (P, P) chi-square, 2 df, low <= c1 < mid <= c2 < high on ``pair_cuts`` (nan elsewhere)
    cutpoint: float
    statistic: float
    p_raw: float
    p_adjusted: float | None
    pair: tuple[float, float]
    pair_statistic: float
    pair_p_raw: float
    pair_p_adjusted: float | None
    pair_cuts: np.ndarray = field(default=None, repr=False)  # the (thinned) grid of the pair map
    min_group_size: int = 1  #: every group of every cut searched has at least this many subjects
    minprop: float = 0.1
    method: str = "xtile"

    def to_dict(self) -> dict:
        return {"method": self.method, "cutpoint": self.cutpoint, "statistic": self.statistic, "p_raw": self.p_raw, "p_adjusted": self.p_adjusted}


def min_group_size(n: int, minprop: float) -> int:
    """The smallest group a cut may leave: ``max(1, ceil(n * minprop))`` subjects."""
    return max(1, int(np.ceil(n * minprop - 1e-9)))


def _candidate_cuts(x: np.ndarray, min_n: int) -> np.ndarray:
    """Every distinct cut ``x <= c`` (c an observed value) leaving >= ``min_n`` subjects in both groups."""
    xs = np.sort(x)
    n = xs.size
    m = np.flatnonzero(np.diff(xs) != 0) + 1  # low-group size after each tie run
    m = m[(m >= min_n) & (m <= n - min_n)]
    return xs[m - 1]


def _thin(cuts: np.ndarray, max_cuts: int) -> np.ndarray:
    if cuts.size <= max_cuts:
        return cuts
    return cuts[np.unique(np.round(np.linspace(0, cuts.size - 1, max_cuts)).astype(int))]


@dataclass
class _LowGroupRisk:
    """Per cut and event time: the low group's number at risk and events, and the pooled
    log-rank terms (``w_k = d_k (r_k - d_k) / (r_k - 1)``)."""

    u: np.ndarray  # (C,) observed - expected events of the low group
    lin: np.ndarray  # (C,) sum_k r_low w_k / r_k
    r_low: np.ndarray  # (C, T)
    w_over_r2: np.ndarray  # (T,) w_k / r_k^2
    low_count: np.ndarray  # (C,) subjects with x <= cut


def _low_group_risk(t, e, x, cuts) -> _LowGroupRisk:
    ev_times, k_i, ev_idx, d_all, r_all, w = event_time_terms(t, e)
    b_i = np.searchsorted(cuts, x, side="left")  # subject is "low" for cut c iff b_i <= c
    n_c, n_t = cuts.size, ev_times.size
    hist = np.zeros((n_c + 1, n_t + 1))
    np.add.at(hist, (b_i, k_i), 1.0)
    # at risk at time index k: K_i > k  -> reverse cumulative over K from k+1
    risk_by_bin = hist[:, ::-1].cumsum(axis=1)[:, ::-1][:, 1:]  # (C+1, T)
    r_low = np.cumsum(risk_by_bin, axis=0)[:-1]  # (C, T)
    dh = np.zeros((n_c + 1, n_t))
    np.add.at(dh, (b_i[e], ev_idx), 1.0)
    d_low = np.cumsum(dh, axis=0)[:-1]
    u = d_low.sum(axis=1) - (r_low * (d_all / r_all)).sum(axis=1)
    lin = (r_low * (w / r_all)).sum(axis=1)
    low_count = np.cumsum(np.bincount(b_i, minlength=n_c + 1))[:-1]
    return _LowGroupRisk(u, lin, r_low, w / r_all**2, low_count)


def _single_chi2(t, e, x, cuts) -> np.ndarray:
    """Log-rank chi-square (1 df) of ``x <= c`` vs ``x > c`` for every cut: ``u^2 / v`` with
    ``v = sum_k w_k (r_low/r_k)(1 - r_low/r_k)`` (hypergeometric variance), in O(n log n)
    (:mod:`pathomics_desktop.stats.cutpoint_kernel`)."""
    xs, u, v = prefix_statistics(t, e, x)
    last = np.searchsorted(xs, cuts, side="right") - 1  # the last subject with x <= c
    u, v = u[last], v[last]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(v > 1e-12, u**2 / v, np.nan)


def _pair_chi2(t, e, x, cuts, min_n: int) -> np.ndarray:
    """Log-rank chi-square (2 df) of low (x <= c1) / mid / high (x > c2) for every c1 < c2."""
    g = _low_group_risk(t, e, x, cuts)
    n_c = cuts.size
    quad = (g.r_low * g.w_over_r2) @ g.r_low.T
    qd = np.diag(quad)
    u, lin = g.u, g.lin
    # groups A = low(c1), B = low(c2) \ low(c1)
    a = u[:, None] * np.ones(n_c)[None, :]
    b = u[None, :] - u[:, None]
    vaa = (lin - qd)[:, None] * np.ones(n_c)[None, :]
    vbb = (lin[None, :] - lin[:, None]) - (qd[None, :] - 2 * quad + qd[:, None])
    vab = -(quad - qd[:, None])
    det = vaa * vbb - vab**2
    with np.errstate(invalid="ignore", divide="ignore"):
        chi_pair = (a**2 * vbb - 2 * a * b * vab + b**2 * vaa) / det
    low_count = g.low_count
    mid = low_count[None, :] - low_count[:, None]
    high = t.size - low_count[None, :]
    ok = (mid >= min_n) & (high >= min_n) & (low_count[:, None] >= min_n) & (det > 1e-12)
    return np.where(ok, chi_pair, np.nan)


def xtile(
    time, event, marker, *, minprop: float = 0.1, n_perm: int = 1000, seed: int = 0, max_cuts: int = 100,
    pairs: bool = True,
) -> XtileResult:
    """X-tile: the best single cut over EVERY distinct cut, the low/mid/high pair map, and
    Monte Carlo permutation p-values.

    Single cuts: every observed marker value ``c`` whose split ``x <= c`` / ``x > c`` leaves at
    least ``min_group_size = max(1, ceil(n minprop))`` subjects in each group (default 10% of
    the subjects); the cut is the first one (smallest value) with the largest log-rank
    chi-square. The pair map (low/mid/high, every group >= ``min_group_size``) is drawn on the
    candidate cuts thinned evenly to ``max_cuts`` (it is a map to look at, quadratic in the
    cuts); ``pairs=False`` skips it. ``n_perm = 0`` skips the permutation p-values, which
    repeat the same search (single cuts and, with ``pairs``, the pair map) on the marker
    permuted against the outcome: ``(1 + #{max_perm >= max_obs}) / (1 + n_perm)``.
    """
    t, e, x = check_survival(time, event, marker, names=("marker",))
    if not 0 < minprop < 0.5:
        raise UserError(f"--minprop must be in (0, 0.5) (got {minprop})")
    if np.unique(x).size < 2:
        raise UserError("the marker has a single value: no cutpoint can be chosen")
    min_n = min_group_size(t.size, minprop)
    cuts = _candidate_cuts(x, min_n)
    if cuts.size == 0:
        raise UserError(f"no cutpoint leaves at least {minprop:.0%} ({min_n}) of the {t.size} subjects in each group")
    chi_s = _single_chi2(t, e, x, cuts)
    if not np.isfinite(chi_s).any():
        raise UserError("the log-rank statistic is undefined for every cut (too few events)")
    best = int(np.nanargmax(chi_s))
    stat = float(chi_s[best])
    pair_cuts = _thin(cuts, max_cuts)
    chi_p = _pair_chi2(t, e, x, pair_cuts, min_n) if pairs else np.full((pair_cuts.size, pair_cuts.size), np.nan)
    has_pair = bool(np.isfinite(chi_p).any())
    if has_pair:
        i1, i2 = np.unravel_index(int(np.nanargmax(chi_p)), chi_p.shape)
        pair_stat = float(chi_p[i1, i2])
        pair = (float(pair_cuts[i1]), float(pair_cuts[i2]))
    else:
        pair_stat, pair = float("nan"), (float("nan"), float("nan"))
    p_adj = pair_p_adj = None
    if n_perm > 0:
        rng = np.random.default_rng(seed)
        ge_s = ge_p = 0
        for _ in range(n_perm):
            xp = x[rng.permutation(x.size)]
            cs = _single_chi2(t, e, xp, cuts)
            ge_s += bool(np.isfinite(cs).any() and np.nanmax(cs) >= stat - 1e-12)
            if has_pair:
                cp_ = _pair_chi2(t, e, xp, pair_cuts, min_n)
                ge_p += bool(np.isfinite(cp_).any() and np.nanmax(cp_) >= pair_stat - 1e-12)
        p_adj = (1 + ge_s) / (1 + n_perm)
        pair_p_adj = (1 + ge_p) / (1 + n_perm) if has_pair else None
    return XtileResult(
        cuts=cuts,
        chi2_single=chi_s,
        chi2_pairs=chi_p,
        cutpoint=float(cuts[best]),
        statistic=stat,
        p_raw=float(_sps.chi2.sf(stat, 1)),
        p_adjusted=p_adj,
        pair=pair,
        pair_statistic=pair_stat,
        pair_p_raw=float(_sps.chi2.sf(pair_stat, 2)) if has_pair else float("nan"),
        pair_p_adjusted=pair_p_adj,
        pair_cuts=pair_cuts,
        min_group_size=min_n,
        minprop=minprop,
    )


def validate_cut(time, event, marker, cuts: float | tuple[float, ...]) -> dict:
    """Apply training cut(s) to a validation set: group sizes, log-rank chi-square and p, and the
    Cox hazard ratios (95% CI) of each higher group against the lowest (``marker <= cut`` is low)."""
    t, e, x = check_survival(time, event, marker, names=("marker",))
    c = np.sort(np.atleast_1d(np.asarray(cuts, dtype=float)))
    group = np.searchsorted(c, x, side="left")  # 0: x <= c1, 1: c1 < x <= c2, ...
    sizes = np.bincount(group, minlength=c.size + 1)
    if (sizes == 0).any():
        raise UserError(f"the cut(s) {c.tolist()} leave an empty group in the validation set (sizes {sizes.tolist()})")
    chi2, p, df = logrank_groups(t, e, group)
    dummies = np.stack([(group == g).astype(float) for g in range(1, c.size + 1)], axis=1)
    beta, se = cox_groups(t, e, dummies)
    z = float(_sps.norm.ppf(0.975))
    return {
        "cuts": c.tolist(),
        "n": sizes.tolist(),
        "logrank_chi2": chi2,
        "logrank_p": p,
        "df": df,
        "hr": np.exp(beta).tolist(),
        "hr_lower": np.exp(beta - z * se).tolist(),
        "hr_upper": np.exp(beta + z * se).tolist(),
    }
