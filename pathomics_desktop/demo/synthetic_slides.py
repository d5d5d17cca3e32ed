"""Synthetic H&E whole-slide images that OpenSlide opens as Aperio slides (demo and tests).

Every file written here is labelled synthetic (``Synthetic = yes`` and ``Title`` in the
Aperio ImageDescription); none is a patient slide.

How a slide is made
-------------------
* A low-frequency *layout* (one value per ``LAYOUT_STEP`` or more level-0 pixels) holds smooth
  random fields: a tissue field (tissue where > 0) and one score per tissue class; a pixel's
  class is the arg-max of the class scores (``CLASSES``). Class biases follow the patient's
  latent aggressiveness ``a`` (~N(0, 1)): dense desmoplastic stroma and necrosis grow with
  ``a``, immune clusters and loose stroma shrink with it.
* Tumour comes in two grades: low grade (glands, small nuclei) and high grade (solid sheets
  of large, dark, pleomorphic nuclei). Each texture cell of tumour is high grade with
  probability ``high_grade_fraction(a) = Phi(GRADE_SLOPE * a)`` (independently per cell), so
  a patch shows one crisp grade that a patch model can learn, while the slide's share of
  high-grade patches rises continuously with ``a``: the patch-level signal that the
  study's histogram / bag-of-words features of patch probabilities aggregate.
* Each class has a small bank of textures rendered at the slide's resolution in stain
  concentration space (hematoxylin ``c_H``, eosin ``c_E``) and converted to RGB by
  Beer-Lambert, ``I = 255 * exp(-(c_H * h + c_E * e))``, with per-center stain vectors
  ``h, e`` and intensities (so that Macenko normalisation has something to correct).
  Tumour nuclei are larger and darker when ``a`` is high.
* Stored tiles are composed from random crops/orientations of the bank textures chosen by
  a per-256-px-cell random table, so every pyramid level is made the same way from
  downsampled banks (level ``k`` matches a downsampled level 0) without ever holding a
  whole level in memory. Tiles are JPEG-encoded in threads and streamed into tifffile.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

#: Tissue classes of the layout (index = class id).
CLASSES = ("background", "loose_stroma", "dense_stroma", "tumour", "necrosis", "immune")
BACKGROUND, LOOSE_STROMA, DENSE_STROMA, TUMOUR, NECROSIS, IMMUNE = range(len(CLASSES))

#: Level-0 pixels per layout pixel (at least; larger slides use a coarser layout so that
#: the layout never exceeds ~``LAYOUT_MAX`` pixels a side).
LAYOUT_STEP = 16
LAYOUT_MAX = 2560
#: Level-0 pixels per texture cell (a crop of one bank texture; one tumour grade per cell).
CELL = 128
#: Bank texture side in pixels (crops of CELL pixels at offsets that are multiples of 64).
BANK = 384
BANK_VARIANTS = 3
#: Slope of the high-grade share on the latent: ``Phi(GRADE_SLOPE * a)`` of tumour cells.
GRADE_SLOPE = 1.25
PYRAMID_FACTOR = 4

#: Typical H&E optical-density stain vectors (RGB, as in Macenko's reference), the base of
#: every center; ``DENSITY`` scales all concentrations.
BASE_H = np.array([0.5626, 0.7201, 0.4062])
BASE_E = np.array([0.2159, 0.8012, 0.5581])
DENSITY = 1.7


@dataclass(frozen=True)
class CenterStain:
    """Per-center staining: OD stain vectors (unit, RGB) and intensity factors."""

    center: str
    h_vector: tuple[float, float, float]
    e_vector: tuple[float, float, float]
    h_intensity: float
    e_intensity: float


@dataclass
class SyntheticSlideInfo:
    """What :func:`write_synthetic_slide` produced."""

    path: str
    width: int
    height: int
    mpp: float | None
    app_mag: float | None
    level_dimensions: list[tuple[int, int]]
    center: str
    aggressiveness: float
    seed: int
    tile: int
    tissue_fraction: float
    class_fractions: dict[str, float]
    stain: dict = field(default_factory=dict)
    roi_bbox: tuple[int, int, int, int] | None = None  # level-0 x0, y0, x1, y1 of the tumour ROI
    high_grade_fraction: float = 0.5  # expected share of high-grade tumour cells, Phi(GRADE_SLOPE a)

    def to_dict(self) -> dict:
        return asdict(self)


def high_grade_fraction(aggressiveness: float) -> float:
    """Expected share of high-grade tumour cells: ``Phi(GRADE_SLOPE * a)`` (0.5 at a = 0)."""
    return 0.5 * (1.0 + math.erf(GRADE_SLOPE * float(aggressiveness) / math.sqrt(2.0)))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def center_stain(center: str) -> CenterStain:
    """Deterministic per-center stain: vectors tilted by up to ~0.06 rad, intensities
    in [0.9, 1.12]; the same center name always gives the same stain. (Differences as large
    as Macenko normalisation of single patches corrects: larger ones made the demo's patch
    model read the stain instead of the morphology in the external centers.)"""
    digest = hashlib.sha256(f"stain:{center}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    h = _unit(BASE_H + rng.normal(0.0, 0.035, 3).clip(-0.075, 0.075))
    e = _unit(BASE_E + rng.normal(0.0, 0.035, 3).clip(-0.075, 0.075))
    h, e = np.abs(h), np.abs(e)
    return CenterStain(center, tuple(float(v) for v in np.round(_unit(h), 4)),
                       tuple(float(v) for v in np.round(_unit(e), 4)),
                       float(rng.uniform(0.9, 1.12)), float(rng.uniform(0.9, 1.12)))


# --------------------------------------------------------------------------------------
# smooth random fields
# --------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth noise with features of about ``scale`` pixels."""
    import cv2

    h, w = shape
    gh, gw = max(2, int(math.ceil(h / scale)) + 1), max(2, int(math.ceil(w / scale)) + 1)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(coarse, (int(gw * scale), int(gh * scale)), interpolation=cv2.INTER_CUBIC)
    out = big[:h, :w]
    out = out - out.mean()
    return out / (out.std() + 1e-6)


