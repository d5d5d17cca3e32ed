"""Concordance (C-index) for survival data: Harrell's C, Uno's C, bootstrap and paired comparison.

Conventions (identical to R ``survival::concordance(Surv(t, e) ~ x, reverse=TRUE)``):

* a higher marker means a higher risk (shorter survival);
* a pair (i, j) is *comparable* when i has an event and ``t_i < t_j``, or ``t_i == t_j`` with
  i an event and j censored (a censored subject is taken to outlive an event at its own time);
  two events at the same time, or two censored subjects, are not comparable;
* a comparable pair is concordant when ``x_i > x_j``, discordant when ``x_i < x_j`` and counts
  one half when ``x_i == x_j``:  ``C = (concordant + tied_x / 2) / (concordant + discordant + tied_x)``.

Counting uses a wavelet matrix over the marker ranks in time order, so every per-subject count
is obtained with O(log n) vectorised numpy passes: O(n log n) in total, about a second for
n = 1,000,000.

References: Harrell FE et al. (1982) JAMA 247:2543; Uno H et al. (2011) Stat Med 30:1105;
Therneau T, Atkinson E (2023) "The concordance statistic", survival package vignette
(infinitesimal-jackknife variance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _sps

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.results import StatResult

__all__ = [
    "ConcordanceResult",
    "PairedConcordance",
    "check_survival",
    "concordance_counts",
    "c_from_counts",
    "harrell_c",
    "uno_c",
    "bootstrap_c",
    "compare_c",
    "censoring_survival",
    "evaluate_step_function",
]

_Z975 = float(_sps.norm.ppf(0.975))


# ----------------------------------------------------------------------------------------------
# input checks shared by the survival-metric modules
# ----------------------------------------------------------------------------------------------


def check_survival(time, event, *markers, names: tuple[str, ...] = ()) -> tuple[np.ndarray, ...]:
    """Return ``time`` (float), ``event`` (bool) and each marker as 1-D float arrays.

    Raises :class:`UserError` for different lengths, missing/non-finite values, negative
    times, event codes other than 0/1/True/False, or no events at all.
    """
    try:
        t = np.asarray(time, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise UserError("time must be numeric") from exc
    e_raw = np.asarray(event).ravel()
    if t.size == 0:
        raise UserError("survival data is empty: no rows to analyse")
    if e_raw.size != t.size:
        raise UserError(f"time has {t.size} values but event has {e_raw.size}")
    if e_raw.dtype == bool:
        e = e_raw
    else:
        try:
            e_num = np.asarray(e_raw, dtype=float)
        except (TypeError, ValueError) as exc:
            raise UserError("event must be 0/1 (use --event-value to name the event code)") from exc
        bad = ~np.isin(e_num, (0.0, 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"event must be 0/1 (row {row} has {e_raw[row]!r})")
        e = e_num == 1.0
    if not np.isfinite(t).all():
        row = int(np.flatnonzero(~np.isfinite(t))[0])
        raise UserError(f"time is missing or not finite at row {row}")
    if (t < 0).any():
        row = int(np.flatnonzero(t < 0)[0])
        raise UserError(f"time is negative at row {row} ({t[row]})")
    if not e.any():
        raise UserError("no events: every subject is censored, survival statistics are undefined")
    out = [t, e]
    for k, m in enumerate(markers):
        name = names[k] if k < len(names) else f"marker {k + 1}"
        try:
            x = np.asarray(m, dtype=float).ravel()
        except (TypeError, ValueError) as exc:
            raise UserError(f"{name} must be numeric") from exc
        if x.size != t.size:
            raise UserError(f"{name} has {x.size} values but time has {t.size}")
        if not np.isfinite(x).all():
            row = int(np.flatnonzero(~np.isfinite(x))[0])
            raise UserError(f"{name} is missing or not finite at row {row}")
        out.append(x)
    return tuple(out)


def censoring_survival(time: np.ndarray, event: np.ndarray):
    """Kaplan-Meier estimate of the censoring survival G(t) = P(C > t).

    At a time with both events and censorings the events are removed from the risk set
    first (events precede censorings), as in scikit-survival's
    ``CensoringDistributionEstimator``. Returns ``(unique_times, G)`` with G right-continuous;
    evaluate with :func:`evaluate_step_function`.
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    uniq, inv = np.unique(t, return_inverse=True)
    n_total = np.bincount(inv, minlength=uniq.size)
    n_event = np.bincount(inv, weights=e, minlength=uniq.size)
    n_cens = n_total - n_event
    at_risk = t.size - np.concatenate(([0], np.cumsum(n_total)[:-1]))
    at_risk_c = at_risk - n_event
    ratio = np.divide(n_cens, at_risk_c, out=np.zeros(uniq.size), where=n_cens > 0)
    return uniq, np.cumprod(1.0 - ratio)


