"""Slide catalogue in the registry: registration to patients, duplicates, moved files,
failures recorded per slide, MPP flags and overrides, QC feeding "insufficient tissue"."""

from __future__ import annotations

import shutil

import pytest

from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide
from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.slides import (
    add_slides,
    effective_mpp,
    get_slide,
    list_slides,
    load_slide_mapping,
    set_mpp_override,
    set_slide_qc,
)
from tests.registry.helpers import patient, write_csv


@pytest.fixture(scope="module")
def slide_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wsi")
    write_synthetic_slide(folder / "P1.svs", width=1024, height=1024, seed=1)
    write_synthetic_slide(folder / "P2.svs", width=1024, height=768, seed=2, center="B", mpp=0.23, app_mag=20)
    (folder / "broken.svs").write_bytes(b"II*\x00" + b"\x00" * 100)
    return folder


def test_add_folder_assigns_by_stem_and_records_failures(project, registry, tmp_path, slide_files):
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2")]))
    work = tmp_path / "slides"
    shutil.copytree(slide_files, work)
    report = add_slides(registry, project, [work])
    by_name = {o.path.rsplit("/", 1)[1]: o for o in report.outcomes}
    assert by_name["P1.svs"].status == "added" and by_name["P1.svs"].study_id == "P1"
    assert by_name["broken.svs"].status == "failed" and "broken.svs" in by_name["broken.svs"].message
    assert (project.root / "thumbnails" / f"{by_name['P1.svs'].slide_id}.png").exists()
    slides = {s["path"].rsplit("/", 1)[1]: s for s in list_slides(registry)}
    assert slides["broken.svs"]["qc_status"] == "failed"
    assert slides["P1.svs"]["mpp_flag"] is None and slides["P1.svs"]["mpp_x"] == pytest.approx(0.25)
    # a "20x" slide at 0.23 um/px is flagged, and not used until overridden
    assert "implausible" in slides["P2.svs"]["mpp_flag"]
    with registry.session() as s:
        assert effective_mpp(get_slide(s, slides["P2.svs"]["id"])) is None
    set_mpp_override(registry, slides["P2.svs"]["id"], 0.46, reason="calibration slide")
    with registry.session() as s:
        assert effective_mpp(get_slide(s, slides["P2.svs"]["id"])) == pytest.approx(0.46)
    with pytest.raises(UserError, match="pixel size"):
        set_mpp_override(registry, slides["P2.svs"]["id"], 500)

    # re-adding the same files refreshes, a copy is a duplicate, a moved file is relocated
    again = add_slides(registry, project, [work / "P1.svs"], thumbnails=False)
    assert again.outcomes[0].status == "updated" and again.outcomes[0].slide_id == by_name["P1.svs"].slide_id
    shutil.copy(work / "P1.svs", tmp_path / "copy_P1.svs")
    dup = add_slides(registry, project, [tmp_path / "copy_P1.svs"], thumbnails=False)
    assert dup.outcomes[0].status == "duplicate"
    moved = tmp_path / "archive" / "P1.svs"
    moved.parent.mkdir()
    (work / "P1.svs").rename(moved)
    rel = add_slides(registry, project, [moved], thumbnails=False)
    assert rel.outcomes[0].status == "relocated" and rel.outcomes[0].slide_id == by_name["P1.svs"].slide_id
    assert len(list_slides(registry)) == 3


def test_mapping_file_and_pattern(project, registry, tmp_path, slide_files):
    import_file(registry, write_csv(tmp_path / "p.csv", [patient("PAT-7"), patient("PAT-8")]))
    mapping_csv = tmp_path / "map.csv"
    mapping_csv.write_text("file,study_id\nP1.svs,PAT-7\n")
    report = add_slides(registry, project, [slide_files / "P1.svs"], mapping=load_slide_mapping(mapping_csv),
                        thumbnails=False)
    assert report.outcomes[0].study_id == "PAT-7" and report.outcomes[0].status == "added"
    shutil.copy(slide_files / "P2.svs", tmp_path / "scan_PAT-8_HE.svs")
    report = add_slides(registry, project, [tmp_path / "scan_PAT-8_HE.svs"], pattern=r"scan_(?P<study_id>PAT-\d+)_",
                        thumbnails=False)
    assert report.outcomes[0].study_id == "PAT-8" and report.outcomes[0].status == "added"
    with pytest.raises(UserError, match="named group"):
        add_slides(registry, project, [tmp_path], pattern=r"scan_(\d+)")
    bad = tmp_path / "bad_map.csv"
    bad.write_text("slide,patient\nx,y\n")
    with pytest.raises(UserError, match="columns"):
        load_slide_mapping(bad)


def test_slide_qc_feeds_insufficient_tissue(project, registry, tmp_path, slide_files):
    from pathomics_desktop.cohort.flow import patient_flow

    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2")]))
    report = add_slides(registry, project, [slide_files / "P1.svs"], thumbnails=False)
    sid = report.outcomes[0].slide_id
    with pytest.raises(UserError, match="reason"):
        set_slide_qc(registry, sid, "excluded")
    set_slide_qc(registry, sid, "excluded", "tumour area < 10% of the tissue")
    with registry.session() as s:
        flow = patient_flow(s).to_dict()
    assert flow["total"]["excluded"]["insufficient tissue"] == 1 and flow["total"]["included"] == 1


def test_registration_runs_as_a_background_job(project, registry, tmp_path, slide_files):
    from pathomics_desktop.jobs.runner import run_job, submit

    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1")]))
    job = run_job(project, registry, submit(registry, "slides-add", {"paths": [str(slide_files / "P1.svs")]}))
    assert job.status == "done" and job.result["counts"]["added"] == 1 and job.progress == 1.0