@dataclass
class _Layout:
    tissue: np.ndarray  # float32 (Hl, Wl); tissue where > 0
    scores: np.ndarray  # float32 (n_classes-1, Hl, Wl), classes 1..5
    labels: np.ndarray  # uint8 (Hl, Wl)
    tumour_region: np.ndarray  # bool (Hl, Wl): the ROI the pathologist would draw
    step: int = LAYOUT_STEP  # level-0 pixels per layout pixel


def _make_layout(width: int, height: int, aggressiveness: float, rng: np.random.Generator) -> _Layout:
    step = max(LAYOUT_STEP, int(math.ceil(max(width, height) / LAYOUT_MAX)))
    hl, wl = int(math.ceil(height / step)), int(math.ceil(width / step))
    yy, xx = np.mgrid[0:hl, 0:wl].astype(np.float32)
    yy /= max(hl, 1)
    xx /= max(wl, 1)
    # tissue: one main fragment plus up to two small ones, ragged edges
    tissue = np.full((hl, wl), -1.0, np.float32)
    n_fragments = int(rng.integers(1, 4))
    for k in range(n_fragments):
        cx, cy = (rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)) if k == 0 else (rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85))
        rx, ry = (rng.uniform(0.30, 0.40), rng.uniform(0.28, 0.38)) if k == 0 else (rng.uniform(0.06, 0.12), rng.uniform(0.06, 0.12))
        ang = rng.uniform(0, math.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * math.cos(ang) + dy * math.sin(ang)) / rx
        v = (-dx * math.sin(ang) + dy * math.cos(ang)) / ry
        tissue = np.maximum(tissue, 1.0 - np.sqrt(u * u + v * v))
    side = max(hl, wl)
    tissue = tissue + 0.12 * _smooth_noise(rng, (hl, wl), max(4.0, side / 10))
    tissue += 0.04 * _smooth_noise(rng, (hl, wl), max(2.0, side / 40))

    # tumour region: a smooth blob inside the main fragment
    tumour_field = 1.0 - np.sqrt(((xx - 0.5) / 0.33) ** 2 + ((yy - 0.5) / 0.31) ** 2) \
        + 0.25 * _smooth_noise(rng, (hl, wl), max(4.0, side / 8))
    tumour_region = (tumour_field > 0) & (tissue > 0.05)
    if tumour_region.sum() < 4:  # tiny slides: fall back to the central tissue
        tumour_region = tissue > 0.2

    a = float(np.clip(aggressiveness, -3, 3))
    inside = tumour_region.astype(np.float32)
    feat = max(3.0, side / 14)
    scores = np.stack([
        0.9 * _smooth_noise(rng, (hl, wl), feat) + 0.25 - 0.35 * a - 0.6 * inside,            # loose stroma
        0.9 * _smooth_noise(rng, (hl, wl), feat) - 0.1 + 0.45 * a + 0.2 * inside,             # dense stroma
        0.9 * _smooth_noise(rng, (hl, wl), feat) - 0.2 + 0.10 * a + 0.9 * inside,             # tumour
        1.1 * _smooth_noise(rng, (hl, wl), feat * 0.7) - 1.3 + 0.55 * a + 0.3 * inside,       # necrosis
        1.2 * _smooth_noise(rng, (hl, wl), max(2.0, feat * 0.4)) - 1.1 - 0.5 * a,             # immune
    ]).astype(np.float32)
    labels = (np.argmax(scores, axis=0) + 1).astype(np.uint8)
    labels[tissue <= 0] = BACKGROUND
    return _Layout(tissue.astype(np.float32), scores, labels, tumour_region, step)


