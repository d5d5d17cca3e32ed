"""SYNTHETIC slides drawn from known geometry, for tests whose expected tiles are computed
by hand: a pyramidal Aperio-style JPEG TIFF (256-px tiles, levels at downsample 1 and 4,
0.5 um/px, "SYNTHETIC" in the description), read by OpenSlide like any scanner file.

The field is tissue everywhere except the given glass boxes: the left half pale eosin-like
pink, the right half hematoxylin-like purple (two saturation modes, as stroma and tumour
give), with pixel noise. Every tissue pixel has G <= 202, so it is never "white" by the
per-tile check (R, G, B >= 210); glass is RGB 242.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PALE = (230, 194, 210)  # HSV saturation ~40 / 255
PURPLE = (150, 90, 170)  # HSV saturation ~120 / 255
GLASS = 242
MPP = 0.5
TILE = 256


def write_drawn_slide(path: Path, size: int, glass_boxes: list[tuple[int, int, int, int]] = (),
                      *, seed: int = 0) -> Path:
    """A ``size`` x ``size`` SYNTHETIC slide; ``glass_boxes`` are level-0 ``(x0, y0, x1, y1)``."""
    import tifffile

    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.int16)
    img[:, : size // 2] = PALE
    img[:, size // 2:] = PURPLE
    img += rng.integers(-8, 9, (size, size, 1), dtype=np.int16)
    img = img.clip(0, 255).astype(np.uint8)
    for x0, y0, x1, y1 in glass_boxes:
        img[y0:y1, x0:x1] = GLASS
    desc = (f"Aperio Image Library v12.0.15 \r\n{size}x{size} ({TILE}x{TILE}) JPEG/RGB Q=90|AppMag = 20|"
            f"MPP = {MPP}|ScanScope ID = SYNTHETIC|Title = SYNTHETIC test slide - not patient data")
    with tifffile.TiffWriter(path) as tw:
        for level in (img, np.ascontiguousarray(img[::4, ::4])):
            tw.write(level, tile=(TILE, TILE), compression="jpeg", compressionargs={"level": 90},
                     photometric="rgb", description=desc, metadata=None)
    return path


def brute_force_tissue_tiles(path: Path, tile: int = TILE, white_level: int = 210,
                             min_tissue: float = 0.5) -> set[tuple[int, int]]:
    """Grid tiles (level-0 origin) whose non-white fraction is >= ``min_tissue``, read tile by
    tile through OpenSlide at level 0 (no tissue mask, no tiler code)."""
    import openslide

    slide = openslide.OpenSlide(str(path))
    try:
        width, height = slide.dimensions
        out = set()
        for y in range(0, height - tile + 1, tile):
            for x in range(0, width - tile + 1, tile):
                rgb = np.asarray(slide.read_region((x, y), 0, (tile, tile)))[..., :3]
                white = (rgb >= white_level).all(axis=2)
                if 1.0 - white.mean() >= min_tissue:
                    out.add((x, y))
        return out
    finally:
        slide.close()
