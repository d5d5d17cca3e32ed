"""Stain normalisation in torch (CPU or CUDA), batched: Macenko and Reinhard.

Macenko et al., "A method for normalizing histology slides for quantitative analysis",
ISBI 2009. With optical density ``OD = -ln((I + 1) / Io)`` per RGB channel:

1. keep pixels whose OD is >= ``beta`` in every channel (``beta = 0.15``);
2. project their OD onto the plane of the two largest eigenvectors of its covariance;
3. the angles ``phi`` of the projections give the stain vectors at the ``alpha`` and
   ``100 - alpha`` percentiles (``alpha = 1``); hematoxylin is the one with the larger red
   OD;
4. concentrations ``C = pinv(HE) OD``; each stain's scale is its 99th percentile
   ``maxC``; normalised ``C' = C * clamp(maxC_ref / maxC_src, ratio_min, ratio_max)`` and
   ``I' = Io exp(-HE_ref C')`` (``Io = 240``).

Tiles with too few stained pixels (white or nearly empty) are returned unchanged and
flagged instead of failing. Reinhard et al., "Color transfer between images", IEEE CG&A
2001: per-channel mean/std matching in CIELAB over non-white pixels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pathomics_desktop.errors import UserError

IO = 240.0
ALPHA = 1.0
BETA = 0.15
#: Built-in reference (H&E OD vectors as columns, 99th percentile concentrations), the
#: values published with Macenko's reference implementation; also in
#: ``resources/stain/macenko_reference.json``.
_BUILTIN_HE = [[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]]
_BUILTIN_MAXC = [1.9705, 1.0308]
RESOURCE = Path(__file__).resolve().parents[2] / "resources" / "stain" / "macenko_reference.json"


@dataclass
class StainReference:
    """Macenko stain matrix ``he`` (3 x 2, columns H and E, unit OD vectors) and the
    99th-percentile concentrations ``max_c`` (H, E)."""

    he: list[list[float]]
    max_c: list[float]
    io: float = IO
    source: str = "builtin"
    n_pixels: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StainReference":
        try:
            he = [[float(v) for v in row] for row in data["he"]]
            max_c = [float(v) for v in data["max_c"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"stain reference: missing or malformed 'he'/'max_c' ({exc})") from exc
        if len(he) != 3 or any(len(r) != 2 for r in he) or len(max_c) != 2:
            raise UserError("stain reference: 'he' must be 3 x 2 and 'max_c' of length 2")
        return cls(he, max_c, float(data.get("io", IO)), str(data.get("source", "file")), int(data.get("n_pixels", 0)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @property
    def h_vector(self) -> list[float]:
        return [row[0] for row in self.he]

    @property
    def e_vector(self) -> list[float]:
        return [row[1] for row in self.he]


def builtin_reference() -> StainReference:
    """The built-in Macenko reference (resources/stain/macenko_reference.json if present)."""
    if RESOURCE.is_file():
        return StainReference.from_dict(json.loads(RESOURCE.read_text(encoding="utf-8")))
    return StainReference(_BUILTIN_HE, _BUILTIN_MAXC, IO, "builtin")


def load_reference(path: str | Path) -> StainReference:
    try:
        return StainReference.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise UserError(f"stain reference {path}: not found") from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"stain reference {path}: malformed JSON ({exc.msg})") from exc


def _as_tensor(images, device=None, dtype=None):
    """(N, H, W, 3) numpy/torch -> torch on ``device`` (float32 unless ``dtype``; pass
    ``torch.uint8`` to keep 8-bit images as they are)."""
    import torch

    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError("expected images of shape (N, H, W, 3)")
    return t.to(device=device or t.device, dtype=dtype or torch.float32)


def _od(x, io: float):
    import torch

    return (-torch.log((x + 1.0) / io)).clamp_min(0.0)


def _sample(n_pix: int, max_pixels: int) -> slice:
    step = max(1, n_pix // max_pixels)
    return slice(0, n_pix, step)


@dataclass
class MacenkoResult:
    """Normalised images plus per-image stain estimates; ``flagged`` marks tiles passed
    through unchanged (too few stained pixels)."""

    images: Any  # uint8 tensor (N, H, W, 3)
    flagged: np.ndarray  # bool (N,)
    he: Any  # float tensor (N, 3, 2); NaN where flagged
    max_c: Any  # float tensor (N, 2); NaN where flagged
    ratio: Any = field(default=None)  # clamped maxC_ref / maxC_src (N, 2)


def estimate_stains(images, *, io: float = IO, alpha: float = ALPHA, beta: float = BETA,
                    min_fraction: float = 0.05, max_pixels: int = 65536, device=None):
    """Per image Macenko stain matrix ``he`` (N, 3, 2), ``max_c`` (N, 2) and a validity
    mask (N,): valid when at least ``min_fraction`` of pixels have OD >= beta."""
    import torch

    x = torch.as_tensor(images) if isinstance(images, (np.ndarray, torch.Tensor)) else torch.as_tensor(np.asarray(images))
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError("expected images of shape (N, H, W, 3)")
    n = x.shape[0]
    flat = x.reshape(n, -1, 3)
    od_s = _od(flat[:, _sample(flat.shape[1], max_pixels)].to(device=device or x.device, dtype=torch.float32), io)
    mask = (od_s >= beta).all(-1)  # (N, p)
    count = mask.sum(1)
    valid = count >= max(16, int(min_fraction * od_s.shape[1]))
    w = mask.to(od_s.dtype)[..., None]
    cnt = count.clamp_min(2).to(od_s.dtype)[:, None, None]
    mean = (od_s * w).sum(1, keepdim=True) / cnt
    centered = (od_s - mean) * w
    cov = centered.transpose(1, 2) @ centered / (cnt - 1)
    cov = cov + torch.eye(3, device=cov.device) * 1e-8
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    plane = vecs[:, :, 1:3].flip(-1)  # (N, 3, 2): largest first
    plane = plane * torch.where(plane[:, :1, :] < 0, -1.0, 1.0)  # first (red) component >= 0
    proj = od_s @ plane  # (N, p, 2)
    phi = torch.atan2(proj[..., 1], proj[..., 0])
    phi = torch.where(mask, phi, torch.full_like(phi, float("nan")))
    phi_lo = torch.nanquantile(phi, alpha / 100.0, dim=1)
    phi_hi = torch.nanquantile(phi, 1 - alpha / 100.0, dim=1)
    v_lo = (plane @ torch.stack([phi_lo.cos(), phi_lo.sin()], -1)[..., None])[..., 0]
    v_hi = (plane @ torch.stack([phi_hi.cos(), phi_hi.sin()], -1)[..., None])[..., 0]
    h_first = (v_lo[:, 0] > v_hi[:, 0])[:, None]
    h = torch.where(h_first, v_lo, v_hi)
    e = torch.where(h_first, v_hi, v_lo)
    he = torch.stack([h, e], -1).abs()
    he = he / he.norm(dim=1, keepdim=True).clamp_min(1e-8)
    valid = valid & torch.isfinite(he).flatten(1).all(1)
    placeholder = torch.tensor(_BUILTIN_HE, dtype=he.dtype, device=he.device)
    he = torch.where(valid[:, None, None], he, placeholder)  # keeps pinv finite for flagged tiles
    conc = torch.linalg.pinv(he) @ od_s.transpose(1, 2)  # (N, 2, p)
    max_c = torch.quantile(conc, 0.99, dim=2)
    nan = torch.tensor(float("nan"), device=he.device)
    he = torch.where(valid[:, None, None], he, nan)
    max_c = torch.where(valid[:, None], max_c, nan)
    return he, max_c, valid


def estimate_stain_numpy(tiles, *, io: float = IO, alpha: float = ALPHA, beta: float = BETA,
                         max_pixels: int = 500_000, source: str = "slide") -> StainReference:
    """Pooled Macenko estimate of a tile set in NumPy (same steps as :func:`estimate_stains`);
    used by the tiler so that a tiling process never loads torch (~0.7 GB resident)."""
    rgb = np.asarray(tiles, dtype=np.float32).reshape(-1, 3)
    od = np.maximum(-np.log((rgb + 1.0) / io), 0.0)
    od_all = od[_sample(od.shape[0], max_pixels)]
    stained = od[(od >= beta).all(1)]
    if stained.shape[0] < 64:
        raise UserError("stain estimate: the tiles contain (almost) no stained tissue")
    stained = stained[_sample(stained.shape[0], max_pixels)].astype(np.float64)
    _, vecs = np.linalg.eigh(np.cov(stained.T))
    plane = vecs[:, [2, 1]]
    plane = plane * np.where(plane[0] < 0, -1.0, 1.0)
    proj = stained @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100 - alpha])
    v_lo = plane @ np.array([np.cos(lo), np.sin(lo)])
    v_hi = plane @ np.array([np.cos(hi), np.sin(hi)])
    h, e = (v_lo, v_hi) if v_lo[0] > v_hi[0] else (v_hi, v_lo)
    he = np.abs(np.stack([h, e], 1))
    he = he / np.linalg.norm(he, axis=0, keepdims=True)
    conc = np.linalg.pinv(he) @ od_all.T.astype(np.float64)
    max_c = np.percentile(conc, 99, axis=1)
    return StainReference(he.round(5).tolist(), max_c.round(5).tolist(), io, source, int(stained.shape[0]))


def fit_macenko(tiles, *, io: float = IO, alpha: float = ALPHA, beta: float = BETA,
                max_pixels: int = 1_000_000, source: str = "fitted") -> StainReference:
    """Fit one reference from a set of tiles (all stained pixels pooled)."""
    import torch

    x = _as_tensor(tiles)
    pixels = x.reshape(1, -1, 3)
    od = _od(pixels, io)
    keep = (od >= beta).all(-1)[0]
    if int(keep.sum()) < 64:
        raise UserError("stain reference: the chosen tiles contain (almost) no stained tissue")
    stained = pixels[:, keep]
    stained = stained[:, _sample(stained.shape[1], max_pixels)]
    # pooled estimate: treat the stained pixels as one image (all valid)
    he, max_c, valid = estimate_stains(stained.reshape(1, -1, 1, 3), io=io, alpha=alpha, beta=beta,
                                       min_fraction=0.0, max_pixels=max_pixels)
    if not bool(valid[0]) or not torch.isfinite(he).all():
        raise UserError("stain reference: could not estimate stain vectors from the chosen tiles")
    # maxC over all pixels of the tiles (as for the images being normalised)
    conc = torch.linalg.pinv(he[0]) @ od[0, _sample(od.shape[1], max_pixels)].T
    max_c = torch.quantile(conc, 0.99, dim=1)
    return StainReference(he[0].tolist(), max_c.tolist(), io, source, int(stained.shape[1]))


def fit_macenko_from_slide(slide_path, tile_index, *, n_tiles: int = 64, seed: int = 0,
                           mpp_override: float | None = None) -> StainReference:
    """Fit a reference from ``n_tiles`` random tiles of one slide's tile index (a chosen
    reference slide, e.g. of the development center)."""
    from pathomics_desktop.slides.tiling import iter_tile_batches

    if len(tile_index) == 0:
        raise UserError(f"stain reference: slide {slide_path} has no tiles")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(tile_index), size=min(n_tiles, len(tile_index)), replace=False))
    batches = [b for _rows, b in iter_tile_batches(slide_path, tile_index.iloc[pick], batch_size=16,
                                                   mpp_override=mpp_override)]
    return fit_macenko(np.concatenate(batches), source=f"fitted: {slide_path} ({len(pick)} tiles)")


def macenko_normalize(images, reference: StainReference | None = None, *, alpha: float = ALPHA,
                      beta: float = BETA, min_fraction: float = 0.05, ratio_min: float = 0.5,
                      ratio_max: float = 2.0, device=None, max_pixels: int = 65536) -> MacenkoResult:
    """Macenko-normalise a batch (N, H, W, 3) uint8 to ``reference`` (built-in if None).

    The per-stain scale ratio ``maxC_ref / maxC_src`` is clamped to
    ``[ratio_min, ratio_max]``; white / near-empty tiles pass through and are flagged.
    """
    import torch

    ref = reference or builtin_reference()
    io = ref.io
    x = _as_tensor(images, device, dtype=torch.uint8)
    n, hgt, wid, _ = x.shape
    he, max_c, valid = estimate_stains(x, io=io, alpha=alpha, beta=beta, min_fraction=min_fraction,
                                       max_pixels=max_pixels, device=device)
    he_ref = torch.tensor(ref.he, dtype=torch.float32, device=x.device)
    maxc_ref = torch.tensor(ref.max_c, dtype=torch.float32, device=x.device)
    out = x.clone()  # flagged tiles stay exactly as they were
    ratio = torch.full((n, 2), float("nan"), device=x.device)
    idx = torch.nonzero(valid).flatten()
    if idx.numel():
        k = idx.numel()
        od = x[idx].reshape(k, -1, 3).float().add_(1.0).div_(io).log_().neg_().clamp_min_(0.0)  # (k, P, 3)
        r = (maxc_ref[None] / max_c[idx].clamp_min(1e-6)).clamp(ratio_min, ratio_max)
        # OD' = HE_ref diag(r) pinv(HE_src) OD, one 3 x 3 matrix per image
        m = he_ref[None] @ (r[..., None] * torch.linalg.pinv(he[idx]))  # (k, 3, 3)
        rgb = (od @ m.transpose(1, 2)).neg_().exp_().mul_(io).clamp_(0, 255).round_()
        out[idx] = rgb.to(torch.uint8).reshape(k, hgt, wid, 3)
        ratio[idx] = r
    return MacenkoResult(out, (~valid).cpu().numpy(), he, max_c, ratio)


# --------------------------------------------------------------------------------------
# Reinhard (CIELAB statistics)
# --------------------------------------------------------------------------------------
_RGB2XYZ = [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
_WHITE = [0.95047, 1.0, 1.08883]


def rgb_to_lab(x):
    """sRGB in [0, 255] (..., 3) -> CIELAB (D65)."""
    import torch

    c = x / 255.0
    lin = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = torch.tensor(_RGB2XYZ, dtype=x.dtype, device=x.device)
    xyz = lin @ m.T / torch.tensor(_WHITE, dtype=x.dtype, device=x.device)
    eps = 216 / 24389
    f = torch.where(xyz > eps, xyz.clamp_min(1e-12) ** (1 / 3), (24389 / 27 * xyz + 16) / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab):
    """CIELAB (D65) -> sRGB in [0, 255]."""
    import torch

    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = torch.stack([fx, fy, fz], -1)
    eps = 6 / 29
    xyz = torch.where(f > eps, f ** 3, (116 * f - 16) * 27 / 24389)
    xyz = xyz * torch.tensor(_WHITE, dtype=lab.dtype, device=lab.device)
    m_inv = torch.linalg.inv(torch.tensor(_RGB2XYZ, dtype=lab.dtype, device=lab.device))
    lin = (xyz @ m_inv.T).clamp(0, 1)
    c = torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin.clamp_min(1e-12) ** (1 / 2.4) - 0.055)
    return c * 255.0


@dataclass
class ReinhardReference:
    """Target CIELAB mean and standard deviation (L, a, b) over tissue pixels."""

    mean: list[float]
    std: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lab_stats(x, white_level: float):
    lab = rgb_to_lab(x)
    tissue = (x < white_level).any(-1)  # (N, H, W)
    w = tissue.to(lab.dtype)[..., None]
    cnt = w.sum((1, 2)).clamp_min(1)
    mean = (lab * w).sum((1, 2)) / cnt
    var = (((lab - mean[:, None, None]) ** 2) * w).sum((1, 2)) / cnt
    return lab, tissue, mean, var.sqrt().clamp_min(1e-3), tissue.flatten(1).float().mean(1)


def fit_reinhard(tiles, white_level: float = 220) -> ReinhardReference:
    x = _as_tensor(tiles).reshape(1, -1, 1, 3)
    _, tissue, mean, std, frac = _lab_stats(x, white_level)
    if int(tissue.sum()) < 64:
        raise UserError("Reinhard reference: the chosen tiles contain (almost) no tissue")
    return ReinhardReference(mean[0].tolist(), std[0].tolist())


def reinhard_normalize(images, reference: ReinhardReference, *, white_level: float = 220,
                       min_fraction: float = 0.05, device=None):
    """Reinhard colour transfer: ``lab' = (lab - mu_src) / sd_src * sd_ref + mu_ref`` on
    tissue pixels; returns ``(uint8 images, flagged)`` (white tiles pass through)."""
    import torch

    x = _as_tensor(images, device)
    lab, tissue, mean, std, frac = _lab_stats(x, white_level)
    valid = frac >= min_fraction
    mu = torch.tensor(reference.mean, device=x.device)
    sd = torch.tensor(reference.std, device=x.device)
    out_lab = (lab - mean[:, None, None]) / std[:, None, None] * sd + mu
    rgb = lab_to_rgb(out_lab)
    sel = (tissue & valid[:, None, None])[..., None]
    out = torch.where(sel, rgb, x).clamp(0, 255).round().to(torch.uint8)
    return out, (~valid).cpu().numpy()
