"""``pathomics signature report NAME [NAME ...] [--json] [--out DIR]``: the study's analysis
plan on frozen signatures (:mod:`pathomics_desktop.signature.report`).

Exit status 0 on success, 2 with ``error: ...`` on stderr for bad input (an unknown
signature name, a missing scores file, a bad option value).
"""

from __future__ import annotations

import json

from pathomics_desktop.registry.cli import add_project_option

#: bootstrap replicates by default (the same as ``signature.report.DEFAULT_BOOT``; kept here so
#: that ``pathomics --help`` does not import numpy)
DEFAULT_BOOT = 200


def register(sub) -> None:
    from pathomics_desktop.cli import command_group

    ssub = command_group(sub, "signature", "pathomics signature: features, LASSO-Cox score, X-tile risk cut")
    p = ssub.add_parser(
        "report", help="the study's analysis plan on frozen signatures: td-AUC, C-index, KM, Cox tables, "
                       "center heterogeneity, subgroups, Table S6, CA19-9 and chemotherapy interactions")
    p.add_argument("names", nargs="+", metavar="NAME", help="signature name(s) (see signature show)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--out", metavar="DIR", help="also write DIR/report.json and DIR/report.txt")
    p.add_argument("--bootstrap", type=int, default=DEFAULT_BOOT,
                   help=f"bootstrap replicates of the CIs and C comparisons (default {DEFAULT_BOOT})")
    p.add_argument("--seed", type=int, default=0, help="seed of every bootstrap (default 0)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="univariate LR p below which a variable enters the multivariable Cox model (default 0.05)")
    p.add_argument("--alpha", type=float, default=0.05, help="level of the Bonferroni decisions (default 0.05)")
    p.add_argument("--landmark", type=float, metavar="MONTHS",
                   help="landmark time of the chemotherapy analysis (Figure S6), in months")
    add_project_option(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from pathomics_desktop.project import open_project
    from pathomics_desktop.signature.report import signature_report, write_report
    from pathomics_desktop.stats.data import clean_json

    project = open_project(getattr(args, "project", None))
    report = signature_report(project, args.names, n_boot=args.bootstrap, seed=args.seed,
                              threshold=args.threshold, alpha=args.alpha, landmark=args.landmark)
    if args.out:
        write_report(report, args.out)
    print(json.dumps(clean_json(report.to_dict()), allow_nan=False) if args.json else report.summary())
    return 0
