"""The Kaplan-Meier figure: curves per group, the number-at-risk table, log-rank (or trend) p
and the Cox HR of each group against a reference group. Qt-free; the GUI's Kaplan-Meier view
and the publication exports draw the same :class:`KMFigure`.

Statistics come from :mod:`pathomics_desktop.stats` only:

* curves, medians (first time with S(t) <= 0.5) and their 95% CI (log transform, Brookmeyer &
  Crowley), and the k-group log-rank test: :func:`~pathomics_desktop.stats.km.km_comparison`;
* the log-rank test for trend (scores 1..k in level order, Collett 2.6) for ordered groupings
  with more than two levels (stage): :func:`~pathomics_desktop.stats.km.logrank_trend`;
* HR (95% CI, Wald p) of each group against the reference: a Cox model with the group as one
  categorical covariate (Efron ties): :func:`~pathomics_desktop.stats.cox.fit_cox_arrays`.

Number-at-risk table at the time breaks t_b: *at risk* = patients with follow-up >= t_b;
*events* and *censored* = cumulative counts with follow-up < t_b, so the three rows add up to
the group's n at every break. Times are in months in the snapshot; ``unit="years"`` divides
them by 12 before anything is computed (medians and breaks are then in years).

``params`` of :func:`build_km` (all optional):

* ``endpoint``: ``"os"`` (default) or ``"rfs"``;
* ``group``: a column of the cohort; absent: the endpoint's risk group
  ``pathomics_<endpoint>_group`` when a signature has been applied, else all patients;
  ``None`` or ``""``: all patients. A categorical column gives one curve per level; a numeric
  column is cut in two, ``"<cut"`` and ``">=cut"`` (value >= cut is the upper group);
* ``cut`` (alias ``group_cut``): the cut of a numeric grouping; default 200 U/mL for CA19-9
  (the study's cut), 65 years for age, else the median of the filtered cohort;
* ``reference``: the reference level of the HRs; default ``"low"`` for a risk group (so the HR
  is high vs low), else the first level in codebook order;
* ``unit``: ``"months"`` (default) or ``"years"``;
* ``breaks``: a step (every ``breaks`` units from 0) or an explicit list of times; default
  every 12 months or every year.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from pathomics_desktop.errors import UserError

#: endpoint -> (time column, event column, label)
ENDPOINTS = {"os": ("os_months", "os_event", "Overall survival"),
             "rfs": ("rfs_months", "rfs_event", "Recurrence-free survival")}
#: time unit -> months per unit
UNITS = {"months": 1.0, "years": 12.0}
DEFAULT_STEP = {"months": 12.0, "years": 1.0}
#: most time breaks a number-at-risk table may have
MAX_BREAKS = 40
#: groupings whose levels are ordered (the trend test applies when they have > 2 levels)
ORDERED_COLUMNS = ("tnm_stage", "tnm_group", "t_stage", "t_group", "n_stage", "differentiation", "stage_2",
                   "age_group", "ca19_9_group")
#: columns that are never a grouping (keys, endpoints, dates)
NOT_GROUPINGS = ("study_id", "synthetic", "included", "exclusion_reason", "chemo_regimen",
                 "os_months", "os_event", "rfs_months", "rfs_event")


def risk_group_column(endpoint: str) -> str:
    """The risk-group column `signature apply` writes for ``endpoint``."""
    return f"pathomics_{endpoint}_group"


@lru_cache(maxsize=1)
def _known_levels() -> dict[str, tuple[str, ...]]:
    """Level orders of the study's analysis columns (first level = reference)."""
    from pathomics_desktop.signature.report import RISK_LEVELS, clinical_variables, subgroup_variables

    known = {v.column: v.levels for v in (*clinical_variables(), *subgroup_variables())}
    for endpoint in ENDPOINTS:
        known[risk_group_column(endpoint)] = RISK_LEVELS
    return known


def level_order(source, column: str, present: Sequence[str]) -> list[str]:
    """The present levels of ``column`` in codebook order (study level orders first, then
    the codebook's codes, then the rest in natural order)."""
    from pathomics_desktop.analytics.cohort_filter import ordered_levels
    from pathomics_desktop.stats.levels import sorted_levels

    known = _known_levels().get(column)
    if known is None:
        return list(ordered_levels(column, list(present), source.codebook))
    ordered = [lvl for lvl in known if lvl in set(present)]
    return ordered + [lvl for lvl in sorted_levels(present) if lvl not in ordered]


