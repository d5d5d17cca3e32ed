"""Table 1: baseline characteristics of the filtered cohort by a grouping variable.

The numbers come from :func:`pathomics_desktop.stats.table1.baseline_table` (the study's
rules: Shapiro-Wilk in every group, then Welch t-test / ANOVA for normal data or
Mann-Whitney U / Kruskal-Wallis; Pearson chi-square, or Fisher's exact test when an expected
count is < 5; the test is named on each variable's row). Layout as in journals: a "Patients,
n" row, an Overall column, a heading row per categorical variable carrying p and the test
with its levels below it (n (%) of the non-missing values; levels in codebook order), one
row per continuous variable (mean (SD) or median [Q1, Q3], as the normality rule chose), and
a "Missing" row wherever values are missing. p is written by
:func:`~pathomics_desktop.figures.style.format_p`.

Grouping: the data set by default (training / internal / external, as the study); patients
with no value of the grouping variable are left out (their number is noted). Each count cell
keeps the study ids it counts (``Table1Row.ids``; not part of ``to_dict``) so that a click
lists those patients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.style import format_p

OVERALL = "Overall"
#: continuous variables of the study's Table 1 besides the grouped clinical variables
CONTINUOUS = ("age", "ca19_9")
#: grouping levels in the study's order
GROUP_ORDERS = {"split": ("training", "internal", "external")}
GROUP_LABELS = {"split": {"training": "Training", "internal": "Internal validation",
                          "external": "External validation"}}


class CellPatients(Mapping):
    """The study ids a row counts per column, listed when first asked for (a click or a
    tooltip): ``ids[mask & in_group[column]]``. Equal to the plain dict of those lists."""

    def __init__(self, ids: np.ndarray, mask: np.ndarray, in_group: dict[str, np.ndarray]):
        self._ids, self._mask, self._in_group = ids, mask, in_group
        self._lists: dict[str, list[str]] = {}

    def __getitem__(self, column: str) -> list[str]:
        if column not in self._lists:
            self._lists[column] = self._ids[self._mask & self._in_group[column]].tolist()
        return self._lists[column]

    def __iter__(self):
        return iter(self._in_group)

    def __len__(self) -> int:
        return len(self._in_group)


class PatientInfo(Mapping):
    """study id -> {study_id, center, split} of the table's patients, indexed on first use."""

    def __init__(self, columns: Sequence[str], arrays: Sequence[np.ndarray]):
        self._columns, self._arrays = list(columns), list(arrays)
        self._index: dict[str, int] | None = None

    def _rows(self) -> dict[str, int]:
        if self._index is None:
            self._index = {str(sid): i for i, sid in enumerate(self._arrays[0])} if self._arrays else {}
        return self._index

    def __getitem__(self, study_id: str) -> dict[str, Any]:
        i = self._rows()[study_id]
        return {c: a[i] for c, a in zip(self._columns, self._arrays)}

    def __iter__(self):
        return iter(self._rows())

    def __len__(self) -> int:
        return len(self._rows())


@dataclass
class Table1Row:
    """One row: ``kind`` is "count" (patients per group), "header" (a categorical variable,
    with p and test), "level" (one category: n (%)), "continuous" (mean (SD) / median [Q1, Q3],
    with p and test) or "missing". ``cells`` are the texts per column ("Overall" and the groups),
    ``counts`` the patients each cell counts and ``ids`` their study ids."""

    variable: str
    label: str
    kind: str
    level: str | None
    cells: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)
    p: float | None = None
    test: str | None = None
    ids: Mapping[str, list[str]] = field(default_factory=dict, repr=False)
    variable_label: str = ""

    def what(self) -> str:
        """The patients of a cell in words: "T stage: T3-4", "CA19-9 (U/mL): missing"."""
        if self.kind == "count":
            return "All patients"
        detail = {"level": self.level, "missing": "missing"}.get(self.kind, "recorded")
        return f"{self.variable_label}: {detail}"

    @property
    def p_text(self) -> str:
        return format_p(self.p) if self.kind in ("header", "continuous") else ""

    def to_dict(self) -> dict:
        return {"variable": self.variable, "label": self.label, "kind": self.kind, "level": self.level,
                "cells": dict(self.cells), "counts": dict(self.counts), "p": self.p, "p_text": self.p_text,
                "test": self.test}


