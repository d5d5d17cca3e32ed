"""Registry commands: init, import, export, edit, lock, variables, centers, audit, db."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager


def add_project_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", metavar="DIR", default=argparse.SUPPRESS,
                        help="project folder (default: $PATHOMICS_PROJECT or the current directory)")


@contextmanager
def opened_registry(args):
    """``with opened_registry(args) as (project, registry):`` the ``--project`` folder and its
    registry, disposed of at the end of the command."""
    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry.service import open_project_registry

    project = open_project(args.project)
    registry = open_project_registry(project)
    try:
        yield project, registry
    finally:
        registry.dispose()


def register(sub) -> None:
    p = sub.add_parser("init", help="create a project folder with an empty registry")
    p.add_argument("dir", nargs="?", default=None, help="project folder (default: --project or .)")
    p.add_argument("--name", default="")
    p.add_argument("--database-url", default="",
                   help="PostgreSQL URL for a multi-user registry (default: embedded SQLite file)")
    p.add_argument("--development-center", default="",
                   help="center code whose patients form the training/internal sets")
    add_project_option(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("import", help="validate and import a patient or follow-up spreadsheet")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="report every problem, write nothing")
    p.add_argument("--kind", choices=["patients", "followup"], help="default: from the columns")
    p.add_argument("--mapping", metavar="FILE|NAME",
                   help="column mapping (JSON file, or a name saved in the project's mappings/)")
    p.add_argument("--save-mapping", metavar="NAME",
                   help="save --mapping FILE (with --redcap-dictionary: the mapping proposed from it) "
                        "in the project under NAME")
    p.add_argument("--redcap-dictionary", metavar="DICTIONARY.csv",
                   help="FILE is a REDCap raw export: decode it with the project's REDCap data dictionary "
                        "and import its patients and repeating follow-up visits in one step")
    p.add_argument("--reason", help="reason for the change (needed to change locked patients)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export data")
    esub = p.add_subparsers(dest="what", required=True)
    e = esub.add_parser("cohort", help="the analysis table, one row per patient (de-identified unless asked)")
    e.add_argument("--out", required=True,
                   help="CSV, XLSX, Parquet, SPSS .sav or Stata .dta file (by extension, or --format)")
    e.add_argument("--format", choices=["csv", "xlsx", "parquet", "sav", "dta"],
                   help="file format (default: from the extension of --out)")
    e.add_argument("--include-identifiers", action="store_true",
                   help="add names, record numbers and birth dates (off by default; CSV, XLSX, Parquet only)")
    e.add_argument("--included-only", action="store_true")
    e.add_argument("--shift-dates", action="store_true",
                   help="move every date of a patient by the same random -180..+180 days (intervals kept; "
                        "offsets not exported)")
    e.add_argument("--seed", type=int, help="seed of --shift-dates (same seed, same offsets; default: random)")
    add_project_option(e)
    e.set_defaults(func=cmd_export_cohort)

    p = sub.add_parser("edit", help="change one value of a patient (audited)")
    p.add_argument("study_id")
    p.add_argument("variable")
    p.add_argument("value")
    p.add_argument("--reason")
    add_project_option(p)
    p.set_defaults(func=cmd_edit)

    for name, locked in (("lock", True), ("unlock", False)):
        p = sub.add_parser(name, help=f"{'mark complete and lock' if locked else 'unlock'} a patient record")
        p.add_argument("study_id")
        p.add_argument("--reason")
        add_project_option(p)
        p.set_defaults(func=cmd_lock, locked=locked)

    p = sub.add_parser("delete-patient", help="delete a patient (needs a reason; audited)")
    p.add_argument("study_id")
    p.add_argument("--reason", required=True)
    add_project_option(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("variables", help="the codebook: list or add user-defined variables")
    vsub = p.add_subparsers(dest="action", required=True)
    v = vsub.add_parser("list")
    v.add_argument("--json", action="store_true")
    add_project_option(v)
    v.set_defaults(func=cmd_variables_list)
    v = vsub.add_parser("add")
    v.add_argument("name")
    v.add_argument("--type", required=True, choices=["text", "integer", "number", "date", "category", "yesno"])
    v.add_argument("--label", default="")
    v.add_argument("--unit", default="")
    v.add_argument("--codes", help='category codes as JSON, e.g. \'{"low": ["l"], "high": ["h"]}\'')
    v.add_argument("--min")
    v.add_argument("--max")
    v.add_argument("--soft-min")
    v.add_argument("--soft-max")
    v.add_argument("--required", action="store_true")
    v.add_argument("--identifier", action="store_true")
    add_project_option(v)
    v.set_defaults(func=cmd_variables_add)

    p = sub.add_parser("centers", help="list centers or set a center's role")
    p.add_argument("code", nargs="?")
    p.add_argument("--role", choices=["development", "external"])
    add_project_option(p)
    p.set_defaults(func=cmd_centers)

    p = sub.add_parser("audit", help="show the audit history of a patient (or the latest events)")
    p.add_argument("study_id", nargs="?")
    p.add_argument("--table")
    p.add_argument("--record")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")
    add_project_option(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("db", help="registry database: check, upgrade, downgrade, backup, restore")
    dsub = p.add_subparsers(dest="action", required=True)
    for action in ("check", "upgrade", "downgrade"):
        d = dsub.add_parser(action)
        if action != "check":
            d.add_argument("--revision", default="head" if action == "upgrade" else "-1")
            d.add_argument("--no-backup", action="store_true")
        d.add_argument("--json", action="store_true")
        add_project_option(d)
        d.set_defaults(func=cmd_db)
    d = dsub.add_parser("backup", help="copy the registry now (SQLite online backup API; the "
                                       "project's backups/ folder unless --out DIR)")
    d.add_argument("--out", default=None, help="folder for the backup file")
    d.add_argument("--json", action="store_true")
    add_project_option(d)
    d.set_defaults(func=cmd_db_backup)
    d = dsub.add_parser("restore", help="replace the registry with a backup (the current one is "
                                        "backed up first)")
    d.add_argument("file", help="a backup file written by `pathomics db backup` or before a migration")
    d.add_argument("--json", action="store_true")
    add_project_option(d)
    d.set_defaults(func=cmd_db_restore)


# -- handlers ------------------------------------------------------------------------------
def cmd_init(args) -> int:
    from pathomics_desktop.project import resolve_project_dir
    from pathomics_desktop.registry.service import init_project

    root = args.dir or resolve_project_dir(args.project)
    project = init_project(root, name=args.name, database_url=args.database_url,
                           development_center=args.development_center)
    print(f"created project {project.root} (registry: {'SQLite file' if project.is_sqlite else 'PostgreSQL'})")
    return 0


def _resolve_mapping(project, value: str | None):
    from pathlib import Path

    from pathomics_desktop.errors import UserError
    from pathomics_desktop.registry.importer import ColumnMapping, mapping_path

    if not value:
        return None
    path = Path(value)
    if path.suffix.lower() == ".json" or path.exists():
        return ColumnMapping.load(path)
    saved = mapping_path(project.root, value)
    if not saved.exists():
        raise UserError(f"mapping {value!r} not found (no file, and not saved in {saved.parent})")
    return ColumnMapping.load(saved)


def cmd_import(args) -> int:
    from pathomics_desktop.registry.importer import import_file, save_mapping
    from pathomics_desktop.registry.redcap import import_redcap, load_export

    with opened_registry(args) as (project, registry):
        mapping = _resolve_mapping(project, args.mapping)
        if args.redcap_dictionary and args.save_mapping:
            mapping = load_export(registry, args.file, args.redcap_dictionary, mapping=mapping)[1].mapping
        if args.save_mapping and mapping is not None:
            saved = save_mapping(project.root, mapping, args.save_mapping)
            print(f"mapping saved as {saved}", file=sys.stderr)
        options = dict(mapping=mapping, dry_run=args.dry_run, reason=args.reason,
                       development_center=project.settings["study"].get("development_center", ""),
                       synthetic=bool(project.settings["project"].get("synthetic")))
        if args.redcap_dictionary:
            report = import_redcap(registry, args.file, args.redcap_dictionary, **options)
        else:
            report = import_file(registry, args.file, kind=args.kind, **options)
    if args.json:
        print(json.dumps(report.to_dict(), default=str, indent=2))
    else:
        for issue in report.issues:
            print(str(issue))
        print(report.summary())
    return 1 if report.errors else 0


def cmd_export_cohort(args) -> int:
    """With identifiers: the registry's analysis table (service.export_cohort); otherwise the
    de-identified snapshot export (reports.data_export: labelled SPSS/Stata, date shifting)."""
    from pathomics_desktop.errors import UserError
    from pathomics_desktop.reports.data_export import data_format, export_cohort_data
    from pathomics_desktop.registry.service import export_cohort

    out, suffix = data_format(args.out, args.format)
    if not args.include_identifiers:
        from pathomics_desktop.project import open_project

        result = export_cohort_data(open_project(args.project), out, fmt=args.format,
                                    included_only=args.included_only, shift=args.shift_dates, seed=args.seed)
        shifted = f"; dates shifted per patient ({len(result.shifted_columns)} date columns)" \
            if args.shift_dates else ""
        print(f"wrote {result.path} ({result.rows} patients, de-identified, snapshot "
              f"{result.snapshot_id}{shifted})")
        return 0
    if suffix in (".sav", ".dta") or args.shift_dates or args.seed is not None:
        raise UserError("--include-identifiers exports CSV, XLSX or Parquet as recorded; SPSS/Stata "
                        "exports and --shift-dates are de-identified only")
    with opened_registry(args) as (_project, registry):
        written = export_cohort(registry, out, include_identifiers=True, included_only=args.included_only)
    print(f"wrote {written} (with identifiers)")
    return 0


def cmd_edit(args) -> int:
    from pathomics_desktop.registry.service import edit_value

    with opened_registry(args) as (_project, registry):
        old, new = edit_value(registry, args.study_id, args.variable, args.value, reason=args.reason)
    print(f"{args.study_id}.{args.variable}: {old} -> {new}")
    return 0


def cmd_lock(args) -> int:
    from pathomics_desktop.registry.service import set_lock

    with opened_registry(args) as (_project, registry):
        set_lock(registry, args.study_id, args.locked, reason=args.reason)
    print(f"{args.study_id}: {'locked' if args.locked else 'unlocked'}")
    return 0


def cmd_delete(args) -> int:
    from pathomics_desktop.registry.service import delete_patient

    with opened_registry(args) as (_project, registry):
        delete_patient(registry, args.study_id, reason=args.reason)
    print(f"{args.study_id}: deleted")
    return 0


def cmd_variables_list(args) -> int:
    from pathomics_desktop.registry.codebook import Codebook

    with opened_registry(args) as (_project, registry):
        with registry.session() as session:
            book = Codebook.for_session(session)
    rows = [{"name": v.name, "label": v.label, "type": v.type, "unit": v.unit,
             "codes": list(v.codes) if v.type == "category" else None, "required": v.required,
             "identifier": v.identifier, "custom": v.is_custom} for v in book]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            flags = ",".join(k for k in ("required", "identifier", "custom") if r[k])
            print(f"{r['name']:<26} {r['type']:<9} {r['label']}{(' [' + flags + ']') if flags else ''}")
    return 0


def cmd_variables_add(args) -> int:
    from pathomics_desktop.errors import UserError
    from pathomics_desktop.registry.service import add_variable

    codes = None
    if args.codes:
        try:
            codes = json.loads(args.codes)
        except json.JSONDecodeError as exc:
            raise UserError(f"--codes is not valid JSON ({exc})") from None
        if isinstance(codes, list):
            codes = {str(c): [] for c in codes}
    with opened_registry(args) as (_project, registry):
        add_variable(registry, name=args.name, type=args.type, label=args.label, unit=args.unit,
                     codes=codes, min_value=args.min, max_value=args.max, soft_min=args.soft_min,
                     soft_max=args.soft_max, required=args.required, identifier=args.identifier)
    print(f"variable {args.name} added to the codebook")
    return 0


def cmd_centers(args) -> int:
    from sqlalchemy import func, select

    from pathomics_desktop.registry.models import Center, Patient
    from pathomics_desktop.registry.service import set_center_role

    with opened_registry(args) as (_project, registry):
        if args.code and args.role:
            set_center_role(registry, args.code, args.role)
        with registry.session() as session:
            rows = session.execute(
                select(Center.code, Center.role, func.count(Patient.id))
                .outerjoin(Patient).group_by(Center.id).order_by(Center.code)).all()
    for code, role, n in rows:
        print(f"{code:<20} {role:<12} {n} patients")
    return 0


def cmd_audit(args) -> int:
    from pathomics_desktop.registry.service import audit_history

    with opened_registry(args) as (_project, registry):
        events = audit_history(registry, args.study_id, table=args.table, record_id=args.record,
                               limit=args.limit if args.limit else (None if args.study_id else 50))
    rows = [{"id": e.id, "at": e.at.isoformat() + "Z", "user": e.user, "action": e.action,
             "table": e.table_name, "record": e.record_id, "field": e.field,
             "old": e.old_value, "new": e.new_value, "reason": e.reason} for e in events]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        what = f"{r['table']}#{r['record']}" + (f".{r['field']}" if r["field"] else "")
        change = (f"{r['old']} -> {r['new']}" if r["action"] == "update"
                  else (r["new"] if r["action"] == "insert" else r["old"]))
        reason = f"  [{r['reason']}]" if r["reason"] else ""
        print(f"{r['at']}  {r['user']:<10} {r['action']:<6} {what}: {change}{reason}")
    return 0


def cmd_db_backup(args) -> int:
    from pathlib import Path

    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry import database

    project = open_project(args.project)
    folder = Path(args.out) if args.out else project.folder("backups")
    saved = database.backup(project.database_url, folder, label="manual")
    print(json.dumps({"backup": str(saved)}) if args.json else f"backup written: {saved}")
    return 0


def cmd_db_restore(args) -> int:
    from pathlib import Path

    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry import database

    project = open_project(args.project)
    saved = database.restore(project.database_url, Path(args.file), project.folder("backups"))
    print(json.dumps({"restored": args.file, "previous_saved_as": str(saved)}) if args.json else
          f"registry restored from {args.file}; the previous registry was saved as {saved}")
    return 0


def cmd_db(args) -> int:
    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry import database

    project = open_project(args.project)
    url = project.database_url
    if args.action == "check":
        engine = database.make_engine(url)
        try:
            state = database.schema_state(engine)
        finally:
            engine.dispose()
        out = {"current": state.current, "head": state.head, "state": state.state}
        print(json.dumps(out) if args.json else
              f"schema {state.current or '-'} (this program: {state.head}): {state.state}")
        return 0 if state.state == "current" else 1
    backup_dir = None if args.no_backup else project.folder("backups")
    fn = database.upgrade if args.action == "upgrade" else database.downgrade
    saved = fn(url, revision=args.revision, backup_dir=backup_dir)
    engine = database.make_engine(url)
    try:
        state = database.schema_state(engine)
    finally:
        engine.dispose()
    out = {"current": state.current, "head": state.head, "state": state.state,
           "backup": str(saved) if saved else None}
    print(json.dumps(out) if args.json else
          f"schema now {state.current} ({state.state})" + (f"; backup: {saved}" if saved else ""))
    return 0
