"""Registry services used by the CLI and the GUI alike: one function, one user action, one
transaction (audited)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pathomics_desktop.errors import UserError
from pathomics_desktop.project import Project
from pathomics_desktop.registry import audit as _audit  # noqa: F401  (registers the audit hooks)
from pathomics_desktop.registry.codebook import CellError, Codebook, validate_new_variable
from pathomics_desktop.registry.database import Registry, open_registry
from pathomics_desktop.registry.models import AuditEvent, Center, CodebookVariable, FollowUpVisit, Patient
from pathomics_desktop.registry.records import patient_query, set_value

EXPORT_SUFFIXES = (".csv", ".xlsx", ".parquet")


def open_project_registry(project: Project, *, create: bool = False) -> Registry:
    return open_registry(project.database_url, create=create)


def init_project(root: str | Path, *, name: str = "", database_url: str = "",
                 development_center: str = "", synthetic: bool = False) -> Project:
    """Create the project folder, its settings and an empty registry at the newest schema."""
    project = Project.create(root, name=name, database_url=database_url, synthetic=synthetic)
    if development_center:
        project.settings["study"]["development_center"] = development_center
        project.save()
    registry = open_project_registry(project, create=True)
    try:
        if development_center:
            with registry.session(reason="project set-up") as session:
                session.add(Center(code=development_center, name=development_center, role="development"))
    finally:
        registry.dispose()
    return project


def get_patient(session, study_id: str) -> Patient:
    patient = session.scalars(patient_query().where(Patient.study_id == study_id)).first()
    if patient is None:
        raise UserError(f"patient {study_id!r} not found")
    return patient


class NoteRequired(UserError):
    """A value outside its soft limits: accepted only with a note (the audit reason).

    ``warnings`` maps each variable (or visit field) to its soft-limit warning."""

    def __init__(self, message: str, warnings: dict[str, str]):
        super().__init__(message)
        self.warnings = dict(warnings)


class ReasonRequired(UserError):
    """A change to a locked patient record without a reason for the change."""


class EditConflict(UserError):
    """Another user changed the patient's record after this user loaded it (optimistic
    locking on ``patients.version``): nothing was written.

    ``fields``: per proposed value ``{"variable", "label", "base", "mine", "theirs",
    "conflict"}`` -- ``base`` the value when the record was loaded (``None`` if not given),
    ``theirs`` the value now in the registry, ``conflict`` whether the other change touched
    this field (theirs differs from base; without a base, theirs differs from mine).
    ``current_version`` is the version to save against once the user has decided."""

    def __init__(self, study_id: str, loaded_version: int, current_version: int,
                 fields: list[dict[str, Any]], changed_by: str | None, changed_at: str | None):
        self.study_id, self.loaded_version, self.current_version = study_id, loaded_version, current_version
        self.fields, self.changed_by, self.changed_at = fields, changed_by, changed_at
        clashes = [f for f in fields if f["conflict"]]
        who = f" by {changed_by}" + (f" at {changed_at}" if changed_at else "") if changed_by else ""
        listed = "; ".join(f"{f['label']}: yours {f['mine']!r}, theirs {f['theirs']!r}" for f in clashes)
        super().__init__(
            f"patient {study_id} was changed{who} after you opened it (version {loaded_version} -> "
            f"{current_version}); nothing was saved. "
            + (f"Both of you changed: {listed}." if clashes else "They changed other fields than yours.")
            + " Keep yours, take theirs, or merge field by field, then save again.")


def _conflict(session, book: Codebook, patient: Patient, parsed: dict[str, Any],
              base_values: dict[str, Any] | None, loaded_version: int) -> EditConflict:
    from pathomics_desktop.registry.models import AuditEvent
    from pathomics_desktop.registry.records import get_value

    fields = []
    for variable, mine in parsed.items():
        theirs = get_value(patient, book[variable])
        has_base = base_values is not None and variable in base_values
        base = base_values.get(variable) if has_base else None
        conflict = (theirs != base) if has_base else (theirs != mine)
        fields.append({"variable": variable, "label": book[variable].label, "base": base, "mine": mine,
                       "theirs": theirs, "conflict": bool(conflict and theirs != mine)})
    last = session.scalars(select(AuditEvent).where(AuditEvent.patient_id == patient.id)
                           .order_by(AuditEvent.id.desc()).limit(1)).first()
    return EditConflict(patient.study_id, loaded_version, patient.version, fields,
                        last.user if last else None, last.at.isoformat(timespec="seconds") if last else None)


def _reason_for(note: str | None, reason: str | None) -> str | None:
    """The audit reason of one field: its soft-limit note and the reason for change."""
    parts = [p.strip() for p in (note, reason) if p and p.strip()]
    return "; ".join(dict.fromkeys(parts)) or None


def _require_notes(study_id: str, warnings: dict[str, str], notes: dict[str, str],
                   labels: dict[str, str]) -> None:
    """Raise :class:`NoteRequired` for every soft-limit warning without a note."""
    missing = {k: w for k, w in warnings.items() if not (notes.get(k) or "").strip()}
    if missing:
        listed = "; ".join(f"{labels.get(k, k)}: {w}" for k, w in missing.items())
        raise NoteRequired(f"patient {study_id}: a value outside the expected range needs a note "
                           f"({listed})", missing)


def _require_reason_if_locked(patient: Patient, reason: str | None) -> None:
    if patient.locked and not (reason or "").strip():
        raise ReasonRequired(f"patient {patient.study_id} is locked: changing it needs a reason")


def parse_edit(book: Codebook, study_id: str, variable: str, raw: Any) -> tuple[Any, str | None]:
    """Validate one proposed value: (canonical value, soft-limit warning or None).

    Raises :class:`UserError` naming the patient and variable for an unknown or read-only
    variable and for a hard problem (type, code, hard limit)."""
    if variable not in book:
        raise UserError(f"unknown variable {variable!r} (not in the codebook)")
    var = book[variable]
    if var.name == "study_id":
        raise UserError("study_id cannot be edited")
    try:
        return var.parse(raw)
    except CellError as exc:
        raise UserError(f"patient {study_id}, {variable}: {exc}") from None


def edit_values(registry: Registry, study_id: str, values: dict[str, Any], *, user: str = "",
                reason: str | None = None, notes: dict[str, str] | None = None,
                require_notes: bool = False, expected_version: int | None = None,
                base_values: dict[str, Any] | None = None,
                expected_values: dict[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """Change several values of one patient in ONE transaction; returns {variable: (old, new)}.

    Each value is validated by the codebook (:func:`parse_edit`); nothing is written when one
    fails. Every changed field gets its own audit row whose reason is the field's note
    (``notes[variable]``) joined with ``reason``. With ``require_notes`` a soft-limit warning
    without a note raises :class:`NoteRequired` (the GUI's rule; the CLI accepts the value and
    prints nothing). A locked patient needs a ``reason`` (:class:`ReasonRequired`).

    ``expected_version`` (the record's ``version`` when the user loaded it; the GUI always
    passes it) makes the save refuse with :class:`EditConflict` if anyone changed the record
    since, also when the other change commits between this read and this write (the UPDATE
    is conditional on the version); ``base_values`` (the loaded values) tell which fields
    both changed. ``expected_values`` is the field-level check of undo and redo: the save is
    a conflict if any of those fields no longer holds the expected value."""
    from sqlalchemy.orm.exc import StaleDataError

    try:
        return _edit_values(registry, study_id, values, user=user, reason=reason, notes=notes or {},
                            require_notes=require_notes, expected_version=expected_version,
                            base_values=base_values, expected_values=expected_values)
    except StaleDataError:
        # the other save committed between our read and our write: report it the same way
        with registry.session() as session:
            book = Codebook.for_session(session)
            parsed = {v: parse_edit(book, study_id, v, raw)[0] for v, raw in values.items()}
            patient = get_patient(session, study_id)
            raise _conflict(session, book, patient, parsed, base_values,
                            expected_version if expected_version is not None else patient.version - 1) from None


def _edit_values(registry: Registry, study_id: str, values: dict[str, Any], *, user: str, reason: str | None,
                 notes: dict[str, str], require_notes: bool, expected_version: int | None,
                 base_values: dict[str, Any] | None,
                 expected_values: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    with registry.session(user=user, reason=reason) as session:
        book = Codebook.for_session(session)
        parsed: dict[str, Any] = {}
        warnings: dict[str, str] = {}
        for variable, raw in values.items():
            parsed[variable], warning = parse_edit(book, study_id, variable, raw)
            if warning:
                warnings[variable] = warning
        if require_notes:
            _require_notes(study_id, warnings, notes, {v: book[v].label for v in warnings})
        patient = get_patient(session, study_id)
        if expected_version is not None and patient.version != expected_version:
            raise _conflict(session, book, patient, parsed, base_values, expected_version)
        if expected_values:
            from pathomics_desktop.registry.records import get_value as _current

            if any(_current(patient, book[v]) != value for v, value in expected_values.items()):
                raise _conflict(session, book, patient, parsed, expected_values, patient.version)
        _require_reason_if_locked(patient, reason)
        from pathomics_desktop.registry.records import get_value

        changes: dict[str, tuple[Any, Any]] = {}
        for variable, value in parsed.items():
            var = book[variable]
            old = get_value(patient, var)
            session.info["reason"] = _reason_for(notes.get(variable), reason)
            set_value(session, patient, var, value)
            session.flush()  # audit rows now, with this field's reason
            changes[variable] = (old, value)
        session.info["reason"] = reason
        return changes


def record_version(registry: Registry, study_id: str) -> int:
    """The patient record's current version (optimistic locking)."""
    with registry.session() as session:
        return int(get_patient(session, study_id).version)