def default_cut(column: str, values: np.ndarray) -> float:
    """The study's cut for CA19-9 (200 U/mL) and age (65 years); else the median."""
    from pathomics_desktop.signature.report import AGE_THRESHOLD, CA19_9_THRESHOLD

    if column == "ca19_9":
        return float(CA19_9_THRESHOLD)
    if column == "age":
        return float(AGE_THRESHOLD)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise UserError(f"{column} has no recorded values in the filtered cohort; it cannot be cut")
    return float(np.median(finite))


def cut_labels(cut: float) -> tuple[str, str]:
    """``("<200", ">=200")``: the lower and upper group of a cut (as ``ca19_9_group``)."""
    return f"<{cut:g}", f">={cut:g}"


def parse_breaks(text: str) -> float | list[float] | None:
    """The time breaks typed by a user: ``""`` -> default, ``"12"`` -> every 12 units,
    ``"0, 6, 12, 24"`` -> those times."""
    text = (text or "").strip()
    if not text:
        return None
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"time breaks {text!r}: type a step (12) or times separated by commas (0, 12, 24)") from None
    return values[0] if len(values) == 1 else values


def time_breaks(breaks, unit: str, t_max: float) -> list[float]:
    """Break times in ``unit``: a step from 0 up to ``t_max`` or an explicit list."""
    if breaks is None:
        breaks = DEFAULT_STEP[unit]
    if isinstance(breaks, (int, float)):
        step = float(breaks)
        if not math.isfinite(step) or step <= 0:
            raise UserError(f"the time-break step must be a positive number of {unit}, got {breaks}")
        count = int(math.floor(t_max / step + 1e-9)) + 1
        if count > MAX_BREAKS:
            raise UserError(f"a step of {step:g} {unit} gives {count} time breaks; choose a step of at least "
                            f"{t_max / (MAX_BREAKS - 1):.3g} {unit}")
        return [i * step for i in range(count)]
    values = sorted({float(b) for b in breaks})
    if not values or any(not math.isfinite(b) or b < 0 for b in values):
        raise UserError(f"time breaks must be non-negative numbers of {unit}, got {list(breaks)}")
    if len(values) > MAX_BREAKS:
        raise UserError(f"{len(values)} time breaks given; at most {MAX_BREAKS}")
    return values


@dataclass
class KMGroup:
    """One curve: the step function (``time`` from 0, ``survival``, 95% ``lower``/``upper``;
    NaN where undefined), censor marks, median with CI, the at-risk rows at the figure's
    breaks, the HR against the reference (None for the reference itself), and the patients
    behind it (``study_ids`` with their follow-up in the figure's unit and event flag)."""

    label: str
    index: int  #: colour index (position in level order)
    n: int
    events: int
    median: float | None
    median_lower: float | None
    median_upper: float | None
    time: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    censor_time: np.ndarray
    censor_survival: np.ndarray
    at_risk: list[int]
    events_by: list[int]
    censored_by: list[int]
    study_ids: np.ndarray = field(repr=False)
    follow_up: np.ndarray = field(repr=False)
    event: np.ndarray = field(repr=False)
    hr: dict | None = None  #: {"hr", "hr_lower", "hr_upper", "p"}

    def survival_at(self, t: float) -> tuple[float, float | None, float | None] | None:
        """S(t) and its CI (right-continuous step); None beyond the last follow-up."""
        if t < 0 or t > self.time[-1]:
            return None
        i = int(np.searchsorted(self.time, t, side="right")) - 1
        return (float(self.survival[i]), _finite_or_none(self.lower[i]), _finite_or_none(self.upper[i]))

    def patients(self, mask: np.ndarray | None = None) -> list[dict]:
        """The group's patients (``study_id``, ``follow_up``, ``status``), by follow-up."""
        index = np.arange(self.study_ids.size) if mask is None else np.flatnonzero(mask)
        index = index[np.argsort(self.follow_up[index], kind="stable")]
        return [{"study_id": str(self.study_ids[i]), "follow_up": float(self.follow_up[i]),
                 "status": "event" if self.event[i] else "censored"} for i in index]

    def censored_at(self, t: float) -> list[dict]:
        """Patients of this group censored at the censor mark ``t`` (equal up to rounding)."""
        tol = 1e-6 * max(1.0, abs(t))
        return self.patients((~self.event) & (np.abs(self.follow_up - t) <= tol))

    def to_dict(self) -> dict:
        hr = self.hr or {}
        return {"group": self.label, "n": self.n, "events": self.events, "median": self.median,
                "median_lower": self.median_lower, "median_upper": self.median_upper,
                "hr": hr.get("hr"), "hr_lower": hr.get("hr_lower"), "hr_upper": hr.get("hr_upper"),
                "hr_p": hr.get("p"), "at_risk": list(self.at_risk), "events_by": list(self.events_by),
                "censored_by": list(self.censored_by), "censor_marks": int(self.censor_time.size)}


