"""`signature apply` (frozen scoring into the registry), versions, drift, scores as cohort data.

One SYNTHETIC demo project with fake predictions: the signature is fitted WITHOUT center C
(its patients have no features at fit time), then applied to center C (a new center, whose
predictions are shifted so that they drift) and to every center.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import JobContext
from pathomics_desktop.signature import drift
from pathomics_desktop.signature import features as feat
from pathomics_desktop.signature.apply import signature_apply_job
from pathomics_desktop.signature.fit import load_signature
from pathomics_desktop.signature.jobs import signature_job
from pathomics_desktop.signature.versions import file_sha256, load_version, predictions_hashes, versions
from tests.signature.synthetic import shift_predictions, write_fake_predictions

RUN = "fake"
NAME = "sig_os"
PARAMS = {"run": RUN, "endpoint": "os", "name": NAME, "folds": 5, "seed": 3, "xtile_perm": 20}
SHIFT = 1.5  # logit shift of center C's patch probabilities


def _run(project, job_type, params):
    from pathomics_desktop.jobs.core import register_job_type
    from pathomics_desktop.jobs.runner import run_job, submit
    from pathomics_desktop.registry.service import open_project_registry

    register_job_type("signature-apply", signature_apply_job)
    registry = open_project_registry(project)
    try:
        return run_job(project, registry, submit(registry, job_type, params))
    finally:
        registry.dispose()


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """Fit on centers A and B only; apply to the new center C; keep the results of each step."""
    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.demo.cohort import create_demo_project
    from pathomics_desktop.project import open_project

    root = tmp_path_factory.mktemp("apply") / "demo"
    create_demo_project(root)
    mapping = write_fake_predictions(root, RUN)
    cohort = cohort_frame(root).set_index("study_id")
    center_of = cohort["center"].to_dict()
    shift_predictions(root, RUN, [s for s, p in mapping.items() if center_of[p] == "C"], SHIFT)
    fit_map = {s: p for s, p in mapping.items() if center_of[p] != "C"}
    project = open_project(str(root))
    fit = _run(project, "signature", PARAMS | {"slide_patients": fit_map})
    assert fit.status == "done", fit.error
    frozen_bytes = (root / "signature" / f"{NAME}.json").read_bytes()
    job_c = _run(project, "signature-apply", {"name": NAME, "center": "C", "slide_patients": mapping})
    assert job_c.status == "done", job_c.error
    after_c = cohort_frame(root)
    return {"root": root, "project": project, "mapping": mapping, "fit_map": fit_map, "center_of": center_of,
            "frozen_bytes": frozen_bytes, "job_c": job_c, "after_c": after_c}


def _by_hand(root, signature, slides) -> float:
    """The linear predictor of one patient from its prediction files, computed here: term
    counts, relative frequencies and TF-IDF with the FROZEN training idf, mean over the
    slides, then sum beta_j x_j with the frozen coefficients."""
    names = feat.feature_names()
    idf_prob = np.asarray(signature["features"]["idf"]["prob"])
    idf_pred = np.asarray(signature["features"]["idf"]["pred"])
    rows = []
    for slide in slides:
        p = pd.read_parquet(root / "predictions" / RUN / f"{slide}.parquet")
        cp = np.bincount(np.floor(p["prob"].to_numpy(dtype=float) * 100 + 0.5).astype(int), minlength=101)
        cl = np.bincount(p["pred"].to_numpy(dtype=int), minlength=2)
        v_prob, v_pred = cp * idf_prob, cl * idf_pred
        rows.append(np.concatenate([cp / cp.sum(), cl / cl.sum(), v_prob / np.linalg.norm(v_prob),
                                    v_pred / np.linalg.norm(v_pred)]))
    x = np.mean(rows, axis=0)
    return float(sum(beta * x[names.index(f)] for f, beta in signature["coefficients"].items()))


def test_apply_on_a_new_center_scores_with_the_frozen_signature(applied):
    root, mapping = applied["root"], applied["mapping"]
    signature = load_signature(applied["project"], NAME)
    result = applied["job_c"].result
    c_patients = sorted({p for p in mapping.values() if applied["center_of"][p] == "C"})
    assert signature["patients"]["external"] < 302  # center C was not in the fit
    snap = applied["after_c"].set_index("study_id")
    by_patient: dict[str, list[str]] = {}
    for slide, patient in mapping.items():
        by_patient.setdefault(patient, []).append(slide)
    cut = signature["cut"]["value"]
    for patient in c_patients[:25]:
        expected = _by_hand(root, signature, by_patient[patient])
        assert snap.loc[patient, "pathomics_os_score"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert snap.loc[patient, "pathomics_os_group"] == ("high" if expected > cut else "low")
    scored = snap.loc[c_patients]
    assert result["scored"] == len(c_patients) == scored["pathomics_os_score"].notna().sum()
    assert result["high"] == int((scored["pathomics_os_score"] > cut).sum())
    # only center C was written; the RFS columns exist and are empty
    others = snap[snap["center"] != "C"]
    assert others["pathomics_os_score"].isna().all() and others["pathomics_os_group"].isna().all()
    assert snap["pathomics_rfs_score"].isna().all()
    # never refits: the frozen file is byte for byte the same, and no version was added
    assert (root / "signature" / f"{NAME}.json").read_bytes() == applied["frozen_bytes"]
    assert versions(applied["project"], NAME) == [1]
    # the application's record: content-keyed Parquet with the same scores
    stored = pd.read_parquet(result["scores"]).set_index("study_id")
    assert result["scores_sha256"][:12] in result["scores"] and set(stored.index) == set(c_patients)
    np.testing.assert_array_equal(stored.loc[c_patients, "score"], scored["pathomics_os_score"])
    assert (stored["version"] == 1).all() and (stored["signature"] == NAME).all()


def test_the_new_centers_shifted_predictions_raise_drift_warnings(applied):
    result = applied["job_c"].result
    signature = load_signature(applied["project"], NAME)
    assert set(result["drift"]) == {"C"}
    c = result["drift"]["C"]["features"]
    assert set(c) == set(signature["coefficients"]) | {"score"}
    drifting = [name for name, r in c.items() if r["drift"]]
    assert drifting and all(any("center C" in w and f" {name} drifts" in w for w in result["warnings"])
                            for name in drifting)
    # the score itself moved: PSI and KS recomputed here from the stored training values
    score_ref = signature["drift_reference"]["columns"]["score"]
    snap = applied["after_c"]
    new = snap.loc[snap["center"] == "C", "pathomics_os_score"].dropna().to_numpy()
    expected = drift.psi(drift.bin_shares(score_ref["values"], score_ref["edges"]),
                         drift.bin_shares(new, score_ref["edges"]))
    assert c["score"]["psi"] == pytest.approx(expected, rel=1e-12) and c["score"]["psi"] > 0.25
    from scipy.stats import ks_2samp

    assert c["score"]["ks_p"] == pytest.approx(ks_2samp(score_ref["values"], new).pvalue, rel=1e-9)
    # no stain vectors anywhere in this project (no slides): said so, not warned
    assert result["drift"]["C"]["stain"] == {"checked": False, "reason": "the training slides have no stain vectors"}


def test_apply_all_equals_the_fit_scores_and_fills_the_snapshot(applied):
    from pathomics_desktop.analytics.snapshot import CohortQuery, Filter, cohort_frame, snapshot_paths

    root, project = applied["root"], applied["project"]
    job = _run(project, "signature-apply", {"name": NAME, "all": True, "slide_patients": applied["mapping"]})
    assert job.status == "done", job.error
    fit_scores = pd.read_parquet(root / "signature" / f"{NAME}_scores.parquet").set_index("study_id")
    snap = cohort_frame(root).set_index("study_id")
    # the fitted patients: exactly the fit's own scores (same features, same frozen numbers)
    np.testing.assert_array_equal(snap.loc[fit_scores.index, "pathomics_os_score"], fit_scores["score"])
    assert (snap.loc[fit_scores.index, "pathomics_os_group"] == fit_scores["risk_group"]).all()
    # center C unchanged by the second application; everyone with predictions is scored
    c_ids = snap.index[snap["center"] == "C"]
    before = applied["after_c"].set_index("study_id")
    np.testing.assert_array_equal(snap.loc[c_ids, "pathomics_os_score"], before.loc[c_ids, "pathomics_os_score"])
    with_predictions = set(applied["mapping"].values())
    assert set(snap.index[snap["pathomics_os_score"].notna()]) == with_predictions
    assert job.result["scored"] == len(with_predictions) and job.result["without_features"] == 0

    # applying the same version again changes nothing, so the snapshot is not rebuilt
    meta_before = snapshot_paths(project)[1].read_text()
    again = _run(project, "signature-apply", {"name": NAME, "all": True, "slide_patients": applied["mapping"]})
    assert again.result["changed"] == 0 and again.result["scores_sha256"] == job.result["scores_sha256"]
    cohort_frame(root)
    assert snapshot_paths(project)[1].read_text() == meta_before

    # the filters see the groups
    query = CohortQuery.for_project(project)
    try:
        high = query.frame([Filter("pathomics_os_group", "=", "high"), Filter("included", "=", True)])
    finally:
        query.close()
    assert len(high) == int(((snap["pathomics_os_group"] == "high") & snap["included"]).sum()) > 0


def test_analyze_registry_and_export_have_the_score_columns(applied, capsys, tmp_path):
    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.registry.service import export_cohort, open_project_registry
    from pathomics_desktop.stats.km import km_comparison
    from tests.stats.cli_helpers import run_json

    root = applied["root"]
    snap = cohort_frame(root)
    data = snap[snap["included"] & snap["pathomics_os_group"].notna()]
    out = run_json(capsys, "km", "registry:", "--project", str(root), "--time", "os_months", "--event", "os_event",
                   "--group", "pathomics_os_group")
    direct = km_comparison(data["os_months"], data["os_event"], data["pathomics_os_group"].tolist())
    assert out["logrank"]["chisq"] == pytest.approx(direct.logrank.chisq, rel=1e-12)
    assert {g["group"]: g["n"] for g in out["groups"]} == data["pathomics_os_group"].value_counts().to_dict()

    registry = open_project_registry(applied["project"])
    try:
        path = export_cohort(registry, tmp_path / "cohort.csv")
    finally:
        registry.dispose()
    exported = pd.read_csv(path, float_precision="round_trip").set_index("study_id")
    ids = snap.loc[snap["pathomics_os_score"].notna(), "study_id"]
    np.testing.assert_array_equal(exported.loc[ids, "pathomics_os_score"],
                                  snap.set_index("study_id").loc[ids, "pathomics_os_score"])
    assert (exported.loc[ids, "pathomics_os_group"] == snap.set_index("study_id").loc[ids, "pathomics_os_group"]).all()
    assert list(exported.columns[11:15]) == ["pathomics_os_score", "pathomics_os_group", "pathomics_rfs_score",
                                             "pathomics_rfs_group"]


def test_refit_is_refused_without_replace_and_every_version_is_kept(applied):
    from pathomics_desktop.analytics.snapshot import snapshot_paths

    root, project = applied["root"], applied["project"]
    params = PARAMS | {"slide_patients": applied["fit_map"]}
    v1_bytes = (root / "signature" / NAME / "v1.json").read_bytes()
    with pytest.raises(UserError, match=r"signature 'sig_os' already exists \(v1.*--replace to fit version v2"):
        signature_job(project, params, JobContext())
    assert versions(project, NAME) == [1]
    result = signature_job(project, params | {"replace": True}, JobContext())
    assert result["version"] == 2 and versions(project, NAME) == [1, 2]
    assert (root / "signature" / NAME / "v1.json").read_bytes() == v1_bytes
    v1, v2 = load_version(project, NAME, 1), load_version(project, NAME, 2)
    assert load_signature(project, NAME) == v2
    # same data and seeds: the same signature, only its version and provenance differ
    strip = ("version", "provenance")
    assert {k: v for k, v in v1.items() if k not in strip} == {k: v for k, v in v2.items() if k not in strip}
    prov = v2["provenance"]
    assert prov["replaces_version"] == 1 and v1["provenance"]["replaces_version"] is None
    # the training snapshot (the scores written by apply changed it since v1) and the inputs
    snap, meta = snapshot_paths(project)
    assert prov["training_snapshot"]["sha256"] == file_sha256(snap)
    assert prov["training_snapshot"]["registry_version"] == json.loads(meta.read_text())["version"]
    assert v1["provenance"]["training_snapshot"]["sha256"] != prov["training_snapshot"]["sha256"]
    files = {s: root / "predictions" / RUN / f"{s}.parquet" for s in applied["fit_map"]}
    combined, per_file = predictions_hashes(files)
    assert prov["predictions"] == {"files": len(files), "sha256": combined}
    assert json.loads((root / "signature" / NAME / "v2_predictions.json").read_text()) == per_file
    assert prov["features_sha256"] == file_sha256(root / "features" / f"{RUN}_features.parquet")
    assert prov["seeds"] == {"cv_folds": 3, "xtile_permutation": 3}
    assert prov["software"]["python"] == platform.python_version()
    assert prov["software"]["numpy"] == np.__version__ and prov["software"]["pathomics"] == "0.1.0"


def test_printed_coefficients_are_the_frozen_ones(applied, capsys):
    from pathomics_desktop.signature import cli

    parser = argparse.ArgumentParser()
    parser.add_argument("--project")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["signature", "show", NAME, "--version", "1", "--project", str(applied["root"])])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    frozen = load_version(applied["project"], NAME, 1)["coefficients"]
    head = next(i for i, line in enumerate(lines) if line.startswith("coefficients ("))
    assert lines[head] == f"coefficients ({len(frozen)} selected; score = sum beta x):"
    rows = [line.split() for line in lines[head + 2: head + 2 + len(frozen)]]
    assert [r[0] for r in rows] == list(frozen)
    np.testing.assert_allclose([float(r[1]) for r in rows], list(frozen.values()), rtol=5e-6)
    assert not lines[head + 2 + len(frozen)].startswith("  ")  # the table ends with the last coefficient
    # apply through the CLI needs the registry's slides: this project has none, so it fails loudly
    args = parser.parse_args(["signature", "apply", NAME, "--all", "--project", str(applied["root"])])
    assert args.func(args) == 1
    assert "none of the" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["signature", "apply", NAME, "--all", "--center", "C"])


def test_apply_errors_name_what_is_wrong(applied):
    project = applied["project"]
    with pytest.raises(UserError, match=r"center 'Z' not found \(centers: A, B, C\)"):
        signature_apply_job(project, {"name": NAME, "center": "Z", "slide_patients": applied["mapping"]},
                            JobContext())
    with pytest.raises(UserError, match="either a center"):
        signature_apply_job(project, {"name": NAME}, JobContext())
    with pytest.raises(UserError, match="signature 'nope' not found"):
        signature_apply_job(project, {"name": "nope", "all": True}, JobContext())


# ----------------------------------------------------------------------------------------------
# drift statistics
# ----------------------------------------------------------------------------------------------


def test_psi_closed_form_on_a_small_example():
    # training: 4 values, median edge 2.5 -> shares (0.5, 0.5); new: shares (0.8, 0.2)
    edges = [2.5]
    p = drift.bin_shares([1, 2, 3, 4], edges)
    q = drift.bin_shares([1, 1, 1, 2, 3, 0, 0, 1, 2, 4], edges)
    np.testing.assert_array_equal(p, [0.5, 0.5])
    np.testing.assert_array_equal(q, [0.8, 0.2])
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert drift.psi(p, q) == pytest.approx(expected, rel=1e-14)  # 0.4158...
    assert drift.psi_level(expected) == "major" and drift.psi_level(0.15) == "moderate"
    assert drift.psi_level(0.1) == "none" and drift.psi_level(0.2500001) == "major"
    # an empty bin is floored at 1e-4, not infinite
    assert drift.psi([1.0, 0.0], [0.5, 0.5]) == pytest.approx(
        (0.5 - 1.0) * np.log(0.5 / 1.0) + (0.5 - 1e-4) * np.log(0.5 / 1e-4), rel=1e-14)
    assert drift.decile_edges(np.arange(1, 11)) == pytest.approx(list(np.quantile(np.arange(1, 11),
                                                                                  np.arange(1, 10) / 10)))


def test_feature_drift_fires_on_a_shifted_feature_and_not_on_the_same_distribution():
    rng = np.random.default_rng(5)
    train = rng.normal(size=(2000, 2))
    reference = drift.training_distribution(["f_same", "f_shift"], train)
    same_sample = pd.DataFrame({"f_same": train[:, 0], "f_shift": train[:, 1]})
    results, warnings = drift.feature_drift(reference, same_sample, label="center X")
    assert warnings == [] and results["f_same"]["psi"] == 0.0 and results["f_same"]["ks_p"] == 1.0
    new = pd.DataFrame({"f_same": rng.normal(size=2000), "f_shift": rng.normal(loc=0.8, size=2000)})
    results, warnings = drift.feature_drift(reference, new, label="center X")
    assert not results["f_same"]["drift"] and results["f_same"]["psi"] < 0.1 and results["f_same"]["ks_p"] >= 0.01
    assert results["f_shift"]["drift"] and results["f_shift"]["psi_level"] == "major"
    assert len(warnings) == 1 and warnings[0].startswith("center X: f_shift drifts from training (PSI ")


def _stain(h_angle_deg: float, rng, noise: float = 0.01) -> dict:
    """A stain record whose H vector is the reference H rotated by ``h_angle_deg`` about the E axis."""
    h0 = np.array([0.65, 0.70, 0.29])
    e0 = np.array([0.07, 0.99, 0.11])
    h0, e0 = h0 / np.linalg.norm(h0), e0 / np.linalg.norm(e0)
    axis = np.cross(h0, e0)
    axis /= np.linalg.norm(axis)
    a = np.radians(h_angle_deg)
    h = h0 * np.cos(a) + np.cross(axis, h0) * np.sin(a) + rng.normal(scale=noise, size=3)
    e = e0 + rng.normal(scale=noise, size=3)
    return {"he": np.column_stack([h, e]).tolist(), "max_c": [1.9, 1.0]}


def test_stain_drift_fires_on_rotated_vectors_and_not_on_the_same_stain():
    rng = np.random.default_rng(9)
    train = [_stain(0.0, rng) for _ in range(40)]
    reference = drift.stain_reference(train + [{"he": "broken"}])
    assert reference["slides"] == 40
    same, warnings = drift.stain_drift(reference, [_stain(0.0, rng) for _ in range(30)], label="center X")
    assert same["checked"] and not same["h"]["drift"] and not same["e"]["drift"] and warnings == []
    moved, warnings = drift.stain_drift(reference, [_stain(12.0, rng) for _ in range(30)], label="center X")
    assert moved["h"]["drift"] and not moved["e"]["drift"]
    assert moved["h"]["median_angle"] == pytest.approx(12.0, abs=1.5) and moved["h"]["ks_p"] < 1e-6
    assert len(warnings) == 1 and "haematoxylin stain vector drifts" in warnings[0]
    assert drift.stain_drift(None, train, label="x")[0] == {"checked": False,
                                                           "reason": "the training slides have no stain vectors"}


def test_stain_vectors_are_read_from_the_registrys_slides(tmp_path):
    from pathomics_desktop.registry.models import Slide
    from pathomics_desktop.registry.service import init_project, open_project_registry
    from pathomics_desktop.signature.jobs import slide_stains

    project = init_project(tmp_path / "p", synthetic=True)
    rng = np.random.default_rng(1)
    stains = [_stain(0.0, rng), _stain(5.0, rng), None]
    registry = open_project_registry(project)
    try:
        with registry.session(reason="test slides") as session:
            rows = [Slide(path=f"/slides/{i}.svs", stain_vectors=s) for i, s in enumerate(stains)]
            session.add_all(rows)
            session.flush()
            ids = [row.id for row in rows]
    finally:
        registry.dispose()
    # slide ids as the prediction files name them; a non-registry id and a slide without vectors are skipped
    got = slide_stains(project, [str(ids[0]), str(ids[1]), str(ids[2]), "imported-7"])
    assert got == stains[:2]
    assert slide_stains(project, ["imported-7"]) == []


def test_a_signature_from_before_versions_is_kept_as_v1(tmp_path):
    from pathomics_desktop.registry.service import init_project
    from pathomics_desktop.signature.versions import next_version

    project = init_project(tmp_path / "p", synthetic=True)
    assert next_version(project, "old", replace=False) == 1  # a new name
    legacy = project.root / "signature" / "old.json"
    legacy.parent.mkdir()
    legacy.write_text('{"name": "old", "coefficients": {"f": 1.5}}')
    with pytest.raises(UserError, match=r"'old' already exists \(an unversioned fit.*version v2"):
        next_version(project, "old", replace=False)
    assert next_version(project, "old", replace=True) == 2
    assert load_version(project, "old", 1) == {"name": "old", "coefficients": {"f": 1.5}}
    assert versions(project, "old") == [1]
