"""Evaluating a frozen signature on a set of patients, and the summary of a frozen signature.

:func:`evaluate_set` gives, for one set (training, internal, external, or one external
center) with the frozen score and cut: Harrell's C of the score (infinitesimal-jackknife 95%
CI), the Cox HR of high vs low risk (Efron ties, Wald 95% CI and p), the Kaplan-Meier median
(95% CI) of each risk group and the log-rank test. High risk means ``score > cut``.

Both results are dataclasses with the habits of :mod:`pathomics_desktop.stats.results`:
``to_dict()`` is the JSON stored in the frozen signature (``SetEvaluation``) or printed by
``pathomics signature fit --json`` (``SignatureSummary``), ``summary()`` the readable text.
``from_dict`` reads the stored JSON back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.data import clean_json
from pathomics_desktop.stats.results import StatResult


def risk_groups(score: np.ndarray, cut: float) -> np.ndarray:
    """``"high"`` where score > cut, else ``"low"``."""
    return np.where(np.asarray(score, dtype=float) > cut, "high", "low")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@dataclass
class SetEvaluation(StatResult):
    """The frozen score and cut on one set of patients (None: undefined, see ``notes``).

    ``evaluated`` is False for a set that was not evaluated at all (no patients, or no
    events): then only ``n``, ``events`` (None without patients) and ``notes`` are set.
    ``median_*`` are the Kaplan-Meier medians in the endpoint's unit (months; None when not
    reached); a risk group without patients has no median.
    """

    n: int
    events: int | None = None
    n_high: int | None = None
    n_low: int | None = None
    events_high: int | None = None
    events_low: int | None = None
    c_index: float | None = None
    c_se: float | None = None
    c_lower: float | None = None
    c_upper: float | None = None
    hr: float | None = None  #: hazard ratio high vs low risk
    hr_lower: float | None = None
    hr_upper: float | None = None
    hr_p: float | None = None
    median_high: float | None = None
    median_high_lower: float | None = None
    median_high_upper: float | None = None
    median_low: float | None = None
    median_low_lower: float | None = None
    median_low_upper: float | None = None
    logrank_chisq: float | None = None
    logrank_df: int | None = None
    logrank_p: float | None = None
    notes: list[str] = field(default_factory=list)
    evaluated: bool = True

    @classmethod
    def not_evaluated(cls, n: int, note: str, *, events: int | None = None) -> "SetEvaluation":
        return cls(n=n, events=events, notes=[note], evaluated=False)

    def _median(self, group: str) -> dict | None:
        if not getattr(self, f"n_{group}"):
            return None
        return {"median": getattr(self, f"median_{group}"), "lower": getattr(self, f"median_{group}_lower"),
                "upper": getattr(self, f"median_{group}_upper")}

    def to_dict(self) -> dict[str, Any]:
        """The set's entry in the frozen signature JSON (``sets`` and ``external_centers``)."""
        if not self.evaluated:
            out: dict[str, Any] = {"n": self.n}
            if self.events is not None:
                out["events"] = self.events
            return clean_json(out | {"notes": list(self.notes)})
        return clean_json({
            "n": self.n, "events": self.events, "n_high": self.n_high, "n_low": self.n_low,
            "events_high": self.events_high, "events_low": self.events_low,
            "c_index": None if self.c_index is None else {"c": self.c_index, "se": self.c_se,
                                                          "lower": self.c_lower, "upper": self.c_upper},
            "hr_high_vs_low": None if self.hr is None else {"hr": self.hr, "lower": self.hr_lower,
                                                           "upper": self.hr_upper, "p": self.hr_p},
            "km_median": {"high": self._median("high"), "low": self._median("low")},
            "logrank": None if self.logrank_p is None and self.logrank_chisq is None else {
                "chisq": self.logrank_chisq, "df": self.logrank_df, "p": self.logrank_p},
            "notes": list(self.notes),
        })

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SetEvaluation":
        """Read back a stored :meth:`to_dict`."""
        if "n_high" not in data:
            return cls(n=data["n"], events=data.get("events"), notes=list(data.get("notes", [])), evaluated=False)
        c = data.get("c_index") or {}
        hr = data.get("hr_high_vs_low") or {}
        lr = data.get("logrank") or {}
        km = data.get("km_median") or {}
        high, low = km.get("high") or {}, km.get("low") or {}
        return cls(n=data["n"], events=data["events"], n_high=data["n_high"], n_low=data["n_low"],
                   events_high=data["events_high"], events_low=data["events_low"],
                   c_index=c.get("c"), c_se=c.get("se"), c_lower=c.get("lower"), c_upper=c.get("upper"),
                   hr=hr.get("hr"), hr_lower=hr.get("lower"), hr_upper=hr.get("upper"), hr_p=hr.get("p"),
                   median_high=high.get("median"), median_high_lower=high.get("lower"),
                   median_high_upper=high.get("upper"), median_low=low.get("median"),
                   median_low_lower=low.get("lower"), median_low_upper=low.get("upper"),
                   logrank_chisq=lr.get("chisq"), logrank_df=lr.get("df"), logrank_p=lr.get("p"),
                   notes=list(data.get("notes", [])))

    def summary_row(self) -> dict[str, Any]:
        """The flat per-set row of :class:`SignatureSummary` (``signature fit --json``)."""
        return {"n": self.n, "events": self.events, "n_high": self.n_high, "c_index": self.c_index,
                "c_lower": self.c_lower, "c_upper": self.c_upper, "hr": self.hr, "hr_lower": self.hr_lower,
                "hr_upper": self.hr_upper, "hr_p": self.hr_p, "logrank_p": self.logrank_p,
                "median_high": self.median_high, "median_low": self.median_low, "notes": list(self.notes)}

    def summary(self) -> str:
        if not self.evaluated:
            return f"n {self.n}: " + "; ".join(self.notes)
        text = (f"n {self.n}, events {self.events}, high risk {self.n_high}; "
                f"C-index {_fmt(self.c_index, '.3f')} ({_fmt(self.c_lower, '.3f')}-{_fmt(self.c_upper, '.3f')}); "
                f"HR high/low {_fmt(self.hr, '.2f')} ({_fmt(self.hr_lower, '.2f')}-{_fmt(self.hr_upper, '.2f')}), "
                f"p {_fmt(self.hr_p, '.2g')}; log-rank p {_fmt(self.logrank_p, '.2g')}; "
                f"median high/low {_fmt(self.median_high, '.1f')}/{_fmt(self.median_low, '.1f')}")
        return text + (f" ({'; '.join(self.notes)})" if self.notes else "")