def evaluate_step_function(grid: np.ndarray, values: np.ndarray, at, before: float = 1.0) -> np.ndarray:
    """Value at each point of ``at`` of the right-continuous step function that jumps to
    ``values[k]`` at ``grid[k]`` (``grid`` ascending) and equals ``before`` left of ``grid[0]``.

    ``f(a) = values[max{k : grid[k] <= a}]``, or ``before`` when no ``grid[k] <= a``; e.g. a
    Kaplan-Meier curve ``(times, S)`` from :func:`censoring_survival` evaluated at new times
    (``before = 1``: survival is 1 before the first step). Used by Uno's C and the IPCW
    time-dependent AUC (:mod:`pathomics_desktop.stats.tdroc`).
    """
    idx = np.searchsorted(grid, at, side="right") - 1
    return np.where(idx >= 0, values[np.clip(idx, 0, None)], before)


# ----------------------------------------------------------------------------------------------
# wavelet-matrix counting: for query q, #{p in [lo_q, hi_q) : seq[p] < v_q}
# ----------------------------------------------------------------------------------------------


def _count_less(seq: np.ndarray, lo: np.ndarray, hi: np.ndarray, thresholds: list[np.ndarray]) -> list[np.ndarray]:
    """Range "less than" counts on an integer sequence with a wavelet matrix.

    ``seq`` holds integers in [0, 2**bits); for every threshold array ``v`` (same length as
    ``lo``/``hi``) returns ``#{p : lo <= p < hi, seq[p] < v}``. Each of the ``bits`` levels is a
    stable partition of the sequence by one bit plus a cumulative count of zeros, and each
    query moves down the levels with two gathers: O((n + q) log sigma) vectorised work.
    """
    n = seq.size
    vmax = max(int(max((v.max() for v in thresholds if v.size), default=0)), int(seq.max(initial=0)) + 1)
    bits = max(1, int(vmax).bit_length())
    itype = np.int32 if n < 2**30 else np.int64
    cur = seq.astype(itype, copy=True)
    states = [(lo.astype(itype), hi.astype(itype), np.zeros(lo.size, dtype=np.int64), v.astype(itype)) for v in thresholds]
    cum0 = np.empty(n + 1, dtype=itype)
    cum0[0] = 0
    positions = np.arange(n, dtype=itype)
    nxt = np.empty_like(cur)
    # integer arithmetic instead of np.where / boolean masks: several times faster in numpy
    for level in range(bits - 1, -1, -1):
        bit = (cur >> level) & 1
        np.cumsum(1 - bit, out=cum0[1:])
        zeros = itype(cum0[-1])
        for k, (qlo, qhi, res, v) in enumerate(states):
            one = (v >> level) & 1
            lo0 = cum0[qlo]
            hi0 = cum0[qhi]
            res += (hi0 - lo0) * one
            qlo = lo0 + one * (zeros + qlo - 2 * lo0)
            qhi = hi0 + one * (zeros + qhi - 2 * hi0)
            states[k] = (qlo, qhi, res, v)
        before = cum0[:-1]
        dest = before + bit * (zeros + positions - 2 * before)  # stable partition: zeros, then ones
        nxt[dest] = cur
        cur, nxt = nxt, cur
    return [s[2] for s in states]


def _dense_rank(x: np.ndarray) -> np.ndarray:
    """Dense ranks 0..(distinct - 1) of ``x`` (equal values share a rank)."""
    order = np.argsort(x)
    xs = x[order]
    step = np.empty(x.size, dtype=np.int64)
    step[0] = 0
    np.not_equal(xs[1:], xs[:-1], out=step[1:], casting="unsafe")
    rank = np.empty(x.size, dtype=np.int64)
    rank[order] = np.cumsum(step)
    return rank


