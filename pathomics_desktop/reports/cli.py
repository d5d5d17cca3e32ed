"""``pathomics report TABLE-OR-FIGURE ... --out FILE`` and ``pathomics reproduce ENTRY|--last``.

Each command computes one figure description with the same builder as its view
(:data:`BUILDERS`: ``build_x(source, frame, params)`` on the filtered cohort snapshot) and writes
it in the format of the ``--out`` extension:

* tables: ``.docx`` (three-line journal table), ``.xlsx`` (numbers as numbers), ``.csv``,
  ``.tex`` (booktabs), ``.md``, through :func:`~pathomics_desktop.reports.writers.write_tables`
  with the project's style (``[reports]`` of ``project.toml``) and the tables of
  :mod:`pathomics_desktop.reports.view_tables`;
* figures: ``.png`` (300 dpi or more), ``.svg``, ``.pdf`` through
  :func:`pathomics_desktop.reports.figures.save_figure` (``--width single|double``: one or two
  journal columns), with the cohort filter, n and snapshot id as the footnote.

=============  ================================================  ==============
command        what                                              writes
=============  ================================================  ==============
``table1``     baseline table by ``--by`` (default the data set)  table
``cox``        Cox models (``--mode screen|univariate|multivariate``)  table
``cindex``     Table S2: C-index and td-AUC of the signature score, TNM, CA19-9  table
``models``     Table S1: patch-model ROC (AUC, DeLong)             table, figure
``subgroups``  the subgroup table (HR per level, interaction p)    table
``km``         Kaplan-Meier (``--group COL [--cut X]``)            figure, table
``forest``     the subgroup forest plot                           figure, table
``roc``        time-dependent ROC (``--times``)                    figure, table
``cutpoint``   the X-tile map and maxstat cut                     figure, table
``flow``       the patient flow (Figure 1)                        figure, table
=============  ================================================  ==============

Every export appends a ledger entry (:mod:`pathomics_desktop.reports.ledger`); ``pathomics
reproduce ENTRY`` (or ``--last``) recomputes it and compares every number: exit 0 when all
match, 1 with the list of differences. Bad input (an unknown extension, a column that is not
in the snapshot) is exit 2 with ``error: ...``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any, Callable

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.cli import add_project_option

#: builder of each command and view id ("module:function", imported on use)
BUILDERS = {
    "table1": "pathomics_desktop.figures.table1:build_table1",
    "cox": "pathomics_desktop.figures.cox:build_cox",
    "cindex": "pathomics_desktop.reports.cli:build_cindex",
    "models": "pathomics_desktop.figures.roc:build_model_roc",
    "subgroups": "pathomics_desktop.figures.forest:build_forest",
    "forest": "pathomics_desktop.figures.forest:build_forest",
    "km": "pathomics_desktop.figures.km:build_km",
    "roc": "pathomics_desktop.figures.roc:build_roc",
    "cutpoint": "pathomics_desktop.figures.cutpoint:build_cutpoint",
    "flow": "pathomics_desktop.reports.cli:build_flow",
    "signature": "pathomics_desktop.figures.signature:build_signature_panel",
}
TABLE_SUFFIXES = (".docx", ".xlsx", ".csv", ".tex", ".md")
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
#: what each command can write
KINDS = {"table1": ("table",), "cox": ("table",), "cindex": ("table",), "models": ("table", "figure"),
         "subgroups": ("table",), "km": ("figure", "table"), "forest": ("figure", "table"),
         "roc": ("figure", "table"), "cutpoint": ("figure", "table"), "flow": ("figure", "table")}
HELP = {"table1": "Table 1: baseline characteristics by a grouping (default: the data set)",
        "cox": "Cox models: Table 2 (screen), univariate or multivariate (Tables S3-S5)",
        "cindex": "Table S2: Harrell's C and td-AUC of the signature score, TNM stage and CA19-9",
        "models": "Table S1: patch-model comparison (AUC with DeLong CI, pairwise DeLong tests)",
        "subgroups": "the subgroup table: HR of the exposure per subgroup level, interaction p",
        "km": "Kaplan-Meier curves with the number at risk (figure) or their numbers (table)",
        "forest": "the subgroup forest plot",
        "roc": "time-dependent ROC of the markers (figure) or AUC(t) (table)",
        "cutpoint": "the X-tile map and the maximally selected log-rank cut",
        "flow": "the patient flow diagram (Figure 1)"}
BOOTSTRAP = 200
DEFAULT_ALPHA = 0.05


# --------------------------------------------------------------------------------------
# builders of the commands without a view of their own
# --------------------------------------------------------------------------------------


def build_cindex(source, frame, params: dict):
    """Table S2 of the filtered cohort: :func:`pathomics_desktop.signature.report.discrimination`
    of the signature score (``marker``, default ``pathomics_<endpoint>_score``), TNM stage and
    CA19-9 at the report's times; ``bootstrap`` resamples (default 200) with ``seed`` (0)."""
    from pathomics_desktop.signature.report import AUC_TIMES, ENDPOINT_COLUMNS, FAMILIES, discrimination

    endpoint = str(params.get("endpoint") or "os")
    if endpoint not in ENDPOINT_COLUMNS:
        raise UserError(f"endpoint must be one of {', '.join(ENDPOINT_COLUMNS)}, got {endpoint!r}")
    marker = str(params.get("marker") or f"pathomics_{endpoint}_score")
    if marker not in frame.columns or not frame[marker].notna().any():
        raise UserError(f"the cohort snapshot has no {marker} values: apply a signature first "
                        "(`pathomics signature apply NAME --all`), or name a score column with --marker")
    n_boot = int(params.get("bootstrap") or BOOTSTRAP)
    if n_boot < 10:
        raise UserError(f"the bootstrap needs at least 10 resamples, got {n_boot}")
    time, event = ENDPOINT_COLUMNS[endpoint]
    return discrimination(frame.assign(score=frame[marker].astype(float)), time, event, AUC_TIMES[endpoint],
                          figure="Table S2", family=f"{FAMILIES['c_index']} ({endpoint.upper()})", n_boot=n_boot,
                          seed=int(params.get("seed") or 0), alpha=float(params.get("alpha") or DEFAULT_ALPHA))


