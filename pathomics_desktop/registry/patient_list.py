"""The patient list as the GUI's table shows it: rows of the analysis table, the columns a
user may choose from, and filters (Qt-free, so the CLI and tests use the same rules).

Rows come from :func:`pathomics_desktop.cohort.table.build_rows` (derived endpoints, stage,
inclusion, then every codebook variable). Identifiers are loaded only when asked for.
Filters combine with AND: center, data set, included, exclusion reason, any number of
codebook-variable conditions (a value, a range for numbers and dates, "contains" for text)
and a free-text search over the shown columns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from pathomics_desktop.registry.codebook import Codebook, Variable

#: labels of the derived columns that lead every row (the analysis table's LEAD_COLUMNS)
DERIVED_LABELS = {
    "study_id": "Study ID", "center": "Center", "center_role": "Center role", "split": "Data set",
    "included": "Included", "exclusion_reason": "Exclusion reason", "os_months": "OS (months)",
    "os_event": "Death", "rfs_months": "RFS (months)", "rfs_event": "Recurrence or death",
    "tnm_stage": "AJCC 8th stage", "tnm_group": "Stage group", "synthetic": "Synthetic",
}
DEFAULT_COLUMNS = ["study_id", "center", "split", "included", "exclusion_reason", "tnm_stage",
                   "os_months", "os_event", "rfs_months", "rfs_event"]
DATA_SETS = ("training", "internal", "external")
NOT_ASSIGNED = "not assigned"


@dataclass
class PatientRows:
    """Rows (dicts by column) and the codebook they were built with."""

    rows: list[dict[str, Any]]
    columns: list[str]
    codebook: Codebook
    include_identifiers: bool = False


def load_patient_rows(registry, *, include_identifiers: bool = False) -> PatientRows:
    """Every patient's row of the analysis table (runs in a worker thread)."""
    from pathomics_desktop.cohort.table import build_rows

    with registry.session() as session:
        book = Codebook.for_session(session)
        rows, columns = build_rows(session, include_identifiers=include_identifiers)
    return PatientRows(rows=rows, columns=columns, codebook=book, include_identifiers=include_identifiers)


def first_study_id(registry) -> str | None:
    """The first patient by study id (a representative patient for screenshots)."""
    from sqlalchemy import select

    from pathomics_desktop.registry.models import Patient

    with registry.session() as session:
        return session.scalars(select(Patient.study_id).order_by(Patient.study_id).limit(1)).first()


def column_label(column: str, book: Codebook | None) -> str:
    if column in DERIVED_LABELS:
        return DERIVED_LABELS[column]
    if book is not None and column in book:
        return book[column].display_label
    return column


def choosable_columns(columns: Sequence[str], book: Codebook, *, show_identifiers: bool) -> list[str]:
    """The columns a user may show: identifiers only with ``show_identifiers``."""
    return [c for c in columns if show_identifiers or not (c in book and book[c].identifier)]


def identifier_columns(book: Codebook) -> set[str]:
    return {v.name for v in book if v.identifier}


@dataclass(frozen=True)
class VariableFilter:
    """One codebook-variable condition: ``equals`` (a code, ``yes``/``no``), an inclusive
    ``low``..``high`` range (numbers, dates; either end may be open), or ``contains`` (text,
    case-insensitive). A missing value never matches."""

    variable: str
    equals: Any = None
    low: Any = None
    high: Any = None
    contains: str | None = None

    def matches(self, row: dict[str, Any]) -> bool:
        value = row.get(self.variable)
        if value is None:
            return False
        if self.equals is not None and _canonical_text(value) != _canonical_text(self.equals):
            return False
        if self.low is not None and value < self.low:
            return False
        if self.high is not None and value > self.high:
            return False
        if self.contains and self.contains.lower() not in str(value).lower():
            return False
        return True

    def describe(self) -> str:
        if self.equals is not None:
            return f"{self.variable} = {_canonical_text(self.equals)}"
        if self.contains:
            return f"{self.variable} contains {self.contains!r}"
        low = "" if self.low is None else _canonical_text(self.low)
        high = "" if self.high is None else _canonical_text(self.high)
        return f"{self.variable} in [{low}, {high}]"


