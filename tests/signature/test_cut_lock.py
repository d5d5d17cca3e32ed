"""``signature lock-cut``: a locked cut is a new version, one audit row, and registry risk
groups equal to score > cut; a restore (the GUI's undo) brings an earlier cut back.

Every test gets its own copy of a SYNTHETIC demo project with a real fitted and applied
signature (:mod:`tests.signature.fitted`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.signature.cut_lock import MANUAL_METHOD, cut_history, lock_cut, restore_cut
from pathomics_desktop.signature.fit import load_signature, signature_paths
from pathomics_desktop.signature.versions import load_version, version_paths, versions
from tests.signature.fitted import NAME, fitted_project


@pytest.fixture
def project(tmp_path_factory, tmp_path):
    return fitted_project(tmp_path_factory, tmp_path / "fitted")


def _registry(project):
    from pathomics_desktop.registry.service import open_project_registry

    return open_project_registry(project)


def _snapshot(project):
    from pathomics_desktop.analytics.snapshot import cohort_frame

    snap = cohort_frame(project.root)
    return snap[snap["pathomics_os_score"].notna()].set_index("study_id")


def _training_quantile(project, q: float) -> float:
    snap = _snapshot(project)
    return float(np.quantile(snap.loc[snap["split"] == "training", "pathomics_os_score"], q))


def test_lock_writes_a_new_version_an_audit_row_and_the_registry_groups(project):
    from pathomics_desktop.registry.service import audit_history
    from pathomics_desktop.signature.evaluation import evaluate_set

    before = _snapshot(project)
    old = load_signature(project, NAME)
    old_cut = old["cut"]["value"]
    v1_bytes = version_paths(project, NAME, 1)[0].read_bytes()
    cut = _training_quantile(project, 0.7)
    assert cut > old_cut or cut < old_cut

    result = lock_cut(project, NAME, cut, user="tester", reason="SYNTHETIC: a 70th-percentile cut")

    # a new version; the old one is byte for byte unchanged
    assert versions(project, NAME) == [1, 2] and result.version == 2 and result.previous_version == 1
    assert version_paths(project, NAME, 1)[0].read_bytes() == v1_bytes
    new = load_signature(project, NAME)
    assert new == load_version(project, NAME, 2)
    assert new["cut"]["value"] == cut and new["cut"]["method"] == MANUAL_METHOD
    assert new["cut"]["previous"] == {"version": 1, "value": old_cut, "method": old["cut"]["method"]}
    assert new["coefficients"] == old["coefficients"]  # only the cut changes
    # the scores file's groups and the per-set results follow the new cut
    scores = pd.read_parquet(signature_paths(project, NAME)[1])
    assert (scores["risk_group"] == np.where(scores["score"] > cut, "high", "low")).all()
    train = before[before["split"] == "training"]
    expected = evaluate_set(train["os_months"].to_numpy(float), train["os_event"].to_numpy(int),
                            train["pathomics_os_score"].to_numpy(float), cut)
    assert new["sets"]["training"]["n_high"] == expected.n_high == int((train["pathomics_os_score"] > cut).sum())
    assert new["sets"]["training"]["hr_high_vs_low"]["hr"] == pytest.approx(expected.hr, rel=1e-9)

    # the registry: every scored patient's group is score > cut; scores untouched
    after = _snapshot(project)
    np.testing.assert_array_equal(after["pathomics_os_score"], before["pathomics_os_score"])
    assert (after["pathomics_os_group"] == np.where(after["pathomics_os_score"] > cut, "high", "low")).all()
    flipped = int((before["pathomics_os_group"] != after["pathomics_os_group"]).sum())
    assert flipped == int(((before["pathomics_os_score"] > min(cut, old_cut))
                           & (before["pathomics_os_score"] <= max(cut, old_cut))).sum()) > 0
    assert result.regrouped == len(after) and result.changed == flipped
    assert result.high == int((after["pathomics_os_group"] == "high").sum())

    # one audit row for the signature, and one per changed group, with the user and the reason
    registry = _registry(project)
    try:
        history = cut_history(registry, NAME)
        rows = [r for r in audit_history(registry) if r.reason and "70th-percentile" in r.reason]
    finally:
        registry.dispose()
    assert len(history) == 1
    assert history[0]["old"] == {"version": 1, "value": old_cut, "method": old["cut"]["method"]}
    assert history[0]["new"] == {"version": 2, "value": cut, "method": MANUAL_METHOD}
    assert history[0]["user"] == "tester"
    assert len(rows) == flipped + 1 and all(r.user == "tester" for r in rows)


def test_a_second_lock_and_restores_bring_each_cut_back(project):
    original = load_signature(project, NAME)["cut"]
    groups0 = _snapshot(project)["pathomics_os_group"]
    cut1, cut2 = _training_quantile(project, 0.4), _training_quantile(project, 0.8)
    lock_cut(project, NAME, cut1, user="tester", reason="first")
    lock_cut(project, NAME, cut2, user="tester", reason="second")
    snap = _snapshot(project)
    assert (snap["pathomics_os_group"] == np.where(snap["pathomics_os_score"] > cut2, "high", "low")).all()

    # undo of the second lock: the first lock's cut (version 2) again, as version 4
    undone = restore_cut(project, NAME, 2, user="tester", reason="undo: second")
    assert undone.version == 4 and undone.cut == cut1 and versions(project, NAME) == [1, 2, 3, 4]
    assert load_signature(project, NAME)["cut"] == load_version(project, NAME, 2)["cut"]
    snap = _snapshot(project)
    assert (snap["pathomics_os_group"] == np.where(snap["pathomics_os_score"] > cut1, "high", "low")).all()

    # undo of the first: the fitted X-tile cut and exactly the groups `signature apply` wrote
    restore_cut(project, NAME, 1, user="tester", reason="undo: first")
    assert load_signature(project, NAME)["cut"] == original
    after = _snapshot(project)["pathomics_os_group"]
    assert (after == groups0.loc[after.index]).all()
    registry = _registry(project)
    try:
        values = [h["new"]["value"] for h in cut_history(registry, NAME)]
    finally:
        registry.dispose()
    assert values == [cut1, cut2, cut1, original["value"]]


def test_cli_lock_cut_prints_the_new_version(project, capsys):
    from pathomics_desktop.cli import main

    cut = _training_quantile(project, 0.6)
    code = main(["signature", "lock-cut", NAME, "--cut", repr(cut), "--reason", "SYNTHETIC test",
                 "--project", str(project.root), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == 2 and out["cut"] == cut and out["method"] == MANUAL_METHOD
    assert load_signature(project, NAME)["cut"]["value"] == cut
    # a missing reason is refused by argparse; an empty one by the service
    assert main(["signature", "lock-cut", NAME, "--cut", "1", "--reason", " ", "--project", str(project.root)]) == 2
    assert "needs a reason" in capsys.readouterr().err
    assert versions(project, NAME) == [1, 2]


def test_refusals_name_the_problem_and_write_nothing(project):
    from pathomics_desktop.registry.service import edit_value

    with pytest.raises(UserError, match="not found"):
        lock_cut(project, "nope", 1.0, user="tester", reason="x")
    # another signature's (here: an edited) score in the registry: refused, nothing written
    patient = _snapshot(project).index[0]
    registry = _registry(project)
    try:
        edit_value(registry, patient, "pathomics_os_score", "123.5", user="tester", reason="SYNTHETIC edit")
    finally:
        registry.dispose()
    current = signature_paths(project, NAME)[0].read_bytes()
    with pytest.raises(UserError, match=f"first: {patient}.*signature apply {NAME} --all"):
        lock_cut(project, NAME, 0.5, user="tester", reason="x")
    assert versions(project, NAME) == [1] and signature_paths(project, NAME)[0].read_bytes() == current
