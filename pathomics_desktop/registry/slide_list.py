"""Rows of the slide catalogue and of the QC queue, and the QC preview (Qt-free).

:func:`slide_rows` joins the registry's slides with their patient, the cached thumbnail
(``<project>/thumbnails/<slide_id>.png``, written by :func:`registry.slides.add_slides`) and
the tile count of the slide's tile index (``<project>/tiles/<slide_id>.parquet``, read from
the Parquet footer, not the data). :func:`mpp_warning` says why a slide's MPP needs a look.
:func:`tissue_preview` computes the low-resolution tissue mask of one slide with
:func:`pathomics_desktop.slides.tissue.compute_tissue_mask` (the same function tiling uses)
for the QC queue.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pathomics_desktop.registry.models import Patient, Slide

QC_STATUSES = ("pending", "ok", "excluded", "failed")
#: QC queue order: what needs a decision first
QC_ORDER = {"pending": 0, "failed": 1, "excluded": 2, "ok": 3}
#: longest side (px) of the QC preview mask
PREVIEW_SIZE = 512


@dataclass
class SlideRow:
    """One slide as the catalogue shows it (plain data)."""

    slide_id: int
    study_id: str | None
    file_name: str
    scanner: str | None
    vendor: str | None
    mpp: float | None          # what later steps use (override, else scanner's when not flagged), um/px
    mpp_scanner: float | None  # the scanner's MPP (x), um/px
    mpp_override: float | None
    mpp_flag: str | None
    mpp_warning: str | None
    width: int | None
    height: int | None
    qc_status: str
    qc_reason: str | None
    tile_count: int | None     # None: not tiled yet
    thumbnail: str | None      # path of the cached thumbnail PNG
    synthetic: bool

    @property
    def size_text(self) -> str:
        return f"{self.width} x {self.height}" if self.width and self.height else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mpp_warning(slide: Slide) -> str | None:
    """Why the slide's pixel size needs attention, or None.

    Missing or flagged scanner MPP without an override blocks tiling; an override is shown
    as such (the scanner's value is not used).
    """
    if slide.mpp_override is not None:
        scanner = f"{slide.mpp_x:g}" if slide.mpp_x is not None else "none"
        note = f"; scanner flag: {slide.mpp_flag}" if slide.mpp_flag else ""
        return f"MPP overridden: {slide.mpp_override:g} um/px is used (scanner: {scanner}{note})"
    if slide.mpp_flag:
        return f"MPP {slide.mpp_flag}; set an MPP override before tiling"
    if slide.mpp_x is None and slide.sha256 is not None:
        return "MPP missing; set an MPP override before tiling"
    return None


def tile_count(index_path: Path) -> int | None:
    """Rows of a finished tile index (Parquet footer), None when there is none."""
    if not index_path.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(index_path).metadata.num_rows)
    except Exception:  # an unreadable index counts as "not tiled"
        return None


def slide_rows(registry, project) -> list[SlideRow]:
    """Every registered slide, by id."""
    from pathomics_desktop.registry.slides import effective_mpp
    from pathomics_desktop.slides.jobs import tile_index_path

    thumbs = project.root / "thumbnails"
    with registry.session() as session:
        records = session.execute(select(Slide, Patient.study_id).outerjoin(Patient).order_by(Slide.id)).all()
        rows = []
        for s, study_id in records:
            thumb = thumbs / f"{s.id}.png"
            rows.append(SlideRow(
                slide_id=s.id, study_id=study_id, file_name=Path(s.path).name, scanner=s.scanner, vendor=s.vendor,
                mpp=effective_mpp(s), mpp_scanner=s.mpp_x, mpp_override=s.mpp_override, mpp_flag=s.mpp_flag,
                mpp_warning=mpp_warning(s), width=s.width, height=s.height, qc_status=s.qc_status,
                qc_reason=s.qc_reason, tile_count=tile_count(tile_index_path(project, s.id)),
                thumbnail=str(thumb) if thumb.is_file() else None, synthetic=bool(s.synthetic)))
    return rows


def qc_queue(rows: list[SlideRow]) -> list[SlideRow]:
    """The QC queue order: pending first, then failed, excluded, accepted; by id within."""
    return sorted(rows, key=lambda r: (QC_ORDER.get(r.qc_status, 9), r.slide_id))


def count_by_status(rows: list[SlideRow]) -> dict[str, int]:
    """``{QC status: slides}`` for every status (zeros included)."""
    counts = Counter(r.qc_status for r in rows)
    return {s: counts.get(s, 0) for s in QC_STATUSES}


@dataclass
class TissuePreview:
    """A slide's low-resolution RGB image and its tissue mask, on the same grid."""

    slide_id: int
    rgb: Any            # uint8 (h, w, 3)
    mask: Any           # bool (h, w)
    downsample: float   # level-0 pixels per preview pixel
    tissue_fraction: float
    otsu_threshold: float


def tissue_preview(registry, slide_id: int, *, size: int = PREVIEW_SIZE) -> TissuePreview:
    """The tissue mask of a registered slide at about ``size`` pixels on its longest side.

    The mask is :func:`compute_tissue_mask` with the tiling defaults
    (:class:`TissueMaskParams`) except ``mask_downsample = max(1, longest side / size)``;
    areas in the parameters are in level-0 pixels, so the result is the tiling mask at
    another resolution. The RGB image is read from the same pyramid level.
    """
    import cv2
    import numpy as np

    from pathomics_desktop.errors import UserError
    from pathomics_desktop.registry.slides import get_slide
    from pathomics_desktop.slides.reader import open_slide
    from pathomics_desktop.slides.tissue import TissueMaskParams, compute_tissue_mask

    with registry.session() as session:
        slide = get_slide(session, slide_id)
        path = slide.path
    if not Path(path).is_file():
        raise UserError(f"slide {slide_id}: file {path} not found; add it again from its new place")
    handle = open_slide(path)
    try:
        w0, h0 = handle.dimensions
        downsample = max(1.0, max(w0, h0) / float(size))
        result = compute_tissue_mask(handle, TissueMaskParams(mask_downsample=downsample), name=path)
        mh, mw = result.mask.shape
        thumb = np.asarray(handle.get_thumbnail((mw, mh)).convert("RGB"))
    finally:
        handle.close()
    rgb = cv2.resize(np.ascontiguousarray(thumb), (mw, mh), interpolation=cv2.INTER_AREA)
    return TissuePreview(slide_id, rgb, result.mask, downsample, result.tissue_fraction, result.otsu_threshold)


def first_slide_of_patient(registry, study_id: str) -> int | None:
    """The id of the patient's first slide (by id) that is not excluded, else of any slide;
    ``None`` when the patient has none (the analysis views' "open the slide")."""
    with registry.session() as session:
        rows = session.execute(select(Slide.id, Slide.qc_status).join(Patient, Slide.patient_id == Patient.id)
                               .where(Patient.study_id == study_id).order_by(Slide.id)).all()
    usable = [sid for sid, status in rows if status != "excluded"]
    return (usable or [sid for sid, _ in rows] or [None])[0]
