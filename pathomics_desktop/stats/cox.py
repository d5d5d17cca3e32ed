"""Cox proportional-hazards regression: own vectorised Newton-Raphson in numpy.

Partial likelihood (Cox 1972) for subjects i with linear predictor eta_i = x_i' beta,
risk r_i = exp(eta_i), event times t with tied death set D_t (d_t deaths) and risk set
R_t = {i : time_i >= t} (within the stratum):

* Efron (1977) ties (default, as R ``coxph``): for l = 0..d_t-1,
  ``a_l = S0(R_t) - (l/d_t) S0(D_t)``, ``m_l = (S1(R_t) - (l/d_t) S1(D_t)) / a_l`` with
  ``S0 = sum r_i``, ``S1 = sum r_i x_i``; ``loglik = sum_{deaths} eta_i - sum_{t,l} log a_l``;
  score ``U = sum_{deaths} x_i - sum_{t,l} m_l``; information
  ``I = sum_{t,l} [S2_l / a_l - m_l m_l']``. Breslow (1974): l/d_t replaced by 0.
* Vectorisation: subjects are sorted once by (stratum, time descending, censored before
  deaths), so each tied-time group is a censored and a dead *segment*. Per Newton step:
  one pass ``eta = X beta``, one sparse (segment x subject) product for the segment sums
  of ``r`` and ``r x``, cumulative sums over segments for the risk sets (split into the
  part not dying at t and the deaths D_t, so no cancelling subtraction), per-group sums
  of the Efron terms (``sum_l m_l m_l'`` expanded in ``sum 1/a^2``, ``sum g/a^2``,
  ``sum g^2/a^2`` with ``g = 1 - l/d``), and one ``X' diag(c) X`` product (BLAS syrk)
  with per-subject weights c_i; no n x p x p or (subject x term) array is ever built.
* Newton-Raphson from beta = 0 with step halving when the log-likelihood decreases,
  converged when the relative log-likelihood change is < 1e-12 (R uses 1e-9).
* Tests: Wald ``b' V^-1 b``, likelihood ratio ``2 (l(b) - l(0))``, score
  ``U(0)' I(0)^-1 U(0)``; p from chi-square with p df. 95% CI for HR: ``exp(b +- 1.96 se)``.
* Robust (sandwich) variance as ``coxph(..., cluster=)`` (Lin & Wei 1989):
  ``V_r = D_c' D_c`` with D = (score residuals) V summed within clusters; with a cluster the
  Wald test uses V_r and the score test is the robust score test.
* Concordance: Harrell's C of the linear predictor as ``coxph`` reports it
  (pairs comparable when the shorter time is an event; ties in eta count 1/2; pairs tied
  on an event time are not comparable; pairs only within strata), counted by
  :func:`pathomics_desktop.stats.concordance.concordance_counts` (the one Harrell's C of
  the package); computed when ``CoxFit.concordance`` is first read, as lifelines does for
  ``concordance_index_``.
* Proportional hazards: ``cox_zph`` reproduces R ``cox.zph`` (survival >= 3): a score test
  for adding ``x * g(t)`` for each term (and all terms, GLOBAL) at the fitted beta, with
  ``g(t) = 1 - KM(t-)`` (transform "km") centred at its mean over the events
  (Grambsch & Therneau 1994).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from scipy import sparse as sp
from scipy import stats as sps

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.concordance import c_from_counts, concordance_counts
from pathomics_desktop.stats.distributions import chi2_sf, normal_two_sided_p
from pathomics_desktop.stats.km import as_event_array, as_time_array, timefix
from pathomics_desktop.stats.levels import label_array, sorted_levels
from pathomics_desktop.stats.results import StatResult

if TYPE_CHECKING:
    from pathomics_desktop.stats.frailty import FrailtyFit

TIES = ("efron", "breslow")
#: the keys of one coefficient row in ``pathomics analyze cox --json``
COX_TERM_KEYS = ("term", "coef", "se", "hr", "hr_lower", "hr_upper", "z", "p")
Z975 = float(sps.norm.ppf(0.975))


# --------------------------------------------------------------------------------------
# sorted data and the derivatives of the partial likelihood
# --------------------------------------------------------------------------------------


def descending_time_order(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Row order by time descending, censored rows before deaths at a tied time.

    The order ``np.lexsort((event, -time))`` asks for, in two cheaper sorts: an unstable
    argsort of ``-time``, then a stable sort of ``2 * (tied-time group) + event`` on that
    order, which is already sorted up to the event flags inside each group (timsort on
    runs: linear). Rows equal in time and event may come in another order than lexsort's,
    which changes nothing but the rounding of sums."""
    first = np.argsort(-time)
    sorted_time = time[first]
    new_group = np.ones(time.size, dtype=np.int64)
    new_group[1:] = sorted_time[1:] != sorted_time[:-1]
    key = 2 * (np.cumsum(new_group) - 1) + event[first]
    return first[np.argsort(key, kind="stable")]


def tied_groups(time: np.ndarray, event: np.ndarray, strata: np.ndarray | None = None):
    """(new_group, group_start, dead_start) of rows sorted as :class:`CoxData` sorts them: a
    flag on the first row of each (stratum, time) group, the groups' first rows, and their
    first death rows (censored rows come first in a group)."""
    n = time.size
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = time[1:] != time[:-1]
    if strata is not None:
        new_group[1:] |= strata[1:] != strata[:-1]
    group_start = np.flatnonzero(new_group)
    censored = (~event).astype(np.int64)
    dead_start = group_start + (np.add.reduceat(censored, group_start) if n else 0)
    return new_group, group_start, dead_start