def evaluate_set(time: np.ndarray, event: np.ndarray, score: np.ndarray, cut: float) -> SetEvaluation:
    """Harrell's C (IJ CI), HR high vs low (Cox, Efron), KM medians and log-rank of one set.
    A statistic that is undefined on this set is None, with the reason in ``notes``."""
    from pathomics_desktop.stats.concordance import harrell_c
    from pathomics_desktop.stats.cox import fit_cox_arrays
    from pathomics_desktop.stats.km import kaplan_meier, logrank_test

    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=int)
    high = np.asarray(score, dtype=float) > cut
    out = SetEvaluation(n=int(t.size), events=int(e.sum()), n_high=int(high.sum()), n_low=int((~high).sum()),
                        events_high=int(e[high].sum()), events_low=int(e[~high].sum()))
    try:
        c = harrell_c(t, e, score)
        out.c_index, out.c_se, out.c_lower, out.c_upper = c.c, c.se, c.ci_lower, c.ci_upper
    except UserError as exc:
        out.notes.append(f"C-index: {exc}")
    for label, mask in (("high", high), ("low", ~high)):
        if mask.any():
            med, lo, hi = kaplan_meier(t[mask], e[mask]).median()
            setattr(out, f"median_{label}", med)
            setattr(out, f"median_{label}_lower", lo)
            setattr(out, f"median_{label}_upper", hi)
    if high.all() or not high.any():
        out.notes.append("one risk group only: no hazard ratio or log-rank test")
        return out
    try:
        row = fit_cox_arrays(t, e, high.astype(float), names=["high_risk"]).table()[0]
        out.hr, out.hr_lower, out.hr_upper, out.hr_p = row["hr"], row["hr_lower"], row["hr_upper"], row["p"]
    except UserError as exc:
        out.notes.append(f"hazard ratio: {exc}")
    try:
        lr = logrank_test(t, e, np.where(high, "high", "low"))
        out.logrank_chisq, out.logrank_df, out.logrank_p = lr.chisq, lr.df, lr.p
    except UserError as exc:
        out.notes.append(f"log-rank: {exc}")
    return out


# ----------------------------------------------------------------------------------------------
# the summary of a frozen signature
# ----------------------------------------------------------------------------------------------


