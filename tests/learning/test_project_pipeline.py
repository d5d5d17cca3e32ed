"""The patch-model pipeline on a SYNTHETIC project: slides -> tiles -> training (loss falls,
labels from the study's prognosis rule) -> inference (complete, deterministic, resumable) ->
model comparison -> Grad-CAM, each as a job recorded in the registry.

The project, its tiles and two trained runs ("cf": a tiny CrossFormer, "rn": a tiny
ResNet-18) with their predictions are built once per module by fixtures, so every test runs
on its own. Tests that predict again do so into copies of a run, never into the shared
predictions. The comparison is checked against AUCs and DeLong tests recomputed here by brute
force over all (positive, negative) pairs of the prediction files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

from pathomics_desktop.cli import main
from pathomics_desktop.jobs.core import CancelToken
from pathomics_desktop.jobs.runner import get_job, list_jobs, resume, run_job, submit
from pathomics_desktop.learning.project_data import prognosis_label, project_slides
from pathomics_desktop.project import Project
from pathomics_desktop.registry.service import open_project_registry

TILES_PER_SLIDE = 12  # --max-tiles-per-slide of the "cf" run


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


@pytest.fixture(scope="module")
def cf_run(tiled_project):
    """The project with run "cf" (tiny CrossFormer, 3 epochs, seed 3) trained and predicted."""
    torch.set_num_threads(1)
    root = str(tiled_project.root)
    assert main(["train", "--backbone", "crossformer_t", "--tiny", "--epochs", "3", "--lr", "0.01",
                 "--input-size", "64", "--max-tiles-per-slide", str(TILES_PER_SLIDE), "--seed", "3",
                 "--run", "cf", "--device", "cpu", "--project", root]) == 0
    assert main(["infer", "--model", "cf", "--device", "cpu", "--project", root]) == 0
    return tiled_project


@pytest.fixture(scope="module")
def rn_run(tiled_project):
    """The project with run "rn" (tiny ResNet-18, 1 epoch) trained and predicted."""
    torch.set_num_threads(1)
    root = str(tiled_project.root)
    assert main(["train", "--backbone", "resnet18", "--tiny", "--epochs", "1", "--input-size", "64",
                 "--max-tiles-per-slide", "8", "--seed", "3", "--run", "rn", "--device", "cpu", "--project", root]) == 0
    assert main(["infer", "--model", "rn", "--device", "cpu", "--project", root]) == 0
    return tiled_project


def copy_run(project, run: str, name: str) -> str:
    """A copy of a trained run under another name (its own predictions folder)."""
    shutil.copytree(project.root / "models" / run, project.root / "models" / name)
    shutil.rmtree(project.root / "predictions" / name, ignore_errors=True)
    return name


def labelled_predictions(project, run: str) -> pd.DataFrame:
    """Every tile prediction of a labelled slide, with the slide's label and data set."""
    frames = []
    for s in project_slides(project):
        if s.label is None:
            continue
        frame = pd.read_parquet(project.root / "predictions" / run / f"{s.slide_id}.parquet")
        frames.append(frame.assign(label=s.label, split=s.split))
    return pd.concat(frames, ignore_index=True)


def placements(label: np.ndarray, score: np.ndarray) -> np.ndarray:
    """psi[i, j] = 1 if positive i scores above negative j, 1/2 on a tie, else 0."""
    pos, neg = score[label == 1][:, None], score[label == 0][None, :]
    return (pos > neg) + 0.5 * (pos == neg)


