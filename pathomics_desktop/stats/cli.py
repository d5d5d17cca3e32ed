"""``pathomics analyze ...``: survival statistics from a table file or the registry.

Sub-commands come from :mod:`pathomics_desktop.stats.analyze_models` (km, cox, subgroups,
table1) and, when present, :mod:`pathomics_desktop.stats.analyze_markers`. Every
sub-command takes ``DATA`` (a .csv/.tsv/.xlsx/.parquet path or ``registry:``), ``--project``
and ``--json``. No heavy import happens here.
"""

from __future__ import annotations

import argparse


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """DATA, --project and --json, shared by every analyze sub-command."""
    parser.add_argument("data", metavar="DATA",
                        help="table file (.csv, .tsv, .xlsx, .parquet) or 'registry:'")
    parser.add_argument("--project", metavar="DIR", default=argparse.SUPPRESS,
                        help="project folder for 'registry:' (default: $PATHOMICS_PROJECT or the "
                             "current directory)")
    parser.add_argument("--json", action="store_true", help="print plain JSON")


def register(subparsers) -> None:
    """Add ``analyze`` and its sub-commands to the top-level parser."""
    analyze = subparsers.add_parser(
        "analyze", help="survival statistics: KM, Cox, subgroups, Table 1, markers",
        description="Survival statistics on a table file or the registry cohort snapshot.")
    analyze_sub = analyze.add_subparsers(dest="analysis", metavar="ANALYSIS")
    analyze.set_defaults(func=lambda args: (analyze.print_help(), 1)[1])
    from pathomics_desktop.stats import analyze_markers, analyze_models

    analyze_models.register(analyze_sub)
    analyze_markers.register(analyze_sub)
