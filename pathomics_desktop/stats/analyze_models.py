"""``pathomics analyze km|cox|subgroups|table1`` handlers (heavy imports inside handlers).

Each ``*_result`` function computes from a loaded frame and returns the result object that
the GUI shows and the CLI prints (``to_dict()`` for ``--json``, ``summary()`` for text).
JSON output keys (exactly):

* km (:class:`~pathomics_desktop.stats.km.KaplanMeierComparison`): ``{"groups": [{"group",
  "n", "events", "median", "median_lower", "median_upper", "at": [{"time", "survival",
  "lower", "upper", "at_risk"}]}], "logrank": {"chisq", "df", "p"} | null}``
* cox (:class:`~pathomics_desktop.stats.cox.CoxModelResult`): ``{"n", "events", "terms":
  [{"term", "coef", "se", "hr", "hr_lower", "hr_upper", "z", "p"}], "loglik",
  "concordance", "frailty": {"variance"} | null, "ph_test": {term: {"chisq", "df", "p"},
  ..., "GLOBAL": {...}} | null}`` (se is the robust SE with --cluster; ph_test is null
  for frailty models)
* subgroups (:class:`~pathomics_desktop.stats.subgroups.SubgroupAnalysis`): ``{"rows":
  [{"variable", "level", "n", "events", "hr", "hr_lower", "hr_upper", "p",
  "p_interaction"}]}``
* table1 (:class:`~pathomics_desktop.stats.table1.BaselineTable`): ``{"groups", "rows":
  [{"variable", "level", "summary": {group: text}, "p", "test"}]}``
"""

from __future__ import annotations

import argparse

from pathomics_desktop.errors import UserError


def _csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _references(values: list[str] | None) -> dict[str, str]:
    out = {}
    for item in values or []:
        for part in _csv(item):
            if "=" not in part:
                raise UserError(f"--reference needs VAR=LEVEL, got {part!r}")
            var, level = part.split("=", 1)
            out[var.strip()] = level.strip()
    return out


def _times(text: str | None) -> list[float]:
    out = []
    for part in _csv(text):
        try:
            out.append(float(part))
        except ValueError:
            raise UserError(f"--at needs numbers separated by commas, got {part!r}") from None
    return out


def _survival_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--time", required=True, help="follow-up time column")
    parser.add_argument("--event", required=True, help="event column (0/1, or see --event-value)")
    parser.add_argument("--event-value", default=None,
                        help="value of the event column that means 'event' (others: censored)")


def register(analyze_sub) -> None:
    """Add km, cox, subgroups and table1 to the ``analyze`` sub-parsers."""
    from pathomics_desktop.stats.cli import add_common_arguments

    km = analyze_sub.add_parser("km", help="Kaplan-Meier estimates, medians and log-rank test")
    add_common_arguments(km)
    _survival_args(km)
    km.add_argument("--group", default=None, help="group column (log-rank test across groups)")
    km.add_argument("--strata", default=None, help="stratify the log-rank test by this column")
    km.add_argument("--at", default=None, help="times for survival/at-risk, e.g. 12,36,60")
    km.set_defaults(func=run_km)

    cox = analyze_sub.add_parser("cox", help="Cox proportional-hazards model")
    add_common_arguments(cox)
    _survival_args(cox)
    cox.add_argument("--covariates", required=True, help="comma-separated covariates")
    cox.add_argument("--categorical", default=None, help="covariates to treat as categories")
    cox.add_argument("--reference", action="append", default=None,
                     help="reference level VAR=LEVEL (repeatable or comma-separated)")
    cox.add_argument("--strata", default=None, help="stratification column(s), comma-separated")
    cox.add_argument("--cluster", default=None, help="cluster column: robust (sandwich) SE")
    cox.add_argument("--frailty", default=None,
                     help="center column: Gaussian random intercept (mixed-effects Cox)")
    cox.add_argument("--ties", choices=("efron", "breslow"), default="efron")
    cox.set_defaults(func=run_cox)

    sg = analyze_sub.add_parser("subgroups", help="exposure HR within subgroups (forest plot)")
    add_common_arguments(sg)
    _survival_args(sg)
    sg.add_argument("--exposure", required=True, help="exposure column (numeric or two levels)")
    sg.add_argument("--exposure-reference", default=None, help="reference level of the exposure")
    sg.add_argument("--subgroups", required=True, help="comma-separated subgroup columns")
    sg.set_defaults(func=run_subgroups)

    t1 = analyze_sub.add_parser("table1", help="baseline characteristics by group (Table 1)")
    add_common_arguments(t1)
    t1.add_argument("--by", required=True, help="group column")
    t1.add_argument("--columns", required=True, help="comma-separated variables")
    t1.add_argument("--categorical", default=None, help="variables to treat as categories")
    t1.add_argument("--digits", type=int, default=1)
    t1.set_defaults(func=run_table1)


