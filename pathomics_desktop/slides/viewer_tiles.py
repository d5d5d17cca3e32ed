"""Tiles of every pyramid level for the whole-slide viewer (no Qt), safe to read from
several threads at once.

Tile (col, row) of level L is the level-L rectangle of :meth:`TileGrid.level_rect`
(:mod:`pathomics_desktop.slides.viewport`). On tiled JPEG TIFFs (Aperio SVS, generic tiled
TIFF) whose levels share one square stored tile size, the viewer's tiles *are* the stored
tiles: one ``pread`` and one libjpeg decode each (:class:`~.fastread.JpegTiffReader`,
thread-safe, the GIL released while decoding). Every other slide is read with OpenSlide's
``read_region``, through one OpenSlide handle per thread.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.slides.viewport import TileGrid

#: Viewer tile side (level pixels) when the file's stored tiles cannot be used.
DEFAULT_TILE_SIZE = 256


class PyramidTileReader:
    """RGB uint8 viewer tiles of one slide (``read_tile``), fast JPEG path or OpenSlide."""

    def __init__(self, path: str | os.PathLike[str], *, fast_path: bool = True, tile_size: int | None = None):
        from pathomics_desktop.slides.fastread import JpegTiffReader
        from pathomics_desktop.slides.reader import open_slide

        self.path = str(Path(path))
        slide = open_slide(self.path)
        self._handles = [slide]
        self._local = threading.local()
        self._local.slide = slide
        self._lock = threading.Lock()
        dims = tuple((int(w), int(h)) for w, h in slide.level_dimensions)
        downsamples = tuple(float(d) for d in slide.level_downsamples)
        self.fast = JpegTiffReader.open(self.path, list(dims)) if fast_path else None
        stored = None
        if self.fast is not None:
            sizes = {(lv.tile_width, lv.tile_height) for lv in self.fast.levels}
            if len(sizes) == 1:
                tw, th = sizes.pop()
                stored = tw if tw == th else None
        self.stored_tiles = stored is not None and tile_size in (None, stored)
        self.grid = TileGrid(dims, downsamples, int(stored if self.stored_tiles else (tile_size or DEFAULT_TILE_SIZE)))
        #: DCT scales libjpeg can decode at directly (YCbCr JPEG stored tiles); else only 1
        self.scales = (1, 2, 4, 8) if self.stored_tiles and all(
            lv.photometric == 6 and stored % 8 == 0 for lv in self.fast.levels) else (1,)
        self.closed = False

    @property
    def backend(self) -> str:
        """``stored-jpeg`` (one stored tile per viewer tile), ``jpeg`` or ``openslide``."""
        if self.fast is None:
            return "openslide"
        return "stored-jpeg" if self.stored_tiles else "jpeg"

    def _slide(self):
        slide = getattr(self._local, "slide", None)
        if slide is None:
            from pathomics_desktop.slides.reader import open_slide

            slide = open_slide(self.path)
            with self._lock:
                self._handles.append(slide)
            self._local.slide = slide
        return slide

    def read_tile(self, level: int, col: int, row: int, scale: int = 1) -> np.ndarray:
        """RGB uint8 (ceil(h / scale), ceil(w / scale), 3) of viewer tile (col, row) of
        ``level``, decoded at 1/``scale`` (one of :attr:`scales`, else 1); white where the
        file stores no pixels. Raises UserError naming the slide on corrupt data."""
        if scale not in self.scales:
            scale = 1
        if self.closed:
            raise UserError(f"slide {self.path}: reader closed")
        x, y, w, h = self.grid.level_rect(level, col, row)
        if w <= 0 or h <= 0:
            raise UserError(f"slide {self.path}: tile ({col}, {row}) is outside level {level}")
        try:
            if self.stored_tiles:
                index = row * self.grid.tiles_across(level) + col
                tile = self.fast.decode_tile(level, index, scale)
                hs, ws = -(-h // scale), -(-w // scale)
                if tile is None:
                    return np.full((hs, ws, 3), 255, np.uint8)
                return np.ascontiguousarray(tile[:hs, :ws])
            if self.fast is not None:
                return self.fast.read_region(level, x, y, w, h)
            d = self.grid.downsamples[level]
            region = np.asarray(self._slide().read_region((int(round(x * d)), int(round(y * d))), level, (w, h)))
        except UserError:
            raise
        except Exception as exc:  # OSError / OpenSlideError on corrupt pixel data
            raise UserError(f"slide {self.path}: cannot read level {level} tile ({col}, {row}) ({exc})") from exc
        rgb = np.ascontiguousarray(region[..., :3])
        alpha = region[..., 3]
        if alpha.min() < 255:
            rgb[alpha == 0] = 255
        return rgb

    def close(self) -> None:
        self.closed = True
        if self.fast is not None:
            self.fast.close()
        with self._lock:
            handles, self._handles = self._handles, []
        for slide in handles:
            slide.close()

    def __enter__(self) -> "PyramidTileReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
