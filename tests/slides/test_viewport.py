"""Viewer geometry (level choice, tile ranges, zoom, scale bar, hit-testing), colour maps,
heatmap grids and the threaded viewer tile reader on a real synthetic pyramidal TIFF."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pathomics_desktop.slides.viewport import (
    TileGrid,
    choose_level,
    decode_scale,
    scale_bar,
    tile_containing,
    zoom_about,
)


def brute_level(downsamples, s):
    usable = [(d, i) for i, d in enumerate(downsamples) if d <= s * (1 + 1e-6)]
    return max(usable)[1] if usable else 0


def test_level_choice_is_the_largest_downsample_not_above_the_view():
    rng = np.random.default_rng(3)
    pyramids = [(1.0, 4.0, 16.0, 64.02048655569783), (1.0, 2.0, 4.0, 8.0, 16.0), (1.0,), (1.0, 4.000244140625)]
    for downsamples in pyramids:
        for s in np.concatenate([rng.uniform(0.1, 100.0, 300), np.array(downsamples), np.array(downsamples) - 1e-3]):
            assert choose_level(downsamples, s) == brute_level(downsamples, s), (downsamples, s)
    # named cases on the 100k bench pyramid
    assert choose_level((1.0, 4.0, 16.0, 64.02), 0.5) == 0
    assert choose_level((1.0, 4.0, 16.0, 64.02), 3.99) == 0
    assert choose_level((1.0, 4.0, 16.0, 64.02), 4.0) == 1
    assert choose_level((1.0, 4.0, 16.0, 64.02), 64.0) == 2
    assert choose_level((1.0, 4.0, 16.0, 64.02), 500.0) == 3


def test_decode_scale_is_the_largest_power_of_two_within_the_level_ratio():
    for d, s in itertools.product((1.0, 4.0, 16.0), np.linspace(0.3, 80, 97)):
        expected = max([k for k in (1, 2, 4, 8) if k <= s / d * (1 + 1e-6)] or [1])
        assert decode_scale(d, s) == expected
    assert decode_scale(4.0, 12.0, scales=(1,)) == 1


def test_tiles_in_rect_equal_the_brute_force_overlap_set():
    grid = TileGrid(((5000, 3000), (1250, 750), (312, 187)), (1.0, 4.0, 16.0256), 256)
    rng = np.random.default_rng(5)
    for _ in range(60):
        level = int(rng.integers(0, 3))
        x0, y0 = rng.uniform(-2000, 5000), rng.uniform(-2000, 3000)
        x1, y1 = x0 + rng.uniform(1, 6000), y0 + rng.uniform(1, 4000)
        d = grid.downsamples[level]
        w, h = grid.level_dimensions[level]
        expected = set()
        for c in range(math.ceil(w / 256)):
            for r in range(math.ceil(h / 256)):
                bx0, by0 = c * 256 * d, r * 256 * d
                bx1, by1 = min((c + 1) * 256, w) * d, min((r + 1) * 256, h) * d
                if bx0 < x1 and bx1 > x0 and by0 < y1 and by1 > y0:
                    expected.add((c, r))
        assert set(grid.tiles_in_rect(level, x0, y0, x1, y1)) == expected
        by_distance = grid.tiles_by_distance(level, x0, y0, x1, y1)
        assert set(by_distance) == expected and len(by_distance) == len(expected)
    # edge tiles are cut to the level
    assert grid.level_rect(0, 19, 11) == (4864, 2816, 136, 184)
    assert grid.tile_bounds(1, 4, 2) == (1024 * 4.0, 512 * 4.0, 1250 * 4.0, 750 * 4.0)


def test_zoom_about_keeps_the_anchor_at_the_same_screen_offset():
    rng = np.random.default_rng(9)
    for _ in range(100):
        c = tuple(rng.uniform(0, 1e5, 2))
        a = tuple(rng.uniform(0, 1e5, 2))
        s, f = rng.uniform(0.3, 100), rng.choice([0.5, 2 ** 0.5, 2.0, 3.0])
        (cx, cy), s2 = zoom_about(c, s, a, f)
        assert s2 == pytest.approx(s / f)
        # screen offset of the anchor from the view centre, before and after
        assert (a[0] - cx) / s2 == pytest.approx((a[0] - c[0]) / s, rel=1e-9, abs=1e-6)
        assert (a[1] - cy) / s2 == pytest.approx((a[1] - c[1]) / s, rel=1e-9, abs=1e-6)
    (cx, cy), s2 = zoom_about((100.0, 100.0), 1.0, (0.0, 0.0), 10.0, limits=(0.25, 50.0))
    assert s2 == 0.25 and (cx, cy) == (25.0, 25.0)


def test_scale_bar_length_is_pixels_times_mpp_times_downsample_and_nice():
    nice = sorted(m * 10.0 ** k for m in (1, 2, 5) for k in range(-3, 8))
    for mpp, ds, max_px in itertools.product((0.2527, 0.5, 0.25, 1.0), (0.25, 1.0, 3.7, 16.0, 64.02, 300.0),
                                             (100.0, 160.0)):
        um, px = scale_bar(mpp, ds, max_px)
        assert um == pytest.approx(px * mpp * ds)
        assert px <= max_px * (1 + 1e-9)
        assert um == max(v for v in nice if v <= max_px * mpp * ds * (1 + 1e-9))
    assert scale_bar(0.5, 1.0, 160.0) == (50.0, 100.0)


def test_tile_containing_matches_a_brute_force_search():
    rng = np.random.default_rng(2)
    xs, ys = np.meshgrid(np.arange(0, 2048, 256), np.arange(0, 1536, 256))
    keep = rng.random(xs.size) < 0.6
    x, y = xs.ravel()[keep], ys.ravel()[keep]
    for px, py in rng.uniform(-100, 2200, (300, 2)):
        expected = next((i for i in range(x.size) if x[i] <= px < x[i] + 256 and y[i] <= py < y[i] + 256), -1)
        assert tile_containing(x, y, 256, px, py) == expected


def test_colour_maps_are_the_published_tables():
    from pathomics_desktop.learning.gradcam import jet_colormap
    from pathomics_desktop.slides.overlays import colorize, colormap_lut, lut_index

    # end points of matplotlib's viridis and magma (van der Walt & Smith)
    assert colormap_lut("viridis")[0].tolist() == [0x44, 0x01, 0x54]
    assert colormap_lut("viridis")[255].tolist() == [0xFD, 0xE7, 0x25]
    assert colormap_lut("magma")[0].tolist() == [0x00, 0x00, 0x04]
    assert colormap_lut("magma")[255].tolist() == [0xFC, 0xFD, 0xBF]
    p = np.array([0.0, 0.1234, 0.5, 0.87, 1.0, np.nan])
    rgba = colorize(p, "jet", alpha=200)
    expected = jet_colormap(np.rint(p[:5] * 255) / 255)
    assert (rgba[:5, :3] == expected).all() and (rgba[:5, 3] == 200).all()
    assert rgba[5].tolist() == [0, 0, 0, 0]
    assert lut_index(np.array([0.0, 0.5, 1.0, 2.0, -1.0])).tolist() == [0, 128, 255, 255, 0]
    from pathomics_desktop.errors import UserError

    with pytest.raises(UserError, match="colour map 'rainbow'"):
        colormap_lut("rainbow")


def test_heatmap_grid_places_each_tile_value_in_its_cell():
    from pathomics_desktop.slides.overlays import heatmap_grid

    table = {"x": np.array([512, 1024, 512, 1536]), "y": np.array([256, 256, 768, 1280]),
             "prob": np.array([0.1, 0.9, 0.25, 0.5])}
    grid = heatmap_grid(table, 256, "prob")
    assert (grid.x0, grid.y0, grid.cell, grid.values.shape) == (512, 256, 256, (5, 5))
    for x, y, p in zip(table["x"], table["y"], table["prob"]):
        assert grid.value_at(x + 10, y + 255) == pytest.approx(p)
    assert np.isnan(grid.value_at(800, 256)) and np.isnan(grid.value_at(0, 0))
    assert int((~np.isnan(grid.values)).sum()) == 4


def test_viewer_tiles_match_openslide_and_read_from_several_threads(slide_a):
    from concurrent.futures import ThreadPoolExecutor

    import openslide

    from pathomics_desktop.slides.viewer_tiles import PyramidTileReader

    fast = PyramidTileReader(slide_a.path)
    slow = PyramidTileReader(slide_a.path, fast_path=False, tile_size=fast.grid.tile_size)
    assert fast.backend == "stored-jpeg" and slow.backend == "openslide"
    assert fast.grid == slow.grid
    ref = openslide.OpenSlide(slide_a.path)
    keys = [(lv, c, r) for lv in range(fast.grid.levels)
            for c in range(fast.grid.tiles_across(lv)) for r in range(fast.grid.tiles_down(lv))][::3]
    with ThreadPoolExecutor(4) as pool:
        tiles = list(pool.map(lambda k: fast.read_tile(*k), keys))
        slow_tiles = list(pool.map(lambda k: slow.read_tile(*k), keys))
    for (lv, c, r), a, b in zip(keys, tiles, slow_tiles):
        x, y, w, h = fast.grid.level_rect(lv, c, r)
        d = fast.grid.downsamples[lv]
        expected = np.asarray(ref.read_region((int(round(x * d)), int(round(y * d))), lv, (w, h)))[..., :3]
        assert a.shape == b.shape == (h, w, 3)
        assert np.abs(a.astype(int) - expected).mean() < 1.0  # JPEG decoder tolerance
        assert np.array_equal(b, expected)
    half = fast.read_tile(0, 1, 1, scale=2)
    full = fast.read_tile(0, 1, 1)
    assert half.shape == (128, 128, 3)
    import cv2

    assert np.abs(half.astype(int) - cv2.resize(full, (128, 128), interpolation=cv2.INTER_AREA)).mean() < 4.0
    ref.close()
    fast.close()
    slow.close()