@dataclass
class _Counts:
    """Per-subject pair counts (original row order)."""

    as_case_conc: np.ndarray  # for events: comparable j with x_j < x_i
    as_case_tie: np.ndarray  # for events: comparable j with x_j == x_i
    as_case_comp: np.ndarray  # for events: number of comparable j
    as_ctrl_conc: np.ndarray  # events i for which this subject is a comparable j and x_i > x_j
    as_ctrl_tie: np.ndarray
    as_ctrl_comp: np.ndarray


def _pair_counts(time: np.ndarray, event: np.ndarray, marker: np.ndarray, control_side: bool = True) -> _Counts:
    n = time.size
    # time ascending; at a tied time events come before censored subjects
    order = np.lexsort((~event, time))
    t_s, e_s = time[order], event[order]
    rank = _dense_rank(marker)
    r_s = rank[order]
    # start of the comparable suffix of an event at sorted position p: one past the last event
    # with the same time
    ev_pos = np.flatnonzero(e_s)
    ev_t = t_s[ev_pos]
    last_ev_idx = np.searchsorted(ev_t, ev_t, side="right") - 1
    start = ev_pos[last_ev_idx] + 1
    nev = ev_pos.size
    hi = np.full(nev, n, dtype=np.int64)
    rv = r_s[ev_pos]
    all_distinct = int(rank.max()) + 1 == n
    if all_distinct:  # no marker ties: "<=" equals "<" except the subject itself (never in range)
        (less,) = _count_less(r_s, start, hi, [rv])
        leq = less
    else:
        less, leq = _count_less(r_s, start, hi, [rv, rv + 1])
    case_conc = np.zeros(n)
    case_tie = np.zeros(n)
    case_comp = np.zeros(n)
    ev_rows = order[ev_pos]
    case_conc[ev_rows] = less
    case_tie[ev_rows] = leq - less
    case_comp[ev_rows] = n - start
    ctrl_conc = np.zeros(n)
    ctrl_tie = np.zeros(n)
    ctrl_comp = np.zeros(n)
    if control_side:
        # subject at sorted position p is comparable to events whose suffix start <= p; those
        # events form a prefix of the event subsequence because start is non-decreasing.
        pos = np.arange(n)
        n_prefix = np.searchsorted(start, pos, side="right")
        zeros = np.zeros(n, dtype=np.int64)
        if all_distinct:
            (less_c,) = _count_less(rv, zeros, n_prefix, [r_s])
            leq_c = less_c  # a subject's own rank is never among the earlier events
        else:
            less_c, leq_c = _count_less(rv, zeros, n_prefix, [r_s, r_s + 1])
        ctrl_conc[order] = n_prefix - leq_c
        ctrl_tie[order] = leq_c - less_c
        ctrl_comp[order] = n_prefix
    return _Counts(case_conc, case_tie, case_comp, ctrl_conc, ctrl_tie, ctrl_comp)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


@dataclass
class ConcordanceResult(StatResult):
    """A concordance estimate; ``se`` is the infinitesimal-jackknife standard error (Harrell's C)."""

    c: float
    n: int
    concordant: float = 0.0
    discordant: float = 0.0
    tied_x: float = 0.0
    se: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    method: str = "harrell"
    influence: np.ndarray | None = field(default=None, repr=False)
    samples: np.ndarray | None = field(default=None, repr=False)  #: bootstrap C-indices

    def to_dict(self) -> dict:
        return {"c": self.c, "ci_lower": self.ci_lower, "ci_upper": self.ci_upper, "n": self.n}


def concordance_counts(time, event, marker, *, strata=None) -> dict:
    """Concordant, discordant and marker-tied comparable pair counts (R ``concordance()$count``).

    With ``strata`` (one label per subject) only pairs within the same stratum are compared,
    as R ``concordance(Surv(t, e) ~ x + strata(s))`` and ``coxph``'s concordance of a
    stratified model. Harrell's C is ``(concordant + tied_x / 2) / comparable``
    (:func:`harrell_c`; :func:`c_from_counts`).
    """
    t, e, x = check_survival(time, event, marker)
    if strata is None:
        codes = np.zeros(t.size, dtype=np.int64)
    else:
        labels = np.asarray(strata).ravel()
        if labels.size != t.size:
            raise UserError(f"strata has {labels.size} values but time has {t.size}")
        codes = np.unique(labels, return_inverse=True)[1].ravel()
    conc = tie = comp = 0.0
    for level in np.unique(codes):
        m = codes == level
        if not e[m].any():  # a stratum without events has no comparable pair
            continue
        c = _pair_counts(t[m], e[m], x[m], control_side=False)
        conc += float(c.as_case_conc.sum())
        tie += float(c.as_case_tie.sum())
        comp += float(c.as_case_comp.sum())
    return {"concordant": conc, "discordant": comp - conc - tie, "tied_x": tie, "comparable": comp}


