"""``pathomics analyze`` sub-commands for marker evaluation: cindex, tdauc, cutpoint, lasso-cox,
meta and roc.

Every sub-command reads a table (CSV/Excel/Parquet or a project table, see
:func:`pathomics_desktop.stats.data.load_analysis_table`), drops rows with missing values in
the columns it uses, and prints the result as text or, with ``--json``, as one JSON object with
exactly the documented keys (``null`` where a value does not apply). Heavy imports happen inside
the handlers.
"""

from __future__ import annotations

import argparse

from pathomics_desktop.errors import UserError

__all__ = ["register"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="table file (CSV, Excel, Parquet) or a project table name")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--event-value", default=None, metavar="V", help="value of the event/label column that means 'event' (default 1/True)")
    p.add_argument("--project", default=None, metavar="DIR", help="project folder to resolve DATA in")


def _survival_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time", required=True, metavar="T", help="follow-up time column")
    p.add_argument("--event", required=True, metavar="E", help="event indicator column (1 = event)")


def _csv_list(text: str, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UserError(f"{what} is empty")
    return items


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in _csv_list(text, what)]
    except ValueError as exc:
        raise UserError(f"{what} must be numbers separated by commas (got {text!r})") from exc


def _load(args, columns, event_columns=(), time_columns=()):
    """Complete rows of ``columns``; every non-event column must be numeric (UserError names it)."""
    import pandas as pd

    from pathomics_desktop.stats.data import load_analysis_table

    df, dropped = load_analysis_table(
        args.data, columns, event_columns=tuple(event_columns), event_value=args.event_value,
        project_dir=args.project, time_columns=tuple(time_columns),
    )
    if len(df) == 0:
        raise UserError(f"{args.data}: no complete rows for columns {', '.join(columns)}")
    for col in columns:
        if col in event_columns:
            continue
        numeric = pd.to_numeric(df[col], errors="coerce")
        bad = numeric.isna()
        if bad.any():
            pos = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(f"{args.data}: column {col!r} is not numeric ({df[col].iloc[pos]!r})")
        df[col] = numeric.astype(float)
    if dropped:
        args.notes = [f"{dropped} row(s) with missing values in {', '.join(columns)} were left out"]
    return df


def _emit(result, args) -> int:
    """Print a result object (or, for lasso-cox, a dict) via the shared emitter (NaN/inf
    become ``null``; numpy scalars become numbers)."""
    from pathomics_desktop.stats.data import emit

    emit(result, args)
    return 0


# ----------------------------------------------------------------------------------------------
# handlers
# ----------------------------------------------------------------------------------------------


def _cindex(args) -> int:
    from pathomics_desktop.stats import concordance as cc

    df = _load(args, [args.time, args.event, args.marker], [args.event], [args.time])
    t, e, x = df[args.time].to_numpy(), df[args.event].to_numpy(), df[args.marker].to_numpy()
    if args.tau is not None and not args.uno:
        raise UserError("--tau applies to Uno's C only (add --uno)")
    method = "uno" if args.uno else "harrell"
    if args.bootstrap:
        res = cc.bootstrap_c(t, e, x, n_boot=args.bootstrap, seed=args.seed, method=method, tau=args.tau)
    elif args.uno:
        res = cc.uno_c(t, e, x, args.tau)
    else:
        res = cc.harrell_c(t, e, x)
    return _emit(res, args)


def _tdauc(args) -> int:
    from pathomics_desktop.stats import tdroc

    times = _floats(args.at, "--at")
    df = _load(args, [args.time, args.event, args.marker], [args.event], [args.time])
    t, e, x = df[args.time].to_numpy(), df[args.event].to_numpy(), df[args.marker].to_numpy()
    if args.bootstrap:
        res = tdroc.bootstrap_td_auc(t, e, x, times, n_boot=args.bootstrap, seed=args.seed)
    else:
        res = tdroc.cumulative_dynamic_auc(t, e, x, times)
    return _emit(res, args)


def _cutpoint(args) -> int:
    from pathomics_desktop.stats import cutpoint as cp

    df = _load(args, [args.time, args.event, args.marker], [args.event], [args.time])
    t, e, x = df[args.time].to_numpy(), df[args.event].to_numpy(), df[args.marker].to_numpy()
    if args.method == "maxstat":
        res = cp.maxstat_cutpoint(t, e, x, minprop=args.minprop)
    else:
        res = cp.xtile(t, e, x, minprop=args.minprop, n_perm=args.permutations, seed=args.seed)
    return _emit(res, args)


