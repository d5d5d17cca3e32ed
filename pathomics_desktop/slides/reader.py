"""Opening slides, reading their metadata and judging the plausibility of their MPP.

OpenSlide is the general reader for every format; :mod:`pathomics_desktop.slides.fastread`
adds a parallel JPEG-tile path for TIFF-based slides. Every failure to open a slide is
turned into a :class:`~pathomics_desktop.errors.UserError` that names the file and the
reason.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pathomics_desktop.errors import UserError

#: Expected level-0 pixel size at objective power ``P``: ``mpp ~ NOMINAL_MPP_AT_1X / P``
#: (10 um/px at 1x gives 0.25 at 40x, 0.5 at 20x; scanners range ~0.22-0.27 at 40x).
NOMINAL_MPP_AT_1X = 10.0
#: A slide's MPP is implausible for its objective power when
#: ``|log2(mpp * P / 10)| > MPP_TOLERANCE_LOG2`` (0.4 -> a factor of ~1.32 either way).
MPP_TOLERANCE_LOG2 = 0.4
#: Hard physical range for brightfield WSI pixel sizes (um/px).
MPP_RANGE = (0.05, 20.0)


@dataclass
class SlideMetadata:
    """What the registry and ``pathomics slides info`` need to know about a slide."""

    path: str
    vendor: str | None
    width: int
    height: int
    levels: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    scanner: str | None
    file_size: int
    mpp_status: str = "ok"  # ok | missing | implausible | override
    mpp_message: str = ""
    mpp_override: float | None = None
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def effective_mpp(self) -> float | None:
        """The MPP every step uses: the override if set, else the scanner's when plausible."""
        if self.mpp_override is not None:
            return self.mpp_override
        if self.mpp_status == "ok" and self.mpp_x is not None:
            return self.mpp_x if self.mpp_y is None else (self.mpp_x + self.mpp_y) / 2.0
        return None

    def to_dict(self, *, with_properties: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out["level_dimensions"] = [list(d) for d in self.level_dimensions]
        out["effective_mpp"] = self.effective_mpp
        if not with_properties:
            out.pop("properties")
        return out


def sha256_file(path: str | os.PathLike[str], chunk: int = 4 * 1024 * 1024) -> str:
    """Hex SHA-256 of a file read in ``chunk``-byte pieces (constant memory)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while True:
                block = fh.read(chunk)
                if not block:
                    break
                digest.update(block)
    except OSError as exc:
        raise UserError(f"slide {path}: cannot read file ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def open_slide(path: str | os.PathLike[str]):
    """``openslide.OpenSlide`` for ``path``, or a UserError naming the file and the reason."""
    import openslide

    p = Path(path)
    if not p.exists():
        raise UserError(f"slide {p}: file not found")
    if not p.is_file():
        raise UserError(f"slide {p}: not a file")
    if p.stat().st_size == 0:
        raise UserError(f"slide {p}: empty file")
    try:
        slide = openslide.OpenSlide(str(p))
    except openslide.OpenSlideUnsupportedFormatError as exc:
        head = p.open("rb").read(4)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            raise UserError(f"slide {p}: a TIFF file that OpenSlide cannot read as a slide "
                            "(truncated or corrupt file, or not a whole-slide image)") from exc
        raise UserError(f"slide {p}: not a whole-slide image OpenSlide can read (unsupported format or not a slide)") from exc
    except openslide.OpenSlideError as exc:
        raise UserError(f"slide {p}: corrupt or truncated slide file ({exc})") from exc
    except OSError as exc:
        raise UserError(f"slide {p}: cannot open ({exc})") from exc
    return slide


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def check_mpp(mpp_x: float | None, mpp_y: float | None, objective_power: float | None) -> tuple[str, str]:
    """Judge a slide's pixel size: ``("ok" | "missing" | "implausible", message)``.

    Implausible when outside :data:`MPP_RANGE`, when x and y differ by more than 10 %, or
    when ``|log2(mpp * P / 10)| > 0.4`` for objective power ``P`` (so a "20x" slide at
    0.23 um/px, which is a 40x pixel size, is flagged). Nothing is ever assumed.
    """
    if mpp_x is None and mpp_y is None:
        return "missing", "no MPP (microns per pixel) in the slide metadata; set an MPP override"
    mx = mpp_x if mpp_x is not None else mpp_y
    my = mpp_y if mpp_y is not None else mpp_x
    assert mx is not None and my is not None
    lo, hi = MPP_RANGE
    if not (lo <= mx <= hi and lo <= my <= hi):
        return "implausible", f"MPP {mx:g} x {my:g} um/px is outside the physical range {lo:g}-{hi:g}"
    if abs(mx - my) / max(mx, my) > 0.10:
        return "implausible", f"non-square pixels: MPP x = {mx:g}, y = {my:g} um/px"
    if objective_power is not None:
        expected = NOMINAL_MPP_AT_1X / objective_power
        if abs(math.log2(mx * objective_power / NOMINAL_MPP_AT_1X)) > MPP_TOLERANCE_LOG2:
            return "implausible", (f"MPP {mx:g} um/px does not match objective power {objective_power:g}x "
                                   f"(expected about {expected:.2g} um/px); check the scan or set an MPP override")
    return "ok", ""


def read_slide_metadata(path: str | os.PathLike[str], *, mpp_override: float | None = None) -> SlideMetadata:
    """Metadata of one slide through OpenSlide (vendor, levels, MPP, objective, scanner).

    ``mpp_override`` (um/px) replaces the scanner's MPP for every later step; it is
    validated against :data:`MPP_RANGE`.
    """
    import openslide

    slide = open_slide(path)
    try:
        props = dict(slide.properties)
        mpp_x = _float(props.get(openslide.PROPERTY_NAME_MPP_X))
        mpp_y = _float(props.get(openslide.PROPERTY_NAME_MPP_Y))
        power = _float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
        vendor = props.get(openslide.PROPERTY_NAME_VENDOR)
        scanner = (props.get("aperio.ScanScope ID") or props.get("hamamatsu.Product")
                   or props.get("philips.DICOM_MANUFACTURER") or props.get("tiff.Make")
                   or props.get("tiff.Model") or None)
        width, height = slide.dimensions
        status, message = check_mpp(mpp_x, mpp_y, power)
        meta = SlideMetadata(
            path=str(Path(path)), vendor=vendor, width=int(width), height=int(height),
            levels=int(slide.level_count),
            level_dimensions=[(int(w), int(h)) for w, h in slide.level_dimensions],
            level_downsamples=[float(d) for d in slide.level_downsamples],
            mpp_x=mpp_x, mpp_y=mpp_y, objective_power=power, scanner=scanner,
            file_size=Path(path).stat().st_size, mpp_status=status, mpp_message=message,
            properties=props,
        )
    except openslide.OpenSlideError as exc:
        raise UserError(f"slide {path}: corrupt slide file ({exc})") from exc
    finally:
        slide.close()
    if mpp_override is not None:
        apply_mpp_override(meta, mpp_override)
    return meta


def apply_mpp_override(meta: SlideMetadata, mpp_override: float) -> SlideMetadata:
    """Store a user-chosen MPP (um/px) on ``meta``; every later step uses it."""
    value = _float(mpp_override)
    lo, hi = MPP_RANGE
    if value is None or not lo <= value <= hi:
        raise UserError(f"slide {meta.path}: MPP override {mpp_override!r} is not a pixel size in {lo:g}-{hi:g} um/px")
    meta.mpp_override = value
    meta.mpp_status = "override"
    meta.mpp_message = (meta.mpp_message + "; " if meta.mpp_message else "") + f"MPP override {value:g} um/px in use"
    return meta


def require_mpp(meta: SlideMetadata) -> float:
    """The effective MPP, or a UserError saying why there is none (never a silent guess)."""
    mpp = meta.effective_mpp
    if mpp is None:
        raise UserError(f"slide {meta.path}: {meta.mpp_status} MPP - {meta.mpp_message}")
    return mpp


def read_thumbnail(path: str | os.PathLike[str], max_size: int = 1024):
    """RGB uint8 thumbnail (longest side <= ``max_size``) read from the smallest suitable
    pyramid level, transparent areas on white (for the registry's thumbnail cache)."""
    import numpy as np

    slide = open_slide(path)
    try:
        img = slide.get_thumbnail((max_size, max_size)).convert("RGB")
    except Exception as exc:  # openslide.OpenSlideError on corrupt pixel data
        raise UserError(f"slide {path}: cannot read a thumbnail ({exc})") from exc
    finally:
        slide.close()
    return np.asarray(img)


def write_thumbnail(path: str | os.PathLike[str], out_path: str | os.PathLike[str], max_size: int = 1024) -> Path:
    """Write :func:`read_thumbnail` as PNG/JPEG (by suffix), atomically."""
    import cv2
    import numpy as np

    rgb = read_thumbnail(path, max_size)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(out.suffix or ".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise UserError(f"thumbnail {out}: unsupported image type {out.suffix!r}")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, out)
    return out
