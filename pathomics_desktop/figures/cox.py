"""The Cox models table: hazard ratios of chosen variables, as the Cox view shows them.

:func:`build_cox` fits, by calling :mod:`pathomics_desktop.stats.cox` (through
:func:`pathomics_desktop.stats.analyze_models.cox_result`, the same service as
``pathomics analyze cox``), one of three model sets on the filtered cohort:

* ``mode="univariate"``: one model per variable (rows missing that variable dropped for its
  model only);
* ``mode="multivariate"``: one model of all variables (complete cases);
* ``mode="screen"``: the study's Table 2 rule: a univariate model per variable
  (:func:`~pathomics_desktop.stats.cox.univariate_screen`), then one multivariable model of the
  variables whose likelihood-ratio p < ``threshold`` (default 0.05;
  :func:`~pathomics_desktop.stats.cox.multivariable_from_screen`). TNM stage group is screened
  but never a candidate (it is a function of T, N and M; the report's ``NOT_MULTIVARIABLE``).
  The screen itself is unadjusted, as in the study; strata or a center term apply to the
  multivariable model.

A categorical variable enters as dummies against a reference level (default: its first
level in codebook order present in the data; "low" for a pathomics risk group); a continuous
one per ``per`` units of its codebook unit (e.g. age per 10 years: the column divided by 10
before fitting, so HR = exp(10 b)). ``strata`` gives each level its own baseline hazard; the
center enters as a cluster (Lin-Wei robust sandwich SE, ``coxph(..., cluster=center)``) or as
a Gaussian random intercept (:func:`~pathomics_desktop.stats.frailty.fit_frailty`).

Each row: variable, level vs reference, HR with its Wald 95% CI exp(b -/+ 1.96 se), Wald p,
and the Grambsch-Therneau proportional-hazards test p of the variable
(:func:`~pathomics_desktop.stats.cox.cox_zph`, R ``cox.zph``), flagged where p < 0.05. Each
model: n, events, Harrell's C of its linear predictor, and the likelihood-ratio test
2 (l(b) - l(0)) on its df.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.style import format_estimate_ci, format_p

MODES = ("univariate", "multivariate", "screen")
CENTER_HANDLING = ("none", "cluster", "frailty")
PH_ALPHA = 0.05  #: a variable's PH test p below this is flagged
#: snapshot columns never offered as Cox covariates (outcomes and follow-up themselves)
NOT_COVARIATES = ("os_months", "rfs_months", "recurrence", "vital_status")
CENTER = "center"


# ----------------------------------------------------------------------------------------------
# the variables: kind, levels in codebook order, unit
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariableSpec:
    """A covariate as the models use it: ``kind`` "category" (``levels`` in codebook order,
    the first one the default reference) or "number" (``unit``)."""

    column: str
    label: str
    kind: str
    levels: tuple[str, ...] = ()
    unit: str = ""

    @property
    def categorical(self) -> bool:
        return self.kind == "category"


_OPTIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _options(source):
    """``source.options()`` once per analysis source (it costs a DuckDB query per column)."""
    options = _OPTIONS.get(source)
    if options is None:
        options = _OPTIONS[source] = source.options()
    return options


def risk_group_column(endpoint: str) -> str:
    """The risk-group column ``signature apply`` writes for an endpoint."""
    return f"pathomics_{endpoint}_group"


def variable_specs(source) -> list[VariableSpec]:
    """Every variable the Cox and forest views offer: the study's clinical variables first
    (derived groups included, :func:`~pathomics_desktop.signature.report.clinical_variables`),
    then the risk groups and everything else the snapshot holds."""
    from pathomics_desktop.signature.report import RISK_LEVELS, clinical_variables, subgroup_variables

    out: dict[str, VariableSpec] = {}
    for var in [*clinical_variables(), *subgroup_variables()]:
        if var.column in source.columns or var.column in _DERIVED:
            out.setdefault(var.column, VariableSpec(var.column, short_label(var.label), "category", var.levels))
    for option in _options(source).variables:
        if option.column in NOT_COVARIATES or option.column in out:
            continue
        if option.kind == "category":
            levels = RISK_LEVELS if option.column.startswith("pathomics_") and option.column.endswith("_group") \
                else option.levels
            out[option.column] = VariableSpec(option.column, short_label(option.label), "category", tuple(levels))
        else:
            out[option.column] = VariableSpec(option.column, short_label(option.label), "number", unit=option.unit)
    return list(out.values())


#: the derived analysis columns of ``AnalysisSource.frame`` (not in the snapshot file)
_DERIVED = ("age_group", "ca19_9_group", "t_group", "tnm_ordinal", "stage_2")


def variable_spec(source, column: str) -> VariableSpec:
    for spec in variable_specs(source):
        if spec.column == column:
            return spec
    if column == CENTER:
        return VariableSpec(CENTER, source.label(CENTER), "category", tuple(_options(source).centers))
    if column.startswith("pathomics_"):
        raise UserError("This project has no pathomics scores yet: apply a signature first "
                        "(`pathomics signature apply NAME --all`, or Jobs -> Signature apply), "
                        "or choose another variable")
    raise UserError(f"{column!r} is not a variable of the cohort snapshot")


def present_levels(frame, spec: VariableSpec) -> list[str]:
    """The levels of ``spec`` found in ``frame``, codebook order first, then any others."""
    from pathomics_desktop.stats.levels import factor

    _, found, _ = factor(frame[spec.column])  # the labels of the values present, in sorted order
    known = [lvl for lvl in spec.levels if lvl in found]
    return known + [lvl for lvl in found if lvl not in known]


def short_label(label: str) -> str:
    """A codebook label without its trailing explanation (``"Pathomics OS risk group
    (derived: ...)"`` -> ``"Pathomics OS risk group"``)."""
    cut = label.find(" (derived")
    return label[:cut] if cut > 0 else label


def per_text(per: float, unit: str) -> str:
    """``"per 10 years"``, ``"per year"``, ``"per U/mL"``, ``"per unit"``."""
    if per == 1:
        if not unit:
            return "per unit"
        return f"per {unit[:-1]}" if unit.endswith("s") and unit[:-1].isalpha() else f"per {unit}"
    return f"per {per:g} {unit or 'units'}"


# ----------------------------------------------------------------------------------------------
# the description
# ----------------------------------------------------------------------------------------------


@dataclass
class CoxRow:
    """One table row: a level of a categorical variable against its reference (the reference
    itself is a row with ``reference=True`` and no HR), or a continuous variable per ``per``
    units. ``uni_*`` come from the variable's univariate model, ``multi_*`` from the
    multivariable model (None where the mode has no such model or the variable is not in it).
    ``ph_p`` is the PH test of the variable in the model the row reports last (the
    multivariable model where there is one), ``ph_flag`` is ``ph_p < 0.05``."""

    variable: str
    label: str
    level: str
    term: str | None = None
    reference: bool = False
    uni_hr: float | None = None
    uni_lower: float | None = None
    uni_upper: float | None = None
    uni_p: float | None = None
    uni_p_variable: float | None = None  #: LR p of the whole variable (the screen's test)
    uni_n: int | None = None
    uni_events: int | None = None
    uni_c: float | None = None  #: Harrell's C of the variable's univariate model
    multi_hr: float | None = None
    multi_lower: float | None = None
    multi_upper: float | None = None
    multi_p: float | None = None
    ph_p: float | None = None
    ph_flag: bool = False
    selected: bool | None = None  #: screen mode: entered the multivariable model
    note: str | None = None
    first: bool = False  #: the variable's first row (carries the whole-variable cells)

    def display(self) -> dict[str, Any]:
        """The row with its journal-formatted text cells added; the whole-variable cells
        (LR p, n, events) only on the variable's first row."""
        d = asdict(self)
        ref = "1 (reference)" if self.reference else None
        if ref or self.uni_hr is not None:
            d["uni_text"] = ref or format_estimate_ci(self.uni_hr, self.uni_lower, self.uni_upper)
        else:
            d["uni_text"] = "not estimable" if self.note else "-"
        d["uni_p_text"] = "" if self.reference else format_p(self.uni_p)
        in_multi = self.multi_hr is not None or (self.reference and self.selected is not False)
        d["multi_text"] = (ref if in_multi else None) or format_estimate_ci(self.multi_hr, self.multi_lower,
                                                                            self.multi_upper)
        d["multi_p_text"] = "" if self.reference else format_p(self.multi_p)
        d["ph_text"] = "" if self.reference else (format_p(self.ph_p) + (" !" if self.ph_flag else ""))
        d["p_variable_text"] = format_p(self.uni_p_variable) if self.first and self.uni_p_variable is not None else ""
        if not self.first:
            d["label"] = ""
            d["uni_n"] = d["uni_events"] = d["uni_c"] = None
        return d


@dataclass
class CoxModelSummary:
    """A fitted model: its variables, n, events, Harrell's C and LR test (chi2, df, p);
    the global PH test p (None for frailty models); the center variance for frailty."""

    kind: str  #: "univariate" or "multivariable"
    variables: list[str]
    n: int
    events: int
    c_index: float
    lr_chisq: float
    lr_df: float
    lr_p: float | None
    ph_global_p: float | None = None
    frailty_variance: float | None = None
    robust: bool = False

    def text(self) -> str:
        """``n = 667, events = 412, C-index = 0.712, LR test chi2 = 85.3 on 4 df, p < 0.001``."""
        parts = [f"n = {self.n}", f"events = {self.events}", f"C-index = {self.c_index:.3f}",
                 f"LR test \u03c7\u00b2 = {self.lr_chisq:.2f} on {self.lr_df:g} df, p {_p_phrase(self.lr_p)}"]
        if self.ph_global_p is not None:
            parts.append(f"global PH test p {_p_phrase(self.ph_global_p)}")
        if self.frailty_variance is not None:
            parts.append(f"center random-effect variance = {self.frailty_variance:.3f}")
        if self.robust:
            parts.append("robust SE clustered by center")
        return ", ".join(parts)


def _p_phrase(p: float | None) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


@dataclass
class CoxTable:
    """What the Cox view shows (see the module docstring); ``to_dict()`` is plain JSON."""

    endpoint: str
    mode: str
    variables: list[str]
    rows: list[CoxRow]
    models: list[CoxModelSummary]
    threshold: float | None = None
    strata: str | None = None
    center: str = "none"
    selected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def multivariable(self) -> CoxModelSummary | None:
        return next((m for m in self.models if m.kind == "multivariable"), None)

    def summary_text(self) -> str:
        """The line under the table: the multivariable model's n, events, C, LR test; in
        univariate mode the range of n over the models."""
        multi = self.multivariable
        if multi is not None:
            head = "Multivariable model" if self.mode == "screen" else "Model"
            return f"{head}: {multi.text()}"
        if self.mode == "screen":
            return f"No variable had univariate p < {self.threshold:g}: no multivariable model."
        if not self.models:
            return "No model could be fitted."
        ns = sorted({m.n for m in self.models})
        n = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]}"
        return f"{len(self.models)} univariate model(s), {n}; each variable's n, C-index and LR test in its rows"

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "mode": self.mode, "variables": list(self.variables),
                "threshold": self.threshold, "strata": self.strata, "center": self.center,
                "selected": list(self.selected), "rows": [asdict(r) for r in self.rows],
                "models": [asdict(m) for m in self.models], "summary": self.summary_text(),
                "notes": list(self.notes)}


