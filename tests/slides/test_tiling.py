"""Tissue mask, MPP-aware tiling, Parquet index, resume, fast path vs OpenSlide, bad input."""

from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np
import openslide
import pytest

from pathomics_desktop.slides import cli as slides_cli
from pathomics_desktop.slides.roi import load_rois, parse_rois, write_geojson
from pathomics_desktop.slides.tiling import (INDEX_COLUMNS, NoTissueError, SlideTileSource, TilingParams,
                                             export_tile_grid_geojson, iter_tile_batches, read_tile_index,
                                             tile_slide, tile_slides)
from pathomics_desktop.slides.tissue import TissueMaskParams, compute_tissue_mask, tissue_mask_from_rgb

SMALL = TilingParams(tile_size=256, target_mpp=0.5, chunk_tiles=8)  # 512 level-0 px per tile at 40x


def _cli(argv):
    parser = argparse.ArgumentParser(prog="pathomics")
    sub = parser.add_subparsers()
    slides_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_tissue_mask_finds_tissue_not_glass(slide_a, blank_slide):
    s = openslide.OpenSlide(slide_a.path)
    mask = compute_tissue_mask(s, TissueMaskParams(mask_downsample=16))
    s.close()
    assert abs(mask.tissue_fraction - slide_a.tissue_fraction) < 0.12
    b = openslide.OpenSlide(str(blank_slide))
    assert compute_tissue_mask(b).tissue_fraction == 0.0
    b.close()


def test_mask_filters_small_objects_and_fills_holes():
    img = np.full((200, 200, 3), 245, np.uint8)
    img[20:120, 20:120] = (150, 60, 150)  # tissue block
    img[60:70, 60:70] = 245  # small hole
    img[180:183, 180:183] = (150, 60, 150)  # speck
    mask = tissue_mask_from_rgb(img, 1.0, TissueMaskParams(median_blur=1, closing=1, min_tissue_area=50,
                                                           max_hole_area=400))
    assert mask.mask[65, 65] and not mask.mask[181, 181] and mask.mask[25, 25] and not mask.mask[150, 20]


def test_tile_with_roi(slide_a, slide_dir, tmp_path):
    res = tile_slide(slide_a.path, tmp_path, roi_path=slide_dir / "pat_a.geojson", params=SMALL)
    assert res.status == "done" and res.n_tiles > 0 and res.read_size == 512 and res.level == 0
    df, meta = read_tile_index(res.index_path)
    assert set(INDEX_COLUMNS) <= set(df.columns)
    assert (df.x % 512 == 0).all() and (df.y % 512 == 0).all()  # grid anchored at the level-0 origin
    assert (df.roi_fraction >= 0.5).all() and (df.tissue_fraction >= 0.5).all()
    assert (df.read_size == 512).all() and (df.tile_size == 256).all() and (df.roi != "").all()
    assert meta["complete"] and meta["slide_mpp"] == 0.25 and meta["params"]["tile_size"] == 256
    assert meta["stain"] is not None and len(meta["stain"]["he"]) == 3
    assert json.loads((tmp_path / "pat_a.stain.json").read_text())["slide"] == "pat_a.svs"
    # every kept tile lies at least half inside the ROI
    roi = load_rois(slide_dir / "pat_a.geojson")[0].geometry
    from shapely.geometry import box

    for x, y in zip(df.x, df.y):
        assert roi.intersection(box(x, y, x + 512, y + 512)).area >= 0.5 * 512 * 512 - 1


def test_roi_hole_excludes_tiles(slide_a, tmp_path):
    geom = {"type": "Polygon", "coordinates": [
        [[0, 0], [3072, 0], [3072, 3072], [0, 3072], [0, 0]],
        [[1024, 1024], [2048, 1024], [2048, 2048], [1024, 2048], [1024, 1024]]]}
    p = write_geojson(tmp_path / "hole.geojson", {"type": "Feature", "geometry": geom, "properties": {"name": "ring"}})
    res = tile_slide(slide_a.path, tmp_path / "out", roi_path=p, params=SMALL)
    df, _ = read_tile_index(res.index_path)
    inside_hole = (df.x >= 1024) & (df.x < 2048) & (df.y >= 1024) & (df.y < 2048)
    assert len(df) > 0 and not inside_hole.any()


