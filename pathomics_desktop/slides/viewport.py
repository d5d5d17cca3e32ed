"""Viewport geometry of the whole-slide viewer (no Qt): pyramid level choice, the tile grid
of each level, zoom about a point, the scale bar and hit-testing of tile-index tiles.

Conventions: every position is in level-0 pixels (x right, y down). The view's
*downsample* ``s`` is level-0 pixels per screen pixel (s = 1: one slide pixel per screen
pixel; s = 8: zoomed out 8 times). Level ``L`` has downsample ``d_L`` (level-0 pixels per
level pixel) and dimensions ``(W_L, H_L)``; the viewer cuts every level into square tiles
of ``T`` level pixels, tile ``(col, row)`` covering level pixels
``[col T, min((col + 1) T, W_L)) x [row T, min((row + 1) T, H_L))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: A level is usable for a view downsample ``s`` when ``d_L <= s * (1 + LEVEL_TOLERANCE)``
#: (so that floating-point noise in a downsample such as 3.99999 does not skip a level).
LEVEL_TOLERANCE = 1e-6


def choose_level(downsamples: Sequence[float], view_downsample: float) -> int:
    """The level to read for a view: the largest ``d_L <= s`` (never upsample a coarser
    level); level 0 when zoomed in beyond 1:1 (``s < 1``)."""
    limit = float(view_downsample) * (1.0 + LEVEL_TOLERANCE)
    best, best_d = 0, -1.0
    for level, d in enumerate(downsamples):
        if d <= limit and d > best_d:
            best, best_d = level, float(d)
    return best


def decode_scale(level_downsample: float, view_downsample: float, scales: Sequence[int] = (1, 2, 4, 8)) -> int:
    """The largest JPEG DCT scale ``k`` (decode at 1/k) that still gives at least one
    decoded pixel per screen pixel: ``k <= s / d_L``; 1 when zoomed in further."""
    limit = float(view_downsample) / float(level_downsample) * (1.0 + LEVEL_TOLERANCE)
    return max([k for k in scales if k <= limit] or [1])


@dataclass(frozen=True)
class TileGrid:
    """The viewer's tiles of one pyramid (``T = tile_size`` level pixels a side)."""

    level_dimensions: tuple[tuple[int, int], ...]
    downsamples: tuple[float, ...]
    tile_size: int

    @property
    def levels(self) -> int:
        return len(self.level_dimensions)

    @property
    def size(self) -> tuple[int, int]:
        """Level-0 width and height."""
        return self.level_dimensions[0]

    def tiles_across(self, level: int) -> int:
        return -(-self.level_dimensions[level][0] // self.tile_size)

    def tiles_down(self, level: int) -> int:
        return -(-self.level_dimensions[level][1] // self.tile_size)

    def level_rect(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of tile (col, row) in level pixels (edge tiles are cut)."""
        w, h = self.level_dimensions[level]
        t = self.tile_size
        x, y = col * t, row * t
        return x, y, min(t, w - x), min(t, h - y)

    def tile_bounds(self, level: int, col: int, row: int) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of tile (col, row) in level-0 pixels: level pixels x ``d_L``."""
        d = self.downsamples[level]
        x, y, w, h = self.level_rect(level, col, row)
        return x * d, y * d, (x + w) * d, (y + h) * d

    def tiles_in_rect(self, level: int, x0: float, y0: float, x1: float, y1: float) -> list[tuple[int, int]]:
        """Tiles (col, row) of ``level`` that overlap the level-0 rectangle [x0, x1) x [y0, y1),
        clipped to the level; row-major order."""
        d = self.downsamples[level]
        t = self.tile_size * d
        c0 = max(0, int(math.floor(x0 / t)))
        r0 = max(0, int(math.floor(y0 / t)))
        c1 = min(self.tiles_across(level) - 1, int(math.ceil(x1 / t)) - 1)
        r1 = min(self.tiles_down(level) - 1, int(math.ceil(y1 / t)) - 1)
        return [(c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]

    def tiles_by_distance(self, level: int, x0: float, y0: float, x1: float, y1: float) -> list[tuple[int, int]]:
        """:meth:`tiles_in_rect`, nearest to the rectangle's centre first (load order)."""
        tiles = self.tiles_in_rect(level, x0, y0, x1, y1)
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        t = self.tile_size * self.downsamples[level]
        return sorted(tiles, key=lambda cr: ((cr[0] + 0.5) * t - cx) ** 2 + ((cr[1] + 0.5) * t - cy) ** 2)


def fit_downsample(slide_size: tuple[int, int], view_size: tuple[int, int], margin: float = 1.02) -> float:
    """The downsample that shows the whole slide in a view of ``view_size`` screen pixels."""
    (w, h), (vw, vh) = slide_size, view_size
    return max(w / max(vw, 1), h / max(vh, 1)) * margin


def zoom_about(center: tuple[float, float], downsample: float, anchor: tuple[float, float], factor: float,
               limits: tuple[float, float] = (0.0, math.inf)) -> tuple[tuple[float, float], float]:
    """Zoom by ``factor`` (> 1 zooms in) keeping the slide point ``anchor`` at the same
    screen position: ``s' = clip(s / factor)``, ``c' = a + (c - a) s' / s`` (a screen
    offset ``(c - a) / s`` from the anchor stays the same number of screen pixels)."""
    new_ds = float(np.clip(downsample / factor, limits[0], limits[1]))
    k = new_ds / downsample
    return (anchor[0] + (center[0] - anchor[0]) * k, anchor[1] + (center[1] - anchor[1]) * k), new_ds


#: Scale-bar lengths are 1, 2 or 5 times a power of ten micrometres.
NICE_STEPS = (1.0, 2.0, 5.0)


def scale_bar(mpp: float, downsample: float, max_pixels: float = 160.0) -> tuple[float, float]:
    """``(length_um, length_px)`` of the longest "nice" bar (1, 2, 5 x 10^k um) not longer
    than ``max_pixels`` screen pixels: one screen pixel is ``mpp x s`` um, so
    ``length_px = length_um / (mpp s)``."""
    if not (mpp and mpp > 0 and downsample > 0):
        raise ValueError("scale bar needs a positive MPP and downsample")
    um_per_px = mpp * downsample
    most = max_pixels * um_per_px
    k = math.floor(math.log10(most))
    best = 10.0 ** (k - 1)
    for exp in (k - 1, k):
        for step in NICE_STEPS:
            value = step * 10.0 ** exp
            if value <= most * (1 + 1e-9):
                best = max(best, value)
    return best, best / um_per_px


def format_length(um: float) -> str:
    """``500 µm``, ``2 mm``, ``0.5 µm``."""
    if um >= 1000:
        return f"{um / 1000:g} mm"
    return f"{um:g} µm"


def tile_containing(x: np.ndarray, y: np.ndarray, size: np.ndarray | int, px: float, py: float) -> int:
    """Row index of the first tile whose square ``[x, x + size) x [y, y + size)`` contains the
    level-0 point (px, py), or -1."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    s = np.broadcast_to(np.asarray(size, dtype=np.float64), x.shape)
    hit = np.flatnonzero((x <= px) & (px < x + s) & (y <= py) & (py < y + s))
    return int(hit[0]) if hit.size else -1