# ----------------------------------------------------------------------------------------------
# the builder
# ----------------------------------------------------------------------------------------------


def _endpoint(params: dict) -> tuple[str, str, str]:
    from pathomics_desktop.signature.report import ENDPOINT_COLUMNS

    endpoint = params.get("endpoint", "os")
    if endpoint not in ENDPOINT_COLUMNS:
        raise UserError(f"endpoint must be one of {', '.join(ENDPOINT_COLUMNS)}, got {endpoint!r}")
    return (endpoint, *ENDPOINT_COLUMNS[endpoint])


def _summary(kind: str, variables: list[str], result) -> CoxModelSummary:
    """A :class:`CoxModelSummary` of a ``CoxModelResult`` (Cox or frailty fit)."""
    fit = result.fit
    if hasattr(fit, "lr"):
        lr_chisq, lr_df, lr_p = fit.lr["chisq"], fit.lr["df"], fit.lr["p"]
    else:  # FrailtyFit: R's "Likelihood ratio test" on the effective df
        lr_chisq, lr_df, lr_p = fit.lr_chisq, fit.lr_df, fit.lr_p
    ph = result.ph_test
    return CoxModelSummary(kind, list(variables), int(fit.n), int(fit.events), float(result.concordance),
                           float(lr_chisq), float(lr_df), lr_p, ph["GLOBAL"]["p"] if ph else None,
                           result.frailty_variance, bool(getattr(fit, "robust", False)))