# --------------------------------------------------------------------------------------
# texture bank (concentration space -> RGB)
# --------------------------------------------------------------------------------------
def _draw_nuclei(img: np.ndarray, rng: np.random.Generator, n: int, r_px: tuple[float, float],
                 value: tuple[float, float], elong: tuple[float, float] = (1.0, 1.4),
                 centers: np.ndarray | None = None) -> None:
    import cv2

    size = img.shape[0]
    if centers is None:
        centers = rng.uniform(0, size, (n, 2))
    for (cx, cy) in centers:
        r = rng.uniform(*r_px)
        e = rng.uniform(*elong)
        ang = rng.uniform(0, 180)
        cv2.ellipse(img, (int(cx), int(cy)), (max(1, int(r * e)), max(1, int(r / e))), ang, 0, 360,
                    float(rng.uniform(*value)), -1, lineType=cv2.LINE_AA)


def _fibres(img: np.ndarray, rng: np.random.Generator, n: int, thick: tuple[int, int],
            value: tuple[float, float], mpp: float) -> None:
    import cv2

    size = img.shape[0]
    base_angle = rng.uniform(0, math.pi)
    for _ in range(n):
        x, y = rng.uniform(-0.1 * size, 1.1 * size, 2)
        ang = base_angle + rng.normal(0, 0.35)
        pts = []
        for _k in range(8):
            pts.append((int(x), int(y)))
            ang += rng.normal(0, 0.25)
            step = 12.0 / mpp
            x += step * math.cos(ang)
            y += step * math.sin(ang)
        cv2.polylines(img, [np.array(pts, np.int32)], False, float(rng.uniform(*value)),
                      int(rng.integers(*thick)), lineType=cv2.LINE_AA)