def edit_value(registry: Registry, study_id: str, variable: str, raw: Any, *, user: str = "",
               reason: str | None = None, note: str | None = None,
               require_note: bool = False) -> tuple[Any, Any]:
    """Change one value of a patient (validated by the codebook); returns (old, new).

    ``note`` explains a value outside the soft limits (required with ``require_note``);
    the audit row's reason is the note joined with ``reason``. See :func:`edit_values`."""
    changes = edit_values(registry, study_id, {variable: raw}, user=user, reason=reason,
                          notes={variable: note} if note else None, require_notes=require_note)
    return changes[variable]


def set_lock(registry: Registry, study_id: str, locked: bool, *, user: str = "",
             reason: str | None = None) -> None:
    """Mark a patient complete and locked (or unlock it: that needs a reason)."""
    with registry.session(user=user, reason=reason) as session:
        patient = get_patient(session, study_id)
        patient.locked = locked
        if locked:
            patient.complete = True


def delete_patient(registry: Registry, study_id: str, *, user: str = "", reason: str | None = None) -> None:
    with registry.session(user=user, reason=reason) as session:
        patient = get_patient(session, study_id)
        if not reason:
            raise UserError(f"deleting patient {study_id} needs a reason")
        session.delete(patient)


def add_variable(registry: Registry, *, name: str, type: str, label: str = "", unit: str = "",
                 codes: dict[str, list[str]] | None = None, min_value: Any = None,
                 max_value: Any = None, soft_min: Any = None, soft_max: Any = None,
                 required: bool = False, identifier: bool = False, derived: bool = False,
                 user: str = "") -> None:
    """Add a user-defined variable to the project's codebook. ``derived``: its values are
    computed by a job (``signature apply``), not curated; on PostgreSQL analysts may add such a
    variable (not an identifier, not required) and write its values (migration 0006)."""
    with registry.session(user=user) as session:
        book = Codebook.for_session(session)
        validate_new_variable(book, name=name, type=type, codes=codes, min_value=min_value,
                              max_value=max_value, soft_min=soft_min, soft_max=soft_max)
        session.add(CodebookVariable(
            name=name, label=label or name, type=type, unit=unit, codes=codes,
            min_value=None if min_value is None else str(min_value),
            max_value=None if max_value is None else str(max_value),
            soft_min=None if soft_min is None else str(soft_min),
            soft_max=None if soft_max is None else str(soft_max),
            required=required, identifier=identifier, derived=derived))


