"""Mixed-effects Cox model with a Gaussian random intercept per center (shared frailty).

Model: hazard_ij(t) = h0(t) exp(x_ij' beta + u_j), u_j ~ N(0, theta), j = center.
Estimation as R ``coxph(Surv(t, e) ~ x + frailty(center, distribution = "gaussian"))``
(Therneau, Grambsch & Pankratz 2003, "Penalized survival models and frailty"), and by
default with R's own iteration and stopping rules (survival 3.5-3, ``coxph.control()``
defaults), so that the numbers equal R's ``print(fit)`` to all printed digits:

* Inner fit (R ``coxfit5_b``), theta fixed: Newton-Raphson on the penalised partial
  likelihood ``PPL = l(beta, u) - sum_j [u_j^2 / theta + log(2 pi theta)] / 2``. At every
  evaluation u is recentred to mean 0; the step solves ``H d = U`` with
  ``H = I + diag(0_p, 1/theta)``. Iteration k = 0..iter_max (20): evaluate; stop when
  ``|1 - PPL_prev / PPL_k| <= eps`` (1e-9) and not halving; if ``PPL_k < PPL_prev`` halve
  towards the previous point, else take the Newton step. The returned point is the last
  *evaluated* one (not stepped from), with H at that point.
* With more than 5 centers H's frailty block is replaced by its diagonal (R's ``sparse``
  computation) for the Newton steps *and* for the variances and trace below.
* Outer loop (R ``frailty.controlgauss``, REML): theta_1 = 1; after fit k the residual
  ``r_k = sum(u^2) / (q - trace(H^-1_uu) / theta_k) - theta_k``; theta_2 = 3 theta_1 or
  theta_1 / 3 by the sign of r_1; theta_3 = 2 theta_2, theta_2 / 2 (both r of one sign) or
  (theta_1 + theta_2) / 2;
  later thetas by inverse quadratic interpolation of (theta, r) around the newest point
  (doubling/halving while the residuals share a sign). Stop when ``|r_k| < sqrt(eps)``
  (k >= 3) or after ``outer_max`` (10) fits. Each fit starts from the earlier fit whose
  theta is closest to the new one. Reported: fit k and theta_k (R's "Variance of random
  effect"), not the next proposal.
* ``exact=True`` instead solves the REML equation to 1e-12 (Brent) with fully converged
  exact Newton fits: R's answer with tight ``coxph.control``.
* Reported: fixed effects with se = sqrt(diag(H^-1)) (R ``se(coef)``) and
  se2 = sqrt(diag(H^-1 I H^-1)); the frailty term's Wald chi-square, its df
  (``q - trace(H^-1_uu)/theta`` sparse, ``trace((H^-1_uu)^-1 (H^-1 I H^-1)_uu)`` otherwise)
  and p = P(chi2_max(df, 0.5) > chisq), as in R's printout; the per-term df and R's
  "Likelihood ratio test" (2 (loglik - loglik_init) on round(sum(df), 2) df). Centers are
  ordered as R's factor levels (numeric labels numerically). A fixed ``theta`` is R's
  ``frailty(..., theta=)``: one inner fit from zero; ``theta = 0`` is the ordinary Cox model.
  Unlike R we do not warn when an inner fit stops at ``iter_max`` (R: "Inner loop failed to
  coverge"); the output is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import optimize, stats

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.cox import (
    CoxData, coefficient_table, _general_quadratic, _singular_message, design_matrix,
    newton_raphson, sorted_levels)
from pathomics_desktop.stats.levels import label_array
from pathomics_desktop.stats.km import as_event_array, as_time_array, timefix

#: R ``coxph.control()`` defaults used by the R-compatible path
R_EPS = 1e-9
R_ITER_MAX = 20
R_OUTER_MAX = 10


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
    penalized_loglik: float  #: loglik - sum(u^2/theta + log(2 pi theta)) / 2
    n: int
    events: int
    sparse: bool
    outer_iterations: int = 0
    #: one (theta, residual, sum(u^2), trace(H^-1_uu)) row per outer fit
    history: list = field(default_factory=list)
    newton_iterations: int = 0  #: inner Newton iterations over all outer fits (R iter[2])
    frailty_chisq: float = float("nan")  #: Wald chi-square of the frailty term (R print)
    frailty_df: float = float("nan")  #: effective df of the frailty term (R ``fit$df``)
    frailty_p: float = float("nan")
    exact: bool = False  #: True: fully converged; False: R's default iteration rules
    #: effective df per term (fixed terms by name, then "frailty"), R "Degrees of freedom
    #: for terms": trace((H^-1)_jj^-1 (H^-1 I H^-1)_jj) per term block j
    term_df: dict = field(default_factory=dict)
    #: R ``fit$loglik[1]``: log-likelihood at beta = 0, u = 0 (plus the penalty's
    #: -q log(2 pi theta_start) / 2 when the frailty is not sparse, as R's coxfit5_a adds it)
    loglik_init: float = float("nan")
    lr_chisq: float = float("nan")  #: R "Likelihood ratio test" = 2 (loglik - loglik_init)
    lr_df: float = float("nan")  #: round(sum(term_df), 2), as R prints and uses it
    lr_p: float = float("nan")

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.var))

    def table(self) -> list[dict]:
        return coefficient_table(self.names, self.coef, self.se)


def fit_frailty_arrays(time: Sequence[float], event: Sequence, X: np.ndarray,
                       center: Sequence, *, names: Sequence[str] | None = None,
                       ties: str = "efron", sparse: bool | None = None,
                       theta: float | None = None, exact: bool = False,
                       terms: dict[str, list[int]] | None = None) -> FrailtyFit:
    """Fit the Gaussian frailty Cox model (theta by REML unless ``theta`` is given).

    Default: R's default computation (same output as R's ``print(fit)``); ``exact=True``:
    the fully converged REML solution. ``terms`` groups columns of X into model terms
    (e.g. the dummies of one categorical covariate) for the per-term df; default one term
    per column.
    """
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
    center = list(center)
    missing = sum(1 for c in center if c is None or (isinstance(c, (float, np.floating))
                                                      and np.isnan(c)))
    if missing:
        raise UserError(f"the center column has {missing} missing value(s); drop those rows "
                        "first")
    labels = label_array(list(center)).tolist()
    centers = np.array(sorted_levels(labels), dtype=object)  # R's order: numbers numerically
    position = {label: j for j, label in enumerate(centers)}
    codes = np.array([position[label] for label in labels], dtype=np.int64)
    q = centers.size
    if q < 2:
        raise UserError("the frailty model needs at least two centers; found "
                        f"{q} ({', '.join(map(str, centers))})")
    if theta is not None and not theta >= 0:
        raise UserError(f"the frailty variance must be >= 0, got {theta}")
    use_sparse = (q > 5) if sparse is None else bool(sparse)
    Z = np.zeros((n, q))
    Z[np.arange(n), codes] = 1.0
    # CoxData centres every column; rows of Z sum to 1, so the likelihood ignores a common
    # shift of u and centring changes nothing (R leaves 0/1 columns uncentred).
    model = _PenalisedModel(CoxData(t, e, np.column_stack([X, Z]), None, ties), p, q,
                            use_sparse, names, terms)
    common = dict(names=names, centers=[str(c) for c in centers], n=n, events=events,
                  sparse=use_sparse)
    if exact or theta == 0:
        return _fit_exact(model, theta, t, e, X, ties, common)
    return _fit_r_default(model, theta, common)


class _PenalisedModel:
    """Penalised partial likelihood of (beta, u) and R's (possibly sparse) information."""

    def __init__(self, data: CoxData, p: int, q: int, sparse: bool, names: list[str],
                 terms: dict[str, list[int]] | None = None):
        self.data, self.p, self.q, self.sparse, self.names = data, p, q, sparse, names
        self.frail = slice(p, p + q)
        self.terms = dict(terms) if terms else {name: [j] for j, name in enumerate(names)}
        self.loglik_zero = float(data.fast_derivatives(np.zeros(p + q), need_info=False)["loglik"])

    def information(self, info: np.ndarray) -> np.ndarray:
        """Observed information, with the frailty block's off-diagonals dropped if sparse."""
        if not self.sparse:
            return info
        out = info.copy()
        block = out[self.frail, self.frail]
        out[self.frail, self.frail] = np.diag(np.diag(block))
        return out

    def evaluate(self, coef: np.ndarray, theta: float) -> dict:
        """Recentre u in ``coef`` (in place, like R's pfun) and return PPL, U, H, I."""
        dv = self.data.fast_derivatives(coef)
        u = coef[self.frail]
        u -= u.mean()
        fsum = float(u @ u)
        penalty = 0.5 * (fsum / theta + self.q * np.log(2 * np.pi * theta))
        score = dv["score"].copy()
        score[self.frail] -= u / theta
        info = self.information(dv["info"])
        H = info.copy()
        H[self.frail, self.frail] += np.eye(self.q) / theta
        return {"loglik": float(dv["loglik"]), "ploglik": float(dv["loglik"]) - penalty,
                "penalty": penalty, "score": score, "info": info, "H": H, "fsum": fsum,
                "full_info": dv["info"]}

    def inverse(self, H: np.ndarray) -> np.ndarray:
        try:
            Hinv = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            raise UserError(_singular_message(self.names)) from None
        if not np.all(np.isfinite(Hinv)) or np.any(np.diag(Hinv) <= 0):
            raise UserError(_singular_message(self.names))
        return Hinv

    def solve(self, H: np.ndarray, score: np.ndarray) -> np.ndarray:
        try:
            chol = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            raise UserError(_singular_message(self.names)) from None
        return np.linalg.solve(chol.T, np.linalg.solve(chol, score))

    def r_inner_fit(self, theta: float, init: np.ndarray, eps: float = R_EPS,
                    iter_max: int = R_ITER_MAX) -> dict:
        """R ``coxfit5_b``: Newton-Raphson for fixed theta with R's stopping rule.

        Returns the last evaluated point (coef recentred), its derivatives, the number of
        iterations as R counts them and whether R's convergence test was met.
        """
        coef = np.asarray(init, float).copy()
        old = coef.copy()
        previous = 0.0  # R starts each inner fit with loglik = 0
        halving = False
        for it in range(iter_max + 1):
            ev = self.evaluate(coef, theta)
            if not np.isfinite(ev["ploglik"]):
                raise UserError("the frailty model did not converge: check for a covariate "
                                "that separates the events or centers without events")
            newlk = ev["ploglik"]
            if abs(1.0 - previous / newlk) <= eps and not halving:
                return {"coef": coef, "ev": ev, "iterations": it, "converged": True}
            if it == iter_max:
                break
            if it > 0 and newlk < previous:  # not improving: step halving
                halving = True
                coef = (old + coef) / 2.0
            else:
                halving = False
                previous = newlk
                step = self.solve(ev["H"], ev["score"])
                old = coef.copy()
                coef = coef + step
        return {"coef": coef, "ev": ev, "iterations": iter_max, "converged": False}

    def summary(self, coef: np.ndarray, ev: dict, theta: float) -> dict:
        """Variances, REML residual and the frailty row of R's printout at one fit."""
        q, frail = self.q, self.frail
        Hinv = self.inverse(ev["H"])
        var2 = Hinv @ ev["info"] @ Hinv
        trH = float(np.trace(Hinv[frail, frail]))
        u = coef[frail]
        if self.sparse:
            fvar = np.diag(Hinv)[frail]
            chisq = float(np.sum(u * u / fvar))
            df = q - trH / theta
        else:
            block = Hinv[frail, frail]
            chisq = _general_quadratic(u, block)[0]
            df = float(np.trace(np.linalg.solve(block, var2[frail, frail])))
        return {"Hinv": Hinv, "var2": var2, "trH": trH,
                "resid": ev["fsum"] / (q - trH / theta) - theta, "chisq": chisq, "df": df,
                "p": float(stats.chi2.sf(chisq, max(df, 0.5)))}

    def result(self, coef: np.ndarray, ev: dict, sm: dict, theta: float, common: dict,
               history: list, newton: int, exact: bool, theta_start: float) -> FrailtyFit:
        p, frail = self.p, self.frail
        Hinv, var2 = sm["Hinv"], sm["var2"]
        term_df = {}
        for term, cols in self.terms.items():
            idx = np.ix_(cols, cols)
            term_df[term] = float(np.trace(np.linalg.solve(Hinv[idx], var2[idx])))
        term_df["frailty"] = sm["df"]
        loglik_init = self.loglik_zero
        if not self.sparse:
            loglik_init -= 0.5 * self.q * np.log(2 * np.pi * theta_start)
        lr_chisq = -2.0 * (loglik_init - ev["loglik"])
        lr_df = round(sum(term_df.values()), 2)
        return FrailtyFit(
            term_df=term_df, loglik_init=loglik_init, lr_chisq=lr_chisq, lr_df=lr_df,
            lr_p=float(stats.chi2.sf(lr_chisq, lr_df)),
            coef=coef[:p].copy(), var=sm["Hinv"][:p, :p], var2=sm["var2"][:p, :p],
            variance=float(theta), center_effects=coef[frail].copy(), loglik=ev["loglik"],
            penalized_loglik=ev["ploglik"], outer_iterations=len(history), history=history,
            newton_iterations=newton, frailty_chisq=sm["chisq"], frailty_df=sm["df"],
            frailty_p=sm["p"], exact=exact, **common)


