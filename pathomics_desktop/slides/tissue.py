"""Tissue detection at low resolution and the per-tile background check.

The mask follows CLAM (Lu et al., Nat Biomed Eng 2021, ``create_patches_fp.py`` defaults):
HSV saturation, median blur, Otsu threshold, morphological closing, then removal of small
tissue components and filling of small holes. Areas are given in level-0 pixels and
scaled to the mask resolution.

Otsu's threshold assumes two modes, glass and tissue. The mask fails safe when that is not
so (see :func:`choose_saturation_threshold`): a field that is tissue everywhere (a cropped
region, a dense resection) has no glass mode, and then every pixel above the saturation
floor is tissue, so the per-tile white check alone decides; a slide with little glass keeps
its pale tissue; a blank slide (glass only) still has none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pathomics_desktop.errors import UserError


@dataclass(frozen=True)
class TissueMaskParams:
    """Parameters of :func:`compute_tissue_mask` (CLAM-like defaults).

    ``mask_downsample``: wanted level-0 pixels per mask pixel (CLAM segments at a
    downsample of about 64; the pyramid level closest below it is read, then resized). ``median_blur``: odd kernel (mask pixels).
    ``closing``: square closing kernel (mask pixels). ``min_tissue_area`` and
    ``max_hole_area``: in level-0 pixels (CLAM counts them in 512 x 512 reference patches;
    16 patches here, and never more than 1 % of the slide so that small slides keep their
    tissue). ``saturation_floor``: the Otsu threshold is never taken below
    this (keeps blank slides empty instead of thresholding noise).
    ``min_background_fraction``: below this fraction of glass pixels (R, G, B all >= the
    tiler's white level, the per-tile white check) the image has no background mode and
    Otsu is not used. ``min_glass_share``: Otsu's lower class must be at least this share
    glass, else Otsu has split the tissue and is re-run inside the lower class.
    """

    mask_downsample: float = 64.0
    median_blur: int = 7
    closing: int = 4
    min_tissue_area: float = 16 * 512 * 512
    max_hole_area: float = 16 * 512 * 512
    saturation_floor: int = 15
    dark_floor: int = 0  # pixels with value (HSV V) below this are not tissue (pen, black borders)
    min_background_fraction: float = 0.02
    min_glass_share: float = 0.9

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TissueMask:
    """A boolean tissue mask and its scale (level-0 pixels per mask pixel)."""

    mask: np.ndarray  # bool (h, w)
    downsample_x: float
    downsample_y: float
    otsu_threshold: float  # the saturation threshold used (0-255), whichever rule chose it
    mode: str = "otsu"  # otsu | otsu-refined | no-background (see choose_saturation_threshold)
    background_fraction: float = float("nan")  # fraction of glass pixels in the low-resolution image

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def integral(self) -> np.ndarray:
        """Summed-area table with a zero first row/column (float64)."""
        m = self.mask.astype(np.float64)
        out = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
        out[1:, 1:] = m.cumsum(0).cumsum(1)
        return out

    def fraction_in_boxes(self, x: np.ndarray, y: np.ndarray, size: float) -> np.ndarray:
        """Mask fraction inside each level-0 square ``[x, x+size) x [y, y+size)``."""
        ii = self.integral()
        h, w = self.mask.shape
        x0 = np.clip(np.floor(np.asarray(x) / self.downsample_x).astype(int), 0, w)
        y0 = np.clip(np.floor(np.asarray(y) / self.downsample_y).astype(int), 0, h)
        x1 = np.clip(np.ceil((np.asarray(x) + size) / self.downsample_x).astype(int), 0, w)
        y1 = np.clip(np.ceil((np.asarray(y) + size) / self.downsample_y).astype(int), 0, h)
        area = np.maximum((x1 - x0) * (y1 - y0), 1)
        s = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
        return s / area


def _otsu(values: np.ndarray) -> float:
    import cv2

    t, _ = cv2.threshold(np.ascontiguousarray(values, dtype=np.uint8).reshape(-1, 1), 0, 255,
                         cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t)


def choose_saturation_threshold(sat: np.ndarray, glass: np.ndarray,
                                params: TissueMaskParams = TissueMaskParams()) -> tuple[float, str, float]:
    """``(threshold, mode, background_fraction)``: tissue is ``sat > threshold``.

    ``sat``: blurred HSV saturation (uint8); ``glass``: pixels that are white by the per-tile
    white check (R, G, B >= white level). ``background_fraction = glass.mean()``.

    * ``no-background``: ``background_fraction < min_background_fraction`` - there is no
      glass mode to separate, so the threshold is ``saturation_floor`` (every coloured
      pixel is tissue; the per-tile white check decides);
    * ``otsu``: Otsu's threshold ``t`` when its lower class ``sat <= t`` is at least
      ``min_glass_share`` glass (the usual slide: glass below, tissue above);
    * ``otsu-refined``: otherwise Otsu split the tissue (little glass, pale and dark
      tissue); Otsu is re-run on the lower class until that class is mostly glass.

    The threshold is never below ``saturation_floor``, so a blank slide stays empty.
    """
    floor = float(params.saturation_floor)
    background = float(glass.mean()) if glass.size else 0.0
    if background < params.min_background_fraction:
        return floor, "no-background", background
    t = _otsu(sat)
    mode = "otsu"
    for _ in range(8):  # each pass splits the lower class again; a few suffice
        lower = sat <= t
        n_lower = int(lower.sum())
        if n_lower == 0 or glass[lower].mean() >= params.min_glass_share:
            break
        t_next = _otsu(sat[lower])
        if t_next >= t:
            break
        t, mode = t_next, "otsu-refined"
    return max(t, floor), mode, background


def tissue_mask_from_rgb(rgb: np.ndarray, downsample: float, params: TissueMaskParams = TissueMaskParams(),
                         *, white_level: int = 210) -> TissueMask:
    """Tissue mask of a low-resolution RGB image ``rgb`` taken at ``downsample``.

    ``white_level``: the tiler's per-tile white check (a pixel is glass when R, G, B are all
    >= it); it decides whether the image has a background mode (:func:`choose_saturation_threshold`).
    """
    import cv2

    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError("expected an RGB image")
    rgb = np.ascontiguousarray(rgb[..., :3])
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    sat = hsv[..., 1]
    k = params.median_blur | 1
    if k > 1:
        sat = cv2.medianBlur(sat, k)
    glass = rgb.min(axis=2) >= white_level
    thr, mode, background = choose_saturation_threshold(sat, glass, params)
    mask = (sat > thr).astype(np.uint8)
    if params.dark_floor > 0:
        mask[hsv[..., 2] < params.dark_floor] = 0
    if params.closing > 1:
        kernel = np.ones((params.closing, params.closing), np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    px_area = downsample * downsample
    min_area = min(params.min_tissue_area / px_area, 0.01 * mask.size)
    mask = _filter_components(mask, min_area, params.max_hole_area / px_area)
    return TissueMask(mask.astype(bool), downsample, downsample, thr, mode, background)


def _filter_components(mask: np.ndarray, min_area: float, max_hole: float) -> np.ndarray:
    """Drop tissue components smaller than ``min_area`` and fill holes up to ``max_hole``
    (areas in mask pixels)."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    out = keep[labels].astype(np.uint8)
    # holes: background components not touching the border, small enough
    inv = (1 - out).astype(np.uint8)
    n2, labels2, stats2, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    h, w = out.shape
    fill = np.zeros(n2, bool)
    for i in range(1, n2):
        x, y, bw, bh, area = stats2[i]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        fill[i] = (not touches) and area <= max_hole
    out[fill[labels2]] = 1
    return out


