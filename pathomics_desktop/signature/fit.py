"""The pathomics signature: three-tier feature selection, LASSO-Cox score, frozen X-tile cut.

Study section 5.4 (feature selection) on the TRAINING set only:

0. features constant on the training set are removed (no correlation or Cox fit is defined);
1. **correlation filter**: Pearson r (the study's choice; ``corr_method`` may be "spearman"
   or "both", the latter dropping when either |r| exceeds the threshold). Features are
   visited in column order (histo_prob, histo_pred, bow_prob, bow_pred; bins ascending);
   a feature is kept when its |r| with every feature kept so far is <= ``corr_threshold``
   (0.9), otherwise dropped (recorded with the kept feature it is most correlated with).
   So of each redundant pair the later column is dropped: a histogram feature wins over its
   TF-IDF twin;
2. **univariate Cox** (Efron ties) of each remaining feature, standardised on the training
   set (HR per 1 SD; the p-value does not depend on the scale): kept when the Wald p < 0.05;
3. **LASSO-Cox** (glmnet objective, columns standardised internally, coefficients on the
   feature scale) with K-fold cross-validated partial-likelihood deviance, folds drawn from
   ``seed``; ``lambda.min`` by default, ``lambda.1se`` with ``rule="1se"``.

Score: ``score = sum_i beta_i x_i`` over the non-zero coefficients (raw aggregated features,
no centring), i.e. the Cox linear predictor: **a higher score means a higher risk** (the
study's published signature runs the other way, lower score = higher risk, which is only a
sign convention). The risk cut is the X-tile optimal single cut of the training score
(largest log-rank chi-square over EVERY distinct training score that leaves at least
``min_group_size = ceil(minprop n)`` patients in each group, ``minprop`` 0.1 by default; Monte
Carlo permutation p); **high risk = score > cut**. The cut is frozen and applied unchanged
to the internal and external sets.

Per set (training, internal, external) and per external center
(:mod:`pathomics_desktop.signature.evaluation`): Harrell's C of the score
(infinitesimal-jackknife 95% CI), Cox HR of high vs low risk (Efron ties, Wald 95% CI and p),
Kaplan-Meier medians (95% CI) per group and the log-rank test. Also recorded: the
multivariable Cox model of the selected features on the training set (HR per training SD,
study 5.4) and the high-vs-low HR over all patients in a Cox model with a Gaussian random
intercept per center (the study's mixed-effects Cox model).

Degenerate inputs raise :class:`UserError` naming the step ("signature step 1
(correlation filter)", "step 2 (univariate Cox)", "step 3 (LASSO-Cox)", "step 4 (X-tile
cut)"): every feature constant (one class of predictions), fewer than two training events,
no feature passing the screen, an empty LASSO selection, a constant score.

The frozen signature also keeps the training distribution of each selected feature and of
the score (``drift_reference``, :mod:`pathomics_desktop.signature.drift`), so that applying it
elsewhere (:mod:`pathomics_desktop.signature.apply`) can warn about drift. Every fit is a
version (:mod:`pathomics_desktop.signature.versions`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import atomic_path
from pathomics_desktop.signature.drift import training_distribution
from pathomics_desktop.signature.evaluation import SetEvaluation, evaluate_set, risk_groups
from pathomics_desktop.stats.data import clean_json

ENDPOINTS = {"os": ("os_months", "os_event"), "rfs": ("rfs_months", "rfs_event")}
SETS = ("training", "internal", "external")
FORMAT = "pathomics-signature/1"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class SignatureSettings:
    """Choices of a signature fit (all recorded in the frozen JSON)."""

    endpoint: str = "os"
    folds: int = 10
    seed: int = 0
    rule: str = "min"
    corr_method: str = "pearson"
    corr_threshold: float = 0.9
    p_threshold: float = 0.05
    xtile_minprop: float = 0.1
    xtile_perm: int = 1000

    def check(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise UserError(f"endpoint must be 'os' or 'rfs', got {self.endpoint!r}")
        if self.rule not in ("min", "1se"):
            raise UserError(f"rule must be 'min' or '1se', got {self.rule!r}")
        if self.corr_method not in ("pearson", "spearman", "both"):
            raise UserError(f"corr_method must be pearson, spearman or both, got {self.corr_method!r}")
        if not 0 < self.corr_threshold <= 1:
            raise UserError(f"corr_threshold must be in (0, 1], got {self.corr_threshold}")
        if not 0 < self.p_threshold <= 1:
            raise UserError(f"p_threshold must be in (0, 1], got {self.p_threshold}")
        if self.folds < 3:
            raise UserError(f"folds must be at least 3, got {self.folds}")


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise UserError(f"signature name {name!r}: use letters, digits, '.', '_' and '-' (at most 64)")
    return name


# ----------------------------------------------------------------------------------------------
# the three tiers
# ----------------------------------------------------------------------------------------------


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return np.apply_along_axis(rankdata, 0, x)


def _abs_corr(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    sd = np.sqrt((xc**2).sum(axis=0))
    r = (xc.T @ xc) / np.outer(sd, sd)
    return np.abs(np.clip(r, -1.0, 1.0))


def correlation_filter(x: np.ndarray, names: list[str], *, threshold: float = 0.9,
                       method: str = "pearson") -> tuple[list[int], list[dict]]:
    """Greedy filter in column order (see module docstring): indices kept, and one record
    ``{feature, correlated_with, r}`` per dropped feature. Columns must not be constant."""
    mats = []
    if method in ("pearson", "both"):
        mats.append(_abs_corr(x))
    if method in ("spearman", "both"):
        mats.append(_abs_corr(_ranks(x)))
    r = np.maximum.reduce(mats)
    kept: list[int] = []
    dropped: list[dict] = []
    for j in range(x.shape[1]):
        if kept:
            rk = r[j, kept]
            worst = int(np.argmax(rk))
            if rk[worst] > threshold:
                dropped.append({"feature": names[j], "correlated_with": names[kept[worst]], "r": float(rk[worst])})
                continue
        kept.append(j)
    return kept, dropped


def univariate_filter(time: np.ndarray, event: np.ndarray, x: np.ndarray, names: list[str], *,
                      threshold: float = 0.05) -> tuple[list[int], list[dict]]:
    """One Cox model per (training-standardised) column: indices with Wald p < threshold and
    one row per feature ``{feature, hr_per_sd, hr_lower, hr_upper, p}`` (``error`` if unfittable)."""
    from pathomics_desktop.stats.cox import fit_cox_arrays

    z = (x - x.mean(axis=0)) / x.std(axis=0)
    kept, rows = [], []
    for j, name in enumerate(names):
        try:
            row = fit_cox_arrays(time, event, z[:, j], names=[name]).table()[0]
        except UserError as exc:
            rows.append({"feature": name, "hr_per_sd": None, "hr_lower": None, "hr_upper": None, "p": None,
                         "error": str(exc)})
            continue
        rows.append({"feature": name, "hr_per_sd": row["hr"], "hr_lower": row["hr_lower"],
                     "hr_upper": row["hr_upper"], "p": row["p"]})
        if row["p"] < threshold:
            kept.append(j)
    return kept, rows


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def features_with_outcome(features, cohort, endpoint: str):
    """Join patient features to the cohort: patients with a data set and a complete endpoint.

    Returns ``(frame, excluded)`` with columns study_id, split, time, event + features, and
    counts of patients left out (no features / missing endpoint)."""
    import pandas as pd

    time_col, event_col = ENDPOINTS[endpoint]
    for col in ("study_id", "split", time_col, event_col):
        if col not in cohort.columns:
            raise UserError(f"the cohort has no column {col!r}")
    cols = ["study_id", "split", time_col, event_col] + (["center"] if "center" in cohort.columns else [])
    base = cohort.loc[cohort["split"].isin(SETS), cols]
    base = base.rename(columns={time_col: "time", event_col: "event"})
    merged = base.merge(features, on="study_id", how="inner")
    complete = merged["time"].notna() & merged["event"].notna()
    excluded = {"without_features": int(len(base) - len(merged)), "missing_endpoint": int((~complete).sum())}
    frame = merged[complete].reset_index(drop=True)
    frame["time"] = frame["time"].astype(float)
    frame["event"] = frame["event"].astype(int)
    if (frame["time"] < 0).any():
        bad = frame.loc[frame["time"] < 0, "study_id"].iloc[0]
        raise UserError(f"patient {bad}: negative {time_col}")
    return pd.DataFrame(frame), excluded


# ----------------------------------------------------------------------------------------------
# the fit
# ----------------------------------------------------------------------------------------------


def linear_predictor(x: np.ndarray, beta) -> np.ndarray:
    """``sum_i beta_i x_i`` per row, added column by column in the coefficients' order: each
    patient's score is the same floating-point number whatever other patients are scored with
    it (a matrix product may round differently with the batch's size)."""
    x = np.asarray(x, dtype=float)
    out = np.zeros(x.shape[0])
    for j, b in enumerate(np.asarray(beta, dtype=float)):
        out = out + x[:, j] * b
    return out


def score_features(signature: dict[str, Any], features) -> np.ndarray:
    """``sum_i beta_i x_i`` of a frozen signature on a features frame (study_id + columns)."""
    coef = signature["coefficients"]
    missing = [f for f in coef if f not in features.columns]
    if missing:
        raise UserError(f"the features lack the signature's feature(s) {', '.join(missing[:5])}")
    return linear_predictor(features[list(coef)].to_numpy(dtype=float), list(coef.values()))


def apply_signature(signature: dict[str, Any], features):
    """Scores and risk groups (frozen cut) of every patient: study_id, score, risk_group."""
    import pandas as pd

    score = score_features(signature, features)
    return pd.DataFrame({"study_id": features["study_id"].to_numpy(), "score": score,
                         "risk_group": risk_groups(score, signature["cut"]["value"])})


@dataclass
class FeatureMatrix:
    """Training-set feature columns under selection: their names and values (patients x features)."""

    names: list[str]
    x: np.ndarray

    def take(self, columns: list[int]) -> "FeatureMatrix":
        return FeatureMatrix([self.names[j] for j in columns], self.x[:, columns])

    def column(self, name: str) -> np.ndarray:
        return self.x[:, self.names.index(name)]


def fit_signature(features, cohort, settings: SignatureSettings, *, run: str = "", name: str = "",
                  feature_meta: dict[str, Any] | None = None,
                  progress: Callable[[float, str], None] = lambda f, m: None,
                  check_cancelled: Callable[[], None] = lambda: None) -> tuple[dict[str, Any], Any]:
    """Fit the signature on the training set and evaluate it on every set.

    ``features``: study_id + feature columns; ``cohort``: the cohort snapshot (study_id,
    split and the endpoint columns). Returns (frozen signature dict, scores frame with
    study_id, score, risk_group). Each degenerate step raises :class:`UserError` naming it.
    The steps, in order: training data, constant features, 1 correlation filter, 2 univariate
    Cox, 3 LASSO-Cox, 4 X-tile cut, then the frozen signature is scored and evaluated.
    """
    settings.check()
    feature_cols = [c for c in features.columns if c != "study_id"]
    frame, excluded = features_with_outcome(features, cohort, settings.endpoint)
    t, e, candidates = _training_data(frame, feature_cols, settings.endpoint)

    progress(0.05, "removing constant features")
    varying, constant = _remove_constant_features(candidates)

    check_cancelled()
    progress(0.1, f"step 1: correlation filter (|{settings.corr_method} r| > {settings.corr_threshold})")
    uncorrelated, dropped = _step1_correlation_filter(varying, settings)

    check_cancelled()
    progress(0.2, f"step 2: univariate Cox of {len(uncorrelated.names)} features")
    screened, uni_rows = _step2_univariate_cox(t, e, uncorrelated, settings)

    check_cancelled()
    progress(0.35, f"step 3: LASSO-Cox, {settings.folds}-fold cross-validation on {len(screened.names)} features")
    cv, chosen, coefficients = _step3_lasso_cox(t, e, screened, settings)

    check_cancelled()
    progress(0.7, "X-tile cut of the training score")
    selected = screened.take([screened.names.index(nm) for nm in coefficients])
    train_score = linear_predictor(selected.x, list(coefficients.values()))
    xt = _step4_xtile_cut(t, e, train_score, settings)

    selection = _selection_record(settings, features_in=len(feature_cols), constant=constant, dropped=dropped,
                                  uncorrelated=uncorrelated, screened=screened, uni_rows=uni_rows, cv=cv,
                                  chosen=chosen, coefficients=coefficients)
    patients = {s: int((frame["split"] == s).sum()) for s in SETS} | {"excluded": excluded}
    signature = _frozen_signature(settings, name=name, run=run, coefficients=coefficients, screened=screened,
                                  xt=xt, selection=selection, patients=patients, feature_meta=feature_meta)
    signature["drift_reference"] = training_distribution(
        [*selected.names, "score"], np.column_stack([selected.x, train_score]))

    check_cancelled()
    progress(0.85, "scoring every set with the frozen cut")
    scores = apply_signature(signature, frame[["study_id", *feature_cols]])
    _evaluate_frozen_signature(signature, frame, scores["score"].to_numpy(), t, e, selected)
    return clean_json(signature), scores


def _training_data(frame, feature_cols: list[str], endpoint: str) -> tuple[np.ndarray, np.ndarray, FeatureMatrix]:
    """Times, events and features of the training set (at least two patients and two events)."""
    train = frame[frame["split"] == "training"]
    label = endpoint.upper()
    if len(train) < 2:
        raise UserError(f"signature: only {len(train)} training-set patient(s) have features and {label}")
    t, e = train["time"].to_numpy(), train["event"].to_numpy()
    n_events = int(e.sum())
    if n_events < 2:
        raise UserError(f"signature step 2 (univariate Cox): the training set has {n_events} {label} event(s) "
                        f"among {len(train)} patients; at least two are needed")
    return t, e, FeatureMatrix(list(feature_cols), train[feature_cols].to_numpy(dtype=float))


def _remove_constant_features(m: FeatureMatrix) -> tuple[FeatureMatrix, list[str]]:
    """Step 0: drop columns constant on the training set (sd <= 1e-12 max(1, |mean|))."""
    sd = m.x.std(axis=0)
    varying = [j for j in range(len(m.names)) if sd[j] > 1e-12 * max(1.0, abs(m.x[:, j].mean()))]
    constant = [m.names[j] for j in range(len(m.names)) if j not in set(varying)]
    if not varying:
        raise UserError("signature step 1 (correlation filter): every feature is constant on the training set "
                        "(one class of predictions only?)")
    return m.take(varying), constant


def _step1_correlation_filter(m: FeatureMatrix, settings: SignatureSettings) -> tuple[FeatureMatrix, list[dict]]:
    """Step 1: :func:`correlation_filter`; the kept columns and one record per dropped feature."""
    kept, dropped = correlation_filter(m.x, m.names, threshold=settings.corr_threshold, method=settings.corr_method)
    return m.take(kept), dropped


def _step2_univariate_cox(t, e, m: FeatureMatrix, settings: SignatureSettings) -> tuple[FeatureMatrix, list[dict]]:
    """Step 2: :func:`univariate_filter` (Wald p < ``p_threshold``); the kept columns and every row."""
    kept, rows = univariate_filter(t, e, m.x, m.names, threshold=settings.p_threshold)
    if not kept:
        best = min((r for r in rows if r["p"] is not None), key=lambda r: r["p"], default=None)
        hint = f"; smallest p = {best['p']:.3g} ({best['feature']})" if best else ""
        raise UserError(f"signature step 2 (univariate Cox): none of the {len(m.names)} features passes "
                        f"p < {settings.p_threshold} for {settings.endpoint.upper()} on the training set{hint}")
    return m.take(kept), rows


def _step3_lasso_cox(t, e, m: FeatureMatrix, settings: SignatureSettings):
    """Step 3: cross-validated LASSO-Cox; returns (cv, the chosen lambda's fit, non-zero coefficients)."""
    from pathomics_desktop.stats.lasso_cox import lasso_cox_cv

    try:
        cv = lasso_cox_cv(t, e, m.x, names=m.names, folds=settings.folds, seed=settings.seed)
    except UserError as exc:
        raise UserError(f"signature step 3 (LASSO-Cox): {exc}") from None
    chosen = cv.coef_at(settings.rule)
    coefficients = {nm: chosen["coef"][nm] for nm in m.names if chosen["coef"][nm] != 0}
    if not coefficients:
        raise UserError(f"signature step 3 (LASSO-Cox): no feature has a non-zero coefficient at "
                        f"lambda.{settings.rule} "
                        f"= {chosen['lambda']:.4g} ({len(m.names)} candidates)"
                        + ("; try rule 'min'" if settings.rule == "1se" else ""))
    return cv, chosen, coefficients


def _step4_xtile_cut(t, e, train_score: np.ndarray, settings: SignatureSettings):
    """Step 4: the X-tile optimal single cut of the training score (permutation p)."""
    from pathomics_desktop.stats.cutpoint import xtile

    if np.ptp(train_score) == 0:
        raise UserError("signature step 4 (X-tile cut): the training score is constant; no cut can be chosen")
    try:
        return xtile(t, e, train_score, minprop=settings.xtile_minprop, n_perm=settings.xtile_perm, seed=settings.seed,
                     pairs=False)
    except UserError as exc:
        raise UserError(f"signature step 4 (X-tile cut): {exc}") from None


def _selection_record(settings: SignatureSettings, *, features_in: int, constant: list[str],
                      dropped: list[dict], uncorrelated: FeatureMatrix, screened: FeatureMatrix,
                      uni_rows: list[dict], cv, chosen: dict, coefficients: dict[str, float]) -> dict[str, Any]:
    """The ``selection`` record of the frozen signature: what each tier kept and dropped."""
    kept = set(screened.names)
    return {
        "features_in": features_in,
        "constant_removed": constant,
        "correlation": {"method": settings.corr_method, "threshold": settings.corr_threshold,
                        "rule": "column order; a later feature with |r| > threshold to a kept one is dropped",
                        "kept": len(uncorrelated.names), "dropped": dropped},
        "univariate": {"test": "Wald, Cox (Efron ties) per training-standardised feature",
                       "threshold": settings.p_threshold, "kept": list(screened.names),
                       "rows": [r for r in uni_rows if r["feature"] in kept]},
        "lasso": {"folds": settings.folds, "seed": settings.seed, "rule": settings.rule,
                  "lambda_min": cv.lambda_min, "lambda_1se": cv.lambda_1se, "lambda": chosen["lambda"],
                  "selected": list(coefficients)},
    }


def _frozen_signature(settings: SignatureSettings, *, name: str, run: str, coefficients: dict[str, float],
                      screened: FeatureMatrix, xt, selection: dict[str, Any], patients: dict[str, Any],
                      feature_meta: dict[str, Any] | None) -> dict[str, Any]:
    """The frozen signature JSON (without the per-set results)."""
    return {
        "format": FORMAT,
        "name": name,
        "run": run,
        "endpoint": settings.endpoint,
        "time_column": ENDPOINTS[settings.endpoint][0],
        "event_column": ENDPOINTS[settings.endpoint][1],
        "settings": asdict(settings),
        "seeds": {"cv_folds": settings.seed, "xtile_permutation": settings.seed},
        "score": "sum(beta_i * x_i) over the coefficients (raw patient features, no centring); "
                 "higher score = higher risk",
        "coefficients": coefficients,
        "standardisation": {
            "note": "LASSO standardised the columns internally; the coefficients are on the feature scale "
                    "and the score uses the raw features. Training mean/sd are given for reference.",
            "mean": {nm: float(screened.column(nm).mean()) for nm in coefficients},
            "sd": {nm: float(screened.column(nm).std()) for nm in coefficients},
        },
        "cut": {"value": float(xt.cutpoint), "method": "X-tile single cut on the training score",
                "search": "every distinct training score leaving >= min_group_size patients in each group",
                "rule": "high risk: score > cut", "minprop": settings.xtile_minprop,
                "min_group_size": xt.min_group_size, "candidate_cuts": int(len(xt.cuts)), "chisq": xt.statistic,
                "p_raw": xt.p_raw, "p_permutation": xt.p_adjusted, "n_permutations": settings.xtile_perm},
        "selection": selection,
        "patients": patients,
        "features": feature_meta or {},
    }


def _evaluate_frozen_signature(signature: dict[str, Any], frame, score: np.ndarray, t, e,
                               selected: FeatureMatrix) -> None:
    """Add the per-set results (sets, training multivariable Cox, per external center and the
    mixed-effects model) to the frozen signature."""
    cut = signature["cut"]["value"]
    signature["sets"] = {s: _evaluate_subset(frame, (frame["split"] == s).to_numpy(), score, cut,
                                             empty_note="no patients").to_dict()
                         for s in SETS}
    signature["training_multivariable"] = _multivariable(t, e, selected.x, selected.names)
    if "center" in frame.columns:
        centers = frame["center"].astype(str).to_numpy()
        external = (frame["split"] == "external").to_numpy()
        signature["external_centers"] = {
            c: _evaluate_subset(frame, external & (centers == c), score, cut).to_dict()
            for c in sorted(set(centers[external]))}
        signature["mixed_effects"] = _mixed_effects(frame, score > cut)


def _evaluate_subset(frame, mask: np.ndarray, score: np.ndarray, cut: float, *,
                     empty_note: str | None = None) -> SetEvaluation:
    """:func:`evaluate_set` of the patients in ``mask``; a set without events is not evaluated."""
    if empty_note and not mask.any():
        return SetEvaluation.not_evaluated(0, empty_note)
    sub_t, sub_e = frame.loc[mask, "time"].to_numpy(), frame.loc[mask, "event"].to_numpy()
    if sub_e.sum() == 0:
        return SetEvaluation.not_evaluated(int(mask.sum()), "no events", events=0)
    return evaluate_set(sub_t, sub_e, score[mask], cut)


def _multivariable(time, event, x, names) -> dict[str, Any]:
    """Multivariable Cox (Efron) of the LASSO-selected features on the training set (study 5.4),
    features standardised on the training set (HR per 1 SD)."""
    from pathomics_desktop.stats.cox import fit_cox_arrays

    z = (x - x.mean(axis=0)) / x.std(axis=0)
    try:
        fit = fit_cox_arrays(time, event, z, names=names)
    except UserError as exc:
        return {"rows": None, "notes": [str(exc)]}
    return {"scale": "per training SD", "rows": fit.table(), "concordance": fit.concordance, "notes": []}


def _mixed_effects(frame, high: np.ndarray) -> dict[str, Any]:
    """High vs low risk over all patients with a Gaussian random intercept per center
    (the study's mixed-effects Cox model; R ``coxph(... + frailty(center))``)."""
    from pathomics_desktop.stats.frailty import fit_frailty_arrays

    try:
        fit = fit_frailty_arrays(frame["time"].to_numpy(), frame["event"].to_numpy(), high.astype(float),
                                 frame["center"].astype(str).to_numpy(), names=["high_risk"])
    except UserError as exc:
        return {"hr": None, "notes": [str(exc)]}
    row = fit.table()[0]
    return {"patients": "all sets", "hr": row["hr"], "lower": row["hr_lower"], "upper": row["hr_upper"],
            "p": row["p"], "center_variance": fit.variance, "centers": list(fit.centers), "notes": []}


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------


def signature_paths(project, name: str) -> tuple[Path, Path]:
    folder = project.root / "signature"
    check_name(name)
    return folder / f"{name}.json", folder / f"{name}_scores.parquet"


def write_signature(project, name: str, signature: dict[str, Any], scores, *,
                    prediction_hashes: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Write version ``signature["version"]`` (default 1) under ``signature/<name>/`` and make
    it the current ``signature/<name>.json`` / ``<name>_scores.parquet``, every file atomically
    (the version files first: a crash never leaves a current file without its version)."""
    from pathomics_desktop.signature.versions import version_paths

    json_path, scores_path = signature_paths(project, name)
    version = int(signature.setdefault("version", 1))
    v_json, v_scores, v_hashes = version_paths(project, name, version)
    text = json.dumps(signature, indent=2, sort_keys=False)
    if prediction_hashes is not None:
        with atomic_path(v_hashes) as tmp:
            tmp.write_text(json.dumps(prediction_hashes, indent=0), encoding="utf-8")
    for target in (v_scores, scores_path):
        with atomic_path(target) as tmp:
            scores.to_parquet(tmp, index=False)
    for target in (v_json, json_path):
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return json_path, scores_path


def load_signature(project, name: str) -> dict[str, Any]:
    json_path, _ = signature_paths(project, name)
    if not json_path.exists():
        known = sorted(p.stem for p in json_path.parent.glob("*.json")) if json_path.parent.exists() else []
        raise UserError(f"signature {name!r} not found ({json_path})"
                        + (f"; known: {', '.join(known)}" if known else "; fit one with `pathomics signature fit`"))
    try:
        return json.loads(json_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{json_path}: not valid JSON ({exc})") from None
