"""QuPath annotations with several classes (issue 8): only the tile classes are tiled,
``Ignore*`` and excluded classes are subtracted, other classes are kept but not tiled.

The ROI file is written as QuPath 0.4/0.5 exports annotations; the expected tile set is
computed independently, by rasterising the drawn rectangles into a level-0 boolean image
and keeping the grid tiles at least ``roi_threshold`` (0.5) inside it, on a slide that is
tissue everywhere (so the per-tile white check keeps every tile).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pathomics_desktop.cli import main
from pathomics_desktop.errors import UserError
from pathomics_desktop.project import DEFAULT_SETTINGS
from pathomics_desktop.slides.roi import (DEFAULT_ROI_CLASSES, class_matches, load_roi_selection, parse_rois,
                                          select_rois, write_geojson)
from pathomics_desktop.slides.tiling import TilingParams, read_tile_index, tile_slide
from tests.slides.drawn_slides import TILE, write_drawn_slide

SIZE = 3072  # 12 x 12 tiles of 256 level-0 px (0.5 um/px, target 0.5 um/px)
PARAMS = TilingParams(tile_size=TILE, target_mpp=0.5, chunk_tiles=64, estimate_stain=False)

# rectangles (x0, y0, x1, y1), level-0 px
TUMOR_A = (256, 256, 1892, 1992)  # column 1792 is 100/256 inside (out), row 1792 is 200/256 inside (in)
TUMOR_A_HOLES = [(768, 768, 1024, 1024),  # one whole tile
                 (1344, 1280, 1536, 1536)]  # 3/4 of tile (1280, 1280): 1/4 left inside (out)
TUMOR_B = (2304, 256, 2816, 768)  # 2 x 2 tiles
IGNORE = (1280, 512, 1636, 1024)  # inside A: tiles (1280, 512|768) out, (1536, 512|768) keep 156/256 (in)
STROMA = (512, 2304, 1280, 2816)  # 3 x 2 tiles outside the tumour
DETECTION = (2304, 2304, 2560, 2560)  # a cell detection classified Tumor: not an annotation


def _ring(box):
    x0, y0, x1, y1 = box
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _feature(geometry, cls, color, object_type="annotation", uid="0"):
    return {"type": "Feature", "id": f"3f2c6a1e-0000-4000-8000-{uid:0>12}", "geometry": geometry,
            "properties": {"objectType": object_type, "isLocked": False,
                           "classification": {"name": cls, "color": color}}}


def qupath_document() -> dict:
    """Tumor (MultiPolygon with holes), Ignore* inside it, Stroma outside, a Tumor cell."""
    tumor = {"type": "MultiPolygon", "coordinates": [
        [_ring(TUMOR_A)] + [_ring(h)[::-1] for h in TUMOR_A_HOLES], [_ring(TUMOR_B)]]}
    return {"type": "FeatureCollection", "features": [
        _feature(tumor, "Tumor", [200, 0, 0], uid="1"),
        _feature({"type": "Polygon", "coordinates": [_ring(IGNORE)]}, "Ignore*", [180, 180, 180], uid="2"),
        _feature({"type": "Polygon", "coordinates": [_ring(STROMA)]}, "Stroma", [150, 200, 150], uid="3"),
        _feature({"type": "Polygon", "coordinates": [_ring(DETECTION)]}, "Tumor", [200, 0, 0], "detection", uid="4"),
    ]}


def expected_tiles(add=(), cut=(), threshold: float = 0.5) -> set[tuple[int, int]]:
    """Grid tiles with at least ``threshold`` of their area in ``add`` minus ``cut`` (brute force)."""
    inside = np.zeros((SIZE, SIZE), bool)
    for x0, y0, x1, y1 in add:
        inside[y0:y1, x0:x1] = True
    for x0, y0, x1, y1 in cut:
        inside[y0:y1, x0:x1] = False
    return {(x, y) for y in range(0, SIZE, TILE) for x in range(0, SIZE, TILE)
            if inside[y:y + TILE, x:x + TILE].mean() >= threshold}


TUMOR_TILES = expected_tiles(add=[TUMOR_A, TUMOR_B], cut=TUMOR_A_HOLES + [IGNORE])
STROMA_TILES = expected_tiles(add=[STROMA])


@pytest.fixture(scope="module")
def slide_and_roi(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roi_classes")
    slide = write_drawn_slide(folder / "resection.svs", SIZE, seed=5)
    roi = write_geojson(folder / "resection.geojson", qupath_document())
    return slide, roi


def _tiles(index_path) -> set[tuple[int, int]]:
    df, _ = read_tile_index(index_path)
    return set(zip(df.x.tolist(), df.y.tolist()))


def test_expected_set_by_hand():
    """The brute-force set agrees with the geometry read off by hand."""
    a = {(x, y) for x in range(256, 1792, 256) for y in range(256, 2048, 256)}  # 6 columns x 7 rows
    a -= {(768, 768), (1280, 1280), (1280, 512), (1280, 768)}
    b = {(2304, 256), (2560, 256), (2304, 512), (2560, 512)}
    assert TUMOR_TILES == a | b and len(TUMOR_TILES) == 42
    assert STROMA_TILES == {(x, y) for x in (512, 768, 1024) for y in (2304, 2560)}


def test_default_classes_tile_tumour_minus_ignore(slide_and_roi, tmp_path):
    slide, roi = slide_and_roi
    res = tile_slide(slide, tmp_path, roi_path=roi, params=PARAMS)
    assert res.status == "done" and res.n_tiles == len(TUMOR_TILES)
    tiles = _tiles(res.index_path)
    assert tiles == TUMOR_TILES
    assert not tiles & STROMA_TILES and (1280, 512) not in tiles and (2304, 2304) not in tiles
    df, meta = read_tile_index(res.index_path)
    assert set(df.roi) == {"Tumor"}
    sel = res.roi_selection
    assert sel["classes_found"] == {"Tumor": 1, "Ignore*": 1, "Stroma": 1}
    assert (sel["tiled"], sel["subtracted"], sel["not_tiled"]) == (["Tumor"], ["Ignore*"], ["Stroma"])
    assert sel["other_objects"] == 1 and sel["roi_classes"] == list(DEFAULT_ROI_CLASSES)
    # area removed: the Ignore* rectangle (inside A, clear of the holes)
    assert sel["subtracted_area"] == pytest.approx((IGNORE[2] - IGNORE[0]) * (IGNORE[3] - IGNORE[1]))
    assert meta["roi_selection"] == sel


def test_selection_without_slide(slide_and_roi):
    _, roi = slide_and_roi
    sel = load_roi_selection(roi)
    area_a = (TUMOR_A[2] - TUMOR_A[0]) * (TUMOR_A[3] - TUMOR_A[1]) - sum(
        (x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in TUMOR_A_HOLES)
    area_b = (TUMOR_B[2] - TUMOR_B[0]) * (TUMOR_B[3] - TUMOR_B[1])
    area_ignore = (IGNORE[2] - IGNORE[0]) * (IGNORE[3] - IGNORE[1])
    assert len(sel.rois) == 1 and sel.rois[0].geometry.area == pytest.approx(area_a + area_b - area_ignore)
    assert sel.summary() == ("classes found: Tumor (1), Ignore* (1), Stroma (1); tiled: Tumor; "
                             "subtracted: Ignore*; not tiled: Stroma; 1 non-annotation objects ignored")


def test_class_patterns_are_case_insensitive_globs():
    assert class_matches("TUMOUR", DEFAULT_ROI_CLASSES) and class_matches("Region 3", DEFAULT_ROI_CLASSES)
    assert class_matches("Region*", DEFAULT_ROI_CLASSES) and not class_matches("Stroma", DEFAULT_ROI_CLASSES)
    assert not class_matches("Tumor: Positive", DEFAULT_ROI_CLASSES)
    assert class_matches("Ignore*", ["ignore*"]) and class_matches("", ["*"])
    # the project default is the same list
    assert tuple(DEFAULT_SETTINGS["slides"]["roi_classes"]) == DEFAULT_ROI_CLASSES
    assert DEFAULT_SETTINGS["slides"]["exclude_classes"] == []


def test_unclassified_annotations_tiled_only_without_tile_class():
    square = {"type": "Polygon", "coordinates": [_ring((0, 0, 512, 512))]}
    plain = {"type": "Feature", "geometry": square, "properties": {"objectType": "annotation"}}
    sel = select_rois(parse_rois([plain]))
    assert sel.tiled == ["(unclassified)"] and sel.rois[0].geometry.area == 512 * 512
    tumor = _feature({"type": "Polygon", "coordinates": [_ring((1024, 0, 1536, 512))]}, "Tumour", [200, 0, 0])
    sel = select_rois(parse_rois([plain, tumor]))
    assert sel.tiled == ["Tumour"] and sel.not_tiled == ["(unclassified)"]
    assert sel.rois[0].geometry.bounds == (1024, 0, 1536, 512)


def test_no_tile_class_is_a_clear_error(tmp_path):
    stroma = _feature({"type": "Polygon", "coordinates": [_ring(STROMA)]}, "Stroma", [150, 200, 150])
    p = write_geojson(tmp_path / "stroma_only.geojson", {"type": "FeatureCollection", "features": [stroma]})
    with pytest.raises(UserError, match=r"stroma_only.geojson: no annotation of the classes to tile; "
                                        r"classes found: Stroma.*--roi-class"):
        load_roi_selection(p)
    ignore_all = _feature({"type": "Polygon", "coordinates": [_ring((0, 0, 3072, 3072))]}, "Ignore*", [0, 0, 0])
    tumor = _feature({"type": "Polygon", "coordinates": [_ring(TUMOR_B)]}, "Tumor", [200, 0, 0])
    p = write_geojson(tmp_path / "all_ignored.geojson", {"type": "FeatureCollection", "features": [tumor, ignore_all]})
    with pytest.raises(UserError, match="all_ignored.geojson: the excluded annotations cover every annotation"):
        load_roi_selection(p)


def test_cli_roi_class_and_exclude_class(slide_and_roi, tmp_path, capsys):
    slide, roi = slide_and_roi
    base = ["tile", str(slide), "--roi", str(roi), "--tile-size", "256", "--no-stain"]
    assert main(base + ["--out", str(tmp_path / "default")]) == 0
    out = capsys.readouterr().out
    assert ("classes found: Tumor (1), Ignore* (1), Stroma (1); tiled: Tumor; subtracted: Ignore*; "
            "not tiled: Stroma") in out
    assert _tiles(tmp_path / "default" / "resection.parquet") == TUMOR_TILES

    assert main(base + ["--roi-class", "stroma", "--out", str(tmp_path / "stroma"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_tiles"] == len(STROMA_TILES) == 6
    assert result["roi_selection"]["tiled"] == ["Stroma"] and result["roi_selection"]["not_tiled"] == ["Tumor"]
    assert _tiles(result["index_path"]) == STROMA_TILES

    # every class but Stroma (excluded, case-insensitive): the tumour set again; a second
    # exclusion (Tumor) leaves nothing and the slide fails with the classes named
    assert main(base + ["--roi-class", "*", "--exclude-class", "STROMA", "--out", str(tmp_path / "all"),
                        "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["roi_selection"]["subtracted"] == ["Ignore*", "Stroma"]
    assert _tiles(result["index_path"]) == TUMOR_TILES
    assert main(base + ["--exclude-class", "Tumor", "--out", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "resection.geojson: no annotation of the classes to tile" in err and "Stroma" in err


@pytest.fixture
def registered(slide_and_roi, tmp_path):
    """A project (real SQLite registry) with the slide registered (no patient needed)."""
    from pathomics_desktop.registry.service import init_project, open_project_registry
    from pathomics_desktop.registry.slides import add_slides

    slide, roi = slide_and_roi
    project = init_project(tmp_path / "study")
    registry = open_project_registry(project)
    report = add_slides(registry, project, [slide], thumbnails=False)
    registry.dispose()
    return project, report.outcomes[0].slide_id, roi


def test_registry_roi_and_tile_follow_the_project_setting(registered, capsys):
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.slides import slide_roi_classes
    from pathomics_desktop.slides.jobs import tile_index_path

    project, slide_id, roi = registered
    root = str(project.root)
    assert main(["slides", "roi", str(slide_id), str(roi), "--project", root, "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert stored["tiled"] == ["Tumor"] and stored["subtracted"] == ["Ignore*"] and stored["not_tiled"] == ["Stroma"]
    # the stored file keeps every class, for display
    assert [f["properties"]["classification"]["name"] for f in json.loads(open(stored["path"]).read())["features"]] \
        == ["Tumor", "Ignore*", "Stroma", "Tumor"]
    assert slide_roi_classes(project, slide_id)["classes_found"] == {"Tumor": 1, "Ignore*": 1, "Stroma": 1}

    assert main(["slides", "tile", "--tile-size", "256", "--project", root]) == 0
    out = capsys.readouterr().out
    assert f"slide {slide_id}: ROI classes found: Tumor (1), Ignore* (1), Stroma (1); tiled: Tumor" in out
    assert _tiles(tile_index_path(project, slide_id)) == TUMOR_TILES

    # the project setting decides: tile Stroma instead
    project = Project.load(root)
    project.settings["slides"]["roi_classes"] = ["Stroma"]
    project.save()
    assert slide_roi_classes(project, slide_id)["tiled"] == ["Stroma"]
    assert main(["slides", "tile", "--tile-size", "256", "--project", root]) == 0
    assert "tiled: Stroma" in capsys.readouterr().out
    assert _tiles(tile_index_path(project, slide_id)) == STROMA_TILES
    # and the flags override it
    assert main(["slides", "tile", "--tile-size", "256", "--roi-class", "Tumour", "--roi-class", "tumor",
                 "--project", root]) == 0
    assert _tiles(tile_index_path(project, slide_id)) == TUMOR_TILES


def test_bad_class_setting_names_the_file(registered):
    from pathomics_desktop.project import Project
    from pathomics_desktop.slides.jobs import roi_class_settings

    project, _, _ = registered
    project.settings["slides"]["roi_classes"] = "Tumor"  # a bare string is one class
    assert roi_class_settings(project) == (("Tumor",), ())
    project.settings["slides"]["exclude_classes"] = [3]
    with pytest.raises(UserError, match=r"project.toml \[slides\] exclude_classes: expected a list"):
        roi_class_settings(project)
    assert Project.load(project.root).settings["slides"] == DEFAULT_SETTINGS["slides"]
