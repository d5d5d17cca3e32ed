"""The patch-model pipeline on a SYNTHETIC project: slides -> tiles -> training (loss falls,
labels from the study's prognosis rule) -> inference (complete, deterministic, resumable) ->
model comparison -> Grad-CAM, each as a job recorded in the registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pathomics_desktop.cli import main
from pathomics_desktop.jobs.runner import get_job, list_jobs, run_job, submit
from pathomics_desktop.learning.project_data import prognosis_label, project_slides
from pathomics_desktop.project import Project
from pathomics_desktop.registry.service import open_project_registry


@pytest.fixture(scope="module")
def tiled_project(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipeline") / "demo"
    assert main(["demo", str(root), "--slides", "--slide-size", "1024", "--slide-limit", "48"]) == 0
    project = Project.load(root)
    project.settings["tiling"]["tile_size"] = 128
    project.save()
    assert main(["slides", "tile", "--project", str(root)]) == 0
    return Project.load(root)


def test_tiling_job_feeds_qc_and_stain_vectors_back_to_the_registry(tiled_project):
    from sqlalchemy import select

    from pathomics_desktop.registry.models import Slide

    reg = open_project_registry(tiled_project)
    try:
        with reg.session() as s:
            slides = s.scalars(select(Slide)).all()
            assert slides and all(sl.qc_status == "ok" for sl in slides)
            vectors = [sl.stain_vectors for sl in slides]
    finally:
        reg.dispose()
    assert all(v and len(v["he"]) in (2, 3) for v in vectors), vectors[0]
    assert all((tiled_project.root / "tiles" / f"{sl.id}.parquet").exists() for sl in slides)


def test_prognosis_labels_follow_the_study():
    assert prognosis_label(8.0, 1) == 1 and prognosis_label(12.0, 1) == 1
    assert prognosis_label(40.0, 0) == 0 and prognosis_label(40.0, 1) == 0
    assert prognosis_label(20.0, 1) is None and prognosis_label(20.0, 0) is None and prognosis_label(None, 1) is None


def test_training_inference_comparison_gradcam(tiled_project, capsys):
    root = str(tiled_project.root)
    slides = project_slides(tiled_project)
    assert slides and {s.label for s in slides if s.split == "training"} >= {0, 1}
    assert main(["train", "--backbone", "crossformer_t", "--tiny", "--epochs", "3", "--lr", "0.01",
                 "--input-size", "64", "--max-tiles-per-slide", "12", "--seed", "3", "--run", "cf",
                 "--project", root]) == 0
    spec = json.loads((tiled_project.root / "models" / "cf" / "run.json").read_text())
    assert spec["result"]["last_loss"] < spec["result"]["first_loss"]  # training lowers the loss
    assert spec["config"]["seed"] == 3 and spec["training_slides"]["poor"] > 0
    capsys.readouterr()

    assert main(["infer", "--model", "cf", "--project", root]) == 0
    folder = tiled_project.root / "predictions" / "cf"
    for s in slides:  # complete: every tile of every tiled slide
        pred = pd.read_parquet(folder / f"{s.slide_id}.parquet")
        index = pd.read_parquet(s.index_path)
        assert list(pred.columns) == ["slide_id", "x", "y", "prob", "pred"]
        assert len(pred) == len(index) and pred["prob"].between(0, 1).all()
        assert (pred["pred"] == (pred["prob"] > 0.5)).all() or (pred["pred"] == (pred["prob"] >= 0.5)).all()
    first = {p.name: pd.read_parquet(p) for p in folder.glob("*.parquet")}
    # deterministic: predicting again gives the same probabilities
    for p in folder.glob("*.parquet"):
        p.unlink()
    reg = open_project_registry(tiled_project)
    try:
        job = run_job(tiled_project, reg, submit(reg, "inference", {"run": "cf"}))
        assert job.status == "done" and job.result["predicted"] == len(slides)
        again = run_job(tiled_project, reg, submit(reg, "inference", {"run": "cf"}))
        assert again.result == {**again.result, "predicted": 0, "skipped": len(slides)}
    finally:
        reg.dispose()
    for name, frame in first.items():
        pd.testing.assert_frame_equal(frame, pd.read_parquet(folder / name))

    # a second backbone (a small ResNet-18) for the comparison between models
    assert main(["train", "--backbone", "resnet18", "--tiny", "--epochs", "1", "--input-size", "64",
                 "--max-tiles-per-slide", "8", "--seed", "3", "--run", "rn", "--project", root]) == 0
    assert main(["infer", "--model", "rn", "--project", root]) == 0
    capsys.readouterr()
    assert main(["models", "compare", "cf", "rn", "--json", "--project", root]) == 0
    result = json.loads(capsys.readouterr().out)
    training = result["sets"]["training"]
    assert 0 <= training["slide"]["cf"]["auc"] <= 1 and training["patch"]["cf"]["n"] > 0
    assert training["patch"]["rn"]["n"] == training["patch"]["cf"]["n"]
    assert {"sensitivity", "specificity", "ppv", "npv", "ci_lower", "ci_upper", "fpr", "tpr"} <= set(training["patch"]["cf"])
    tests = {(t["level"], t["a"], t["b"]) for t in training["delong"]}
    assert tests == {("slide", "cf", "rn"), ("patch", "cf", "rn")}
    assert all(0 <= t["p"] <= 1 for t in training["delong"])
    assert main(["models", "compare", "cf", "rn", "--project", root]) == 0
    assert "DeLong slide: cf vs rn" in capsys.readouterr().out

    slide_id = slides[0].slide_id
    assert main(["gradcam", "--model", "cf", "--slide", str(slide_id), "--top", "2", "--project", root]) == 0
    out = tiled_project.root / "gradcam" / "cf" / str(slide_id)
    assert (out / "slide_map.png").exists() and np.load(out / "slide_map.npy").ndim == 2
    cams = sorted(out.glob("tile_*.npy"))
    assert len(cams) == 2 and all(0 <= np.load(c).min() and np.load(c).max() <= 1 for c in cams)


def test_cancelled_inference_resumes_and_skips_finished_slides(tiled_project):
    from pathomics_desktop.jobs.core import CancelToken
    from pathomics_desktop.jobs.runner import resume

    if not (tiled_project.root / "models" / "cf" / "run.json").exists():
        pytest.skip("needs the trained run of the previous test")
    folder = tiled_project.root / "predictions" / "cf"
    for p in folder.glob("*.parquet"):
        p.unlink()
    reg = open_project_registry(tiled_project)
    try:
        job_id = submit(reg, "inference", {"run": "cf"})
        token = CancelToken()
        calls = {"n": 0}
        original = token.__class__.cancelled.fget

        def cancel_after_some(self):
            calls["n"] += 1
            if calls["n"] > 6:
                self.cancel()
            return original(self)

        token.__class__ = type("LateCancel", (CancelToken,), {"cancelled": property(cancel_after_some)})
        job = run_job(tiled_project, reg, job_id, token=token)
        assert job.status == "cancelled"
        partial = len(list(folder.glob("*.parquet")))
        assert 0 < partial < len(project_slides(tiled_project))
        assert not list(folder.glob(".*.tmp"))  # nothing half-written
        resume(reg, job_id)
        job = run_job(tiled_project, reg, job_id)
        assert job.status == "done" and job.result["skipped"] == partial
        assert get_job(reg, job_id).status == "done" and list_jobs(reg, status="done")
    finally:
        reg.dispose()
