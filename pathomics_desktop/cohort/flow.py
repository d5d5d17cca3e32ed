"""The patient flow (the reference study's Figure 1): enrolled, excluded by reason, included,
and the data sets, per center and in total."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pathomics_desktop.cohort.table import EXCLUSION_REASONS, assess_patient, load_patients
from pathomics_desktop.registry.codebook import Codebook


@dataclass
class CenterFlow:
    center: str
    role: str
    enrolled: int = 0
    excluded: dict[str, int] = field(default_factory=lambda: {r: 0 for r in EXCLUSION_REASONS})
    included: int = 0
    training: int = 0
    internal: int = 0
    external: int = 0
    unassigned: int = 0


@dataclass
class Flow:
    centers: list[CenterFlow]

    @property
    def total(self) -> CenterFlow:
        total = CenterFlow(center="all", role="")
        for c in self.centers:
            total.enrolled += c.enrolled
            total.included += c.included
            for k, v in c.excluded.items():
                total.excluded[k] += v
            total.training += c.training
            total.internal += c.internal
            total.external += c.external
            total.unassigned += c.unassigned
        return total

    def to_dict(self) -> dict[str, Any]:
        def one(c: CenterFlow) -> dict[str, Any]:
            return {"center": c.center, "role": c.role, "enrolled": c.enrolled,
                    "excluded": dict(c.excluded), "excluded_total": sum(c.excluded.values()),
                    "included": c.included, "training": c.training, "internal": c.internal,
                    "external": c.external, "unassigned": c.unassigned}
        return {"centers": [one(c) for c in self.centers], "total": one(self.total),
                "reasons": list(EXCLUSION_REASONS)}

    def to_text(self) -> str:
        cols = self.centers + [self.total]
        width = max(len(f"  excluded: {r}") for r in EXCLUSION_REASONS) + 2
        lines = ["".ljust(width) + "".join(c.center[:12].rjust(13) for c in cols)]

        def line(label: str, values: list[int]) -> None:
            lines.append(label.ljust(width) + "".join(str(v).rjust(13) for v in values))

        line("Enrolled", [c.enrolled for c in cols])
        for reason in EXCLUSION_REASONS:
            line(f"  excluded: {reason}", [c.excluded[reason] for c in cols])
        line("Included", [c.included for c in cols])
        line("  training set", [c.training for c in cols])
        line("  internal validation set", [c.internal for c in cols])
        line("  external validation set", [c.external for c in cols])
        if any(c.unassigned for c in cols):
            line("  not yet assigned", [c.unassigned for c in cols])
        return "\n".join(lines)


def patient_flow(session) -> Flow:
    book = Codebook.for_session(session)
    by_center: dict[str, CenterFlow] = {}
    for patient in load_patients(session):
        code = patient.center.code
        flow = by_center.setdefault(code, CenterFlow(center=code, role=patient.center.role))
        flow.enrolled += 1
        outcome = assess_patient(patient, book)
        if not outcome.included:
            flow.excluded[outcome.exclusion_reason] += 1
            continue
        flow.included += 1
        if patient.split in ("training", "internal", "external"):
            setattr(flow, patient.split, getattr(flow, patient.split) + 1)
        else:
            flow.unassigned += 1
    order = sorted(by_center.values(), key=lambda c: (c.role != "development", c.center))
    return Flow(centers=order)
