"""Loading an analysis table for the statistics commands, and printing their results.

``load_analysis_table`` reads a CSV/TSV, XLSX or Parquet file (chosen by extension) or the
project's cohort snapshot (``registry:``), keeps the requested columns, drops rows with a
missing value in any of them (returning how many) and normalises event columns to 0/1.
``emit`` prints a result object's ``to_dict()`` as plain JSON (NaN/inf -> null), or its
``summary()`` as readable text tables.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

from pathomics_desktop.errors import UserError

REGISTRY_PREFIX = "registry:"


def _read_file(path: str):
    import pandas as pd

    if not os.path.exists(path):
        raise UserError(f"data file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".csv", ".txt"):
            return pd.read_csv(path)
        if ext == ".tsv":
            return pd.read_csv(path, sep="\t")
        if ext in (".xlsx", ".xlsm", ".xls"):
            return pd.read_excel(path)
        if ext in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except UserError:
        raise
    except Exception as exc:  # a corrupt or unreadable file is the user's input
        raise UserError(f"cannot read {path!r}: {exc}") from exc
    raise UserError(f"{path!r}: unsupported file type {ext or '(none)'}; use .csv, .tsv, "
                    ".xlsx or .parquet")


def _read_registry(project_dir: str | None, *, everyone: bool = False):
    """The project's cohort snapshot: the included patients (the analysis cohort of the
    flow), or every enrolled patient with ``everyone``."""
    try:
        from pathomics_desktop.analytics.snapshot import cohort_frame
    except ImportError as exc:
        raise UserError("the registry cohort snapshot is not available in this installation "
                        f"({exc}); export the cohort to a CSV file instead") from exc
    frame = cohort_frame(project_dir)
    return frame if everyone else frame[frame["included"]].reset_index(drop=True)


def _event_to_01(series, column: str, source: str, event_value: str | None):
    import numpy as np

    from pathomics_desktop.stats.levels import level_label

    if event_value is not None:
        labels = [level_label(v) for v in series.tolist()]
        return np.array([1 if lbl == str(event_value) else 0 for lbl in labels], dtype=np.int64)
    values = series.tolist()
    out = []
    for pos, v in enumerate(values):
        if isinstance(v, bool):
            out.append(int(v))
            continue
        try:
            num = float(v)
        except (TypeError, ValueError):
            num = math.nan
        if num not in (0.0, 1.0):
            row = int(series.index[pos]) + 2  # header line + 1-based
            raise UserError(f"{source}: event column {column!r} must hold 0/1 (row {row} has "
                            f"{v!r}); use --event-value to name the event code")
        out.append(int(num))
    return np.asarray(out, dtype=np.int64)


def load_analysis_table(data: str, columns: Sequence[str], *, event_columns: Sequence[str] = (),
                        event_value: str | None = None, project_dir: str | None = None,
                        time_columns: Sequence[str] = (),
                        required: Sequence[str] | None = None) -> tuple[Any, int]:
    """Return (frame with only ``columns`` and complete rows, number of rows dropped).

    ``data`` is a file path (.csv/.tsv/.xlsx/.parquet) or ``registry:`` (the project's
    cohort snapshot from ``pathomics_desktop.analytics.snapshot.cohort_frame``: the included
    patients; ``registry:all`` for every enrolled patient). Event
    columns become 0/1: either they hold 0/1 already, or ``event_value`` names the event
    code (event = value written as text == event_value). ``time_columns`` must be numeric
    and >= 0. ``required`` (default: all columns) are the columns whose missing values drop
    a row; missing values elsewhere are kept (Table 1 counts them, subgroups skip them).
    Errors name the column, the file and (for bad values) the file row.
    """
    import pandas as pd

    if data.startswith(REGISTRY_PREFIX):
        rest = data[len(REGISTRY_PREFIX):]
        everyone = rest == "all"
        frame = _read_registry(project_dir or (None if everyone else rest) or None, everyone=everyone)
        source = "registry cohort snapshot"
    else:
        frame = _read_file(data)
        source = data
    wanted = list(dict.fromkeys(c for c in columns if c))
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        available = ", ".join(map(str, list(frame.columns)[:30]))
        raise UserError(f"{source}: column {missing[0]!r} not found (columns: {available})")
    frame = frame[wanted].copy()
    frame.index = pd.RangeIndex(len(frame))  # file row = index + 2 for a CSV with a header
    for col in time_columns:
        if col not in frame.columns:
            continue
        numeric = pd.to_numeric(frame[col], errors="coerce")
        bad = numeric.isna() & frame[col].notna()
        if bad.any():
            pos = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(f"{source}: time column {col!r} is not numeric at row {pos + 2} "
                            f"({frame[col].iloc[pos]!r})")
        negative = numeric < 0
        if negative.any():
            pos = int(negative.to_numpy().nonzero()[0][0])
            raise UserError(f"{source}: time column {col!r} is negative at row {pos + 2}")
        frame[col] = numeric
    needed = wanted if required is None else [c for c in required if c in frame.columns]
    complete = frame[needed].notna().all(axis=1)
    dropped = int((~complete).sum())
    frame = frame[complete]
    for col in event_columns:
        if col in frame.columns:
            frame[col] = _event_to_01(frame[col], col, source, event_value)
    frame = frame.reset_index(drop=True)
    return frame, dropped


# --------------------------------------------------------------------------------------
# printing
# --------------------------------------------------------------------------------------


def clean_json(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if np is not None:
        if isinstance(value, np.ndarray):
            return [clean_json(v) for v in value.tolist()]
        if isinstance(value, np.generic):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt_cell(v)}" for k, v in value.items())
    return str(value)


def format_rows(rows: list[dict]) -> str:
    """Aligned text table of a list of flat dicts (nested dicts are flattened)."""
    if not rows:
        return "(none)"
    flat = []
    for r in rows:
        f = {}
        for k, v in r.items():
            if isinstance(v, dict) and all(not isinstance(x, (dict, list)) for x in v.values()):
                for kk, vv in v.items():
                    f[f"{kk}"] = vv
            elif isinstance(v, list):
                continue
            else:
                f[k] = v
        flat.append(f)
    keys = list(dict.fromkeys(k for f in flat for k in f))
    cells = [[_fmt_cell(f.get(k)) for k in keys] for f in flat]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def format_text(result: dict, indent: str = "") -> str:
    """Readable text of a result dict: scalars as ``key: value``, row lists as tables."""
    out = []
    for key, value in result.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(f"{indent}{key}:")
            out.append("\n".join(indent + "  " + line for line in format_rows(value).splitlines()))
            nested = [(r, k, v) for r in value for k, v in r.items()
                      if isinstance(v, list) and v and isinstance(v[0], dict)]
            for r, k, v in nested:
                label = r.get("group", r.get("variable", ""))
                out.append(f"{indent}  {k} ({label}):")
                out.append("\n".join(indent + "    " + line for line in format_rows(v).splitlines()))
        elif isinstance(value, dict):
            if value and all(isinstance(v, dict) for v in value.values()):
                rows = [{"name": k, **v} for k, v in value.items()]
                out.append(f"{indent}{key}:")
                out.append("\n".join(indent + "  " + line for line in format_rows(rows).splitlines()))
            else:
                out.append(f"{indent}{key}: {_fmt_cell(value)}")
        else:
            out.append(f"{indent}{key}: {_fmt_cell(value)}")
    return "\n".join(out)


def emit(result, args) -> int:
    """Print a result as JSON (``args.json``) or text; returns exit status 0.

    ``result`` is a :class:`pathomics_desktop.stats.results.StatResult` (JSON: its
    ``to_dict()``, text: its ``summary()``) or a plain dict. Text mode appends ``args.notes``
    lines if present (e.g. how many rows were dropped).
    """
    data = result.to_dict() if hasattr(result, "to_dict") else result
    if getattr(args, "json", False):
        print(json.dumps(clean_json(data), allow_nan=False))
    else:
        print(result.summary() if hasattr(result, "summary") else format_text(clean_json(data)))
        for note in getattr(args, "notes", []) or []:
            print(f"note: {note}")
    return 0