def c_from_counts(counts: dict) -> float:
    """Harrell's C ``(concordant + tied_x / 2) / comparable`` of :func:`concordance_counts`
    (NaN without comparable pairs)."""
    if counts["comparable"] == 0:
        return float("nan")
    return (counts["concordant"] + 0.5 * counts["tied_x"]) / counts["comparable"]


def harrell_c(time, event, marker, *, influence: bool = True) -> ConcordanceResult:
    """Harrell's C with the infinitesimal-jackknife (IJ) variance of R ``survival::concordance``.

    ``C = N / D`` with ``N = sum_{comparable (i,j)} [x_i > x_j] + 0.5 [x_i == x_j]`` and ``D`` the
    number of comparable pairs. With case weights w, ``N(w) = sum w_i w_j K_ij``; the IJ
    influence of subject k is ``dC/dw_k = (N_k - C D_k) / D`` where ``N_k``/``D_k`` are the
    pair sums involving k (as the event or as the comparator), and ``var = sum_k (dC/dw_k)^2``.
    The 95% CI is ``C +/- 1.96 se`` (clipped to [0, 1]).
    """
    t, e, x = check_survival(time, event, marker, names=("marker",))
    if x.min() == x.max():
        raise UserError("the marker has a single value: the concordance is undefined")
    cnt = _pair_counts(t, e, x, control_side=influence)
    conc = float(cnt.as_case_conc.sum())
    tie = float(cnt.as_case_tie.sum())
    comp = float(cnt.as_case_comp.sum())
    if comp == 0:
        raise UserError("no comparable pairs: the concordance is undefined")
    c = (conc + 0.5 * tie) / comp
    res = ConcordanceResult(c=c, n=int(t.size), concordant=conc, discordant=comp - conc - tie, tied_x=tie)
    if influence:
        n_k = cnt.as_case_conc + 0.5 * cnt.as_case_tie + cnt.as_ctrl_conc + 0.5 * cnt.as_ctrl_tie
        d_k = cnt.as_case_comp + cnt.as_ctrl_comp
        infl = (n_k - c * d_k) / comp
        se = float(np.sqrt(np.sum(infl**2)))
        res.se = se
        res.influence = infl
        res.ci_lower = float(max(0.0, c - _Z975 * se))
        res.ci_upper = float(min(1.0, c + _Z975 * se))
    return res


def censoring_reference(t, e, train_time=None, train_event=None):
    """Kaplan-Meier of the censoring distribution (step times, values) and the largest
    follow-up time, from the training data when given, else from the data themselves."""
    if train_time is None:
        g_t, g_v = censoring_survival(t, e)
        return g_t, g_v, t.max()
    tt, te = check_survival(train_time, train_event)
    g_t, g_v = censoring_survival(tt, te)
    return g_t, g_v, tt.max()


def _uno_case_weights(t, e, tau, train_time=None, train_event=None) -> np.ndarray:
    g_t, g_v, t_max = censoring_reference(t, e, train_time, train_event)
    use = e & (t < tau) if tau is not None else e.copy()
    g = evaluate_step_function(g_t, g_v, t)
    if np.any(use & (t > t_max)):
        raise UserError("test times beyond the largest training time: censoring survival unknown")
    if np.any(use & (g <= 0)):
        raise UserError(
            "the censoring survival G(t) is zero before tau; choose a smaller --tau "
            "(Uno's C needs G(t) > 0 up to tau)"
        )
    w = np.zeros(t.size)
    w[use] = 1.0 / g[use] ** 2
    return w