def build_flow(source, frame, params: dict):
    """The patient flow of the registry (every enrolled patient; the cohort filter does not apply)."""
    from pathomics_desktop.cohort.flow import patient_flow
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry

    registry = open_project_registry(Project.load(Path(params["project"])))
    try:
        with registry.session() as session:
            return patient_flow(session)
    finally:
        registry.dispose()


def builder(command: str) -> Callable:
    """The builder function of a command or view id."""
    if command not in BUILDERS:
        raise UserError(f"{command!r} has no recorded builder (known: {', '.join(sorted(BUILDERS))}); "
                        "it cannot be recomputed")
    module, name = BUILDERS[command].split(":")
    return getattr(importlib.import_module(module), name)


def compute_description(project, command: str, source, cohort_filter, params: dict, frame=None):
    """The figure description of ``command`` on the filtered cohort (``frame``, read from
    ``source`` when not given; the project folder added to ``params``, as the views pass it)."""
    frame = source.frame(cohort_filter) if frame is None else frame
    if len(frame) == 0 and command != "flow":
        raise UserError(f"No patients match the cohort filter ({cohort_filter.describe()}). Widen it.")
    return builder(command)(source, frame, dict(params) | {"project": str(project.root)})


def output_kind(command: str, out: str | Path) -> str:
    """"table" or "figure", from the extension of ``out`` (a UserError naming the choices)."""
    suffix = Path(out).suffix.lower()
    kinds = KINDS.get(command, ("table", "figure"))
    allowed = [s for kind in kinds for s in (TABLE_SUFFIXES if kind == "table" else FIGURE_SUFFIXES)]
    if suffix in TABLE_SUFFIXES and "table" in kinds:
        return "table"
    if suffix in FIGURE_SUFFIXES and "figure" in kinds:
        return "figure"
    what = " or ".join("tables" if k == "table" else "figures" for k in kinds)
    raise UserError(f"{out}: report {command} cannot write {suffix or 'a file without an extension'}; "
                    f"the format comes from the extension: {', '.join(allowed)} ({what})")


