"""The audit trail: every insert, update and delete of curated data, written in the same
transaction as the change.

One mechanism for every writer (import, GUI form, CLI edit): SQLAlchemy session events.

* ``before_flush`` enforces locking: a change to a record of a locked patient (or to the lock
  itself once set) needs a reason (``session.info["reason"]``), else the flush is refused.
* ``after_flush`` writes :class:`AuditEvent` rows: for an update one row per changed field
  (old value, new value); for an insert or a delete one row per record with all values as
  JSON. The user is ``session.info["user"]``; the time is UTC.

The ``audit_events`` table is append-only; database triggers (migration 0002) refuse UPDATE
and DELETE on it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from typing import Any, Iterable

from sqlalchemy import event, insert, inspect, select
from sqlalchemy.orm import Session

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.models import AuditEvent, Audited, Patient, utcnow

SKIPPED_FIELDS = {"updated_at", "created_at", "version"}


def current_user() -> str:
    """``$PATHOMICS_USER``, else the operating-system login."""
    user = os.environ.get("PATHOMICS_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no login name (containers)
        return "unknown"


def format_value(value: Any) -> str | None:
    """The text kept in the audit trail for a value (ISO dates, ``true``/``false``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _record_patient_id(obj: Any) -> int | None:
    if isinstance(obj, Patient):
        return obj.id
    return getattr(obj, "patient_id", None)


def _record_id(obj: Any) -> str:
    state = inspect(obj)
    identity = state.identity or tuple(getattr(obj, c.key) for c in state.mapper.primary_key)
    return "/".join(str(v) for v in identity)


def _columns(obj: Any) -> Iterable[str]:
    return [attr.key for attr in inspect(obj).mapper.column_attrs if attr.key not in SKIPPED_FIELDS]


def _snapshot(obj: Any, *, committed: bool = False) -> dict[str, str | None]:
    state = inspect(obj)
    out: dict[str, str | None] = {}
    for key in _columns(obj):
        if committed:
            hist = state.attrs[key].history
            value = hist.deleted[0] if hist.deleted else (hist.unchanged[0] if hist.unchanged else None)
        else:
            value = getattr(obj, key)
        out[key] = format_value(value)
    return out


def insert_event(table_name: str, record_id: Any, patient_id: int | None, values: dict[str, Any], *,
                 user: str, reason: str | None, at: dt.datetime) -> dict[str, Any]:
    """The audit row of an inserted record: all its values (formatted) as JSON."""
    snapshot = {k: format_value(v) for k, v in values.items() if k not in SKIPPED_FIELDS}
    return dict(at=at, user=user, action="insert", table_name=table_name, record_id=str(record_id),
                patient_id=patient_id, field=None, old_value=None,
                new_value=json.dumps(snapshot, sort_keys=True), reason=reason)


def write_bulk_inserts(session: Session, table, params: list[dict[str, Any]], *,
                       patient_key: str = "patient_id") -> list[dict[str, Any]]:
    """INSERT many rows of an audited table in one statement (RETURNING every column) and
    write their audit rows, exactly as the session hook would for ORM inserts. Returns the
    inserted rows (with ids and defaults)."""
    if not params:
        return []
    keys = list(dict.fromkeys(k for p in params for k in p))  # one statement: same keys in every row
    params = [{k: p.get(k) for k in keys} for p in params]
    result = session.execute(insert(table).returning(*table.c, sort_by_parameter_order=True), params)
    inserted = [dict(row._mapping) for row in result]
    user = session.info.get("user") or current_user()
    reason = session.info.get("audit_context") or session.info.get("reason")
    now = utcnow()
    pk = [c.name for c in table.primary_key.columns]
    events = [insert_event(table.name, "/".join(str(r[c]) for c in pk),
                           r["id"] if table.name == "patients" else r.get(patient_key),
                           r, user=user, reason=reason, at=now) for r in inserted]
    session.execute(insert(AuditEvent.__table__), events)
    return inserted


def _patient_locked(session: Session, patient_id: int | None, cache: dict[int, bool]) -> bool:
    """Was the patient locked before this transaction's pending changes?"""
    if patient_id is None:
        return False
    if patient_id not in cache:
        with session.no_autoflush:
            patient = session.get(Patient, patient_id)
        locked = False
        if patient is not None:
            hist = inspect(patient).attrs["locked"].history
            if hist.deleted:
                locked = hist.deleted[0]
            elif hist.unchanged:
                locked = hist.unchanged[0]
            elif not hist.added:
                locked = patient.locked
        cache[patient_id] = bool(locked)
    return cache[patient_id]


@event.listens_for(Session, "before_flush")
def _touch_changed_patients(session: Session, flush_context, instances) -> None:
    """A change to any row of a patient's record touches the patient row, so that its
    ``version`` (optimistic locking) counts every change of the record."""
    touched: set[int] = set()  # id() of the patients touched
    for obj in list(session.dirty) + list(session.deleted) + list(session.new):
        if not isinstance(obj, Audited) or isinstance(obj, Patient):
            continue
        if obj in session.dirty and not session.is_modified(obj, include_collections=False):
            continue
        with session.no_autoflush:
            pid = _record_patient_id(obj)
            patient = session.get(Patient, pid) if pid is not None else getattr(obj, "patient", None)
        if not isinstance(patient, Patient) or id(patient) in touched:
            continue
        touched.add(id(patient))
        if patient not in session.new and patient not in session.deleted:
            patient.updated_at = utcnow()


@event.listens_for(Session, "before_flush")
def _enforce_locks(session: Session, flush_context, instances) -> None:
    if session.info.get("reason"):
        return
    cache: dict[int, bool] = {}
    for obj in list(session.dirty) + list(session.deleted) + list(session.new):
        if not isinstance(obj, Audited):
            continue
        if obj in session.dirty and not session.is_modified(obj, include_collections=False):
            continue
        pid = _record_patient_id(obj)
        if pid is None and isinstance(obj, Patient):
            continue
        if pid is not None and _patient_locked(session, pid, cache):
            study = _study_id(session, pid)
            raise UserError(f"patient {study} is locked: changing it needs a reason")


def _study_id(session: Session, patient_id: int) -> str:
    with session.no_autoflush:
        value = session.execute(select(Patient.study_id).where(Patient.id == patient_id)).scalar_one_or_none()
    return value or f"#{patient_id}"


@event.listens_for(Session, "after_flush")
def _write_audit(session: Session, flush_context) -> None:
    user = session.info.get("user") or current_user()
    reason = session.info.get("audit_context") or session.info.get("reason")
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for obj in session.new:
        if isinstance(obj, Audited):
            rows.append(insert_event(obj.__tablename__, _record_id(obj), _record_patient_id(obj),
                                     _snapshot(obj), user=user, reason=reason, at=now))
    for obj in session.dirty:
        if not isinstance(obj, Audited) or not session.is_modified(obj, include_collections=False):
            continue
        state = inspect(obj)
        for key in _columns(obj):
            hist = state.attrs[key].history
            if not hist.has_changes():
                continue
            old = format_value(hist.deleted[0]) if hist.deleted else None
            new = format_value(hist.added[0]) if hist.added else None
            if old == new:
                continue
            rows.append(dict(at=now, user=user, action="update", table_name=obj.__tablename__,
                             record_id=_record_id(obj), patient_id=_record_patient_id(obj),
                             field=key, old_value=old, new_value=new, reason=reason))
    for obj in session.deleted:
        if isinstance(obj, Audited):
            rows.append(dict(at=now, user=user, action="delete", table_name=obj.__tablename__,
                             record_id=_record_id(obj), patient_id=_record_patient_id(obj),
                             field=None, old_value=json.dumps(_snapshot(obj, committed=True), sort_keys=True),
                             new_value=None, reason=reason))
    if rows:
        session.connection().execute(insert(AuditEvent.__table__), rows)


def history(session: Session, *, patient_id: int | None = None, table: str | None = None,
            record_id: str | None = None) -> list[AuditEvent]:
    """Audit rows of a patient (all its tables) or of one record, oldest first."""
    query = select(AuditEvent).order_by(AuditEvent.id)
    if patient_id is not None:
        query = query.where(AuditEvent.patient_id == patient_id)
    if table is not None:
        query = query.where(AuditEvent.table_name == table)
    if record_id is not None:
        query = query.where(AuditEvent.record_id == str(record_id))
    return list(session.scalars(query))
