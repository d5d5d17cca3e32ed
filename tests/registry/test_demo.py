"""The SYNTHETIC demo project: sizes, exclusions, splits, medians, determinism, labels."""

from __future__ import annotations

import hashlib
import json

import pytest

from pathomics_desktop.demo.cohort import create_demo_project, simulate, to_spreadsheets


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "project"
    result = create_demo_project(root)
    return root, result


def test_demo_matches_the_study_design(demo):
    from pathomics_desktop.cohort.flow import patient_flow
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry

    root, result = demo
    assert (result["training"], result["internal"], result["external"]) == (255, 110, 302)
    project = Project.load(root)
    assert project.settings["project"]["synthetic"] is True
    assert "SYNTHETIC" in project.settings["project"]["name"]
    reg = open_project_registry(project)
    try:
        with reg.session() as s:
            flow = patient_flow(s).to_dict()
    finally:
        reg.dispose()
    enrolled = {c["center"]: c["enrolled"] for c in flow["centers"]}
    included = {c["center"]: c["included"] for c in flow["centers"]}
    assert enrolled == {"A": 440, "B": 331, "C": 102}
    assert included["A"] == 365 and included["B"] + included["C"] == 302
    assert all(v > 0 for v in flow["total"]["excluded"].values())


def test_demo_survival_follows_the_study(demo):
    import pandas as pd
    from lifelines import KaplanMeierFitter

    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import export_cohort, open_project_registry

    root, _ = demo
    reg = open_project_registry(Project.load(root))
    try:
        out = export_cohort(reg, root / "cohort.parquet", included_only=True)
    finally:
        reg.dispose()
    frame = pd.read_parquet(out)
    assert frame["synthetic"].all() and frame["study_id"].str.startswith("SYN-").all()
    medians = {}
    for split, g in frame.groupby("split"):
        os_ = KaplanMeierFitter().fit(g.os_months, g.os_event).median_survival_time_
        rfs = KaplanMeierFitter().fit(g.rfs_months, g.rfs_event).median_survival_time_
        medians[split] = (os_, rfs)
    assert medians["training"][0] == pytest.approx(48, abs=6) and medians["training"][1] == pytest.approx(20, abs=3)
    assert medians["internal"][0] == pytest.approx(35, abs=6) and medians["internal"][1] == pytest.approx(19, abs=3)
    assert medians["external"][0] == pytest.approx(24, abs=4) and medians["external"][1] == pytest.approx(12, abs=3)
    # CA19-9 >= 200 and stage III-IV worsen survival; adjuvant chemotherapy helps (training set)
    from lifelines import CoxPHFitter

    t = frame[frame.split == "training"].assign(
        ca=lambda d: (d.ca19_9 >= 200).astype(int),
        stage34=lambda d: d.tnm_group.isin(["III", "IV"]).astype(int),
        chemo=lambda d: (d.adjuvant_chemotherapy == "yes").astype(int))
    hr = CoxPHFitter().fit(t[["os_months", "os_event", "ca", "stage34", "chemo"]], "os_months", "os_event").hazard_ratios_
    assert hr["ca"] > 1.3 and hr["stage34"] > 1.3 and hr["chemo"] < 1.0


def test_demo_is_deterministic_for_a_seed():
    def digest(seed):
        patients, visits = to_spreadsheets(simulate(seed=seed))
        return hashlib.sha256(patients.to_csv().encode() + visits.to_csv().encode()).hexdigest()

    assert digest(5) == digest(5)
    assert digest(5) != digest(6)


def test_demo_identifiers_are_synthetic_and_not_exported(demo):
    import pandas as pd

    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import export_cohort, open_project_registry

    root, _ = demo
    reg = open_project_registry(Project.load(root))
    try:
        plain = pd.read_csv(export_cohort(reg, root / "plain.csv"))
        full = pd.read_csv(export_cohort(reg, root / "full.csv", include_identifiers=True))
    finally:
        reg.dispose()
    assert not {"name", "mrn", "birth_date"} & set(plain.columns)
    assert {"name", "mrn", "birth_date"} <= set(full.columns)
    assert full["name"].str.startswith("Synthetic Person").all()


def test_demo_slides_follow_the_latent_variable_and_register(tmp_path):
    from pathomics_desktop.cli import main
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.registry.slides import list_slides

    root = tmp_path / "demo"
    assert main(["demo", str(root), "--slides", "--slide-size", "512", "--slide-limit", "4"]) == 0
    project = Project.load(root)
    reg = open_project_registry(project)
    try:
        slides = list_slides(reg)
    finally:
        reg.dispose()
    assert len(slides) == 4 and all(s["study_id"] and s["qc_status"] == "pending" for s in slides)
    assert all(s["mpp_flag"] is None and s["mpp_x"] == pytest.approx(0.5) for s in slides)
    drawn = sorted(p.name for p in (root / "rois").glob("SYN-*.geojson"))
    attached = sorted(p.name for p in (root / "rois").glob("[0-9]*.geojson"))
    assert len(drawn) == 4 and attached == sorted(f"{s['id']}.geojson" for s in slides)
    # resumable: a second run writes nothing new and registers nothing twice
    from pathomics_desktop.demo.cohort_slides import add_demo_slides

    again = add_demo_slides(project, size=512, limit=4)
    assert again["written"] == 0 and again["registered"]["updated"] == 4


def test_demo_slides_are_tiled_inside_their_tumour_roi(tmp_path):
    """Each demo slide's drawn tumour ROI is attached to the slide, so tiling keeps exactly the
    tiles that the ROI covers by at least half (checked with shapely, independently)."""
    import pandas as pd
    from shapely.geometry import box, shape

    from pathomics_desktop.cli import main

    root = tmp_path / "demo"
    assert main(["demo", str(root), "--slides", "--slide-size", "1024", "--slide-limit", "2"]) == 0
    assert main(["--project", str(root), "slides", "tile"]) == 0
    for slide_id, study_id in ((1, "SYN-A-0001"), (2, "SYN-A-0002")):
        doc = json.loads((root / "rois" / f"{study_id}.geojson").read_text())
        features = doc["features"] if "features" in doc else [doc]
        roi = shape(features[0]["geometry"])
        tiles = pd.read_parquet(root / "tiles" / f"{slide_id}.parquet")
        assert len(tiles) > 0
        covered = [roi.intersection(box(x, y, x + size, y + size)).area / size ** 2
                   for x, y, size in zip(tiles["x"], tiles["y"], tiles["read_size"])]
        assert min(covered) >= 0.5
