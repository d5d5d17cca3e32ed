"""ROC figure descriptions: time-dependent ROC of survival markers, and the ROC of the patch models.

**Time-dependent ROC** (study Figure 4A-F): for each marker (the pathomics signature score
``pathomics_<endpoint>_score``, TNM stage as the ordinal ``tnm_ordinal`` I=1 .. IV=4, CA19-9 in
U/mL; a higher value means a higher risk) the cumulative/dynamic AUC(t) with Uno's IPCW
weights (:func:`~pathomics_desktop.stats.tdroc.cumulative_dynamic_auc`) at the chosen times
(months; OS 12/36/60, RFS 12/24/36 by default), the ROC points at each of them
(:func:`~pathomics_desktop.stats.tdroc.roc_curve_at`) and AUC(t) on a grid of times for the
AUC-versus-time plot. Percentile bootstrap CIs
(:func:`~pathomics_desktop.stats.tdroc.bootstrap_td_auc`, subjects resampled) only when
``params["bootstrap"]`` asks for resamples: the interactive view computes them on request.
Patients missing the marker, the time or the event are left out of that marker only.

**Model comparison** (study Figure 3A-C, Table S1): the patch models' predictions
(``<project>/predictions/<run>/<slide_id>.parquet``, ``slide_id, x, y, prob``, written by
inference) of the slides with QC "ok" of the patients in the filtered cohort who carry a
prognosis label (poor: recurrence within 12 months, good: recurrence-free beyond 36 months,
:func:`~pathomics_desktop.learning.project_data.prognosis_label`). Patch level: every tile
carries its patient's label; slide level: the mean patch probability of the slide. AUC with
the DeLong 95% CI and the Youden-cut classification (:func:`~pathomics_desktop.stats.roc.roc_analysis`),
and the DeLong test of every pair of runs on the same tiles or slides
(:func:`~pathomics_desktop.stats.roc.delong_test`), as ``pathomics compare`` does per data set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.style import format_estimate_ci, format_p

#: endpoint -> (time column, event column, label)
ENDPOINTS = {"os": ("os_months", "os_event", "Overall survival"),
             "rfs": ("rfs_months", "rfs_event", "Recurrence-free survival")}
#: fixed marker labels (the signature score's label depends on the endpoint)
MARKER_LABELS = {"tnm_ordinal": "TNM stage", "ca19_9": "CA19-9", "age": "Age"}
#: resamples the view's "Compute CIs (bootstrap)" button asks for
VIEW_BOOTSTRAP = 200
BOOTSTRAP_SEED = 20240607
#: AUC(t)-versus-time grid: this many points up to the 90th percentile of follow-up
GRID_POINTS = 40
GRID_MIN = 10
LEVELS = ("patch", "slide")


def score_column(endpoint: str) -> str:
    return f"pathomics_{endpoint}_score"


def marker_label(column: str) -> str:
    if column.startswith("pathomics_") and column.endswith("_score"):
        return "Pathomics signature"
    return MARKER_LABELS.get(column, column)


def default_markers(frame, endpoint: str) -> list[str]:
    """The signature score (when a signature has been applied), TNM stage and CA19-9."""
    out = []
    score = score_column(endpoint)
    if score in frame.columns and frame[score].notna().any():
        out.append(score)
    return out + [c for c in ("tnm_ordinal", "ca19_9") if c in frame.columns]


def default_times(endpoint: str) -> list[float]:
    from pathomics_desktop.signature.report import AUC_TIMES

    return [float(t) for t in AUC_TIMES[endpoint]]


def _endpoint(params: dict) -> str:
    endpoint = str(params.get("endpoint", "os")).lower()
    if endpoint not in ENDPOINTS:
        raise UserError(f"unknown endpoint {endpoint!r}: choose os or rfs")
    return endpoint


def thin_curve(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC points without those on a straight line between their neighbours (the drawn
    curve is unchanged; sklearn's ``drop_intermediate``)."""
    fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
    if fpr.size <= 2:
        return fpr, tpr
    keep = np.r_[True, np.logical_or(np.diff(fpr, 2) != 0, np.diff(tpr, 2) != 0), True]
    return fpr[keep], tpr[keep]


