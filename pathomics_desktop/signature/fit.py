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
(largest log-rank chi-square over cuts leaving >= ``minprop`` of patients per group, Monte
Carlo permutation p); **high risk = score > cut**. The cut is frozen and applied unchanged
to the internal and external sets.

Per set (training, internal, external) and per external center: Harrell's C of the score
(infinitesimal-jackknife 95% CI), Cox HR of high vs low risk (Efron ties, Wald 95% CI and p),
Kaplan-Meier medians (95% CI) per group and the log-rank test. Also recorded: the
multivariable Cox model of the selected features on the training set (HR per training SD,
study 5.4) and the high-vs-low HR over all patients in a Cox model with a Gaussian random
intercept per center (the study's mixed-effects Cox model).

Degenerate inputs raise :class:`UserError` naming the step ("signature step 1
(correlation filter)", "step 2 (univariate Cox)", "step 3 (LASSO-Cox)", "step 4 (X-tile
cut)"): every feature constant (one class of predictions), fewer than two training events,
no feature passing the screen, an empty LASSO selection, a constant score.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import atomic_path

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


def analysis_frame(features, cohort, endpoint: str):
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
# evaluation of a frozen score and cut
# ----------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def risk_groups(score: np.ndarray, cut: float) -> np.ndarray:
    """``"high"`` where score > cut, else ``"low"``."""
    return np.where(np.asarray(score, dtype=float) > cut, "high", "low")


def evaluate_set(time: np.ndarray, event: np.ndarray, score: np.ndarray, cut: float) -> dict[str, Any]:
    """Harrell's C (IJ CI), HR high vs low (Cox, Efron), KM medians and log-rank of one set.
    A statistic that is undefined on this set is None, with the reason in ``notes``."""
    from pathomics_desktop.stats.concordance import harrell_c
    from pathomics_desktop.stats.cox import fit_cox_arrays
    from pathomics_desktop.stats.km import kaplan_meier, logrank_test

    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=int)
    high = np.asarray(score, dtype=float) > cut
    out: dict[str, Any] = {"n": int(t.size), "events": int(e.sum()), "n_high": int(high.sum()),
                           "n_low": int((~high).sum()), "events_high": int(e[high].sum()),
                           "events_low": int(e[~high].sum()), "c_index": None, "hr_high_vs_low": None,
                           "km_median": {}, "logrank": None, "notes": []}
    try:
        c = harrell_c(t, e, score)
        out["c_index"] = {"c": c.c, "se": c.se, "lower": c.ci_lower, "upper": c.ci_upper}
    except UserError as exc:
        out["notes"].append(f"C-index: {exc}")
    for label, mask in (("high", high), ("low", ~high)):
        if mask.any():
            med, lo, hi = kaplan_meier(t[mask], e[mask]).median()
            out["km_median"][label] = {"median": med, "lower": lo, "upper": hi}
        else:
            out["km_median"][label] = None
    if high.all() or not high.any():
        out["notes"].append("one risk group only: no hazard ratio or log-rank test")
        return _clean(out)
    try:
        row = fit_cox_arrays(t, e, high.astype(float), names=["high_risk"]).table()[0]
        out["hr_high_vs_low"] = {"hr": row["hr"], "lower": row["hr_lower"], "upper": row["hr_upper"], "p": row["p"]}
    except UserError as exc:
        out["notes"].append(f"hazard ratio: {exc}")
    try:
        lr = logrank_test(t, e, np.where(high, "high", "low"))
        out["logrank"] = {"chisq": lr.chisq, "df": lr.df, "p": lr.p}
    except UserError as exc:
        out["notes"].append(f"log-rank: {exc}")
    return _clean(out)


# ----------------------------------------------------------------------------------------------
# the fit
# ----------------------------------------------------------------------------------------------


def score_features(signature: dict[str, Any], features) -> np.ndarray:
    """``sum_i beta_i x_i`` of a frozen signature on a features frame (study_id + columns)."""
    coef = signature["coefficients"]
    missing = [f for f in coef if f not in features.columns]
    if missing:
        raise UserError(f"the features lack the signature's feature(s) {', '.join(missing[:5])}")
    x = features[list(coef)].to_numpy(dtype=float)
    return x @ np.array(list(coef.values()), dtype=float)


def apply_signature(signature: dict[str, Any], features):
    """Scores and risk groups (frozen cut) of every patient: study_id, score, risk_group."""
    import pandas as pd

    score = score_features(signature, features)
    return pd.DataFrame({"study_id": features["study_id"].to_numpy(), "score": score,
                         "risk_group": risk_groups(score, signature["cut"]["value"])})


def fit_signature(features, cohort, settings: SignatureSettings, *, run: str = "", name: str = "",
                  feature_meta: dict[str, Any] | None = None,
                  progress: Callable[[float, str], None] = lambda f, m: None,
                  check_cancelled: Callable[[], None] = lambda: None) -> tuple[dict[str, Any], Any]:
    """Fit the signature on the training set and evaluate it on every set.

    ``features``: study_id + feature columns; ``cohort``: the cohort snapshot (study_id,
    split and the endpoint columns). Returns (frozen signature dict, scores frame with
    study_id, score, risk_group). Each degenerate step raises :class:`UserError` naming it.
    """
    from pathomics_desktop.stats.cutpoint import xtile
    from pathomics_desktop.stats.lasso_cox import lasso_cox_cv

    settings.check()
    feature_cols = [c for c in features.columns if c != "study_id"]
    frame, excluded = analysis_frame(features, cohort, settings.endpoint)
    train = frame[frame["split"] == "training"]
    label = settings.endpoint.upper()
    if len(train) < 2:
        raise UserError(f"signature: only {len(train)} training-set patient(s) have features and {label}")
    t, e = train["time"].to_numpy(), train["event"].to_numpy()
    n_events = int(e.sum())
    if n_events < 2:
        raise UserError(f"signature step 2 (univariate Cox): the training set has {n_events} {label} event(s) "
                        f"among {len(train)} patients; at least two are needed")
    x_all = train[feature_cols].to_numpy(dtype=float)

    progress(0.05, "removing constant features")
    sd = x_all.std(axis=0)
    varying = [j for j in range(len(feature_cols)) if sd[j] > 1e-12 * max(1.0, abs(x_all[:, j].mean()))]
    constant = [feature_cols[j] for j in range(len(feature_cols)) if j not in set(varying)]
    if not varying:
        raise UserError("signature step 1 (correlation filter): every feature is constant on the training set "
                        "(one class of predictions only?)")
    names1 = [feature_cols[j] for j in varying]
    x1 = x_all[:, varying]

    check_cancelled()
    progress(0.1, f"step 1: correlation filter (|{settings.corr_method} r| > {settings.corr_threshold})")
    kept1, dropped = correlation_filter(x1, names1, threshold=settings.corr_threshold, method=settings.corr_method)
    names2 = [names1[j] for j in kept1]
    x2 = x1[:, kept1]

    check_cancelled()
    progress(0.2, f"step 2: univariate Cox of {len(names2)} features")
    kept2, uni_rows = univariate_filter(t, e, x2, names2, threshold=settings.p_threshold)
    if not kept2:
        best = min((r for r in uni_rows if r["p"] is not None), key=lambda r: r["p"], default=None)
        hint = f"; smallest p = {best['p']:.3g} ({best['feature']})" if best else ""
        raise UserError(f"signature step 2 (univariate Cox): none of the {len(names2)} features passes "
                        f"p < {settings.p_threshold} for {label} on the training set{hint}")
    names3 = [names2[j] for j in kept2]
    x3 = x2[:, kept2]

    check_cancelled()
    progress(0.35, f"step 3: LASSO-Cox, {settings.folds}-fold cross-validation on {len(names3)} features")
    try:
        cv = lasso_cox_cv(t, e, x3, names=names3, folds=settings.folds, seed=settings.seed)
    except UserError as exc:
        raise UserError(f"signature step 3 (LASSO-Cox): {exc}") from None
    chosen = cv.coef_at(settings.rule)
    coefficients = {nm: chosen["coef"][nm] for nm in names3 if chosen["coef"][nm] != 0}
    if not coefficients:
        raise UserError(f"signature step 3 (LASSO-Cox): no feature has a non-zero coefficient at "
                        f"lambda.{settings.rule} "
                        f"= {chosen['lambda']:.4g} ({len(names3)} candidates)"
                        + ("; try rule 'min'" if settings.rule == "1se" else ""))

    check_cancelled()
    progress(0.7, "X-tile cut of the training score")
    sel = [names3.index(nm) for nm in coefficients]
    beta = np.array(list(coefficients.values()))
    train_score = x3[:, sel] @ beta
    if np.ptp(train_score) == 0:
        raise UserError("signature step 4 (X-tile cut): the training score is constant; no cut can be chosen")
    try:
        xt = xtile(t, e, train_score, minprop=settings.xtile_minprop, n_perm=settings.xtile_perm, seed=settings.seed)
    except UserError as exc:
        raise UserError(f"signature step 4 (X-tile cut): {exc}") from None
    cut = float(xt.cutpoint)

    signature: dict[str, Any] = {
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
            "mean": {nm: float(x3[:, names3.index(nm)].mean()) for nm in coefficients},
            "sd": {nm: float(x3[:, names3.index(nm)].std()) for nm in coefficients},
        },
        "cut": {"value": cut, "method": "X-tile single cut on the training score", "rule": "high risk: score > cut",
                "minprop": settings.xtile_minprop, "chisq": xt.statistic, "p_raw": xt.p_raw,
                "p_permutation": xt.p_adjusted, "n_permutations": settings.xtile_perm},
        "selection": {
            "features_in": len(feature_cols),
            "constant_removed": constant,
            "correlation": {"method": settings.corr_method, "threshold": settings.corr_threshold,
                            "rule": "column order; a later feature with |r| > threshold to a kept one is dropped",
                            "kept": len(names2), "dropped": dropped},
            "univariate": {"test": "Wald, Cox (Efron ties) per training-standardised feature",
                           "threshold": settings.p_threshold, "kept": names3,
                           "rows": [r for r in uni_rows if r["feature"] in set(names3)]},
            "lasso": {"folds": settings.folds, "seed": settings.seed, "rule": settings.rule,
                      "lambda_min": cv.lambda_min, "lambda_1se": cv.lambda_1se, "lambda": chosen["lambda"],
                      "selected": list(coefficients)},
        },
        "patients": {s: int((frame["split"] == s).sum()) for s in SETS} | {"excluded": excluded},
        "features": feature_meta or {},
    }
    check_cancelled()
    progress(0.85, "scoring every set with the frozen cut")
    scores = apply_signature(signature, frame[["study_id", *feature_cols]])
    sets: dict[str, Any] = {}
    for s in SETS:
        mask = (frame["split"] == s).to_numpy()
        if not mask.any():
            sets[s] = {"n": 0, "notes": ["no patients"]}
            continue
        sub_t, sub_e = frame.loc[mask, "time"].to_numpy(), frame.loc[mask, "event"].to_numpy()
        if sub_e.sum() == 0:
            sets[s] = _clean({"n": int(mask.sum()), "events": 0, "notes": ["no events"]})
            continue
        sets[s] = evaluate_set(sub_t, sub_e, scores["score"].to_numpy()[mask], cut)
    signature["sets"] = sets
    signature["training_multivariable"] = _multivariable(t, e, x3[:, sel], list(coefficients))
    if "center" in frame.columns:
        centers = frame["center"].astype(str).to_numpy()
        ext = (frame["split"] == "external").to_numpy()
        signature["external_centers"] = {}
        for c in sorted(set(centers[ext])):
            m = ext & (centers == c)
            if frame.loc[m, "event"].sum() == 0:
                signature["external_centers"][c] = {"n": int(m.sum()), "events": 0, "notes": ["no events"]}
                continue
            signature["external_centers"][c] = evaluate_set(frame.loc[m, "time"].to_numpy(),
                                                            frame.loc[m, "event"].to_numpy(),
                                                            scores["score"].to_numpy()[m], cut)
        signature["mixed_effects"] = _mixed_effects(frame, scores["score"].to_numpy() > cut)
    return _clean(signature), scores


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


def write_signature(project, name: str, signature: dict[str, Any], scores) -> tuple[Path, Path]:
    """Write ``signature/<name>.json`` and ``signature/<name>_scores.parquet`` atomically."""
    json_path, scores_path = signature_paths(project, name)
    with atomic_path(scores_path) as tmp:
        scores.to_parquet(tmp, index=False)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(signature, indent=2, sort_keys=False), encoding="utf-8")
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