def test_without_roi_mask_decides_and_rerun_is_noop(slide_a, tmp_path):
    res = tile_slide(slide_a.path, tmp_path, params=SMALL)
    df, meta = read_tile_index(res.index_path)
    assert len(df) == res.n_tiles > 0 and (df.mask_fraction >= SMALL.min_mask_fraction).all()
    assert (df.roi == "").all()
    mtime = os.stat(res.index_path).st_mtime_ns
    again = tile_slide(slide_a.path, tmp_path, params=SMALL)
    assert again.status == "up-to-date" and again.n_tiles == res.n_tiles
    assert os.stat(res.index_path).st_mtime_ns == mtime
    # other parameters: a new index
    other = tile_slide(slide_a.path, tmp_path, params=TilingParams(tile_size=256, target_mpp=1.0, chunk_tiles=8))
    assert other.status == "done" and other.read_size == 1024 and other.level == 1


def test_interrupted_run_resumes(slide_a, tmp_path):
    full = tile_slide(slide_a.path, tmp_path / "full", params=SMALL)
    calls = {"n": 0}

    def cancel_after_two_chunks() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    part = tile_slide(slide_a.path, tmp_path / "resume", params=SMALL, cancel=cancel_after_two_chunks)
    assert part.status == "cancelled"
    assert not (tmp_path / "resume" / "pat_a.parquet").exists()  # never a half-written index
    assert len(list((tmp_path / "resume" / "pat_a.parquet.partial").glob("chunk_*.parquet"))) == 2
    resumed = tile_slide(slide_a.path, tmp_path / "resume", params=SMALL)
    assert resumed.status == "done" and resumed.resumed_chunks == 2
    a, _ = read_tile_index(full.index_path)
    b, _ = read_tile_index(resumed.index_path)
    assert a[["x", "y"]].equals(b[["x", "y"]])
    assert np.allclose(a.tissue_fraction, b.tissue_fraction)
    assert not (tmp_path / "resume" / "pat_a.parquet.partial").exists()


def test_same_field_of_view_for_40x_and_20x(slide_a, tmp_path):
    r40 = tile_slide(slide_a.path, tmp_path / "a", params=SMALL)
    r20 = tile_slide(slide_a.path, tmp_path / "b", params=SMALL, mpp_override=0.5)  # as if scanned at 20x
    assert r40.read_size == 2 * r20.read_size == 512
    _, meta = read_tile_index(r20.index_path)
    assert meta["mpp_source"] == "override" and meta["slide_mpp"] == 0.5


@pytest.mark.parametrize("level_target", [(0, 0.5), (1, 1.0)])
def test_fast_path_matches_openslide(slide_a, level_target):
    level, target = level_target
    read_size = int(256 * target / 0.25)
    with SlideTileSource(slide_a.path) as fast, SlideTileSource(slide_a.path, fast_path=False) as slow:
        assert fast.fast is not None and slow.fast is None
        assert fast.best_level(read_size, 256) == level
        for x, y in [(1024, 1024), (1536, 1024), (0, 2048)]:
            a = fast.read(x, y, read_size, level, 256).astype(int)
            b = slow.read(x, y, read_size, level, 256).astype(int)
            assert a.shape == b.shape == (256, 256, 3)
            diff = np.abs(a - b)
            assert diff.mean() < 2.0 and np.percentile(diff, 99) < 12


def test_iter_tile_batches(slide_a, tmp_path):
    res = tile_slide(slide_a.path, tmp_path, params=SMALL)
    df, _ = read_tile_index(res.index_path)
    seen = 0
    with SlideTileSource(slide_a.path) as src:
        for rows, batch in iter_tile_batches(slide_a.path, df, batch_size=5):
            assert batch.dtype == np.uint8 and batch.shape[1:] == (256, 256, 3) and len(rows) == len(batch) <= 5
            first = rows.iloc[0]
            assert np.array_equal(batch[0], src.read(int(first.x), int(first.y), 512, 0, 256))
            seen += len(batch)
    assert seen == len(df)


