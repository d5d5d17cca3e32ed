"""The slide catalogue in the registry: registering whole-slide images to patients.

``add_slides`` takes files and folders, assigns each slide to a patient (a mapping file with
``path``/``file`` and ``study_id`` columns, or a regular expression with a ``study_id``
group matched against the file name; by default the file stem is the study id), reads the
metadata through OpenSlide, computes the SHA-256 (constant memory), caches a thumbnail, and:

* a file already registered at the same path is refreshed, not duplicated;
* a file whose SHA-256 is registered at a path that no longer exists was moved: the slide
  is relocated (its id, QC status, tiles and predictions stay);
* a file whose SHA-256 is registered at another existing path is a duplicate: reported and
  not registered twice;
* a file that cannot be read as a slide is recorded as ``failed`` with the reason; the batch
  goes on with the rest.

Missing or implausible MPP is recorded in ``mpp_flag`` and never silently assumed; a per-slide
MPP override (:func:`set_mpp_override`) is used by every later step. Slide QC
(:func:`set_slide_qc`) feeds the study's exclusion "insufficient tissue".
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import select

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.models import Patient, Slide

SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm"}


@dataclass
class SlideOutcome:
    path: str
    status: str  # added | updated | relocated | duplicate | failed | unassigned
    slide_id: int | None = None
    study_id: str | None = None
    message: str = ""


@dataclass
class AddReport:
    outcomes: list[SlideOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[SlideOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("added", "updated", "relocated", "duplicate", "unassigned", "failed")
                 if self.count(s)]
        return f"{len(self.outcomes)} slide files: " + (", ".join(parts) or "nothing to do")

    def to_dict(self) -> dict[str, Any]:
        return {"outcomes": [o.__dict__ for o in self.outcomes],
                "counts": {s: self.count(s) for s in ("added", "updated", "relocated", "duplicate",
                                                      "unassigned", "failed")}}


def expand_slide_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for slide files (sorted)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES))
        else:
            out.append(path)
    return [p.resolve() if p.exists() else p.absolute() for p in out]


def load_slide_mapping(path: str | Path) -> dict[str, str]:
    """``file name or path -> study_id`` from a CSV with columns ``path`` (or ``file``) and
    ``study_id``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or ())
            key = "path" if "path" in cols else "file" if "file" in cols else None
            if key is None or "study_id" not in cols:
                raise UserError(f"{path}: a slide mapping needs the columns 'path' (or 'file') and 'study_id'")
            mapping = {}
            for number, row in enumerate(reader, start=2):
                if not row[key] or not row["study_id"]:
                    raise UserError(f"{path}, row {number}: empty {key} or study_id")
                mapping[row[key].strip()] = row["study_id"].strip()
            return mapping
    except FileNotFoundError:
        raise UserError(f"{path}: slide mapping file not found") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 CSV file") from None


def _study_id_for(path: Path, mapping: dict[str, str] | None, pattern: re.Pattern | None) -> str | None:
    if mapping is not None:
        return mapping.get(str(path)) or mapping.get(path.name) or mapping.get(path.stem)
    if pattern is not None:
        match = pattern.search(path.name)
        return match.group("study_id") if match else None
    return path.stem


