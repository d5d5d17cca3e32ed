"""The subgroup forest: the HR of one exposure within each level of each subgroup variable.

:func:`build_forest` calls :func:`pathomics_desktop.stats.subgroups.subgroup_analysis` (the
same function as the report's Figures S2-S5 and ``pathomics analyze subgroups``): within each
level a Cox model of the exposure alone gives HR, Wald 95% CI exp(b -/+ 1.96 se) and p; the
interaction p of a variable is the likelihood-ratio test of ``exposure * S`` against
``exposure + S``; the overall row is the exposure model on every patient. Efron ties.

The exposure is by default the endpoint's pathomics risk group, high vs low; the subgroups
default to the study's (:func:`~pathomics_desktop.signature.report.subgroup_variables`: age,
sex, surgery, differentiation, T, N, stage I-II / III-IV, CA19-9, adjuvant chemotherapy,
diabetes, hypertension, microvascular and perineural invasion), levels in codebook order.

**Flag rule:** a row is flagged (drawn grey, marked with a dagger) when its subgroup has fewer
than ``min_events`` events (default 10, the usual rule of thumb of about 10 events per Cox
parameter; Peduzzi et al. 1995) or when its HR is not estimable (no events, one exposure
level only, or a diverging model: the ``note`` of ``stats.subgroups`` says which).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.cox import (present_levels, risk_group_column, short_label, variable_spec,
                                          variable_specs)
from pathomics_desktop.figures.style import format_estimate_ci, format_p

MIN_EVENTS = 10
OVERALL = "Overall"


@dataclass
class ForestRow:
    """One drawn row: ``kind`` "overall", "header" (a subgroup variable: its label and
    interaction p) or "level" (the exposure HR among ``variable = level``)."""

    kind: str
    variable: str
    label: str
    level: str | None = None
    n: int | None = None
    events: int | None = None
    hr: float | None = None
    hr_lower: float | None = None
    hr_upper: float | None = None
    p: float | None = None
    p_interaction: float | None = None
    flagged: bool = False
    note: str | None = None

    @property
    def estimable(self) -> bool:
        return all(v is not None and math.isfinite(v) and v > 0 for v in (self.hr, self.hr_lower, self.hr_upper))

    @property
    def clickable(self) -> bool:
        return self.kind in ("overall", "level")

    def texts(self) -> dict[str, str]:
        """The text columns as drawn: subgroup, n, events, HR (95% CI), p, interaction p."""
        subgroup = self.label if self.kind != "level" else f"  {self.level}"
        if self.flagged:
            subgroup += " \u2020"
        if self.kind == "header":
            return {"subgroup": subgroup, "n": "", "events": "", "hr": "", "p": "",
                    "p_interaction": format_p(self.p_interaction) if self.p_interaction is not None else "-"}
        hr = format_estimate_ci(self.hr, self.hr_lower, self.hr_upper) if self.estimable else "not estimable"
        return {"subgroup": subgroup, "n": str(self.n), "events": str(self.events), "hr": hr,
                "p": format_p(self.p), "p_interaction": ""}


@dataclass
class ForestFigure:
    """What the forest view draws, top to bottom (see the module docstring)."""

    endpoint: str
    exposure: str
    exposure_label: str
    exposure_level: str
    reference_level: str
    rows: list[ForestRow]
    min_events: int = MIN_EVENTS
    notes: list[str] = field(default_factory=list)

    @property
    def flag_rule(self) -> str:
        return (f"\u2020 fewer than {self.min_events} events in the subgroup, or HR not estimable: "
                "interpret with care")

    def interaction_p(self) -> dict[str, float | None]:
        return {r.variable: r.p_interaction for r in self.rows if r.kind == "header"}

    def km_request(self, row: ForestRow) -> dict[str, Any]:
        """The KM view's request for a row: the exposure groups within that subgroup."""
        request: dict[str, Any] = {"endpoint": self.endpoint, "group": self.exposure}
        if row.kind == "level":
            request["subgroup"] = (row.variable, row.level)
        return request

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "exposure": self.exposure, "exposure_label": self.exposure_label,
                "comparison": f"{self.exposure_level} vs {self.reference_level}", "min_events": self.min_events,
                "flag_rule": self.flag_rule, "rows": [asdict(r) | {"text": r.texts()} for r in self.rows],
                "notes": list(self.notes)}