def _next_theta_reml(history: list, eps_outer: float) -> tuple[float, bool]:
    """R ``frailty.controlgauss`` after fit k: (next theta, done) from rows (theta, r)."""
    k = len(history)
    thetas = np.array([h[0] for h in history])
    resid = np.array([h[1] for h in history])
    if k == 1:
        return (thetas[0] * 3 if resid[0] > 0 else thetas[0] / 3), False
    if k == 2:
        if np.all(resid > 0):
            return thetas[1] * 2, False
        if np.all(resid < 0):
            return thetas[1] / 2, False
        return float(np.mean(thetas[:2])), False
    done = bool(abs(resid[-1]) < eps_outer)
    order = np.argsort(thetas, kind="stable")
    x, y = thetas[order], resid[order]
    if np.all(y > 0):
        return 2 * x.max(), done
    if np.all(y < 0):
        return 0.5 * x.min(), done
    b = int(np.flatnonzero(order == k - 1)[0])  # newest point's rank
    b = min(max(b, 1), k - 2)
    R, S = y[b] / y[b + 1], y[b] / y[b - 1]
    U = R / S
    P = S * (U * (R - U) * (x[b + 1] - x[b]) - (1 - R) * (x[b] - x[b - 1]))
    Q = (U - 1) * (R - 1) * (S - 1)
    new = x[b] + P / Q if Q != 0 else np.nan
    if not np.isfinite(new):  # (R would stop with an error here)
        new = (x[b] + x[b + 1]) / 2
    if new > x[b + 1]:
        new = (x[b] + x[b + 1]) / 2
    if new < x[b - 1]:
        new = (x[b] + x[b - 1]) / 2
    return float(new), done


