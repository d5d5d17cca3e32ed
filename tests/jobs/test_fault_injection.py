"""Fault injection: a tiling run, an inference run and a training run are SIGKILLed at a
random point (seeded), then a worker restarts: the SQLite registry passes its integrity
check, no partial rows or files and no duplicate outputs exist, the dead run's job is
requeued (its heartbeat stopped) and resumes to exactly the result of an uninterrupted run
(tile indexes and predictions equal, trained weights equal within float tolerance).

The uninterrupted reference runs on a copy of the same project. The import case is in
``tests/registry/test_crash_safety.py``."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from pathomics_desktop.jobs.runner import list_jobs, run_worker, submit
from pathomics_desktop.registry.models import Slide
from pathomics_desktop.registry.service import open_project_registry
from tests.jobs.conftest import copy_project
from tests.signature.fitted import run_to_done

REPO = Path(__file__).resolve().parents[2]
HEARTBEAT, LEASE = 0.2, 0.6
#: tiny ResNet, 32 px inputs, no stain normalisation, 4 tiles per slide: seconds on a CPU
TRAINING = {"run": "base", "backbone": "resnet18", "model_options": {"layers": [1, 1, 1, 1]}, "stain": "none",
            "epochs": 3, "input_size": 32, "max_tiles_per_slide": 4, "seed": 3, "device": "cpu"}

CHILD = """
import sys
if sys.argv[3] == "torch":
    import torch
    torch.set_num_threads(1)
