"""Patient features from patch predictions: histogram and Bag-of-Words (TF-IDF) aggregation.

Study section 5.4 ("Histogram Feature Aggregation", "Bag of Words (BoW) Feature Aggregation",
"Feature Early Fusion"): every patch of a slide has a probability ``prob`` = P(poor prognosis)
and a label ``pred`` (0/1), the probability kept to two decimals. The two "dictionaries" are

* probability values ``0.00, 0.01, ..., 1.00``: **101** terms (``round(prob * 100)``, half away
  from zero, on the float64 value of the stored float32);
* label values ``0, 1``: **2** terms.

The dictionary is fixed to every possible value (not only the values seen in training), so a
run always yields the same 206 columns in the same order. For each slide:

* ``histo_prob_XXX`` (101) and ``histo_pred_Y`` (2): relative frequencies, ``count / patches``.
  The study writes that the counts were "normalized using min-max normalization"; relative
  frequencies are used here (as the brief asks). Both are, per feature column, affine maps of
  the counts for slides with the same number of patches, and every later step (Pearson and
  Spearman correlation, univariate Cox p, LASSO on standardised columns) is invariant to
  affine maps of a column, so only the scale of the coefficients differs.
* ``bow_prob_XXX`` (101) and ``bow_pred_Y`` (2): TF-IDF of the term counts, each dictionary on
  its own, as scikit-learn's ``TfidfTransformer()`` defaults: ``tf`` = raw count,
  ``idf_j = ln((1 + n) / (1 + df_j)) + 1`` (n training slides, ``df_j`` training slides that
  contain term j), ``v = tf * idf``, then ``v / ||v||_2``. The idf is fitted on the slides of
  the TRAINING set only and then applied to every set (no information from validation sets).

Patient features are the mean over the patient's slides. Early fusion concatenates
``histo_prob (101) + histo_pred (2) + bow_prob (101) + bow_pred (2) = 206`` columns, the study's
"206 characteristics, comprising two sets of 101 probability features and two [sets of two]
predictive label features" (Table S7).

Counting runs in DuckDB over the prediction Parquet files in place (one ``GROUP BY`` for all
slides), so millions of patches never pass through pandas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from pathomics_desktop.analytics.sql import sql_literal
from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import atomic_path

PROB_TERMS = 101  #: probability dictionary 0.00 ... 1.00
PRED_TERMS = 2  #: label dictionary 0, 1
N_FEATURES = 2 * PROB_TERMS + 2 * PRED_TERMS  #: 206
TRAINING = "training"


def feature_names() -> list[str]:
    """The 206 column names in fusion order (``histo_prob_000`` is the bin of prob 0.00)."""
    prob = [f"{k:03d}" for k in range(PROB_TERMS)]
    pred = [str(k) for k in range(PRED_TERMS)]
    return ([f"histo_prob_{p}" for p in prob] + [f"histo_pred_{p}" for p in pred]
            + [f"bow_prob_{p}" for p in prob] + [f"bow_pred_{p}" for p in pred])


@dataclass
class SlideCounts:
    """Term counts per slide: ``prob[i, k]`` patches of slide i with rounded prob k/100,
    ``pred[i, y]`` patches with label y."""

    slide_ids: list[str]
    prob: np.ndarray
    pred: np.ndarray
    empty: list[str] = field(default_factory=list)  #: slides whose file has no patch


def count_terms(files: Mapping[str, Path]) -> SlideCounts:
    """Count the dictionary terms of each slide's prediction file (``slide_id -> path``).

    Raises :class:`UserError` naming the file for a missing column, a probability that is
    missing or outside [0, 1], or a label other than 0/1.
    """
    import duckdb

    if not files:
        raise UserError("no prediction files to aggregate")
    by_path = {str(Path(p).resolve()): sid for sid, p in files.items()}
    paths = sorted(by_path)
    listing = "[" + ", ".join(sql_literal(p) for p in paths) + "]"
    source = f"read_parquet({listing}, union_by_name = true, filename = true)"
    con = duckdb.connect()
    try:
        try:
            columns = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        except duckdb.Error as exc:
            raise UserError(f"cannot read the prediction files ({exc})") from None
        for needed in ("prob", "pred"):
            if needed not in columns:
                raise UserError(f"prediction files have no column {needed!r} (expected slide_id, x, y, prob, pred): "
                                f"{paths[0]}")
        bad = con.execute(
            f"""SELECT filename,
                   count(*) FILTER (WHERE prob IS NULL OR isnan(CAST(prob AS DOUBLE)) OR prob < 0 OR prob > 1),
                   count(*) FILTER (WHERE pred IS NULL OR pred NOT IN (0, 1)),
                   min(prob), max(prob)
                FROM {source} GROUP BY filename
                HAVING count(*) FILTER (WHERE prob IS NULL OR isnan(CAST(prob AS DOUBLE)) OR prob < 0 OR prob > 1) > 0
                    OR count(*) FILTER (WHERE pred IS NULL OR pred NOT IN (0, 1)) > 0
                ORDER BY filename LIMIT 1""").fetchall()
        if bad:
            name, n_prob, n_pred, lo, hi = bad[0]
            if n_prob:
                raise UserError(f"{name}: {n_prob} patch(es) with a probability missing or outside [0, 1] "
                                f"(column 'prob', range {lo} .. {hi})")
            raise UserError(f"{name}: {n_pred} patch(es) with a label other than 0/1 (column 'pred')")
        rows = con.execute(
            f"""SELECT filename, CAST(round(CAST(prob AS DOUBLE) * 100) AS INTEGER) AS term,
                       CAST(pred AS INTEGER) AS label, count(*) AS n
                FROM {source} GROUP BY ALL""").fetchall()
    finally:
        con.close()
    slide_ids = [by_path[p] for p in paths]
    index = {sid: i for i, sid in enumerate(slide_ids)}
    prob = np.zeros((len(slide_ids), PROB_TERMS))
    pred = np.zeros((len(slide_ids), PRED_TERMS))
    for name, term, label, n in rows:
        i = index[by_path[str(Path(name).resolve())]]
        prob[i, term] += n
        pred[i, label] += n
    empty = [sid for sid, total in zip(slide_ids, pred.sum(axis=1)) if total == 0]
    return SlideCounts(slide_ids, prob, pred, empty)


def fit_idf(counts: np.ndarray) -> np.ndarray:
    """Smoothed idf from the training documents (rows): ``ln((1 + n) / (1 + df_j)) + 1``."""
    n = counts.shape[0]
    if n == 0:
        raise UserError("TF-IDF: no training-set slide has predictions, the idf cannot be fitted")
    df = (counts > 0).sum(axis=0)
    return np.log((1.0 + n) / (1.0 + df)) + 1.0


def tfidf(counts: np.ndarray, idf: np.ndarray) -> np.ndarray:
    """``tf * idf`` per row, L2-normalised (a row without terms stays zero)."""
    v = counts * idf[None, :]
    norm = np.sqrt((v**2).sum(axis=1, keepdims=True))
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def relative_frequencies(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


@dataclass
class FeatureSet:
    """Patient features (``frame``: study_id + 206 columns) and how they were made."""

    frame: Any  # pandas.DataFrame
    meta: dict[str, Any]


def build_features(files: Mapping[str, Path], slide_patients: Mapping[str, str], splits: Mapping[str, str | None],
                   *, check_cancelled: Callable[[], None] = lambda: None) -> FeatureSet:
    """Patient features from prediction files.

    ``files``: slide id -> prediction Parquet; ``slide_patients``: slide id -> study id;
    ``splits``: study id -> data set ("training", "internal", "external"). Slides without a
    patient, or whose patient has no data set, are left out (counted in ``meta``).
    """
    usable = {sid: path for sid, path in files.items()
              if sid in slide_patients and splits.get(slide_patients[sid])}
    unmapped = sorted(set(files) - set(slide_patients))
    if not usable:
        raise UserError(f"none of the {len(files)} predicted slides belongs to an included patient with a data set "
                        f"({len(unmapped)} have no patient)")
    check_cancelled()
    counts = count_terms(usable)
    check_cancelled()
    keep = [i for i, sid in enumerate(counts.slide_ids) if sid not in set(counts.empty)]
    slide_ids = [counts.slide_ids[i] for i in keep]
    prob, pred = counts.prob[keep], counts.pred[keep]
    patients = np.array([slide_patients[sid] for sid in slide_ids], dtype=object)
    is_train = np.array([splits[p] == TRAINING for p in patients], dtype=bool)
    if not is_train.any():
        raise UserError("TF-IDF: no slide of a training-set patient has predictions; the idf is fitted on the "
                        "training set only")
    idf_prob, idf_pred = fit_idf(prob[is_train]), fit_idf(pred[is_train])
    frame, slides_per_patient = _patient_means(
        features_from_idf(prob, pred, {"prob": idf_prob, "pred": idf_pred}), patients)
    meta = {
        "features": N_FEATURES,
        "layout": {"histo_prob": PROB_TERMS, "histo_pred": PRED_TERMS, "bow_prob": PROB_TERMS,
                   "bow_pred": PRED_TERMS},
        "histogram": "relative frequency (count / patches of the slide)",
        "tfidf": "tf = count; idf = ln((1 + n) / (1 + df)) + 1 fitted on training slides; L2-normalised",
        "idf": {"prob": idf_prob.tolist(), "pred": idf_pred.tolist(), "training_slides": int(is_train.sum())},
        "patient": "mean over the patient's slides",
        "slides": len(slide_ids),
        "patches": int(pred.sum()),
        "patients": int(len(frame)),
        "max_slides_per_patient": int(slides_per_patient.max()),
        "empty_slides": counts.empty,
        "unmapped_slides": len(unmapped),
        "slides_without_data_set": len(files) - len(unmapped) - len(usable),
    }
    return FeatureSet(frame, meta)


def features_from_idf(prob_counts: np.ndarray, pred_counts: np.ndarray, idf: Mapping[str, Any]) -> np.ndarray:
    """The 206 slide features of new counts with a frozen idf (``meta["idf"]``)."""
    return np.hstack([relative_frequencies(prob_counts), relative_frequencies(pred_counts),
                      tfidf(prob_counts, np.asarray(idf["prob"], dtype=float)),
                      tfidf(pred_counts, np.asarray(idf["pred"], dtype=float))])


def _patient_means(slide_x: np.ndarray, patients: np.ndarray):
    """Patient features = mean over the patient's slides; (frame sorted by study_id, slides per patient)."""
    import pandas as pd

    names = feature_names()
    per_slide = pd.DataFrame(slide_x, columns=names)
    per_slide.insert(0, "study_id", patients)
    frame = per_slide.groupby("study_id", sort=True)[names].mean().reset_index()
    return frame, per_slide.groupby("study_id").size()