@dataclass
class KMFigure:
    """What the Kaplan-Meier figure shows (see the module docstring)."""

    endpoint: str
    endpoint_label: str
    group: str | None  #: grouping column (None: all patients)
    group_label: str
    cut: float | None  #: cut of a numeric grouping
    reference: str | None
    ordered: bool
    unit: str
    breaks: list[float]
    x_max: float
    groups: list[KMGroup]
    logrank: dict | None  #: {"chisq", "df", "p"} over the groups
    trend: dict | None  #: {"chisq", "df", "p"} of the trend test (ordered, > 2 levels)
    n: int
    n_missing: int  #: filtered patients without the endpoint or the grouping value
    notes: list[str] = field(default_factory=list)

    def group_by_label(self, label: str) -> KMGroup:
        for group in self.groups:
            if group.label == label:
                return group
        raise UserError(f"{self.group_label} has no group {label!r}")

    @property
    def levels(self) -> list[str]:
        return [g.label for g in self.groups]

    @property
    def time_label(self) -> str:
        return f"Time ({self.unit})"

    def to_dict(self) -> dict:
        return {"endpoint": self.endpoint, "endpoint_label": self.endpoint_label, "group": self.group,
                "group_label": self.group_label, "cut": self.cut, "reference": self.reference,
                "ordered": self.ordered, "unit": self.unit, "breaks": list(self.breaks), "n": self.n,
                "n_missing": self.n_missing, "groups": [g.to_dict() for g in self.groups],
                "logrank": self.logrank, "trend": self.trend, "notes": list(self.notes)}