def _none(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


# ----------------------------------------------------------------------------------------------
# time-dependent ROC
# ----------------------------------------------------------------------------------------------


@dataclass
class MarkerRoc:
    """One marker: AUC(t) at ``times`` (None where not estimable), CIs when bootstrapped, the
    ROC points at each estimable time (``curves[time] = {"fpr", "tpr", "auc"}``) and AUC(t) on
    ``grid_times``."""

    column: str
    label: str
    n: int
    n_missing: int
    events: int
    times: list[float]
    auc: list[float | None]
    ci_lower: list[float | None]
    ci_upper: list[float | None]
    curves: dict[float, dict[str, Any]] = field(default_factory=dict)
    grid_times: list[float] = field(default_factory=list)
    grid_auc: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def auc_text(self, k: int) -> str:
        return format_estimate_ci(self.auc[k], self.ci_lower[k], self.ci_upper[k], digits=3)

    def to_dict(self) -> dict:
        return {"marker": self.column, "label": self.label, "n": self.n, "n_missing": self.n_missing,
                "events": self.events,
                "td_auc": [{"time": t, "auc": self.auc[k], "ci_lower": self.ci_lower[k],
                            "ci_upper": self.ci_upper[k]} for k, t in enumerate(self.times)],
                "roc": [{"time": t, "auc": c["auc"], "fpr": [round(v, 5) for v in c["fpr"]],
                         "tpr": [round(v, 5) for v in c["tpr"]]} for t, c in self.curves.items()],
                "auc_over_time": {"time": list(self.grid_times), "auc": list(self.grid_auc)},
                "notes": list(self.notes)}


@dataclass
class TimeDependentRoc:
    """Time-dependent ROC of several markers for one endpoint (see the module docstring)."""

    endpoint: str
    endpoint_label: str
    times: list[float]
    markers: list[MarkerRoc]
    bootstrap: int
    seed: int
    notes: list[str] = field(default_factory=list)

    def header(self) -> list[str]:
        return ["Marker", "n", "Events"] + [f"AUC {t:g} months (95% CI)" for t in self.times]

    def table_rows(self) -> list[list[Any]]:
        """Marker, n, events and "AUC (95% CI)" per time ("-" where not estimable)."""
        return [[m.label, m.n, m.events] + [m.auc_text(k) for k in range(len(self.times))]
                for m in self.markers]

    def to_dict(self) -> dict:
        return {"mode": "td", "endpoint": self.endpoint, "times": list(self.times),
                "bootstrap": self.bootstrap, "seed": self.seed if self.bootstrap else None,
                "markers": [m.to_dict() for m in self.markers],
                "table": {"header": self.header(), "rows": self.table_rows()},
                "notes": list(self.notes)}


def _auc_at(marker, times: Sequence[float], notes: list[str]) -> dict[float, float]:
    """AUC(t) of a prepared :class:`~pathomics_desktop.stats.tdroc.IpcwMarker` at each
    estimable time; a time the IPCW estimate refuses is noted and skipped."""
    if not len(times):
        return {}
    try:
        return dict(zip((float(v) for v in times), (float(v) for v in marker.auc(times))))
    except UserError:
        pass
    out = {}
    for tk in times:
        try:
            out[float(tk)] = float(marker.auc([tk])[0])
        except UserError as exc:
            notes.append(f"AUC({tk:g}): {exc}")
    return out


def _grid(t: np.ndarray, e: np.ndarray) -> list[float]:
    """Evaluation times for AUC(t) versus time: equally spaced up to the 90th percentile of
    the follow-up times, each with at least ``GRID_MIN`` cases and controls (fewer make the
    drawn curve jump)."""
    upper = float(np.quantile(t, 0.9))
    if not upper > 0:
        return []
    grid = np.linspace(upper / GRID_POINTS, upper, GRID_POINTS)
    event_times = np.sort(t[e])
    cases = np.searchsorted(event_times, grid, side="right")
    controls = t.size - np.searchsorted(np.sort(t), grid, side="right")
    return [float(g) for g, a, b in zip(grid, cases, controls) if a >= GRID_MIN and b >= GRID_MIN]


def marker_roc(frame, time: str, event: str, column: str, times: Sequence[float], *,
               bootstrap: int = 0, seed: int = BOOTSTRAP_SEED, grid: bool = True) -> MarkerRoc:
    """AUC(t), CIs (when ``bootstrap`` >= 10 resamples), ROC points and the AUC(t) grid of one marker."""
    from pathomics_desktop.signature.report import _estimable_times
    from pathomics_desktop.stats.tdroc import IpcwMarker, bootstrap_td_auc

    times = [float(v) for v in times]
    sub = frame[[time, event, column]].apply(lambda s: s.astype(float)).dropna()
    t, e, x = sub[time].to_numpy(float), sub[event].to_numpy(float) == 1, sub[column].to_numpy(float)
    res = MarkerRoc(column, marker_label(column), len(sub), len(frame) - len(sub), int(e.sum()), times,
                    [None] * len(times), [None] * len(times), [None] * len(times))
    if len(sub) == 0:
        res.notes.append("no patients with this marker")
        return res
    if np.unique(x).size < 2:
        res.notes.append("the marker has a single value in these patients: the AUC is undefined")
        return res
    usable = _estimable_times(t, e, times)
    for tk in times:
        if tk not in usable:
            res.notes.append(f"AUC({tk:g}): no cases or no controls at this time")
    marker = IpcwMarker(t, e, x)  # the weights, tie groups and time order, once for every time
    aucs = _auc_at(marker, usable, res.notes)
    usable = [tk for tk in usable if tk in aucs]
    lower = upper = {}
    if bootstrap and usable:
        boot = bootstrap_td_auc(t, e, x, usable, n_boot=int(bootstrap), seed=seed)
        lower = dict(zip(usable, (_none(v) for v in boot.ci_lower)))
        upper = dict(zip(usable, (_none(v) for v in boot.ci_upper)))
    for k, tk in enumerate(times):
        res.auc[k], res.ci_lower[k], res.ci_upper[k] = aucs.get(tk), lower.get(tk), upper.get(tk)
    for tk in usable:
        roc = marker.curve(tk)
        fpr, tpr = thin_curve(roc["fpr"], roc["tpr"])
        res.curves[tk] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": roc["auc"]}
    if grid:
        on_grid = _auc_at(marker, _grid(t, e), [])
        res.grid_times, res.grid_auc = list(on_grid), list(on_grid.values())
    return res


def _times(params: dict, endpoint: str) -> list[float]:
    raw = params.get("times") or default_times(endpoint)
    try:
        times = sorted({float(v) for v in raw})
    except (TypeError, ValueError):
        raise UserError(f"times must be numbers of months, e.g. 12, 36, 60 (got {raw!r})") from None
    if not all(math.isfinite(v) and v > 0 for v in times):
        raise UserError(f"times must be positive numbers of months (got {raw!r})")
    return times


def build_td_roc(source, frame, params: dict) -> TimeDependentRoc:
    """Time-dependent ROC. ``params``: ``endpoint`` ("os"/"rfs"), ``times`` (months),
    ``markers`` (columns; default :func:`default_markers`), ``bootstrap`` (resamples, 0 = no
    CIs), ``seed``, ``grid`` (AUC(t) on a grid, default true)."""
    endpoint = _endpoint(params)
    time, event, label = ENDPOINTS[endpoint]
    times = _times(params, endpoint)
    markers = list(params.get("markers") or default_markers(frame, endpoint))
    bootstrap = int(params.get("bootstrap") or 0)
    if 0 < bootstrap < 10:
        raise UserError("the bootstrap needs at least 10 resamples")
    seed = int(params.get("seed", BOOTSTRAP_SEED))
    notes = []
    events = frame[event].astype(float).fillna(0).sum() if event in frame.columns else 0
    if not events:
        raise UserError(f"No {label.lower()} events among the selected patients: AUC(t) needs events. "
                        "Widen the filter.")
    results = []
    for column in markers:
        if column not in frame.columns or not frame[column].notna().any():
            what = "apply a signature first" if column.startswith("pathomics_") else "not recorded"
            notes.append(f"{marker_label(column)}: no values in the cohort snapshot ({what})")
            continue
        results.append(marker_roc(frame, time, event, column, times, bootstrap=bootstrap, seed=seed,
                                  grid=bool(params.get("grid", True))))
    if not results:
        raise UserError("No marker to show: " + "; ".join(notes) if notes else "Choose at least one marker.")
    if not any(a is not None for m in results for a in m.auc):
        raise UserError("AUC(t) cannot be estimated at any chosen time: "
                        + "; ".join(f"{m.label}: {n}" for m in results for n in m.notes[:1])
                        + ". Choose times inside the follow-up.")
    return TimeDependentRoc(endpoint, label, times, results, bootstrap, seed, notes)


# ----------------------------------------------------------------------------------------------
# the patch models
# ----------------------------------------------------------------------------------------------


_PREDICTION_CACHE: dict[str, tuple[tuple, Any]] = {}


def prediction_runs(root: str | Path) -> list[str]:
    """The model runs with predictions in ``<root>/predictions`` (sorted)."""
    folder = Path(root) / "predictions"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.parquet")))


def read_predictions(root: str | Path, run: str):
    """``slide_id, x, y, prob`` of every tile of ``run`` (one DuckDB scan of the run's Parquet
    files; kept in memory until a file of the run changes)."""
    import duckdb

    folder = Path(root) / "predictions" / run
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise UserError(f"no predictions for model run {run!r} in {folder}: run inference first")
    key = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    cached = _PREDICTION_CACHE.get(str(folder))
    if cached is not None and cached[0] == key:
        return cached[1]
    con = duckdb.connect()
    try:
        frame = con.execute("SELECT slide_id::BIGINT AS slide_id, x::BIGINT AS x, y::BIGINT AS y, "
                            "prob::DOUBLE AS prob FROM read_parquet(?)", [[str(f) for f in files]]).df()
    finally:
        con.close()
    _PREDICTION_CACHE[str(folder)] = (key, frame)
    return frame


def qc_ok_slides(root: str | Path):
    """``slide_id, study_id`` of the registry's slides with QC status "ok"."""
    import pandas as pd
    from sqlalchemy import select

    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.models import Patient, Slide
    from pathomics_desktop.registry.service import open_project_registry

    registry = open_project_registry(Project.load(Path(root)))
    try:
        with registry.session() as session:
            rows = session.execute(select(Slide.id, Patient.study_id).join(Patient)
                                   .where(Slide.qc_status == "ok")).all()
    finally:
        registry.dispose()
    return pd.DataFrame(rows, columns=["slide_id", "study_id"]).astype({"slide_id": "int64", "study_id": str})


def prognosis_labels(frame):
    """``study_id, label`` (1 poor, 0 good) of the patients of ``frame`` who have one."""
    import pandas as pd

    from pathomics_desktop.learning.project_data import prognosis_label

    months = frame["rfs_months"].astype(float).tolist()
    events = frame["rfs_event"].astype(float).tolist()
    labels = [prognosis_label(None if m != m else m, None if v != v else int(v)) for m, v in zip(months, events)]
    out = pd.DataFrame({"study_id": frame["study_id"].astype(str).to_numpy(), "label": labels})
    return out[out["label"].notna()].astype({"label": int})


@dataclass
class ModelRoc:
    """One run at one level: AUC with the DeLong CI, the Youden cut's sensitivity and
    specificity, and the ROC points (``auc`` None and a ``note`` when only one class)."""

    run: str
    level: str
    n: int
    positives: int
    auc: float | None = None
    ci_lower: float | None = None
    ci_upper: float | None = None
    se: float | None = None
    cut: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    ppv: float | None = None
    npv: float | None = None
    fpr: list[float] = field(default_factory=list)
    tpr: list[float] = field(default_factory=list)
    note: str | None = None

    def auc_text(self) -> str:
        return format_estimate_ci(self.auc, self.ci_lower, self.ci_upper, digits=3)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("run", "level", "n", "positives", "auc", "ci_lower", "ci_upper",
                                             "se", "cut", "sensitivity", "specificity", "ppv", "npv", "note")}
        out.update(fpr=[round(v, 5) for v in self.fpr], tpr=[round(v, 5) for v in self.tpr])
        return out


