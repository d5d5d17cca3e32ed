"""Small canonical spreadsheets for registry tests."""

from __future__ import annotations

import csv
from pathlib import Path

CANONICAL = ["study_id", "center", "sex", "age", "surgery_date", "surgery_type", "differentiation",
             "t_stage", "n_stage", "m_stage", "neoadjuvant_therapy", "adjuvant_chemotherapy",
             "diabetes", "hypertension", "microvascular_invasion", "perineural_invasion", "ca19_9",
             "recurrence", "recurrence_date", "vital_status", "death_date", "last_followup_date"]


def patient(study_id: str, center: str = "A", **overrides) -> dict:
    row = {"study_id": study_id, "center": center, "sex": "male", "age": "64",
           "surgery_date": "2018-01-10", "surgery_type": "PD", "differentiation": "I-II",
           "t_stage": "T2", "n_stage": "N1", "m_stage": "M0", "neoadjuvant_therapy": "no",
           "adjuvant_chemotherapy": "yes", "diabetes": "no", "hypertension": "yes",
           "microvascular_invasion": "no", "perineural_invasion": "yes", "ca19_9": "150",
           "recurrence": "yes", "recurrence_date": "2019-02-01", "vital_status": "dead",
           "death_date": "2020-03-01", "last_followup_date": "2020-03-01"}
    row.update({k: str(v) for k, v in overrides.items()})
    return row


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c, "") for c in columns})
    return path


def table_counts(registry) -> dict[str, int]:
    """Row counts of every registry table (to prove that nothing was written)."""
    from sqlalchemy import func, select

    from pathomics_desktop.registry.models import Base

    with registry.session() as s:
        return {name: s.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in Base.metadata.tables.items()}