def _render_class(cls: int, rng: np.random.Generator, mpp: float, a: float,
                  high_grade: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Concentration maps (c_H, c_E) of one bank texture of class ``cls`` (tumour: low or
    high grade; within a grade nuclei still grow a little with ``a``)."""
    import cv2

    s = BANK
    um = 1.0 / mpp  # pixels per micrometre
    ch = np.zeros((s, s), np.float32)
    ce = np.zeros((s, s), np.float32)
    grain = rng.standard_normal((s, s)).astype(np.float32)
    if cls == BACKGROUND:
        ce += 0.006 + 0.003 * grain
        ch += 0.002
    elif cls in (LOOSE_STROMA, DENSE_STROMA):
        dense = cls == DENSE_STROMA
        ce += (0.42 if dense else 0.26) + 0.04 * grain
        _fibres(ce, rng, int((260 if dense else 90) * (s / 512) ** 2), (max(2, int(1.0 * um)), max(3, int(2.5 * um))),
                (0.55, 0.85) if dense else (0.35, 0.55), mpp)
        n_fib = int((70 if dense else 35) * (s * mpp / 256) ** 2)
        _draw_nuclei(ch, rng, n_fib, (1.6 * um, 2.4 * um), (0.55, 0.8), elong=(2.0, 3.2))
    elif cls == TUMOUR:
        ce += 0.20 + 0.04 * grain
        # nuclear size and darkness grow with aggressiveness (a little) and with grade (a lot)
        a = float(np.clip(a, -2.5, 2.5))
        if high_grade:
            r_lo, r_hi = (6.5 + 0.4 * a) * um, (9.0 + 0.6 * a) * um
            dark = (1.05 + 0.08 * a, 1.45 + 0.1 * a)
            n_glands = 0
        else:
            r_lo, r_hi = (3.6 + 0.4 * a) * um, (4.8 + 0.6 * a) * um
            dark = (0.7 + 0.08 * a, 0.95 + 0.1 * a)
            n_glands = int(rng.integers(1, 3))
        r_lo, r_hi = max(2.5 * um, r_lo), max(3.2 * um, r_hi)
        dark = (max(0.45, dark[0]), max(0.65, dark[1]))
        for _ in range(n_glands):  # gland: ring of cells around a lumen
            cx, cy = rng.uniform(0.15 * s, 0.85 * s, 2)
            rad = rng.uniform(12, 28) * um
            cv2.circle(ce, (int(cx), int(cy)), int(rad + 2.2 * r_hi), 0.32, -1, lineType=cv2.LINE_AA)
            cv2.circle(ce, (int(cx), int(cy)), int(rad), 0.04, -1, lineType=cv2.LINE_AA)
            n_cells = max(6, int(2 * math.pi * rad / (2.2 * r_lo)))
            t = np.linspace(0, 2 * math.pi, n_cells, endpoint=False) + rng.uniform(0, 1)
            pts = np.stack([cx + (rad + 1.3 * r_hi) * np.cos(t), cy + (rad + 1.3 * r_hi) * np.sin(t)], 1)
            _draw_nuclei(ch, rng, n_cells, (r_lo, r_hi), dark, centers=pts)
        # solid sheets (high grade, pleomorphic) / scattered tumour cells (low grade)
        n_solid = int((s / (2.6 * r_hi)) ** 2 * ((0.55 if high_grade else 0.12) + 0.05 * a))
        _draw_nuclei(ch, rng, max(0, n_solid), (r_lo, r_hi), dark, elong=(1.0, 1.9 if high_grade else 1.4))
    elif cls == NECROSIS:
        ce += 0.45 + 0.12 * grain
        blur = cv2.GaussianBlur(rng.standard_normal((s, s)).astype(np.float32), (0, 0), 3 * um)
        ce += 0.8 * blur
        ch += 0.10 + 0.3 * np.clip(cv2.GaussianBlur(grain, (0, 0), 2), 0, None)
        n_frag = int((s * mpp) ** 2 / 60)
        _draw_nuclei(ch, rng, n_frag, (0.6 * um, 1.4 * um), (0.6, 1.1))
    elif cls == IMMUNE:
        ce += 0.22 + 0.04 * grain
        n_lym = int((s / (2.4 * 3.5 * um)) ** 2 * 0.85)
        _draw_nuclei(ch, rng, n_lym, (3.0 * um, 3.8 * um), (1.0, 1.3), elong=(1.0, 1.15))
    ch = cv2.GaussianBlur(ch, (0, 0), max(0.6, 0.5 * um))
    ch *= 1.0 + 0.12 * grain
    return np.clip(ch, 0, 3), np.clip(ce, 0, 3)


def _to_rgb(ch: np.ndarray, ce: np.ndarray, stain: CenterStain) -> np.ndarray:
    """Beer-Lambert: I = 255 exp(-(c_H h + c_E e)), uint8 RGB."""
    import cv2

    h = np.asarray(stain.h_vector, np.float32) * (stain.h_intensity * DENSITY)
    e = np.asarray(stain.e_vector, np.float32) * (stain.e_intensity * DENSITY)
    channels = [cv2.convertScaleAbs(cv2.exp(cv2.addWeighted(ch, -float(h[c]), ce, -float(e[c]), 0.0)), alpha=255.0)
                for c in range(3)]  # 255 exp(-OD), rounded and saturated to uint8
    return cv2.merge(channels)


def _render_bank(rng: np.random.Generator, mpp: float, a: float, stain: CenterStain) -> list[list[np.ndarray]]:
    """bank[class][variant] -> (BANK, BANK, 3) uint8 RGB; tumour holds ``BANK_VARIANTS``
    low-grade variants followed by as many high-grade ones."""
    bank = []
    for c in range(len(CLASSES)):
        grades = (False, True) if c == TUMOUR else (False,)
        bank.append([_to_rgb(*_render_class(c, rng, mpp, a, high_grade=g), stain)
                     for g in grades for _ in range(BANK_VARIANTS)])
    return bank


# --------------------------------------------------------------------------------------
# tile composer
# --------------------------------------------------------------------------------------
class _Composer:
    """Composes any stored tile of any pyramid level from the layout and the bank."""

    def __init__(self, width: int, height: int, layout: _Layout, bank: list[list[np.ndarray]],
                 seed: int, tile: int, high_grade: float = 0.5):
        self.width, self.height, self.layout, self.tile = width, height, layout, tile
        self.n_cells_x = int(math.ceil(width / CELL))
        self.n_cells_y = int(math.ceil(height / CELL))
        rng = np.random.default_rng(seed + 7919)
        self.cell_random = rng.integers(0, 2**31 - 1, size=(self.n_cells_y, self.n_cells_x), dtype=np.int64)
        #: tumour grade per texture cell: high with probability ``high_grade``
        self.cell_high_grade = rng.uniform(size=(self.n_cells_y, self.n_cells_x)) < high_grade
        self.bank = bank
        self._banks: dict[int, list[list[np.ndarray]]] = {1: bank}
        self.n_offsets = (BANK - CELL) // 64 + 1

    def bank_at(self, d: int) -> list[list[np.ndarray]]:
        import cv2

        if d not in self._banks:
            size = max(1, BANK // d)
            self._banks[d] = [[cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA) for t in row]
                              for row in self.bank]
        return self._banks[d]

    def _labels(self, x0: int, y0: int, size0: int, out: int) -> np.ndarray:
        """Class map of the level-0 square (x0, y0, size0) sampled on an ``out`` grid."""
        import cv2

        lay = self.layout
        lx0, ly0 = x0 / lay.step, y0 / lay.step
        span = size0 / lay.step
        ix0, iy0 = int(math.floor(lx0)) - 1, int(math.floor(ly0)) - 1
        ix1, iy1 = int(math.ceil(lx0 + span)) + 2, int(math.ceil(ly0 + span)) + 2
        hl, wl = lay.labels.shape
        cx0, cy0, cx1, cy1 = max(ix0, 0), max(iy0, 0), min(ix1, wl), min(iy1, hl)
        if cx0 >= cx1 or cy0 >= cy1:
            return np.zeros((out, out), np.uint8)
        crop = lay.labels[cy0:cy1, cx0:cx1]
        if crop.min() == crop.max():
            return np.full((out, out), crop.flat[0], np.uint8)
        # smooth boundaries: bilinear upsampling of the fields, then arg-max
        fields = np.concatenate([lay.tissue[None, cy0:cy1, cx0:cx1], lay.scores[:, cy0:cy1, cx0:cx1]], 0)
        # affine map: output pixel (u, v) -> layout coordinate
        scale = span / out
        m = np.array([[1 / scale, 0, -(lx0 - cx0 - 0.5 * scale + 0.5) / scale],
                      [0, 1 / scale, -(ly0 - cy0 - 0.5 * scale + 0.5) / scale]], np.float32)
        warped = [cv2.warpAffine(f, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                  for f in fields]
        lab = (np.argmax(np.stack(warped[1:]), axis=0) + 1).astype(np.uint8)
        lab[warped[0] <= 0] = BACKGROUND
        return lab

    def compose(self, level_downsample: int, tx: int, ty: int) -> np.ndarray:
        """RGB uint8 (tile, tile, 3) of stored tile (tx, ty) at the level of downsample d."""
        d = level_downsample
        t = self.tile
        size0 = t * d
        x0, y0 = tx * size0, ty * size0
        labels = self._labels(x0, y0, size0, t)
        bank = self.bank_at(d)
        block = max(1, CELL // d)
        out = np.empty((t, t, 3), np.uint8)
        present = np.unique(labels)
        c_first = x0 // CELL
        r_first = y0 // CELL
        n_c = max(1, size0 // CELL)
        for cls in present:
            layer = out if len(present) == 1 else np.empty((t, t, 3), np.uint8)
            for j in range(n_c):
                for i in range(n_c):
                    cy_, cx_ = r_first + j, c_first + i
                    if cy_ >= self.n_cells_y or cx_ >= self.n_cells_x:
                        r, high = 0, False
                    else:
                        r, high = int(self.cell_random[cy_, cx_]), bool(self.cell_high_grade[cy_, cx_])
                    r ^= (int(cls) * 0x9E3779B1) & 0x7FFFFFFF
                    variant = r % BANK_VARIANTS + (BANK_VARIANTS if high and cls == TUMOUR else 0)
                    orient = (r >> 3) % 8
                    ox = ((r >> 7) % self.n_offsets) * 64 // d
                    oy = ((r >> 11) % self.n_offsets) * 64 // d
                    src = bank[cls][variant][oy:oy + block, ox:ox + block]
                    if orient & 1:
                        src = src[:, ::-1]
                    if orient & 2:
                        src = src[::-1]
                    if orient & 4:
                        src = src.transpose(1, 0, 2)
                    sub = layer[j * block:(j + 1) * block, i * block:(i + 1) * block]
                    sub[...] = src[:sub.shape[0], :sub.shape[1]]
            if len(present) > 1:
                np.copyto(out, layer, where=(labels == cls)[..., None])
        return out


def _level_dimensions(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    dims = [(width, height)]
    d = 1
    while max(width // (d * PYRAMID_FACTOR), height // (d * PYRAMID_FACTOR)) >= max(tile, 512) or len(dims) == 1:
        d *= PYRAMID_FACTOR
        w, h = width // d, height // d
        if w < 1 or h < 1:
            break
        dims.append((w, h))
        if max(w, h) < 2 * tile:
            break
    return dims


def _description(width: int, height: int, tile: int, quality: int, mpp: float | None,
                 app_mag: float | None, center: str, filename: str, level: int, lw: int, lh: int) -> str:
    head = f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) JPEG/RGB Q={quality}"
    if level > 0:
        head += f" -> {lw}x{lh}"
    fields = []
    if app_mag is not None:
        fields.append(f"AppMag = {app_mag:g}")
    if mpp is not None:
        fields.append(f"MPP = {mpp:g}")
    fields += ["ScanScope ID = SYNTHETIC", f"Filename = {filename}", f"Center = {center}",
               "Synthetic = yes", "Title = SYNTHETIC demo slide - not patient data"]
    return head + "|" + "|".join(fields)


def write_synthetic_slide(
    path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    aggressiveness: float = 0.0,
    center: str = "A",
    seed: int = 0,
    mpp: float | None = 0.25,
    app_mag: float | None = 40,
    tile: int = 256,
    jpeg_quality: int = 80,
    workers: int | None = None,
    roi_path: str | os.PathLike[str] | None = None,
) -> SyntheticSlideInfo:
    """Write a pyramidal, tiled, JPEG-compressed Aperio-style TIFF (``.svs``).

    ``mpp`` and ``app_mag`` go into the ImageDescription (``|MPP = ..|AppMag = ..``); pass
    ``None`` to leave one out (for tests of missing metadata). Textures are rendered at the
    given ``mpp`` (0.25 when missing). Levels are separate tiled IFDs, downsampled by 4.
    Memory stays bounded (one row of tiles in flight) whatever the size. If ``roi_path``
    is given, the tumour ROI is written there as QuPath GeoJSON.
    """
    import imagecodecs
    import tifffile

    if width < 64 or height < 64:
        raise ValueError("synthetic slides need at least 64 x 64 pixels")
    if tile % 16:
        raise ValueError("tile size must be a multiple of 16")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render_mpp = float(mpp) if mpp else 0.25
    rng = np.random.default_rng(seed)
    stain = center_stain(center)
    layout = _make_layout(width, height, aggressiveness, rng)
    bank = _render_bank(rng, render_mpp, float(np.clip(aggressiveness, -2.5, 2.5)), stain)
    composer = _Composer(width, height, layout, bank, seed, tile, high_grade_fraction(aggressiveness))
    dims = _level_dimensions(width, height, tile)
    workers = workers or min(4, os.cpu_count() or 1)

    def encode(arr: np.ndarray) -> bytes:
        return imagecodecs.jpeg8_encode(arr, level=jpeg_quality, colorspace="RGB",
                                        outcolorspace="YCBCR", subsampling="420")

    background_bytes = {d: [encode(b[:tile, :tile]) if b.shape[0] >= tile else
                            encode(np.resize(b, (tile, tile, 3))) for b in composer.bank_at(d)[BACKGROUND]]
                        for d in [PYRAMID_FACTOR ** k for k in range(len(dims))]}

    def make(level: int, tx: int, ty: int) -> bytes:
        d = PYRAMID_FACTOR ** level
        size0 = tile * d
        x0, y0 = tx * size0, ty * size0
        lay = layout.labels
        st = layout.step
        ix0, iy0 = max(0, x0 // st - 1), max(0, y0 // st - 1)
        ix1, iy1 = (x0 + size0) // st + 2, (y0 + size0) // st + 2
        crop = lay[iy0:iy1, ix0:ix1]
        if crop.size == 0 or not crop.any():
            variants = background_bytes[d]
            return variants[(tx * 31 + ty * 17) % len(variants)]
        return encode(composer.compose(d, tx, ty))

    def level_tiles(level: int, lw: int, lh: int, pool: ThreadPoolExecutor) -> Iterator[bytes]:
        ny, nx = int(math.ceil(lh / tile)), int(math.ceil(lw / tile))
        for ty in range(ny):
            yield from pool.map(lambda tx: make(level, tx, ty), range(nx))

    with tifffile.TiffWriter(path, bigtiff=width * height > 2**31) as tw, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        for level, (lw, lh) in enumerate(dims):
            desc = _description(width, height, tile, jpeg_quality, mpp, app_mag, center, path.name, level, lw, lh)
            tw.write(level_tiles(level, lw, lh, pool), shape=(lh, lw, 3), dtype=np.uint8, tile=(tile, tile),
                     compression="jpeg", photometric="rgb", subsampling=(2, 2), description=desc,
                     metadata=None, software=False)

    labels = layout.labels
    tissue_fraction = float((labels != BACKGROUND).mean())
    counts = np.bincount(labels.ravel(), minlength=len(CLASSES)).astype(float)
    tissue_px = max(1.0, counts[1:].sum())
    info = SyntheticSlideInfo(
        path=str(path), width=width, height=height, mpp=mpp, app_mag=app_mag,
        level_dimensions=dims, center=center, aggressiveness=float(aggressiveness), seed=seed,
        tile=tile, tissue_fraction=round(tissue_fraction, 4),
        class_fractions={CLASSES[c]: round(float(counts[c] / tissue_px), 4) for c in range(1, len(CLASSES))},
        stain=asdict(stain), high_grade_fraction=round(high_grade_fraction(aggressiveness), 4),
    )
    if roi_path is not None:
        info.roi_bbox = write_tumour_roi_geojson(roi_path, layout=layout, width=width, height=height,
                                                 name=f"tumour ({path.stem})")
    else:
        info.roi_bbox = _tumour_polygons(layout, width, height)[1]
    return info


def _tumour_polygons(layout: _Layout, width: int, height: int) -> tuple[list[list[list[list[float]]]], tuple[int, int, int, int] | None]:
    """Polygons (GeoJSON rings, level-0 px) of the largest tumour region, holes included."""
    import cv2

    mask = layout.tumour_region.astype(np.uint8)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return [], None
    hierarchy = hierarchy[0]
    outer = [i for i in range(len(contours)) if hierarchy[i][3] < 0]
    outer.sort(key=lambda i: cv2.contourArea(contours[i]), reverse=True)
    best = outer[0]

    def ring(cnt: np.ndarray) -> list[list[float]]:
        approx = cv2.approxPolyDP(cnt, 0.8, True).reshape(-1, 2).astype(float)
        pts = (approx + 0.5) * layout.step
        pts[:, 0] = pts[:, 0].clip(0, width)
        pts[:, 1] = pts[:, 1].clip(0, height)
        coords = [[round(float(x), 1), round(float(y), 1)] for x, y in pts]
        return coords + [coords[0]]

    rings = [ring(contours[best])]
    rings += [ring(contours[i]) for i in range(len(contours))
              if hierarchy[i][3] == best and cv2.contourArea(contours[i]) >= 4 and len(contours[i]) >= 3]
    rings = [r for r in rings if len(r) >= 4]
    x, y, w, h = cv2.boundingRect(contours[best])
    st = layout.step
    bbox = (int(x * st), int(y * st), int(min(width, (x + w) * st)), int(min(height, (y + h) * st)))
    return [rings], bbox


def write_tumour_roi_geojson(path: str | os.PathLike[str], *, width: int, height: int, aggressiveness: float = 0.0,
                             seed: int = 0, layout: _Layout | None = None, name: str = "tumour",
                             classification: str = "Tumor") -> tuple[int, int, int, int] | None:
    """Write the slide's tumour region as a QuPath GeoJSON FeatureCollection (level-0 px).

    The layout is rebuilt from ``(width, height, aggressiveness, seed)`` exactly as
    :func:`write_synthetic_slide` builds it (pass the same values), unless given.
    Returns the region's level-0 bounding box (x0, y0, x1, y1), or None if empty."""
    if layout is None:
        layout = _make_layout(width, height, aggressiveness, np.random.default_rng(seed))
    polygons, bbox = _tumour_polygons(layout, width, height)
    features = []
    for rings in polygons:
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {"objectType": "annotation", "name": name,
                           "classification": {"name": classification, "color": [200, 0, 0]}},
        })
    doc = {"type": "FeatureCollection", "features": features}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(path)
    return bbox


def _write_one(kwargs: dict) -> SyntheticSlideInfo:
    return write_synthetic_slide(**kwargs)


def write_synthetic_slides(specs: list[dict], *, processes: int | None = None) -> list[SyntheticSlideInfo]:
    """Write many slides in parallel processes (one slide per task, one thread inside).

    Each spec holds :func:`write_synthetic_slide`'s keyword arguments including ``path``
    (e.g. ``{"path": ..., "width": 4096, "height": 4096, "aggressiveness": z, "center": "A",
    "seed": 7, "roi_path": ...}``). Results come back in the order of ``specs``.
    """
    from concurrent.futures import ProcessPoolExecutor

    jobs = [{"workers": 1, **spec} for spec in specs]
    n = processes or min(len(jobs), os.cpu_count() or 1)
    if n <= 1 or len(jobs) <= 1:
        return [_write_one(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=n) as pool:
        return list(pool.map(_write_one, jobs))
