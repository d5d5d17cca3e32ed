"""The study's whole road on a small SYNTHETIC demo project, through the functions the CLI and
``make run`` use (:func:`pathomics_desktop.demo.pipeline.run_headless_pipeline`): registry ->
synthetic slides and ROIs -> tiles -> a tiny ResNet-18 -> patch predictions -> patient
features -> OS and RFS signatures fitted -> applied to every center (scores into the
registry) -> the analysis-plan report. No prediction is made up.

The project is built once per module (fixture ``road``): the demo cohort, slides for 175
included patients of the three centers, a small model and few permutations and
bootstrap replicates. The tests then recompute what each step wrote from its inputs: the
patient features from the prediction files, the scores from the features and the frozen
coefficients, and the report's numbers with the ``stats`` functions called directly on the
DuckDB cohort snapshot's ``pathomics_*_score`` / ``pathomics_*_group`` columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.demo.pipeline import DEMO_RUN, DemoSettings, run_headless_pipeline
from pathomics_desktop.project import Project

SETS = ("training", "internal", "external")
ENDPOINTS = {"os": ("os_months", "os_event"), "rfs": ("rfs_months", "rfs_event")}
#: included patients with slides per center: most from the development center, so that the
#: training set (about 100 patients) carries a signature fit
SLIDE_PATIENTS = {"A": 150, "B": 15, "C": 10}

#: the road made small: 175 patients with 1024-px slides, four epochs, 5 LASSO folds, 20
#: X-tile permutations, 10 bootstrap replicates
SMALL = DemoSettings(slide_size=1024, slide_patients=SLIDE_PATIENTS, epochs=4, val_interval=1000, folds=5,
                     xtile_perm=20, n_boot=10)


@dataclass
class Road:
    project: Project
    summary: str
    report: dict
    snapshot: pd.DataFrame  #: the DuckDB cohort snapshot (included patients of the three sets)


@pytest.fixture(scope="module")
def road(tmp_path_factory) -> Road:
    """A SYNTHETIC demo project that has run the whole road with :data:`SMALL` settings."""
    import torch

    from pathomics_desktop.analytics.snapshot import CohortQuery
    from pathomics_desktop.demo.cohort import create_demo_project

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("road") / "demo"
    create_demo_project(root)
    summary = run_headless_pipeline(root, settings=SMALL)
    project = Project.load(root)
    report = json.loads((root / "reports" / "analysis_plan" / "report.json").read_text(encoding="utf-8"))
    query = CohortQuery.for_project(project)
    try:
        snapshot = query.frame()
    finally:
        query.close()
    snapshot = snapshot[snapshot["included"].fillna(False).astype(bool) & snapshot["split"].isin(SETS)]
    return Road(project, summary, report, snapshot.reset_index(drop=True))


def slide_patients(project) -> dict[str, str]:
    from pathomics_desktop.signature.jobs import registry_slide_patients

    return registry_slide_patients(project)


def test_the_sample_of_patients_with_slides_covers_every_set(road):
    """The chosen numbers of included patients of each center got slides, so every set is scored."""
    patients = set(slide_patients(road.project).values())
    assert len(patients) == sum(SLIDE_PATIENTS.values())
    centers = road.snapshot.set_index("study_id").loc[sorted(patients), "center"]
    assert centers.value_counts().to_dict() == SLIDE_PATIENTS
    scored = road.snapshot[road.snapshot["pathomics_os_score"].notna()]
    assert set(scored["study_id"]) == patients
    counts = scored.groupby("split").size()
    assert all(counts.get(s, 0) >= 10 for s in SETS), counts.to_dict()
    assert road.summary.startswith("SYNTHETIC DATA")


def test_every_tile_is_predicted_and_the_features_count_the_predictions(road):
    """Each tile of the tile index has one prediction; each patient's histogram features are
    the relative frequencies of its patches' rounded probabilities and labels (brute force)."""
    root = road.project.root
    mapping = slide_patients(road.project)
    frames = []
    for slide_id in mapping:
        tiles = pd.read_parquet(root / "tiles" / f"{slide_id}.parquet", columns=["x", "y"])
        pred = pd.read_parquet(root / "predictions" / DEMO_RUN / f"{slide_id}.parquet")
        assert sorted(zip(pred["x"], pred["y"])) == sorted(zip(tiles["x"], tiles["y"]))
        frames.append(pred.assign(study_id=mapping[slide_id]))
    patches = pd.concat(frames, ignore_index=True)
    features = pd.read_parquet(root / "features" / f"{DEMO_RUN}_features.parquet").set_index("study_id")
    assert set(features.index) == set(mapping.values())
    for study_id, own in patches.groupby("study_id"):  # one slide per demo patient
        bins = np.floor(own["prob"].to_numpy(np.float64) * 100 + 0.5).astype(int)
        expected = np.bincount(bins, minlength=101) / len(own)
        got = features.loc[study_id, [f"histo_prob_{k:03d}" for k in range(101)]].to_numpy(float)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        assert features.loc[study_id, "histo_pred_1"] == pytest.approx((own["pred"] == 1).mean(), abs=1e-12)
        assert features.loc[study_id, "histo_pred_0"] == pytest.approx((own["pred"] == 0).mean(), abs=1e-12)