def _fit_r_default(model: _PenalisedModel, theta: float | None, common: dict) -> FrailtyFit:
    """R's outer REML loop (or one fit at a fixed theta) with R's default control."""
    init = np.zeros(model.p + model.q)
    if theta is not None:  # R method "fixed": one inner fit from zero
        fit = model.r_inner_fit(float(theta), init)
        sm = model.summary(fit["coef"], fit["ev"], theta)
        history = [(float(theta), sm["resid"], fit["ev"]["fsum"], sm["trH"])]
        return model.result(fit["coef"], fit["ev"], sm, theta, common, history,
                            fit["iterations"], exact=False, theta_start=theta)
    eps_outer = np.sqrt(R_EPS)
    current = 1.0
    history: list = []
    saved: list[np.ndarray] = []
    newton = 0
    for _ in range(R_OUTER_MAX):
        fit = model.r_inner_fit(current, init)
        newton += fit["iterations"]
        sm = model.summary(fit["coef"], fit["ev"], current)
        history.append((current, sm["resid"], fit["ev"]["fsum"], sm["trH"]))
        saved.append(fit["coef"].copy())
        proposal, done = _next_theta_reml(history, eps_outer)
        if done:
            break
        # warm start: the fit whose theta is closest to the proposal (first on ties)
        fitted = np.array([h[0] for h in history])
        init = saved[int(np.argmin((fitted - proposal) ** 2))]
        last = (fit, sm, current)
        current = proposal
    else:
        fit, sm, current = last
    return model.result(fit["coef"], fit["ev"], sm, current, common, history, newton,
                        exact=False, theta_start=1.0)


