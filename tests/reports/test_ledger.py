"""The reproducibility ledger: an export writes one entry with the right hashes (computed here
with hashlib), ``pathomics reproduce --last`` matches on unchanged data, and after an audited
registry edit it reports exactly the numbers that changed and that the data changed."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.cli import main
from pathomics_desktop.project import Project
from pathomics_desktop.reports.ledger import read_entries


@pytest.fixture
def project(demo_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATHOMICS_USER", "ledger-tester")
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    return Project.load(root)


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def leaves(value, prefix=""):
    """(path, value) of every leaf, written independently of the ledger's own flatten."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in leaves(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in leaves(v, f"{prefix}[{i}]")]
    return [(prefix, value)]


def test_an_export_writes_one_entry_with_the_right_hashes(project, tmp_path):
    import numpy
    from pathomics_desktop.figures.km import build_km
    from pathomics_desktop.stats.data import clean_json

    out = tmp_path / "km.xlsx"
    argv = ["report", "km", "--group", "sex", "--set", "training", "--out", str(out), "--project", str(project.root)]
    assert main(argv) == 0
    lines = (project.root / "reports" / "ledger.jsonl").read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    snapshot = project.root / "analytics" / "cohort.parquet"
    assert entry["inputs"]["snapshot"] == {"path": "analytics/cohort.parquet", "sha256": sha256(snapshot)}
    assert entry["output"] == {"path": str(out.resolve()), "format": ".xlsx", "sha256": sha256(out)}
    assert entry["inputs"]["predictions"] == {} and entry["inputs"]["signature"] == {}
    assert entry["command"] == "km" and entry["origin"] == "cli" and entry["user"] == "ledger-tester"
    assert entry["cohort_filter"] == CohortFilter(datasets=("training",)).to_dict()
    assert entry["params"] == {"endpoint": "os", "group": "sex", "unit": "months"}
    assert entry["seeds"] == {"split_seed": project.settings["study"]["split_seed"]}
    assert entry["software"]["python"] == platform.python_version()
    assert entry["software"]["numpy"] == numpy.__version__ and entry["software"]["pandas"] == pd.__version__
    source = AnalysisSource.open(project)
    figure = build_km(source, source.frame(CohortFilter(datasets=("training",))), entry["params"])
    assert entry["numbers"] == clean_json(figure.to_dict())
    assert entry["time"].endswith("+00:00") and entry["id"].startswith(entry["time"][:4])
    assert "SYN-" not in lines[0]  # no study id (or any identifier) in the ledger


def test_prediction_and_signature_hashes(project):
    from pathomics_desktop.reports.ledger import prediction_files, signature_files

    run = project.root / "predictions" / "run-a"
    run.mkdir(parents=True)
    pd.DataFrame({"slide_id": [1, 1], "x": [0, 512], "y": [0, 0], "prob": [0.2, 0.9]}).to_parquet(run / "1.parquet")
    pd.DataFrame({"slide_id": [2], "x": [0], "y": [0], "prob": [0.4]}).to_parquet(run / "2.parquet")
    assert prediction_files(project, "models", {"runs": ["run-a"]}) == {
        "predictions/run-a/1.parquet": sha256(run / "1.parquet"),
        "predictions/run-a/2.parquet": sha256(run / "2.parquet")}
    assert prediction_files(project, "km", {}) == {}  # only the model comparison reads predictions
    folder = project.root / "signature"
    folder.mkdir()
    (folder / "sig-a.json").write_text('{"format": "pathomics-signature/1"}')
    assert signature_files(project, "km", {"group": "pathomics_os_group"}, {}) == {
        "signature/sig-a.json": sha256(folder / "sig-a.json")}
    assert signature_files(project, "km", {"group": "sex"}, {}) == {}


def test_reproduce_last_matches_on_unchanged_data(project, tmp_path, capsys):
    out = tmp_path / "table1.md"
    assert main(["report", "table1", "--out", str(out), "--project", str(project.root)]) == 0
    capsys.readouterr()
    assert main(["reproduce", "--last", "--project", str(project.root)]) == 0
    text = capsys.readouterr().out
    entry = read_entries(project)[-1]
    assert f"all {len(leaves(entry['numbers']))} numbers match" in text
    assert "data changed" not in text
    assert main(["reproduce", entry["id"][:18], "--json", "--project", str(project.root)]) == 0
    assert json.loads(capsys.readouterr().out)["matches"] is True


def test_reproduce_reports_the_changed_numbers_after_an_audited_edit(project, tmp_path, capsys):
    from pathomics_desktop.figures.table1 import build_table1
    from pathomics_desktop.registry.service import edit_value, open_project_registry
    from pathomics_desktop.stats.data import clean_json

    out = tmp_path / "table1.docx"
    argv = ["report", "table1", "--variables", "sex", "--set", "training", "--set", "internal", "--out", str(out)]
    assert main(argv + ["--project", str(project.root)]) == 0
    entry = read_entries(project)[-1]
    before = pd.read_parquet(project.root / "analytics" / "cohort.parquet")
    training = before[before["included"].astype(bool) & (before["split"] == "training")]
    patient = training[training["sex"] == "male"]["study_id"].iloc[0]
    registry = open_project_registry(project)
    try:
        edit_value(registry, patient, "sex", "female", user="ledger-tester", reason="test: corrected sex")
    finally:
        registry.dispose()
    capsys.readouterr()
    assert main(["reproduce", "--last", "--project", str(project.root)]) == 1
    text = capsys.readouterr().out
    assert "the data changed since" in text
    # the expected differences, from the builder on the edited data
    flt = CohortFilter(datasets=("training", "internal"))
    source = AnalysisSource.open(project)
    now = clean_json(build_table1(source, source.frame(flt), entry["params"]).to_dict())
    old, new = dict(leaves(entry["numbers"])), dict(leaves(now))
    changed = sorted(p for p in old if not (old[p] == new[p] or (isinstance(old[p], float) and
                                                                  np.isclose(old[p], new[p], rtol=1e-9))))
    assert changed  # the edit moved one patient from male to female
    reported = [line.strip().split(": recorded")[0].split(" (")[0] for line in text.splitlines()
                if line.startswith("  ")]
    assert sorted(reported) == changed
    assert f"{len(changed)} of {len(old)} numbers differ" in text
    # the counts that moved: one more woman, one man fewer in the training set (pandas on the snapshots)
    women = int((training["sex"] == "female").sum())
    female_row = next(i for i, r in enumerate(entry["numbers"]["rows"]) if r["level"] == "female")
    male_row = next(i for i, r in enumerate(entry["numbers"]["rows"]) if r["level"] == "male")
    assert f"rows[{female_row}].counts.training (female): recorded {women}, now {women + 1}" in text
    assert f"rows[{male_row}].counts.training (male): recorded {len(training) - women}, " \
           f"now {len(training) - women - 1}" in text
    assert "rows[0].counts.training" not in text  # the number of patients did not change


def test_reproduce_without_an_entry_is_a_clear_error(project, capsys):
    assert main(["reproduce", "--last", "--project", str(project.root)]) == 2
    assert "no export has been recorded yet" in capsys.readouterr().err
    assert main(["reproduce", "--project", str(project.root)]) == 2
    assert "--last" in capsys.readouterr().err
