"""Job ``signature``: patch predictions -> patient features -> frozen pathomics signature.

Writes ``<project>/features/<run>_features.parquet`` (+ ``.json`` description),
``<project>/signature/<name>.json`` (the frozen signature: features, coefficients, cut,
endpoint, seeds, run, per-set results) and ``<project>/signature/<name>_scores.parquet``
(study_id, score, risk_group), every file atomically. The whole job is recomputed on each
run (seconds); a failed run leaves earlier outputs untouched.
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
    ``corr_threshold``, ``p_threshold``, ``xtile_minprop``, ``xtile_perm`` and
    ``slide_patients`` (an explicit ``{slide_id: study_id}`` map used instead of the
    registry's slides, e.g. for predictions imported from elsewhere)."""
    from pathomics_desktop.analytics.snapshot import cohort_frame
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
    cohort = cohort_frame(project.root)
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
    json_path, scores_path = write_signature(project, name, signature, scores)
    ctx.progress(1.0, f"signature {name!r}: {len(signature['coefficients'])} features, "
                      f"cut {signature['cut']['value']:.4g}")
    return summary(signature) | {"json": str(json_path), "scores": str(scores_path), "features": str(features_file)}


def summary(signature: dict[str, Any]) -> dict[str, Any]:
    """Plain-data summary of a frozen signature (what the job returns and `show` prints)."""
    sel = signature["selection"]
    sets = {}
    for s, r in signature["sets"].items():
        c, hr, lr = r.get("c_index"), r.get("hr_high_vs_low"), r.get("logrank")
        sets[s] = {"n": r.get("n"), "events": r.get("events"), "n_high": r.get("n_high"),
                   "c_index": c and c["c"], "c_lower": c and c["lower"], "c_upper": c and c["upper"],
                   "hr": hr and hr["hr"], "hr_lower": hr and hr["lower"], "hr_upper": hr and hr["upper"],
                   "hr_p": hr and hr["p"], "logrank_p": lr and lr["p"],
                   "median_high": (r.get("km_median") or {}).get("high") and r["km_median"]["high"]["median"],
                   "median_low": (r.get("km_median") or {}).get("low") and r["km_median"]["low"]["median"],
                   "notes": r.get("notes", [])}
    return {
        "name": signature["name"], "run": signature["run"], "endpoint": signature["endpoint"],
        "features_in": sel["features_in"], "after_constant": sel["features_in"] - len(sel["constant_removed"]),
        "after_correlation": sel["correlation"]["kept"], "after_univariate": len(sel["univariate"]["kept"]),
        "selected": len(signature["coefficients"]), "coefficients": signature["coefficients"],
        "lambda": sel["lasso"]["lambda"], "rule": sel["lasso"]["rule"], "cut": signature["cut"]["value"],
        "cut_p_permutation": signature["cut"]["p_permutation"], "sets": sets,
        "mixed_effects": signature.get("mixed_effects"),
    }
