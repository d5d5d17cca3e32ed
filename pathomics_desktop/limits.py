"""Limits on untrusted input files, checked before a file is parsed.

A spreadsheet or a GeoJSON file comes from outside the project (an export of another system,
an e-mail attachment); a hostile or broken one must not exhaust memory. Limits: spreadsheets
(CSV/TSV/XLSX) 100 MiB on disk, and an XLSX (a zip archive) 1 GiB uncompressed (the sum of
its members' declared sizes: a zip bomb is refused before it is inflated); GeoJSON ROI files
64 MiB. Slide files are confined to the project's slide roots (``[slides] roots`` in
``project.toml``; empty: anywhere), symbolic links resolved first.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterable

from pathomics_desktop.errors import UserError

MIB = 1024 * 1024
MAX_SPREADSHEET_BYTES = 100 * MIB
MAX_XLSX_UNCOMPRESSED_BYTES = 1024 * MIB
MAX_GEOJSON_BYTES = 64 * MIB


def _size(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} bytes"


def check_file_size(path: Path, limit: int, what: str) -> None:
    size = path.stat().st_size
    if size > limit:
        raise UserError(f"{path}: the {what} is {_size(size)}, over the limit of {_size(limit)} "
                        f"for a {what}; split it or check that it is the right file")


def check_xlsx_expansion(path: Path, limit: int = MAX_XLSX_UNCOMPRESSED_BYTES) -> None:
    """Refuse a workbook whose members would inflate beyond ``limit`` bytes."""
    with zipfile.ZipFile(path) as archive:
        total = sum(info.file_size for info in archive.infolist())
    if total > limit:
        raise UserError(f"{path}: the workbook would expand to {_size(total)}, over the limit of "
                        f"{_size(limit)}; it is not a normal spreadsheet (a zip bomb?)")


def confine_to_roots(path: Path, roots: Iterable[str | os.PathLike]) -> Path:
    """``path`` resolved, if it lies under one of ``roots`` (resolved); no roots: anywhere."""
    roots = [Path(r).expanduser().resolve() for r in roots if str(r).strip()]
    resolved = Path(path).expanduser().resolve()
    if roots and not any(resolved == root or root in resolved.parents for root in roots):
        raise UserError(f"slide {path}: outside the project's slide folders "
                        f"({', '.join(str(r) for r in roots)}); add its folder to [slides] roots in "
                        "project.toml or move the file there")
    return resolved
