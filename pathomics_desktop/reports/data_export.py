"""De-identified data exports of the cohort snapshot: CSV, XLSX, Parquet, SPSS ``.sav``, Stata ``.dta``.

``pathomics export cohort --out FILE [--format F] [--shift-dates [--seed N]] [--included-only]``.

* **What**: the cohort snapshot (:func:`pathomics_desktop.analytics.snapshot.refresh_snapshot`),
  one row per patient: the study id (a pseudonym), derived endpoints, stage, data set, scores
  and every non-identifier codebook variable. It never holds identifiers: before anything is
  written, the identifier columns of the project's codebook
  (:func:`pathomics_desktop.registry.patient_list.identifier_columns`: name, record number,
  birth date, and any user variable marked ``identifier``) are checked to be absent, and the
  export stops with an error otherwise.
* **Labels** (SPSS, Stata, and the XLSX "variables" sheet): each column's variable label is
  its codebook label with the unit ("Age at surgery (years)"); categories are stored as
  integer codes with value labels: codebook categories 1..k in codebook order, yes/no and
  true/false as 0 = no, 1 = yes, the data set, stage and exclusion reason in the study's
  order. Dates are dates (SPSS ``DATE11``, Stata ``%td``); a missing text value is an empty
  string (neither format has missing text). CSV and XLSX keep the category text.
* **Date shifting** (``--shift-dates``): every date of a patient (surgery, CA19-9, chemotherapy
  start, recurrence, death, last follow-up, and any other date column) moves by the same
  offset of -180..-1 or +1..+180 days, so every interval between a patient's dates (surgery to
  death, to recurrence, ...) and the derived OS/RFS stay exactly as they are while calendar
  dates no longer match the records. The offset of a patient is drawn from a NumPy PCG64
  generator seeded with ``(seed, first 8 bytes of SHA-256(study id))``: the same seed gives
  every patient the same offset in every export (exports stay linkable with each other),
  another seed other offsets. Without ``--seed`` the seed is random and not recorded. The
  offsets and the seed are never written to the export.
* Every file is written atomically (a temporary file renamed over the target).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import atomic_path

DATA_FORMATS = {".csv": "comma-separated text", ".xlsx": "Excel workbook (data + variables sheet)",
                ".parquet": "Apache Parquet", ".sav": "SPSS (labelled)", ".dta": "Stata 15 (labelled)"}
MAX_SHIFT_DAYS = 180
#: derived snapshot columns stored as coded categories, with the study's level order
CODED_DERIVED: dict[str, tuple[str, ...]] = {
    "center": (), "center_role": ("development", "external"),
    "split": ("training", "internal", "external"),
    "exclusion_reason": ("neoadjuvant therapy", "concurrent malignancy", "insufficient tissue",
                         "lost to follow-up within 30 days", "incomplete required data"),
    "tnm_stage": ("IA", "IB", "IIA", "IIB", "III", "IV"), "tnm_group": ("I", "II", "III", "IV"),
    # codebook categories once `signature apply` has added them; before, all empty
    "pathomics_os_group": ("low", "high"), "pathomics_rfs_group": ("low", "high"),
}
YES_NO = {0: "no", 1: "yes"}
STATA_NAME_MAX = 32
STATA_LABEL_MAX = 80


@dataclass
class DataExport:
    """What an export wrote (for the CLI's message and, later, the ledger)."""

    path: Path
    format: str
    rows: int
    columns: list[str]
    snapshot_id: str = ""
    shifted_columns: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# checks, labels, codes
# --------------------------------------------------------------------------------------


def data_format(out: str | os.PathLike, fmt: str | None = None) -> tuple[Path, str]:
    """(path, ".ext"): ``fmt`` (csv, xlsx, parquet, sav, dta) or the extension of ``out``; an
    ``out`` without extension gets ``fmt``'s; a clash or an unknown format is a UserError."""
    path = Path(out)
    suffix = path.suffix.lower()
    listed = ", ".join(f"{k[1:]} ({v})" for k, v in DATA_FORMATS.items())
    if fmt:
        want = "." + fmt.lower().lstrip(".")
        if want not in DATA_FORMATS:
            raise UserError(f"--format {fmt}: unknown data format; one of {listed}")
        if not suffix:
            return path.with_suffix(want), want
        if suffix != want:
            raise UserError(f"{path}: the extension {suffix} does not match --format {fmt}")
        return path, want
    if suffix not in DATA_FORMATS:
        raise UserError(f"{path}: unknown data format {suffix or '(no extension)'!r}; "
                        f"choose by the extension or --format: {listed}")
    return path, suffix


def check_no_identifiers(frame, book) -> None:
    """Stop unless the frame is free of the codebook's identifier columns."""
    from pathomics_desktop.registry.patient_list import identifier_columns

    found = sorted(identifier_columns(book) & set(frame.columns))
    if found:
        raise UserError(f"refusing a de-identified export: the data hold identifier column(s) "
                        f"{', '.join(found)}")


def variable_label(column: str, book) -> str:
    """The codebook label with its unit, or the derived column's label."""
    from pathomics_desktop.registry.patient_list import column_label

    return column_label(column, book)


def _is_missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def value_labels(frame, book) -> dict[str, dict[int, str]]:
    """Column -> {code: label} for every categorical column (see the module docstring)."""
    from pathomics_desktop.stats.levels import level_label, sorted_levels

    out: dict[str, dict[int, str]] = {}
    for column in frame.columns:
        series = frame[column]
        var = book[column] if column in book else None
        if str(series.dtype) == "bool" or (var is not None and var.type == "yesno"):
            out[column] = dict(YES_NO)
            continue
        if var is not None and var.type == "category":
            order: Sequence[str] = [str(c) for c in var.codes]
        elif column in CODED_DERIVED:
            order = CODED_DERIVED[column]
        else:
            continue
        present = [level_label(v) for v in series.tolist() if not _is_missing(v)]
        levels = [c for c in order if c in present] if var is None else list(order)
        levels += [v for v in sorted_levels(present) if v not in levels]
        out[column] = {i + 1: level for i, level in enumerate(levels)}
    return out


def _coded(series, labels: Mapping[int, str]):
    """Category text (or bool) -> float codes (NaN where missing)."""
    from pathomics_desktop.stats.levels import level_label

    code_of = {label: code for code, label in labels.items()}
    if labels == YES_NO:
        code_of.update({"True": 1, "False": 0})
    values = []
    for v in series.tolist():
        if _is_missing(v):
            values.append(np.nan)
        elif isinstance(v, (bool, np.bool_)):
            values.append(float(bool(v)))
        else:
            values.append(float(code_of[level_label(v)]))
    return np.asarray(values, dtype=float)


def date_columns(frame, book) -> list[str]:
    """Columns holding dates: datetime columns and the codebook's date variables."""
    out = []
    for column in frame.columns:
        if str(frame[column].dtype).startswith("datetime64") or (column in book and book[column].type == "date"):
            out.append(column)
    return out


# --------------------------------------------------------------------------------------
# date shifting
# --------------------------------------------------------------------------------------


def patient_offset(study_id: str, seed: int) -> int:
    """Days a patient's dates move: -180..-1 or 1..180, from PCG64 seeded with
    ``(seed, SHA-256(study_id)[:8] as an integer)`` (uniform over the 360 values)."""
    key = int.from_bytes(hashlib.sha256(str(study_id).encode("utf-8")).digest()[:8], "big")
    draw = int(np.random.default_rng([int(seed) & (2**64 - 1), key]).integers(0, 2 * MAX_SHIFT_DAYS))
    return draw - MAX_SHIFT_DAYS if draw < MAX_SHIFT_DAYS else draw - MAX_SHIFT_DAYS + 1


def date_offsets(study_ids: Sequence[str], seed: int) -> dict[str, int]:
    return {sid: patient_offset(sid, seed) for sid in study_ids}


def shift_dates(frame, columns: Sequence[str], seed: int, *, id_column: str = "study_id"):
    """A copy of ``frame`` with every date of a patient moved by the patient's offset."""
    import pandas as pd

    if id_column not in frame.columns:
        raise UserError(f"date shifting needs the patient key column {id_column!r}")
    offsets = date_offsets(frame[id_column].astype(str).tolist(), seed)
    delta = pd.to_timedelta(frame[id_column].astype(str).map(offsets).to_numpy(), unit="D")
    out = frame.copy()
    for column in columns:
        out[column] = pd.to_datetime(out[column]) + delta
    return out


# --------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------


def _as_dates(series):
    """datetime64 -> ``datetime.date`` objects (None where missing), as pyreadstat writes dates."""
    import pandas as pd

    values = pd.to_datetime(series)
    return pd.Series([None if pd.isna(v) else v.date() for v in values], index=series.index, dtype=object)


def _labelled_frame(frame, book, dates: Sequence[str], date_format: str):
    """(frame with coded categories and date objects, column labels, value labels, formats).

    An all-missing column cannot tell its type to pyreadstat: a date column then becomes a
    numeric column with the date format ``date_format``, any other column but text a numeric one."""
    labels = value_labels(frame, book)
    out = frame.copy()
    formats: dict[str, str] = {}
    for column, mapping in labels.items():
        out[column] = _coded(frame[column], mapping)
    for column in dates:
        if frame[column].isna().all():
            out[column] = np.full(len(frame), np.nan)
            formats[column] = date_format
        else:
            out[column] = _as_dates(frame[column])
    for column in out.columns:
        is_text = column in book and book[column].type == "text"
        if out[column].dtype == object and not is_text and out[column].isna().all():
            out[column] = np.full(len(frame), np.nan)
    column_labels = {c: variable_label(c, book) for c in frame.columns}
    return out, column_labels, {c: m for c, m in labels.items() if m}, formats


def _file_label(frame, snapshot_id: str) -> str:
    text = "Pathomics cohort snapshot" + (f" {snapshot_id}" if snapshot_id else "")
    if "synthetic" in frame.columns and frame["synthetic"].astype(bool).any():
        text = "SYNTHETIC data - " + text
    return text


def _write_sav(frame, tmp: Path, book, dates, snapshot_id: str) -> None:
    import pyreadstat

    data, column_labels, labels, formats = _labelled_frame(frame, book, dates, "DATE11")
    measure = {c: "nominal" for c in labels}
    measure.update({c: "scale" for c in data.columns
                    if c not in labels and c not in formats and data[c].dtype.kind in "fiu"})
    formats.update({c: "F8.0" for c in data.columns if c in labels or data[c].dtype.kind in "iu"})
    pyreadstat.write_sav(data, str(tmp), file_label=_file_label(frame, snapshot_id),
                         column_labels=column_labels, variable_value_labels=labels,
                         variable_measure=measure, variable_format=formats)


def _write_dta(frame, tmp: Path, book, dates, snapshot_id: str) -> None:
    import pyreadstat

    bad = [c for c in frame.columns if len(c) > STATA_NAME_MAX or not c.isidentifier()]
    if bad:
        raise UserError(f"{bad[0]!r}: not a valid Stata variable name (letters, digits, _; at most "
                        f"{STATA_NAME_MAX} characters); rename the variable or export .sav or .csv")
    data, column_labels, labels, formats = _labelled_frame(frame, book, dates, "%td")
    column_labels = {c: text[:STATA_LABEL_MAX] for c, text in column_labels.items()}
    pyreadstat.write_dta(data, str(tmp), file_label=_file_label(frame, snapshot_id)[:STATA_LABEL_MAX],
                         column_labels=column_labels, variable_value_labels=labels,
                         variable_format=formats or None)


def _write_xlsx(frame, tmp: Path, book, dates, snapshot_id: str) -> None:
    import pandas as pd

    data = frame.copy()
    for column in dates:
        data[column] = _as_dates(frame[column])
    labels = value_labels(frame, book)
    variables = pd.DataFrame({
        "variable": list(frame.columns),
        "label": [variable_label(c, book) for c in frame.columns],
        "type": [book[c].type if c in book else str(frame[c].dtype) for c in frame.columns],
        "values": ["; ".join(labels[c].values()) if c in labels else ""
                   for c in frame.columns],
    })
    with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        data.to_excel(writer, index=False, sheet_name="cohort")
        variables.to_excel(writer, index=False, sheet_name="variables")
        sheet = writer.sheets["cohort"]
        for index, column in enumerate(data.columns, start=1):
            if column in dates:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    cell.number_format = "yyyy-mm-dd"
        note = pd.DataFrame({"note": [_file_label(frame, snapshot_id),
                                      "De-identified: no names, record numbers or birth dates."]})
        note.to_excel(writer, index=False, sheet_name="about")


def _write_csv(frame, tmp: Path, book, dates, snapshot_id: str) -> None:
    frame.to_csv(tmp, index=False, date_format="%Y-%m-%d")


def _write_parquet(frame, tmp: Path, book, dates, snapshot_id: str) -> None:
    frame.to_parquet(tmp, index=False)


WRITERS = {".csv": _write_csv, ".xlsx": _write_xlsx, ".parquet": _write_parquet, ".sav": _write_sav,
           ".dta": _write_dta}


def write_cohort_data(frame, out: str | os.PathLike, book, *, fmt: str | None = None,
                      shift: bool = False, seed: int | None = None, snapshot_id: str = "") -> DataExport:
    """Write a de-identified patient table (checked for identifiers first; dates shifted
    with ``shift``; see the module docstring)."""
    path, suffix = data_format(out, fmt)
    check_no_identifiers(frame, book)
    dates = date_columns(frame, book)
    if shift:
        frame = shift_dates(frame, dates, secrets.randbits(63) if seed is None else seed)
    elif seed is not None:
        raise UserError("--seed is the seed of --shift-dates; give both or neither")
    with atomic_path(path) as tmp:
        WRITERS[suffix](frame, tmp, book, dates, snapshot_id)
    return DataExport(path, suffix[1:], len(frame), list(frame.columns), snapshot_id,
                      list(dates) if shift else [])


def export_cohort_data(project, out: str | os.PathLike, *, fmt: str | None = None, included_only: bool = False,
                       shift: bool = False, seed: int | None = None) -> DataExport:
    """Export the project's (fresh) cohort snapshot, de-identified (see the module docstring);
    ``snapshot_id`` is the one the analysis views print
    (:attr:`~pathomics_desktop.analytics.cohort_filter.AnalysisSource.snapshot_id`)."""
    import pandas as pd

    from pathomics_desktop.analytics.cohort_filter import AnalysisSource

    data_format(out, fmt)  # a wrong format fails before any work
    source = AnalysisSource.open(project)
    frame = pd.read_parquet(source.parquet)
    if included_only:
        frame = frame[frame["included"].astype(bool)].reset_index(drop=True)
    return write_cohort_data(frame, out, source.codebook, fmt=fmt, shift=shift, seed=seed,
                             snapshot_id=source.snapshot_id)
