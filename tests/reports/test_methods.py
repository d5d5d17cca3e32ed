"""The methods paragraph says what was run (every number read from the project's files,
checked here against those files), and the checklists are complete and exportable."""

from __future__ import annotations

import json

import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.reports.methods import REMARK, TRIPOD, checklist_table, methods_text, write_methods
from tests.signature.fitted import NAME, RUN, fitted_project

RUN_RECORD = {
    "run": RUN, "backbone": "resnet18", "input_size": 224, "stain": "macenko", "weights": None,
    "config": {"epochs": 12, "lr": 0.001, "batch_size": 64, "optimizer": "adamw", "weight_decay": 0.05,
               "imbalance": "class_weights", "seed": 11},
    "labels": {"poor": "RFS event within 12 months", "good": "RFS > 36 months"},
    "training_tiles": 4321, "training_slides": {"poor": 87, "good": 64},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = fitted_project(tmp_path_factory, tmp_path_factory.mktemp("methods") / "demo")
    folder = project.root / "models" / RUN
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(RUN_RECORD), encoding="utf-8")
    return project


def test_methods_state_the_numbers_of_the_run_and_the_signature(project):
    text = methods_text(project, [NAME]).text()
    sig = json.loads((project.root / "signature" / f"{NAME}.json").read_text())
    tiling = project.settings["tiling"]
    sel, cut = sig["selection"], sig["cut"]
    expected = [
        f"Tiles of {tiling['tile_size']} x {tiling['tile_size']} pixels at {tiling['target_mpp']:.3g} um per pixel",
        "Macenko stain normalisation",
        "A resnet18 network (input 224 pixels, trained from scratch)",
        "on 4321 tiles of 87 poor- and 64 good-prognosis training slides, for 12 epochs (adamw, learning rate 0.001, "
        "batch size 64, weight decay 0.05, class imbalance: class_weights, seed 11)",
        f"Of {sel['features_in']} features, {len(sel['constant_removed'])} without variation",
        f"|r| > {sel['correlation']['threshold']:.3g}",
        f"leaving {sel['correlation']['kept']}",
        f"{len(sel['univariate']['kept'])} had a univariate Cox p < {sel['univariate']['threshold']:.3g}",
        f"LASSO-Cox with {sel['lasso']['folds']}-fold cross-validation (lambda.{sel['lasso']['rule']} = "
        f"{sel['lasso']['lambda']:.3g}) selected {len(sel['lasso']['selected'])}",
        f"is {cut['value']:.4g}, high risk: score > cut",
        f"The training set held {sig['patients']['training']} patients",
        f"Pathomics Desktop {sig['provenance']['software']['pathomics']}",
    ]
    for fragment in expected:
        assert fragment in text, fragment


def test_what_is_not_in_the_project_is_said_so(project, tmp_path):
    import shutil

    from pathomics_desktop.project import Project

    copy = tmp_path / "copy"
    shutil.copytree(project.root, copy)
    shutil.rmtree(copy / "models")
    text = methods_text(Project.load(copy), [NAME]).text()
    assert f"The model run '{RUN}': its training record is not recorded in this project" in text
    assert "Tiles were processed with not recorded." in text
    with pytest.raises(UserError, match="signature 'nope' not found"):
        methods_text(project, ["nope"])


def test_methods_files(project, tmp_path):
    methods = methods_text(project, [NAME])
    md = write_methods(methods, tmp_path / "methods.md").read_text()
    assert md.startswith("**Patients.** The training set held")
    data = json.loads(write_methods(methods, tmp_path / "methods.json").read_text())
    assert data["facts"]["signatures"][NAME]["lambda"] == methods.facts["signatures"][NAME]["lambda"]
    with pytest.raises(UserError, match="as .md, .txt or .json"):
        write_methods(methods, tmp_path / "methods.pdf")


def test_checklists_are_complete_and_export(tmp_path):
    assert [r[0] for r in REMARK] == [str(i) for i in range(1, 21)]  # REMARK's 20 items
    assert len(TRIPOD) >= 22 and TRIPOD[0][0] == "1" and TRIPOD[-1][0] == "22"
    from pathomics_desktop.reports.tables import TableStyle
    from pathomics_desktop.reports.writers import write_table

    path = write_table(checklist_table("remark"), tmp_path / "remark.md", TableStyle())
    lines = path.read_text().splitlines()
    assert any(line.startswith("| 12 | Describe the flow of patients") and "Figure 1" in line for line in lines)
    with pytest.raises(UserError, match="remark or tripod"):
        checklist_table("consort")