class CoxData:
    """Subjects sorted once by (stratum, time descending, censored before deaths) with the
    tie/risk-set bookkeeping.

    Rows of one (stratum, time) group are contiguous, its censored rows first, then its
    deaths, so every group splits into at most two contiguous *segments* (censored, dead).
    Per-segment sums of ``r_i`` and ``r_i x_i`` come from one sparse (segment x row) product,
    and everything else is computed per group (G groups) or per death term, never per
    (row, term).
    """

    def __init__(self, time: np.ndarray, event: np.ndarray, X: np.ndarray,
                 strata: np.ndarray | None = None, ties: str = "efron", *, presorted: bool = False):
        """``presorted``: the rows are already in this order (no strata), e.g. a subset, in
        order, of rows sorted by :func:`descending_time_order`; nothing is sorted again."""
        if ties not in TIES:
            raise UserError(f"ties must be one of {TIES}, got {ties!r}")
        n = time.size
        self.n = n
        self.ties = ties
        event = np.asarray(event).astype(bool)
        if presorted and strata is not None:
            raise UserError("presorted Cox data cannot have strata")
        if strata is None:
            s = np.zeros(n, dtype=np.int64)
            order = np.arange(n) if presorted else descending_time_order(time, event)
        else:
            s = np.asarray(strata, np.int64)
            order = np.lexsort((event, -time, s))
        self.order = order
        self.time = time if presorted else time[order]
        self.event = event if presorted else event[order]
        self.strata = s[order]
        # the centred columns, sorted and contiguous (numpy's axis-0 reductions of a tall,
        # thin C array are ~20x slower than these row reductions); X is their transpose
        X = np.asarray(X, dtype=float)
        columns = X.T.copy() if presorted else np.take(X.T, order, axis=1)  # new arrays (centred in place)
        self.means = columns.mean(axis=1)
        columns -= self.means[:, None]
        self._columns = columns
        self.X = columns.T
        self._sd: np.ndarray | None = None
        self._new_group, self.group_start, self.dead_start = tied_groups(self.time, self.event,
                                                                         None if strata is None else self.strata)
        self.n_groups = self.group_start.size
        self._segments_ready = False

    @property
    def n_columns(self) -> int:
        """Number of coefficients."""
        return self.X.shape[1]

    def select(self, columns: Sequence[int]) -> "CoxData":
        """The same subjects with the covariates ``columns`` only: the sort and the tie
        bookkeeping are shared, the centred columns taken (a covariate's centring does not
        depend on the others)."""
        out = copy.copy(self)
        idx = list(columns)
        out._columns = self._columns[idx]
        out.X = out._columns.T
        out.means = self.means[idx]
        out._sd = None
        out.__dict__.pop("sum_dead_x", None)
        return out

    @cached_property
    def group(self) -> np.ndarray:
        """The (stratum, time) group of each sorted row, 0..G-1."""
        return np.cumsum(self._new_group) - 1

    @cached_property
    def dead_rows(self) -> np.ndarray:
        """Sorted positions of the deaths."""
        return np.flatnonzero(self.event)

    @cached_property
    def sum_dead_x(self) -> np.ndarray:
        """Sum of the centred covariates over the deaths."""
        return self._columns[:, self.event].sum(axis=1)

    def _ensure_segments(self) -> None:
        """The segment and death-term bookkeeping of the vectorised path (built on first use:
        Newton-Raphson iterations use the compiled kernel, which needs only the groups)."""
        if self._segments_ready:
            return
        n, n_groups, new_group, dead = self.n, self.n_groups, self._new_group, self.event
        self.group_end = np.append(self.group_start[1:] - 1, n - 1)
        self.d = np.bincount(self.group, weights=dead.astype(float), minlength=n_groups)
        d_int = np.bincount(self.group[dead], minlength=n_groups).astype(np.int64)
        # segments: (censored part, dead part) of each group, empty ones left out; in
        # sorted order a group's censored segment comes before its dead segment
        size = self.group_end - self.group_start + 1
        n_cens = size - d_int
        seg_new = new_group.copy()
        dead_start = (self.group_start + n_cens)[(d_int > 0) & (n_cens > 0)]
        seg_new[dead_start] = True
        self.seg_start = np.flatnonzero(seg_new)
        n_seg = self.seg_start.size
        self.seg_len = np.diff(np.append(self.seg_start, n))
        self.seg_group = self.group[self.seg_start]
        self.seg_is_dead = dead[self.seg_start]
        self.dead_seg = np.flatnonzero(self.seg_is_dead)  # one per death group, in order
        self.death_groups = self.seg_group[self.dead_seg]
        # strata at segment level: first and last segment of each segment's stratum
        seg_strata = self.strata[self.seg_start]
        new_s = np.ones(n_seg, dtype=bool)
        new_s[1:] = seg_strata[1:] != seg_strata[:-1]
        self.single_stratum = not new_s[1:].any()
        sid = np.cumsum(new_s) - 1
        self.first_seg_of_stratum = np.flatnonzero(new_s)[sid]
        self.last_seg_of_stratum = np.flatnonzero(np.append(sid[1:] != sid[:-1], True))[sid]
        index_dtype = np.int32 if n < 2**31 - 1 else np.int64
        self._seg_indptr = np.append(self.seg_start, n).astype(index_dtype)
        self._seg_cols = np.arange(n, dtype=index_dtype)
        # death terms: one per death, grouped by death group (0..H-1), with the Efron
        # weight g = 1 - l/d that the dying subjects keep in term l (1 for Breslow)
        d_h = d_int[self.death_groups]
        self.term_death_group = np.repeat(np.arange(self.death_groups.size), d_h)
        self.term_start = np.cumsum(d_h) - d_h  # first term of each death group
        ell = np.arange(int(d_h.sum())) - np.repeat(self.term_start, d_h)
        d_term = np.repeat(d_h, d_h)
        self.keep = (d_term - ell) / d_term if self.ties == "efron" else np.ones(ell.size)
        self._segments_ready = True

    def linear_predictor(self, beta: np.ndarray) -> np.ndarray:
        """``X beta`` for the centred, sorted X. einsum rather than BLAS gemv: a threaded
        gemv on an n x p matrix with small p can stall for milliseconds on a busy machine."""
        if not self.X.shape[1]:
            return np.zeros(self.n)
        return np.einsum("ij,j->i", self.X, np.asarray(beta, dtype=float))

    def column_sd(self) -> np.ndarray:
        """Standard deviation of each covariate (population, as ``X.std(axis=0)``)."""
        if self._sd is None:  # X is centred at its column means: sd = sqrt(mean(x^2))
            ss = np.einsum("ij,ij->i", self._columns, self._columns)
            self._sd = np.sqrt(ss / max(self.n, 1))
        return self._sd

    # ---- helpers on segment-level arrays --------------------------------------------------

    def _earlier_sum(self, per_seg: np.ndarray) -> np.ndarray:
        """Per segment: sum of ``per_seg`` over earlier segments of its stratum (larger
        times, or the censored part of the same group)."""
        excl = np.zeros_like(per_seg)
        np.cumsum(per_seg[:-1], axis=0, out=excl[1:])
        if not self.single_stratum:
            excl = excl - excl[self.first_seg_of_stratum]
        return excl

    def _later_sum(self, per_seg: np.ndarray) -> np.ndarray:
        """Per segment: sum of ``per_seg`` over later segments of its stratum."""
        after = np.zeros_like(per_seg)
        np.cumsum(per_seg[:0:-1], axis=0, out=after[-2::-1])
        if not self.single_stratum:
            after = after - after[self.last_seg_of_stratum]
        return after

    def _segment_sums(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per segment: sum of r_i and of r_i x_i (one sparse product, no n x p temporary)."""
        n_seg = self.seg_start.size
        ind = sp.csr_matrix((r, self._seg_cols, self._seg_indptr), shape=(n_seg, self.n))
        return np.add.reduceat(r, self.seg_start), np.asarray(ind @ self.X)

    def _risk_pieces(self, r: np.ndarray) -> dict:
        """Risk-set sums at each death group h, split into the part that is not dying at h
        (``S0r``, ``S1r``: earlier groups plus the censored rows of h) and the deaths of h
        (``D0``, ``D1``); ``S = Sr + D`` without any cancelling subtraction."""
        seg0, seg1 = self._segment_sums(r)
        ds = self.dead_seg
        return {"S0r": self._earlier_sum(seg0)[ds], "S1r": self._earlier_sum(seg1)[ds],
                "D0": seg0[ds], "D1": seg1[ds]}

    def _row_weights(self, w: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Per row: sum over the death terms whose risk set holds the row of the term weight.

        A row of group k gets ``sum_{h later than k} w_h`` plus, from its own group, ``w_k``
        when censored or ``u_k`` when it died there (``w``, ``u`` per death group: H values,
        or H x q for q weights at once).
        """
        wS = np.zeros((self.seg_start.size,) + w.shape[1:])
        wS[self.dead_seg] = w
        seg = self._later_sum(wS)
        seg[self.dead_seg] += u
        return np.repeat(seg, self.seg_len, axis=0)

    # ---- derivatives --------------------------------------------------------------------

    @property
    def columns(self) -> np.ndarray:
        """``X.T``, contiguous p x n (the kernel's column sums)."""
        return self._columns

    def fast_derivatives(self, beta: np.ndarray, *, need_info: bool = True) -> dict:
        """``loglik``, ``score`` and ``info`` at ``beta`` from the compiled one-pass kernel
        (:mod:`pathomics_desktop.stats.cox_kernel`; the same sums as :meth:`derivatives`)."""
        from pathomics_desktop.stats.cox_kernel import efron_kernel

        linear_predictor, kernel = efron_kernel()
        with np.errstate(all="ignore"):
            eta = linear_predictor(self.columns, np.asarray(beta, dtype=float))
            dead_eta, a_terms, score, info = kernel(self.columns, eta, np.exp(eta), self.group_start,
                                                    self.dead_start, self.strata, self.ties == "efron", need_info)
            loglik = dead_eta - np.log(a_terms).sum()
        out = {"loglik": float(loglik), "score": score}
        if need_info:
            out["info"] = info
        return out

    def derivatives(self, beta: np.ndarray, *, offset: np.ndarray | None = None,
                    need_info: bool = True, zph_g: np.ndarray | None = None) -> dict:
        """Log partial likelihood, score and information at ``beta`` (centred X).

        Diverging coefficients can underflow a risk-set sum to 0; the resulting inf/NaN
        log-likelihood is caught by the Newton-Raphson step control, so numpy's warnings
        are silenced here.
        """
        with np.errstate(all="ignore"):
            return self._derivatives(beta, offset=offset, need_info=need_info, zph_g=zph_g)

    def _derivatives(self, beta: np.ndarray, *, offset: np.ndarray | None = None,
                     need_info: bool = True, zph_g: np.ndarray | None = None) -> dict:
        """Per death term k of group h with Efron weight ``g_k = 1 - l/d_h``:
        ``a_k = S0r_h + g_k D0_h`` and ``m_k = (S1r_h + g_k D1_h) / a_k``. With per-group
        ``w = sum 1/a``, ``u = sum g/a``: ``sum_k m_k = S1r' w + D1' u`` and
        ``sum_k m_k m_k' = S1r' diag(P) S1r + S1r' diag(Q) D1 + D1' diag(Q) S1r +
        D1' diag(R) D1`` with ``P = sum 1/a^2``, ``Q = sum g/a^2``, ``R = sum g^2/a^2``;
        ``sum_k S2_k / a_k = X' diag(c) X`` with c from :meth:`_row_weights`.
        """
        self._ensure_segments()
        X = self.X
        eta = self.linear_predictor(beta)
        if offset is not None:
            eta = eta + offset
        shift = eta.max() if eta.size else 0.0
        r = np.exp(eta - shift)
        pieces = self._risk_pieces(r)
        S1r, D1 = pieces["S1r"], pieces["D1"]
        th, gk = self.term_death_group, self.keep
        H = self.death_groups.size
        a = pieces["S0r"][th] + gk * pieces["D0"][th]
        inv_a = 1.0 / a
        loglik = float((eta[self.dead_rows] - shift).sum() - np.log(a).sum())
        w = np.bincount(th, weights=inv_a, minlength=H)
        u = np.bincount(th, weights=gk * inv_a, minlength=H)
        U = self.sum_dead_x - (S1r.T @ w + D1.T @ u)
        out = {"loglik": loglik, "score": U, "eta": eta, "r": r, "a": a, "w": w, "u": u,
               **pieces}
        if need_info:
            inv_a2 = inv_a * inv_a
            P = np.bincount(th, weights=inv_a2, minlength=H)
            Q = np.bincount(th, weights=gk * inv_a2, minlength=H)
            R = np.bincount(th, weights=gk * gk * inv_a2, minlength=H)

            def second(scale: np.ndarray | None) -> np.ndarray:
                """sum_k s_h [S2_k / a_k - m_k m_k'] for a per-death-group scale s."""
                ws, us = (w, u) if scale is None else (w * scale, u * scale)
                Ps, Qs, Rs = (P, Q, R) if scale is None else (P * scale, Q * scale, R * scale)
                c = r * self._row_weights(ws, us)
                cross = S1r.T @ (Qs[:, None] * D1)
                mm = S1r.T @ (Ps[:, None] * S1r) + cross + cross.T + D1.T @ (Rs[:, None] * D1)
                if scale is None:  # c >= 0: X' diag(c) X = Y'Y with Y = sqrt(c) X (BLAS syrk)
                    Y = X * np.sqrt(c)[:, None]
                    return Y.T @ Y - mm
                return (X * c[:, None]).T @ X - mm

            out["info"] = second(None)
            if zph_g is not None:
                # time-transformed covariate x*g(t): the same sums weighted by g(t_h)
                zg = zph_g[self.death_groups]
                out["zph_info_bg"] = second(zg)
                out["zph_info_gg"] = second(zg * zg)
                dead_g = zph_g[self.group[self.dead_rows]]
                out["zph_u"] = (X[self.dead_rows] * dead_g[:, None]).sum(0) - (
                    S1r.T @ (zg * w) + D1.T @ (zg * u))
        return out

    def score_residuals(self, beta: np.ndarray, deriv: dict | None = None) -> np.ndarray:
        """Score residuals L_i = d_i (x_i - mean_t) - r_i sum_t (x_i - m_l) / a_l (sorted order).

        For Efron ties a subject dying at t takes the l-th term with weight (1 - l/d_t)
        and its own event is compared with the average of the m_l of its tied group.
        """
        dv = deriv if deriv is not None and "a" in deriv else self.derivatives(beta)
        X, r, a = self.X, dv["r"], dv["a"]
        th, gk = self.term_death_group, self.keep
        m = (dv["S1r"][th] + gk[:, None] * dv["D1"][th]) / a[:, None]
        inv_a = 1.0 / a
        # terms of a death group are contiguous: per-group sums with reduceat
        h1 = np.add.reduceat(m * inv_a[:, None], self.term_start, axis=0)
        h1u = np.add.reduceat(m * (gk * inv_a)[:, None], self.term_start, axis=0)
        mean_m = np.add.reduceat(m, self.term_start, axis=0) / self.d[self.death_groups][:, None]
        H0 = self._row_weights(dv["w"], dv["u"])
        H1 = self._row_weights(h1, h1u)  # the same bookkeeping for the p-vector weights m/a
        resid = -r[:, None] * (X * H0[:, None] - H1)
        dead = self.dead_rows
        didx = np.searchsorted(self.death_groups, self.group[dead])
        resid[dead] += X[dead] - mean_m[didx]
        return resid

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Put per-row values computed in sorted order back in the input order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out


def scaled_cross_product(Xc: np.ndarray) -> np.ndarray:
    """``D^-1 Xc' Xc D^-1`` with D the column norms of the centred design (1 for a zero column)."""
    scale = np.sqrt(np.einsum("ij,ij->j", Xc, Xc))
    scale[scale == 0] = 1.0
    return (Xc.T @ Xc) / np.outer(scale, scale)


def numerical_rank(gram: np.ndarray) -> int:
    """Rank of a scaled cross-product: eigenvalues above 1e-10 times the largest."""
    eig = np.linalg.eigvalsh(gram)
    return int(np.sum(eig > 1e-10 * max(eig.max(initial=0.0), 1e-300)))


def _design_rank(Xc: np.ndarray) -> int:
    """Numerical rank of a centred design from its scaled cross-product (cheap for large n)."""
    return numerical_rank(scaled_cross_product(Xc))


def newton_raphson(data: CoxData, *, init: np.ndarray | None = None, max_iter: int = 50,
                   eps: float = 1e-10, penalty=None, names: Sequence[str] = (),
                   init_deriv: dict | None = None, polish: bool = True, step_tol: float = 1e-5,
                   decrement_tol: float | None = None) -> tuple:
    """Maximise the (optionally penalised) partial likelihood; returns (beta, deriv, iters).

    Converged when the relative log-likelihood change is <= ``eps`` and the step <= ``step_tol``
    (1 + max|beta|); then ``polish`` takes one more Newton step (beta to ~1e-10 becomes
    ~1e-20; the log-likelihood, flat at the optimum, moves by ~1e-10 at most), unless that
    step is already <= 1e-12 (1 + max|beta|).

    ``decrement_tol`` (for a log-likelihood alone, no penalty): also converged, without
    evaluating the next point, once the Newton step s = I^-1 U is <= ``step_tol`` (1 + max|beta|)
    and the Newton decrement U's <= ``decrement_tol``; then beta + s is returned with the
    quadratic model's maximum ``loglik + U's / 2`` as its log-likelihood (off by O(|s|^3) of
    the third derivative; the maximum is ``loglik + U's/2 + O(|s|^3)``; Boyd & Vandenberghe
    2004, 9.5), and ``deriv``'s score and information are those at beta.

    ``penalty(beta) -> (value, gradient, hessian)`` is subtracted from the log-likelihood.
    Raises UserError on non-convergence or diverging coefficients (monotone likelihood).
    """
    p = data.n_columns
    beta = np.zeros(p) if init is None else np.asarray(init, float).copy()

    def evaluate(b):
        dv = data.fast_derivatives(b)
        if penalty is not None:
            pv, pg, ph = penalty(b)
            dv["ploglik"] = dv["loglik"] - pv
            dv["pscore"] = dv["score"] - pg
            dv["pinfo"] = dv["info"] + ph
        else:
            dv["ploglik"], dv["pscore"], dv["pinfo"] = dv["loglik"], dv["score"], dv["info"]
        return dv

    if init_deriv is not None and penalty is None and not np.any(beta):
        dv = dict(init_deriv)
        dv["ploglik"], dv["pscore"], dv["pinfo"] = dv["loglik"], dv["score"], dv["info"]
    else:
        dv = evaluate(beta)
    converged = False
    iters = 0
    sd = data.column_sd()

    def diverging(b) -> UserError:
        return _diverging_error(b, sd, names)

    for iters in range(1, max_iter + 1):
        try:
            step = _solve(dv["pinfo"], dv["pscore"])
        except np.linalg.LinAlgError:
            if iters > 1:
                raise diverging(beta) from None
            raise UserError(_singular_message(names)) from None
        if decrement_tol is not None and penalty is None:
            decrement = float(step @ dv["score"])
            if decrement <= decrement_tol and _max_abs(step) <= step_tol * (
                    1.0 + _max_abs(beta)):
                beta = beta + step
                dv = dict(dv, loglik=dv["loglik"] + decrement / 2.0)
                dv["ploglik"] = dv["loglik"]
                converged = True
                break
        new_beta = beta + step
        new_dv = evaluate(new_beta)
        halvings = 0
        while (not math.isfinite(new_dv["ploglik"]) or new_dv["ploglik"] < dv["ploglik"] - 1e-12 *
               abs(dv["ploglik"])) and halvings < 30:
            new_beta = (new_beta + beta) / 2.0
            new_dv = evaluate(new_beta)
            halvings += 1
        change = abs(new_dv["ploglik"] - dv["ploglik"])
        beta, dv = new_beta, new_dv
        if change <= eps * max(abs(dv["ploglik"]), 1.0) and _max_abs(step) <= step_tol * (
                1.0 + _max_abs(beta)):
            converged = True
            if not polish or _max_abs(step) <= 1e-9 * (1.0 + _max_abs(beta)):
                break  # the next step would be ~1e-18 (quadratic convergence): nothing to gain
            # one more exact Newton step for full precision (cheap, quadratic convergence)
            try:
                step = _solve(dv["pinfo"], dv["pscore"])
            except np.linalg.LinAlgError:
                raise diverging(beta) from None
            if _max_abs(step) <= 1e-12 * (1.0 + _max_abs(beta)):
                break  # beta is already the optimum to 1e-12, with its own derivatives
            cand = evaluate(beta + step)
            if math.isfinite(cand["ploglik"]) and cand["ploglik"] >= dv["ploglik"] - 1e-12 * abs(dv["ploglik"]):
                beta, dv = beta + step, cand
            break
    if not converged or np.any(np.abs(beta) * sd > MAX_SCALED_COEF):
        raise diverging(beta)
    return beta, dv, iters


def _max_abs(values: np.ndarray) -> float:
    """max |v| (0 for none; NaN if any is NaN, as numpy's): for Newton-Raphson's few
    coefficients, faster in Python than two numpy calls."""
    out = 0.0
    for v in values.tolist():
        a = abs(v)
        if a != a:
            return a
        if a > out:
            out = a
    return out


#: the Newton decrement U'I^-1 U under which a log-likelihood-only fit stops at the quadratic
#: model's maximum (the step is then about sqrt(1e-4 / I) per direction and the model's error
#: O(|step|^3); on the forest benchmark's 116 interaction tests, p within 2e-8 relative of the
#: fully converged fits)
LOGLIK_DECREMENT_TOL = 1e-4
#: a coefficient above this many log-HR units per covariate SD (an HR of e^15 per SD) is taken
#: as diverging (monotone likelihood)
MAX_SCALED_COEF = 15.0
#: a standard error above this many covariate SDs' worth of log-HR (an HR interval of
#: exp(+-1960) per SD) means the likelihood is flat at the point reached: not identified
MAX_SCALED_SE = 1e3


def _diverging_error(beta: np.ndarray, sd: np.ndarray, names: Sequence[str]) -> UserError:
    scaled = np.abs(beta) * sd
    worst = [names[i] for i in np.argsort(-scaled)[:3] if scaled[i] > 5] if len(names) else []
    hint = f" (coefficients diverging for: {', '.join(worst)})" if worst else ""
    return UserError("the Cox model did not converge" + hint + ": the events are "
                     "perfectly separated by a covariate (monotone likelihood) or there "
                     "are too few events")


def _check_identified(beta: np.ndarray, var: np.ndarray, sd: np.ndarray, names: Sequence[str]) -> None:
    """UserError when a coefficient's SE exceeds :data:`MAX_SCALED_SE` covariate SDs: Newton-
    Raphson stopped on the flat tail of a monotone likelihood (R's coxph warns "coefficient may
    be infinite" there), where the step test alone can stop short of |beta| sd > 15."""
    se = np.sqrt(np.abs(np.diag(var)))
    if np.any(~np.isfinite(se)) or np.any(se * sd > MAX_SCALED_SE):
        raise _diverging_error(beta, sd, names)


def _general_quadratic(b: np.ndarray, var: np.ndarray, toler: float = 1e-9) -> tuple[float, int]:
    """b' V^- b and df = rank(V) with R's generalised Cholesky g-inverse (``coxph.wtest``).

    V = L D L' without pivoting; a pivot below ``toler`` times the largest diagonal is set
    to zero (that direction dropped), so a rank-deficient robust variance gives the same
    statistic as R.
    """
    k = b.size
    A = np.array(var, dtype=float)
    eps = toler * max(np.max(np.abs(np.diag(A))), 1e-300)
    try:  # full rank (the usual case): the pivots are the squared diagonal of the Cholesky factor
        chol = np.linalg.cholesky(A)
        if np.all(np.diag(chol) ** 2 >= eps):
            y = np.linalg.solve(chol, b)
            return float(y @ y), k
    except np.linalg.LinAlgError:
        pass
    L = np.eye(k)
    D = np.zeros(k)
    for i in range(k):
        D[i] = A[i, i] - np.sum(L[i, :i] ** 2 * D[:i])
        if D[i] < eps:
            D[i] = 0.0
            continue
        for j in range(i + 1, k):
            L[j, i] = (A[j, i] - np.sum(L[j, :i] * L[i, :i] * D[:i])) / D[i]
    y = np.linalg.solve(L, b)
    nz = D > 0
    return float(np.sum(y[nz] ** 2 / D[nz])), int(nz.sum())


def _solve(info: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``info^-1 score`` by Cholesky (LinAlgError when info is not positive definite)."""
    if info.size == 0:
        return np.zeros(0)
    if info.size == 1:  # one covariate: the same test and quotient without LAPACK's overhead
        if not info[0, 0] > 0:
            raise np.linalg.LinAlgError("information not positive definite")
        return score / info[0, 0]
    from pathomics_desktop.stats.cox_kernel import cholesky_solve

    ok, step = cholesky_solve()(np.asarray(info, dtype=float), np.asarray(score, dtype=float))
    if not ok:
        raise np.linalg.LinAlgError("information not positive definite")
    return step


def _singular_message(names: Sequence[str]) -> str:
    listed = ", ".join(names) if names else "the covariates"
    return (f"the Cox information matrix is singular: {listed} are collinear or a level has "
            "no events")


# --------------------------------------------------------------------------------------
# fitted model
# --------------------------------------------------------------------------------------


def _chisq_test(stat: float, df: int) -> dict:
    stat = float(stat)
    return {"chisq": stat, "df": int(df), "p": chi2_sf(stat, df) if df > 0 else None}


@dataclass
class CoxFit:
    """A fitted Cox model (all arrays in the caller's row order unless stated)."""

    names: list[str]
    coef: np.ndarray
    var: np.ndarray  #: variance used for SE/CI (robust when clustered)
    naive_var: np.ndarray
    loglik_null: float
    loglik: float
    n: int
    events: int
    ties: str
    iterations: int
    wald: dict
    lr: dict
    score: dict
    linear_predictor: np.ndarray
    terms: dict[str, list[int]] = field(default_factory=dict)
    robust: bool = False
    data: CoxData | None = field(default=None, repr=False)
    robust_score: dict | None = None
    dropped_rows: int = 0
    _concordance: float | None = field(default=None, repr=False)

    @property
    def concordance(self) -> float:
        """Harrell's C of the linear predictor, pairs within strata
        (:func:`pathomics_desktop.stats.concordance.concordance_counts`), computed on first
        use (O(n log n), the slowest part of a large fit) and then kept."""
        if self._concordance is None:
            if self.data is None:
                raise UserError("the Cox fit has no data for its concordance")
            data = self.data
            eta = np.asarray(self.linear_predictor)[data.order]
            counts = concordance_counts(data.time, data.event, eta, strata=data.strata)
            self._concordance = c_from_counts(counts)
        return self._concordance

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.var))

    @property
    def naive_se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.naive_var))

    def term_tests(self) -> dict[str, dict]:
        """Wald test of each term (all dummies of a categorical covariate jointly):
        ``chisq = b_T' V_TT^-1 b_T`` on len(T) df."""
        out = {}
        for term, cols in self.terms.items():
            b = self.coef[cols]
            stat, df = _general_quadratic(b, self.var[np.ix_(cols, cols)])
            out[term] = _chisq_test(stat, df)
        return out

    def table(self) -> list[dict]:
        """Rows term, coef, se, hr, hr_lower, hr_upper, z, p (se robust when clustered)."""
        return coefficient_table(self.names, self.coef, self.se)


