"""Registry-backed slide work as jobs: tiling every registered slide of a project.

Tile indexes go to ``<project>/tiles/<slide_id>.parquet`` (keyed by slide id, so two files with
the same name never collide); ROIs are taken from ``<project>/rois/<slide_id>.geojson`` when
present (``pathomics slides roi``), tiling only the classes of the project setting
``[slides] roi_classes`` minus ``Ignore*`` and ``[slides] exclude_classes`` (the job
parameters ``roi_classes`` / ``exclude_classes`` override them). Each slide's result feeds
the registry: QC ``ok``, ``excluded`` (insufficient tissue) or ``failed`` with the reason,
and its Macenko stain vectors. A slide that fails does so alone; re-running skips finished
slides and resumes an interrupted one. A slide excluded by hand stays excluded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.models import Patient, Slide


def roi_path_for(project, slide_id: int) -> Path:
    return project.root / "rois" / f"{slide_id}.geojson"


def tile_index_path(project, slide_id: int) -> Path:
    return project.root / "tiles" / f"{slide_id}.parquet"


def _class_list(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserError(f"{where}: expected a list of QuPath class names (glob patterns), got {value!r}")
    return tuple(v.strip() for v in value)


def roi_class_settings(project, params: dict[str, Any] | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(roi_classes, exclude_classes)``: job parameters, else the project setting
    ``[slides] roi_classes`` / ``exclude_classes`` (validated)."""
    from pathomics_desktop.slides.roi import DEFAULT_ROI_CLASSES

    params = params or {}
    settings = project.settings.get("slides", {})
    where = f"{project.settings_path} [slides]"
    classes = (_class_list(params["roi_classes"], "--roi-class") if params.get("roi_classes")
               else _class_list(settings.get("roi_classes", list(DEFAULT_ROI_CLASSES)), f"{where} roi_classes"))
    if not classes:
        raise UserError(f"{where} roi_classes: empty; name at least one QuPath class to tile (e.g. \"Tumor\")")
    excludes = (_class_list(params["exclude_classes"], "--exclude-class") if params.get("exclude_classes")
                else _class_list(settings.get("exclude_classes", []), f"{where} exclude_classes"))
    return classes, excludes


def tiling_params(project, params: dict[str, Any]):
    from pathomics_desktop.slides.tiling import TilingParams

    settings = project.settings.get("tiling", {})
    roi_classes, exclude_classes = roi_class_settings(project, params)
    return TilingParams(
        tile_size=int(params.get("tile_size", settings.get("tile_size", 512))),
        target_mpp=float(params.get("target_mpp", settings.get("target_mpp", 0.5))),
        tissue_threshold=float(params.get("tissue_threshold", settings.get("tissue_threshold", 0.5))),
        roi_threshold=float(params.get("roi_threshold", 0.5)),
        workers=int(params.get("workers", 0)),
        roi_classes=roi_classes,
        exclude_classes=exclude_classes,
    )


