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
from pathomics_desktop.registry.models import AuditEvent, Center, CodebookVariable, Patient
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


def edit_value(registry: Registry, study_id: str, variable: str, raw: Any, *, user: str = "",
               reason: str | None = None) -> tuple[Any, Any]:
    """Change one value of a patient (validated by the codebook); returns (old, new)."""
    with registry.session(user=user, reason=reason) as session:
        book = Codebook.for_session(session)
        if variable not in book:
            raise UserError(f"unknown variable {variable!r} (not in the codebook)")
        var = book[variable]
        if var.name == "study_id":
            raise UserError("study_id cannot be edited")
        try:
            value, _warning = var.parse(raw)
        except CellError as exc:
            raise UserError(f"patient {study_id}, {variable}: {exc}") from None
        patient = get_patient(session, study_id)
        from pathomics_desktop.registry.records import get_value

        old = get_value(patient, var)
        set_value(session, patient, var, value)
        session.flush()
        return old, value


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
                 required: bool = False, identifier: bool = False, user: str = "") -> None:
    """Add a user-defined variable to the project's codebook."""
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
            required=required, identifier=identifier))


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