def write_description(project, description, out: Path, *, kind: str, cohort_filter, source, n: int,
                      width: str = "single", title: str = "", table_data=None) -> Path:
    """Write a description as a table file or a figure file (see the module docstring)."""
    from pathomics_desktop.analytics.cohort_filter import footnote
    from pathomics_desktop.reports.tables import SourceNote, TableStyle

    out = Path(out)
    if kind == "table":
        from pathomics_desktop.reports.view_tables import publication_tables
        from pathomics_desktop.reports.writers import write_tables

        note = SourceNote(cohort_filter.describe() if cohort_filter is not None else "",
                          getattr(source, "snapshot_id", "") or "")
        tables = publication_tables(description, note, title=title, table_data=table_data)
        if out.suffix.lower() == ".csv":
            tables = tables[:1]  # one table per CSV file: the main one
        return write_tables(tables, out, TableStyle.for_project(project))
    from pathomics_desktop.reports.figures import save_figure

    return Path(save_figure(description, out, width=width,
                            footnote=footnote(cohort_filter, getattr(source, "snapshot_id", "-"), n)))


def _defaults(command: str, source, frame, params: dict) -> dict:
    """Parameters a command resolves from the data before computing (recorded resolved)."""
    params = dict(params)
    if command == "cox" and not params.get("variables"):
        from pathomics_desktop.figures.cox import study_variables

        params["variables"] = study_variables(source, params.get("endpoint") or "os")
    if command == "roc":
        params.setdefault("mode", "td")
    return params


def run_export(project, command: str, cohort_filter, params: dict, out: str | Path, *, width: str = "single",
               user: str | None = None) -> tuple[Any, Path, dict]:
    """Compute ``command``, write ``out`` (format from its extension), append a ledger entry.
    Returns (description, written path, ledger entry)."""
    from pathomics_desktop.analytics.cohort_filter import AnalysisSource
    from pathomics_desktop.reports import ledger

    if command not in KINDS:
        raise UserError(f"unknown report {command!r}; choose one of {', '.join(KINDS)}")
    if width not in ("single", "double"):
        raise UserError(f"--width must be single or double, got {width!r}")
    out = Path(out)
    kind = output_kind(command, out)
    source = AnalysisSource.open(project)
    frame = source.frame(cohort_filter)
    params = _defaults(command, source, frame, params)
    description = compute_description(project, command, source, cohort_filter, params, frame)
    entry = ledger.prepare_entry(project, command=command, cohort_filter=cohort_filter, params=params,
                                 snapshot_path=source.parquet, snapshot_id=source.snapshot_id, user=user)
    written = write_description(project, description, out, kind=kind, cohort_filter=cohort_filter,
                                source=source, n=len(frame), width=width)
    entry = ledger.append_entry(project, entry, output=written, numbers=ledger.description_numbers(description),
                                params=params)
    return description, written, entry


# --------------------------------------------------------------------------------------
# argparse
# --------------------------------------------------------------------------------------


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _numbers(text: str | None, what: str) -> list[float] | None:
    names = _names(text)
    if names is None:
        return None
    try:
        return [float(v) for v in names]
    except ValueError:
        raise UserError(f"{what}: numbers separated by commas, e.g. 12,36,60 (got {text!r})") from None


