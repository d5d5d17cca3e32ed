"""Subgroup analysis for forest plots: exposure HR within each level of each subgroup.

For each subgroup variable S and each level s: a Cox model ``exposure`` fitted on the
rows with S = s gives HR, 95% CI (exp(b +- 1.96 se)) and the Wald p. The interaction p
for S is the likelihood-ratio test of ``exposure + S + exposure:S`` against
``exposure + S`` on all rows with S known (df = number of interaction columns), as
R ``anova(coxph(~ x + S), coxph(~ x * S))``. Ties: Efron (as R). An "Overall" row with the
exposure-only model on every row comes first.

The exposure is numeric (per unit) or a two-level category (``exposure=level`` vs the
reference level).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.cox import fit_cox_arrays
from pathomics_desktop.stats.levels import label_array, sorted_levels
from pathomics_desktop.stats.results import StatResult
from pathomics_desktop.stats.km import as_event_array

MAX_LEVELS = 12
#: the keys of one row in ``pathomics analyze subgroups --json``
SUBGROUP_KEYS = ("variable", "level", "n", "events", "hr", "hr_lower", "hr_upper", "p", "p_interaction")


@dataclass
class SubgroupRow:
    """One forest-plot row: the exposure HR (95% CI, Wald p) among patients with
    ``variable = level``; ``p_interaction`` on the first row of each variable; ``note`` says
    why a level could not be estimated (then hr, CI and p are None)."""

    variable: str
    level: str
    n: int
    events: int
    hr: float | None = None
    hr_lower: float | None = None
    hr_upper: float | None = None
    p: float | None = None
    p_interaction: float | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in SUBGROUP_KEYS}


@dataclass
class SubgroupAnalysis(StatResult):
    """Forest-plot rows: "Overall" first, then each level of each subgroup variable."""

    exposure_term: str
    rows: list[SubgroupRow]

    def to_dict(self) -> dict:
        """``{"rows": [{SUBGROUP_KEYS}]}`` (``pathomics analyze subgroups --json``)."""
        return {"rows": [row.to_dict() for row in self.rows]}

    def summary(self) -> str:
        text = super().summary()
        notes = [f"note: {r.variable}={r.level}: {r.note}" for r in self.rows if r.note]
        return "\n".join([f"exposure: {self.exposure_term}", text, *notes])


def exposure_column(frame, exposure: str, reference: str | None = None) -> tuple[np.ndarray, str]:
    """Numeric exposure vector and its term name (a 2-level category becomes 0/1)."""
    values = frame[exposure]
    if values.dtype == object or str(values.dtype) in ("category", "bool", "string") or reference:
        labels = label_array(values.tolist())
        levels = sorted_levels(values.tolist())
        if len(levels) != 2:
            raise UserError(f"exposure {exposure!r} must be numeric or have two levels; found "
                            f"{len(levels)} ({', '.join(levels[:6])})")
        ref = reference if reference is not None else levels[0]
        if ref not in levels:
            raise UserError(f"reference level {ref!r} is not a value of {exposure!r} ({levels})")
        other = levels[1] if ref == levels[0] else levels[0]
        return (labels == other).astype(float), f"{exposure}={other}"
    try:
        return values.astype(float).to_numpy(), exposure
    except (TypeError, ValueError):
        raise UserError(f"exposure {exposure!r} is not numeric") from None


def subgroup_analysis(frame, time: str, event: str, exposure: str, subgroups: Sequence[str], *,
                      reference: str | None = None, ties: str = "efron",
                      subgroup_order: Mapping[str, Sequence[str]] | None = None) -> SubgroupAnalysis:
    """Rows for a forest plot (see the module docstring and :class:`SubgroupRow`)."""
    for col in (time, event, exposure, *subgroups):
        if col not in frame.columns:
            raise UserError(f"column {col!r} is not in the data")
    base = frame.dropna(subset=[time, event, exposure])
    if len(base) == 0:
        raise UserError("no rows with time, event and exposure all present")
    x_all, term = exposure_column(base, exposure, reference)
    t_all = base[time].to_numpy()
    e_all = base[event].to_numpy()
    rows = [_level_row("Overall", "all", t_all, e_all, x_all, term, ties)]
    for var in subgroups:
        known = base[var].notna().to_numpy()
        labels = label_array(base[var].tolist())
        levels = (list(subgroup_order[var]) if subgroup_order and var in subgroup_order
                  else sorted_levels(base[var].dropna().tolist()))
        if len(levels) > MAX_LEVELS:
            raise UserError(f"subgroup variable {var!r} has {len(levels)} values; group it into "
                            f"at most {MAX_LEVELS} categories first")
        p_int = _interaction_p(t_all[known], e_all[known], x_all[known], labels[known], levels,
                               term, var, ties)
        for i, lvl in enumerate(levels):
            m = known & (labels == lvl)
            row = _level_row(var, lvl, t_all[m], e_all[m], x_all[m], term, ties)
            row.p_interaction = p_int if i == 0 else None
            rows.append(row)
    return SubgroupAnalysis(term, rows)


def _level_row(var: str, level: str, t, e, x, term: str, ties: str) -> SubgroupRow:
    row = SubgroupRow(var, level, n=int(len(t)), events=int(as_event_array(e).sum()) if len(t) else 0)
    try:
        fit = fit_cox_arrays(t, e, x[:, None], names=[term], ties=ties)
    except UserError as exc:
        row.note = str(exc)
        return row
    res = fit.table()[0]
    row.hr, row.hr_lower, row.hr_upper, row.p = res["hr"], res["hr_lower"], res["hr_upper"], res["p"]
    return row


def _interaction_p(t, e, x, labels, levels, term, var, ties) -> float | None:
    present = [lvl for lvl in levels if np.any(labels == lvl)]
    if len(present) < 2:
        return None
    dummies = np.column_stack([(labels == lvl).astype(float) for lvl in present[1:]])
    names_red = [term] + [f"{var}={lvl}" for lvl in present[1:]]
    reduced, names_red = _estimable(np.column_stack([x, dummies]), names_red)
    inter = dummies * x[:, None]
    names_full = names_red + [f"{term}:{var}={lvl}" for lvl in present[1:]]
    # aliased interaction columns (e.g. a level with one subject) are dropped, as R's
    # coxph gives them NA coefficients; df counts the estimable ones only
    full, names_full = _estimable(np.column_stack([reduced, inter]), names_full)
    if full.shape[1] == reduced.shape[1]:
        return None
    try:
        fit_red = fit_cox_arrays(t, e, reduced, names=names_red, ties=ties)
        fit_full = fit_cox_arrays(t, e, full, names=names_full, ties=ties)
    except UserError:
        return None
    stat = max(2.0 * (fit_full.loglik - fit_red.loglik), 0.0)
    return float(sps.chi2.sf(stat, full.shape[1] - reduced.shape[1]))


def _estimable(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Keep columns, left to right, that are not constant or linear in the kept ones."""
    keep: list[int] = []
    centred = X - X.mean(axis=0)
    for j in range(X.shape[1]):
        trial = centred[:, keep + [j]]
        if np.ptp(X[:, j]) > 0 and np.linalg.matrix_rank(trial) == len(keep) + 1:
            keep.append(j)
    return X[:, keep], [names[j] for j in keep]
