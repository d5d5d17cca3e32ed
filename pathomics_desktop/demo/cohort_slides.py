"""SYNTHETIC slides for the demo cohort: one pyramidal Aperio-style TIFF and one QuPath
tumour ROI per patient, whose morphology follows the patient's latent aggressiveness ``z``
(:mod:`pathomics_desktop.demo.synthetic_slides`), registered in the slide catalogue.

Sizes are configurable; the defaults keep the whole demo to a few minutes on two cores.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

DEFAULT_SLIDE_SIZE = 1536
DEFAULT_MPP = 0.5
DEFAULT_APP_MAG = 20
#: tile edge (level-0 px at the target MPP) set on a project that gets demo slides: the
#: synthetic slides are a few thousand pixels wide, so 512-px tiles would hold little tumour
DEMO_TILE_SIZE = 128


def slide_seed(study_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{study_id}".encode()).digest()[:4], "big")


def add_demo_slides(project, *, size: int = DEFAULT_SLIDE_SIZE, mpp: float = DEFAULT_MPP,
                    app_mag: float = DEFAULT_APP_MAG, seed: int = 2024, limit: int | None = None,
                    study_ids=None, processes: int | None = None, ctx=None) -> dict[str, Any]:
    """Write (or reuse) a synthetic slide + ROI per patient and register them; resumable.

    Every patient of the demo cohort by default; only the first ``limit`` patients, or only
    the patients in ``study_ids``, when given."""
    import pandas as pd

    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slides
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.registry.slides import add_slides

    latent_path = project.root / "demo_data" / "synthetic_latent.parquet"
    if not latent_path.exists():
        from pathomics_desktop.errors import UserError

        raise UserError(f"{project.root}: not a demo project (no {latent_path.name}); create it with `pathomics demo`")
    latent = pd.read_parquet(latent_path)
    if study_ids is not None:
        wanted = {str(s) for s in study_ids}
        unknown = sorted(wanted - set(latent["study_id"]))
        if unknown:
            from pathomics_desktop.errors import UserError

            raise UserError(f"{latent_path}: no synthetic patient {unknown[0]!r} (of {len(unknown)} unknown study ids)")
        latent = latent[latent["study_id"].isin(wanted)]
    if limit is not None:
        latent = latent.iloc[:limit]
    if project.settings["tiling"].get("tile_size") != DEMO_TILE_SIZE:
        project.settings["tiling"]["tile_size"] = DEMO_TILE_SIZE
        project.save()
    slides_dir, rois_dir = project.folder("slides"), project.folder("rois")
    specs = []
    for row in latent.itertuples(index=False):
        path = slides_dir / f"{row.study_id}.svs"
        if path.exists():
            continue
        specs.append({"path": str(path), "roi_path": str(rois_dir / f"{row.study_id}.geojson"),
                      "width": size, "height": size, "aggressiveness": float(row.z), "center": row.center,
                      "seed": slide_seed(row.study_id, seed), "mpp": mpp, "app_mag": app_mag})
    batch = 32
    for start in range(0, len(specs), batch):
        if ctx is not None:
            ctx.check_cancelled()
            ctx.progress(0.8 * start / max(len(specs), 1), f"writing synthetic slides {start}/{len(specs)}")
        write_synthetic_slides(specs[start:start + batch], processes=processes)
    registry = open_project_registry(project)
    try:
        paths = [slides_dir / f"{sid}.svs" for sid in latent["study_id"]]
        report = add_slides(registry, project, paths, thumbnails=True, user="demo")
        attach_demo_rois(registry, project, report, rois_dir)
    finally:
        registry.dispose()
    if ctx is not None:
        ctx.progress(1.0, report.summary())
    return {"written": len(specs), "registered": report.to_dict()["counts"], "slides": str(slides_dir),
            "rois": str(rois_dir)}


def attach_demo_rois(registry, project, report, rois_dir: Path) -> int:
    """Attach each synthetic slide's tumour ROI (``rois/<study_id>.geojson``, as drawn by the
    generator) to its registered slide through the registry's ROI import, the same path as
    ``pathomics slides roi``, so tiling stays inside the tumour. Returns how many were attached."""
    from pathomics_desktop.slides.jobs import import_roi, roi_path_for

    attached = 0
    for outcome in report.outcomes:
        if outcome.slide_id is None or not outcome.study_id:
            continue
        drawn = rois_dir / f"{outcome.study_id}.geojson"
        if drawn.exists() and not roi_path_for(project, outcome.slide_id).exists():
            import_roi(registry, project, outcome.slide_id, drawn)
            attached += 1
    return attached
