"""Fixed- and random-effects meta-analysis of study estimates (e.g. log hazard ratios).

With estimates ``y_i``, within-study variances ``v_i = se_i^2`` and ``k`` studies:

* fixed effect: ``w_i = 1 / v_i``, ``mu = sum w y / sum w``, ``se = 1 / sqrt(sum w)``;
* Cochran's ``Q = sum w_i (y_i - mu_FE)^2`` with p from chi-square(k - 1);
* DerSimonian-Laird: ``tau^2 = max(0, (Q - (k - 1)) / (sum w - sum w^2 / sum w))``;
* REML: ``tau^2`` maximises the restricted likelihood, found by Fisher scoring
  ``tau^2 <- tau^2 + (y'PPy - tr P) / tr(PP)`` with ``P = W - W 1 1' W / 1'W1``,
  ``W = diag(1 / (v + tau^2))`` and truncation at 0 (as metafor ``rma(method = "REML")``);
* random effects: weights ``1 / (v_i + tau^2)``; CI ``mu +/- z se``; prediction interval
  ``mu +/- z sqrt(se^2 + tau^2)`` (metafor ``predict()``, normal quantiles);
* ``I^2 = 100 tau^2 / (tau^2 + s^2)`` with the typical within-study variance
  ``s^2 = (k - 1) sum w / ((sum w)^2 - sum w^2)`` (Higgins & Thompson 2002, metafor's definition);
  for the fixed-effect model ``I^2 = 100 max(0, (Q - (k - 1)) / Q)``.

References: DerSimonian R, Laird N (1986) Control Clin Trials 7:177-188; Viechtbauer W (2005)
J Educ Behav Stat 30:261-293; Higgins JPT, Thompson SG (2002) Stat Med 21:1539-1558.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.results import StatResult

__all__ = ["MetaResult", "meta_analysis"]


@dataclass
class MetaResult(StatResult):
    method: str
    estimate: float
    se: float
    ci_lower: float
    ci_upper: float
    tau2: float
    i2: float
    q: float
    q_p: float
    pi_lower: float
    pi_upper: float
    k: int

    def to_dict(self) -> dict:
        keys = ("estimate", "ci_lower", "ci_upper", "tau2", "i2", "q", "q_p", "pi_lower", "pi_upper")
        return {key: float(getattr(self, key)) for key in keys}


def _reml_tau2(y: np.ndarray, v: np.ndarray, start: float, tol: float = 1e-12, max_iter: int = 1000) -> float:
    tau2 = max(0.0, start)
    for _ in range(max_iter):
        w = 1.0 / (v + tau2)
        sw = w.sum()
        mu = np.dot(w, y) / sw
        res = y - mu
        py = w * res  # P y
        tr_p = sw - np.dot(w, w) / sw
        # tr(PP) = sum w^2 - 2 sum w^3 / sw + (sum w^2 / sw)^2
        s2 = np.dot(w, w)
        tr_pp = s2 - 2 * np.sum(w**3) / sw + (s2 / sw) ** 2
        step = (np.dot(py, py) - tr_p) / tr_pp
        new = tau2 + step
        # step halving keeps tau^2 non-negative (as metafor)
        while new < 0:
            step /= 2
            new = tau2 + step
            if abs(step) < tol:
                new = 0.0
                break
        if abs(new - tau2) < tol * max(1.0, tau2):
            return float(new)
        tau2 = new
    raise UserError("REML did not converge for tau^2; use --method dl")


def meta_analysis(estimate, se, *, method: str = "reml", level: float = 0.95) -> MetaResult:
    """Pool study estimates; ``method`` is ``"reml"``, ``"dl"`` or ``"fe"`` (fixed effect)."""
    y = np.asarray(estimate, dtype=float).ravel()
    s = np.asarray(se, dtype=float).ravel()
    if y.size != s.size:
        raise UserError(f"{y.size} estimates but {s.size} standard errors")
    for name, arr in (("estimate", y), ("se", s)):
        if not np.isfinite(arr).all():
            raise UserError(f"the {name} column is missing or not finite at row {int(np.flatnonzero(~np.isfinite(arr))[0])}")
    if (s <= 0).any():
        raise UserError(f"standard errors must be positive (row {int(np.flatnonzero(s <= 0)[0])} has {s[s <= 0][0]})")
    k = y.size
    if k < 2:
        raise UserError("a meta-analysis needs at least two studies")
    method = method.lower()
    if method not in ("reml", "dl", "fe"):
        raise UserError(f"unknown meta-analysis method {method!r} (use reml, dl or fe)")
    v = s**2
    w = 1.0 / v
    sw = w.sum()
    mu_fe = np.dot(w, y) / sw
    q = float(np.dot(w, (y - mu_fe) ** 2))
    q_p = float(_sps.chi2.sf(q, k - 1))
    c = sw - np.dot(w, w) / sw
    if method == "fe":
        tau2 = 0.0
    elif method == "dl":
        tau2 = max(0.0, (q - (k - 1)) / c)
    else:
        tau2 = _reml_tau2(y, v, max(0.0, (q - (k - 1)) / c))
    ws = 1.0 / (v + tau2)
    mu = float(np.dot(ws, y) / ws.sum())
    se_mu = float(1.0 / np.sqrt(ws.sum()))
    z = float(_sps.norm.ppf(0.5 + level / 2))
    if method == "fe":
        i2 = 100 * max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
        pi_se = se_mu
    else:
        s2_typ = (k - 1) * sw / (sw**2 - np.dot(w, w))
        i2 = 100 * tau2 / (tau2 + s2_typ)
        pi_se = float(np.sqrt(se_mu**2 + tau2))
    return MetaResult(
        method=method, estimate=mu, se=se_mu, ci_lower=mu - z * se_mu, ci_upper=mu + z * se_mu, tau2=float(tau2),
        i2=float(i2), q=q, q_p=q_p, pi_lower=mu - z * pi_se, pi_upper=mu + z * pi_se, k=k,
    )