@dataclass
class CoxModelResult(StatResult):
    """A fitted Cox model as reported: the fit (:class:`CoxFit`, or a
    :class:`~pathomics_desktop.stats.frailty.FrailtyFit` for a center frailty model), the
    Harrell's C of its linear predictor and the proportional-hazards test
    (:func:`cox_zph`; None for frailty models)."""

    fit: "CoxFit | FrailtyFit"
    concordance: float
    ph_test: dict | None = None

    @property
    def frailty_variance(self) -> float | None:
        """The variance of the random center effect (frailty models only)."""
        return getattr(self.fit, "variance", None)

    def to_dict(self) -> dict:
        """``{"n", "events", "terms": [{COX_TERM_KEYS}], "loglik", "concordance", "frailty":
        {"variance"} | None, "ph_test"}`` (``pathomics analyze cox --json``)."""
        variance = self.frailty_variance
        return {"n": self.fit.n, "events": self.fit.events,
                "terms": [{k: row[k] for k in COX_TERM_KEYS} for row in self.fit.table()],
                "loglik": self.fit.loglik, "concordance": self.concordance,
                "frailty": None if variance is None else {"variance": variance},
                "ph_test": self.ph_test}


def coefficient_table(names: Sequence[str], coef: np.ndarray, se: np.ndarray) -> list[dict]:
    """Rows term, coef, se, HR = exp(coef) with its Wald 95% CI exp(coef -/+ 1.96 se),
    z = coef / se and the two-sided normal p."""
    rows = []
    for name, b, s in zip(names, coef, se):
        z = b / s
        rows.append({"term": name, "coef": float(b), "se": float(s), "hr": float(np.exp(b)),
                     "hr_lower": float(np.exp(b - Z975 * s)), "hr_upper": float(np.exp(b + Z975 * s)),
                     "z": float(z), "p": normal_two_sided_p(z)})
    return rows