def uno_c(time, event, marker, tau: float | None = None, *, train_time=None, train_event=None) -> ConcordanceResult:
    """Uno's C truncated at ``tau`` (IPCW; as scikit-survival ``concordance_index_ipcw``).

    ``C_tau = sum_{i,j} w_i K_ij / sum_{i,j} w_i P_ij`` with ``w_i = delta_i [t_i < tau] / G(t_i)^2``,
    ``G`` the Kaplan-Meier survival of the censoring times (of the training data when given),
    ``P_ij`` comparability as in :func:`harrell_c` and ``K_ij = P_ij ([x_i > x_j] + 0.5 [x_i == x_j])``.
    Reference: Uno H, Cai T, Pencina MJ, D'Agostino RB, Wei LJ (2011) Stat Med 30:1105-1117.
    """
    t, e, x = check_survival(time, event, marker, names=("marker",))
    if x.min() == x.max():
        raise UserError("the marker has a single value: the concordance is undefined")
    if tau is not None and not np.any(e & (t < tau)):
        raise UserError(f"no events before tau = {tau}: Uno's C is undefined")
    w = _uno_case_weights(t, e, tau, train_time, train_event)
    cnt = _pair_counts(t, e, x, control_side=False)
    num = float(np.sum(w * (cnt.as_case_conc + 0.5 * cnt.as_case_tie)))
    den = float(np.sum(w * cnt.as_case_comp))
    if den == 0:
        raise UserError("no comparable pairs before tau: Uno's C is undefined")
    return ConcordanceResult(
        c=num / den,
        n=int(t.size),
        concordant=float(cnt.as_case_conc.sum()),
        discordant=float((cnt.as_case_comp - cnt.as_case_conc - cnt.as_case_tie).sum()),
        tied_x=float(cnt.as_case_tie.sum()),
        method="uno",
    )


# ----------------------------------------------------------------------------------------------
# bootstrap
# ----------------------------------------------------------------------------------------------

#: up to this n the bootstrap uses dense n x n pair matrices and one matrix product per marker
_DENSE_MAX_N = 2500


def _pair_matrices(t, e, x, case_w):
    """Dense ``K`` (concordance kernel) and ``P`` (comparability) weighted by case weights."""
    later = (t[None, :] > t[:, None]) | ((t[None, :] == t[:, None]) & ~e[None, :])
    comp = later & e[:, None]
    kern = np.where(x[None, :] < x[:, None], 1.0, np.where(x[None, :] == x[:, None], 0.5, 0.0))
    p = comp * case_w[:, None]
    return kern * p, p


