"""``pathomics signature fit|show|apply``: fit the pathomics signature (a job, versioned), show a
frozen one, and score patients with it (a job writing the scores to the registry)."""

from __future__ import annotations

import json
import sys

from pathomics_desktop.registry.cli import add_project_option, opened_registry

APPLY_JOB = "signature-apply"  # registered in jobs.core like every job type


def register(sub) -> None:
    from pathomics_desktop.cli import command_group

    ssub = command_group(sub, "signature", "pathomics signature: features, LASSO-Cox score, X-tile risk cut")
    p = ssub.add_parser("fit", help="patient features from a model run's predictions, three-tier selection, "
                                    "LASSO-Cox score and a frozen X-tile cut (a job; every fit is a kept version)")
    p.add_argument("--model", required=True, dest="run", help="model run whose patch predictions are used")
    p.add_argument("--endpoint", choices=["os", "rfs"], default="os")
    p.add_argument("--name", help="signature name (default: <run>_<endpoint>)")
    p.add_argument("--folds", type=int, default=10, help="LASSO cross-validation folds, stratified by event (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and X-tile permutations")
    p.add_argument("--rule", choices=["min", "1se"], default="min", help="lambda.min (default) or lambda.1se")
    p.add_argument("--corr-method", choices=["pearson", "spearman", "both"], default="pearson")
    p.add_argument("--xtile-perm", type=int, default=1000, help="X-tile permutations for the cut's p-value")
    p.add_argument("--xtile-minprop", type=float, default=0.1,
                   help="X-tile: smallest risk group as a share of the training patients (default 0.1)")
    p.add_argument("--replace", action="store_true",
                   help="fit a new version of an existing signature (earlier versions are kept)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_fit)

    p = ssub.add_parser("show", help="a frozen signature: features, coefficients, cut, per-set results")
    p.add_argument("name")
    p.add_argument("--version", type=int, help="a kept version (default: the current one)")
    p.add_argument("--json", action="store_true", help="print the whole frozen signature JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_show)

    p = ssub.add_parser("apply", help="score patients with the frozen signature (never refits) and write "
                                      "pathomics_<endpoint>_score / _group to the registry; warns on drift")
    p.add_argument("name")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--center", help="score the included patients of this center")
    which.add_argument("--all", action="store_true", help="score the included patients of every center")
    p.add_argument("--json", action="store_true", help="print the job's result as JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_apply)

    p = ssub.add_parser("lock-cut", help="store a risk cut chosen in the cutpoint explorer with the signature "
                                         "(a new version, audited) and regroup the registry's risk groups")
    p.add_argument("name")
    p.add_argument("--cut", required=True, type=float, help="the cut in score units (high risk: score > cut)")
    p.add_argument("--reason", required=True, help="why the cut changes (kept in the audit trail)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_lock_cut)


def _echo(fraction, message) -> None:
    print(f"    {message}" if fraction is None else f"  [{fraction:6.1%}] {message}", file=sys.stderr)


def _run_job(project, registry, job_type: str, params: dict):
    """Submit and run a job now (as :func:`pathomics_desktop.jobs.cli.run_in_foreground`);
    returns (exit code: 0 done, 1 failed, 130 cancelled, the finished job row)."""
    from pathomics_desktop.jobs.runner import run_job, submit

    job = run_job(project, registry, submit(registry, job_type, params), echo=_echo)
    if job.status == "failed":
        print(f"job {job.id} failed: {(job.error or '').splitlines()[0]}", file=sys.stderr)
        return 1, job
    if job.status == "cancelled":
        print(f"job {job.id} cancelled; `pathomics jobs resume {job.id} --run` continues it", file=sys.stderr)
        return 130, job
    return 0, job


def cmd_fit(args) -> int:
    from pathomics_desktop.signature.evaluation import SignatureSummary
    from pathomics_desktop.signature.fit import load_signature

    name = args.name or f"{args.run}_{args.endpoint}"
    params = {"run": args.run, "endpoint": args.endpoint, "name": name, "folds": args.folds, "seed": args.seed,
              "rule": args.rule, "corr_method": args.corr_method, "xtile_perm": args.xtile_perm,
              "xtile_minprop": args.xtile_minprop, "replace": bool(args.replace)}
    with opened_registry(args) as (project, registry):
        code, _ = _run_job(project, registry, "signature", params)
        if code != 0:
            return code
        result = SignatureSummary.from_signature(load_signature(project, name))
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0


def cmd_show(args) -> int:
    from pathomics_desktop.project import open_project
    from pathomics_desktop.signature.evaluation import SignatureSummary
    from pathomics_desktop.signature.fit import load_signature
    from pathomics_desktop.signature.versions import load_version

    project = open_project(getattr(args, "project", None))
    version = getattr(args, "version", None)
    signature = load_version(project, args.name, version) if version else load_signature(project, args.name)
    print(json.dumps(signature, indent=2) if args.json else SignatureSummary.from_signature(signature).summary())
    return 0


def format_apply(result: dict) -> str:
    """Readable summary of a ``signature-apply`` job result."""
    score, group = result["columns"]
    lines = [f"signature {result['signature']} v{result['version']} ({result['endpoint'].upper()}) applied to "
             f"{'every center' if result['scope'] == 'all' else 'center ' + result['scope']}: "
             f"{result['scored']} patients scored ({result['high']} high risk, {result['low']} low risk), "
             f"{result['changed']} changed, {result['cleared']} cleared, "
             f"{result['without_features']} included patients without predictions",
             f"registry columns: {score}, {group} (in `registry:` and `export cohort`)",
             f"scores: {result['scores']} (sha256 {result['scores_sha256'][:12]})"]
    if result["warnings"]:
        lines.append(f"drift warnings ({len(result['warnings'])}):")
        lines += [f"  {w}" for w in result["warnings"]]
    else:
        lines.append("no drift from the training data (PSI <= 0.1 and KS p >= 0.01 per feature; stain vectors)")
    return "\n".join(lines)


def cmd_apply(args) -> int:
    params = {"name": args.name, "center": args.center, "all": bool(args.all)}
    with opened_registry(args) as (project, registry):
        code, job = _run_job(project, registry, APPLY_JOB, params)
        if code != 0:
            return code
    result = job.result or {}
    for line in result.get("warnings", []):
        print(f"warning: {line}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else format_apply(result))
    return 0


def cmd_lock_cut(args) -> int:
    from pathomics_desktop.signature.cut_lock import lock_cut

    with opened_registry(args) as (project, registry):
        result = lock_cut(project, args.name, args.cut, reason=args.reason, registry=registry)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0