def _cox_data(time, event, X, names, strata, ties: str, presorted: bool,
              design_checked: bool = False) -> tuple[CoxData, list[str], int]:
    """Checked, sorted data of a Cox model: (data, column names, events). UserError for no
    events, no or constant covariates, fewer events than columns, or a singular design
    (``design_checked``: the caller has shown that the columns vary and are linearly
    independent, as the forest's interaction models do; those two checks are skipped)."""
    t = as_time_array(time) if presorted else timefix(as_time_array(time))  # R's timefix = TRUE
    e = as_event_array(event)
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    n, p = X.shape
    names = list(names) if names is not None else [f"x{i + 1}" for i in range(p)]
    if not np.isfinite(X).all():
        raise UserError("covariates have missing or non-numeric values")
    events = int(np.count_nonzero(e))
    if events == 0:
        raise UserError("the Cox model needs events; there are none in the data")
    if p == 0:
        raise UserError("the Cox model needs at least one covariate")
    if events < p:
        raise UserError(f"too few events ({events}) for {p} covariate columns")
    s_codes = None
    if strata is not None:
        _, s_codes = np.unique(np.asarray(strata, dtype=str), return_inverse=True)
    data = CoxData(t, e, X, s_codes, ties, presorted=presorted)
    if not design_checked:
        # a column is constant iff its centred copy is (x - m rounds alike for equal x only)
        const = [names[j] for j in np.flatnonzero(np.ptp(data.columns, axis=1) == 0)]
        if const:
            raise UserError(f"covariate {', '.join(const)} is constant (one value only)")
        if p > 1 and _design_rank(data.X) < p:  # one non-constant column has rank 1
            raise UserError(_singular_message(names))
    return data, names, events


