"""``pathomics signature fit|show``: fit the pathomics signature (a job) and show a frozen one."""

from __future__ import annotations

import json

from pathomics_desktop.registry.cli import add_project_option, opened_registry


def register(sub) -> None:
    from pathomics_desktop.cli import command_group

    ssub = command_group(sub, "signature", "pathomics signature: features, LASSO-Cox score, X-tile risk cut")
    p = ssub.add_parser("fit", help="patient features from a model run's predictions, three-tier selection, "
                                    "LASSO-Cox score and a frozen X-tile cut (a job)")
    p.add_argument("--model", required=True, dest="run", help="model run whose patch predictions are used")
    p.add_argument("--endpoint", choices=["os", "rfs"], default="os")
    p.add_argument("--name", help="signature name (default: <run>_<endpoint>)")
    p.add_argument("--folds", type=int, default=10, help="LASSO cross-validation folds (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and X-tile permutations")
    p.add_argument("--rule", choices=["min", "1se"], default="min", help="lambda.min (default) or lambda.1se")
    p.add_argument("--corr-method", choices=["pearson", "spearman", "both"], default="pearson")
    p.add_argument("--xtile-perm", type=int, default=1000, help="X-tile permutations for the cut's p-value")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_fit)

    p = ssub.add_parser("show", help="a frozen signature: features, coefficients, cut, per-set results")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the whole frozen signature JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_show)


def cmd_fit(args) -> int:
    from pathomics_desktop.jobs.cli import run_in_foreground
    from pathomics_desktop.signature.fit import load_signature
    from pathomics_desktop.signature.jobs import summary

    name = args.name or f"{args.run}_{args.endpoint}"
    params = {"run": args.run, "endpoint": args.endpoint, "name": name, "folds": args.folds, "seed": args.seed,
              "rule": args.rule, "corr_method": args.corr_method, "xtile_perm": args.xtile_perm}
    with opened_registry(args) as (project, registry):
        code = run_in_foreground(project, registry, "signature", params)
        if code != 0:
            return code
        result = summary(load_signature(project, name))
    print(json.dumps(result, indent=2) if args.json else format_summary(result))
    return 0


def cmd_show(args) -> int:
    from pathomics_desktop.project import open_project
    from pathomics_desktop.signature.fit import load_signature
    from pathomics_desktop.signature.jobs import summary

    signature = load_signature(open_project(getattr(args, "project", None)), args.name)
    print(json.dumps(signature, indent=2) if args.json else format_summary(summary(signature)))
    return 0


def _num(value, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def format_summary(s: dict) -> str:
    """Human-readable summary of :func:`pathomics_desktop.signature.jobs.summary`."""
    lines = [f"signature {s['name']}  (run {s['run']}, endpoint {s['endpoint'].upper()})",
             f"features: {s['features_in']} -> {s['after_constant']} non-constant -> {s['after_correlation']} after "
             f"correlation filter -> {s['after_univariate']} univariate p<0.05 -> {s['selected']} LASSO "
             f"(lambda.{s['rule']} = {s['lambda']:.4g})",
             f"score = sum(beta x), higher = higher risk; cut {s['cut']:.4g} (X-tile, permutation p "
             f"{_num(s['cut_p_permutation'], '.3g')}); high risk: score > cut",
             "coefficients:"]
    lines += [f"  {name:<18} {beta:+.4g}" for name, beta in s["coefficients"].items()]
    lines.append(f"{'set':<10} {'n':>4} {'ev':>4} {'high':>5}  {'C-index (95% CI)':<22} {'HR high/low (95% CI)':<24} "
                 f"{'p':>8}  {'median high/low':<16}")
    for name, r in s["sets"].items():
        if not r.get("n"):
            lines.append(f"{name:<10} {0:>4}")
            continue
        c = f"{_num(r['c_index'])} ({_num(r['c_lower'])}-{_num(r['c_upper'])})"
        hr = f"{_num(r['hr'], '.2f')} ({_num(r['hr_lower'], '.2f')}-{_num(r['hr_upper'], '.2f')})"
        med = f"{_num(r['median_high'], '.1f')}/{_num(r['median_low'], '.1f')}"
        lines.append(f"{name:<10} {r['n']:>4} {r['events'] or 0:>4} {r['n_high'] or 0:>5}  {c:<22} {hr:<24} "
                     f"{_num(r['hr_p'], '.2g'):>8}  {med:<16}" + (f"  ({'; '.join(r['notes'])})" if r["notes"] else ""))
    me = s.get("mixed_effects")
    if me and me.get("hr") is not None:
        lines.append(f"all sets, center as random effect: HR high/low {me['hr']:.2f} ({me['lower']:.2f}-"
                     f"{me['upper']:.2f}), p {me['p']:.2g}, center variance {me['center_variance']:.3g}")
    return "\n".join(lines)
