"""Subgroup analysis for forest plots: exposure HR within each level of each subgroup.

For each subgroup variable S and each level s: a Cox model ``exposure`` fitted on the
rows with S = s gives HR, 95% CI (exp(b +- 1.96 se)) and the Wald p. The interaction p
for S is the likelihood-ratio test of ``exposure + S + exposure:S`` against
``exposure + S`` on the rows with S at one of its levels (df = number of interaction columns), as
R ``anova(coxph(~ x + S), coxph(~ x * S))``. Ties: Efron (as R). An "Overall" row with the
exposure-only model on every row comes first.

The exposure is numeric (per unit) or a two-level category (``exposure=level`` vs the
reference level).

Speed (one forest is ~50 Cox fits): the rows are sorted once; the levels of a variable are
fitted together (:func:`_level_rows`); fits are warm-started; the variables run on two threads.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.cox import (descending_time_order, fit_cox_estimate, fit_cox_nested,
                                         fit_cox_stratum_slopes, numerical_rank, scaled_cross_product)
from pathomics_desktop.stats.distributions import chi2_sf
from pathomics_desktop.stats.levels import factor, label_array, level_codes, sorted_levels
from pathomics_desktop.stats.results import StatResult
from pathomics_desktop.stats.km import as_event_array, as_time_array, timefix

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
        labels = label_array(values)
        levels = sorted_levels(pd.unique(labels))
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
                      subgroup_order: Mapping[str, Sequence[str]] | None = None,
                      level_preference: Mapping[str, Sequence[str]] | None = None) -> SubgroupAnalysis:
    """Rows for a forest plot (see the module docstring and :class:`SubgroupRow`).

    A variable's levels are ``subgroup_order[var]`` when given (other values are left out of
    its rows), else the levels present: those of ``level_preference[var]`` (e.g. the codebook
    order) first, then any others in natural order."""
    for col in (time, event, exposure, *subgroups):
        if col not in frame.columns:
            raise UserError(f"column {col!r} is not in the data")
    complete = frame[[time, event, exposure]].notna().all(axis=1).to_numpy()
    columns = list(dict.fromkeys([time, event, exposure, *subgroups]))
    base = frame if complete.all() else frame.loc[complete, columns]  # (no copy when complete)
    if len(base) == 0:
        raise UserError("no rows with time, event and exposure all present")
    x_all, term = exposure_column(base, exposure, reference)
    # times merged and rows sorted once (CoxData's order); every fit below takes a subset in order
    t_all = timefix(as_time_array(base[time].to_numpy()))
    e_all = as_event_array(base[event].to_numpy())
    order = descending_time_order(t_all, e_all)
    t_all, e_all, x_all = t_all[order], e_all[order], x_all[order]
    rows = [_level_row("Overall", "all", t_all, e_all, x_all, term, ties)]
    # warm starts: the overall HR for each level, the reduced model for the full one
    start = np.array([math.log(rows[0].hr)]) if rows[0].hr else None

    def variable_rows(var: str) -> list[SubgroupRow]:
        """The rows of one subgroup variable: its levels' HRs and its interaction p."""
        if subgroup_order and var in subgroup_order:
            levels = list(subgroup_order[var])
            level_code, _ = level_codes(base[var], levels)  # -1: missing or not listed
        else:
            level_code, found, _ = factor(base[var])
            preferred = [lvl for lvl in (level_preference or {}).get(var, ()) if lvl in found]
            levels = preferred + [lvl for lvl in found if lvl not in preferred]
            position = {lvl: i for i, lvl in enumerate(levels)}
            level_code = np.array([position[lvl] for lvl in found] + [-1], dtype=np.int64)[level_code]
        if len(levels) > MAX_LEVELS:
            raise UserError(f"subgroup variable {var!r} has {len(levels)} values; group it into "
                            f"at most {MAX_LEVELS} categories first")
        level_code = level_code[order]
        out = _level_rows(var, levels, level_code, t_all, e_all, x_all, term, ties, start)
        listed = level_code >= 0  # the interaction models' rows: those at one of the levels
        out[0].p_interaction = _interaction_p(t_all[listed], e_all[listed], x_all[listed], level_code[listed],
                                              levels, term, var, ties, start)
        return out

    # the variables are independent: two threads (the Cox kernel and most numpy work release
    # the GIL); results, and the first error, come in the variables' order
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for part in pool.map(variable_rows, subgroups):
            rows.extend(part)
    return SubgroupAnalysis(term, rows)


def _level_row(var: str, level: str, t, e, x, term: str, ties: str, start=None) -> SubgroupRow:
    row = SubgroupRow(var, level, n=int(len(t)), events=int(as_event_array(e).sum()) if len(t) else 0)
    try:
        fit = fit_cox_estimate(t, e, x[:, None], names=[term], ties=ties, presorted=True, init=start)
    except UserError as exc:
        row.note = str(exc)
        return row
    return _with_estimate(row, fit.table()[0])


def _with_estimate(row: SubgroupRow, res: dict) -> SubgroupRow:
    """``row`` with the HR, CI and p of a :func:`~pathomics_desktop.stats.cox.coefficient_table` row."""
    row.hr, row.hr_lower, row.hr_upper, row.p = res["hr"], res["hr_lower"], res["hr_upper"], res["p"]
    return row


