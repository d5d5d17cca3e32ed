"""Fast path: decode the stored JPEG tiles of TIFF-based slides directly.

For tiled, JPEG-compressed TIFF pyramids (Aperio SVS, generic tiled TIFF) the tile bytes
are read with ``os.pread`` (thread-safe, no shared file position), completed with the
file's JPEGTables, and decoded by libjpeg(-turbo) through OpenCV, which releases the GIL so
that tiles decode in parallel threads. When a tile is wanted at 1/2, 1/4 or 1/8 of the
level's resolution, libjpeg's DCT-domain scaling decodes it directly at that size.

Pixels agree with OpenSlide's ``read_region`` within JPEG decoder tolerance (tested).
Anything else (JPEG 2000 SVS, other vendors, odd photometrics) uses OpenSlide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

_JPEG = 7
_PHOTOMETRIC_RGB = 2
_PHOTOMETRIC_YCBCR = 6


def _cv2_flags() -> dict[int, int]:
    import cv2

    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)
    if rgb is None:  # OpenCV < 4.10: decode BGR and swap
        return {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}
    return {1: rgb, 2: 16 | rgb, 4: 32 | rgb, 8: 64 | rgb}


@dataclass
class _Level:
    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: np.ndarray
    counts: np.ndarray
    tables: bytes | None
    photometric: int

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-self.height // self.tile_height)


class JpegTiffReader:
    """Parallel-safe reader of the JPEG tiles of a tiled TIFF pyramid.

    ``levels`` match OpenSlide's levels (same order and sizes) so that the two paths are
    interchangeable. Use :meth:`open` which returns None when the file is not suitable.
    """

    def __init__(self, path: str, levels: list[_Level]):
        self.path = path
        self.levels = levels
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._flags = _cv2_flags()
        import cv2

        self._rgb_native = getattr(cv2, "IMREAD_COLOR_RGB", None) is not None

    # -- construction ----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str], level_dimensions: list[tuple[int, int]] | None = None) -> "JpegTiffReader | None":
        """A reader if ``path`` is a tiled 8-bit RGB JPEG TIFF whose tiled pages match
        ``level_dimensions`` (OpenSlide's levels); otherwise None."""
        import tifffile

        path = os.fspath(path)
        try:
            with tifffile.TiffFile(path) as tf:
                levels: list[_Level] = []
                for page in tf.pages:
                    if not page.is_tiled:
                        continue
                    if (page.compression != _JPEG or page.samplesperpixel != 3 or page.bitspersample != 8
                            or page.planarconfig != 1 or page.photometric not in (_PHOTOMETRIC_RGB, _PHOTOMETRIC_YCBCR)
                            or page.imagedepth > 1):
                        return None
                    levels.append(_Level(
                        width=int(page.imagewidth), height=int(page.imagelength),
                        tile_width=int(page.tilewidth), tile_height=int(page.tilelength),
                        offsets=np.asarray(page.dataoffsets, dtype=np.int64),
                        counts=np.asarray(page.databytecounts, dtype=np.int64),
                        tables=bytes(page.jpegtables) if page.jpegtables else None,
                        photometric=int(page.photometric)))
        except Exception:  # not a TIFF, truncated, ...: OpenSlide will report it
            return None
        if not levels:
            return None
        if level_dimensions is not None:
            dims = [(lv.width, lv.height) for lv in levels]
            if dims[:len(level_dimensions)] != [tuple(d) for d in level_dimensions]:
                # generic TIFF: OpenSlide orders tiled pages by size
                levels.sort(key=lambda lv: -lv.width)
                dims = [(lv.width, lv.height) for lv in levels]
                if dims[:len(level_dimensions)] != [tuple(d) for d in level_dimensions]:
                    return None
            levels = levels[:len(level_dimensions)]
        return cls(path, levels)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "JpegTiffReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            self.close()
        except Exception:
            pass

    # -- tiles -------------------------------------------------------------------------
    def tile_bytes(self, level: int, index: int) -> bytes:
        """The complete JPEG stream of stored tile ``index`` (row-major) of ``level``."""
        lv = self.levels[level]
        count = int(lv.counts[index])
        if count == 0:
            return b""
        data = os.pread(self._fd, count, int(lv.offsets[index]))
        if len(data) != count:
            raise OSError(f"{self.path}: truncated tile {index} of level {level}")
        if lv.tables and len(lv.tables) > 4 and data[:2] == b"\xff\xd8":
            data = lv.tables[:-2] + data[2:]  # tables without EOI + tile without SOI
        return data

    def decode_tile(self, level: int, index: int, scale: int = 1) -> np.ndarray | None:
        """RGB uint8 of one stored tile, decoded at 1/``scale`` (1, 2, 4, 8); None if the
        tile is absent (sparse files)."""
        import cv2

        data = self.tile_bytes(level, index)
        if not data:
            return None
        lv = self.levels[level]
        if lv.photometric == _PHOTOMETRIC_RGB:
            return self._decode_rgb_stream(data, scale)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), self._flags[scale])
        if img is None:
            raise OSError(f"{self.path}: corrupt JPEG tile {index} of level {level}")
        if not self._rgb_native:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img

    def _decode_rgb_stream(self, data: bytes, scale: int) -> np.ndarray:
        """JPEG stored without colour transform (TIFF photometric RGB, as Aperio writes)."""
        import cv2
        import imagecodecs

        img = imagecodecs.jpeg8_decode(data, colorspace="RGB", outcolorspace="RGB")
        if scale > 1:
            h, w = img.shape[:2]
            img = cv2.resize(img, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
        return img

    def read_region(self, level: int, x: int, y: int, width: int, height: int, scale: int = 1) -> np.ndarray:
        """RGB uint8 of the level-``level`` rectangle (x, y, width, height), decoded at
        1/``scale``: shape (height // scale, width // scale, 3). Areas outside the image
        are white. ``x``, ``y``, ``width``, ``height`` and the tile size must be multiples
        of ``scale`` (see :meth:`can_scale`)."""
        lv = self.levels[level]
        s = scale
        out = np.full((height // s, width // s, 3), 255, np.uint8)
        tw, th = lv.tile_width, lv.tile_height
        tx0, ty0 = max(0, x // tw), max(0, y // th)
        tx1 = min(lv.tiles_across - 1, (x + width - 1) // tw)
        ty1 = min(lv.tiles_down - 1, (y + height - 1) // th)
        for ty in range(ty0, ty1 + 1):
            for tx in range(tx0, tx1 + 1):
                tile = self.decode_tile(level, ty * lv.tiles_across + tx, s)
                if tile is None:
                    continue
                # valid part of the stored tile (edge tiles are padded)
                vw = min(tw, lv.width - tx * tw) // s
                vh = min(th, lv.height - ty * th) // s
                ox, oy = (tx * tw - x) // s, (ty * th - y) // s
                sx0, sy0 = max(0, -ox), max(0, -oy)
                dx0, dy0 = max(0, ox), max(0, oy)
                w = min(vw - sx0, out.shape[1] - dx0)
                h = min(vh - sy0, out.shape[0] - dy0)
                if w > 0 and h > 0:
                    out[dy0:dy0 + h, dx0:dx0 + w] = tile[sy0:sy0 + h, sx0:sx0 + w]
        return out

    def can_scale(self, level: int, x: int, y: int, width: int, height: int, scale: int) -> bool:
        """Whether DCT-domain scaling by ``scale`` maps this rectangle onto whole pixels."""
        if scale not in (1, 2, 4, 8):
            return False
        lv = self.levels[level]
        return all(v % scale == 0 for v in (x, y, width, height, lv.tile_width, lv.tile_height))

    def stored_tiles(self, level: int, x: int, y: int, width: int, height: int) -> list[int]:
        """Indices of the stored tiles a level rectangle touches (for the decode bound)."""
        lv = self.levels[level]
        tw, th = lv.tile_width, lv.tile_height
        tx0, ty0 = max(0, x // tw), max(0, y // th)
        tx1 = min(lv.tiles_across - 1, (x + width - 1) // tw)
        ty1 = min(lv.tiles_down - 1, (y + height - 1) // th)
        return [ty * lv.tiles_across + tx for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]