def set_center_role(registry: Registry, code: str, role: str, *, user: str = "") -> None:
    if role not in ("development", "external"):
        raise UserError(f"center role must be 'development' or 'external', not {role!r}")
    with registry.session(user=user) as session:
        center = session.scalars(select(Center).where(Center.code == code)).first()
        if center is None:
            raise UserError(f"center {code!r} not found")
        center.role = role


def audit_history(registry: Registry, study_id: str | None = None, *, table: str | None = None,
                  record_id: str | None = None, limit: int | None = None) -> list[AuditEvent]:
    with registry.session() as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if study_id is not None:
            pid = session.scalars(select(Patient.id).where(Patient.study_id == study_id)).first()
            if pid is None:
                # a deleted patient: find its id in the audit trail itself
                row = session.scalars(select(AuditEvent).where(
                    AuditEvent.table_name == "patients",
                    AuditEvent.action.in_(("insert", "delete")),
                    (AuditEvent.new_value.contains(f'"study_id": "{study_id}"'))
                    | (AuditEvent.old_value.contains(f'"study_id": "{study_id}"')))).first()
                if row is None:
                    raise UserError(f"patient {study_id!r} has no history")
                pid = row.patient_id
            query = query.where(AuditEvent.patient_id == pid)
        if table is not None:
            query = query.where(AuditEvent.table_name == table)
        if record_id is not None:
            query = query.where(AuditEvent.record_id == str(record_id))
        rows = list(session.scalars(query))
        return rows[-limit:] if limit else rows