def add_slides(registry, project, paths: Iterable[str | Path], *, mapping: dict[str, str] | None = None,
               pattern: str | None = None, thumbnails: bool = True, ctx=None, user: str = "") -> AddReport:
    """Register slide files (see the module docstring); one transaction per slide."""
    from pathomics_desktop.limits import confine_to_roots
    from pathomics_desktop.slides.reader import read_slide_metadata, sha256_file, write_thumbnail

    regex = None
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise UserError(f"slide name pattern {pattern!r} is not a valid regular expression ({exc})") from None
        if "study_id" not in regex.groupindex:
            raise UserError(f"slide name pattern {pattern!r} needs a named group (?P<study_id>...)")
    files = expand_slide_paths(paths)
    report = AddReport()
    for index, path in enumerate(files):
        if ctx is not None:
            ctx.check_cancelled()
            ctx.progress(index / max(len(files), 1), f"slide {path.name}")
        study_id = _study_id_for(path, mapping, regex)
        try:
            confine_to_roots(path, project.settings["slides"].get("roots", []))
            if not path.is_file():
                raise UserError(f"slide {path}: file not found")
            meta = read_slide_metadata(path)
            digest = sha256_file(path)
        except UserError as exc:
            report.outcomes.append(_record_failure(registry, path, study_id, str(exc), user))
            continue
        except Exception as exc:  # any reader crash: this slide fails alone
            report.outcomes.append(_record_failure(registry, path, study_id,
                                                   f"slide {path}: cannot be read ({type(exc).__name__}: {exc})", user))
            continue
        outcome = _register(registry, path, study_id, meta, digest, user)
        report.outcomes.append(outcome)
        if thumbnails and outcome.slide_id is not None and outcome.status != "duplicate":
            try:
                write_thumbnail(path, project.folder("thumbnails") / f"{outcome.slide_id}.png", max_size=512)
            except Exception as exc:  # a thumbnail is a convenience, never a failure
                outcome.message += f" (no thumbnail: {exc})"
    if ctx is not None:
        ctx.progress(1.0, report.summary())
    return report


def _patient_id(session, study_id: str | None) -> int | None:
    if not study_id:
        return None
    return session.scalar(select(Patient.id).where(Patient.study_id == study_id))


def _record_failure(registry, path: Path, study_id: str | None, message: str, user: str) -> SlideOutcome:
    with registry.session(user=user, reason="slide registration") as session:
        slide = session.scalars(select(Slide).where(Slide.path == str(path))).first()
        if slide is None:
            slide = Slide(path=str(path))
            session.add(slide)
        slide.patient_id = _patient_id(session, study_id) or slide.patient_id
        slide.qc_status, slide.qc_reason = "failed", message
        session.flush()
        return SlideOutcome(str(path), "failed", slide.id, study_id, message)


def _register(registry, path: Path, study_id: str | None, meta, digest: str, user: str) -> SlideOutcome:
    with registry.session(user=user, reason="slide registration") as session:
        patient_id = _patient_id(session, study_id)
        same_path = session.scalars(select(Slide).where(Slide.path == str(path))).first()
        same_hash = [s for s in session.scalars(select(Slide).where(Slide.sha256 == digest)) if s is not same_path]
        status = "updated" if same_path is not None else "added"
        slide = same_path
        if slide is None and same_hash:
            moved = next((s for s in same_hash if not Path(s.path).exists()), None)
            if moved is None:
                return SlideOutcome(str(path), "duplicate", same_hash[0].id, study_id,
                                    f"same content as slide {same_hash[0].id} ({same_hash[0].path})")
            slide, status = moved, "relocated"
            slide.path = str(path)
        if slide is None:
            slide = Slide(path=str(path))
            session.add(slide)
        if patient_id is not None:
            slide.patient_id = patient_id
        slide.sha256, slide.file_size = digest, meta.file_size
        slide.vendor, slide.width, slide.height = meta.vendor, meta.width, meta.height
        slide.levels = [{"width": w, "height": h, "downsample": d}
                        for (w, h), d in zip(meta.level_dimensions, meta.level_downsamples)]
        slide.mpp_x, slide.mpp_y, slide.objective_power, slide.scanner = meta.mpp_x, meta.mpp_y, meta.objective_power, meta.scanner
        slide.mpp_flag = None if meta.mpp_status == "ok" else f"{meta.mpp_status}: {meta.mpp_message}"
        slide.synthetic = "SYNTHETIC" in (meta.properties.get("openslide.comment", "") or "").upper()
        if slide.qc_status == "failed":
            slide.qc_status, slide.qc_reason = "pending", None
        session.flush()
        message = slide.mpp_flag or ""
        if patient_id is None:
            status_out = "unassigned" if status == "added" else status
            message = (message + "; " if message else "") + (
                f"no patient {study_id!r} in the registry" if study_id else "no patient matched")
            return SlideOutcome(str(path), status_out, slide.id, study_id, message)
        return SlideOutcome(str(path), status, slide.id, study_id, message)


