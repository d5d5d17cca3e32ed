"""ROC figure descriptions (Qt-free): the time-dependent ROC equals ``stats.tdroc`` called
directly on the same filtered patients, and the patch models' ROC equals ``stats.roc``
(DeLong) on the predictions joined by hand with the slide registry and the prognosis labels.

The project is the SYNTHETIC demo cohort with real synthetic slides (pyramidal TIFFs read by
OpenSlide) for six labelled training patients; the patch predictions of two model runs are
SYNTHETIC numbers written as inference writes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.roc import build_model_roc, build_roc, build_td_roc
from pathomics_desktop.stats.roc import delong_test, roc_analysis
from pathomics_desktop.stats.tdroc import bootstrap_td_auc, cumulative_dynamic_auc, roc_curve_at

RUNS = ("run_a", "run_b")


def write_synthetic_predictions(root, slide_labels: dict[int, int], seed: int = 5) -> None:
    """SYNTHETIC patch predictions of two runs (16 tiles a slide), as inference writes them:
    ``predictions/<run>/<slide_id>.parquet`` with slide_id, x, y, prob, pred. Run A separates
    the classes better than run B."""
    rng = np.random.default_rng(seed)
    for k, run in enumerate(RUNS):
        folder = root / "predictions" / run
        folder.mkdir(parents=True, exist_ok=True)
        for slide_id, label in slide_labels.items():
            xy = np.array([(128 * i, 128 * j) for i in range(4) for j in range(4)])
            logit = (1.5 - k) * (2 * label - 1) + rng.normal(scale=1.0, size=len(xy))
            prob = 1 / (1 + np.exp(-logit))
            pd.DataFrame({"slide_id": slide_id, "x": xy[:, 0], "y": xy[:, 1], "prob": prob.astype("float32"),
                          "pred": (prob >= 0.5).astype("int8")}).to_parquet(folder / f"{slide_id}.parquet", index=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The demo project, slides for three poor- and three good-prognosis training patients
    (five with QC ok, one left pending) and the SYNTHETIC predictions of two runs."""
    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.demo.cohort import create_demo_project
    from pathomics_desktop.demo.cohort_slides import add_demo_slides
    from pathomics_desktop.figures.roc import prognosis_labels
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.registry.slides import list_slides, set_slide_qc

    root = tmp_path_factory.mktemp("roc-figure") / "demo"
    create_demo_project(root)
    project = Project.load(root)
    cohort = cohort_frame(root)
    cohort = cohort[cohort["included"] & (cohort["split"] == "training")]
    labels = prognosis_labels(cohort)
    chosen = labels.groupby("label").head(3)
    add_demo_slides(project, size=512, study_ids=chosen["study_id"])
    registry = open_project_registry(project)
    try:
        slides = list_slides(registry)
        for slide in slides[:5]:
            set_slide_qc(registry, slide["id"], "ok", user="tester")
    finally:
        registry.dispose()
    label_of = dict(zip(chosen["study_id"], chosen["label"]))
    write_synthetic_predictions(root, {s["id"]: int(label_of[s["study_id"]]) for s in slides})
    return project


@pytest.fixture(scope="module")
def source(project):
    return AnalysisSource.open(project)


def complete(frame, columns):
    sub = frame[columns].astype(float).dropna()
    return sub.iloc[:, 0].to_numpy(), sub.iloc[:, 1].to_numpy() == 1, sub.iloc[:, 2].to_numpy()


