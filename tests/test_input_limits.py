"""Untrusted inputs stay untrusted: spreadsheet and GeoJSON size limits, a zip bomb refused
before it is inflated, and slide files confined to the project's slide roots."""

from __future__ import annotations

import zipfile

import pytest

from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide
from pathomics_desktop.errors import UserError
from pathomics_desktop.limits import MIB, check_xlsx_expansion, confine_to_roots
from pathomics_desktop.registry import importer
from pathomics_desktop.registry.importer import import_file
from pathomics_desktop.registry.service import init_project, open_project_registry
from pathomics_desktop.registry.slides import add_slides
from pathomics_desktop.slides import roi
from tests.registry.helpers import patient, table_counts, write_csv


def test_oversized_spreadsheet_is_refused_before_parsing(tmp_path, monkeypatch):
    project = init_project(tmp_path / "s", development_center="A")
    registry = open_project_registry(project)
    try:
        path = write_csv(tmp_path / "p.csv", [patient(f"P{i}") for i in range(50)])
        monkeypatch.setattr(importer, "MAX_SPREADSHEET_BYTES", path.stat().st_size - 1)
        report = import_file(registry, path)
        size = path.stat().st_size
        assert [str(e) for e in report.errors] == [
            f"ERROR: p.csv: the spreadsheet is {size / 1024:.1f} KiB, over the limit of {(size - 1) / 1024:.1f} KiB "
            "for a spreadsheet; split it or check that it is the right file"]
        assert table_counts(registry)["patients"] == 0
        monkeypatch.setattr(importer, "MAX_SPREADSHEET_BYTES", path.stat().st_size)
        assert not import_file(registry, path).errors
    finally:
        registry.dispose()


def test_zip_bomb_workbook_is_refused(tmp_path):
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"0" * (3 * MIB))  # compresses to a few KiB
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(UserError, match="would expand to 3.0 MiB, over the limit of 2.0 MiB"):
        check_xlsx_expansion(bomb, limit=2 * MIB)
    check_xlsx_expansion(bomb, limit=4 * MIB)


def test_oversized_geojson_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "roi.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}')
    monkeypatch.setattr(roi, "MAX_GEOJSON_BYTES", 10)
    with pytest.raises(UserError, match="the GeoJSON file is 45 bytes, over the limit of 10 bytes"):
        roi.load_rois(path)


def test_slides_outside_the_roots_fail_alone(tmp_path):
    inside, outside = tmp_path / "scans", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    write_synthetic_slide(inside / "P1.svs", width=512, height=512, seed=1)
    write_synthetic_slide(outside / "P2.svs", width=512, height=512, seed=2)
    (inside / "link.svs").symlink_to(outside / "P2.svs")
    project = init_project(tmp_path / "s", development_center="A")
    project.settings["slides"]["roots"] = [str(inside)]
    registry = open_project_registry(project)
    try:
        import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2")]))
        report = add_slides(registry, project, [inside / "P1.svs", outside / "P2.svs", inside / "link.svs"],
                            thumbnails=False)
    finally:
        registry.dispose()
    # paths are resolved before registration: the link is its target, outside the roots
    assert [(o.path, o.status) for o in report.outcomes] == [
        (str((inside / "P1.svs").resolve()), "added"), (str((outside / "P2.svs").resolve()), "failed"),
        (str((outside / "P2.svs").resolve()), "failed")]
    for outcome in report.outcomes[1:]:
        assert "outside the project's slide folders" in outcome.message
    assert confine_to_roots(inside / "P1.svs", []) == (inside / "P1.svs").resolve()
