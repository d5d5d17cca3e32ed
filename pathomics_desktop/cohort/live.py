"""Derived values of a patient from the values of a form, before they are saved.

The patient form shows OS/RFS, the AJCC 8th stage and the inclusion decision while the user
types. They come from the very functions the analysis table uses
(:func:`pathomics_desktop.cohort.table.assess_patient`, which derives the endpoints with
:func:`pathomics_desktop.cohort.endpoints.derive_endpoints`, and
:func:`pathomics_desktop.cohort.staging.ajcc8_stage`): the form's values are laid onto a
transient patient record (never added to a session) with the registry's own storage rules
(:func:`pathomics_desktop.registry.records.set_value`), so a number on the form and in the
exported table cannot differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pathomics_desktop.cohort.staging import ajcc8_stage, stage_group
from pathomics_desktop.cohort.table import assess_patient
from pathomics_desktop.registry.codebook import Codebook
from pathomics_desktop.registry.models import (
    Center,
    CodebookVariable,
    FollowUpVisit,
    Patient,
    Slide,
    VariableValue,
)
from pathomics_desktop.registry.records import set_value


@dataclass(frozen=True)
class LiveDerived:
    """What the form shows beside the values (months = days / 30.4375)."""

    os_months: float | None
    os_event: int | None
    rfs_months: float | None
    rfs_event: int | None
    stage: str | None
    stage_group: str | None
    included: bool
    exclusion_reason: str | None
    detail: str | None


def transient_patient(study_id: str, values: dict[str, Any], book: Codebook, *,
                      visits: Iterable[dict[str, Any]] = (), slide_qc: Iterable[str] = ()) -> Patient:
    """A :class:`Patient` built in memory from canonical values by variable name, the
    patient's other follow-up visits (``source != 'summary'``) and its slides' QC status."""
    patient = Patient(study_id=study_id)
    for name, value in values.items():
        if name not in book or name == "study_id":
            continue
        var = book[name]
        if var.is_custom:
            text = var.format(value)
            if text is not None:
                patient.values.append(VariableValue(variable=CodebookVariable(name=name), value=text))
        elif var.storage == "patients.center":
            patient.center = Center(code=value or "", name=value or "")
        else:
            set_value(None, patient, var, value)  # no session needed outside centers and custom
    for visit in visits:
        if visit.get("source") == "summary":
            continue
        patient.followups.append(FollowUpVisit(
            source=visit.get("source") or "visit", visit_date=visit.get("visit_date"),
            vital_status=visit.get("vital_status"), recurrence=visit.get("recurrence"),
            recurrence_date=visit.get("recurrence_date"), death_date=visit.get("death_date")))
    for status in slide_qc:
        patient.slides.append(Slide(path="", qc_status=status))
    return patient


def derive_from_values(study_id: str, values: dict[str, Any], book: Codebook, *,
                       visits: Iterable[dict[str, Any]] = (), slide_qc: Iterable[str] = ()) -> LiveDerived:
    """OS/RFS, stage and inclusion of the patient described by ``values`` (see module doc)."""
    patient = transient_patient(study_id, values, book, visits=visits, slide_qc=slide_qc)
    outcome = assess_patient(patient, book)
    ep = outcome.endpoints
    stage = ajcc8_stage(values.get("t_stage"), values.get("n_stage"), values.get("m_stage"))
    return LiveDerived(
        os_months=ep.os_months if ep else None, os_event=ep.os_event if ep else None,
        rfs_months=ep.rfs_months if ep else None, rfs_event=ep.rfs_event if ep else None,
        stage=stage, stage_group=stage_group(stage), included=outcome.included,
        exclusion_reason=outcome.exclusion_reason, detail=outcome.detail)