def compute_tissue_mask(slide, params: TissueMaskParams = TissueMaskParams(), *, name: str = "",
                        white_level: int = 210) -> TissueMask:
    """Tissue mask of an ``openslide.OpenSlide`` at about ``params.mask_downsample``.

    Reads the pyramid level whose downsample is the largest not above the wanted one, in
    strips (never the whole level-0 image), and resizes it to the mask grid.
    ``white_level`` is the tiler's per-tile white check (see :func:`tissue_mask_from_rgb`).
    """
    import cv2

    w0, h0 = slide.dimensions
    want = max(1.0, float(params.mask_downsample))
    downs = list(slide.level_downsamples)
    level = max((i for i, d in enumerate(downs) if d <= want * 1.01), key=lambda i: downs[i], default=0)
    d = downs[level]
    lw, lh = slide.level_dimensions[level]
    mw, mh = max(1, int(round(w0 / want))), max(1, int(round(h0 / want)))
    if mw * mh > 64_000_000:
        raise UserError(f"slide {name}: tissue mask too large ({mw} x {mh}); raise mask_downsample")
    scale = d / want  # level px -> mask px
    out = np.empty((mh, mw, 3), np.uint8)
    strip = max(1, int(2048 * 2048 / max(lw, 1)))  # level rows per strip, ~16 MB RGBA at most
    row_mask = 0
    y = 0
    while y < lh and row_mask < mh:
        rows = min(strip, lh - y)
        region = np.asarray(slide.read_region((0, int(round(y * d))), level, (lw, rows)))
        rgb = _rgba_on_white(region)
        target_rows = min(mh - row_mask, max(1, int(round((y + rows) * scale)) - row_mask))
        if y + rows >= lh:
            target_rows = mh - row_mask
        out[row_mask:row_mask + target_rows] = cv2.resize(rgb, (mw, target_rows), interpolation=cv2.INTER_AREA)
        row_mask += target_rows
        y += rows
    return tissue_mask_from_rgb(out, want, params, white_level=white_level)


def _rgba_on_white(region: np.ndarray) -> np.ndarray:
    """OpenSlide RGBA (transparent outside the scanned area) composited on white."""
    rgb = region[..., :3]
    alpha = region[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    out = rgb.copy()
    out[alpha == 0] = 255
    return out


def white_fraction(tile: np.ndarray, white_level: int = 210) -> float:
    """Fraction of pixels of an RGB uint8 tile whose R, G and B are all >= ``white_level``."""
    import cv2

    t = np.ascontiguousarray(tile[..., :3])
    white = cv2.inRange(t, (white_level, white_level, white_level), (255, 255, 255))
    return cv2.countNonZero(white) / float(white.size)


def tissue_fractions(batch: np.ndarray, white_level: int = 210) -> np.ndarray:
    """``1 - white_fraction`` for each tile of an (N, H, W, 3) uint8 batch."""
    return np.array([1.0 - white_fraction(t, white_level) for t in batch])