def _level_rows(spec: VariableSpec, reference: str | None, levels: list[str], per: float) -> list[CoxRow]:
    """The empty rows of a variable (reference first, then the other levels; one row per
    ``per`` units for a number)."""
    if not spec.categorical:
        return [CoxRow(spec.column, spec.label, per_text(per, spec.unit), term=spec.column, first=True)]
    rows = [CoxRow(spec.column, spec.label, f"{reference} (reference)", reference=True, first=True)]
    rows += [CoxRow(spec.column, spec.label, f"{lvl} vs {reference}", term=f"{spec.column}={lvl}")
             for lvl in levels if lvl != reference]
    return rows


def _fill(rows: list[CoxRow], terms: dict[str, dict], prefix: str) -> None:
    """Copy HR, CI and p of ``terms`` (``table()`` rows by term name) into ``rows``."""
    for row in rows:
        got = terms.get(row.term) if row.term else None
        if got is not None:
            setattr(row, f"{prefix}_hr", got["hr"])
            setattr(row, f"{prefix}_lower", got["hr_lower"])
            setattr(row, f"{prefix}_upper", got["hr_upper"])
            setattr(row, f"{prefix}_p", got["p"])


def _set_ph(rows: list[CoxRow], result, variable: str) -> None:
    ph = result.ph_test.get(variable) if result.ph_test else None
    for row in rows:
        row.ph_p = None if ph is None else ph["p"]
        row.ph_flag = bool(ph is not None and ph["p"] is not None and ph["p"] < PH_ALPHA and not row.reference)


