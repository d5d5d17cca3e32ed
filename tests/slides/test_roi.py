"""QuPath GeoJSON ROIs: import (Feature/FeatureCollection, holes, MultiPolygon), coverage, export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.slides.roi import (load_rois, parse_rois, roi_coverage, rois_to_geojson, tiles_to_geojson,
                                          write_geojson)

SQUARE_WITH_HOLE = {
    "type": "Polygon",
    "coordinates": [[[0, 0], [400, 0], [400, 400], [0, 400], [0, 0]],
                    [[100, 100], [300, 100], [300, 300], [100, 300], [100, 100]]],
}


def _feature(geom, name="", cls=None):
    props = {"objectType": "annotation"}
    if name:
        props["name"] = name
    if cls:
        props["classification"] = {"name": cls, "colorRGB": -65536}
    return {"type": "Feature", "geometry": geom, "properties": props}


def test_feature_collection_with_holes_and_multipolygon(tmp_path):
    multi = {"type": "MultiPolygon", "coordinates": [
        [[[1000, 1000], [1100, 1000], [1100, 1100], [1000, 1100], [1000, 1000]]],
        [[[2000, 2000], [2100, 2000], [2100, 2100], [2000, 2100], [2000, 2000]]]]}
    doc = {"type": "FeatureCollection", "features": [
        _feature(SQUARE_WITH_HOLE, "t1", "Tumor"), _feature(multi, cls="Stroma"),
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {}}]}
    p = write_geojson(tmp_path / "rois.geojson", doc)
    rois = load_rois(p)
    assert [r.classification for r in rois] == ["Tumor", "Stroma"]  # the point is not an area
    assert rois[0].geometry.area == pytest.approx(400 * 400 - 200 * 200)
    assert rois[1].geometry.geom_type == "MultiPolygon" and rois[1].geometry.area == pytest.approx(2 * 100 * 100)
    assert rois[0].label == "t1" and rois[1].label == "Stroma"


def test_single_feature_and_class_filter():
    rois = parse_rois(_feature(SQUARE_WITH_HOLE, cls="Tumor"))
    assert len(rois) == 1 and rois[0].classification == "Tumor"


def test_coverage_respects_holes():
    rois = parse_rois(_feature(SQUARE_WITH_HOLE, cls="Tumor"))
    cov, best = roi_coverage(rois, np.array([0, 150, 300, 1000]), np.array([0, 150, 300, 1000]), 100)
    assert cov == pytest.approx([1.0, 0.0, 1.0, 0.0])
    assert list(best) == [0, -1, 0, -1]


def test_coverage_in_chunks_equals_one_pass(monkeypatch):
    """Chunking (which lets a GUI thread run between shapely calls) changes no value: the
    coverage of a 37 x 37 grid measured 5 tiles at a time equals the one-pass answer and a
    pixel count on a raster of the square ring (400 px square minus a 200 px hole)."""
    import pathomics_desktop.slides.roi as roi_module

    rois = parse_rois(_feature(SQUARE_WITH_HOLE, cls="Tumor"))
    gx, gy = np.meshgrid(np.arange(37) * 25.0 - 200, np.arange(37) * 25.0 - 200)
    one_pass = roi_coverage(rois, gx.ravel(), gy.ravel(), 50)
    monkeypatch.setattr(roi_module, "COVERAGE_CHUNK", 5)
    chunked = roi_coverage(rois, gx.ravel(), gy.ravel(), 50)
    assert np.array_equal(one_pass[0], chunked[0]) and np.array_equal(one_pass[1], chunked[1])
    raster = np.zeros((1200, 1200), dtype=bool)  # pixel (r, c) covers [c-200, c-199) x [r-200, r-199)
    raster[200:600, 200:600] = True
    raster[300:500, 300:500] = False
    counted = [raster[int(y) + 200:int(y) + 250, int(x) + 200:int(x) + 250].mean()
               for x, y in zip(gx.ravel(), gy.ravel())]
    assert one_pass[0] == pytest.approx(counted, abs=1e-12)


def test_roi_outside_slide_rejected(tmp_path):
    far = {"type": "Polygon", "coordinates": [[[5000, 5000], [5100, 5000], [5100, 5100], [5000, 5000]]]}
    p = write_geojson(tmp_path / "far.geojson", {"type": "FeatureCollection", "features": [_feature(far, "far")]})
    with pytest.raises(UserError, match="far.*outside the slide"):
        load_rois(p, slide_size=(1000, 1000))
    # partly outside: clipped to the slide
    part = {"type": "Polygon", "coordinates": [[[900, 900], [1100, 900], [1100, 1100], [900, 1100], [900, 900]]]}
    p2 = write_geojson(tmp_path / "part.geojson", _feature(part))
    assert load_rois(p2, slide_size=(1000, 1000))[0].geometry.area == pytest.approx(100 * 100)


@pytest.mark.parametrize("text,match", [
    ('{"type": "FeatureCollection", "features": [', "malformed JSON at line 1"),
    ('{"type": "Topology"}', "not GeoJSON"),
    ('{"type": "FeatureCollection", "features": []}', "no polygon ROI"),
    ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1]]]}, "properties": {}}',
     "malformed Polygon"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}}]}', "geometry is missing"),
])
def test_malformed_geojson(tmp_path, text, match):
    p = tmp_path / "bad.geojson"
    p.write_text(text)
    with pytest.raises(UserError, match=match) as err:
        load_rois(p)
    assert "bad.geojson" in str(err.value)


def test_missing_roi_file(tmp_path):
    with pytest.raises(UserError, match="nope.geojson.*not found"):
        load_rois(tmp_path / "nope.geojson")


def test_export_round_trip(tmp_path):
    rois = parse_rois(_feature(SQUARE_WITH_HOLE, "t1", "Tumor"))
    p = write_geojson(tmp_path / "out.geojson", rois_to_geojson(rois))
    back = load_rois(p)
    assert back[0].name == "t1" and back[0].classification == "Tumor"
    assert back[0].geometry.equals(rois[0].geometry)


def test_tile_grid_export_is_geojson_squares(tmp_path):
    doc = tiles_to_geojson([0, 512], [0, 0], 512, [0.9, 0.6], ["t", "t"])
    p = write_geojson(tmp_path / "tiles.geojson", doc)
    data = json.loads(p.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 2
    assert data["features"][1]["geometry"]["coordinates"][0][0] == [512, 0]
    assert data["features"][0]["properties"]["measurements"]["tissue_fraction"] == 0.9
    assert sum(r.geometry.area for r in parse_rois(data)) == 2 * 512 * 512
