"""The tissue mask fails safe: a field that is tissue everywhere is tiled whole, a slide with
little glass keeps its pale tissue, a blank slide still has none (issue 8).

Expected tiles come from the drawn geometry and, independently, from a brute-force
per-tile white-fraction check of every grid tile read through OpenSlide.
"""

from __future__ import annotations

import numpy as np
import openslide
import pytest

from pathomics_desktop.slides.tiling import NoTissueError, TilingParams, read_tile_index, tile_slide
from pathomics_desktop.slides.tissue import TissueMaskParams, compute_tissue_mask, tissue_mask_from_rgb
from tests.slides.drawn_slides import GLASS, PALE, PURPLE, TILE, brute_force_tissue_tiles, write_drawn_slide

PARAMS = TilingParams(tile_size=TILE, target_mpp=0.5, chunk_tiles=64, estimate_stain=False)  # 256 level-0 px
SIZES = (2048, 3072)


def _glass_strip(size: int) -> list[tuple[int, int, int, int]]:
    """Glass along the top edge: round(5 %) of the grid's tiles (3 of 64, 7 of 144)."""
    n_tiles = (size // TILE) ** 2
    k = round(0.05 * n_tiles)
    return [(0, 0, k * TILE, TILE)]


def _grid(size: int) -> set[tuple[int, int]]:
    return {(x, y) for y in range(0, size, TILE) for x in range(0, size, TILE)}


def _in_boxes(x: int, y: int, boxes) -> bool:
    return any(x0 <= x and x + TILE <= x1 and y0 <= y and y + TILE <= y1 for x0, y0, x1, y1 in boxes)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """{(kind, size): (path, glass boxes)} for kind full / 95 / blank."""
    folder = tmp_path_factory.mktemp("drawn")
    out = {}
    for size in SIZES:
        boxes = {"full": [], "95": _glass_strip(size), "blank": [(0, 0, size, size)]}
        for kind, glass in boxes.items():
            out[kind, size] = (write_drawn_slide(folder / f"{kind}_{size}.svs", size, glass, seed=size), glass)
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind,expected_count", [("full", {2048: 64, 3072: 144}), ("95", {2048: 61, 3072: 137})])
def test_tissue_everywhere_or_little_glass_is_tiled_whole(drawn, tmp_path, kind, expected_count, size):
    path, glass = drawn[kind, size]
    from_geometry = {(x, y) for x, y in _grid(size) if not _in_boxes(x, y, glass)}
    assert len(from_geometry) == expected_count[size]
    assert brute_force_tissue_tiles(path) == from_geometry

    res = tile_slide(path, tmp_path, params=PARAMS)
    df, meta = read_tile_index(res.index_path)
    assert res.status == "done" and res.n_tiles == expected_count[size]
    assert set(zip(df.x.tolist(), df.y.tolist())) == from_geometry
    assert meta["mask_mode"] == {"full": "no-background", "95": "otsu-refined"}[kind]
    assert res.mask_mode == meta["mask_mode"]


@pytest.mark.parametrize("size", SIZES)
def test_blank_slide_still_has_no_tissue(drawn, tmp_path, size):
    path, _ = drawn["blank", size]
    assert brute_force_tissue_tiles(path) == set()
    slide = openslide.OpenSlide(str(path))
    mask = compute_tissue_mask(slide)
    slide.close()
    assert mask.tissue_fraction == 0.0 and mask.mode == "otsu" and mask.background_fraction == 1.0
    with pytest.raises(NoTissueError, match=f"blank_{size}.svs.*insufficient tissue"):
        tile_slide(path, tmp_path, params=PARAMS)


def _field(glass_rows: int, two_stains: bool, rows: int = 100, cols: int = 100) -> np.ndarray:
    """A low-resolution image: ``glass_rows`` rows of glass above tissue that is pale on the
    left and purple on the right (``two_stains``) or purple only."""
    img = np.empty((rows, cols, 3), np.uint8)
    img[:] = PURPLE
    if two_stains:
        img[:, : cols // 2] = PALE
    img[:glass_rows] = GLASS
    return img


@pytest.mark.parametrize("glass_rows,two_stains,mode", [
    (0, True, "no-background"),  # 0 % glass < min_background_fraction (2 %): every coloured pixel is tissue
    (1, True, "no-background"),  # 1 % glass: still no background mode (the glass itself is not coloured)
    (5, True, "otsu-refined"),  # 5 % glass: Otsu splits pale from purple; re-run on the lower class
    (60, True, "otsu-refined"),  # 60 % glass: Otsu's lower class is 75 % glass (< 90 %), pale tissue kept
    (60, False, "otsu"),  # the usual slide: Otsu's lower class is all glass
])
def test_background_mode_criterion(glass_rows, two_stains, mode):
    params = TissueMaskParams(median_blur=1, closing=1, min_tissue_area=0, max_hole_area=0)
    mask = tissue_mask_from_rgb(_field(glass_rows, two_stains), 1.0, params)
    assert mask.mode == mode
    assert mask.background_fraction == pytest.approx(glass_rows / 100)
    expected = np.zeros((100, 100), bool)
    expected[glass_rows:] = True  # exactly the tissue rows, pale and purple
    np.testing.assert_array_equal(mask.mask, expected)