def _level_rows(var: str, levels: Sequence[str], level_code, t, e, x, term: str, ties: str,
                start=None) -> list[SubgroupRow]:
    """The rows of ``levels`` (``level_code`` indexes them, -1: not in any).

    The levels are fitted in one Cox model stratified by level with one exposure coefficient
    per level (:func:`~pathomics_desktop.stats.cox.fit_cox_stratum_slopes`): each coefficient
    and SE is that of the level's own model (to the Newton-Raphson tolerance), in one fit
    instead of one per level. Levels are fitted alone, for the note their own fit gives, when
    they have no events or a constant exposure, or all of them when the joint fit fails."""
    # the rows of each level together, in time order within it (a stable sort)
    sel = np.flatnonzero(level_code >= 0)
    by_level = sel[np.argsort(level_code[sel], kind="stable")]
    codes, ts, es, xs = level_code[by_level], t[by_level], e[by_level], x[by_level]
    counts = np.bincount(codes, minlength=len(levels))
    events = np.bincount(codes, weights=es, minlength=len(levels)).astype(int)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = np.flatnonzero(counts)
    low = np.full(len(levels), np.nan)
    high = np.full(len(levels), np.nan)
    low[present] = np.minimum.reduceat(xs, starts[present])
    high[present] = np.maximum.reduceat(xs, starts[present])
    joint = [i for i in present if events[i] and low[i] < high[i]]
    estimates = _joint_level_fit(joint, starts, counts, ts, es, xs, term, ties, start) if len(joint) > 1 else {}
    rows = []
    for i, lvl in enumerate(levels):
        if i in estimates:
            rows.append(_with_estimate(SubgroupRow(var, lvl, n=int(counts[i]), events=int(events[i])), estimates[i]))
        else:
            part = slice(starts[i], starts[i] + counts[i])
            rows.append(_level_row(var, lvl, ts[part], es[part], xs[part], term, ties, start))
    return rows


def _joint_level_fit(joint: list[int], starts, counts, t, e, x, term: str, ties: str,
                     start=None) -> dict[int, dict]:
    """The coefficient-table row of each level in ``joint`` from the stratified model of
    :func:`_level_rows` (rows grouped by level, in time order within each); {} when any
    level's own fit would fail (the caller then fits them alone)."""
    keep = np.concatenate([np.arange(starts[i], starts[i] + counts[i]) for i in joint])
    stratum = np.repeat(np.arange(len(joint)), counts[joint])
    try:
        fit = fit_cox_stratum_slopes(t[keep], e[keep], x[keep], stratum, names=[term] * len(joint), ties=ties,
                                     init=None if start is None else np.repeat(start, len(joint)))
    except UserError:
        return {}
    return dict(zip(joint, fit.table()))


def _interaction_p(t, e, x, level_code, levels, term, var, ties, start=None) -> float | None:
    """LR test of the interaction (module docstring); ``level_code`` indexes ``levels``;
    ``start``: the overall exposure coefficient (the reduced model's warm start, whose
    estimate starts the full model)."""
    counts = np.bincount(level_code[level_code >= 0], minlength=len(levels))
    present = [i for i in range(len(levels)) if counts[i]]
    if len(present) < 2:
        return None
    dummies = (level_code == np.array(present[1:])[:, None]).astype(float)  # one row per level
    present_labels = [levels[i] for i in present]
    # x, the level dummies and the interactions, as rows (contiguous columns of the design)
    columns = np.vstack([x, dummies, dummies * x])
    design = columns.T
    names = ([term] + [f"{var}={lvl}" for lvl in present_labels[1:]]
             + [f"{term}:{var}={lvl}" for lvl in present_labels[1:]])
    centred = columns - columns.mean(axis=1)[:, None]
    gram = scaled_cross_product(centred.T)  # one cross-product for both models
    # which columns vary, exactly: x; a dummy of a level that is not every row (each level is
    # present and there are at least two); an interaction whose level has some x != 0
    nonzero = np.bincount(level_code, weights=(x != 0), minlength=len(levels))
    varies = np.concatenate([[np.ptp(x) > 0], np.ones(len(present) - 1, bool), nonzero[present[1:]] > 0])
    main = len(present)
    kept_red = _estimable(gram, varies, range(main), [])
    # aliased interaction columns (e.g. a level with one subject) are dropped, as R's
    # coxph gives them NA coefficients; df counts the estimable ones only
    kept_full = _estimable(gram, varies, range(main, design.shape[1]), kept_red)
    if len(kept_full) == len(kept_red):
        return None
    init_red = None
    if start is not None and kept_red and kept_red[0] == 0:
        init_red = np.concatenate([start, np.zeros(len(kept_red) - 1)])
    try:
        # only the two log-likelihoods are used; the columns kept vary and are independent
        # (the rank tests above), and kept_full starts with kept_red
        fit_red, fit_full = fit_cox_nested(t, e, design[:, kept_full], len(kept_red),
                                           names=[names[j] for j in kept_full], ties=ties, presorted=True,
                                           init=init_red, design_checked=True)
    except UserError:
        return None
    stat = max(2.0 * (fit_full.loglik - fit_red.loglik), 0.0)
    return chi2_sf(stat, len(kept_full) - len(kept_red))


def _estimable(gram: np.ndarray, varies: np.ndarray, candidates, kept: list[int]) -> list[int]:
    """``kept`` plus the ``candidates``, left to right, that vary and are not linear in the
    columns kept so far: the rank of their block of the scaled cross-product ``gram`` of the
    centred design (:func:`numerical_rank`)."""
    keep = list(kept)
    trial = keep + [j for j in candidates if varies[j]]
    if numerical_rank(gram[np.ix_(trial, trial)]) == len(trial):
        # all at once: each step's trial below is a principal submatrix of this one, whose
        # extreme eigenvalues lie within this one's (Cauchy interlacing), so each would pass
        return trial
    for j in candidates:
        trial = keep + [j]
        if varies[j] and numerical_rank(gram[np.ix_(trial, trial)]) == len(trial):
            keep.append(j)
    return keep