def delong_covariance(label: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance (DeLong, DeLong & Clarke-Pearson 1988) from the
    pairwise kernel: AUC = mean psi; V10 = row means, V01 = column means;
    cov = S10 / m + S01 / n."""
    psis = [placements(label, s) for s in scores]
    m, n = psis[0].shape
    s10 = np.atleast_2d(np.cov(np.vstack([p.mean(axis=1) for p in psis])))
    s01 = np.atleast_2d(np.cov(np.vstack([p.mean(axis=0) for p in psis])))
    return np.array([p.mean() for p in psis]), s10 / m + s01 / n


def brute_force_delong(label: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """Difference of two correlated AUCs and its two-sided normal p-value."""
    aucs, cov = delong_covariance(label, a, b)
    difference = aucs[0] - aucs[1]
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return {"difference": difference, "p": 2 * norm.sf(abs(difference) / np.sqrt(var))}


def test_brute_force_delong_on_a_hand_computed_case():
    """3 positives, 2 negatives: psi rows (1, 1), (1, 0), (1/2, 0) -> AUC 7/12."""
    label = np.array([1, 1, 1, 0, 0])
    score = np.array([0.9, 0.6, 0.4, 0.4, 0.7])
    assert placements(label, score).tolist() == [[1, 1], [1, 0], [0.5, 0]]
    aucs, cov = delong_covariance(label, score, np.array([0.9, 0.8, 0.7, 0.1, 0.2]))
    assert aucs[0] == pytest.approx(7 / 12) and aucs[1] == 1.0
    v10, v01 = np.array([1, 0.5, 0.25]), np.array([2.5 / 3, 1 / 3])
    assert cov[0, 0] == pytest.approx(v10.var(ddof=1) / 3 + v01.var(ddof=1) / 2)
    assert cov[1, 1] == 0.0  # a perfect ranking has no variance


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


def test_training_lowers_the_loss_and_records_the_run(cf_run):
    slides = project_slides(cf_run)
    training = [s for s in slides if s.split == "training" and s.label is not None]
    internal = [s for s in slides if s.split == "internal" and s.label is not None]
    assert {s.label for s in training} == {0, 1}
    spec = json.loads((cf_run.root / "models" / "cf" / "run.json").read_text())
    assert spec["result"]["last_loss"] < spec["result"]["first_loss"]  # training lowers the loss
    assert spec["result"]["epochs"] == 3 and spec["config"]["seed"] == 3
    assert spec["training_slides"] == {"poor": sum(s.label == 1 for s in training),
                                       "good": sum(s.label == 0 for s in training)}
    assert spec["training_tiles"] == sum(min(s.n_tiles, TILES_PER_SLIDE) for s in training)
    assert spec["internal_tiles"] == sum(min(s.n_tiles, TILES_PER_SLIDE) for s in internal)


def test_inference_predicts_every_tile_with_the_trained_model(cf_run):
    from pathomics_desktop.learning.jobs import load_trained_model
    from pathomics_desktop.learning.preprocess import tiles_to_tensor
    from pathomics_desktop.learning.project_data import StreamedTiles, macenko_numpy_normaliser, tile_entries

    slides = project_slides(cf_run)
    folder = cf_run.root / "predictions" / "cf"
    assert sorted(p.name for p in folder.glob("*.parquet")) == sorted(f"{s.slide_id}.parquet" for s in slides)
    for s in slides:  # complete: every tile of every tiled slide, in the index's order
        pred = pd.read_parquet(folder / f"{s.slide_id}.parquet")
        index = pd.read_parquet(s.index_path)
        assert list(pred.columns) == ["slide_id", "x", "y", "prob", "pred"]
        assert (pred["x"].tolist(), pred["y"].tolist()) == (index["x"].tolist(), index["y"].tolist())
        assert (pred["slide_id"] == s.slide_id).all()
        assert (pred["pred"] == (pred["prob"] > 0.5)).all() or (pred["pred"] == (pred["prob"] >= 0.5)).all()
    # the stored probabilities are the model's softmax on those very tiles
    model, spec = load_trained_model(cf_run, "cf")
    assert spec["stain"] == "macenko"
    slide = slides[0]
    entries = tile_entries([slide], max_tiles_per_slide=None, seed=0)[0][:5]
    tiles = StreamedTiles(entries, input_size=spec["input_size"], normaliser=macenko_numpy_normaliser())
    with torch.inference_mode():
        expected = model.eval()(tiles_to_tensor(tiles.batch(range(len(entries))))).softmax(dim=1)[:, 1]
    tiles.close()
    stored = pd.read_parquet(folder / f"{slide.slide_id}.parquet")["prob"].to_numpy()[:5]
    np.testing.assert_allclose(stored, expected.numpy(), rtol=1e-4, atol=1e-6)


def test_inference_is_deterministic_and_skips_finished_slides(cf_run):
    run = copy_run(cf_run, "cf", "cf-again")
    slides = project_slides(cf_run)
    reg = open_project_registry(cf_run)
    try:
        job = run_job(cf_run, reg, submit(reg, "inference", {"run": run, "device": "cpu"}))
        assert job.status == "done" and job.result["predicted"] == len(slides) and job.result["skipped"] == 0
        again = run_job(cf_run, reg, submit(reg, "inference", {"run": run, "device": "cpu"}))
        assert again.status == "done" and (again.result["predicted"], again.result["skipped"]) == (0, len(slides))
    finally:
        reg.dispose()
    for s in slides:  # predicting again gives the same probabilities
        name = f"{s.slide_id}.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(cf_run.root / "predictions" / "cf" / name),
                                      pd.read_parquet(cf_run.root / "predictions" / run / name))


def test_model_comparison_agrees_with_brute_force_auc_and_delong(cf_run, rn_run, capsys):
    root = str(cf_run.root)
    capsys.readouterr()
    assert main(["models", "compare", "cf", "rn", "--json", "--project", root]) == 0
    result = json.loads(capsys.readouterr().out)
    preds = {run: labelled_predictions(cf_run, run) for run in ("cf", "rn")}
    splits = [split for split in ("training", "internal", "external") if (preds["cf"]["split"] == split).any()]
    assert list(result["sets"]) == splits and "training" in splits
    z = norm.ppf(0.975)
    for split in splits:
        block = result["sets"][split]
        scores = {}
        for run, frame in preds.items():
            patch = frame[frame["split"] == split].sort_values(["slide_id", "x", "y"])
            slide = patch.groupby("slide_id").agg(prob=("prob", "mean"), label=("label", "first"))
            scores[run] = {"patch": patch, "slide": slide}
            for level, part in scores[run].items():
                reported = block[level][run]
                label, prob = part["label"].to_numpy(), part["prob"].to_numpy()
                assert reported["n"] == len(label)
                if len(set(label)) < 2:
                    assert reported["auc"] is None
                    continue
                assert reported["positives"] == int(label.sum())
                auc = placements(label, prob).mean()
                assert reported["auc"] == pytest.approx(auc, abs=1e-12), (split, level, run)
                se = np.sqrt(delong_covariance(label, prob)[1][0, 0])
                assert reported["ci_lower"] == pytest.approx(max(0.0, auc - z * se), abs=1e-9)
                assert reported["ci_upper"] == pytest.approx(min(1.0, auc + z * se), abs=1e-9)
                positive = prob >= reported["cut"]
                assert reported["sensitivity"] == pytest.approx(positive[label == 1].mean())
                assert reported["specificity"] == pytest.approx((~positive[label == 0]).mean())
        tests = {t["level"]: t for t in block["delong"]}
        for level in ("slide", "patch"):
            cf, rn = scores["cf"][level], scores["rn"][level]
            assert (cf["label"].to_numpy() == rn["label"].to_numpy()).all()
            label = cf["label"].to_numpy()
            if len(set(label)) < 2:
                assert level not in tests
                continue
            expected = brute_force_delong(label, cf["prob"].to_numpy(), rn["prob"].to_numpy())
            t = tests[level]
            assert (t["a"], t["b"]) == ("cf", "rn")
            assert t["difference"] == pytest.approx(expected["difference"], abs=1e-12)
            assert t["p"] == pytest.approx(expected["p"], rel=1e-6, abs=1e-12), (split, level)
    assert main(["models", "compare", "cf", "rn", "--project", root]) == 0
    text = capsys.readouterr().out
    slide_test = result["sets"]["training"]["delong"][0]
    assert f"DeLong slide: cf vs rn: difference {slide_test['difference']:+.3f}, p = {slide_test['p']:.3g}" in text


def test_gradcam_maps_the_most_confident_tiles(cf_run):
    slide_id = project_slides(cf_run)[0].slide_id
    assert main(["gradcam", "--model", "cf", "--slide", str(slide_id), "--top", "2",
                 "--project", str(cf_run.root)]) == 0
    preds = pd.read_parquet(cf_run.root / "predictions" / "cf" / f"{slide_id}.parquet")
    index = pd.read_parquet(project_slides(cf_run)[0].index_path)
    out = cf_run.root / "gradcam" / "cf" / str(slide_id)
    # the two tiles with the largest |prob - 1/2| get a heatmap each
    confident = preds.assign(c=(preds["prob"] - 0.5).abs()).nlargest(2, "c")
    assert sorted(p.stem for p in out.glob("tile_*.npy")) == sorted(
        f"tile_{x}_{y}" for x, y in zip(confident["x"], confident["y"]))
    for path in out.glob("tile_*.npy"):
        cam = np.load(path)
        assert cam.min() >= 0 and (cam.max() == 0 or cam.max() == pytest.approx(1.0))  # scaled to its peak
        assert (out / f"{path.stem}.png").exists()
    # the slide map holds each tile's probability at its grid cell, NaN elsewhere
    step = int(index["read_size"].iloc[0])
    slide_map = np.load(out / "slide_map.npy")
    rows = ((preds["y"] - preds["y"].min()) // step).to_numpy()
    cols = ((preds["x"] - preds["x"].min()) // step).to_numpy()
    np.testing.assert_allclose(slide_map[rows, cols], preds["prob"].to_numpy(), rtol=1e-6)
    assert np.isnan(slide_map).sum() == slide_map.size - len(preds)
    assert (out / "slide_map.png").exists()


class CancelAfterChecks(CancelToken):
    """A token whose user presses Cancel at its ``after``-th check."""

    def __init__(self, after: int):
        super().__init__()
        self.after, self.checks = after, 0

    @property
    def cancelled(self) -> bool:
        self.checks += 1
        if self.checks == self.after:
            self.cancel()
        return super().cancelled


def test_cancelled_inference_resumes_and_skips_finished_slides(cf_run):
    run = copy_run(cf_run, "cf", "cf-cancel")
    folder = cf_run.root / "predictions" / run
    slides = project_slides(cf_run)
    reg = open_project_registry(cf_run)
    try:
        job_id = submit(reg, "inference", {"run": run, "device": "cpu"})
        job = run_job(cf_run, reg, job_id, token=CancelAfterChecks(7))
        assert job.status == "cancelled"
        written = sorted(p.name for p in folder.iterdir())  # nothing half-written: no .tmp
        assert 0 < len(written) < len(slides)
        # finished slides are a prefix of the slide order, each complete
        assert written == sorted(f"{s.slide_id}.parquet" for s in slides[:len(written)])
        for s in slides[:len(written)]:
            assert len(pd.read_parquet(folder / f"{s.slide_id}.parquet")) == s.n_tiles
        resume(reg, job_id)
        job = run_job(cf_run, reg, job_id)
        assert job.status == "done"
        assert (job.result["skipped"], job.result["predicted"]) == (len(written), len(slides) - len(written))
        assert get_job(reg, job_id).status == "done" and job_id in {j.id for j in list_jobs(reg, status="done")}
    finally:
        reg.dispose()
    for s in slides:  # the resumed predictions equal the uninterrupted ones
        name = f"{s.slide_id}.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(cf_run.root / "predictions" / "cf" / name),
                                      pd.read_parquet(folder / name))