def _fit_exact(model: _PenalisedModel, theta: float | None, t, e, X, ties,
               common: dict) -> FrailtyFit:
    """Fully converged REML: Brent on the residual, exact Newton inner fits."""
    state = {"coef": np.zeros(model.p + model.q)}
    history: list = []

    def fit_given(theta_value: float) -> tuple:
        coef, ev = _exact_newton(model, theta_value, state["coef"])
        state["coef"] = coef
        sm = model.summary(coef, ev, theta_value)
        history.append((theta_value, sm["resid"], ev["fsum"], sm["trH"]))
        return coef, ev, sm

    if theta is None:
        def resid(log_theta: float) -> float:
            return fit_given(float(np.exp(log_theta)))[2]["resid"]

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
            theta_hat = float(np.exp(hi)) if r0 > 0 else 0.0
    else:
        theta_hat = float(theta)
    if theta_hat <= 1e-9:
        # no between-center variance (R: a zero theta forces the frailties to 0): the
        # ordinary Cox model, center effects zero
        beta, dv, _ = newton_raphson(CoxData(t, e, X, None, ties), names=model.names)
        var = np.linalg.inv(dv["info"])
        term_df = {term: float(len(cols)) for term, cols in model.terms.items()}
        term_df["frailty"] = 0.0
        lr_chisq = 2.0 * (dv["loglik"] - model.loglik_zero)
        lr_df = round(sum(term_df.values()), 2)
        return FrailtyFit(coef=beta, var=var, var2=var, variance=0.0,
                          center_effects=np.zeros(model.q), loglik=dv["loglik"],
                          penalized_loglik=dv["loglik"], outer_iterations=len(history),
                          history=history, frailty_chisq=0.0, frailty_df=0.0,
                          frailty_p=1.0, exact=True, term_df=term_df,
                          loglik_init=model.loglik_zero, lr_chisq=lr_chisq, lr_df=lr_df,
                          lr_p=float(stats.chi2.sf(lr_chisq, lr_df)), **common)
    coef, ev, sm = fit_given(theta_hat)
    return model.result(coef, ev, sm, theta_hat, common, history, 0, exact=True,
                        theta_start=1.0 if theta is None else theta)


