"""Validated, all-or-nothing import of patient and follow-up spreadsheets (CSV, XLSX).

Two kinds of file:

* **patients**: one row per patient, canonical columns (see ``db/codebook.toml``):
  ``study_id, center, sex, age, surgery_date, ...``. Re-importing updates patients by
  ``study_id``; only the columns present in the file are touched; each changed field is
  audited.
* **followup**: a long file of visits: ``study_id, visit_date`` and any of
  ``vital_status, recurrence, recurrence_date, death_date``.

A :class:`ColumnMapping` renames the columns of another spreadsheet (a REDCap raw export for
example) and recodes its values; it is saved as JSON and reused.

The import runs in three steps: read, validate every cell (collecting *all* errors and
warnings with file, row, column and value), then write everything in one transaction. The
dry run performs the same writes and rolls them back, so it also reports what the database
itself would refuse. Any error, or any exception half-way, leaves the registry untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from pathomics_desktop.cohort.endpoints import Visit, check_consistency, summarise
from pathomics_desktop.errors import UserError
from pathomics_desktop.limits import MAX_SPREADSHEET_BYTES, check_file_size, check_xlsx_expansion
from pathomics_desktop.registry.codebook import CellError, Codebook, Variable
from pathomics_desktop.registry.models import FollowUpVisit, Patient
from pathomics_desktop.registry.records import (
    CenterCache,
    CustomVariableCache,
    get_value,
    patient_query,
    set_value,
)

SPREADSHEET_SUFFIXES = {".csv", ".txt", ".tsv", ".xlsx", ".xlsm"}
FOLLOWUP_COLUMNS = ("study_id", "visit_date", "vital_status", "recurrence", "recurrence_date", "death_date")
VISIT_DATE = Variable(name="visit_date", label="Visit date", type="date", min="1980-01-01",
                      required=True, storage="visits.visit_date")


# -- report --------------------------------------------------------------------------------
@dataclass
class ImportIssue:
    severity: str  # "error" | "warning"
    file: str
    row: int | None  # spreadsheet row number (header = 1); None for file-level problems
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column {self.column}"
        value = f" (value {self.value!r})" if self.value not in (None, "") else ""
        return f"{self.severity.upper()}: {where}{value}: {self.message}"


@dataclass
class ImportReport:
    file: str
    kind: str
    rows: int = 0
    dry_run: bool = False
    committed: bool = False
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    changed_fields: int = 0
    #: follow-up visits written beside the patients by a combined import (REDCap)
    visits_created: int = 0
    visits_updated: int = 0
    visits_unchanged: int = 0
    issues: list[ImportIssue] = field(default_factory=list)

    @property
    def errors(self) -> list[ImportIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ImportIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    def error(self, row, column, value, message) -> None:
        self.issues.append(ImportIssue("error", self.file, row, column, _show(value), message))

    def warning(self, row, column, value, message) -> None:
        self.issues.append(ImportIssue("warning", self.file, row, column, _show(value), message))

    def summary(self) -> str:
        verb = "would be" if self.dry_run or not self.committed else "were"
        head = (f"{self.file}: {self.rows} {self.kind} rows; {len(self.errors)} errors, "
                f"{len(self.warnings)} warnings.")
        if self.errors:
            return head + " Nothing was written."
        visits = ""
        if self.visits_created or self.visits_updated or self.visits_unchanged:
            visits = (f"; follow-up visits: {self.visits_created} created, {self.visits_updated} updated, "
                      f"{self.visits_unchanged} unchanged")
        return (head + f" {self.created} created, {self.updated} updated "
                f"({self.changed_fields} fields), {self.unchanged} unchanged{visits} {verb} written"
                + (" (dry run: nothing was written)." if self.dry_run else "."))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = len(self.errors)
        out["warnings"] = len(self.warnings)
        return out


def _show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    return str(value)


# -- column mappings -----------------------------------------------------------------------
@dataclass
class ColumnMapping:
    """Renames and recodes the columns of a foreign spreadsheet.

    JSON form::

        {"name": "redcap", "columns": {"record_id": "study_id", "gender": "sex"},
         "values": {"sex": {"1": "female", "2": "male"}},
         "ignore": ["redcap_event_name", "baseline_complete"]}

    ``values`` recodes raw cells (after renaming) before codebook validation; ``ignore``
    lists source columns that are dropped on purpose.
    """

    name: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    ignore: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> "ColumnMapping":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: mapping file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not a valid JSON column mapping ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("columns", {}), dict):
            raise UserError(f"{path}: a mapping needs an object with a 'columns' object")
        return cls(name=str(data.get("name") or path.stem),
                   columns={str(k): str(v) for k, v in data.get("columns", {}).items()},
                   values={str(k): {str(a): str(b) for a, b in v.items()}
                           for k, v in (data.get("values") or {}).items()},
                   ignore=[str(c) for c in data.get("ignore", [])])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


MAPPINGS_FOLDER = "mappings"


def mapping_path(project_root: str | Path, name: str) -> Path:
    """Where a project keeps the mapping saved under ``name`` (``mappings/<name>.json``)."""
    return Path(project_root) / MAPPINGS_FOLDER / f"{name}.json"


def saved_mappings(project_root: str | Path) -> list[str]:
    """The names of the project's saved mappings (``--save-mapping``), sorted."""
    folder = Path(project_root) / MAPPINGS_FOLDER
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def save_mapping(project_root: str | Path, mapping: ColumnMapping, name: str) -> Path:
    """Save ``mapping`` in the project under ``name`` (a plain file name, no folders)."""
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}", name):
        raise UserError(f"mapping name {name!r}: use letters, digits, spaces, '_', '.' or '-'")
    mapping.name = name
    return mapping.save(mapping_path(project_root, name))


