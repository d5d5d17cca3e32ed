"""Mixed-effects Cox model with a Gaussian random intercept per center (shared frailty).

Model: hazard_ij(t) = h0(t) exp(x_ij' beta + u_j), u_j ~ N(0, theta), j = center.
Estimation as R ``coxph(Surv(t, e) ~ x + frailty(center, distribution = "gaussian"))``
(Therneau, Grambsch & Pankratz 2003, "Penalized survival models and frailty"):

* For fixed theta, (beta, u) maximise the penalised partial likelihood
  ``PPL = l(beta, u) - sum_j u_j^2 / (2 theta)`` by Newton-Raphson with the penalised
  information ``H = I + diag(0_p, 1/theta)``.
* theta is chosen by R's default for the Gaussian frailty, ``method = "reml"``: it solves
  ``theta = sum_j u_j^2 / (q - trace(H^-1_uu) / theta)`` (q centers), i.e. R's
  ``frailty.controlgauss`` residual ``fsum / (q - trH / theta) - theta = 0``; we solve it to
  1e-10 with Brent's method (R stops when |residual| < 3e-5 or after 10 outer iterations).
* Like R, when there are more than 5 centers the frailty block of the information is
  replaced by its diagonal (R's ``sparse`` computation), which changes H^-1 and so the
  standard errors and theta slightly; ``sparse=None`` follows R's rule.
* Reported: fixed effects with se = sqrt(diag(H^-1)) (R's ``se(coef)``), HR with 95% CI,
  Wald z and p; the random-effect variance theta; the predicted center effects u_j.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import optimize

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.cox import (
    CoxData, coefficient_table, _singular_message, design_matrix, level_label, newton_raphson)
from pathomics_desktop.stats.km import as_event_array, as_time_array, timefix


@dataclass
class FrailtyFit:
    """Fixed effects, random-effect variance and center effects of a Gaussian frailty model."""

    names: list[str]
    coef: np.ndarray
    var: np.ndarray  #: H^-1 fixed block (R's ``fit$var``)
    var2: np.ndarray  #: H^-1 I H^-1 fixed block (R's ``se2``)
    variance: float  #: theta, the variance of the random center effect
    centers: list[str]
    center_effects: np.ndarray
    loglik: float  #: partial log-likelihood at the solution (without penalty)
    penalized_loglik: float
    n: int
    events: int
    sparse: bool
    outer_iterations: int = 0
    history: list = field(default_factory=list)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.var))

    def table(self) -> list[dict]:
        return coefficient_table(self.names, self.coef, self.se)


def fit_frailty_arrays(time: Sequence[float], event: Sequence, X: np.ndarray,
                       center: Sequence, *, names: Sequence[str] | None = None,
                       ties: str = "efron", sparse: bool | None = None,
                       theta: float | None = None) -> FrailtyFit:
    """Fit the Gaussian frailty Cox model (theta by REML unless ``theta`` is given)."""
    t = timefix(as_time_array(time))
    e = as_event_array(event)
    X = np.asarray(X, float)
    if X.ndim == 1:
        X = X[:, None]
    n, p = X.shape
    names = list(names) if names is not None else [f"x{i + 1}" for i in range(p)]
    events = int(e.sum())
    if events == 0:
        raise UserError("the frailty model needs events; there are none")
    if events < p + 1:
        raise UserError(f"too few events ({events}) for {p} covariates and a frailty")
    const = [names[j] for j in range(p) if np.ptp(X[:, j]) == 0]
    if const:
        raise UserError(f"covariate {', '.join(const)} is constant (one value only)")
    labels = np.array([level_label(c) for c in center], dtype=object)
    centers, codes = np.unique(labels, return_inverse=True)
    q = centers.size
    if q < 2:
        raise UserError("the frailty model needs at least two centers; found "
                        f"{q} ({', '.join(map(str, centers))})")
    use_sparse = (q > 5) if sparse is None else bool(sparse)
    Z = np.zeros((n, q))
    Z[np.arange(n), codes] = 1.0
    data = CoxData(t, e, np.column_stack([X, Z]), None, ties)
    # CoxData centres every column; the penalty acts on u itself (centering only shifts
    # the baseline hazard), so nothing else changes.
    frail = slice(p, p + q)

    def approx_info(info: np.ndarray) -> np.ndarray:
        if not use_sparse:
            return info
        out = info.copy()
        block = out[frail, frail]
        out[frail, frail] = np.diag(np.diag(block))
        return out

    state = {"beta": np.zeros(p + q)}

    def fit_given(theta_value: float) -> dict:
        def penalty(b):
            u = b[frail]
            value = 0.5 * np.sum(u * u) / theta_value
            grad = np.zeros(p + q)
            grad[frail] = u / theta_value
            hess = np.zeros((p + q, p + q))
            hess[frail, frail] = np.eye(q) / theta_value
            return value, grad, hess

        beta, dv, iters = _penalised_newton(data, penalty, approx_info, state["beta"], names)
        state["beta"] = beta
        H = approx_info(dv["info"]) + penalty(beta)[2]
        try:
            Hinv = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            raise UserError(_singular_message(names)) from None
        u = beta[frail]
        trH = float(np.trace(Hinv[frail, frail]))
        fsum = float(np.sum(u * u))
        return {"beta": beta, "dv": dv, "Hinv": Hinv, "trH": trH, "fsum": fsum,
                "resid": fsum / (q - trH / theta_value) - theta_value,
                "penalty": penalty(beta)[0]}

    history = []
    if theta is None:
        def resid(log_theta: float) -> float:
            th = float(np.exp(log_theta))
            res = fit_given(th)
            history.append((th, res["resid"]))
            return res["resid"]

        lo = hi = 0.0  # log theta, start at theta = 1 like R
        r0 = resid(0.0)
        if r0 > 0:
            r_hi = r0
            while r_hi > 0 and hi < np.log(1e4):
                lo, hi = hi, hi + np.log(3.0)
                r_hi = resid(hi)
            bracket = r_hi <= 0
        else:
            r_lo = r0
            while r_lo < 0 and lo > np.log(1e-9):
                hi, lo = lo, lo - np.log(3.0)
                r_lo = resid(lo)
            bracket = r_lo >= 0
        if bracket:
            log_theta = optimize.brentq(resid, lo, hi, xtol=1e-12, rtol=1e-12, maxiter=200)
            theta_hat = float(np.exp(log_theta))
        else:
            theta_hat = float(np.exp(hi if r0 > 0 else lo))
            if r0 <= 0:
                theta_hat = 0.0
    else:
        if theta < 0:
            raise UserError("the frailty variance must be >= 0")
        theta_hat = float(theta)
    if theta_hat <= 1e-9:
        # no between-center variance: the ordinary Cox model, center effects zero
        theta_hat = 0.0
        beta, dv, _ = newton_raphson(CoxData(t, e, X, None, ties), names=names)
        info = dv["info"]
        var = np.linalg.inv(info)
        return FrailtyFit(names, beta, var, var, 0.0, [str(c) for c in centers], np.zeros(q),
                          dv["loglik"], dv["loglik"], n, events, use_sparse, len(history),
                          history)
    res = fit_given(theta_hat)
    beta, dv, Hinv = res["beta"], res["dv"], res["Hinv"]
    info = approx_info(dv["info"])
    var2 = Hinv @ info @ Hinv
    return FrailtyFit(
        names=names, coef=beta[:p], var=Hinv[:p, :p], var2=var2[:p, :p], variance=theta_hat,
        centers=[str(c) for c in centers], center_effects=beta[frail] - beta[frail].mean(),
        loglik=dv["loglik"], penalized_loglik=dv["loglik"] - res["penalty"], n=n,
        events=events, sparse=use_sparse, outer_iterations=len(history), history=history)


def _penalised_newton(data: CoxData, penalty, approx_info, init: np.ndarray,
                      names: Sequence[str], max_iter: int = 100, eps: float = 1e-11):
    """Newton-Raphson on the penalised partial likelihood (Hessian per ``approx_info``)."""
    beta = init.copy()

    def evaluate(b):
        dv = data.derivatives(b)
        pv, pg, ph = penalty(b)
        dv["ploglik"] = dv["loglik"] - pv
        dv["pscore"] = dv["score"] - pg
        dv["pinfo"] = dv["info"] + ph  # exact Newton steps; same solution as R's sparse steps
        return dv

    dv = evaluate(beta)
    for it in range(1, max_iter + 1):
        try:
            step = np.linalg.solve(dv["pinfo"], dv["pscore"])
        except np.linalg.LinAlgError:
            raise UserError(_singular_message(names)) from None
        new = beta + step
        new_dv = evaluate(new)
        halvings = 0
        while (not np.isfinite(new_dv["ploglik"]) or new_dv["ploglik"] < dv["ploglik"]) and halvings < 40:
            new = (new + beta) / 2
            new_dv = evaluate(new)
            halvings += 1
        change = abs(new_dv["ploglik"] - dv["ploglik"])
        beta, dv = new, new_dv
        if change <= eps * max(abs(dv["ploglik"]), 1.0) and np.max(np.abs(step)) < 1e-6:
            return beta, dv, it
    raise UserError("the frailty model did not converge: check for a covariate that "
                    "separates the events or centers without events")


def fit_frailty(frame, time: str, event: str, covariates: Sequence[str], center: str, *,
                categorical: Sequence[str] = (), reference=None, ties: str = "efron",
                sparse: bool | None = None) -> FrailtyFit:
    """Data-frame front end of :func:`fit_frailty_arrays`."""
    X, names, _ = design_matrix(frame, covariates, categorical=categorical, reference=reference)
    return fit_frailty_arrays(frame[time].to_numpy(), frame[event].to_numpy(), X,
                              frame[center].to_numpy(), names=names, ties=ties, sparse=sparse)