from pathomics_desktop.jobs.runner import run_job
from pathomics_desktop.project import Project
from pathomics_desktop.registry.service import open_project_registry
project = Project.load(sys.argv[1])
registry = open_project_registry(project)
run_job(project, registry, int(sys.argv[2]), heartbeat=float(sys.argv[4]))
"""


@pytest.fixture(scope="module")
def tiled_template(demo_slides_template, tmp_path_factory):
    """The demo project tiled, with run "base" trained uninterrupted and its predictions."""
    import torch

    torch.set_num_threads(1)
    project = copy_project(demo_slides_template, tmp_path_factory.mktemp("fault") / "tiled")
    run_to_done(project, "tiling", {})
    run_to_done(project, "training", TRAINING)
    run_to_done(project, "inference", {"run": "base", "device": "cpu"})
    return project.root


def _kill_midway(project, job_type: str, params: dict, ready, seed: int, max_delay: float,
                 torch: bool = False) -> tuple[int, bool]:
    """Start the job in a child process, SIGKILL it ``uniform(0, max_delay)`` seconds after
    ``ready()`` turns true; returns (job id, whether it was still running when killed)."""
    registry = open_project_registry(project)
    try:
        job_id = submit(registry, job_type, params)
    finally:
        registry.dispose()
    env = {k: v for k, v in os.environ.items() if k != "PATHOMICS_DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(project.root), str(job_id),
                             "torch" if torch else "-", str(HEARTBEAT)], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 240
        while not ready() and proc.poll() is None:
            assert time.monotonic() < deadline, "the child run made no progress"
            time.sleep(0.005)
        time.sleep(random.Random(seed).uniform(0, max_delay))
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    # the registry says whether the kill came mid-run: a child that had already marked the
    # job done (and was only closing) ran it to the end
    registry = open_project_registry(project)
    try:
        alive = {j.id: j.status for j in list_jobs(registry)}[job_id] == "running"
    finally:
        registry.dispose()
    print(f"{job_type}: killed {'mid-run' if alive else 'after the end'} (seed {seed})")
    return job_id, alive


def _restart(project, job_id: int, was_running: bool):
    """What a restarted worker does: requeue the dead run's job once its lease is over, run
    it; then check the registry file and the job row."""
    time.sleep(LEASE + 0.3)  # the dead child's last heartbeat is now older than the lease
    path = project.root / "registry.sqlite"
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    finally:
        con.close()
    registry = open_project_registry(project)  # integrity check on open passes
    try:
        before = {j.id: j.status for j in list_jobs(registry)}
        if was_running:
            assert before[job_id] == "running"
        run_worker(project, registry, once=True, heartbeat=HEARTBEAT, lease=LEASE)
        jobs = {j.id: j for j in list_jobs(registry)}
    finally:
        registry.dispose()
    # the same job rows (the template's earlier jobs done), this one done: no job ran twice as two rows
    assert {i: j.status for i, j in jobs.items()} == {**{i: "done" for i in before}, job_id: "done"}
    if was_running:
        assert jobs[job_id].attempts == 1 and "requeued: worker " in jobs[job_id].log
    return jobs[job_id]


def _files(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (hidden temporary files and partial folders included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _slide_rows(project) -> list[tuple]:
    registry = open_project_registry(project)
    try:
        with registry.session() as session:
            return [(s.id, s.qc_status, s.qc_reason, json.dumps(s.stain_vectors, sort_keys=True))
                    for s in session.scalars(select(Slide).order_by(Slide.id))]
    finally:
        registry.dispose()


@pytest.mark.parametrize("seed", [11, 12])
def test_tiling_killed_at_a_random_point_resumes_to_the_uninterrupted_result(demo_slides_template, tmp_path, seed):
    reference = copy_project(demo_slides_template, tmp_path / "reference")
    run_to_done(reference, "tiling", {})
    project = copy_project(demo_slides_template, tmp_path / "killed")
    tiles = project.root / "tiles"
    n_slides = len(list((reference.root / "tiles").glob("*.parquet")))
    finished_before_kill = random.Random(seed).randint(1, n_slides - 1)
    job_id, alive = _kill_midway(project, "tiling", {},
                                 lambda: len(list(tiles.glob("*.parquet"))) >= finished_before_kill,
                                 seed, max_delay=0.4)
    _restart(project, job_id, alive)
    assert _files(tiles) == _files(reference.root / "tiles")  # no partial chunks, temporary or extra files
    for index in (reference.root / "tiles").glob("*.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tiles / index.name), pd.read_parquet(index))
    for stain in (reference.root / "tiles").glob("*.stain.json"):
        assert (tiles / stain.name).read_text() == stain.read_text()
    assert _slide_rows(project) == _slide_rows(reference)  # QC and stain vectors, once per slide


def test_inference_killed_at_a_random_point_resumes_to_the_uninterrupted_predictions(tiled_template, tmp_path):
    project = copy_project(tiled_template, tmp_path / "killed")
    predictions = project.root / "predictions" / "base"
    reference = sorted((tiled_template / "predictions" / "base").glob("*.parquet"))
    for path in predictions.glob("*"):
        path.unlink()
    seed = 21
    finished_before_kill = random.Random(seed).randint(1, len(reference) - 1)
    job_id, alive = _kill_midway(project, "inference", {"run": "base", "device": "cpu", "batch_size": 4},
                                 lambda: len(list(predictions.glob("*.parquet"))) >= finished_before_kill,
                                 seed, max_delay=0.1, torch=True)
    job = _restart(project, job_id, alive)
    assert job.result["predicted"] + job.result["skipped"] == len(reference)
    assert _files(predictions) == [p.name for p in reference]  # each slide's predictions exactly once
    for path in reference:
        pd.testing.assert_frame_equal(pd.read_parquet(predictions / path.name), pd.read_parquet(path))


def test_training_killed_at_a_random_point_resumes_to_the_uninterrupted_weights(tiled_template, tmp_path):
    import torch

    project = copy_project(tiled_template, tmp_path / "killed")
    folder = project.root / "models" / "base"
    for path in folder.glob("*"):
        path.unlink()
    seed = 31
    job_id, alive = _kill_midway(project, "training", TRAINING, lambda: (folder / "last.pt").exists(),
                                 seed, max_delay=2.0, torch=True)
    job = _restart(project, job_id, alive)
    reference = tiled_template / "models" / "base"
    assert _files(folder) == _files(reference)  # no temporary checkpoint left, nothing missing
    expected = json.loads((tiled_template / "models" / "base" / "run.json").read_text())["result"]
    assert job.result["epochs"] == expected["epochs"] == TRAINING["epochs"]
    assert job.result["steps"] == expected["steps"]
    if alive:
        assert job.result["resumed_from_epoch"] >= 1  # it continued from the checkpoint
    assert job.result["last_loss"] == pytest.approx(expected["last_loss"], rel=1e-5)
    if expected["best_val_loss"] is None:  # no labelled internal slide in this small project
        assert job.result["best_val_loss"] is None
    else:
        assert job.result["best_val_loss"] == pytest.approx(expected["best_val_loss"], rel=1e-5)
    for name in [p.name for p in sorted(reference.glob("*.pt"))]:  # last.pt (and best.pt when validated)
        got = torch.load(folder / name, map_location="cpu", weights_only=True)
        want = torch.load(reference / name, map_location="cpu", weights_only=True)
        got, want = got.get("model", got), want.get("model", want)
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    from pathomics_desktop.jobs.core import remove_stale_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {f".3.parquet.{dead.pid}.140.tmp": False, f".last.pt.{dead.pid}.tmp": False,  # killed writers
             f".4.parquet.{os.getpid()}.1.tmp": True, f".best.pt.{os.getppid()}.tmp": True,  # alive
             ".notes.tmp": True, "3.parquet": True}  # no pid: not judged; outputs never touched
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, kept in names.items() if not kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, kept in names.items() if kept)