@dataclass
class CoxEstimate:
    """The maximum partial likelihood estimate alone (no null-model tests, no residuals): for
    callers that fit many models and read only coefficients, their model-based variance and
    the log-likelihood, as a forest plot does (:func:`fit_cox_estimate`)."""

    names: list[str]
    coef: np.ndarray
    var: np.ndarray
    loglik: float
    n: int
    events: int
    iterations: int

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.var))

    def table(self) -> list[dict]:
        """Rows as :meth:`CoxFit.table`."""
        return coefficient_table(self.names, self.coef, self.se)


def fit_cox_estimate(time: Sequence[float], event: Sequence, X: np.ndarray, *,
                     names: Sequence[str] | None = None, ties: str = "efron", presorted: bool = False,
                     init: np.ndarray | None = None, loglik_only: bool = False,
                     design_checked: bool = False) -> CoxEstimate:
    """The coefficients, variance ``I(b)^-1`` and log-likelihood of :func:`fit_cox_arrays` (the
    same checks and Newton-Raphson), without the null model: Newton-Raphson may start from
    ``init`` (a warm start; the optimum is the same to ~1e-10).

    ``loglik_only``: for a likelihood-ratio statistic. Newton-Raphson stops once a step is
    <= 1e-3 (1 + max|beta|), without the polishing step: after such a step (quadratic
    convergence) beta is within ~1e-6 of the optimum, and the log-likelihood, quadratic in
    that error, within ~1e-9 of its maximum; or as soon as the next step is that small and
    its Newton decrement U'I^-1 U <= :data:`LOGLIK_DECREMENT_TOL`, with the quadratic model's
    maximum (:func:`newton_raphson`). The coefficients are then not for reporting.

    ``design_checked``: see :func:`_cox_data`."""
    data, names, events = _cox_data(time, event, X, names, None, ties, presorted, design_checked)
    return _estimate(data, names, events, init, loglik_only)