def test_td_auc_equals_stats_tdroc(source):
    flt = CohortFilter(datasets=("training", "internal"))
    frame = source.frame(flt)
    model = build_td_roc(source, frame, {"endpoint": "os"})
    assert model.times == [12.0, 36.0, 60.0]
    assert [m.column for m in model.markers] == ["tnm_ordinal", "ca19_9"]  # no signature applied
    for marker in model.markers:
        t, e, x = complete(frame, ["os_months", "os_event", marker.column])
        assert marker.n == len(t) and marker.events == int(e.sum())
        assert marker.n_missing == len(frame) - len(t)
        expected = cumulative_dynamic_auc(t, e, x, model.times).auc
        assert np.allclose(marker.auc, expected, rtol=0, atol=1e-12)
        assert marker.ci_lower == [None] * 3  # no bootstrap unless asked
        for tk in model.times:
            roc = roc_curve_at(t, e, x, tk)
            curve = marker.curves[tk]
            assert curve["auc"] == pytest.approx(roc["auc"], abs=1e-12)
            # the thinned points keep the curve: its trapezoid area is still the AUC
            assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(roc["auc"], abs=1e-9)
        # the AUC(t) curve's grid points equal stats at those times
        grid = marker.grid_times[::7]
        assert np.allclose(np.array(marker.grid_auc)[::7], cumulative_dynamic_auc(t, e, x, grid).auc, atol=1e-12)
    table = model.table_rows()
    assert table[0][:3] == ["TNM stage", model.markers[0].n, model.markers[0].events]
    assert table[0][3] == f"{model.markers[0].auc[0]:.3f}"


def test_bootstrap_cis_only_when_asked_and_equal_stats(source):
    frame = source.frame(CohortFilter(datasets=("training",)))
    model = build_td_roc(source, frame, {"endpoint": "rfs", "markers": ["ca19_9"], "bootstrap": 30, "seed": 11})
    assert model.times == [12.0, 24.0, 36.0]
    t, e, x = complete(frame, ["rfs_months", "rfs_event", "ca19_9"])
    expected = bootstrap_td_auc(t, e, x, model.times, n_boot=30, seed=11)
    marker = model.markers[0]
    assert np.allclose(marker.ci_lower, expected.ci_lower) and np.allclose(marker.ci_upper, expected.ci_upper)
    assert model.table_rows()[0][3] == (f"{expected.auc[0]:.3f} ({expected.ci_lower[0]:.3f}-"
                                        f"{expected.ci_upper[0]:.3f})")


def test_signature_score_is_a_default_marker_and_bad_times_are_explained(source):
    frame = source.frame(CohortFilter())
    rng = np.random.default_rng(1)
    scored = frame.assign(pathomics_os_score=frame["tnm_ordinal"].fillna(2) + rng.normal(size=len(frame)))
    model = build_td_roc(source, scored, {"times": [12, 10_000]})
    assert [m.label for m in model.markers] == ["Pathomics signature", "TNM stage", "CA19-9"]
    signature = model.markers[0]
    t, e, x = complete(scored, ["os_months", "os_event", "pathomics_os_score"])
    assert signature.auc[0] == pytest.approx(cumulative_dynamic_auc(t, e, x, [12]).auc[0], abs=1e-12)
    assert signature.auc[1] is None and "AUC(10000): no cases or no controls" in signature.notes[0]
    with pytest.raises(UserError, match="cannot be estimated at any chosen time"):
        build_td_roc(source, scored, {"times": [10_000]})
    with pytest.raises(UserError, match="apply a signature first"):
        build_td_roc(source, frame, {"markers": ["pathomics_rfs_score"], "endpoint": "rfs"})


def expected_tiles(project, frame, run):
    """The predictions of ``run`` joined by hand: pandas per file, QC-ok slides from the slide
    list, the label from the RFS rule (poor <= 12 months with recurrence, good > 36 months)."""
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.registry.slides import list_slides

    registry = open_project_registry(project)
    try:
        slides = {s["id"]: s["study_id"] for s in list_slides(registry) if s["qc_status"] == "ok"}
    finally:
        registry.dispose()
    poor = frame.loc[(frame["rfs_event"] == 1) & (frame["rfs_months"] <= 12), "study_id"]
    good = frame.loc[frame["rfs_months"] > 36, "study_id"]
    label = {**{s: 1 for s in poor}, **{s: 0 for s in good}}
    parts = []
    for path in sorted((project.root / "predictions" / run).glob("*.parquet")):
        part = pd.read_parquet(path)
        sid = int(part["slide_id"].iloc[0])
        if sid in slides and slides[sid] in label:
            parts.append(part.assign(label=label[slides[sid]]))
    return pd.concat(parts, ignore_index=True)