def _exact_newton(model: _PenalisedModel, theta: float, init: np.ndarray,
                  max_iter: int = 100, eps: float = 1e-11) -> tuple[np.ndarray, dict]:
    """Newton-Raphson with the exact information to full convergence (same solution as
    R's sparse steps, which only change the path)."""
    coef = init.copy()

    def evaluate(b):
        ev = model.evaluate(b, theta)
        if model.sparse:  # exact Newton steps need the full frailty block
            full = ev["full_info"].copy()
            full[model.frail, model.frail] += np.eye(model.q) / theta
            ev["H_exact"] = full
        else:
            ev["H_exact"] = ev["H"]
        return ev

    ev = evaluate(coef)
    for _ in range(max_iter):
        step = model.solve(ev["H_exact"], ev["score"])
        new = coef + step
        new_ev = evaluate(new)
        halvings = 0
        while (not np.isfinite(new_ev["ploglik"]) or new_ev["ploglik"] < ev["ploglik"]) \
                and halvings < 40:
            new = (new + coef) / 2
            new_ev = evaluate(new)
            halvings += 1
        change = abs(new_ev["ploglik"] - ev["ploglik"])
        coef, ev = new, new_ev
        if change <= eps * max(abs(ev["ploglik"]), 1.0) and np.max(np.abs(step)) < 1e-6:
            return coef, ev
    raise UserError("the frailty model did not converge: check for a covariate that "
                    "separates the events or centers without events")


def fit_frailty(frame, time: str, event: str, covariates: Sequence[str], center: str, *,
                categorical: Sequence[str] = (), reference=None, ties: str = "efron",
                sparse: bool | None = None, exact: bool = False) -> FrailtyFit:
    """Data-frame front end of :func:`fit_frailty_arrays`."""
    X, names, terms = design_matrix(frame, covariates, categorical=categorical,
                                    reference=reference)
    return fit_frailty_arrays(frame[time].to_numpy(), frame[event].to_numpy(), X,
                              frame[center].to_numpy(), names=names, ties=ties, sparse=sparse,
                              exact=exact, terms=terms)