def _bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot x n`` multiplicities of each subject in the bootstrap samples (float)."""
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (idx + (np.arange(n_boot) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(float)


def _boot_stats(t, e, markers, n_boot, rng, case_weight_fn) -> np.ndarray:
    """Bootstrap C of each marker on the same resamples: array ``n_boot x len(markers)``."""
    n = t.size
    out = np.empty((n_boot, len(markers)))
    if n <= _DENSE_MAX_N:
        counts = _bootstrap_counts(n, n_boot, rng)
        # with case weights depending on the resample (Uno), recompute per replicate
        if case_weight_fn is None:
            for k, x in enumerate(markers):
                kern, comp = _pair_matrices(t, e, x, np.ones(n))
                num = np.einsum("bi,bi->b", counts @ kern, counts)
                den = np.einsum("bi,bi->b", counts @ comp, counts)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[:, k] = num / den
        else:
            mats = [_pair_matrices(t, e, x, np.ones(n)) for x in markers]
            for b in range(n_boot):
                w = counts[b]
                sel = w > 0
                cw = np.zeros(n)
                try:
                    cw[sel] = case_weight_fn(np.repeat(t[sel], w[sel].astype(int)), np.repeat(e[sel], w[sel].astype(int)), t[sel], e[sel])
                except UserError:
                    out[b] = np.nan
                    continue
                for k, (kern, comp) in enumerate(mats):
                    a = w * cw
                    num = a @ kern @ w
                    den = a @ comp @ w
                    out[b, k] = num / den if den > 0 else np.nan
        return out
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        tb, eb = t[idx], e[idx]
        if not eb.any():
            out[b] = np.nan
            continue
        try:
            cw = np.ones(n) if case_weight_fn is None else case_weight_fn(tb, eb, tb, eb)
        except UserError:
            out[b] = np.nan
            continue
        for k, x in enumerate(markers):
            xb = x[idx]
            cnt = _pair_counts(tb, eb, xb, control_side=False)
            den = float(np.sum(cw * cnt.as_case_comp))
            out[b, k] = float(np.sum(cw * (cnt.as_case_conc + 0.5 * cnt.as_case_tie))) / den if den > 0 else np.nan
    return out


def _uno_weight_fn(tau):
    def fn(t_fit, e_fit, t_eval, e_eval):
        g_t, g_v = censoring_survival(t_fit, e_fit)
        g = evaluate_step_function(g_t, g_v, t_eval)
        use = e_eval & ((t_eval < tau) if tau is not None else True)
        if np.any(use & (g <= 0)):
            raise UserError("G(t) = 0 in a bootstrap sample")
        w = np.zeros(t_eval.size)
        w[use] = 1.0 / g[use] ** 2
        return w

    return fn


def bootstrap_c(
    time,
    event,
    marker,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    method: str = "harrell",
    tau: float | None = None,
) -> ConcordanceResult:
    """C-index with a percentile bootstrap CI (``n_boot`` resamples of subjects, seeded).

    The point estimate is the full-sample C; the CI is the ``(1-level)/2`` and ``(1+level)/2``
    quantiles of the bootstrap C-indices. For n <= 2500 each resample is a multiplicity vector
    ``m`` and ``C_b = m' K m / m' P m`` with dense pair matrices (one BLAS product for all
    resamples). ``method`` is ``"harrell"`` or ``"uno"`` (then ``tau`` applies and the censoring
    distribution is re-estimated in each resample).
    """
    if n_boot < 10:
        raise UserError("--bootstrap needs at least 10 resamples")
    point = harrell_c(time, event, marker, influence=False) if method == "harrell" else uno_c(time, event, marker, tau)
    t, e, x = check_survival(time, event, marker)
    rng = np.random.default_rng(seed)
    fn = None if method == "harrell" else _uno_weight_fn(tau)
    boots = _boot_stats(t, e, [x], n_boot, rng, fn)[:, 0]
    boots = boots[np.isfinite(boots)]
    if boots.size < n_boot // 2:
        raise UserError("most bootstrap samples had no comparable pairs; the bootstrap CI is undefined")
    a = (1 - level) / 2
    point.ci_lower, point.ci_upper = (float(v) for v in np.quantile(boots, [a, 1 - a]))
    point.se = float(np.std(boots, ddof=1))
    point.samples = boots
    return point


@dataclass
class PairedConcordance(StatResult):
    """Two markers on the same subjects: ``difference = c1 - c2`` with CI and two-sided p."""

    c1: float
    c2: float
    difference: float
    se: float
    ci_lower: float
    ci_upper: float
    p_value: float
    method: str

    def to_dict(self) -> dict:
        keys = ("c1", "c2", "difference", "se", "ci_lower", "ci_upper", "p_value", "method")
        return {key: getattr(self, key) for key in keys}


def compare_c(time, event, marker1, marker2, *, method: str = "ij", n_boot: int = 1000, seed: int = 0) -> PairedConcordance:
    """Compare the Harrell's C of two markers measured on the same subjects.

    ``method="ij"``: the infinitesimal-jackknife covariance of R ``concordance(fit1, fit2)``:
    ``var(C1 - C2) = sum_k (dC1/dw_k - dC2/dw_k)^2``; CI ``d +/- 1.96 se``, p from ``z = d / se``.
    ``method="bootstrap"``: paired resamples (same subjects for both markers); the CI is the
    percentile interval of the differences and p comes from ``z = d / sd(bootstrap differences)``.
    """
    t, e, x1, x2 = check_survival(time, event, marker1, marker2, names=("marker 1", "marker 2"))
    r1 = harrell_c(t, e, x1)
    r2 = harrell_c(t, e, x2)
    d = r1.c - r2.c
    if method == "ij":
        se = float(np.sqrt(np.sum((r1.influence - r2.influence) ** 2)))
        lo, hi = d - _Z975 * se, d + _Z975 * se
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        boots = _boot_stats(t, e, [x1, x2], n_boot, rng, None)
        diff = boots[:, 0] - boots[:, 1]
        diff = diff[np.isfinite(diff)]
        se = float(np.std(diff, ddof=1))
        lo, hi = (float(v) for v in np.quantile(diff, [0.025, 0.975]))
    else:
        raise UserError(f"unknown comparison method {method!r} (use 'ij' or 'bootstrap')")
    p = float(2 * _sps.norm.sf(abs(d) / se)) if se > 0 else (1.0 if d == 0 else 0.0)
    return PairedConcordance(r1.c, r2.c, d, se, float(lo), float(hi), p, method)
