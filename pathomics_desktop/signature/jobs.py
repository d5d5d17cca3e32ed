"""Job ``signature``: patch predictions -> patient features -> frozen pathomics signature.

Writes ``<project>/features/<run>_features.parquet`` (+ ``.json`` description),
``<project>/signature/<name>.json`` (the frozen signature: features, coefficients, cut,
endpoint, seeds, run, per-set results, provenance) and ``<project>/signature/<name>_scores.parquet``
(study_id, score, risk_group), and the same as version k under ``signature/<name>/``
(:mod:`pathomics_desktop.signature.versions`), every file atomically. An existing name is
refused unless ``replace`` is true; a failed run leaves earlier outputs untouched.
"""

from __future__ import annotations

from typing import Any, Mapping

from pathomics_desktop.errors import UserError


def registry_slide_patients(project) -> dict[str, str]:
    """``slide_id -> study_id`` of the project's usable slides (QC ok, tiled, included patient)."""
    from pathomics_desktop.learning.project_data import project_slides

    return {str(s.slide_id): s.study_id for s in project_slides(project)}


def _number_param(params: Mapping[str, Any], key: str, default, kind: type = float):
    """``params[key]`` as ``kind`` (int or float), or ``default`` when absent."""
    value = params.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        noun = "an integer" if kind is int else "a number"
        raise UserError(f"parameter {key!r} must be {noun}, got {value!r}") from None


def signature_job(project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Fit a signature. ``params``: ``run`` (model run whose predictions are used, required),
    ``endpoint`` ("os" | "rfs", default "os"), ``name`` (default ``<run>_<endpoint>``),
    ``folds`` (10), ``seed`` (0), ``rule`` ("min" | "1se"); optional ``corr_method``,
    ``corr_threshold``, ``p_threshold``, ``xtile_minprop``, ``xtile_perm``, ``replace``
    (fit a new version of an existing signature; refused otherwise) and
    ``slide_patients`` (an explicit ``{slide_id: study_id}`` map used instead of the
    registry's slides, e.g. for predictions imported from elsewhere)."""
    import pandas as pd

    from pathomics_desktop.analytics.snapshot import refresh_snapshot, snapshot_paths
    from pathomics_desktop.signature.drift import stain_reference
    from pathomics_desktop.signature.versions import next_version, predictions_hashes, provenance
    from pathomics_desktop.signature.evaluation import SignatureSummary
    from pathomics_desktop.signature.features import build_features, prediction_files, write_features
    from pathomics_desktop.signature.fit import SETS, SignatureSettings, check_name, fit_signature, write_signature

    run = params.get("run")
    if not run:
        raise UserError("parameter 'run' (the model run whose predictions are used) is required")
    from pathomics_desktop.learning.jobs import RUN_NAME

    if not RUN_NAME.match(str(run)):
        raise UserError(f"model run name {run!r}: use letters, digits, '.', '_' and '-'")
    settings = SignatureSettings(
        endpoint=str(params.get("endpoint") or "os").lower(),
        folds=_number_param(params, "folds", 10, int),
        seed=_number_param(params, "seed", 0, int),
        rule=str(params.get("rule") or "min"),
        corr_method=str(params.get("corr_method") or "pearson"),
        corr_threshold=_number_param(params, "corr_threshold", 0.9),
        p_threshold=_number_param(params, "p_threshold", 0.05),
        xtile_minprop=_number_param(params, "xtile_minprop", 0.1),
        xtile_perm=_number_param(params, "xtile_perm", 1000, int),
    )
    settings.check()
    name = check_name(str(params.get("name") or f"{run}_{settings.endpoint}"))
    replace = bool(params.get("replace"))
    version = next_version(project, name, replace=replace)

    ctx.progress(0.0, f"reading the predictions of run {run!r}")
    files = prediction_files(project.root / "predictions" / str(run))
    explicit = params.get("slide_patients")
    if explicit:
        slide_patients = {str(k): str(v) for k, v in dict(explicit).items()}
        source = "explicit map"
    else:
        slide_patients = registry_slide_patients(project)
        source = "registry"
    ctx.check_cancelled()
    snapshot = refresh_snapshot(project)
    cohort = pd.read_parquet(snapshot)
    cohort = cohort[cohort["included"].fillna(False).astype(bool) & cohort["split"].isin(SETS)]
    splits = dict(zip(cohort["study_id"], cohort["split"]))
    ctx.log(f"{len(files)} prediction files; slide->patient map from the {source} ({len(slide_patients)} slides)")

    ctx.progress(0.05, f"aggregating {len(files)} slides into patient features")
    features = build_features(files, slide_patients, splits, check_cancelled=ctx.check_cancelled)
    features_file = write_features(project, str(run), features)
    ctx.log(f"features: {features.meta['patients']} patients, {features.meta['slides']} slides, "
            f"{features.meta['patches']} patches -> {features_file}")
    if features.meta["unmapped_slides"]:
        ctx.log(f"{features.meta['unmapped_slides']} predicted slide(s) have no patient and were left out")
    ctx.check_cancelled()

    def progress(fraction: float, message: str) -> None:
        ctx.progress(0.3 + 0.65 * fraction, message)

    signature, scores = fit_signature(
        features.frame, cohort, settings, run=str(run), name=name,
        feature_meta={"file": str(features_file.relative_to(project.root)), **features.meta},
        progress=progress, check_cancelled=ctx.check_cancelled)
    ctx.check_cancelled()
    used = {sid: path for sid, path in files.items() if sid in slide_patients and splits.get(slide_patients[sid])}
    combined, per_file = predictions_hashes(used)
    training_slides = [sid for sid in used if splits[slide_patients[sid]] == "training"]
    signature["stain_reference"] = stain_reference(slide_stains(project, training_slides))
    signature["version"] = version
    signature["provenance"] = provenance(
        snapshot=snapshot, snapshot_version=_snapshot_version(snapshot_paths(project)[1]),
        predictions_sha256=combined, prediction_files=len(per_file), features_file=features_file,
        seeds={"cv_folds": settings.seed, "xtile_permutation": settings.seed}, replaces=version - 1 or None)
    json_path, scores_path = write_signature(project, name, signature, scores, prediction_hashes=per_file)
    ctx.progress(1.0, f"signature {name!r} v{version}: {len(signature['coefficients'])} features, "
                      f"cut {signature['cut']['value']:.4g}")
    return SignatureSummary.from_signature(signature).to_dict() | {
        "json": str(json_path), "scores": str(scores_path), "features": str(features_file)}


def _snapshot_version(meta_path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None


def slide_stains(project, slide_ids) -> list[dict[str, Any]]:
    """The stored stain vectors (tiling job) of registry slides; ids that are not registry
    slide ids (predictions imported from elsewhere) and slides without vectors are skipped."""
    from sqlalchemy import select

    from pathomics_desktop.registry.models import Slide
    from pathomics_desktop.registry.service import open_project_registry

    ids = sorted({int(s) for s in slide_ids if str(s).isdigit()})
    if not ids:
        return []
    registry = open_project_registry(project)
    try:
        with registry.session() as session:
            rows = session.execute(select(Slide.id, Slide.stain_vectors)).all()
    finally:
        registry.dispose()
    wanted = set(ids)
    return [stain for sid, stain in rows if sid in wanted and stain]
