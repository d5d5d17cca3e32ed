"""``signature apply``: score patients with a frozen signature, never refitting it.

The patients of one center (``center``) or of every center (``all``): the included patients
with predictions of the signature's model run. Their features are computed from their
prediction files with the signature's FROZEN training idf
(:func:`~pathomics_desktop.signature.features.features_with_frozen_idf`), the score is
``sum_i beta_i x_i`` with the frozen coefficients, and the risk group is ``high`` when
score > the frozen cut, else ``low``. Nothing of the signature is re-estimated.

**Where the scores live.** They are written to the registry as four derived codebook
variables, ``pathomics_os_score`` / ``pathomics_os_group`` and ``pathomics_rfs_score`` /
``pathomics_rfs_group`` (number; category high/low), through the audited write path
(:func:`~pathomics_desktop.registry.records.set_value` in one transaction, the reason naming
the signature, version and the frozen file's SHA-256). Why there and not in a new table:

* scores and risk groups are then patient data like any other: they are in the analysis
  table (:mod:`pathomics_desktop.cohort.table`), hence in the DuckDB cohort snapshot,
  ``registry:`` for every ``analyze`` command, the filters and ``export cohort``, with no join
  by hand and no schema migration;
* the snapshot refreshes by itself when scores change: every changed value writes an audit
  row, and the audit high-water mark is the snapshot's staleness key;
* the audit trail says, per patient, which signature version gave which score and when.

Re-applying the same version writes nothing (unchanged values are not rewritten). Patients
in the scope (the center, or everyone) without features get their old scores cleared, so
the columns never mix a stale signature with the current one. The bulky per-patient record
of each application is a Parquet file keyed by its content hash,
``signature/<name>/applied/v<k>_<scope>_<sha12>.parquet`` (study_id, center, split, score,
risk_group, signature, version), and the job's row in the registry's ``jobs`` table records
the signature, version, file, hash, counts and the drift checks.

**Drift.** Each center's applied patients outside the training set are compared with the
training patients, per selected feature and for the score (PSI and KS,
:mod:`pathomics_desktop.signature.drift`), and their slides' stain vectors with the training
slides'. Every drift is a warning in the job log and in the result; it never stops the job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.data import clean_json

SCORE_ENDPOINTS = ("os", "rfs")


def score_columns(endpoint: str) -> tuple[str, str]:
    """The registry variables of an endpoint's scores: ``pathomics_<ep>_score``, ``pathomics_<ep>_group``."""
    if endpoint not in SCORE_ENDPOINTS:
        raise UserError(f"endpoint must be 'os' or 'rfs', got {endpoint!r}")
    return f"pathomics_{endpoint}_score", f"pathomics_{endpoint}_group"


ALL_SCORE_COLUMNS = [c for ep in SCORE_ENDPOINTS for c in score_columns(ep)]


def ensure_score_variables(registry) -> None:
    """Add the four derived score variables to the project's codebook if they are missing."""
    from pathomics_desktop.registry.codebook import Codebook
    from pathomics_desktop.registry.service import add_variable

    with registry.session() as session:
        known = {v.name for v in Codebook.for_session(session)}
    for endpoint in SCORE_ENDPOINTS:
        score, group = score_columns(endpoint)
        label = endpoint.upper()
        if score not in known:
            add_variable(registry, name=score, type="number", derived=True,
                         label=f"Pathomics {label} score (derived: written by `pathomics signature apply`)")
        if group not in known:
            add_variable(registry, name=group, type="category", codes={"high": ["high risk"], "low": ["low risk"]},
                         derived=True, label=f"Pathomics {label} risk group (derived: score > frozen cut is high)")