def fit_cox_nested(time: Sequence[float], event: Sequence, X: np.ndarray, n_reduced: int, *,
                   names: Sequence[str], ties: str = "efron", presorted: bool = False,
                   init: np.ndarray | None = None,
                   design_checked: bool = False) -> tuple[CoxEstimate, CoxEstimate]:
    """For a likelihood-ratio test of nested models: the ``loglik_only`` estimates (see
    :func:`fit_cox_estimate`) of the model on the first ``n_reduced`` columns of X, started at
    ``init``, and of the model on all of them, started at the reduced estimate (zeros for the
    added columns); one sorted data set for both (:meth:`CoxData.select`)."""
    data, names, events = _cox_data(time, event, X, names, None, ties, presorted, design_checked)
    reduced = _estimate(data.select(range(n_reduced)), names[:n_reduced], events, init, loglik_only=True)
    start = np.concatenate([reduced.coef, np.zeros(len(names) - n_reduced)])
    return reduced, _estimate(data, names, events, start, loglik_only=True)


def _estimate(data, names: list[str], events: int, init, loglik_only: bool = False) -> CoxEstimate:
    beta, dv, iters = newton_raphson(data, names=names, init=init, polish=not loglik_only,
                                     step_tol=1e-3 if loglik_only else 1e-5,
                                     decrement_tol=LOGLIK_DECREMENT_TOL if loglik_only else None)
    try:
        var = np.linalg.inv(dv["info"])
    except np.linalg.LinAlgError:
        raise UserError(_singular_message(names)) from None
    _check_identified(beta, var, data.column_sd(), names)
    return CoxEstimate(names, beta, var, dv["loglik"], data.n, events, iters)