def test_model_roc_equals_delong(project, source):
    frame = source.frame(CohortFilter())
    model = build_model_roc(source, frame, {"project": str(project.root)})
    assert model.runs == list(RUNS) and model.n_slides == 5  # the pending slide is left out
    tiles = {run: expected_tiles(project, frame, run) for run in RUNS}
    for run in RUNS:
        patch = tiles[run]
        slide = patch.groupby("slide_id").agg(prob=("prob", "mean"), label=("label", "first"))
        for level, data in (("patch", patch), ("slide", slide)):
            got = model.roc(run, level)
            want = roc_analysis(data["label"].to_numpy(), data["prob"].to_numpy())
            assert got.n == len(data) and got.positives == int(data["label"].sum())
            assert (got.auc, got.ci_lower, got.ci_upper) == pytest.approx((want.auc, want.ci_lower, want.ci_upper))
            assert got.sensitivity == pytest.approx(want.sensitivity)
            assert got.fpr[0] == 0 and got.tpr[-1] == 1
    assert model.n_patients == 5
    tests = {t["level"]: t for t in model.tests}
    a, b = tiles["run_a"], tiles["run_b"].rename(columns={"prob": "prob_b"})
    joined = a.merge(b[["slide_id", "x", "y", "prob_b"]], on=["slide_id", "x", "y"])
    want = delong_test(joined["label"].to_numpy(), joined["prob"].to_numpy(), joined["prob_b"].to_numpy())
    assert tests["patch"]["p"] == pytest.approx(want["p"]) and tests["patch"]["z"] == pytest.approx(want["z"])
    assert tests["patch"]["n"] == 5 * 16
    slide_a = a.groupby("slide_id")["prob"].mean()
    slide_b = b.groupby("slide_id")["prob_b"].mean()
    labels = a.groupby("slide_id")["label"].first()
    want = delong_test(labels.to_numpy(), slide_a.to_numpy(), slide_b.loc[slide_a.index].to_numpy())
    assert tests["slide"]["difference"] == pytest.approx(want["difference"])
    assert tests["slide"]["p"] == pytest.approx(want["p"])
    assert model.test_rows()[0][0] == "patch"


def test_model_roc_follows_the_cohort(project, source):
    frame = source.frame(CohortFilter())
    from pathomics_desktop.figures.roc import qc_ok_slides

    full = build_model_roc(source, frame, {"project": str(project.root), "runs": ["run_a"]})
    tiles = expected_tiles(project, frame, "run_a")
    poor_slide = int(tiles.loc[tiles["label"] == 1, "slide_id"].iloc[0])
    slides = qc_ok_slides(project.root)
    study_of = dict(zip(slides["slide_id"], slides["study_id"]))
    fewer = frame[frame["study_id"] != study_of[poor_slide]]
    part = build_model_roc(source, fewer, {"project": str(project.root), "runs": ["run_a"]})
    assert part.n_slides == full.n_slides - 1 and part.n_patients == full.n_patients - 1
    kept = tiles[tiles["slide_id"] != poor_slide]
    want = roc_analysis(kept["label"].to_numpy(), kept["prob"].to_numpy())
    assert part.roc("run_a", "patch").auc == pytest.approx(want.auc)
    assert part.tests == [] and part.notes == ["one model run: no pairwise DeLong test"]


def test_without_predictions_the_comparison_says_so_and_td_still_works(project, source, tmp_path):
    frame = source.frame(CohortFilter())
    with pytest.raises(UserError, match="no patch-model predictions"):
        build_roc(source, frame, {"mode": "models", "project": str(tmp_path)})
    with pytest.raises(UserError, match="has no predictions"):
        build_model_roc(source, frame, {"project": str(project.root), "runs": ["nope"]})
    model = build_roc(source, frame, {"mode": "td"})
    assert model.to_dict()["mode"] == "td" and len(model.markers) == 2
