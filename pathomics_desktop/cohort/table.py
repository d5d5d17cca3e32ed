"""The analysis table: one row per patient, built from the registry.

Columns: ``study_id, center, split, included, exclusion_reason, os_months, os_event,
rfs_months, rfs_event, tnm_stage, tnm_group``, the pathomics scores and risk groups
``pathomics_os_score, pathomics_os_group, pathomics_rfs_score, pathomics_rfs_group`` (always
present, empty until ``pathomics signature apply`` has written them: they are derived codebook
variables, see :mod:`pathomics_desktop.signature.apply`), followed by every other
non-identifier codebook variable (user-defined ones included), ``synthetic``, and — only
when asked for — the identifiers.

Inclusion follows the reference study (Figure 1). The first reason that applies excludes a
patient, in this order:

1. ``neoadjuvant therapy``: received neoadjuvant (prior anti-tumour) therapy;
2. ``concurrent malignancy``;
3. ``insufficient tissue``: judged insufficient by the pathologist, or every registered
   slide of the patient failed slide QC (``qc_status = 'excluded'``);
4. ``lost to follow-up within 30 days``: alive, event-free and last seen less than 30 days
   after surgery;
5. ``incomplete required data``: a required codebook variable is missing, or follow-up is
   inconsistent so that OS/RFS cannot be derived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pathomics_desktop.cohort.endpoints import FollowUpError, Visit, derive_endpoints, summarise
from pathomics_desktop.cohort.staging import ajcc8_stage, stage_group
from pathomics_desktop.registry.codebook import Codebook
from pathomics_desktop.registry.models import Patient
from pathomics_desktop.registry.records import get_value, patient_query

EXCLUSION_REASONS = (
    "neoadjuvant therapy",
    "concurrent malignancy",
    "insufficient tissue",
    "lost to follow-up within 30 days",
    "incomplete required data",
)
LOST_TO_FOLLOWUP_DAYS = 30
LEAD_COLUMNS = ["study_id", "center", "center_role", "split", "included", "exclusion_reason",
                "os_months", "os_event", "rfs_months", "rfs_event", "tnm_stage", "tnm_group"]
#: the signature's scores and risk groups (codebook variables written by ``signature apply``)
SCORE_COLUMNS = ["pathomics_os_score", "pathomics_os_group", "pathomics_rfs_score", "pathomics_rfs_group"]


@dataclass
class PatientOutcome:
    included: bool
    exclusion_reason: str | None
    detail: str | None
    endpoints: Any  # Endpoints | None


def assess_patient(patient: Patient, book: Codebook) -> PatientOutcome:
    """Inclusion decision and endpoints for one patient (see the module docstring)."""
    values = {var.name: get_value(patient, var) for var in book if not var.identifier}
    visits = [Visit(v.visit_date, v.vital_status, v.recurrence, v.recurrence_date, v.death_date)
              for v in patient.followups]
    surgery = values.get("surgery_date")
    endpoints, problem = None, None
    try:
        endpoints = derive_endpoints(f"patient {patient.study_id}", surgery, summarise(visits))
    except FollowUpError as exc:
        problem = str(exc)

    if values.get("neoadjuvant_therapy") is True:
        return PatientOutcome(False, "neoadjuvant therapy", None, endpoints)
    if values.get("concurrent_malignancy") is True:
        return PatientOutcome(False, "concurrent malignancy", None, endpoints)
    slides = list(patient.slides)
    if patient.tissue_insufficient or (slides and all(s.qc_status == "excluded" for s in slides)):
        return PatientOutcome(False, "insufficient tissue", None, endpoints)
    if endpoints is not None and endpoints.os_event == 0 and endpoints.rfs_event == 0 \
            and endpoints.os_days < LOST_TO_FOLLOWUP_DAYS:
        return PatientOutcome(False, "lost to follow-up within 30 days", None, endpoints)
    missing = [var.name for var in book if var.required and values.get(var.name) is None]
    if missing or endpoints is None:
        detail = problem or ("missing: " + ", ".join(missing) if missing else "follow-up incomplete")
        return PatientOutcome(False, "incomplete required data", detail, endpoints)
    return PatientOutcome(True, None, None, endpoints)


def load_patients(session) -> list[Patient]:
    from sqlalchemy.orm import selectinload

    query = patient_query().options(selectinload(Patient.slides)).order_by(Patient.study_id)
    return list(session.scalars(query))


def build_rows(session, *, include_identifiers: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Analysis rows (dicts) and the column order."""
    book = Codebook.for_session(session)
    variables = [v for v in book if include_identifiers or not v.identifier]
    var_columns = [v.name for v in variables if v.name not in ("study_id", "center", *SCORE_COLUMNS)]
    rows: list[dict[str, Any]] = []
    for patient in load_patients(session):
        outcome = assess_patient(patient, book)
        ep = outcome.endpoints
        pathology = patient.pathology
        stage = ajcc8_stage(pathology.t_stage, pathology.n_stage, pathology.m_stage) if pathology else None
        row: dict[str, Any] = {
            "study_id": patient.study_id,
            "center": patient.center.code,
            "center_role": patient.center.role,
            "split": patient.split if outcome.included else None,
            "included": outcome.included,
            "exclusion_reason": outcome.exclusion_reason,
            "os_months": round(ep.os_months, 4) if ep else None,
            "os_event": ep.os_event if ep else None,
            "rfs_months": round(ep.rfs_months, 4) if ep else None,
            "rfs_event": ep.rfs_event if ep else None,
            "tnm_stage": stage,
            "tnm_group": stage_group(stage),
        }
        for var in variables:
            if var.name in ("study_id", "center"):
                continue
            row[var.name] = var.format(get_value(patient, var)) if var.type in ("yesno",) else get_value(patient, var)
        for column in SCORE_COLUMNS:
            row.setdefault(column, None)
        row["synthetic"] = patient.synthetic
        rows.append(row)
    return rows, LEAD_COLUMNS + SCORE_COLUMNS + var_columns + ["synthetic"]


def analysis_frame(session, *, include_identifiers: bool = False):
    """The analysis table as a pandas DataFrame (dates as ``datetime64``)."""
    import pandas as pd

    rows, columns = build_rows(session, include_identifiers=include_identifiers)
    frame = pd.DataFrame(rows, columns=columns)
    for col in frame.columns:
        if col.endswith("_date"):
            frame[col] = pd.to_datetime(frame[col])
    for col in SCORE_COLUMNS:
        if col.endswith("_score"):
            frame[col] = frame[col].astype(float)  # a number column even before any score is written
    return frame