def slides_to_tile(registry, slide_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Registered slides that can be tiled (not failed at registration), with their MPP."""
    from pathomics_desktop.jobs.sites import local_path  # the worker's site path map
    from pathomics_desktop.registry.slides import effective_mpp

    with registry.session() as session:
        query = select(Slide, Patient.study_id).outerjoin(Patient).order_by(Slide.id)
        if slide_ids:
            query = query.where(Slide.id.in_(slide_ids))
        rows = []
        for slide, study_id in session.execute(query):
            if slide.qc_status == "failed" and slide.sha256 is None:
                continue  # never read: fix the file and `pathomics slides add` it again
            rows.append({"id": slide.id, "path": local_path(slide.path), "study_id": study_id,
                         "mpp": effective_mpp(slide), "mpp_flag": slide.mpp_flag,
                         "mpp_override": slide.mpp_override})
        return rows


def tiling_job(project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Job ``tiling``: tile the project's registered slides (``params["slide_ids"]`` or all)."""
    from pathomics_desktop.jobs.core import Cancelled
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.slides.roi import selection_summary
    from pathomics_desktop.slides.tiling import NoTissueError, tile_slide

    tparams = tiling_params(project, params)
    registry = open_project_registry(project)
    counts = {"ok": 0, "excluded": 0, "failed": 0}
    failures: list[str] = []
    roi_used: dict[int, dict] = {}  # slide id -> RoiSelection.to_dict()
    try:
        todo = slides_to_tile(registry, params.get("slide_ids"))
        for i, row in enumerate(todo):
            ctx.check_cancelled()
            ctx.progress(i / max(len(todo), 1), f"tiling slide {row['id']} ({Path(row['path']).name})")
            roi = roi_path_for(project, row["id"])
            try:
                if row["mpp"] is None:
                    raise UserError(f"slide {row['path']}: no usable MPP ({row['mpp_flag']}); "
                                    "set one with `pathomics slides set-mpp`")
                def within_slide(done: int, total: int, i=i, row=row) -> None:
                    ctx.progress((i + done / max(total, 1)) / max(len(todo), 1),
                                 f"tiling slide {row['id']} ({Path(row['path']).name})")

                result = tile_slide(row["path"], project.folder("tiles"), roi_path=roi if roi.exists() else None,
                                    params=tparams, mpp_override=row["mpp_override"], progress=within_slide,
                                    cancel=lambda: ctx.cancelled, index_path=tile_index_path(project, row["id"]))
                if ctx.cancelled and not result.ok:
                    ctx.check_cancelled()
                qc, reason, stain = (*result.qc, result.stain)
                if result.roi_selection is not None:
                    roi_used[row["id"]] = result.roi_selection
                    ctx.log(f"slide {row['id']}: ROI {selection_summary(result.roi_selection)}")
                if result.ok:
                    ctx.log(f"slide {row['id']}: {result.n_tiles} tiles ({result.status})")
            except NoTissueError as exc:
                qc, reason, stain = "excluded", f"insufficient tissue: {exc}", None
            except Cancelled:
                raise
            except Exception as exc:  # this slide fails alone; the batch goes on
                qc, reason, stain = "failed", str(exc), None
            if ctx.cancelled:
                ctx.check_cancelled()
            counts[qc] += 1
            if qc != "ok":
                failures.append(f"slide {row['id']} ({row['path']}): {reason}")
                ctx.log(failures[-1])
            with registry.session(reason="slide QC from tiling") as session:
                slide = session.get(Slide, row["id"])
                if (slide.qc_status, slide.qc_reason) != (qc, reason or None) and slide.qc_status != "excluded":
                    slide.qc_status, slide.qc_reason = qc, reason or None
                if stain is not None:
                    slide.stain_vectors = stain
    finally:
        registry.dispose()
    ctx.progress(1.0, f"{counts['ok']} slides tiled, {counts['excluded']} excluded, {counts['failed']} failed")
    return {"counts": counts, "failures": failures, "tiles": str(project.root / "tiles"),
            "roi_classes": list(tparams.roi_classes), "exclude_classes": list(tparams.exclude_classes),
            "rois": {str(k): v for k, v in roi_used.items()}}


def import_roi(registry, project, slide_ref, geojson: str | Path):
    """Validate a QuPath GeoJSON against a registered slide and store it (all classes, as
    given) as its ROI; returns ``(stored path, RoiSelection)`` under the project's classes.

    A file with no annotation to tile under the project's classes is refused (UserError
    naming the file and the classes found)."""
    import shutil

    from pathomics_desktop.registry.slides import get_slide
    from pathomics_desktop.slides.roi import load_roi_selection

    with registry.session() as session:
        slide = get_slide(session, slide_ref)
        slide_id, size = slide.id, (slide.width, slide.height)
    roi_classes, exclude_classes = roi_class_settings(project)
    selection = load_roi_selection(geojson, slide_size=size if size[0] else None,
                                   roi_classes=roi_classes, exclude_classes=exclude_classes)
    target = roi_path_for(project, slide_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(geojson, tmp)
    tmp.replace(target)
    return target, selection