# -- reading -------------------------------------------------------------------------------
def read_spreadsheet(path: str | Path) -> "pandas.DataFrame":  # noqa: F821
    """Read a CSV/TSV/XLSX file as text cells (no type guessing). Raises UserError for a
    missing, empty or non-spreadsheet file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix not in SPREADSHEET_SUFFIXES:
        raise UserError(f"{path}: not a spreadsheet (expected .csv, .tsv or .xlsx)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty")
    check_file_size(path, MAX_SPREADSHEET_BYTES, "spreadsheet")
    try:
        if suffix in (".xlsx", ".xlsm"):
            if not zipfile.is_zipfile(path):
                raise UserError(f"{path}: not an Excel workbook (.xlsx is a zip archive)")
            check_xlsx_expansion(path)
            frame = pd.read_excel(path, dtype=object, engine="openpyxl")
            frame = frame.map(_excel_cell)
        else:
            raw = path.read_bytes()
            if b"\x00" in raw[:4096]:
                raise UserError(f"{path}: not a text spreadsheet (binary content)")
            text = raw.decode("utf-8-sig")
            sep = "\t" if suffix == ".tsv" else None
            import io

            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                                sep=sep, engine="python", skipinitialspace=True)
    except UserError:
        raise
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text spreadsheet") from None
    except Exception as exc:  # pandas/openpyxl parser errors of many kinds
        raise UserError(f"{path}: cannot be read as a spreadsheet ({type(exc).__name__}: {exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.shape[1] == 0 or frame.empty:
        raise UserError(f"{path}: the spreadsheet has no data rows")
    return frame


def _excel_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    return value


def detect_kind(columns: list[str]) -> str:
    return "followup" if "visit_date" in columns else "patients"


# -- the import ----------------------------------------------------------------------------
@dataclass
class _Row:
    number: int
    values: dict[str, Any]


def import_file(registry, path: str | Path, *, kind: str | None = None,
                mapping: ColumnMapping | None = None, dry_run: bool = False,
                user: str = "", reason: str | None = None, development_center: str = "",
                synthetic: bool = False) -> ImportReport:
    """Validate and import a spreadsheet; nothing is written when any error is found."""
    path = Path(path)
    report = ImportReport(file=path.name, kind=kind or "patients", dry_run=dry_run)
    try:
        frame = read_spreadsheet(path)
    except UserError as exc:
        report.error(None, None, None, str(exc).split(": ", 1)[-1])
        return report
    if mapping is not None:
        frame = _apply_mapping(frame, mapping, report)
    report.kind = kind or detect_kind(list(frame.columns))
    report.rows = len(frame)
    return import_tables(registry, report, [ImportTable(report.kind, frame)], dry_run=dry_run,
                         user=user, reason=reason, development_center=development_center,
                         synthetic=synthetic)


@dataclass
class ImportTable:
    """One canonical table of a (possibly combined) import.

    ``kind`` is ``patients`` or ``followup``; ``numbers`` are the spreadsheet row numbers of
    the frame's rows (default: row index + 2, the header being row 1); ``counts`` names the
    report counters the writes go to (``""``: created/updated/unchanged, ``"visits_"``:
    visits_created/...)."""

    kind: str
    frame: Any
    numbers: list[int] | None = None
    counts: str = ""


def import_tables(registry, report: ImportReport, tables: list[ImportTable], *, dry_run: bool = False,
                  user: str = "", reason: str | None = None, development_center: str = "",
                  synthetic: bool = False, derive_summary: bool = False) -> ImportReport:
    """Validate every table, then write them all in ONE transaction (in the given order:
    patients before their visits). Any error in any table leaves the registry untouched; the
    dry run performs the writes and rolls them back.

    With ``derive_summary`` the follow-up summary of every patient that got visits (last
    follow-up, vital status, death, recurrence) is derived from all of the patient's visits
    with :func:`~pathomics_desktop.cohort.endpoints.summarise` and stored (audited)."""
    with registry.session(user=user, reason=reason) as session:
        book = Codebook.for_session(session)
        validated = []
        for table in tables:
            validate = _validate_followup if table.kind == "followup" else _validate_patients
            validated.append((table, validate(table.frame, report, book, numbers=table.numbers)))
    if report.errors:
        return report
    context = f"import {report.file}" + (f": {reason}" if reason else "")
    try:
        with registry.session(user=user, reason=reason) as session:
            session.info["audit_context"] = context
            for table, rows in validated:
                if table.kind == "followup":
                    _write_followup(session, rows, report, counts=table.counts, book=book,
                                    derive_summary=derive_summary)
                else:
                    _write_patients(session, rows, report, book, development_center, synthetic,
                                    has_reason=bool(reason), counts=table.counts)
                if report.errors:
                    raise _Abort()
                session.flush()
            if dry_run:
                raise _Abort()
        report.committed = True
    except _Abort:
        pass
    except UserError as exc:
        report.error(None, None, None, str(exc))
    except SQLAlchemyError as exc:
        report.error(None, None, None, f"the database refused the import: {exc.orig if hasattr(exc, 'orig') else exc}")
    return report


def _bump(report: ImportReport, counts: str, name: str, n: int = 1) -> None:
    """Add ``n`` to the report counter ``counts + name`` (``created``, ``visits_created``...)."""
    attr = counts + name
    setattr(report, attr, getattr(report, attr) + n)


class _Abort(Exception):
    """Roll the import transaction back (dry run, or errors found while writing)."""


def _apply_mapping(frame, mapping: ColumnMapping, report: ImportReport):
    missing = [c for c in mapping.columns if c not in frame.columns]
    for col in missing:
        report.warning(1, col, None, f"mapping {mapping.name!r} names a column that is not in the file")
    frame = frame.drop(columns=[c for c in mapping.ignore if c in frame.columns])
    frame = frame.rename(columns=mapping.columns)
    for column, recode in mapping.values.items():
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v, r=recode: r.get(str(v).strip(), v))
    return frame


def _check_header(frame, report: ImportReport, allowed: set[str], required: tuple[str, ...]) -> list[str]:
    columns = list(frame.columns)
    seen: set[str] = set()
    for col in columns:
        if col in seen:
            report.error(1, col, None, "duplicate column")
        seen.add(col)
        if col not in allowed:
            report.error(1, col, None, "unknown column (not in the codebook; map it or remove it)")
    for col in required:
        if col not in seen:
            report.error(1, col, None, "required column is missing")
    return [c for c in columns if c in allowed]


def _parse_cells(frame, report: ImportReport, variables: dict[str, Variable],
                 numbers: list[int] | None = None) -> list[_Row]:
    rows: list[_Row] = []
    names = list(variables)
    records = frame[names].to_dict("records") if names else [{}] * len(frame)
    for index, record in enumerate(records):
        number = numbers[index] if numbers is not None else index + 2  # header is row 1
        values: dict[str, Any] = {}
        for name in names:
            var = variables[name]
            raw = record[name]
            try:
                value, warning = var.parse(raw)
            except CellError as exc:
                report.error(number, name, raw, str(exc))
                continue
            if warning:
                report.warning(number, name, raw, warning)
            values[name] = value
        rows.append(_Row(number, values))
    return rows


def _check_duplicates(rows: list[_Row], report: ImportReport, key=lambda r: r.values.get("study_id")) -> None:
    first: dict[Any, int] = {}
    for row in rows:
        k = key(row)
        if k is None or (isinstance(k, tuple) and None in k):
            continue
        if k in first:
            report.error(row.number, "study_id", row.values.get("study_id"),
                         f"duplicate of row {first[k]}")
        else:
            first[k] = row.number


def _validate_patients(frame, report: ImportReport, book: Codebook, *,
                       numbers: list[int] | None = None) -> list[_Row]:
    allowed = {v.name for v in book}
    columns = _check_header(frame, report, allowed, ("study_id",))
    if report.errors:
        return []
    variables = {c: book[c] for c in columns}
    rows = _parse_cells(frame, report, variables, numbers)
    for row in rows:
        if row.values.get("study_id") is None and "study_id" not in [i.column for i in report.errors if i.row == row.number]:
            report.error(row.number, "study_id", None, "study_id is empty")
    _check_duplicates(rows, report)
    for row in rows:
        _check_patient_row(row, report, book, columns)
    return rows


def _check_patient_row(row: _Row, report: ImportReport, book: Codebook, columns: list[str]) -> None:
    v = row.values
    who = f"patient {v.get('study_id')}"
    fu_cols = [c for c in ("vital_status", "recurrence", "recurrence_date", "death_date") if c in columns]
    if any(v.get(c) is not None for c in fu_cols) and "last_followup_date" in columns \
            and v.get("last_followup_date") is None:
        report.error(row.number, "last_followup_date", None,
                     f"{who}: follow-up values need a last follow-up date")
    if v.get("recurrence") is False and v.get("recurrence_date") is not None:
        report.error(row.number, "recurrence_date", v.get("recurrence_date"),
                     f"{who}: a recurrence date is given but recurrence is no")
    if v.get("vital_status") == "alive" and v.get("death_date") is not None:
        report.error(row.number, "death_date", v.get("death_date"),
                     f"{who}: a death date is given but vital status is alive")
    if "surgery_date" in columns or fu_cols:
        summary = summarise([Visit(visit_date=v.get("last_followup_date"),
                                   vital_status=v.get("vital_status"), recurrence=v.get("recurrence"),
                                   recurrence_date=v.get("recurrence_date"), death_date=v.get("death_date"))])
        for problem in check_consistency(who, v.get("surgery_date"), summary):
            column = _problem_column(problem)
            report.error(row.number, column, v.get(column), problem)
    missing = [name for name in columns if book[name].required and v.get(name) is None
               and not any(i.row == row.number and i.column == name for i in report.errors)]
    if missing:
        report.warning(row.number, ",".join(missing), None,
                       f"{who}: required value missing (the patient will be excluded as "
                       "'incomplete required data' until it is filled in)")


def _problem_column(problem: str) -> str:
    for token, column in (("death date", "death_date"), ("no death date", "death_date"),
                          ("recurrence", "recurrence_date"), ("last follow-up", "last_followup_date")):
        if token in problem:
            return column
    return "last_followup_date"


def _validate_followup(frame, report: ImportReport, book: Codebook, *,
                       numbers: list[int] | None = None) -> list[_Row]:
    allowed = set(FOLLOWUP_COLUMNS)
    columns = _check_header(frame, report, allowed, ("study_id", "visit_date"))
    if report.errors:
        return []
    variables = {c: (VISIT_DATE if c == "visit_date" else book[c]) for c in columns}
    rows = _parse_cells(frame, report, variables, numbers)
    for row in rows:
        if row.values.get("study_id") is None:
            report.error(row.number, "study_id", None, "study_id is empty")
        if row.values.get("visit_date") is None and not any(
                i.row == row.number and i.column == "visit_date" for i in report.errors):
            report.error(row.number, "visit_date", None, "visit date is empty")
    first: dict[tuple, int] = {}
    for row in rows:
        key = (row.values.get("study_id"), row.values.get("visit_date"))
        if None in key:
            continue
        if key in first:
            report.error(row.number, "visit_date", key[1], f"duplicate visit of row {first[key]}")
        else:
            first[key] = row.number
    return rows


# -- writing -------------------------------------------------------------------------------
def _write_patients(session, rows: list[_Row], report: ImportReport, book: Codebook,
                    development_center: str, synthetic: bool, *, has_reason: bool,
                    counts: str = "") -> None:
    ids = [r.values["study_id"] for r in rows]
    existing: dict[str, Patient] = {}
    for chunk in range(0, len(ids), 900):
        query = patient_query().where(Patient.study_id.in_(ids[chunk:chunk + 900]))
        existing.update({p.study_id: p for p in session.scalars(query)})
    centers = CenterCache(session, development_center)
    custom = CustomVariableCache(session)
    fresh: list[_Row] = []
    for row in rows:
        values = row.values
        patient = existing.get(values["study_id"])
        if patient is None:
            if values.get("center") is None:
                report.error(row.number, "center", None,
                             f"patient {values['study_id']} is new: a center is needed")
            else:
                fresh.append(row)
            continue
        changes = [name for name, value in values.items()
                   if name != "study_id" and get_value(patient, book[name]) != value]
        if not changes:
            _bump(report, counts, "unchanged")
            continue
        if patient.locked and not has_reason:
            report.error(row.number, changes[0], values.get(changes[0]),
                         f"patient {patient.study_id} is locked: re-import with a reason to change "
                         f"{', '.join(changes)}")
            continue
        for name in changes:
            set_value(session, patient, book[name], values[name], centers=centers, custom=custom)
        _bump(report, counts, "updated")
        report.changed_fields += len(changes)
    if report.errors:
        return
    session.flush()
    _insert_new_patients(session, fresh, book, centers, custom, synthetic)
    _bump(report, counts, "created", len(fresh))
    session.info.setdefault("created_study_ids", set()).update(r.values["study_id"] for r in fresh)
    # follow-up consistency against what is now stored (other visits included)
    for row in rows:
        patient = existing.get(row.values["study_id"])
        if patient is None:
            continue
        _check_stored_followup(patient, row.number, report)


def _insert_new_patients(session, rows: list[_Row], book: Codebook, centers: CenterCache,
                         custom: CustomVariableCache, synthetic: bool) -> None:
    """Insert new patients table by table in bulk (one statement per table, audited by
    :func:`~pathomics_desktop.registry.audit.write_bulk_inserts`)."""
    from pathomics_desktop.registry.audit import write_bulk_inserts
    from pathomics_desktop.registry.models import (
        Comorbidity, FollowUpVisit, LabResult, Pathology, PatientIdentifier, Surgery, Treatment, VariableValue)
    from pathomics_desktop.registry.records import new_patient_rows

    if not rows:
        return
    laid_out = [new_patient_rows(row.values, book) for row in rows]
    for layout in laid_out:
        centers.get(layout["patients"].pop("center"))
    session.flush()  # new centers get their ids
    patient_params = [{**layout["patients"], "study_id": row.values["study_id"], "synthetic": synthetic,
                       "center_id": centers.by_code[row.values["center"]].id}
                      for layout, row in zip(laid_out, rows)]
    inserted = write_bulk_inserts(session, Patient.__table__, patient_params)
    ids = [r["id"] for r in inserted]
    tables = {"surgeries": Surgery, "pathology": Pathology, "comorbidities": Comorbidity,
              "treatments": Treatment, "identifiers": PatientIdentifier}
    for key, model in tables.items():
        params = [{"patient_id": pid, **layout[key]} for pid, layout in zip(ids, laid_out) if layout[key]]
        write_bulk_inserts(session, model.__table__, params)
    write_bulk_inserts(session, LabResult.__table__,
                       [{"patient_id": pid, **lab} for pid, layout in zip(ids, laid_out) for lab in layout["lab_results"]])
    write_bulk_inserts(session, FollowUpVisit.__table__,
                       [{"patient_id": pid, **v} for pid, layout in zip(ids, laid_out) for v in layout["followup_visits"]])
    write_bulk_inserts(session, VariableValue.__table__,
                       [{"patient_id": pid, "variable_id": custom.by_name[name].id, "value": text}
                        for pid, layout in zip(ids, laid_out) for name, text in layout["custom"].items()])


def _check_stored_followup(patient: Patient, row_number: int, report: ImportReport) -> None:
    visits = [Visit(v.visit_date, v.vital_status, v.recurrence, v.recurrence_date, v.death_date)
              for v in patient.followups]
    surgery = patient.surgery.surgery_date if patient.surgery else None
    for problem in check_consistency(f"patient {patient.study_id}", surgery, summarise(visits)):
        report.error(row_number, _problem_column(problem), None, problem)


def _write_followup(session, rows: list[_Row], report: ImportReport, *, counts: str = "",
                    book: Codebook | None = None, derive_summary: bool = False) -> None:
    ids = sorted({r.values["study_id"] for r in rows})
    patients: dict[str, Patient] = {}
    for chunk in range(0, len(ids), 900):
        query = patient_query().where(Patient.study_id.in_(ids[chunk:chunk + 900]))
        patients.update({p.study_id: p for p in session.scalars(query)})
    touched: dict[str, int] = {}
    for row in rows:
        sid = row.values["study_id"]
        patient = patients.get(sid)
        if patient is None:
            report.error(row.number, "study_id", sid, "unknown patient (import the patient first)")
            continue
        visit = next((v for v in patient.followups
                      if v.source == "visit" and v.visit_date == row.values["visit_date"]), None)
        fields = {k: v for k, v in row.values.items() if k not in ("study_id", "visit_date")}
        if visit is None:
            if patient.locked and not session.info.get("reason"):
                report.error(row.number, "study_id", sid, f"patient {sid} is locked: import with a reason")
                continue
            patient.followups.append(FollowUpVisit(source="visit", visit_date=row.values["visit_date"], **fields))
            _bump(report, counts, "created")
        else:
            changes = {k: v for k, v in fields.items() if getattr(visit, k) != v}
            if not changes:
                _bump(report, counts, "unchanged")
                if derive_summary:
                    touched.setdefault(sid, row.number)
                continue
            if patient.locked and not session.info.get("reason"):
                report.error(row.number, next(iter(changes)), None, f"patient {sid} is locked: import with a reason")
                continue
            for k, v in changes.items():
                setattr(visit, k, v)
            _bump(report, counts, "updated")
            report.changed_fields += len(changes)
        touched[sid] = row.number
    if report.errors:
        return
    session.flush()
    if derive_summary:
        book = book or Codebook.for_session(session)
        created = session.info.get("created_study_ids", set())
        for sid in touched:
            changed = derive_followup_summary(session, patients[sid], book)
            if sid not in created:  # a new patient's summary is part of the new patient
                report.changed_fields += len(changed)
        session.flush()
    for sid, number in touched.items():
        _check_stored_followup(patients[sid], number, report)


SUMMARY_FIELDS = ("last_followup_date", "vital_status", "death_date", "recurrence", "recurrence_date")


def derive_followup_summary(session, patient: Patient, book: Codebook) -> list[str]:
    """Store the patient's follow-up summary derived from ALL their visits.

    :func:`~pathomics_desktop.cohort.endpoints.summarise`: last follow-up = the latest visit
    date, dead when any visit says so (death date = the earliest recorded one), recurrence
    when any visit says so (date = the earliest recorded one). Unknown parts stay as they
    are. Written through :func:`set_value` (audited); returns the changed variables."""
    fu = summarise([Visit(v.visit_date, v.vital_status, v.recurrence, v.recurrence_date, v.death_date)
                    for v in patient.followups])
    derived = {"last_followup_date": fu.last_followup_date,
               "vital_status": None if fu.dead is None else ("dead" if fu.dead else "alive"),
               "death_date": fu.death_date, "recurrence": fu.recurrence,
               "recurrence_date": fu.recurrence_date}
    changed = []
    for name in SUMMARY_FIELDS:  # last_followup_date first: it is the summary visit's date
        value = derived[name]
        if value is not None and set_value(session, patient, book[name], value):
            changed.append(name)
    return changed


def today() -> dt.date:  # pragma: no cover - trivial
    return dt.date.today()