@dataclass
class ModelComparison:
    """The patch models' ROC at patch and slide level and the pairwise DeLong tests."""

    runs: list[str]
    rocs: list[ModelRoc]
    tests: list[dict]
    n_patients: int
    n_slides: int
    notes: list[str] = field(default_factory=list)

    def roc(self, run: str, level: str) -> ModelRoc:
        return next(r for r in self.rocs if r.run == run and r.level == level)

    def header(self) -> list[str]:
        return ["Model", "Level", "n", "Poor prognosis", "AUC (95% CI)", "Sensitivity", "Specificity"]

    def table_rows(self) -> list[list[Any]]:
        def f(v):
            return "-" if v is None else f"{v:.3f}"

        return [[r.run, r.level, r.n, r.positives, r.auc_text() if r.auc is not None else f"- ({r.note})",
                 f(r.sensitivity), f(r.specificity)] for r in self.rocs]

    def test_header(self) -> list[str]:
        return ["Level", "Model A", "Model B", "AUC A", "AUC B", "Difference", "z", "p (DeLong)"]

    def test_rows(self) -> list[list[Any]]:
        return [[t["level"], t["a"], t["b"], f"{t['auc1']:.3f}", f"{t['auc2']:.3f}", f"{t['difference']:+.3f}",
                 f"{t['z']:.2f}", format_p(t["p"])] for t in self.tests]

    def to_dict(self) -> dict:
        return {"mode": "models", "runs": list(self.runs), "n_patients": self.n_patients,
                "n_slides": self.n_slides, "rocs": [r.to_dict() for r in self.rocs],
                "tests": [dict(t) for t in self.tests],
                "table": {"header": self.header(), "rows": self.table_rows()},
                "test_table": {"header": self.test_header(), "rows": self.test_rows()},
                "notes": list(self.notes)}