def build_forest(source, frame, params: dict) -> ForestFigure:
    """The forest of ``params`` on ``frame``: ``endpoint`` ("os"/"rfs"), ``exposure``
    (default the endpoint's risk group), ``reference`` (the exposure's reference level; default
    "low" for a risk group, else its first level in codebook order), ``subgroups`` (default
    the study's), ``min_events`` (the flag rule, default 10)."""
    from pathomics_desktop.signature.report import ENDPOINT_COLUMNS, subgroup_variables
    from pathomics_desktop.stats.subgroups import subgroup_analysis

    endpoint = params.get("endpoint", "os")
    if endpoint not in ENDPOINT_COLUMNS:
        raise UserError(f"endpoint must be one of {', '.join(ENDPOINT_COLUMNS)}, got {endpoint!r}")
    time, event = ENDPOINT_COLUMNS[endpoint]
    exposure = params.get("exposure") or risk_group_column(endpoint)
    if exposure not in frame.columns:
        raise UserError(f"{exposure} is not in the cohort snapshot: apply a signature first "
                        "(pathomics signature apply), or choose another exposure")
    subgroups = params.get("subgroups")
    if subgroups is None:
        subgroups = [v.column for v in subgroup_variables() if v.column in frame.columns]
    subgroups = [s for s in dict.fromkeys(subgroups) if s != exposure]
    if not subgroups:
        raise UserError("Choose at least one subgroup variable other than the exposure.")
    min_events = int(params.get("min_events", MIN_EVENTS))
    spec = variable_spec(source, exposure)
    # the forest's columns and complete rows, in one copy
    complete = frame[[time, event, exposure]].notna().all(axis=1).to_numpy()
    data = frame.loc[complete, list(dict.fromkeys([time, event, exposure, *subgroups]))].reset_index(drop=True)
    notes: list[str] = []
    if len(data) < len(frame):
        notes.append(f"{len(frame) - len(data)} patient(s) without {exposure} left out")
    if len(data) == 0:
        raise UserError(f"No patient in the filtered cohort has {short_label(spec.label)} recorded.")
    if spec.categorical:
        levels = present_levels(data, spec)
        if len(levels) != 2:
            raise UserError(f"The exposure {short_label(spec.label)} needs exactly two levels in the filtered "
                            f"cohort; it has {len(levels)} ({', '.join(levels)}). Widen the filter or pick "
                            "a two-level exposure.")
        reference = params.get("reference") or levels[0]
        if reference not in levels:
            raise UserError(f"{reference!r} is not a level of {short_label(spec.label)} ({', '.join(levels)})")
        other = levels[1] if reference == levels[0] else levels[0]
    else:
        reference, other = "", f"per {spec.unit or 'unit'}"
    offered = {v.column: v for v in variable_specs(source)}
    specs = {s: offered.get(s) or variable_spec(source, s) for s in subgroups}
    # levels present, in codebook order first (as present_levels orders them)
    analysis = subgroup_analysis(data, time, event, exposure, subgroups,
                                 reference=reference if spec.categorical else None,
                                 level_preference={s: specs[s].levels for s in subgroups})
    rows: list[ForestRow] = []
    for res in analysis.rows:
        if res.variable == OVERALL:
            rows.append(_row("overall", OVERALL, "Overall", res, min_events))
            continue
        label = short_label(specs[res.variable].label)
        if rows[-1].variable != res.variable:
            rows.append(ForestRow("header", res.variable, label, p_interaction=res.p_interaction))
        rows.append(_row("level", res.variable, label, res, min_events))
    return ForestFigure(endpoint, exposure, short_label(spec.label), other, reference, rows, min_events, notes)


def _row(kind: str, variable: str, label: str, res, min_events: int) -> ForestRow:
    row = ForestRow(kind, variable, label, res.level if kind == "level" else None, res.n, res.events,
                    res.hr, res.hr_lower, res.hr_upper, res.p, note=res.note)
    row.flagged = res.events < min_events or not row.estimable
    return row


def table_rows(figure: ForestFigure) -> tuple[list[str], list[list[Any]]]:
    """Copy data: one line per drawn row, the numbers unformatted beside the text."""
    header = ["subgroup", "level", "n", "events", "HR", "HR lower 95%", "HR upper 95%", "p", "interaction p",
              "flagged"]
    out = []
    for r in figure.rows:
        out.append([r.label, r.level or "", r.n, r.events, r.hr, r.hr_lower, r.hr_upper, r.p, r.p_interaction,
                    "yes" if r.flagged else ""])
    return header, out