def test_export_tile_grid_geojson(slide_a, tmp_path):
    res = tile_slide(slide_a.path, tmp_path, params=SMALL)
    p = export_tile_grid_geojson(res.index_path, tmp_path / "tiles.geojson")
    tiles = parse_rois(json.loads(p.read_text()))
    assert len(tiles) == res.n_tiles and tiles[0].geometry.area == 512 * 512
    assert _cli(["slides", "tiles-geojson", res.index_path, "--out", str(tmp_path / "cli.geojson")]) == 0
    assert json.loads((tmp_path / "cli.geojson").read_text()) == json.loads(p.read_text())
    with pytest.raises(Exception, match="nothing.parquet"):
        _cli(["slides", "tiles-geojson", str(tmp_path / "nothing.parquet"), "--out", str(tmp_path / "x.geojson")])


def test_index_is_readable_by_duckdb(slide_a, tmp_path):
    import duckdb

    res = tile_slide(slide_a.path, tmp_path, params=SMALL)
    con = duckdb.connect()
    sql = "select count(*), avg(tissue_fraction) from read_parquet(?)"
    n, mean_tf = con.execute(sql, [res.index_path]).fetchall()[0]
    assert n == res.n_tiles and 0.5 <= mean_tf <= 1.0


def test_no_tissue_and_bad_inputs_fail_alone(slide_a, blank_slide, tmp_path, slide_dir):
    with pytest.raises(NoTissueError, match="blank.svs.*insufficient tissue"):
        tile_slide(blank_slide, tmp_path, params=SMALL)
    notslide = tmp_path / "notes.svs"
    notslide.write_text("hello")
    data = open(slide_a.path, "rb").read()
    trunc = tmp_path / "cut.svs"
    trunc.write_bytes(data[: len(data) // 3])
    zeroed = bytearray(data)
    zeroed[len(data) // 2: len(data) // 2 + 100_000] = bytes(100_000)  # tile data destroyed, header intact
    (tmp_path / "zeroed.svs").write_bytes(bytes(zeroed))
    far = write_geojson(tmp_path / "far.geojson", {"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[9000, 9000], [9100, 9000], [9100, 9100], [9000, 9000]]]}})
    bad_json = tmp_path / "bad.geojson"
    bad_json.write_text("{oops")
    shutil.copy(slide_a.path, tmp_path / "copy1.svs")
    shutil.copy(slide_a.path, tmp_path / "copy2.svs")
    slides = [str(tmp_path / "missing.svs"), str(notslide), str(trunc), str(tmp_path / "zeroed.svs"),
              str(blank_slide), slide_a.path,
              str(tmp_path / "copy1.svs"), str(tmp_path / "copy2.svs")]
    results = tile_slides(slides, tmp_path / "out", params=SMALL,
                          roi_paths={str(tmp_path / "copy1.svs"): far, str(tmp_path / "copy2.svs"): bad_json})
    status = {r.slide: r for r in results}
    assert status["pat_a.svs"].status == "done" and status["pat_a.svs"].qc == ("ok", "")
    assert status["blank.svs"].qc[0] == "excluded" and "insufficient tissue" in status["blank.svs"].qc[1]
    assert status["notes.svs"].qc[0] == "failed"
    for name, why in [("missing.svs", "not found"), ("notes.svs", "not a whole-slide image"), ("cut.svs", "truncated or corrupt"),
                      ("zeroed.svs", "corrupt"), ("blank.svs", "insufficient tissue"), ("copy1.svs", "outside the slide"),
                      ("copy2.svs", "malformed JSON")]:
        assert status[name].status == "failed" and why in status[name].reason, (name, status[name].reason)
        assert name in status[name].reason or "far.geojson" in status[name].reason or "bad.geojson" in status[name].reason


def test_cli_tile_exit_status(slide_a, slide_dir, tmp_path, capsys):
    rc = _cli(["tile", slide_a.path, "--roi", str(slide_dir / "pat_a.geojson"), "--tile-size", "256",
               "--mpp", "0.5", "--out", str(tmp_path), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "done" and out["n_tiles"] > 0
    assert _cli(["tile", slide_a.path, "--roi", str(slide_dir / "pat_a.geojson"), "--tile-size", "256",
                 "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["status"] == "up-to-date"
    rc = _cli(["tile", slide_a.path, str(tmp_path / "nothing.svs"), "--tile-size", "256", "--out", str(tmp_path / "x")])
    assert rc == 1
    assert "nothing.svs" in capsys.readouterr().err


def test_cli_mpp_override(slide_dir, tmp_path, capsys):
    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide

    p = slide_dir / "nompp_tile.svs"
    write_synthetic_slide(p, width=2048, height=2048, mpp=None, app_mag=40, seed=4)
    assert _cli(["tile", str(p), "--out", str(tmp_path), "--tile-size", "256"]) == 1
    assert "missing MPP" in capsys.readouterr().err
    assert _cli(["tile", str(p), "--out", str(tmp_path), "--tile-size", "256", "--mpp-override", "0.25", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["read_size"] == 512


def test_fast_path_on_generic_tiled_tiff(slide_a, tmp_path):
    """A plain pyramidal JPEG TIFF (OpenSlide 'generic-tiff'): fast path == OpenSlide."""
    import tifffile

    s = openslide.OpenSlide(slide_a.path)
    base = np.asarray(s.read_region((0, 0), 0, (2048, 2048)))[..., :3].copy()
    s.close()
    p = tmp_path / "generic.tif"
    with tifffile.TiffWriter(p) as tw:
        tw.write(base, tile=(256, 256), compression="jpeg", photometric="rgb", metadata=None)
        tw.write(np.ascontiguousarray(base[::4, ::4]), tile=(256, 256), compression="jpeg", photometric="rgb",
                 metadata=None, subfiletype=1)  # reduced-resolution image: a pyramid level
    g = openslide.OpenSlide(str(p))
    assert g.properties["openslide.vendor"] == "generic-tiff"
    g.close()
    with SlideTileSource(p) as fast, SlideTileSource(p, fast_path=False) as slow:
        assert fast.fast is not None
        for level, rs in [(0, 512), (1, 2048)]:
            a = fast.read(512, 512, rs, level, 256).astype(int)
            b = slow.read(512, 512, rs, level, 256).astype(int)
            assert np.abs(a - b).mean() < 2.0


def test_fast_path_on_rgb_jpeg_tiles(slide_a, tmp_path):
    """JPEG tiles stored without colour transform (TIFF photometric RGB, as many SVS)."""
    import tifffile

    s = openslide.OpenSlide(slide_a.path)
    base = np.asarray(s.read_region((512, 512), 0, (2048, 2048)))[..., :3].copy()
    s.close()
    p = tmp_path / "rgbjpeg.svs"
    desc = "Aperio Image Library v12.0.15 \r\n2048x2048 (256x256) JPEG/RGB Q=80|AppMag = 40|MPP = 0.25"
    with tifffile.TiffWriter(p) as tw:
        for img in (base, np.ascontiguousarray(base[::4, ::4])):
            tw.write(img, tile=(256, 256), compression="jpeg", photometric="rgb", subsampling=(1, 1),
                     compressionargs={"outcolorspace": 2}, description=desc, metadata=None)
    with tifffile.TiffFile(p) as tf:
        assert tf.pages[0].photometric == 2
    with SlideTileSource(p) as fast, SlideTileSource(p, fast_path=False) as slow:
        assert fast.fast is not None
        for x, y, rs in [(0, 0, 512), (512, 512, 1024)]:
            a = fast.read(x, y, rs, 0, 512).astype(int)
            b = slow.read(x, y, rs, 0, 512).astype(int)
            assert np.abs(a - b).mean() < 2.0