class StratumSlopes:
    """One covariate with its own coefficient in each stratum: the Cox model stratified by s
    with the covariates ``x 1(stratum = s)``. Its partial likelihood is the product of the
    strata's own, so coefficient s, its SE (the information is diagonal), the divergence and
    identification tests (x's SD within s) are those of the model fitted on stratum s alone:
    all strata in one Newton-Raphson, each derivative one O(n) pass
    (:func:`~pathomics_desktop.stats.cox_kernel.stratum_slopes_kernel`), where the general
    kernel on the k-column design takes O(n k^2).

    Rows presorted: by stratum (codes 0..k-1, each present), then as
    :func:`descending_time_order` within each stratum."""

    def __init__(self, time: np.ndarray, event: np.ndarray, x: np.ndarray, strata: np.ndarray,
                 ties: str = "efron"):
        if ties not in TIES:
            raise UserError(f"ties must be one of {TIES}, got {ties!r}")
        self.n = time.size
        self.ties = ties
        self.event = np.asarray(event).astype(bool)
        self.strata = np.asarray(strata, np.int64)
        counts = np.bincount(self.strata)
        self.n_strata = counts.size
        self.stratum_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        x = np.asarray(x, dtype=float)
        # centred within each stratum, as each stratum's own fit centres it
        self.x = x - (np.add.reduceat(x, self.stratum_start) / counts)[self.strata]
        self._sd = np.sqrt(np.add.reduceat(self.x * self.x, self.stratum_start) / counts)
        _, self.group_start, self.dead_start = tied_groups(time, self.event, self.strata)

    @property
    def n_columns(self) -> int:
        return self.n_strata

    def column_sd(self) -> np.ndarray:
        """The SD of x within each stratum (population)."""
        return self._sd

    def fast_derivatives(self, beta: np.ndarray) -> dict:
        """``loglik``, ``score`` and the diagonal ``info`` at ``beta`` (one per stratum)."""
        from pathomics_desktop.stats.cox_kernel import stratum_slopes_kernel

        with np.errstate(all="ignore"):
            eta = np.asarray(beta, dtype=float)[self.strata] * self.x
            eta -= np.maximum.reduceat(eta, self.stratum_start)[self.strata]  # r <= 1 in each stratum
            dead_eta, a_terms, score, info = stratum_slopes_kernel()(
                self.x, eta, np.exp(eta), self.group_start, self.dead_start, self.strata, self.n_strata,
                self.ties == "efron")
            loglik = dead_eta - np.log(a_terms).sum()
        return {"loglik": float(loglik), "score": score, "info": np.diag(info)}


def fit_cox_stratum_slopes(time: np.ndarray, event: np.ndarray, x: np.ndarray, strata: np.ndarray, *,
                           names: Sequence[str], ties: str = "efron", init: np.ndarray | None = None) -> CoxEstimate:
    """The coefficient of x within each stratum (:class:`StratumSlopes`; rows sorted as it
    says) as one :class:`CoxEstimate`: coefficient s, and the variance's diagonal entry s, are
    those of :func:`fit_cox_estimate` on stratum s alone (to ~1e-10). The caller checks that
    every stratum has events and a varying x; UserError when any stratum's fit would fail."""
    data = StratumSlopes(as_time_array(time), as_event_array(event), x, strata, ties)
    return _estimate(data, list(names), int(np.count_nonzero(data.event)), init)


def fit_cox_arrays(time: Sequence[float], event: Sequence, X: np.ndarray, *,
                   names: Sequence[str] | None = None, strata: Sequence | None = None,
                   cluster: Sequence | None = None, robust: bool = False, ties: str = "efron",
                   terms: Mapping[str, list[int]] | None = None, presorted: bool = False) -> CoxFit:
    """Fit a Cox model on numeric arrays; see the module docstring for the formulas.

    ``presorted``: the times are already merged by :func:`timefix` and the rows sorted by
    :func:`descending_time_order` (or a subset of such rows, in order), as
    :func:`~pathomics_desktop.stats.subgroups.subgroup_analysis` does once for its many fits."""
    data, names, events = _cox_data(time, event, X, names, strata, ties, presorted)
    n, p = data.X.shape
    is_robust = robust or cluster is not None
    # the vectorised derivatives (with the pieces of the score residuals) only for a robust fit
    d0 = data.derivatives(np.zeros(p)) if is_robust else data.fast_derivatives(np.zeros(p))
    beta, dv, iters = newton_raphson(data, names=names, init_deriv=d0)
    try:
        naive_var = np.linalg.inv(dv["info"])
    except np.linalg.LinAlgError:
        raise UserError(_singular_message(names)) from None
    _check_identified(beta, naive_var, data.column_sd(), names)
    try:
        score0 = float(d0["score"] @ np.linalg.solve(d0["info"], d0["score"]))
    except np.linalg.LinAlgError:
        score0 = float("nan")
    var = naive_var
    robust_score = None
    if is_robust:
        resid = data.score_residuals(beta, dv)
        dfbeta = resid @ naive_var
        if cluster is not None:
            cl = np.asarray(cluster, dtype=str)[data.order]
            _, cl_codes = np.unique(cl, return_inverse=True)
            agg = np.zeros((cl_codes.max() + 1, p))
            np.add.at(agg, cl_codes, dfbeta)
        else:
            agg = dfbeta
        var = agg.T @ agg
        # robust score test at beta = 0 (as coxph's "rscore")
        resid0 = data.score_residuals(np.zeros(p), d0)
        d0inv = np.linalg.inv(d0["info"])
        dfb0 = resid0 @ d0inv
        if cluster is not None:
            agg0 = np.zeros((cl_codes.max() + 1, p))
            np.add.at(agg0, cl_codes, dfb0)
        else:
            agg0 = dfb0
        v0 = agg0.T @ agg0
        u = d0inv @ d0["score"]
        robust_score = _chisq_test(*_general_quadratic(u, v0))
    wald_stat, wald_df = _general_quadratic(beta, var)
    eta = data.linear_predictor(beta)  # centred, as R's fit$linear.predictors
    return CoxFit(
        names=names, coef=beta, var=var, naive_var=naive_var, loglik_null=d0["loglik"],
        loglik=dv["loglik"], n=n, events=events, ties=ties, iterations=iters,
        wald=_chisq_test(wald_stat, wald_df), lr=_chisq_test(2 * (dv["loglik"] - d0["loglik"]), p),
        score=_chisq_test(score0, p), linear_predictor=data.unsort(eta),
        terms=dict(terms) if terms else {nm: [j] for j, nm in enumerate(names)},
        robust=is_robust, data=data, robust_score=robust_score)


# --------------------------------------------------------------------------------------
# proportional hazards test (cox.zph)
# --------------------------------------------------------------------------------------


def cox_zph(fit: CoxFit, transform: str = "km") -> dict:
    """Score tests of proportional hazards per term and GLOBAL, as R ``cox.zph``.

    Returns ``{term: {"chisq", "df", "p"}, ..., "GLOBAL": {...}}``.
    """
    data = fit.data
    if data is None:
        raise UserError("the Cox fit has no data for the proportional-hazards test")
    t, e = data.time, data.event
    if transform == "km":
        km_time, inverse = np.unique(t, return_inverse=True)
        d = np.bincount(inverse, weights=e.astype(float))
        n_at = np.bincount(inverse).astype(float)[::-1].cumsum()[::-1]
        surv = np.cumprod(1.0 - d / n_at)
        left = np.concatenate(([1.0], surv))[inverse]  # S(t-): KM just before t
        ttimes = 1.0 - left
    elif transform == "identity":
        ttimes = t.copy()
    elif transform == "log":
        ttimes = np.log(t)
    elif transform == "rank":
        ttimes = sps.rankdata(t)
    else:
        raise UserError(f"unknown transform {transform!r} (km, identity, log, rank)")
    gtime = ttimes - ttimes[e].mean()
    group_g = np.zeros(data.n_groups)
    group_g[data.group] = gtime
    dv = data.derivatives(fit.coef, zph_g=group_g)
    p = fit.coef.size
    imat = np.block([[dv["info"], dv["zph_info_bg"]], [dv["zph_info_bg"].T, dv["zph_info_gg"]]])
    u_full = np.concatenate([np.zeros(p), dv["zph_u"]])
    out = {}
    for term, cols in fit.terms.items():
        keep = list(range(p)) + [p + c for c in cols]
        sub = imat[np.ix_(keep, keep)]
        u = u_full[keep]
        out[term] = _chisq_test(float(u @ np.linalg.solve(sub, u)), len(cols))
    out["GLOBAL"] = _chisq_test(float(u_full @ np.linalg.solve(imat, u_full)), p)
    return out