def _finite_or_none(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _grouping(source, frame, column: str | None, params: dict) -> tuple[np.ndarray, list[str], float | None, str]:
    """Group labels per row (None where missing), the levels in order, the cut, the label."""
    from pathomics_desktop.stats.levels import level_label

    if column is None:
        return np.full(len(frame), "all", dtype=object), ["all"], None, "All patients"
    if column not in frame.columns:
        raise UserError(f"{column!r} is not a column of the cohort snapshot"
                        + ("; apply a signature first (Signature view or `pathomics signature apply`)"
                           if column.startswith("pathomics_") else ""))
    endpoint = next((ep for ep in ENDPOINTS if risk_group_column(ep) == column), None)
    label = f"Pathomics {endpoint.upper()} risk group" if endpoint else source.label(column)
    values = frame[column]
    kind = values.dtype.kind
    if kind in "iuf":
        num = values.to_numpy(float)
        cut = params.get("group_cut", params.get("cut"))
        cut = default_cut(column, num) if cut is None or cut == "" else float(cut)
        if not math.isfinite(cut):
            raise UserError(f"the cut of {label} must be a number, got {cut}")
        low, high = cut_labels(cut)
        labels = np.where(np.isnan(num), None, np.where(num >= cut, high, low)).astype(object)
        unit = source.unit(column)
        return labels, [low, high], cut, f"{label}, cut {cut:g}{' ' + unit if unit else ''}"
    if kind == "b":
        labels = np.where(values.to_numpy(bool), "yes", "no").astype(object)
    else:
        present_values = values[values.notna()]
        names = {v: level_label(v) for v in present_values.unique()}  # label each distinct value once
        labels = values.map(names).astype(object).where(values.notna(), None).to_numpy(dtype=object)
    present = sorted({v for v in labels.tolist() if v is not None})
    return labels, level_order(source, column, present), None, label


def _is_level(source, column: str, level: str, cut: float | None) -> bool:
    """Whether ``level`` is a level of the grouping at all (study levels, codebook codes, or
    the two sides of the cut), present in the filtered cohort or not."""
    if cut is not None:
        return level in cut_labels(cut)
    known = _known_levels().get(column)
    if known is None and column in source.codebook:
        var = source.codebook[column]
        known = ("no", "yes") if var.type == "yesno" else tuple(var.codes)
    return level in (known or ())


def _hazard_ratios(t: np.ndarray, e: np.ndarray, labels: np.ndarray, levels: Sequence[str], reference: str,
                   notes: list[str]) -> dict[str, dict]:
    """Cox HR of each non-reference group vs the reference: one categorical covariate coded
    as 0/1 indicators of the other levels (the design of ``stats.cox.fit_cox``, built here
    with one vectorised comparison per level)."""
    from pathomics_desktop.stats.cox import fit_cox_arrays

    others = [lvl for lvl in levels if lvl != reference]
    X = np.column_stack([labels == lvl for lvl in others]).astype(float)
    try:
        fit = fit_cox_arrays(t, e, X, names=others, terms={"group": list(range(len(others)))})
    except UserError as exc:
        notes.append(f"HR not estimable: {exc}")
        return {}
    return {row["term"]: {"hr": row["hr"], "hr_lower": row["hr_lower"], "hr_upper": row["hr_upper"],
                          "p": row["p"]} for row in fit.table()}


def _at_risk_rows(curve, breaks: Sequence[float]) -> tuple[list[int], list[int], list[int]]:
    """At risk (follow-up >= t), cumulative events and censored (follow-up < t) at ``breaks``."""
    at_risk = [row["at_risk"] for row in curve.at(breaks)]
    before = np.searchsorted(curve.time, np.asarray(breaks, float), side="left")
    cum_events = np.concatenate(([0.0], np.cumsum(curve.n_event)))[before]
    cum_censor = np.concatenate(([0.0], np.cumsum(curve.n_censor)))[before]
    return at_risk, [int(v) for v in cum_events], [int(v) for v in cum_censor]


def build_km(source, frame, params: dict) -> KMFigure:
    """The Kaplan-Meier figure of the filtered cohort ``frame`` (see the module docstring)."""
    from pathomics_desktop.stats.km import km_comparison, logrank_trend

    params = dict(params or {})
    endpoint = params.get("endpoint") or "os"
    if endpoint not in ENDPOINTS:
        raise UserError(f"endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}")
    unit = params.get("unit") or "months"
    if unit not in UNITS:
        raise UserError(f"time unit must be one of {', '.join(UNITS)}, got {unit!r}")
    time_col, event_col, endpoint_label = ENDPOINTS[endpoint]
    if "group" in params:
        column = params["group"] or None
    else:
        risk = risk_group_column(endpoint)
        column = risk if risk in frame.columns and frame[risk].notna().any() else None
    labels, levels, cut, group_label = _grouping(source, frame, column, params)
    t_all = frame[time_col].to_numpy(float) / UNITS[unit]
    e_all = frame[event_col].to_numpy(float)
    keep = np.isfinite(t_all) & np.isfinite(e_all) & np.array([v is not None for v in labels.tolist()], bool)
    if not keep.any():
        raise UserError(f"no patient of the filtered cohort has {endpoint_label.lower()} "
                        f"and {group_label} recorded")
    t, e, labels = t_all[keep], e_all[keep].astype(bool), labels[keep]
    study_ids = frame["study_id"].astype(str).to_numpy()[keep]
    breaks = time_breaks(params.get("breaks"), unit, float(t.max()))
    comparison = km_comparison(t, e, labels if column is not None else None, at=breaks)
    levels = [lvl for lvl in levels if lvl in comparison.curves]
    notes: list[str] = []
    reference = None
    hazard: dict[str, dict] = {}
    if len(levels) >= 2:
        reference = params.get("reference") or levels[0]
        if reference not in levels:
            if not _is_level(source, column, reference, cut):
                raise UserError(f"reference group {reference!r} is not a group of {group_label} "
                                f"({', '.join(levels)})")
            notes.append(f"the reference {reference} has no patients in the filtered cohort; "
                         f"HRs are against {levels[0]}")
            reference = levels[0]
        hazard = _hazard_ratios(t, e, labels, levels, reference, notes)
    ordered = column in ORDERED_COLUMNS
    trend = None
    if ordered and len(levels) > 2 and e.any():
        res = logrank_trend(t, e, labels, order=levels)
        trend = {"chisq": res["chisq"], "df": res["df"], "p": res["p"]}
    if len(levels) >= 2 and comparison.logrank is None:
        notes.append("no events: the log-rank test is undefined")
    groups = []
    for index, lvl in enumerate(levels):
        curve = comparison.curves[lvl]
        mask = labels == lvl
        median, med_lo, med_hi = curve.median()
        censored = curve.n_censor > 0
        at_risk, events_by, censored_by = _at_risk_rows(curve, breaks)
        groups.append(KMGroup(
            label=lvl, index=index, n=curve.n, events=curve.events, median=median, median_lower=med_lo,
            median_upper=med_hi, time=np.concatenate(([0.0], curve.time)),
            survival=np.concatenate(([1.0], curve.survival)), lower=np.concatenate(([1.0], curve.lower)),
            upper=np.concatenate(([1.0], curve.upper)), censor_time=curve.time[censored],
            censor_survival=curve.survival[censored], at_risk=at_risk, events_by=events_by,
            censored_by=censored_by, study_ids=study_ids[mask], follow_up=t[mask], event=e[mask],
            hr=None if lvl == reference else hazard.get(lvl)))
    return KMFigure(
        endpoint=endpoint, endpoint_label=endpoint_label, group=column, group_label=group_label, cut=cut,
        reference=reference, ordered=ordered, unit=unit, breaks=breaks, x_max=max(float(t.max()), breaks[-1]),
        groups=groups, logrank=None if comparison.logrank is None else comparison.logrank.to_dict(),
        trend=trend, n=int(keep.sum()), n_missing=int((~keep).sum()), notes=notes)


@dataclass(frozen=True)
class GroupingChoice:
    """A grouping the Kaplan-Meier view offers: ``column`` (None: all patients; the
    endpoint's risk group is ``RISK``), a label, and ``kind`` "category" or "number"."""

    column: str | None
    label: str
    kind: str


#: the grouping choice standing for the endpoint's own risk-group column
RISK = "@risk"


def grouping_choices(options) -> list[GroupingChoice]:
    """What the view offers, from the snapshot's filter options: all patients, the risk group
    (when a signature has been applied), CA19-9 (cut), TNM stage group, adjuvant
    chemotherapy, then every other categorical variable and every numeric one (cut)."""
    variables = {v.column: v for v in options.variables}
    out = [GroupingChoice(None, "All patients", "none")]
    if any(risk_group_column(ep) in variables for ep in ENDPOINTS):
        out.append(GroupingChoice(RISK, "Pathomics risk group", "category"))
    lead = ("ca19_9", "tnm_group", "adjuvant_chemotherapy")
    skip = set(NOT_GROUPINGS) | {risk_group_column(ep) for ep in ENDPOINTS}
    ordered = [variables[c] for c in lead if c in variables]
    ordered += [v for v in options.variables if v.kind == "category" and v.column not in lead]
    ordered += [v for v in options.variables if v.kind == "number" and v.column not in lead]
    for var in ordered:
        if var.column in skip:
            continue
        label = var.label.split(" (derived", 1)[0]
        suffix = (f", cut in {var.unit}" if var.unit else ", cut") if var.kind == "number" else ""
        out.append(GroupingChoice(var.column, label + suffix, var.kind))
        for derived in DERIVED_GROUPINGS.get(var.column, ()):
            out.append(GroupingChoice(derived, _derived_label(derived), "category"))
    return out


#: the study's derived analysis columns, offered after the column they are derived from
DERIVED_GROUPINGS = {"tnm_group": ("stage_2",), "t_stage": ("t_group",)}


def _derived_label(column: str) -> str:
    from pathomics_desktop.signature.report import subgroup_variables

    labels = {v.column: v.label for v in subgroup_variables()}
    return labels.get(column, column) + (" (T3-4 merged)" if column == "t_group" else "")


def median_text(group: KMGroup, unit: str) -> str:
    """``"31.9 (30.0-35.6)"`` (1 decimal in months, 2 in years); NR (not reached) where the
    median or a CI limit is undefined."""
    digits = 1 if unit == "months" else 2

    def number(v):
        return "NR" if v is None else f"{v:.{digits}f}"

    if group.median is None:
        return "NR"
    return f"{group.median:.{digits}f} ({number(group.median_lower)}-{number(group.median_upper)})"


def legend_rows(figure: KMFigure) -> list[list[str]]:
    """The legend table as the view and the exported figure write it: a header, then per group
    its label, n, events, median (95% CI), HR (95% CI) against the reference and p (HR and p
    blank without a reference group)."""
    from pathomics_desktop.figures.style import format_estimate_ci, format_p

    rows = [["Group", "n", "Events", f"Median, {figure.unit} (95% CI)", "HR (95% CI)", "p"]]
    for group in figure.groups:
        hr = group.hr or {}
        if figure.reference is None:
            hr_text, p_text = "", ""
        elif group.label == figure.reference:
            hr_text, p_text = "1 (reference)", ""
        else:
            hr_text = format_estimate_ci(hr.get("hr"), hr.get("hr_lower"), hr.get("hr_upper"))
            p_text = format_p(hr.get("p"))
        rows.append([group.label, str(group.n), str(group.events), median_text(group, figure.unit), hr_text, p_text])
    return rows