def _lasso(args) -> int:
    from pathomics_desktop.stats import lasso_cox as lc

    feats = _csv_list(args.features, "--features")
    if len(set(feats)) != len(feats):
        raise UserError("--features lists a column twice")
    df = _load(args, [args.time, args.event, *feats], [args.event], [args.time])
    t, e = df[args.time].to_numpy(), df[args.event].to_numpy()
    x = df[feats].to_numpy(dtype=float)
    std = not args.no_standardize
    if args.lam is not None:
        if args.lam <= 0:
            raise UserError("--lambda must be positive")
        out = lc.lasso_cox_fit(t, e, x, args.lam, names=feats, standardize=std)
    else:
        cv = lc.lasso_cox_cv(t, e, x, names=feats, folds=args.folds, seed=args.seed, standardize=std)
        out = cv.coef_at(args.rule)
    return _emit(out, args)


def _meta(args) -> int:
    from pathomics_desktop.stats import meta as mt

    df = _load(args, [args.estimate, args.se])
    res = mt.meta_analysis(df[args.estimate].to_numpy(), df[args.se].to_numpy(), method=args.method)
    return _emit(res, args)


def _roc(args) -> int:
    from pathomics_desktop.stats import roc

    cols = [args.label, args.score] + ([args.vs] if args.vs else [])
    df = _load(args, cols, [args.label])
    y = df[args.label].to_numpy()
    res = roc.roc_analysis(y, df[args.score].to_numpy(), cut=args.cut, vs=df[args.vs].to_numpy() if args.vs else None)
    return _emit(res, args)


# ----------------------------------------------------------------------------------------------
# registration
# ----------------------------------------------------------------------------------------------


def register(analyze_subparsers) -> None:
    """Add the marker sub-commands to the ``pathomics analyze`` sub-parser set."""
    p = analyze_subparsers.add_parser("cindex", help="Harrell's or Uno's C-index of a marker (higher = higher risk)")
    _common(p)
    _survival_args(p)
    p.add_argument("--marker", required=True, metavar="M", help="marker column (higher value = higher risk)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="percentile bootstrap CI with N resamples")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--uno", action="store_true", help="Uno's IPCW C instead of Harrell's")
    p.add_argument("--tau", type=float, default=None, metavar="t", help="truncation time for Uno's C")
    p.set_defaults(func=_cindex)

    p = analyze_subparsers.add_parser("tdauc", help="cumulative/dynamic time-dependent AUC (Uno IPCW)")
    _common(p)
    _survival_args(p)
    p.add_argument("--marker", required=True, metavar="M")
    p.add_argument("--at", required=True, metavar="t1,t2", help="evaluation times, comma separated")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.set_defaults(func=_tdauc)

    p = analyze_subparsers.add_parser("cutpoint", help="optimal cutpoint: maxstat (Lau94 p) or X-tile (permutation p)")
    _common(p)
    _survival_args(p)
    p.add_argument("--marker", required=True, metavar="M")
    p.add_argument("--method", choices=("maxstat", "xtile"), default="maxstat")
    p.add_argument("--minprop", type=float, default=0.1, help="smallest group proportion (default 0.1)")
    p.add_argument("--permutations", type=int, default=1000, metavar="N", help="X-tile Monte Carlo permutations")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.set_defaults(func=_cutpoint)

    p = analyze_subparsers.add_parser("lasso-cox", help="LASSO-penalised Cox model (glmnet objective and CV)")
    _common(p)
    _survival_args(p)
    p.add_argument("--features", required=True, metavar="a,b", help="feature columns, comma separated")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--lambda", dest="lam", type=float, default=None, metavar="L", help="fit at this lambda")
    g.add_argument("--folds", type=int, default=10, metavar="K", help="K-fold CV to choose lambda (default 10)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the fold assignment")
    p.add_argument("--rule", choices=("min", "1se"), default="min", help="lambda.min or lambda.1se (default min)")
    p.add_argument("--no-standardize", action="store_true", help="do not standardise the features")
    p.set_defaults(func=_lasso)

    p = analyze_subparsers.add_parser("meta", help="fixed/random-effects meta-analysis of study estimates")
    _common(p)
    p.add_argument("--estimate", required=True, metavar="COL", help="study estimate column (e.g. log HR)")
    p.add_argument("--se", required=True, metavar="COL", help="standard error column")
    p.add_argument("--method", choices=("dl", "reml", "fe"), default="reml")
    p.set_defaults(func=_meta)

    p = analyze_subparsers.add_parser("roc", help="ROC/AUC for a binary outcome with DeLong CI and test")
    _common(p)
    p.add_argument("--label", required=True, metavar="Y", help="binary outcome column (1 = positive)")
    p.add_argument("--score", required=True, metavar="S", help="score column (higher = positive)")
    p.add_argument("--vs", default=None, metavar="S2", help="second score: DeLong test of the two AUCs")
    p.add_argument("--cut", type=float, default=None, help="cut for sensitivity etc. (default: Youden)")
    p.set_defaults(func=_roc)