def get_slide(session, ref: str | int) -> Slide:
    """A slide by id or by (file) path."""
    slide = None
    if isinstance(ref, int) or str(ref).isdigit():
        slide = session.get(Slide, int(ref))
    if slide is None:
        path = Path(str(ref)).expanduser()
        slide = session.scalars(select(Slide).where(Slide.path == str(path.resolve() if path.exists() else path))).first()
    if slide is None:
        raise UserError(f"slide {ref!r} is not registered")
    return slide


def set_mpp_override(registry, ref: str | int, mpp: float | None, *, user: str = "", reason: str | None = None) -> Slide:
    """Store (or clear with None) a per-slide MPP override in um/px."""
    from pathomics_desktop.slides.reader import MPP_RANGE

    if mpp is not None and not (MPP_RANGE[0] <= float(mpp) <= MPP_RANGE[1]):
        raise UserError(f"MPP override {mpp!r} is not a pixel size in {MPP_RANGE[0]:g}-{MPP_RANGE[1]:g} um/px")
    with registry.session(user=user, reason=reason) as session:
        slide = get_slide(session, ref)
        slide.mpp_override = None if mpp is None else float(mpp)
        session.flush()
        session.expunge(slide)
        return slide


def set_slide_qc(registry, ref: str | int, status: str, reason: str | None = None, *, user: str = "") -> None:
    """Slide QC: ``ok``, or ``excluded`` with a reason (feeds "insufficient tissue")."""
    if status not in ("ok", "excluded", "pending"):
        raise UserError(f"slide QC status must be ok, excluded or pending, not {status!r}")
    if status == "excluded" and not reason:
        raise UserError("excluding a slide needs a reason")
    with registry.session(user=user, reason=reason) as session:
        slide = get_slide(session, ref)
        slide.qc_status, slide.qc_reason = status, reason


def list_slides(registry) -> list[dict[str, Any]]:
    with registry.session() as session:
        rows = session.execute(select(Slide, Patient.study_id).outerjoin(Patient).order_by(Slide.id)).all()
        return [{"id": s.id, "study_id": sid, "path": s.path, "vendor": s.vendor, "width": s.width,
                 "height": s.height, "mpp_x": s.mpp_x, "mpp_override": s.mpp_override, "mpp_flag": s.mpp_flag,
                 "qc_status": s.qc_status, "qc_reason": s.qc_reason, "sha256": s.sha256} for s, sid in rows]


def effective_mpp(slide: Slide) -> float | None:
    """The MPP later steps use: the override, else the scanner's when not flagged."""
    if slide.mpp_override is not None:
        return slide.mpp_override
    if slide.mpp_flag is None and slide.mpp_x is not None:
        return slide.mpp_x if slide.mpp_y is None else (slide.mpp_x + slide.mpp_y) / 2.0
    return None


def add_slides_job(project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Job ``slides-add``: :func:`add_slides` in the background (hashing large files takes
    time); ``params``: ``paths``, optional ``mapping`` (CSV path) or ``pattern``."""
    from pathomics_desktop.registry.service import open_project_registry

    mapping = load_slide_mapping(params["mapping"]) if params.get("mapping") else None
    registry = open_project_registry(project)
    try:
        report = add_slides(registry, project, params["paths"], mapping=mapping, pattern=params.get("pattern"),
                            thumbnails=params.get("thumbnails", True), ctx=ctx)
    finally:
        registry.dispose()
    return report.to_dict()


def slide_roi_classes(project, slide_id: int) -> dict[str, Any] | None:
    """The classes of a slide's stored ROI (``<project>/rois/<slide_id>.geojson``, every class
    kept for display) and which of them tiling uses under the project's ``[slides]``
    settings: ``RoiSelection.to_dict()`` plus ``path``; ``{"path", "error"}`` when the file
    no longer gives a region to tile; None without an ROI."""
    from pathomics_desktop.slides.jobs import roi_class_settings, roi_path_for
    from pathomics_desktop.slides.roi import load_roi_selection

    path = roi_path_for(project, slide_id)
    if not path.is_file():
        return None
    roi_classes, exclude_classes = roi_class_settings(project)
    try:
        selection = load_roi_selection(path, roi_classes=roi_classes, exclude_classes=exclude_classes)
    except UserError as exc:
        return {"path": str(path), "error": str(exc)}
    return {"path": str(path), **selection.to_dict()}