def features_with_frozen_idf(files: Mapping[str, Path], slide_patients: Mapping[str, str],
                             idf: Mapping[str, Any], *,
                             check_cancelled: Callable[[], None] = lambda: None):
    """Patient features (study_id + 206 columns) of any patients' slides with a FROZEN idf (the
    training set's, stored in the signature), as :func:`build_features` computes them for
    the patients it was fitted with: the same slides give the same features. Only slides
    in ``slide_patients`` are read; slides without patches are left out. Returns
    ``(frame, slide ids used)``."""
    usable = {sid: path for sid, path in files.items() if sid in slide_patients}
    if not usable:
        raise UserError(f"none of the {len(files)} predicted slides belongs to the patients to score")
    check_cancelled()
    counts = count_terms(usable)
    check_cancelled()
    keep = [i for i, sid in enumerate(counts.slide_ids) if sid not in set(counts.empty)]
    if not keep:
        raise UserError("every predicted slide of the patients to score is empty (no patches)")
    slide_ids = [counts.slide_ids[i] for i in keep]
    patients = np.array([slide_patients[sid] for sid in slide_ids], dtype=object)
    frame, _ = _patient_means(features_from_idf(counts.prob[keep], counts.pred[keep], idf), patients)
    return frame, slide_ids


def prediction_files(pred_dir: Path) -> dict[str, Path]:
    """``slide_id -> file`` for ``<slide_id>.parquet`` files of a predictions folder."""
    if not pred_dir.is_dir():
        raise UserError(f"no predictions folder {pred_dir}; run `pathomics infer --model {pred_dir.name}` first")
    files = {p.stem: p for p in sorted(pred_dir.glob("*.parquet")) if not p.name.startswith(".")}
    if not files:
        raise UserError(f"no prediction files in {pred_dir}; run `pathomics infer --model {pred_dir.name}` first")
    return files


def features_path(project, run: str) -> Path:
    return project.root / "features" / f"{run}_features.parquet"


def write_features(project, run: str, features: FeatureSet) -> Path:
    """Write ``features/<run>_features.parquet`` (study_id + 206 columns) and its
    ``<run>_features.json`` description, each atomically."""
    target = features_path(project, run)
    with atomic_path(target) as tmp:
        features.frame.to_parquet(tmp, index=False)
    meta_path = target.with_name(f"{run}_features.json")
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps({"run": run, **features.meta}, indent=2), encoding="utf-8")
    return target
