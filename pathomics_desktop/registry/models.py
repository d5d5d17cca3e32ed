"""The relational registry: SQLAlchemy 2.0 typed ORM.

Curated data (patients and everything hanging off them) is audited: every insert, update and
delete writes an append-only :class:`AuditEvent` (see :mod:`pathomics_desktop.registry.audit`).
Direct identifiers live only in :class:`PatientIdentifier`, never in exports unless asked for.
Constraint names follow :data:`NAMING_CONVENTION` so that Alembic migrations (batch mode on
SQLite) can address them on every backend.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Timezone-aware UTC now (stored as naive UTC in the database)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Audited:
    """Marker mixin: changes to these tables are written to the audit trail."""

    __audited__ = True


# -- centers and patients ------------------------------------------------------------------
class Center(Audited, Base):
    __tablename__ = "centers"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    #: ``development`` (training + internal validation) or ``external`` (external validation)
    role: Mapped[str] = mapped_column(String(16), default="external")

    patients: Mapped[list["Patient"]] = relationship(back_populates="center")

    __table_args__ = (CheckConstraint("role in ('development', 'external')", name="role"),)


class Patient(Audited, Base):
    """A pseudonymous study patient. ``study_id`` is unique in the project."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[str] = mapped_column(String(64), unique=True)
    center_id: Mapped[int] = mapped_column(ForeignKey("centers.id", ondelete="RESTRICT"), index=True)
    sex: Mapped[Optional[str]] = mapped_column(String(16))
    age: Mapped[Optional[int]] = mapped_column(Integer)
    tissue_insufficient: Mapped[Optional[bool]] = mapped_column(Boolean)
    #: data set: ``training`` | ``internal`` | ``external`` | NULL (excluded / not assigned)
    split: Mapped[Optional[str]] = mapped_column(String(16))
    split_seed: Mapped[Optional[int]] = mapped_column(Integer)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    #: the record's version (optimistic locking): +1 on every change to the patient or its rows
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")

    center: Mapped[Center] = relationship(back_populates="patients")
    identifier: Mapped[Optional["PatientIdentifier"]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", uselist=False)
    surgery: Mapped[Optional["Surgery"]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", uselist=False)
    pathology: Mapped[Optional["Pathology"]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", uselist=False)
    comorbidity: Mapped[Optional["Comorbidity"]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", uselist=False)
    treatment: Mapped[Optional["Treatment"]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", uselist=False)
    labs: Mapped[list["LabResult"]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="LabResult.id")
    followups: Mapped[list["FollowUpVisit"]] = relationship(
        back_populates="patient", cascade="all, delete-orphan",
        order_by="FollowUpVisit.visit_date")
    values: Mapped[list["VariableValue"]] = relationship(
        back_populates="patient", cascade="all, delete-orphan")
    slides: Mapped[list["Slide"]] = relationship(back_populates="patient")

    __table_args__ = (
        CheckConstraint("split is null or split in ('training', 'internal', 'external')", name="split"),
    )
    __mapper_args__ = {"version_id_col": version}


class PatientIdentifier(Audited, Base):
    """Direct identifiers, kept apart from the pseudonymous record."""

    __tablename__ = "patient_identifiers"

    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[Optional[str]] = mapped_column(String(200))
    mrn: Mapped[Optional[str]] = mapped_column(String(64))
    birth_date: Mapped[Optional[dt.date]] = mapped_column(Date)

    patient: Mapped[Patient] = relationship(back_populates="identifier")


class Surgery(Audited, Base):
    __tablename__ = "surgeries"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), unique=True)
    surgery_date: Mapped[Optional[dt.date]] = mapped_column(Date)
    #: DP distal pancreatectomy, PD pancreaticoduodenectomy, TP total pancreatectomy
    surgery_type: Mapped[Optional[str]] = mapped_column(String(8))
    margin: Mapped[Optional[str]] = mapped_column(String(8))

    patient: Mapped[Patient] = relationship(back_populates="surgery")


class Pathology(Audited, Base):
    """Pathology; the AJCC 8th stage is derived (see :mod:`pathomics_desktop.cohort.staging`)."""

    __tablename__ = "pathology"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), unique=True)
    differentiation: Mapped[Optional[str]] = mapped_column(String(8))
    t_stage: Mapped[Optional[str]] = mapped_column(String(4))
    n_stage: Mapped[Optional[str]] = mapped_column(String(4))
    m_stage: Mapped[Optional[str]] = mapped_column(String(4))
    microvascular_invasion: Mapped[Optional[bool]] = mapped_column(Boolean)
    perineural_invasion: Mapped[Optional[bool]] = mapped_column(Boolean)

    patient: Mapped[Patient] = relationship(back_populates="pathology")


class LabResult(Audited, Base):
    """A laboratory value. CA19-9 in U/mL; the preoperative value is the one analysed."""

    __tablename__ = "lab_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    test: Mapped[str] = mapped_column(String(32))
    value: Mapped[Optional[float]] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16), default="")
    measured_on: Mapped[Optional[dt.date]] = mapped_column(Date)
    preoperative: Mapped[bool] = mapped_column(Boolean, default=True)

    patient: Mapped[Patient] = relationship(back_populates="labs")


class Comorbidity(Audited, Base):
    __tablename__ = "comorbidities"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), unique=True)
    diabetes: Mapped[Optional[bool]] = mapped_column(Boolean)
    hypertension: Mapped[Optional[bool]] = mapped_column(Boolean)
    concurrent_malignancy: Mapped[Optional[bool]] = mapped_column(Boolean)

    patient: Mapped[Patient] = relationship(back_populates="comorbidity")