def _add_common(p: argparse.ArgumentParser, kinds: tuple[str, ...]) -> None:
    suffixes = [s for k in kinds for s in (TABLE_SUFFIXES if k == "table" else FIGURE_SUFFIXES)]
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the file to write; its extension chooses the format: " + ", ".join(suffixes))
    p.add_argument("--set", dest="datasets", action="append", choices=("training", "internal", "external"),
                   help="data set(s) to include (repeatable; default all)")
    p.add_argument("--center", dest="centers", action="append", metavar="CODE",
                   help="center(s) to include (repeatable; default all)")
    p.add_argument("--all-patients", action="store_true",
                   help="every enrolled patient, not only the included ones")
    p.add_argument("--endpoint", choices=("os", "rfs"), default="os", help="survival endpoint (default os)")
    if "figure" in kinds:
        p.add_argument("--width", choices=("single", "double"), default="single",
                       help="figure width: one or two journal columns (default single)")
    add_project_option(p)


def register(sub) -> None:
    from pathomics_desktop.cli import command_group

    rsub = command_group(sub, "report", "publication tables and figures (format from the --out extension), "
                                        "each recorded in the reproducibility ledger")
    parsers = {}
    for command, kinds in KINDS.items():
        p = rsub.add_parser(command, help=HELP[command], description=HELP[command] + ". " +
                            "Tables: .docx .xlsx .csv .tex .md; figures: .png .svg .pdf.")
        _add_common(p, kinds)
        p.set_defaults(func=cmd_report, report_command=command)
        parsers[command] = p
    p = parsers["table1"]
    p.add_argument("--by", default="split", help="grouping column (default split: the data sets)")
    p.add_argument("--variables", help="columns, comma-separated (default: the study's Table 1 variables)")
    p = parsers["cox"]
    p.add_argument("--variables", help="covariates, comma-separated (default: the study's Table 2 candidates)")
    p.add_argument("--mode", choices=("screen", "univariate", "multivariate"), default="screen",
                   help="screen: univariate, then multivariate of those with LR p < --threshold (default)")
    p.add_argument("--threshold", type=float, default=0.05, help="screen threshold (default 0.05)")
    p.add_argument("--strata", help="a column giving each level its own baseline hazard")
    p.add_argument("--center-effect", choices=("none", "cluster", "frailty"), default="none",
                   help="center as a robust-SE cluster or a Gaussian random effect (default none)")
    for command in ("cindex", "roc", "cutpoint"):
        p = parsers[command]
        p.add_argument("--bootstrap", type=int, default=BOOTSTRAP if command == "cindex" else 0,
                       help="bootstrap resamples of the CIs" + (f" (default {BOOTSTRAP})" if command == "cindex"
                                                                 else " (default 0: none)"))
        p.add_argument("--seed", type=int, default=0 if command != "roc" else None,
                       help="seed of the bootstrap")
    parsers["cindex"].add_argument("--marker", help="score column (default pathomics_<endpoint>_score)")
    parsers["models"].add_argument("--runs", help="model runs, comma-separated (default: every run with predictions)")
    for command in ("subgroups", "forest"):
        p = parsers[command]
        p.add_argument("--exposure", help="two-level exposure column (default the endpoint's risk group)")
        p.add_argument("--reference", help="reference level of the exposure")
        p.add_argument("--subgroups", help="subgroup columns, comma-separated (default the study's)")
        p.add_argument("--min-events", type=int, help="flag subgroups with fewer events (default 10)")
    p = parsers["km"]
    p.add_argument("--group", help="grouping column (default: the risk group if a signature was applied; "
                                   "'none': all patients)")
    p.add_argument("--cut", type=float, help="cut of a numeric grouping (default 200 for CA19-9, 65 for age, "
                                             "else the median)")
    p.add_argument("--reference", help="reference group of the HRs")
    p.add_argument("--unit", choices=("months", "years"), default="months")
    p.add_argument("--breaks", help="number-at-risk times: a step (12) or a list (0,12,24)")
    p = parsers["roc"]
    p.add_argument("--times", help="months, comma-separated (default OS 12,36,60; RFS 12,24,36)")
    p.add_argument("--markers", help="marker columns, comma-separated (default the score, TNM stage, CA19-9)")
    p = parsers["cutpoint"]
    p.add_argument("--marker", help="numeric marker (default pathomics_<endpoint>_score)")
    p.add_argument("--data-set", choices=("training", "internal", "external", "all"), default="training")
    p.add_argument("--cut", type=float, help="the cut to show (default the maxstat cut)")
    p.add_argument("--minprop", type=float, default=0.1, help="smallest group share (default 0.1)")

    p = rsub.add_parser("slide", help="a slide thumbnail with its heatmap (patch P(poor) of a model run, or the "
                                      "tissue fraction), a scale bar in micrometres and a colour bar",
                        description="Figure of one registered slide: .png (600 dpi), .svg or .pdf.")
    p.add_argument("slide_id", type=int, help="the slide's id (`pathomics slides list`)")
    p.add_argument("--out", required=True, help="output file (.png, .svg or .pdf)")
    p.add_argument("--run", help="model run whose predictions are drawn (default: the first with predictions)")
    p.add_argument("--width", choices=("single", "double"), default="single")
    add_project_option(p)
    p.set_defaults(func=cmd_slide)

    p = rsub.add_parser("study", help="the whole analysis plan as a folder: report.docx with every table and figure "
                                      "in the study's order, the figures, the tables, methods and checklists",
                        description="Write the study bundle (see pathomics_desktop/reports/study.py) into a new folder.")
    p.add_argument("--signature", action="append", required=True, metavar="NAME",
                   help="a frozen signature (repeatable; the first one's applied risk groups drive the figures)")
    p.add_argument("--out", required=True, help="a new (or empty) folder")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the CIs (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", choices=("single", "double"), default="double", help="figure width (journal columns)")
    add_project_option(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("reproduce", help="recompute a ledger entry on the current data and compare every number",
                       description="Recompute an export recorded in <project>/reports/ledger.jsonl and compare "
                                   "every number: exit 0 when all match, 1 with the differences.")
    p.add_argument("entry", nargs="?", metavar="ENTRY", help="ledger entry id (or a unique prefix)")
    p.add_argument("--last", action="store_true", help="the last entry")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_reproduce)


def params_from_args(command: str, args) -> dict[str, Any]:
    """The builder parameters of a ``pathomics report`` command line."""
    params: dict[str, Any] = {"endpoint": args.endpoint}
    if command == "table1":
        params["by"] = args.by
        if args.variables:
            params["variables"] = _names(args.variables)
    elif command == "cox":
        params.update(mode=args.mode, threshold=args.threshold, center=args.center_effect,
                      variables=_names(args.variables) or [])
        if args.strata:
            params["strata"] = args.strata
    elif command == "cindex":
        params.update(bootstrap=args.bootstrap, seed=args.seed)
        if args.marker:
            params["marker"] = args.marker
    elif command == "models":
        if args.runs:
            params["runs"] = _names(args.runs)
    elif command in ("subgroups", "forest"):
        for key in ("exposure", "reference"):
            if getattr(args, key):
                params[key] = getattr(args, key)
        if args.subgroups:
            params["subgroups"] = _names(args.subgroups)
        if args.min_events is not None:
            params["min_events"] = args.min_events
    elif command == "km":
        if args.group is not None:
            params["group"] = "" if args.group.lower() in ("none", "all") else args.group
        if args.cut is not None:
            params["cut"] = args.cut
        if args.reference:
            params["reference"] = args.reference
        params["unit"] = args.unit
        if args.breaks:
            from pathomics_desktop.figures.km import parse_breaks

            params["breaks"] = parse_breaks(args.breaks)
    elif command == "roc":
        params["mode"] = "td"
        if args.times:
            params["times"] = _numbers(args.times, "--times")
        if args.markers:
            params["markers"] = _names(args.markers)
        if args.bootstrap:
            params["bootstrap"] = args.bootstrap
        if args.seed is not None:
            params["seed"] = args.seed
    elif command == "cutpoint":
        params.update(data_set=args.data_set, minprop=args.minprop, bootstrap=args.bootstrap, seed=args.seed)
        if args.marker:
            params["marker"] = args.marker
        if args.cut is not None:
            params["cut"] = args.cut
    return params


def cohort_filter_from_args(args):
    from pathomics_desktop.analytics.cohort_filter import CohortFilter

    return CohortFilter(datasets=tuple(args.datasets or ()), centers=tuple(args.centers or ()),
                        included_only=not args.all_patients)


def cmd_report(args) -> int:
    from pathomics_desktop.project import open_project

    project = open_project(getattr(args, "project", None))
    command = args.report_command
    _description, written, entry = run_export(project, command, cohort_filter_from_args(args),
                                              params_from_args(command, args), args.out,
                                              width=getattr(args, "width", "single"))
    print(f"wrote {written}")
    print(f"ledger entry {entry['id']} (pathomics reproduce {entry['id']})")
    return 0


def cmd_slide(args) -> int:
    from pathomics_desktop.analytics.cohort_filter import CohortFilter
    from pathomics_desktop.analytics.snapshot import refresh_snapshot
    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.reports.figures import save_figure, slide_figure
    from pathomics_desktop.reports.ledger import record_export
    from pathomics_desktop.slides.overlays import load_viewer_slide

    project = open_project(getattr(args, "project", None))
    registry = open_project_registry(project)
    try:
        slide = load_viewer_slide(project, registry, args.slide_id)
    finally:
        registry.dispose()
    if args.run is not None and args.run not in slide.predictions:
        raise UserError(f"slide {args.slide_id} has no predictions of run {args.run!r}"
                        + (f" (it has: {', '.join(sorted(slide.predictions))})" if slide.predictions else ""))
    figure = slide_figure(slide, args.run)
    written = save_figure(figure, args.out, width=args.width, footnote=f"Slide {args.slide_id}: {slide.name}")
    entry = record_export(project, command="slide", cohort_filter=CohortFilter(included_only=False),
                          params={"slide_id": args.slide_id, "run": args.run, "width": args.width},
                          snapshot_path=refresh_snapshot(project), output=written,
                          numbers={"slide_id": args.slide_id, "title": figure.title, "mpp": figure.mpp})
    print(f"wrote {written}")
    print(f"ledger entry {entry['id']}")
    return 0


def cmd_study(args) -> int:
    from pathomics_desktop.analytics.cohort_filter import CohortFilter
    from pathomics_desktop.analytics.snapshot import refresh_snapshot
    from pathomics_desktop.project import open_project
    from pathomics_desktop.reports.ledger import file_sha256, record_export
    from pathomics_desktop.reports.study import build_study_bundle

    project = open_project(getattr(args, "project", None))
    bundle = build_study_bundle(project, args.signature, args.out, n_boot=args.bootstrap, seed=args.seed,
                                width=args.width, progress=lambda f, m: print(f"  {f:4.0%} {m}", flush=True))
    numbers = bundle.to_dict() | {"report_json_sha256": file_sha256(bundle.folder / "report.json")}
    entry = record_export(project, command="study", cohort_filter=CohortFilter(),
                          params={"signatures": list(args.signature), "bootstrap": args.bootstrap, "seed": args.seed,
                                  "width": args.width},
                          snapshot_path=refresh_snapshot(project), output=bundle.folder / "report.docx",
                          numbers=numbers)
    for note in bundle.notes:
        print(f"note: {note}")
    print(f"wrote {bundle.folder} ({len(bundle.items)} tables and figures; report.docx, figures/, tables/, "
          "methods.md, checklists.docx, report.json)")
    print(f"ledger entry {entry['id']}")
    return 0


def cmd_reproduce(args) -> int:
    from pathomics_desktop.project import open_project
    from pathomics_desktop.reports.ledger import reproduce

    if not args.entry and not args.last:
        raise UserError("name a ledger entry (its id) or use --last")
    project = open_project(getattr(args, "project", None))
    result = reproduce(project, args.entry, last=args.last)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.text())
    return 0 if result.matches else 1