def build_cox(source, frame, params: dict) -> CoxTable:
    """The Cox table of ``params`` on ``frame`` (see the module docstring).

    params: ``endpoint`` ("os"/"rfs"), ``variables`` (columns), ``mode`` (univariate,
    multivariate, screen), ``threshold`` (screen, default 0.05), ``reference`` ({column:
    level}), ``per`` ({column: units per HR step}, default 1), ``strata`` (a column or None),
    ``center`` ("none", "cluster", "frailty").
    """
    from pathomics_desktop.signature.report import NOT_MULTIVARIABLE
    from pathomics_desktop.stats.analyze_models import cox_result
    from pathomics_desktop.stats.cox import multivariable_from_screen, univariate_screen

    endpoint, time, event = _endpoint(params)
    mode = params.get("mode", "univariate")
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    variables = list(dict.fromkeys(params.get("variables") or []))
    if not variables:
        raise UserError("Tick at least one variable for the Cox model.")
    center = params.get("center") or "none"
    if center not in CENTER_HANDLING:
        raise UserError(f"center handling must be one of {', '.join(CENTER_HANDLING)}, got {center!r}")
    strata = params.get("strata") or None
    threshold = float(params.get("threshold", 0.05)) if mode == "screen" else None
    if threshold is not None and not 0 < threshold <= 1:
        raise UserError(f"the screening threshold must be in (0, 1], got {threshold}")
    if strata in variables:
        raise UserError(f"{source.label(strata)} is both a covariate and the strata; untick it or choose other strata")
    if center == "frailty" and strata:
        raise UserError("a center random effect cannot be combined with strata; choose one")
    if center != "none" and strata == CENTER:
        raise UserError("the center is already the strata; set center handling to 'not in the model'")
    if center != "none" and CENTER in variables:
        raise UserError("the center is already a covariate; set center handling to none")
    specs = {v: variable_spec(source, v) for v in variables}
    extra = [c for c in (strata, CENTER if center != "none" else None) if c]
    for column in [time, event, *variables, *extra]:
        if column not in frame.columns:
            raise UserError(f"column {column!r} is not in the cohort snapshot")
    data = frame.dropna(subset=[time, event, *extra]).reset_index(drop=True)
    notes: list[str] = []
    dropped = len(frame) - len(data)
    if dropped:
        notes.append(f"{dropped} patient(s) without {endpoint.upper()} time, strata or center left out")
    if center != "none":
        n_centers = data[CENTER].nunique()
        if n_centers < 2:
            raise UserError(f"center as a {'cluster' if center == 'cluster' else 'random effect'} needs at "
                            f"least two centers; the cohort filter leaves {n_centers}")
        if center == "cluster" and n_centers < 10:
            notes.append(f"robust SE from {n_centers} center clusters: few clusters, interpret with care")
    # continuous covariates per `per` units: rescale a copy of the column
    per = {v: float((params.get("per") or {}).get(v, 1.0)) for v in variables if not specs[v].categorical}
    for v, step in per.items():
        if not step > 0:
            raise UserError(f"the HR step of {specs[v].label} must be > 0, got {step}")
        if step != 1:
            data[v] = data[v].astype(float) / step
    categorical = [v for v in variables if specs[v].categorical]
    wanted = dict(params.get("reference") or {})
    reference: dict[str, str] = {}
    levels: dict[str, list[str]] = {}
    for v in categorical:
        levels[v] = present_levels(data, specs[v])
        if not levels[v]:
            raise UserError(f"{specs[v].label} has no recorded value in the filtered cohort")
        ref = wanted.get(v) or levels[v][0]
        if ref not in levels[v]:
            notes.append(f"reference {ref!r} of {specs[v].label} is not in the filtered cohort; "
                         f"{levels[v][0]!r} used")
            ref = levels[v][0]
        reference[v] = ref
    rows = {v: _level_rows(specs[v], reference.get(v), levels.get(v, []), per.get(v, 1.0)) for v in variables}
    adjust = {"strata": [strata] if strata else None, "cluster": CENTER if center == "cluster" else None,
              "frailty": CENTER if center == "frailty" else None}
    models: list[CoxModelSummary] = []
    selected: list[str] = []

    def fit(columns: list[str], kind: str):
        sub = data.dropna(subset=columns).reset_index(drop=True)
        result = cox_result(sub, time, event, columns, categorical=[c for c in columns if c in categorical],
                            reference={c: reference[c] for c in columns if c in reference}, **adjust)
        models.append(_summary(kind, columns, result))
        return result

    if mode == "univariate":
        for v in variables:
            try:
                result = fit([v], "univariate")
            except UserError as exc:
                for row in rows[v]:
                    row.note = str(exc)
                continue
            _fill(rows[v], {r["term"]: r for r in result.fit.table()}, "uni")
            model = models[-1]
            for row in rows[v]:
                row.uni_n, row.uni_events, row.uni_p_variable = model.n, model.events, model.lr_p
                row.uni_c = model.c_index
            _set_ph(rows[v], result, v)
    elif mode == "multivariate":
        result = fit(variables, "multivariable")
        _fill([r for v in variables for r in rows[v]], {r["term"]: r for r in result.fit.table()}, "multi")
        for v in variables:
            _set_ph(rows[v], result, v)
    else:
        candidates = [v for v in variables if v not in NOT_MULTIVARIABLE]
        notes += [text for v, text in NOT_MULTIVARIABLE.items() if v in variables]
        screen = multivariable_from_screen(data, time, event, candidates, threshold=threshold,
                                           categorical=categorical, reference=reference)
        uni = screen["univariate"] + univariate_screen(
            data, time, event, [v for v in variables if v in NOT_MULTIVARIABLE], categorical=categorical,
            reference=reference)
        selected = list(screen["selected"])
        for v in variables:
            mine = [r for r in uni if r["variable"] == v]
            _fill(rows[v], {r["term"]: r for r in mine if "error" not in r}, "uni")
            for row in rows[v]:
                row.selected = v in selected
                first = mine[0] if mine else {}
                row.uni_p_variable = first.get("p_term_lr")
                row.uni_n, row.uni_events = first.get("n"), first.get("events")
                row.note = first.get("error")
        if selected:
            if center != "none" or strata:
                notes.append("the screen is unadjusted (the study's rule); strata and the center term apply "
                             "to the multivariable model")
            result = fit(selected, "multivariable")
            _fill([r for v in selected for r in rows[v]], {r["term"]: r for r in result.fit.table()}, "multi")
            for v in selected:
                _set_ph(rows[v], result, v)
    if center == "frailty":
        notes.append("proportional-hazards tests are not available for the center random-effect model")
    if any(r.ph_flag for rs in rows.values() for r in rs):
        notes.append(f"! proportional-hazards test p < {PH_ALPHA:g} (Grambsch-Therneau): the HR changes with time")
    return CoxTable(endpoint, mode, variables, [r for v in variables for r in rows[v]], models,
                    threshold=threshold, strata=strata, center=center, selected=selected, notes=notes)


