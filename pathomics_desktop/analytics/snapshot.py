"""The DuckDB cohort snapshot: the registry's analysis table materialised for fast analysis.

``<project>/analytics/cohort.parquet`` holds one row per patient (derived endpoints, stage,
split, the pathomics scores and risk groups ``pathomics_os_score``/``_group`` and
``pathomics_rfs_score``/``_group``, clinical variables; never identifiers). It is refreshed
when the registry has changed: every curated change writes an audit row, so the highest
audit id (plus the schema revision) is the registry's version, recorded in
``analytics/snapshot.json``. ``signature apply`` writes the scores to the registry through
the audited write path, so new scores refresh the snapshot too (and re-applying the same
scores, which writes nothing, does not).

:class:`CohortQuery` turns UI filters into parameterised DuckDB SQL: column names are checked
against the snapshot's columns (identifiers cannot be bound as parameters, so they are
whitelisted and quoted), values are always bound parameters, never pasted into SQL text.
Parquet outputs in the project (patch predictions, slide features, signature scores) are
joined in place with ``read_parquet``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from pathomics_desktop.analytics.sql import sql_identifier, sql_literal
from pathomics_desktop.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

SNAPSHOT_DIR = "analytics"
OPERATORS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
             "in": "IN", "not in": "NOT IN", "between": "BETWEEN", "is null": "IS NULL",
             "is not null": "IS NOT NULL"}


def _registry_version(registry) -> dict[str, Any]:
    from sqlalchemy import func, select, text

    from pathomics_desktop.registry.models import AuditEvent

    with registry.session() as session:
        top = session.scalar(select(func.max(AuditEvent.id))) or 0
        count = session.scalar(select(func.count(AuditEvent.id))) or 0
        revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return {"audit_max_id": int(top), "audit_count": int(count), "schema": revision}


def snapshot_paths(project) -> tuple[Path, Path]:
    folder = project.folder(SNAPSHOT_DIR)
    return folder / "cohort.parquet", folder / "snapshot.json"


_REFRESH_LOCK = threading.Lock()


def refresh_snapshot(project, *, force: bool = False) -> Path:
    """Materialise the cohort snapshot if the registry changed since the last one (one
    refresh at a time in this process: the views' worker threads may ask together)."""
    with _REFRESH_LOCK:
        return _refresh_snapshot(project, force=force)


def _refresh_snapshot(project, *, force: bool) -> Path:
    from pathomics_desktop.cohort.table import analysis_frame
    from pathomics_desktop.registry.service import open_project_registry

    parquet, meta = snapshot_paths(project)
    registry = open_project_registry(project)
    try:
        version = _registry_version(registry)
        if not force and parquet.exists() and meta.exists():
            try:
                if json.loads(meta.read_text())["version"] == version:
                    return parquet
            except (ValueError, KeyError):
                pass
        with registry.session() as session:
            frame = analysis_frame(session)
    finally:
        registry.dispose()
    tmp = parquet.with_name(f".{parquet.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(parquet)
    meta.write_text(json.dumps({"version": version, "rows": len(frame)}), encoding="utf-8")
    return parquet


def cohort_frame(project_dir: str | os.PathLike | None = None):
    """The (fresh) cohort snapshot of a project as a pandas DataFrame."""
    import pandas as pd

    from pathomics_desktop.project import open_project

    project = open_project(str(project_dir) if project_dir else None)
    return pd.read_parquet(refresh_snapshot(project))


@dataclass(frozen=True)
class Filter:
    """One UI filter: ``column op value`` (``value`` a list for in/between)."""

    column: str
    op: str
    value: Any = None


class CohortQuery:
    """Parameterised queries over the cohort snapshot (and Parquet outputs) in DuckDB."""

    def __init__(self, parquet: str | Path, *, extra_views: dict[str, str | Path] | None = None):
        import duckdb

        self.con = duckdb.connect()
        # a view definition cannot take bound parameters: the path is quoted as a literal
        self.con.execute(f"CREATE VIEW cohort AS SELECT * FROM read_parquet({sql_literal(parquet)})")
        # the same rows with their 0-based position in the file (for :meth:`positions`)
        self.con.execute("CREATE VIEW cohort_rows AS SELECT *, file_row_number AS __row FROM "
                         f"read_parquet({sql_literal(parquet)}, file_row_number = true)")
        for name, path in (extra_views or {}).items():
            if not name.isidentifier():
                raise UserError(f"view name {name!r} is not an identifier")
            self.con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet({sql_literal(path)})')
        self.columns = [r[0] for r in self.con.execute("DESCRIBE cohort").fetchall()]

    def cursor(self) -> "CohortQuery":
        """A query object on a duplicate connection to the same in-process database (its own
        cursor, safe to use from another thread; connecting anew costs ~40 ms, this ~0)."""
        twin = object.__new__(CohortQuery)
        twin.con = self.con.cursor()
        twin.columns = list(self.columns)
        return twin

    @classmethod
    def for_project(cls, project) -> "CohortQuery":
        return cls(refresh_snapshot(project))

    def _column(self, name: str) -> str:
        if name not in self.columns:
            raise UserError(f"unknown column {name!r} (the cohort has: {', '.join(self.columns[:12])}, ...)")
        return sql_identifier(name)

    def where(self, filters: Iterable[Filter]) -> tuple[str, list[Any]]:
        """SQL ``WHERE`` clause and its parameters for a list of filters (AND)."""
        parts: list[str] = []
        params: list[Any] = []
        for f in filters:
            op = OPERATORS.get(f.op.lower().strip())
            if op is None:
                raise UserError(f"unknown filter operator {f.op!r} (one of {', '.join(OPERATORS)})")
            col = self._column(f.column)
            if op in ("IS NULL", "IS NOT NULL"):
                parts.append(f"{col} {op}")
            elif op in ("IN", "NOT IN"):
                values = list(f.value)
                if not values:
                    parts.append("FALSE" if op == "IN" else "TRUE")
                    continue
                parts.append(f"{col} {op} ({', '.join('?' for _ in values)})")
                params.extend(values)
            elif op == "BETWEEN":
                lo, hi = f.value
                parts.append(f"{col} BETWEEN ? AND ?")
                params.extend([lo, hi])
            else:
                parts.append(f"{col} {op} ?")
                params.append(f.value)
        return (" AND ".join(parts) if parts else "TRUE"), params

    def select(self, columns: Sequence[str], filters: Iterable[Filter] = ()) -> dict[str, Any]:
        """Columns of the filtered cohort as numpy arrays (by name)."""
        cols = ", ".join(self._column(c) for c in columns)
        clause, params = self.where(filters)
        result = self.con.execute(f"SELECT {cols} FROM cohort WHERE {clause}", params)
        return {name: array for name, array in zip(columns, _fetch_numpy(result, columns))}

    def frame(self, filters: Iterable[Filter] = (), columns: Sequence[str] | None = None):
        """The filtered cohort as pandas, through Arrow (about twice as fast as ``.df()`` on
        the snapshot's text columns; missing text is None, missing numbers NaN)."""
        cols = ", ".join(self._column(c) for c in columns) if columns else "*"
        clause, params = self.where(filters)
        return self.con.sql(f"SELECT {cols} FROM cohort WHERE {clause}", params=params).to_arrow_table().to_pandas()

    def positions(self, filters: Iterable[Filter] = ()) -> np.ndarray:
        """The 0-based file positions of the snapshot rows the filters keep, ascending (the
        rows of the Parquet file itself: columns joined by :meth:`attach` are not seen)."""
        clause, params = self.where(filters)
        result = self.con.execute(f"SELECT __row FROM cohort_rows WHERE {clause} ORDER BY __row", params)
        import numpy as np

        return np.asarray(result.fetchnumpy()["__row"], dtype=np.int64)

    def attach(self, name: str, parquet: str | Path, *, on: str = "study_id") -> list[str]:
        """Join a Parquet output (slide features, signature scores...) to the cohort in place:
        the view ``cohort`` becomes the left join on ``on``; returns the added columns."""
        if not name.isidentifier():
            raise UserError(f"view name {name!r} is not an identifier")
        key = self._column(on)
        self.con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM read_parquet({sql_literal(parquet)})')
        theirs = [r[0] for r in self.con.execute(f'DESCRIBE "{name}"').fetchall()]
        if on not in theirs:
            raise UserError(f"{parquet}: has no column {on!r} to join on")
        added = [c for c in theirs if c != on and c not in self.columns]
        cols = ", ".join(f'"{name}"."{c}"' for c in added)
        base = self.con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'cohort'").fetchone()[0]
        inner = base.split(" AS ", 1)[1].rstrip(";")
        self.con.execute(f"CREATE OR REPLACE VIEW cohort AS SELECT base.*{', ' + cols if cols else ''} "
                         f'FROM ({inner}) AS base LEFT JOIN "{name}" ON base.{key} = "{name}".{key}')
        self.columns = [r[0] for r in self.con.execute("DESCRIBE cohort").fetchall()]
        return added

    def survival(self, time: str, event: str, group: str | None = None,
                 filters: Iterable[Filter] = ()):
        """Filter, then Kaplan-Meier per group and the log-rank test (interactive path):
        a :class:`~pathomics_desktop.stats.km.KaplanMeierComparison` (``curves`` by group
        value as text, ``logrank`` None for one group or no events)."""
        from pathomics_desktop.stats.km import km_comparison

        filters = list(filters) + [Filter(time, "is not null"), Filter(event, "is not null")]
        if group:
            filters.append(Filter(group, "is not null"))
        data = self.select([time, event] + ([group] if group else []), filters)
        t = data[time].astype(float)
        e = data[event].astype(float)
        if t.size == 0:
            raise UserError("no patients match the filters")
        return km_comparison(t, e, data[group].astype(str).tolist() if group else None)

    def close(self) -> None:
        self.con.close()


def _fetch_numpy(result, columns: Sequence[str]):
    arrays = result.fetchnumpy()
    out = []
    for name in columns:
        values = arrays[name]
        if hasattr(values, "filled"):  # masked arrays for NULLs
            values = values.filled(float("nan")) if values.dtype.kind == "f" else values.data
        out.append(values)
    return out