# --------------------------------------------------------------------------------------
# data-frame front end: design matrix with categorical covariates
# --------------------------------------------------------------------------------------


def design_matrix(frame, covariates: Sequence[str], *, categorical: Sequence[str] = (),
                  reference: Mapping[str, str] | None = None
                  ) -> tuple[np.ndarray, list[str], dict[str, list[int]]]:
    """Numeric design matrix; categorical covariates become ``var=level`` dummies.

    The reference level of a categorical covariate is ``reference[var]`` or, by default, the
    first level in sorted order (R's factor default). Returns (X, column names, terms).
    """
    reference = dict(reference or {})
    columns: list[np.ndarray] = []
    names: list[str] = []
    terms: dict[str, list[int]] = {}
    for var in covariates:
        if var not in frame.columns:
            raise UserError(f"column {var!r} is not in the data")
        values = frame[var]
        n_missing = int(values.isna().sum())
        if n_missing:
            raise UserError(f"covariate {var!r} has {n_missing} missing value(s); drop those rows "
                            "first (load_analysis_table does)")
        if var in categorical or values.dtype == object or str(values.dtype) in ("category", "bool", "string"):
            labels = label_array(values.tolist())
            levels = sorted_levels(values.tolist())
            if len(levels) < 2:
                raise UserError(f"covariate {var!r} has one value only ({levels[0] if levels else 'none'})")
            ref = reference.get(var, levels[0])
            if ref not in levels:
                raise UserError(f"reference level {ref!r} of {var!r} is not among its values {levels}")
            cols = []
            for lvl in levels:
                if lvl == ref:
                    continue
                cols.append(len(names))
                names.append(f"{var}={lvl}")
                columns.append((labels == lvl).astype(float))
            terms[var] = cols
        else:
            try:
                col = values.astype(float).to_numpy()
            except (TypeError, ValueError):
                raise UserError(f"covariate {var!r} is not numeric; declare it categorical") from None
            terms[var] = [len(names)]
            names.append(var)
            columns.append(col)
    X = np.column_stack(columns) if columns else np.zeros((len(frame), 0))
    return X, names, terms


def fit_cox(frame, time: str, event: str, covariates: Sequence[str], *,
            categorical: Sequence[str] = (), reference: Mapping[str, str] | None = None,
            strata: str | Sequence[str] | None = None, cluster: str | None = None,
            ties: str = "efron", robust: bool = False) -> CoxFit:
    """Fit a Cox model from a data frame (rows with missing used values must be removed)."""
    X, names, terms = design_matrix(frame, covariates, categorical=categorical,
                                    reference=reference)
    strata_values = None
    if strata:
        cols = [strata] if isinstance(strata, str) else list(strata)
        # "a|b" labels of the stratum columns (vectorised: a row-wise join is ~100x slower)
        parts = [frame[c].astype(str) for c in cols]
        joined = parts[0].str.cat(parts[1:], sep="|") if len(parts) > 1 else parts[0]
        strata_values = joined.to_numpy()
    cluster_values = frame[cluster].to_numpy() if cluster else None
    t = as_time_array(frame[time].to_numpy(), name=f"time column {time!r}")
    e = as_event_array(frame[event].to_numpy(), name=f"event column {event!r}")
    return fit_cox_arrays(t, e, X, names=names, strata=strata_values, cluster=cluster_values,
                          robust=robust, ties=ties, terms=terms)


def univariate_screen(frame, time: str, event: str, variables: Sequence[str], *,
                      categorical: Sequence[str] = (), reference: Mapping[str, str] | None = None,
                      ties: str = "efron") -> list[dict]:
    """One Cox model per variable (study Table 2, left half).

    One row per model term (dummy) with the ``table()`` columns plus n, events, and the
    whole-variable tests ``p_term_lr`` (likelihood ratio) and ``p_term_wald`` (joint Wald);
    they equal the row p for a numeric variable up to the test used. Rows with a missing
    value of the variable are dropped for that model only; a variable that cannot be
    fitted gets one row with ``error``.
    """
    rows = []
    for var in variables:
        sub = frame[[time, event, var]].dropna()
        try:
            fit = fit_cox(sub, time, event, [var], categorical=categorical,
                          reference=reference, ties=ties)
        except UserError as exc:
            rows.append({"variable": var, "term": var, "error": str(exc), "p_term_lr": None,
                         "p_term_wald": None})
            continue
        wald = fit.term_tests()[var]["p"]
        for row in fit.table():
            rows.append({"variable": var, **row, "n": fit.n, "events": fit.events,
                         "p_term_lr": fit.lr["p"], "p_term_wald": wald})
    return rows


def multivariable_from_screen(frame, time: str, event: str, variables: Sequence[str], *,
                              threshold: float = 0.05, categorical: Sequence[str] = (),
                              reference: Mapping[str, str] | None = None,
                              forced: Sequence[str] = (), ties: str = "efron",
                              selection_test: str = "lr") -> dict:
    """Univariate screen, then a multivariable model of variables with term p < threshold.

    ``selection_test`` is "lr" (likelihood-ratio p of the variable, default) or "wald".
    ``forced`` variables (e.g. the signature) always enter. The multivariable model uses
    complete cases on the selected variables. Returns ``{"univariate": rows, "selected":
    names, "multivariable": CoxFit | None}``.
    """
    if selection_test not in ("lr", "wald"):
        raise UserError(f"selection_test must be 'lr' or 'wald', got {selection_test!r}")
    key = f"p_term_{selection_test}"
    uni = univariate_screen(frame, time, event, variables, categorical=categorical,
                            reference=reference, ties=ties)
    selected = list(dict.fromkeys(
        [r["variable"] for r in uni if r.get(key) is not None and r[key] < threshold]
        + list(forced)))
    multi = None
    if selected:
        sub = frame[[time, event, *selected]].dropna()
        multi = fit_cox(sub, time, event, selected, categorical=categorical,
                        reference=reference, ties=ties)
    return {"univariate": uni, "selected": selected, "multivariable": multi}