def write_scores(registry, scores, scope: set[str], endpoint: str, *, reason: str, user: str = "") -> dict[str, int]:
    """Set the endpoint's score and group of every patient in ``scope`` (study ids): the
    value from ``scores`` (study_id, score, risk_group), or empty when the patient has none.
    One transaction, audited; returns counts ``{"scored", "cleared", "changed"}``."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from pathomics_desktop.registry.codebook import Codebook
    from pathomics_desktop.registry.models import Patient, VariableValue
    from pathomics_desktop.registry.records import CustomVariableCache, get_value, set_value

    ensure_score_variables(registry)
    score_name, group_name = score_columns(endpoint)
    values = {sid: (float(s), str(g)) for sid, s, g in
              zip(scores["study_id"], scores["score"], scores["risk_group"])}
    counts = {"scored": 0, "cleared": 0, "changed": 0}
    with registry.session(user=user, reason=reason) as session:
        book = Codebook.for_session(session)
        var_score, var_group = book[score_name], book[group_name]
        custom = CustomVariableCache(session)
        patients = session.scalars(select(Patient).options(
            selectinload(Patient.values).selectinload(VariableValue.variable)).order_by(Patient.study_id))
        for patient in patients:
            if patient.study_id not in scope:
                continue
            score, group = values.get(patient.study_id, (None, None))
            if score is None:
                counts["cleared"] += get_value(patient, var_score) is not None
            else:
                counts["scored"] += 1
            changed = set_value(session, patient, var_score, score, custom=custom)
            changed = set_value(session, patient, var_group, group, custom=custom) or changed
            counts["changed"] += changed
    return counts


def applied_scores_path(project, name: str, version: int, scope: str, frame) -> tuple[Path, str]:
    """Content-keyed path of an application's scores and the SHA-256 of its canonical CSV
    (study_id, score to 17 significant digits, risk_group; sorted by study_id)."""
    from pathomics_desktop.signature.versions import text_sha256, version_folder

    canonical = "".join(f"{sid},{score:.17g},{group}\n" for sid, score, group in
                        sorted(zip(frame["study_id"], frame["score"].astype(float), frame["risk_group"])))
    digest = text_sha256(canonical)
    safe_scope = "all" if scope == "all" else f"center-{scope}"
    return version_folder(project, name) / "applied" / f"v{version}_{safe_scope}_{digest[:12]}.parquet", digest


def apply_to_patients(signature: dict[str, Any], files: Mapping[str, Path], slide_patients: Mapping[str, str]):
    """Scores (study_id, score, risk_group) and the features of the patients of
    ``slide_patients`` from their prediction ``files``, with the frozen idf, coefficients and cut."""
    from pathomics_desktop.signature.features import features_with_frozen_idf
    from pathomics_desktop.signature.fit import apply_signature

    idf = (signature.get("features") or {}).get("idf")
    if not idf:
        raise UserError(f"signature {signature.get('name')!r} has no frozen idf (features.idf); fit it again")
    features, slide_ids = features_with_frozen_idf(files, slide_patients, idf)
    return apply_signature(signature, features), features, slide_ids


def signature_apply_job(project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Job ``signature-apply``. ``params``: ``name`` (required), ``center`` (a center code) or
    ``all`` (true): which patients; optional ``slide_patients`` (``{slide_id: study_id}``
    instead of the registry's slides, as for the fit) and ``user``."""
    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.jobs.core import atomic_path
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.signature.features import prediction_files
    from pathomics_desktop.signature.fit import check_name, load_signature, signature_paths
    from pathomics_desktop.signature.jobs import registry_slide_patients
    from pathomics_desktop.signature.versions import file_sha256

    name = check_name(str(params.get("name") or ""))
    center = params.get("center")
    if bool(center) == bool(params.get("all")):
        raise UserError("signature apply: give either a center (--center C) or --all")
    signature = load_signature(project, name)
    version = int(signature.get("version") or 1)
    endpoint = signature["endpoint"]
    frozen_sha = file_sha256(signature_paths(project, name)[0])

    ctx.progress(0.0, f"reading the predictions of run {signature['run']!r}")
    files = prediction_files(project.root / "predictions" / str(signature["run"]))
    explicit = params.get("slide_patients")
    slide_patients = ({str(k): str(v) for k, v in dict(explicit).items()} if explicit
                      else registry_slide_patients(project))
    cohort = cohort_frame(project.root)
    if center:
        centers = sorted(cohort["center"].dropna().astype(str).unique())
        if str(center) not in centers:
            raise UserError(f"center {center!r} not found (centers: {', '.join(centers)})")
        cohort = cohort[cohort["center"].astype(str) == str(center)]
    scope = set(cohort["study_id"])
    targets = set(cohort.loc[cohort["included"].fillna(False).astype(bool), "study_id"])
    wanted = {sid: pid for sid, pid in slide_patients.items() if pid in targets}
    ctx.check_cancelled()
    ctx.progress(0.1, f"features of {len(set(wanted.values()))} patients with the frozen training idf")
    scores, features, slide_ids = apply_to_patients(signature, files, wanted)
    ctx.check_cancelled()

    info = cohort.set_index("study_id")[["center", "split"]]
    scores = scores.join(info, on="study_id")
    scores["signature"], scores["version"] = name, version
    drift, warnings = _drift_checks(project, signature, scores, features, slide_ids, wanted)
    for line in warnings:
        ctx.log(f"WARNING: {line}")

    scope_label = "all" if not center else str(center)
    target, digest = applied_scores_path(project, name, version, scope_label, scores)
    with atomic_path(target) as tmp:
        scores[["study_id", "center", "split", "score", "risk_group", "signature", "version"]].to_parquet(
            tmp, index=False)
    ctx.progress(0.8, f"writing {len(scores)} {endpoint.upper()} scores to the registry")
    reason = f"signature {name} v{version} applied ({'all centers' if not center else f'center {center}'}; " \
             f"frozen file sha256 {frozen_sha[:12]})"
    registry = open_project_registry(project)
    try:
        counts = write_scores(registry, scores, scope, endpoint, reason=reason, user=str(params.get("user") or ""))
    finally:
        registry.dispose()
    score_col, group_col = score_columns(endpoint)
    ctx.progress(1.0, f"{counts['scored']} patients scored ({int((scores['risk_group'] == 'high').sum())} high risk), "
                      f"{counts['changed']} changed, {len(warnings)} drift warning(s)")
    return {"signature": name, "version": version, "endpoint": endpoint, "scope": scope_label,
            "columns": [score_col, group_col], "signature_sha256": frozen_sha, "scores": str(target),
            "scores_sha256": digest, "high": int((scores["risk_group"] == "high").sum()),
            "low": int((scores["risk_group"] == "low").sum()), **counts,
            "without_features": len(targets - set(scores["study_id"])), "drift": drift, "warnings": warnings}