# -- follow-up visits ------------------------------------------------------------------------
VISIT_FIELDS = ("visit_date", "vital_status", "recurrence", "recurrence_date", "death_date")


def _visit_variables(book: Codebook) -> dict[str, Any]:
    from pathomics_desktop.registry.importer import VISIT_DATE

    return {name: VISIT_DATE if name == "visit_date" else book[name] for name in VISIT_FIELDS}


def parse_visit(book: Codebook, study_id: str, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate a follow-up visit's fields with the codebook (the follow-up import's rules):
    (canonical values, soft-limit warnings by field). The visit date is required. Raises
    :class:`UserError` naming the patient and field for a hard problem."""
    variables = _visit_variables(book)
    unknown = sorted(set(fields) - set(VISIT_FIELDS))
    if unknown:
        raise UserError(f"patient {study_id}: unknown visit field(s) {', '.join(unknown)} "
                        f"(accepted: {', '.join(VISIT_FIELDS)})")
    values: dict[str, Any] = {}
    warnings: dict[str, str] = {}
    for name in VISIT_FIELDS:
        try:
            value, warning = variables[name].parse(fields.get(name))
        except CellError as exc:
            raise UserError(f"patient {study_id}, visit {name}: {exc}") from None
        values[name] = value
        if warning:
            warnings[name] = warning
    if values["visit_date"] is None:
        raise UserError(f"patient {study_id}: a follow-up visit needs a visit date")
    return values, warnings


def visit_values(visit) -> dict[str, Any]:
    """A :class:`FollowUpVisit` as plain values (``id``, ``source`` and :data:`VISIT_FIELDS`)."""
    return {"id": visit.id, "source": visit.source, **{k: getattr(visit, k) for k in VISIT_FIELDS}}


def _find_visit(patient: Patient, study_id: str, visit_date: dt.date):
    for visit in patient.followups:
        if visit.source == "visit" and visit.visit_date == visit_date:
            return visit
    raise UserError(f"patient {study_id} has no follow-up visit on {visit_date}")


def _check_followup(patient: Patient, visit_date: dt.date | None) -> None:
    """The follow-up import's consistency rules, and a visit date after surgery."""
    from pathomics_desktop.cohort.endpoints import FollowUpError, Visit, check_consistency, summarise

    visits = [Visit(v.visit_date, v.vital_status, v.recurrence, v.recurrence_date, v.death_date)
              for v in patient.followups]
    surgery = patient.surgery.surgery_date if patient.surgery else None
    who = f"patient {patient.study_id}"
    problems = check_consistency(who, surgery, summarise(visits))
    if surgery is not None and visit_date is not None and visit_date < surgery:
        problems.insert(0, f"{who}: visit date {visit_date} is before surgery ({surgery})")
    if problems:
        raise FollowUpError("; ".join(problems))