def _load(args, columns, *, events=(), times=()):
    from pathomics_desktop.stats.data import load_analysis_table

    frame, dropped = load_analysis_table(args.data, columns, event_columns=list(events),
                                         event_value=getattr(args, "event_value", None),
                                         project_dir=args.project, time_columns=list(times))
    args.notes = [f"{dropped} row(s) with missing values dropped"] if dropped else []
    if len(frame) == 0:
        raise UserError(f"{args.data}: no complete rows for columns {', '.join(columns)}")
    return frame


def km_result(frame, time: str, event: str, group: str | None = None, *,
              at: list[float] = (), strata: str | None = None):
    """Kaplan-Meier curves per group and the log-rank test (``KaplanMeierComparison``)."""
    from pathomics_desktop.stats.km import km_comparison

    return km_comparison(frame[time].to_numpy(), frame[event].to_numpy(),
                         frame[group].tolist() if group else None, at=at,
                         strata=frame[strata].to_numpy() if strata else None)


def run_km(args) -> int:
    from pathomics_desktop.stats.data import emit

    cols = [args.time, args.event] + [c for c in (args.group, args.strata) if c]
    frame = _load(args, cols, events=[args.event], times=[args.time])
    return emit(km_result(frame, args.time, args.event, args.group, at=_times(args.at),
                          strata=args.strata), args)


def cox_result(frame, time: str, event: str, covariates: list[str], *,
               categorical: list[str] = (), reference: dict | None = None,
               strata: list[str] | None = None, cluster: str | None = None,
               frailty: str | None = None, ties: str = "efron"):
    """A Cox model, or with ``frailty`` a Gaussian center-frailty model (``CoxModelResult``).

    The frailty model's concordance is Harrell's C of the linear predictor plus the
    estimated center effect (as R ``coxph(... + frailty(center))``)."""
    import numpy as np

    from pathomics_desktop.stats.cox import CoxModelResult, cox_zph, fit_cox

    if frailty:
        from pathomics_desktop.stats.concordance import c_from_counts, concordance_counts
        from pathomics_desktop.stats.cox import design_matrix
        from pathomics_desktop.stats.frailty import fit_frailty
        from pathomics_desktop.stats.levels import level_label

        if strata or cluster:
            raise UserError("--frailty cannot be combined with --strata or --cluster")
        fit = fit_frailty(frame, time, event, covariates, frailty, categorical=categorical,
                          reference=reference, ties=ties)
        X, _, _ = design_matrix(frame, covariates, categorical=categorical, reference=reference)
        effects = dict(zip(fit.centers, fit.center_effects))
        lp = X @ fit.coef + np.array([effects[level_label(c)] for c in frame[frailty].tolist()])
        counts = concordance_counts(frame[time].to_numpy(), frame[event].to_numpy() == 1, lp)
        return CoxModelResult(fit, c_from_counts(counts), None)
    fit = fit_cox(frame, time, event, covariates, categorical=categorical, reference=reference,
                  strata=strata or None, cluster=cluster, ties=ties)
    return CoxModelResult(fit, fit.concordance, cox_zph(fit))


def run_cox(args) -> int:
    from pathomics_desktop.stats.data import emit

    covariates = _csv(args.covariates)
    strata = _csv(args.strata)
    extra = strata + [c for c in (args.cluster, args.frailty) if c]
    frame = _load(args, [args.time, args.event, *covariates, *extra], events=[args.event],
                  times=[args.time])
    result = cox_result(frame, args.time, args.event, covariates,
                        categorical=_csv(args.categorical), reference=_references(args.reference),
                        strata=strata, cluster=args.cluster, frailty=args.frailty,
                        ties=args.ties)
    return emit(result, args)


def run_subgroups(args) -> int:
    from pathomics_desktop.stats.data import emit, load_analysis_table
    from pathomics_desktop.stats.subgroups import subgroup_analysis

    subgroups = _csv(args.subgroups)
    core = [args.time, args.event, args.exposure]
    # a row missing one subgroup value still counts for the other subgroups
    frame, dropped = load_analysis_table(args.data, core + subgroups, event_columns=[args.event],
                                         event_value=args.event_value, project_dir=args.project,
                                         time_columns=[args.time], required=core)
    args.notes = [f"{dropped} row(s) with missing time/event/exposure dropped"] if dropped else []
    return emit(subgroup_analysis(frame, args.time, args.event, args.exposure, subgroups,
                                  reference=args.exposure_reference), args)


def table1_result(frame, by: str, columns: list[str], *, categorical: list[str] = (),
                  digits: int = 1):
    """Table 1 of ``columns`` by ``by`` (``BaselineTable``)."""
    from pathomics_desktop.stats.table1 import baseline_table

    return baseline_table(frame, by, columns, categorical=categorical, digits=digits)


def run_table1(args) -> int:
    from pathomics_desktop.stats.data import emit, load_analysis_table

    columns = _csv(args.columns)
    # Table 1 keeps rows with missing values (counted per group); only rows without a
    # group value are left out.
    frame, dropped = load_analysis_table(args.data, [args.by, *columns],
                                         project_dir=args.project, required=[args.by])
    args.notes = [f"{dropped} row(s) without a value of {args.by!r} left out"] if dropped else []
    return emit(table1_result(frame, args.by, columns, categorical=_csv(args.categorical),
                              digits=args.digits), args)