class Treatment(Audited, Base):
    __tablename__ = "treatments"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), unique=True)
    neoadjuvant_therapy: Mapped[Optional[bool]] = mapped_column(Boolean)
    adjuvant_chemotherapy: Mapped[Optional[bool]] = mapped_column(Boolean)
    regimen: Mapped[Optional[str]] = mapped_column(String(200))
    start_date: Mapped[Optional[dt.date]] = mapped_column(Date)

    patient: Mapped[Patient] = relationship(back_populates="treatment")


class FollowUpVisit(Audited, Base):
    """A follow-up contact: vital status, recurrence and their dates at ``visit_date``.

    The patient spreadsheet's summary columns (``vital_status``, ``death_date``,
    ``recurrence``, ``recurrence_date``, ``last_followup_date``) are kept as the visit with
    ``source = 'summary'``; a long follow-up file adds visits with ``source = 'visit'``.
    """

    __tablename__ = "followup_visits"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    visit_date: Mapped[dt.date] = mapped_column(Date)
    vital_status: Mapped[Optional[str]] = mapped_column(String(8))
    recurrence: Mapped[Optional[bool]] = mapped_column(Boolean)
    recurrence_date: Mapped[Optional[dt.date]] = mapped_column(Date)
    death_date: Mapped[Optional[dt.date]] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16), default="visit")

    patient: Mapped[Patient] = relationship(back_populates="followups")

    __table_args__ = (
        CheckConstraint("vital_status is null or vital_status in ('alive', 'dead')", name="vital_status"),
        UniqueConstraint("patient_id", "visit_date", "source"),
    )


# -- user-defined variables ----------------------------------------------------------------
class CodebookVariable(Audited, Base):
    """A user-defined variable added to the codebook (same fields as ``db/codebook.toml``)."""

    __tablename__ = "codebook_variables"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    type: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(32), default="")
    codes: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    min_value: Mapped[Optional[str]] = mapped_column(String(32))
    max_value: Mapped[Optional[str]] = mapped_column(String(32))
    soft_min: Mapped[Optional[str]] = mapped_column(String(32))
    soft_max: Mapped[Optional[str]] = mapped_column(String(32))
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    identifier: Mapped[bool] = mapped_column(Boolean, default=False)
    #: values computed by a job (``signature apply``), not curated: analysts may write them
    #: (migration 0006)
    derived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    values: Mapped[list["VariableValue"]] = relationship(
        back_populates="variable", cascade="all, delete-orphan")


class VariableValue(Audited, Base):
    """A patient's value of a user-defined variable (canonical text; number when numeric)."""

    __tablename__ = "variable_values"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    variable_id: Mapped[int] = mapped_column(ForeignKey("codebook_variables.id", ondelete="CASCADE"))
    value: Mapped[Optional[str]] = mapped_column(String(200))

    patient: Mapped[Patient] = relationship(back_populates="values")
    variable: Mapped[CodebookVariable] = relationship(back_populates="values")

    __table_args__ = (UniqueConstraint("patient_id", "variable_id"),)


# -- slides and jobs -----------------------------------------------------------------------
class Slide(Audited, Base):
    """A whole-slide image file registered to a patient (filled in by the slide pipeline)."""

    __tablename__ = "slides"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("patients.id", ondelete="SET NULL"), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    file_size: Mapped[Optional[int]] = mapped_column(Integer)
    vendor: Mapped[Optional[str]] = mapped_column(String(64))
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    levels: Mapped[Optional[list[Any]]] = mapped_column(JSON)
    mpp_x: Mapped[Optional[float]] = mapped_column(Float)
    mpp_y: Mapped[Optional[float]] = mapped_column(Float)
    mpp_override: Mapped[Optional[float]] = mapped_column(Float)
    mpp_flag: Mapped[Optional[str]] = mapped_column(String(200))
    objective_power: Mapped[Optional[float]] = mapped_column(Float)
    scanner: Mapped[Optional[str]] = mapped_column(String(200))
    #: ``pending`` | ``ok`` | ``excluded`` | ``failed``
    qc_status: Mapped[str] = mapped_column(String(16), default="pending")
    qc_reason: Mapped[Optional[str]] = mapped_column(Text)
    stain_vectors: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    patient: Mapped[Optional[Patient]] = relationship(back_populates="slides")

    __table_args__ = (
        CheckConstraint("qc_status in ('pending', 'ok', 'excluded', 'failed')", name="qc_status"),
    )


class Job(Base):
    """A long computation (tiling, training, inference, Grad-CAM, signature fitting)."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    params: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    #: ``queued`` | ``running`` | ``done`` | ``failed`` | ``cancelled``
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[Optional[str]] = mapped_column(Text)
    result: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    user: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    #: the worker running the job, ``host:pid:uuid`` (None when not running; kept when finished)
    worker: Mapped[Optional[str]] = mapped_column(String(128))
    #: the running worker's last heartbeat (UTC); older than the lease -> the job is requeued
    heartbeat_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    #: times the job was requeued because its worker stopped sending heartbeats
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),)


# -- audit trail ---------------------------------------------------------------------------
class AuditEvent(Base):
    """One append-only audit row: who changed which field of which record, when and why.

    ``action`` is ``insert`` / ``update`` / ``delete``. Inserts and deletes write one row per
    record with the values as JSON in ``new_value`` / ``old_value``; updates one row per field.
    ``patient_id`` (not a foreign key: history outlives deletion) ties a row to a patient.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(8))
    table_name: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[Optional[int]] = mapped_column(Integer, index=True)
    field: Mapped[Optional[str]] = mapped_column(String(64))
    old_value: Mapped[Optional[str]] = mapped_column(Text)
    new_value: Mapped[Optional[str]] = mapped_column(Text)
    reason: Mapped[Optional[str]] = mapped_column(Text)

    __table_args__ = (Index("ix_audit_events_table_record", "table_name", "record_id"),)