def _drift_checks(project, signature: dict[str, Any], scores, features, slide_ids: list[str],
                  slide_patients: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Per center, the applied patients outside the training set against the training ones:
    features and score (PSI, KS) and stain vectors (see :mod:`pathomics_desktop.signature.drift`)."""
    from pathomics_desktop.signature.drift import feature_drift, stain_drift
    from pathomics_desktop.signature.jobs import slide_stains

    reference = signature.get("drift_reference")
    data = features.merge(scores[["study_id", "score", "center", "split"]], on="study_id")
    new = data[data["split"] != "training"]
    out: dict[str, Any] = {}
    warnings: list[str] = []
    by_patient_slides: dict[str, list[str]] = {}
    for sid in slide_ids:
        by_patient_slides.setdefault(slide_patients[sid], []).append(sid)
    for center, part in sorted(new.groupby(new["center"].astype(str)), key=lambda kv: kv[0]):
        label = f"center {center} ({len(part)} patients outside the training set)"
        entry: dict[str, Any] = {"patients": int(len(part))}
        if reference:
            entry["features"], w = feature_drift(reference, part, label=label)
            warnings += w
        else:
            entry["features"] = None
        slides = [s for pid in part["study_id"] for s in by_patient_slides.get(pid, [])]
        entry["stain"], w = stain_drift(signature.get("stain_reference"), slide_stains(project, slides), label=label)
        warnings += w
        out[center] = entry
    if not reference:
        warnings.append("the signature keeps no training distribution (fitted before drift checks); "
                        "fit it again to check feature drift")
    return clean_json(out), warnings