@dataclass
class Table1:
    """Table 1 by ``by``: ``groups`` (the column order after Overall), ``group_labels``, rows."""

    by: str
    by_label: str
    groups: list[str]
    group_labels: dict[str, str]
    rows: list[Table1Row]
    n_without_group: int = 0
    notes: list[str] = field(default_factory=list)
    #: study id -> center and data set, for the patient lists of the click-through
    patients: Mapping[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def columns(self) -> list[str]:
        return [OVERALL] + list(self.groups)

    def header(self) -> list[str]:
        n = self.rows[0].counts
        return (["Characteristic"] + [f"{self.group_labels.get(g, g)} (n = {n[g]})" for g in self.columns]
                + ["p", "Test"])

    def row_label(self, row: Table1Row) -> str:
        return f"    {row.label}" if row.kind in ("level", "missing") else row.label

    def table_rows(self) -> list[list[Any]]:
        return [[self.row_label(r)] + [r.cells.get(c, "") for c in self.columns] + [r.p_text, r.test or ""]
                for r in self.rows]

    def to_dict(self) -> dict:
        return {"by": self.by, "by_label": self.by_label, "groups": list(self.groups),
                "group_labels": dict(self.group_labels), "n_without_group": self.n_without_group,
                "header": self.header(), "rows": [r.to_dict() for r in self.rows],
                "notes": list(self.notes)}


@lru_cache(maxsize=1)
def _known_levels() -> dict[str, tuple[str, ...]]:
    from pathomics_desktop.signature.report import clinical_variables

    return {v.column: v.levels for v in clinical_variables()}


def default_variables() -> list[str]:
    """The study's clinicopathological variables, then age and CA19-9 as continuous."""
    from pathomics_desktop.signature.report import clinical_variables

    return [v.column for v in clinical_variables()] + list(CONTINUOUS)


@lru_cache(maxsize=1)
def _clinical_labels() -> dict[str, str]:
    from pathomics_desktop.signature.report import clinical_variables

    return {v.column: v.label for v in clinical_variables()}


def variable_label(source, column: str) -> str:
    """The study's label of a clinical variable, else the codebook's label with its unit."""
    if column in _clinical_labels():
        return _clinical_labels()[column]
    label = source.label(column) if source is not None else column
    unit = source.unit(column) if source is not None else ""
    return f"{label} ({unit})" if unit else label


def _group_order(by: str, present: Sequence[str], requested: Sequence[str] | None) -> list[str]:
    from pathomics_desktop.stats.levels import sorted_levels

    preferred = list(requested or GROUP_ORDERS.get(by) or _known_levels().get(by) or ())
    ordered = [g for g in preferred if g in present]
    return ordered + [g for g in sorted_levels(present) if g not in ordered]


def _is_categorical(frame, column: str, known: dict) -> bool:
    if column in known:
        return True
    dtype = frame[column].dtype
    return dtype == object or str(dtype) in ("category", "bool", "boolean", "string")


def build_table1(source, frame, params: dict) -> Table1:
    """Table 1. ``params``: ``by`` (grouping column, default ``"split"``), ``variables``
    (columns; default :func:`default_variables`), ``group_order`` (optional)."""
    from pathomics_desktop.stats.table1 import baseline_table

    by = str(params.get("by") or "split")
    if by not in frame.columns:
        raise UserError(f"cannot group by {by!r}: the cohort snapshot has no such column")
    known = _known_levels()
    variables = [v for v in (params.get("variables") or default_variables()) if v != by]
    missing_cols = [v for v in variables if v not in frame.columns]
    notes = [f"{variable_label(source, v)}: not in the cohort snapshot" for v in missing_cols]
    variables = [v for v in variables if v in frame.columns]
    if not variables:
        raise UserError("Choose at least one variable for Table 1.")
    from pathomics_desktop.stats.levels import factor

    group_code, group_levels, has_group = factor(frame[by])
    data = frame[has_group]
    group_of = np.asarray(group_levels + [None], dtype=object)[group_code[has_group]]
    n_without = int((~has_group).sum())
    if n_without:
        notes.append(f"{n_without} patient(s) without a value of {variable_label(source, by)} are left out")
    groups = _group_order(by, group_levels, params.get("group_order"))
    if len(groups) < 2:
        raise UserError(f"Table 1 by {variable_label(source, by)} needs at least two groups among the selected "
                        f"patients; found {', '.join(groups) or 'none'}. "
                        "Widen the filter or group by another variable.")
    categorical = [v for v in variables if _is_categorical(data, v, known)]
    table = baseline_table(data, by, variables, categorical=categorical, group_order=groups)
    ids = data["study_id"].astype(str).to_numpy()
    in_group = {OVERALL: np.ones(len(data), dtype=bool)}
    in_group.update({g: group_of == g for g in groups})
    columns = [OVERALL] + groups

    def cell_ids(mask: np.ndarray) -> tuple[dict[str, int], CellPatients]:
        counts = {c: int(np.count_nonzero(mask & in_group[c])) for c in columns}
        return counts, CellPatients(ids, mask, in_group)

    counts, everyone = cell_ids(np.ones(len(data), dtype=bool))
    rows = [Table1Row("n", "Patients, n", "count", None, {c: str(counts[c]) for c in columns}, counts, ids=everyone)]
    by_variable: dict[str, list] = {}
    for stat_row in table.rows:
        by_variable.setdefault(stat_row.variable, []).append(stat_row)
    for var in variables:
        rows.extend(_variable_rows(source, var, by_variable[var], factor(data[var]), var in categorical,
                                   known.get(var, ()), cell_ids))
    group_labels = {OVERALL: OVERALL, **{g: GROUP_LABELS.get(by, {}).get(g, g) for g in groups}}
    info = [c for c in ("study_id", "center", "split") if c in data.columns]
    patients = PatientInfo(info, [data[c].astype(object).to_numpy() for c in info])
    return Table1(by, variable_label(source, by), groups, group_labels, rows, n_without, notes, patients)


def _variable_rows(source, var: str, stat_rows: list, factored, categorical: bool,
                   level_order: Sequence[str], cell_ids) -> list[Table1Row]:
    """The display rows of one variable from its :class:`~pathomics_desktop.stats.table1.BaselineRow` s
    (``factored``: the variable's (code, levels, present) of :func:`~pathomics_desktop.stats.levels.factor`)."""
    label = variable_label(source, var)
    first = stat_rows[0]
    code, levels_found, present = factored
    position = {lvl: i for i, lvl in enumerate(levels_found)}
    out: list[Table1Row] = []
    if categorical:
        counts, chosen = cell_ids(present)
        out.append(Table1Row(var, f"{label}, n (%)", "header", None, {}, counts, first.p, first.test, chosen))
        levels = [r for r in stat_rows if r.level not in (None, "missing")]
        rank = {lvl: i for i, lvl in enumerate(level_order)}
        levels.sort(key=lambda r: rank.get(r.level, len(rank)))
        for r in levels:
            counts, chosen = cell_ids(code == position.get(r.level, -2))
            out.append(Table1Row(var, r.level, "level", r.level, dict(r.cells), counts, ids=chosen))
    else:
        counts, chosen = cell_ids(present)
        out.append(Table1Row(var, f"{label}, {first.statistic_kind or 'summary'}", "continuous", None,
                             dict(first.cells), counts, first.p, first.test, chosen))
    for r in stat_rows:
        if r.level == "missing":
            counts, chosen = cell_ids(~present)
            out.append(Table1Row(var, "Missing", "missing", None, dict(r.cells), counts, ids=chosen))
    for row in out:
        row.variable_label = label
    return out
