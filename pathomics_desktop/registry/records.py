"""Reading and writing a patient's values by codebook variable.

A variable's ``storage`` says where the registry keeps it (``patients.sex``,
``surgeries.surgery_date``, ``labs.ca19_9``, ``followup.vital_status``,
``identifiers.mrn``, ``custom``...). Import, the CLI ``edit`` command and the GUI forms all
write through :func:`set_value`, so the audit trail and locking apply everywhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from pathomics_desktop.registry.codebook import Codebook, Variable
from pathomics_desktop.registry.models import (
    Center,
    CodebookVariable,
    Comorbidity,
    FollowUpVisit,
    LabResult,
    Pathology,
    Patient,
    PatientIdentifier,
    Surgery,
    Treatment,
    VariableValue,
)

ONE_TO_ONE = {
    "surgeries": ("surgery", Surgery),
    "pathology": ("pathology", Pathology),
    "comorbidities": ("comorbidity", Comorbidity),
    "treatments": ("treatment", Treatment),
    "identifiers": ("identifier", PatientIdentifier),
}
LAB_FIELDS = {"ca19_9": ("ca19_9", "value", "U/mL"), "ca19_9_date": ("ca19_9", "measured_on", "U/mL")}
SUMMARY_SOURCE = "summary"


def patient_query():
    """A select of patients with every related table loaded in a few queries."""
    return select(Patient).options(
        selectinload(Patient.center), selectinload(Patient.identifier),
        selectinload(Patient.surgery), selectinload(Patient.pathology),
        selectinload(Patient.comorbidity), selectinload(Patient.treatment),
        selectinload(Patient.labs), selectinload(Patient.followups),
        selectinload(Patient.values).selectinload(VariableValue.variable),
    )


def preoperative_lab(patient: Patient, test: str) -> LabResult | None:
    labs = [lab for lab in patient.labs if lab.test == test and lab.preoperative]
    return labs[0] if labs else None


def summary_visit(patient: Patient) -> FollowUpVisit | None:
    for visit in patient.followups:
        if visit.source == SUMMARY_SOURCE:
            return visit
    return None


def get_value(patient: Patient, var: Variable) -> Any:
    """The patient's canonical value of a codebook variable (None when missing)."""
    table, _, column = var.storage.partition(".")
    if var.is_custom:
        for vv in patient.values:
            if vv.variable.name == var.name:
                return var.parse_stored(vv.value)
        return None
    if table == "patients":
        if column == "center":
            return patient.center.code if patient.center else None
        return getattr(patient, column)
    if table in ONE_TO_ONE:
        rel = getattr(patient, ONE_TO_ONE[table][0])
        return getattr(rel, column) if rel is not None else None
    if table == "labs":
        test, attr, _ = LAB_FIELDS[column]
        lab = preoperative_lab(patient, test)
        return getattr(lab, attr) if lab is not None else None
    if table == "followup":
        visit = summary_visit(patient)
        return getattr(visit, column) if visit is not None else None
    raise KeyError(var.storage)  # pragma: no cover - codebook error


class CenterCache:
    """Centers by code, created on first use (role from the project's development center)."""

    def __init__(self, session: Session, development_center: str = ""):
        self.session = session
        self.development_center = development_center
        self.by_code = {c.code: c for c in session.scalars(select(Center))}

    def get(self, code: str) -> Center:
        center = self.by_code.get(code)
        if center is None:
            role = "development" if code == self.development_center else "external"
            center = Center(code=code, name=code, role=role)
            self.session.add(center)
            self.by_code[code] = center
        return center


class CustomVariableCache:
    def __init__(self, session: Session):
        self.by_name = {v.name: v for v in session.scalars(select(CodebookVariable))}


def set_value(session: Session, patient: Patient, var: Variable, value: Any, *,
              centers: CenterCache | None = None,
              custom: CustomVariableCache | None = None) -> bool:
    """Set a variable on a patient; returns True when the stored value changed."""
    if get_value(patient, var) == value and not (value is None and var.storage.startswith("followup")):
        return False
    table, _, column = var.storage.partition(".")
    if var.is_custom:
        custom = custom or CustomVariableCache(session)
        definition = custom.by_name[var.name]
        existing = next((vv for vv in patient.values if vv.variable_id == definition.id
                         or vv.variable is definition), None)
        text = var.format(value)
        if existing is None:
            if text is None:
                return False
            patient.values.append(VariableValue(variable=definition, value=text))
        elif text is None:
            patient.values.remove(existing)
            session.delete(existing)
        else:
            existing.value = text
        return True
    if table == "patients":
        if column == "center":
            centers = centers or CenterCache(session)
            patient.center = centers.get(value)
        else:
            setattr(patient, column, value)
        return True
    if table in ONE_TO_ONE:
        rel_name, cls = ONE_TO_ONE[table]
        rel = getattr(patient, rel_name)
        if rel is None:
            if value is None:
                return False
            rel = cls()
            setattr(patient, rel_name, rel)
        setattr(rel, column, value)
        return True
    if table == "labs":
        test, attr, unit = LAB_FIELDS[column]
        lab = preoperative_lab(patient, test)
        if lab is None:
            if value is None:
                return False
            lab = LabResult(test=test, unit=unit, preoperative=True)
            patient.labs.append(lab)
        setattr(lab, attr, value)
        return True
    if table == "followup":
        visit = summary_visit(patient)
        if visit is None:
            if value is None:
                return False
            visit = FollowUpVisit(source=SUMMARY_SOURCE)
            patient.followups.append(visit)
        if getattr(visit, column) == value:
            return False
        setattr(visit, column, value)
        return True
    raise KeyError(var.storage)  # pragma: no cover


def patient_values(patient: Patient, book: Codebook, *, include_identifiers: bool = False) -> dict[str, Any]:
    """All codebook values of a patient, by variable name."""
    return {var.name: get_value(patient, var) for var in book
            if include_identifiers or not var.identifier}


def new_patient_rows(values: dict[str, Any], book: Codebook) -> dict[str, Any]:
    """A new patient's validated values laid out per table (the bulk-insert counterpart of
    :func:`set_value`: the same storage rules, for rows that do not exist yet).

    Returns ``{"patients": {...}, "surgeries": {...}|None, ..., "lab_results": [...],
    "followup_visits": [...], "custom": {name: text}}``; ``center`` is left as a code.
    """
    out: dict[str, Any] = {"patients": {}, "lab_results": [], "followup_visits": [], "custom": {}}
    for name in ONE_TO_ONE:
        out[name] = {}
    lab: dict[str, Any] = {}
    visit: dict[str, Any] = {}
    for name, value in values.items():
        var = book[name]
        table, _, column = var.storage.partition(".")
        if value is None:
            continue
        if var.is_custom:
            out["custom"][name] = var.format(value)
        elif table == "patients":
            out["patients"][column] = value
        elif table in ONE_TO_ONE:
            out[table][column] = value
        elif table == "labs":
            _test, attr, _unit = LAB_FIELDS[column]
            lab[attr] = value
        elif table == "followup":
            visit[column] = value
    if lab:
        out["lab_results"].append({"test": "ca19_9", "unit": "U/mL", "preoperative": True, "value": None,
                                   "measured_on": None, **lab})
    if visit:
        out["followup_visits"].append({"source": SUMMARY_SOURCE, "vital_status": None, "recurrence": None,
                                       "recurrence_date": None, "death_date": None, **visit})
    return out
