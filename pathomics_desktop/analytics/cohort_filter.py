"""The one cohort filter of the analysis views, and the filtered analysis table they read.

A :class:`CohortFilter` is plain data (data sets, centers, included or all patients, ranges of
numeric variables, ticked levels of categorical ones, the risk groups of an applied signature).
:meth:`CohortFilter.filters` turns it into :class:`~pathomics_desktop.analytics.snapshot.Filter`
rows, which :class:`~pathomics_desktop.analytics.snapshot.CohortQuery` binds as parameters of
DuckDB SQL on the cohort snapshot: a value of the user never becomes SQL text.

:class:`AnalysisSource` is the snapshot a view computes from: the Parquet file, its content
hash (``snapshot_id``, the first 12 hex digits of SHA-256 of the file, printed in every figure
footnote so a number on screen can be traced to the data it came from), the filter options and
:meth:`AnalysisSource.frame`, the filtered table with the derived analysis columns of the study
(:func:`pathomics_desktop.signature.report.derive_clinical_columns`: age and CA19-9 groups,
T3-4, stage I-II / III-IV, ordinal TNM). Every call uses its own DuckDB cursor,
so background workers never share one (cursors of one in-process database).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from pathomics_desktop.analytics.snapshot import CohortQuery, Filter, refresh_snapshot
from pathomics_desktop.errors import UserError

#: snapshot columns that are never offered as filters (keys, free text, dates)
NOT_FILTERABLE = ("study_id", "synthetic", "exclusion_reason", "chemo_regimen", "os_event", "rfs_event")
#: labels of the snapshot's derived columns (the codebook labels the recorded ones)
DERIVED_LABELS = {"os_months": ("Overall survival", "months"), "rfs_months": ("Recurrence-free survival", "months"),
                  "tnm_stage": ("TNM stage (AJCC 8th)", ""), "tnm_group": ("TNM stage group", ""),
                  "center_role": ("Center role", ""), "split": ("Data set", ""), "center": ("Center", "")}
#: categorical columns with more distinct values than this are not offered as tick lists
MAX_LEVELS = 40


@dataclass(frozen=True)
class CohortFilter:
    """What the analysis views show: every condition must hold (AND).

    ``datasets``/``centers`` empty means all; ``ranges`` are ``(column, low, high)`` with
    ``None`` for an open end (bounds inclusive); ``categories`` are ``(column, levels)``, the
    ticked levels (a patient with a missing value fails a range or a tick list)."""

    datasets: tuple[str, ...] = ()
    centers: tuple[str, ...] = ()
    included_only: bool = True
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def filters(self) -> list[Filter]:
        out: list[Filter] = []
        if self.included_only:
            out.append(Filter("included", "=", True))
        if self.datasets:
            out.append(Filter("split", "in", list(self.datasets)))
        if self.centers:
            out.append(Filter("center", "in", list(self.centers)))
        for column, low, high in self.ranges:
            if low is not None:
                out.append(Filter(column, ">=", float(low)))
            if high is not None:
                out.append(Filter(column, "<=", float(high)))
            if low is None and high is None:
                out.append(Filter(column, "is not null"))
        for column, levels in self.categories:
            out.append(Filter(column, "in", [str(v) for v in levels]))
        return out

    # -- editing (a new filter each time: the filter is a value) -------------------------
    def with_range(self, column: str, low: float | None, high: float | None) -> "CohortFilter":
        kept = tuple(r for r in self.ranges if r[0] != column)
        return replace(self, ranges=kept + ((column, low, high),))

    def with_categories(self, column: str, levels: Sequence[str]) -> "CohortFilter":
        kept = tuple(c for c in self.categories if c[0] != column)
        return replace(self, categories=kept + ((column, tuple(str(v) for v in levels)),))

    def with_subgroup(self, column: str, level: str) -> "CohortFilter":
        """Narrow to one level of an analysis column, the study's derived columns included
        (they exist only after :func:`derive_clinical_columns`, so they become conditions on
        the snapshot's own columns): ``age_group`` and ``ca19_9_group`` -> ranges of age and
        CA19-9 (the lower group strictly below the threshold), ``t_group`` T3-4 -> T stage T3
        or T4, ``stage_2`` I-II / III-IV -> TNM stage groups."""
        from pathomics_desktop.signature.report import AGE_THRESHOLD, CA19_9_THRESHOLD

        level = str(level)
        thresholds = {"age_group": ("age", AGE_THRESHOLD), "ca19_9_group": ("ca19_9", CA19_9_THRESHOLD)}
        if column in thresholds:
            source, cut = thresholds[column]
            if level.startswith(">="):
                return self.with_range(source, float(cut), None)
            return self.with_range(source, None, math.nextafter(float(cut), -math.inf))
        if column == "t_group":
            return self.with_categories("t_stage", ["T3", "T4"] if level == "T3-4" else [level])
        if column == "stage_2":
            return self.with_categories("tnm_group", ["I", "II"] if level == "I-II" else ["III", "IV"])
        return self.with_categories(column, [level])

    def without(self, column: str) -> "CohortFilter":
        return replace(self, ranges=tuple(r for r in self.ranges if r[0] != column),
                       categories=tuple(c for c in self.categories if c[0] != column))

    def variable_columns(self) -> list[str]:
        return [r[0] for r in self.ranges] + [c[0] for c in self.categories]

    def describe(self) -> str:
        """The filter in words, for figure footnotes: ``included patients; data set: training;
        center: A, B; age 40-70; sex: female``."""
        parts = ["included patients" if self.included_only else "all enrolled patients"]
        if self.datasets:
            parts.append("data set: " + ", ".join(self.datasets))
        if self.centers:
            parts.append("center: " + ", ".join(self.centers))
        for column, low, high in self.ranges:
            if low is not None and high is not None:
                parts.append(f"{column} {low:g}-{high:g}")
            elif low is not None:
                parts.append(f"{column} >= {low:g}")
            elif high is not None:
                parts.append(f"{column} {_upper_bound_text(high)}")
            else:
                parts.append(f"{column} recorded")
        for column, levels in self.categories:
            parts.append(f"{column}: " + (", ".join(levels) if levels else "(none)"))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"datasets": list(self.datasets), "centers": list(self.centers),
                "included_only": self.included_only,
                "ranges": [list(r) for r in self.ranges],
                "categories": [[c, list(levels)] for c, levels in self.categories]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CohortFilter":
        try:
            return cls(datasets=tuple(data.get("datasets", ())), centers=tuple(data.get("centers", ())),
                       included_only=bool(data.get("included_only", True)),
                       ranges=tuple((str(c), lo, hi) for c, lo, hi in data.get("ranges", ())),
                       categories=tuple((str(c), tuple(str(v) for v in levels))
                                        for c, levels in data.get("categories", ())))
        except (TypeError, ValueError) as exc:
            raise UserError(f"not a cohort filter: {exc}") from None


def _upper_bound_text(high: float) -> str:
    """``<= 64`` for an inclusive bound; ``< 200`` for the float just below 200 (a strict bound)."""
    above = math.nextafter(float(high), math.inf)
    if above != float(high) and above == round(above, 6) and round(float(high), 6) == above:
        return f"< {above:g}"
    return f"<= {high:g}"


@dataclass(frozen=True)
class VariableOption:
    """A filterable snapshot column: ``kind`` is "number" (with its observed ``low``/``high``)
    or "category" (with its ``levels`` in codebook order)."""

    column: str
    label: str
    kind: str
    levels: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    unit: str = ""


@dataclass(frozen=True)
class FilterOptions:
    """What the filter panel offers: the data sets, centers, and every filterable variable."""

    datasets: tuple[str, ...]
    centers: tuple[str, ...]
    variables: tuple[VariableOption, ...] = field(default_factory=tuple)

    def variable(self, column: str) -> VariableOption:
        for option in self.variables:
            if option.column == column:
                return option
        raise UserError(f"{column!r} is not a filterable variable of the cohort")

    def to_dict(self) -> dict[str, Any]:
        return {"datasets": list(self.datasets), "centers": list(self.centers),
                "variables": [{"column": v.column, "label": v.label, "kind": v.kind,
                               "levels": list(v.levels), "low": v.low, "high": v.high}
                              for v in self.variables]}


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ordered_levels(column: str, values: Sequence[Any], book) -> tuple[str, ...]:
    """Levels in codebook order (codes first, then anything else in natural order)."""
    from pathomics_desktop.stats.levels import level_label, sorted_levels

    present = [level_label(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    codes: list[str] = []
    if column in book:
        var = book[column]
        codes = ["no", "yes"] if var.type == "yesno" else [str(c) for c in var.codes]
    ordered = [c for c in codes if c in present]
    rest = [v for v in sorted_levels(present) if v not in ordered]
    return tuple(ordered + rest)


class AnalysisSource:
    """The cohort snapshot a view computes from (see the module docstring)."""

    def __init__(self, parquet: str | Path, *, codebook=None):
        self.parquet = Path(parquet)
        if not self.parquet.exists():
            raise UserError(f"the cohort snapshot {self.parquet} does not exist")
        self.snapshot_id = _file_hash(self.parquet)[:12]
        self._codebook = codebook
        self._root = CohortQuery(self.parquet)
        self.columns = list(self._root.columns)
        self._analysis_table = None
        self._analysis_lock = threading.Lock()

    @classmethod
    def open(cls, project) -> "AnalysisSource":
        """The project's fresh snapshot (refreshed first if the registry changed)."""
        from pathomics_desktop.registry.codebook import Codebook
        from pathomics_desktop.registry.service import open_project_registry

        parquet = refresh_snapshot(project)
        registry = open_project_registry(project)
        try:
            with registry.session() as session:
                book = Codebook.for_session(session)
        finally:
            registry.dispose()
        return cls(parquet, codebook=book)

    @property
    def codebook(self):
        if self._codebook is None:
            from pathomics_desktop.registry.codebook import Codebook

            self._codebook = Codebook.builtin()
        return self._codebook

    def query(self) -> CohortQuery:
        """A DuckDB cursor on the snapshot, for this thread (close it after use)."""
        return self._root.cursor()

    def label(self, column: str) -> str:
        if column in DERIVED_LABELS:
            return DERIVED_LABELS[column][0]
        book = self.codebook
        return book[column].label if column in book else column

    def unit(self, column: str) -> str:
        if column in DERIVED_LABELS:
            return DERIVED_LABELS[column][1]
        book = self.codebook
        return (book[column].unit or "") if column in book else ""

    def frame(self, cohort_filter: CohortFilter | None = None, columns: Sequence[str] | None = None,
              *, derived: bool = True):
        """The filtered cohort (pandas), with the study's derived analysis columns.

        The filter is parameterised SQL on the snapshot (:meth:`CohortQuery.positions`); the
        rows it keeps are taken from :meth:`analysis_table` (the derived columns are made once
        per snapshot, not per filter change). With ``columns`` or ``derived=False``, those
        columns of the filtered rows straight from DuckDB."""
        cohort_filter = cohort_filter or CohortFilter()
        query = self.query()
        try:
            if not derived or columns is not None:
                return query.frame(cohort_filter.filters(), columns)
            rows = query.positions(cohort_filter.filters())
        finally:
            query.close()
        return self.analysis_table().take(rows).reset_index(drop=True)

    def analysis_table(self):
        """Every row of the snapshot, in file order, with the derived columns of
        :func:`~pathomics_desktop.signature.report.derive_clinical_columns`; made on first use
        (thread-safe) and kept: a source is one snapshot (a new snapshot is a new source)."""
        from pathomics_desktop.signature.report import derive_clinical_columns

        with self._analysis_lock:
            if self._analysis_table is None:
                query = self.query()
                try:
                    whole = query.frame([])
                finally:
                    query.close()
                # copy(): one block per dtype (the derived columns arrive one by one, 27 blocks
                # for 48 columns), which makes each filter's take about 3x faster
                self._analysis_table = derive_clinical_columns(whole).copy()
            return self._analysis_table

    def options(self) -> FilterOptions:
        """Data sets, centers and the filterable variables, from the snapshot itself."""
        query = self.query()
        try:
            types = dict(query.con.execute("SELECT column_name, column_type FROM (DESCRIBE cohort)").fetchall())
            variables: list[VariableOption] = []
            datasets: tuple[str, ...] = ()
            centers: tuple[str, ...] = ()
            for column in query.columns:
                kind = types[column].upper()
                col = query._column(column)
                if column == "split":
                    values = [r[0] for r in query.con.execute(f"SELECT DISTINCT {col} FROM cohort").fetchall()]
                    order = ("training", "internal", "external")
                    datasets = tuple([s for s in order if s in values] +
                                     sorted(str(v) for v in values if v is not None and v not in order))
                    continue
                if column == "center":
                    values = [r[0] for r in query.con.execute(f"SELECT DISTINCT {col} FROM cohort").fetchall()]
                    centers = tuple(sorted(str(v) for v in values if v is not None))
                    continue
                if column in NOT_FILTERABLE or column == "included" or "DATE" in kind or "TIMESTAMP" in kind:
                    continue
                if any(k in kind for k in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL")):
                    low, high = query.con.execute(f"SELECT MIN({col}), MAX({col}) FROM cohort").fetchone()
                    if low is None:
                        continue
                    variables.append(VariableOption(column, self.label(column), "number", (),
                                                    float(low), float(high), self.unit(column)))
                    continue
                values = [r[0] for r in query.con.execute(
                    f"SELECT DISTINCT {col} FROM cohort LIMIT {MAX_LEVELS + 1}").fetchall()]
                levels = ordered_levels(column, values, self.codebook)
                if 0 < len(levels) <= MAX_LEVELS:
                    variables.append(VariableOption(column, self.label(column), "category", levels))
        finally:
            query.close()
        return FilterOptions(datasets, centers, tuple(variables))


def footnote(cohort_filter: CohortFilter, snapshot_id: str, n: int | None = None) -> str:
    """The footnote every figure and table carries: the filter, n and the snapshot id."""
    count = f"; n = {n}" if n is not None else ""
    return f"Cohort: {cohort_filter.describe()}{count}. Snapshot {snapshot_id}."


def filter_json(cohort_filter: CohortFilter) -> str:
    return json.dumps(cohort_filter.to_dict(), sort_keys=True)