def _write_visit(registry: Registry, study_id: str, visit_date: dt.date | None, fields: dict[str, Any] | None,
                 *, user: str, reason: str | None, notes: dict[str, str] | None, require_notes: bool,
                 check: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Add (``visit_date`` None), change or delete (``fields`` None) one ``source='visit'``
    visit in one transaction; returns (old values, new values)."""
    notes = notes or {}
    with registry.session(user=user, reason=reason) as session:
        book = Codebook.for_session(session)
        values, warnings = parse_visit(book, study_id, fields) if fields is not None else ({}, {})
        if require_notes:
            _require_notes(study_id, warnings, notes, {k: f"visit {k}" for k in warnings})
        patient = get_patient(session, study_id)
        _require_reason_if_locked(patient, reason)
        session.info["reason"] = _reason_for("; ".join(notes[k] for k in warnings if notes.get(k)), reason)
        old = None
        if visit_date is None:
            clash = [v for v in patient.followups if v.source == "visit" and v.visit_date == values["visit_date"]]
            if clash:
                raise UserError(f"patient {study_id} already has a follow-up visit on {values['visit_date']}")
            visit = FollowUpVisit(source="visit", **values)
            patient.followups.append(visit)
        else:
            visit = _find_visit(patient, study_id, visit_date)
            old = visit_values(visit)
            if fields is None:
                patient.followups.remove(visit)
                session.delete(visit)
            else:
                if values["visit_date"] != visit_date and any(
                        v.source == "visit" and v.visit_date == values["visit_date"] for v in patient.followups):
                    raise UserError(f"patient {study_id} already has a follow-up visit on {values['visit_date']}")
                for key, value in values.items():
                    setattr(visit, key, value)
        session.flush()
        if check:
            _check_followup(patient, values.get("visit_date"))
        return old, (visit_values(visit) if fields is not None else None)


def add_visit(registry: Registry, study_id: str, fields: dict[str, Any], *, user: str = "",
              reason: str | None = None, notes: dict[str, str] | None = None,
              require_notes: bool = False, check: bool = True) -> dict[str, Any]:
    """Add a follow-up visit (``visit_date`` and any of vital status, recurrence and their
    dates), validated like the follow-up import; with ``check`` the patient's follow-up must
    stay consistent (:func:`~pathomics_desktop.cohort.endpoints.check_consistency`).
    Returns the stored visit's values."""
    return _write_visit(registry, study_id, None, fields, user=user, reason=reason, notes=notes,
                        require_notes=require_notes, check=check)[1]


def edit_visit(registry: Registry, study_id: str, visit_date: Any, fields: dict[str, Any], *,
               user: str = "", reason: str | None = None, notes: dict[str, str] | None = None,
               require_notes: bool = False, check: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Replace the fields of the patient's visit on ``visit_date``; returns (old, new)."""
    day = _visit_day(study_id, visit_date)
    return _write_visit(registry, study_id, day, fields, user=user, reason=reason, notes=notes,
                        require_notes=require_notes, check=check)


def delete_visit(registry: Registry, study_id: str, visit_date: Any, *, user: str = "",
                 reason: str | None = None, check: bool = True) -> dict[str, Any]:
    """Delete the patient's visit on ``visit_date``; returns its values (to restore it)."""
    day = _visit_day(study_id, visit_date)
    return _write_visit(registry, study_id, day, None, user=user, reason=reason, notes=None,
                        require_notes=False, check=check)[0]


def _visit_day(study_id: str, raw: Any) -> dt.date:
    from pathomics_desktop.registry.importer import VISIT_DATE

    try:
        day, _ = VISIT_DATE.parse(raw)
    except CellError as exc:
        raise UserError(f"patient {study_id}, visit date: {exc}") from None
    if day is None:
        raise UserError(f"patient {study_id}: which visit? (no visit date given)")
    return day


def list_visits(registry: Registry, study_id: str) -> list[dict[str, Any]]:
    """Every follow-up record of a patient (the summary and the visits), by date."""
    with registry.session() as session:
        patient = get_patient(session, study_id)
        return [visit_values(v) for v in patient.followups]


# -- one patient for a form --------------------------------------------------------------
def load_patient_record(registry: Registry, study_id: str, *,
                        include_identifiers: bool = False) -> dict[str, Any]:
    """Everything a patient form shows: the codebook, the values by variable (identifiers
    only when asked for), the follow-up records, the slides' QC status and the lock."""
    from sqlalchemy.orm import selectinload

    from pathomics_desktop.registry.records import patient_values

    with registry.session() as session:
        book = Codebook.for_session(session)
        patient = session.scalars(patient_query().options(selectinload(Patient.slides))
                                  .where(Patient.study_id == study_id)).first()
        if patient is None:
            raise UserError(f"patient {study_id!r} not found")
        return {
            "study_id": patient.study_id, "codebook": book, "locked": bool(patient.locked),
            "version": int(patient.version),
            "complete": bool(patient.complete), "synthetic": bool(patient.synthetic),
            "center_role": patient.center.role if patient.center else None,
            "values": patient_values(patient, book, include_identifiers=include_identifiers),
            "visits": [visit_values(v) for v in patient.followups],
            "slide_qc": [s.qc_status for s in patient.slides],
        }


# -- the history of one field ------------------------------------------------------------
def _json_field(text: str | None, key: str) -> str | None:
    import json

    if not text:
        return None
    try:
        return json.loads(text).get(key)
    except (ValueError, AttributeError):
        return None


def field_history(registry: Registry, study_id: str, variable: str) -> list[dict[str, Any]]:
    """Who changed a patient's variable, when, from what to what and why, oldest first.

    Reads the audit trail of the table and column behind the variable's storage: updates of
    that column, and the inserts and deletes of the record holding it (the value taken from
    the record's JSON). Each row: ``at, user, action, old, new, reason``."""
    from pathomics_desktop.registry.records import LAB_FIELDS, ONE_TO_ONE, SUMMARY_SOURCE

    with registry.session() as session:
        book = Codebook.for_session(session)
        if variable not in book:
            raise UserError(f"unknown variable {variable!r} (not in the codebook)")
        var = book[variable]
        table, _, column = var.storage.partition(".")
        centers = {str(c.id): c.code for c in session.scalars(select(Center))}
        #: which records of the table hold the variable (None: every record of the patient)
        holds: Any = None
        if var.is_custom:
            definition = session.scalars(select(CodebookVariable).where(CodebookVariable.name == variable)).first()
            wanted = str(definition.id) if definition is not None else ""
            table_name, column = "variable_values", "value"
            holds = lambda snap: _json_field(snap, "variable_id") == wanted  # noqa: E731
        elif table == "labs":
            test, column, _unit = LAB_FIELDS[column]
            table_name = "lab_results"
            holds = lambda snap: (_json_field(snap, "test") == test  # noqa: E731
                                  and _json_field(snap, "preoperative") == "true")
        elif table == "followup":
            table_name = "followup_visits"
            holds = lambda snap: _json_field(snap, "source") == SUMMARY_SOURCE  # noqa: E731
        elif table == "patients":
            table_name, column = "patients", ("center_id" if column == "center" else column)
        else:
            table_name = ONE_TO_ONE[table][1].__tablename__
    events = audit_history(registry, study_id, table=table_name)

    def shown(value: str | None) -> str | None:
        return centers.get(value, value) if column == "center_id" and value is not None else value

    records: set[str] = set()
    out: list[dict[str, Any]] = []
    for e in events:
        if e.action in ("insert", "delete"):
            snapshot = e.new_value if e.action == "insert" else e.old_value
            if holds is not None and not holds(snapshot):
                continue
            records.add(e.record_id)
            value = shown(_json_field(snapshot, column))
            if value is None:
                continue
            old, new = (None, value) if e.action == "insert" else (value, None)
        elif e.field == column and (holds is None or e.record_id in records):
            old, new = shown(e.old_value), shown(e.new_value)
        else:
            continue
        out.append({"at": e.at, "user": e.user, "action": e.action, "old": old, "new": new,
                    "reason": e.reason})
    return out


def export_cohort(registry: Registry, out: str | Path, *, include_identifiers: bool = False,
                  included_only: bool = False) -> Path:
    """Write the analysis table (CSV, XLSX or Parquet by extension), atomically."""
    from pathomics_desktop.cohort.table import analysis_frame

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise UserError(f"{out}: export format by extension: {', '.join(EXPORT_SUFFIXES)}")
    with registry.session() as session:
        frame = analysis_frame(session, include_identifiers=include_identifiers)
    if included_only:
        frame = frame[frame["included"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{suffix}")
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%d")
        elif suffix == ".xlsx":
            for col in frame.columns:
                if col.endswith("_date"):
                    frame[col] = frame[col].dt.date
            frame.to_excel(tmp, index=False, sheet_name="cohort")
        else:
            frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def touch_timestamp() -> str:  # pragma: no cover - trivial
    return dt.datetime.now(dt.timezone.utc).isoformat()