def _model_roc(run: str, level: str, label: np.ndarray, score: np.ndarray) -> ModelRoc:
    from sklearn.metrics import roc_curve

    from pathomics_desktop.stats.roc import roc_analysis

    out = ModelRoc(run, level, int(label.size), int(label.sum()))
    if np.unique(label).size < 2:
        out.note = "only one prognosis class"
        return out
    res = roc_analysis(label, score)
    fpr, tpr, _ = roc_curve(label, score)
    out.auc, out.ci_lower, out.ci_upper, out.se = res.auc, res.ci_lower, res.ci_upper, res.se
    out.cut, out.sensitivity, out.specificity, out.ppv, out.npv = (res.cut, res.sensitivity, res.specificity,
                                                                   res.ppv, res.npv)
    out.fpr, out.tpr = fpr.tolist(), tpr.tolist()
    return out


def labelled_predictions(root: str | Path, runs: Sequence[str], frame) -> dict[str, Any]:
    """Per run, the tiles (``slide_id, x, y, prob, study_id, label``) of the QC-ok slides of
    the labelled patients of ``frame``."""
    slides = qc_ok_slides(root).merge(prognosis_labels(frame), on="study_id")
    return {run: read_predictions(root, run).merge(slides, on="slide_id") for run in runs}


def build_model_roc(source, frame, params: dict) -> ModelComparison:
    """Patch- and slide-level ROC of the patch models. ``params``: ``project`` (the project
    folder), ``runs`` (default: every run with predictions)."""
    root = params.get("project")
    if not root:
        raise UserError("the model comparison needs the project folder")
    available = prediction_runs(root)
    if not available:
        raise UserError("This project has no patch-model predictions yet (predictions/<model>/ is empty). "
                        "Train a patch model and run inference (Jobs > New job, or `pathomics infer --model RUN`); "
                        "the time-dependent ROC works without them.")
    runs = list(params.get("runs") or available)
    unknown = [r for r in runs if r not in available]
    if unknown:
        raise UserError(f"model run {unknown[0]!r} has no predictions; runs with predictions: {', '.join(available)}")
    tiles = labelled_predictions(root, runs, frame)
    if all(t.empty for t in tiles.values()):
        raise UserError("None of the selected patients has a predicted slide and a prognosis label "
                        "(poor: recurrence within 12 months; good: recurrence-free beyond 36 months). "
                        "Widen the filter.")
    rocs, slide_scores, patch_scores = [], {}, {}
    for run, part in tiles.items():
        slide = part.groupby("slide_id").agg(prob=("prob", "mean"), label=("label", "first"))
        slide_scores[run], patch_scores[run] = slide, part.set_index(["slide_id", "x", "y"])[["prob", "label"]]
        rocs.append(_model_roc(run, "patch", part["label"].to_numpy(), part["prob"].to_numpy()))
        rocs.append(_model_roc(run, "slide", slide["label"].to_numpy(), slide["prob"].to_numpy()))
    tests = _pairwise_tests(runs, {"patch": patch_scores, "slide": slide_scores})
    notes = [] if len(runs) > 1 else ["one model run: no pairwise DeLong test"]
    all_tiles = next(iter(tiles.values()))
    return ModelComparison(runs, rocs, tests, int(all_tiles["study_id"].nunique()),
                           int(all_tiles["slide_id"].nunique()), notes)


def _pairwise_tests(runs: Sequence[str], scores: dict[str, dict]) -> list[dict]:
    """DeLong test of each pair of runs on the tiles (or slides) both predicted."""
    from pathomics_desktop.stats.roc import delong_test

    tests = []
    for level in LEVELS:
        for a, b in combinations(runs, 2):
            joined = scores[level][a].join(scores[level][b], lsuffix="_a", rsuffix="_b", how="inner")
            if joined.empty or joined["label_a"].nunique() < 2:
                continue
            test = delong_test(joined["label_a"].to_numpy(), joined["prob_a"].to_numpy(), joined["prob_b"].to_numpy())
            tests.append({"level": level, "a": a, "b": b, "n": int(len(joined)), **test})
    return tests


def build_roc(source, frame, params: dict):
    """The ROC view's computation: ``params["mode"]`` "td" (:func:`build_td_roc`) or
    "models" (:func:`build_model_roc`)."""
    if params.get("mode", "td") == "models":
        return build_model_roc(source, frame, params)
    return build_td_roc(source, frame, params)