@pytest.mark.parametrize("endpoint", ["os", "rfs"])
def test_apply_wrote_the_frozen_scores_and_groups_to_the_registry(road, endpoint):
    """``pathomics_<ep>_score`` in the DuckDB snapshot is sum(beta x) of the patient's features
    with the frozen coefficients; ``pathomics_<ep>_group`` is high where score > the locked cut."""
    from pathomics_desktop.signature.fit import load_signature

    signature = load_signature(road.project, f"demo_{endpoint}")
    assert signature["run"] == DEMO_RUN and signature["endpoint"] == endpoint
    features = pd.read_parquet(road.project.root / "features" / f"{DEMO_RUN}_features.parquet")
    expected = np.zeros(len(features))
    for name, beta in signature["coefficients"].items():
        expected = expected + features[name].to_numpy(float) * float(beta)
    expected = pd.Series(expected, index=features["study_id"])
    scored = road.snapshot.dropna(subset=[f"pathomics_{endpoint}_score"]).set_index("study_id")
    assert set(scored.index) == set(expected.index)
    np.testing.assert_allclose(scored[f"pathomics_{endpoint}_score"].to_numpy(float),
                               expected.loc[scored.index].to_numpy(), rtol=1e-12, atol=1e-12)
    cut = float(signature["cut"]["value"])
    high = scored[f"pathomics_{endpoint}_score"] > cut
    assert (scored[f"pathomics_{endpoint}_group"] == np.where(high, "high", "low")).all()
    assert {"high", "low"} <= set(scored[f"pathomics_{endpoint}_group"])
    unscored = road.snapshot[road.snapshot[f"pathomics_{endpoint}_score"].isna()]
    assert unscored[f"pathomics_{endpoint}_group"].isna().all()


def _scored(road, endpoint: str, set_name: str) -> pd.DataFrame:
    frame = road.snapshot[(road.snapshot["split"] == set_name)]
    return frame.dropna(subset=[f"pathomics_{endpoint}_score", *ENDPOINTS[endpoint]])


@pytest.mark.parametrize("endpoint", ["os", "rfs"])
def test_report_c_index_equals_harrell_c_of_the_snapshot_scores(road, endpoint):
    """Figure 4 / Table S2: the signature's C in each set is Harrell's C of the snapshot's
    applied score against the endpoint (stats.concordance called directly)."""
    from pathomics_desktop.stats.concordance import harrell_c

    time, event = ENDPOINTS[endpoint]
    sets = road.report["signatures"][f"demo_{endpoint}"]["endpoints"][endpoint]["sets"]
    for set_name in SETS:
        frame = _scored(road, endpoint, set_name)
        expected = harrell_c(frame[time].to_numpy(float), frame[event].to_numpy(int),
                             frame[f"pathomics_{endpoint}_score"].to_numpy(float))
        got = sets[set_name]["discrimination"]["markers"]["signature"]["c_index"]
        assert got["n"] == len(frame)
        assert got["c"] == pytest.approx(expected.c, abs=1e-12), set_name


@pytest.mark.parametrize("endpoint", ["os", "rfs"])
def test_report_km_logrank_and_hazard_ratio_equal_stats_on_the_snapshot_groups(road, endpoint):
    """Figure 4G-L: the log-rank test and the Cox HR (high vs low) of the report equal
    stats.km.logrank_test and a Cox fit of the 0/1 high-risk indicator on the snapshot's groups."""
    from pathomics_desktop.stats.cox import fit_cox_arrays
    from pathomics_desktop.stats.km import logrank_test

    time, event = ENDPOINTS[endpoint]
    sets = road.report["signatures"][f"demo_{endpoint}"]["endpoints"][endpoint]["sets"]
    for set_name in SETS:
        frame = _scored(road, endpoint, set_name)
        t, e = frame[time].to_numpy(float), frame[event].to_numpy(int)
        group = frame[f"pathomics_{endpoint}_group"].to_numpy(str)
        km = sets[set_name]["km"]
        assert km["n"] == len(frame)
        assert {g["group"]: g["n"] for g in km["groups"]} == {g: int((group == g).sum()) for g in ("high", "low")}
        expected = logrank_test(t, e, group)
        assert km["logrank"]["chisq"] == pytest.approx(expected.chisq, rel=1e-9)
        assert km["logrank"]["p"] == pytest.approx(expected.p, rel=1e-9)
        fit = fit_cox_arrays(t, e, (group == "high").astype(float)[:, None])
        se = float(np.sqrt(fit.var[0, 0]))
        assert km["hr"]["hr"] == pytest.approx(float(np.exp(fit.coef[0])), rel=1e-6), set_name
        assert km["hr"]["hr_lower"] == pytest.approx(float(np.exp(fit.coef[0] - 1.959963984540054 * se)), rel=1e-6)
        assert km["hr"]["hr_upper"] == pytest.approx(float(np.exp(fit.coef[0] + 1.959963984540054 * se)), rel=1e-6)


def test_the_signature_files_agree_with_the_applied_scores(road):
    """The fit's scores file (what the report reads) and the registry's applied scores are
    the same numbers: applying the frozen signature reproduces the fit exactly."""
    from pathomics_desktop.signature.fit import signature_paths

    for endpoint in ENDPOINTS:
        scores = pd.read_parquet(signature_paths(road.project, f"demo_{endpoint}")[1]).set_index("study_id")
        scored = road.snapshot.dropna(subset=[f"pathomics_{endpoint}_score"]).set_index("study_id")
        common = scored.index.intersection(scores.index)
        assert len(common) == len(scored)
        np.testing.assert_array_equal(scores.loc[common, "score"].to_numpy(float),
                                      scored.loc[common, f"pathomics_{endpoint}_score"].to_numpy(float))
        assert (scores.loc[common, "risk_group"] == scored.loc[common, f"pathomics_{endpoint}_group"]).all()


def test_written_outputs_are_labelled_synthetic(road):
    root = Path(road.project.root)
    assert road.report["synthetic"] is True
    assert (root / "reports" / "signature.txt").read_text(encoding="utf-8").startswith("signature demo_os")
    assert "SYNTHETIC" in road.summary.splitlines()[0]