@dataclass
class SignatureSummary(StatResult):
    """A frozen signature in brief: the selection funnel, the coefficients, the cut and the
    per-set evaluation (what the signature job returns and ``signature show`` prints)."""

    name: str
    run: str
    endpoint: str
    features_in: int
    after_constant: int
    after_correlation: int
    after_univariate: int
    coefficients: dict[str, float]
    lasso_lambda: float
    rule: str
    cut: float
    cut_p_permutation: float | None
    sets: dict[str, SetEvaluation]
    mixed_effects: dict[str, Any] | None = None
    version: int | None = None  #: the fit's version (v1, v2, ... kept under signature/<name>/)
    fitted_at: str | None = None
    min_group_size: int | None = None  #: X-tile's smallest allowed risk group (patients)

    @property
    def selected(self) -> int:
        return len(self.coefficients)

    @classmethod
    def from_signature(cls, signature: dict[str, Any]) -> "SignatureSummary":
        """The summary of a frozen signature dict (:func:`~pathomics_desktop.signature.fit.load_signature`)."""
        sel = signature["selection"]
        return cls(
            name=signature["name"], run=signature["run"], endpoint=signature["endpoint"],
            features_in=sel["features_in"], after_constant=sel["features_in"] - len(sel["constant_removed"]),
            after_correlation=sel["correlation"]["kept"], after_univariate=len(sel["univariate"]["kept"]),
            coefficients=dict(signature["coefficients"]), lasso_lambda=sel["lasso"]["lambda"],
            rule=sel["lasso"]["rule"], cut=signature["cut"]["value"],
            cut_p_permutation=signature["cut"]["p_permutation"],
            sets={s: SetEvaluation.from_dict(r) for s, r in signature["sets"].items()},
            mixed_effects=signature.get("mixed_effects"), version=signature.get("version"),
            fitted_at=(signature.get("provenance") or {}).get("fitted_at"),
            min_group_size=signature["cut"].get("min_group_size"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "run": self.run, "endpoint": self.endpoint, "features_in": self.features_in,
            "after_constant": self.after_constant, "after_correlation": self.after_correlation,
            "after_univariate": self.after_univariate, "selected": self.selected,
            "coefficients": dict(self.coefficients), "lambda": self.lasso_lambda, "rule": self.rule,
            "cut": self.cut, "cut_p_permutation": self.cut_p_permutation,
            "sets": {s: r.summary_row() for s, r in self.sets.items()}, "mixed_effects": self.mixed_effects,
            "version": self.version, "fitted_at": self.fitted_at, "min_group_size": self.min_group_size,
        }

    def coefficient_lines(self) -> list[str]:
        """The coefficients table: a heading and one row per frozen coefficient (feature, beta
        to 6 significant digits), in the signature's order."""
        lines = [f"coefficients ({self.selected} selected; score = sum beta x):",
                 f"  {'feature':<18} {'beta':>12}"]
        return lines + [f"  {name:<18} {beta:>+12.6g}" for name, beta in self.coefficients.items()]

    def summary(self) -> str:
        version = f" v{self.version}" if self.version else ""
        fitted = f", fitted {self.fitted_at}" if self.fitted_at else ""
        groups = f", groups >= {self.min_group_size} patients" if self.min_group_size else ""
        lines = [f"signature {self.name}{version}  (run {self.run}, endpoint {self.endpoint.upper()}{fitted})",
                 f"features: {self.features_in} -> {self.after_constant} non-constant -> {self.after_correlation} "
                 f"after correlation filter -> {self.after_univariate} univariate p<0.05 -> {self.selected} LASSO "
                 f"(lambda.{self.rule} = {self.lasso_lambda:.4g})",
                 f"score = sum(beta x), higher = higher risk; cut {self.cut:.4g} (X-tile over every distinct "
                 f"training score{groups}, permutation p {_fmt(self.cut_p_permutation, '.3g')}); "
                 "high risk: score > cut"]
        lines += self.coefficient_lines()
        lines.append(f"{'set':<10} {'n':>4} {'ev':>4} {'high':>5}  {'C-index (95% CI)':<22} "
                     f"{'HR high/low (95% CI)':<24} {'p':>8}  {'median high/low':<16}")
        for name, r in self.sets.items():
            if not r.n:
                lines.append(f"{name:<10} {0:>4}")
                continue
            c = f"{_fmt(r.c_index, '.3f')} ({_fmt(r.c_lower, '.3f')}-{_fmt(r.c_upper, '.3f')})"
            hr = f"{_fmt(r.hr, '.2f')} ({_fmt(r.hr_lower, '.2f')}-{_fmt(r.hr_upper, '.2f')})"
            med = f"{_fmt(r.median_high, '.1f')}/{_fmt(r.median_low, '.1f')}"
            lines.append(f"{name:<10} {r.n:>4} {r.events or 0:>4} {r.n_high or 0:>5}  {c:<22} {hr:<24} "
                         f"{_fmt(r.hr_p, '.2g'):>8}  {med:<16}" + (f"  ({'; '.join(r.notes)})" if r.notes else ""))
        me = self.mixed_effects
        if me and me.get("hr") is not None:
            lines.append(f"all sets, center as random effect: HR high/low {me['hr']:.2f} ({me['lower']:.2f}-"
                         f"{me['upper']:.2f}), p {me['p']:.2g}, center variance {me['center_variance']:.3g}")
        return "\n".join(lines)