def study_variables(source, endpoint: str = "os") -> list[str]:
    """The study's Table 2 candidates: the clinical variables of Table 1 and, once a signature
    is applied, the endpoint's risk group."""
    from pathomics_desktop.signature.report import clinical_variables

    out = [v.column for v in clinical_variables()]
    group = risk_group_column(endpoint)
    if group in source.columns:
        out.append(group)
    return out


def table_header(mode: str) -> list[tuple[str, str]]:
    """(row key, column title) of the Cox table in ``mode`` (the view and Copy data use it;
    a title may hold a line break)."""
    head = [("label", "Variable"), ("level", "Level")]
    uni = [("uni_text", "Univariate\nHR (95% CI)"), ("uni_p_text", "p"), ("p_variable_text", "LR p\n(variable)")]
    multi = [("multi_text", "Multivariable\nHR (95% CI)"), ("multi_p_text", "p")]
    ph = [("ph_text", "PH test\np")]
    if mode == "univariate":
        return head + uni + [("uni_n", "n"), ("uni_events", "events"), ("uni_c", "C-index")] + ph
    if mode == "multivariate":
        return head + [("multi_text", "HR (95% CI)"), ("multi_p_text", "p")] + ph
    return head + uni + multi + ph


def table_rows(table: CoxTable) -> tuple[list[str], list[list[Any]]]:
    """Copy data: the header and the text cells of every row."""
    columns = table_header(table.mode)
    rows = [[r.display().get(key) for key, _ in columns] for r in table.rows]
    return [title.replace("\n", " ") for _, title in columns], rows