def parse_variable_filter(var: Variable, *, equals: str = "", low: str = "", high: str = "",
                          contains: str = "") -> VariableFilter:
    """A filter from what a user typed, parsed with the codebook (so ``t3`` means ``T3`` and
    ``2019-01-01`` a date). Raises :class:`~pathomics_desktop.errors.UserError` naming the
    variable for a value that is not one of its codes or not a number/date."""
    from pathomics_desktop.errors import UserError
    from pathomics_desktop.registry.codebook import CellError

    def parse(text: str) -> Any:
        if not text.strip():
            return None
        probe = Variable(name=var.name, label=var.label, type=var.type, codes=var.codes)  # no limits
        try:
            return probe.parse(text)[0]
        except CellError as exc:
            raise UserError(f"filter on {var.label}: {exc}") from None

    if var.type in ("category", "yesno"):
        value = parse(equals)
        if var.type == "yesno" and value is not None:
            value = "yes" if value else "no"  # the analysis table's spelling
        return VariableFilter(var.name, equals=value)
    if var.type in ("integer", "number", "date"):
        return VariableFilter(var.name, low=parse(low), high=parse(high))
    return VariableFilter(var.name, contains=contains.strip() or None)


@dataclass
class PatientFilter:
    """Every active filter of the patient table (None / empty = no condition)."""

    center: str | None = None
    data_set: str | None = None          # training | internal | external | NOT_ASSIGNED
    included: bool | None = None
    exclusion_reason: str | None = None
    variables: list[VariableFilter] = field(default_factory=list)
    text: str = ""

    def matches(self, row: dict[str, Any], search_columns: Iterable[str] = ()) -> bool:
        if self.center is not None and row.get("center") != self.center:
            return False
        if self.data_set is not None:
            split = row.get("split") or NOT_ASSIGNED
            if split != self.data_set:
                return False
        if self.included is not None and bool(row.get("included")) != self.included:
            return False
        if self.exclusion_reason is not None and row.get("exclusion_reason") != self.exclusion_reason:
            return False
        if not all(f.matches(row) for f in self.variables):
            return False
        if self.text:
            needle = self.text.lower()
            if not any(needle in _canonical_text(row.get(c)).lower() for c in search_columns):
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The active filters as plain data (for snapshots)."""
        out: dict[str, Any] = {}
        if self.center is not None:
            out["center"] = self.center
        if self.data_set is not None:
            out["data_set"] = self.data_set
        if self.included is not None:
            out["included"] = self.included
        if self.exclusion_reason is not None:
            out["exclusion_reason"] = self.exclusion_reason
        if self.variables:
            out["variables"] = [f.describe() for f in self.variables]
        if self.text:
            out["search"] = self.text
        return out


def filter_rows(rows: Sequence[dict[str, Any]], flt: PatientFilter,
                search_columns: Iterable[str] = ()) -> list[int]:
    """Indices of the rows that pass every filter."""
    columns = list(search_columns) or ["study_id"]
    return [i for i, row in enumerate(rows) if flt.matches(row, columns)]


def sort_rows(rows: Sequence[dict[str, Any]], indices: Sequence[int], column: str, *,
              descending: bool = False) -> list[int]:
    """``indices`` ordered by ``column``; missing values last in either direction."""
    present = [i for i in indices if rows[i].get(column) is not None]
    missing = [i for i in indices if rows[i].get(column) is None]
    present.sort(key=lambda i: _sort_key(rows[i][column]), reverse=descending)
    return present + missing


def _sort_key(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return value.lower()
    return value


def _canonical_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)

