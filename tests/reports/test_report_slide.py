"""`pathomics report slide ID --out FILE`: a registered, tiled slide as a publication figure
(thumbnail, heatmap, scale bar, colour bar), recorded in the ledger."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    from pathomics_desktop.demo.cohort import create_demo_project
    from pathomics_desktop.demo.cohort_slides import add_demo_slides
    from pathomics_desktop.jobs.runner import run_job, submit
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry

    root = tmp_path_factory.mktemp("slide-report") / "demo"
    create_demo_project(root)
    project = Project.load(root)
    add_demo_slides(project, size=1024, limit=1)
    registry = open_project_registry(project)
    try:
        assert run_job(project, registry, submit(registry, "tiling", {"slide_ids": [1]})).status == "done"
    finally:
        registry.dispose()
    return project


def test_slide_figure_draws_the_tissue_grid_and_is_recorded(tiled, tmp_path, capsys):
    from PIL import Image

    from pathomics_desktop.cli import main
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.reports.figures import slide_figure
    from pathomics_desktop.slides.overlays import load_viewer_slide

    out = tmp_path / "slide.png"
    assert main(["report", "slide", "1", "--out", str(out), "--project", str(tiled.root)]) == 0
    assert Image.open(out).info["dpi"][0] >= 300
    registry = open_project_registry(tiled)
    try:
        slide = load_viewer_slide(tiled, registry, 1)
    finally:
        registry.dispose()
    figure = slide_figure(slide)
    # no predictions yet: the heatmap is the tile index's tissue fraction, value for value
    assert np.array_equal(np.nan_to_num(figure.probabilities, nan=-1),
                          np.nan_to_num(slide.tissue_grid().values, nan=-1))
    assert figure.title.startswith("SYNTHETIC ") and figure.mpp == pytest.approx(slide.mpp)
    entry = json.loads((tiled.root / "reports" / "ledger.jsonl").read_text().splitlines()[-1])
    assert entry["command"] == "slide" and entry["params"]["slide_id"] == 1


def test_unknown_run_is_a_clear_error(tiled, tmp_path, capsys):
    from pathomics_desktop.cli import main

    code = main(["report", "slide", "1", "--out", str(tmp_path / "x.png"), "--run", "nope",
                 "--project", str(tiled.root)])
    assert code != 0 and "slide 1 has no predictions of run 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
