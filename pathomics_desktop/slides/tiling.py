"""MPP-aware tiling into a Parquet tile index, with resume and per-slide failures.

Geometry (all coordinates in level-0 pixels, grid anchored at the level-0 origin):

* read size ``R = round(tile_size * target_mpp / slide_mpp)`` level-0 pixels per tile, so
  a 40x slide (0.25 um/px) and a 20x slide (0.5 um/px) give the same field of view;
* tiles at ``x = i R, y = j R`` for every whole tile inside the slide;
* read from the level with the largest downsample ``d <= R / tile_size`` (never upsample
  more than 1 %), ``R / d`` level pixels, resampled to ``tile_size`` (area averaging, or
  libjpeg DCT scaling on the fast path);
* kept when ``roi_fraction >= roi_threshold`` (area inside the ROIs, holes and the
  ``Ignore*`` / excluded classes subtracted; only the tile classes, see
  :func:`pathomics_desktop.slides.roi.select_rois`) if there are ROIs, else when
  ``mask_fraction >= min_mask_fraction`` (low-resolution tissue mask, which fails safe on
  slides without glass), and in both cases ``tissue_fraction = 1 - white fraction >=
  tissue_threshold``.

Work is done in chunks of candidate tiles written atomically to ``<index>.partial/``; an
interrupted run resumes from the finished chunks, and a finished index whose recorded
parameters match is left alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.slides.reader import SlideMetadata, apply_mpp_override, read_slide_metadata, require_mpp
from pathomics_desktop.slides.roi import DEFAULT_ROI_CLASSES, Roi, load_roi_selection, roi_coverage
from pathomics_desktop.slides.tissue import TissueMaskParams, compute_tissue_mask, white_fraction

INDEX_VERSION = 1
METADATA_KEY = b"pathomics.tile_index"
INDEX_COLUMNS = ("slide", "x", "y", "level", "read_size", "tile_size", "target_mpp",
                 "tissue_fraction", "mask_fraction", "roi_fraction", "roi")


class NoTissueError(UserError):
    """A slide without tissue tiles (feeds the study exclusion "insufficient tissue")."""


@dataclass(frozen=True)
class TilingParams:
    """Tiling settings (defaults: 512 px at 0.5 um/px, i.e. 20x, as in the study)."""

    tile_size: int = 512
    target_mpp: float = 0.5
    tissue_threshold: float = 0.5
    roi_threshold: float = 0.5
    min_mask_fraction: float = 0.1
    white_level: int = 210
    mask: TissueMaskParams = field(default_factory=TissueMaskParams)
    chunk_tiles: int = 256
    workers: int = 0  # 0: one per CPU core
    fast_path: bool = True
    estimate_stain: bool = True
    min_tiles: int = 1
    # QuPath classes to tile (glob, case-insensitive) and classes subtracted besides Ignore*;
    # not in recorded(): their effect is in the ROI hash
    roi_classes: tuple[str, ...] = DEFAULT_ROI_CLASSES
    exclude_classes: tuple[str, ...] = ()

    def recorded(self) -> dict[str, Any]:
        """The parameters that define an index (resume only when all of them match)."""
        return {"tile_size": self.tile_size, "target_mpp": self.target_mpp,
                "tissue_threshold": self.tissue_threshold, "roi_threshold": self.roi_threshold,
                "min_mask_fraction": self.min_mask_fraction, "white_level": self.white_level,
                "mask": self.mask.to_dict()}


@dataclass
class TilePlan:
    """Candidate tiles of one slide, before the pixel check."""

    slide_path: str
    slide_mpp: float
    read_size: int  # level-0 pixels per tile side
    level: int
    level_downsample: float
    x: np.ndarray
    y: np.ndarray
    mask_fraction: np.ndarray
    roi_fraction: np.ndarray
    roi_name: np.ndarray  # object array of str
    grid_size: int  # all whole tiles of the grid
    slide_tissue_fraction: float
    mask_mode: str = ""  # how the tissue mask threshold was chosen (otsu | otsu-refined | no-background)
    background_fraction: float = float("nan")


@dataclass
class TileResult:
    """Outcome of tiling one slide."""

    slide: str
    status: str  # done | up-to-date | failed
    index_path: str | None = None
    n_tiles: int = 0
    n_candidates: int = 0
    seconds: float = 0.0
    reason: str = ""
    mpp: float | None = None
    read_size: int | None = None
    level: int | None = None
    resumed_chunks: int = 0
    stain: dict | None = None
    error_kind: str = ""  # no_tissue | bad_input | error (failed slides only)
    roi_selection: dict | None = None  # classes found / tiled / subtracted (RoiSelection.to_dict)
    mask_mode: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("done", "up-to-date")

    @property
    def qc(self) -> tuple[str, str]:
        """Slide QC for the registry: ``("ok", "")``, ``("excluded", "insufficient tissue: ...")``
        or ``("failed", reason)``."""
        if self.ok:
            return "ok", ""
        if self.error_kind == "no_tissue":
            return "excluded", f"insufficient tissue: {self.reason}"
        return "failed", self.reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------
# reading tiles
# --------------------------------------------------------------------------------------
class SlideTileSource:
    """Reads square level-0 regions as ``tile_size`` RGB tiles: fast JPEG path when the
    file allows it, OpenSlide otherwise. Safe to call from several threads."""

    def __init__(self, path: str | os.PathLike[str], *, fast_path: bool = True):
        from pathomics_desktop.slides.fastread import JpegTiffReader
        from pathomics_desktop.slides.reader import open_slide

        self.path = str(path)
        self.slide = open_slide(path)
        self.level_downsamples = [float(d) for d in self.slide.level_downsamples]
        self.level_dimensions = [tuple(d) for d in self.slide.level_dimensions]
        self.fast = JpegTiffReader.open(path, self.level_dimensions) if fast_path else None

    def close(self) -> None:
        if self.fast is not None:
            self.fast.close()
        self.slide.close()

    def __enter__(self) -> "SlideTileSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def best_level(self, read_size: float, tile_size: int) -> int:
        """Level with the largest downsample ``d <= read_size / tile_size`` (x 1.01)."""
        want = read_size / tile_size * 1.01
        cands = [i for i, d in enumerate(self.level_downsamples) if d <= want]
        return max(cands, key=lambda i: self.level_downsamples[i]) if cands else 0

    def _level_rect(self, x: int, y: int, read_size: int, level: int) -> tuple[int, int, int]:
        d = self.level_downsamples[level]
        return int(round(x / d)), int(round(y / d)), max(1, int(round(read_size / d)))

    def read(self, x: int, y: int, read_size: int, level: int, tile_size: int) -> np.ndarray:
        """RGB uint8 (tile_size, tile_size, 3) of level-0 square (x, y, read_size)."""
        import cv2

        xl, yl, rl = self._level_rect(x, y, read_size, level)
        if self.fast is not None:
            f = rl / tile_size
            scale = 1
            for s in (8, 4, 2):  # DCT scaling, upsampling by at most ~5 % afterwards
                if f / s >= 0.95 and self.fast.can_scale(level, xl, yl, rl, rl, s):
                    scale = s
                    break
            img = self.fast.read_region(level, xl, yl, rl, rl, scale)
        else:
            region = np.asarray(self.slide.read_region((int(x), int(y)), level, (rl, rl)))
            img = region[..., :3].copy()
            alpha = region[..., 3]
            if alpha.min() < 255:
                img[alpha == 0] = 255
        if img.shape[0] != tile_size or img.shape[1] != tile_size:
            interp = cv2.INTER_AREA if img.shape[0] > tile_size else cv2.INTER_LINEAR
            img = cv2.resize(img, (tile_size, tile_size), interpolation=interp)
        return img


def _workers(n: int) -> int:
    return n if n > 0 else max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------
def plan_tiles(source: SlideTileSource, meta: SlideMetadata, params: TilingParams,
               rois: list[Roi] | None = None) -> TilePlan:
    """Grid, tissue mask and ROI coverage of one slide -> candidate tiles."""
    mpp = require_mpp(meta)
    read_size = int(round(params.tile_size * params.target_mpp / mpp))
    if read_size < 8:
        raise UserError(f"slide {meta.path}: target {params.target_mpp} um/px with tile {params.tile_size} "
                        f"gives {read_size} level-0 px per tile at {mpp} um/px")
    nx, ny = meta.width // read_size, meta.height // read_size
    if nx == 0 or ny == 0:
        raise NoTissueError(f"slide {meta.path}: smaller ({meta.width} x {meta.height} px) than one tile "
                            f"({read_size} level-0 px at {mpp:g} um/px)")
    gx, gy = np.meshgrid(np.arange(nx, dtype=np.int64) * read_size, np.arange(ny, dtype=np.int64) * read_size)
    x, y = gx.ravel(), gy.ravel()
    mask = compute_tissue_mask(source.slide, params.mask, name=meta.path, white_level=params.white_level)
    mask_fraction = mask.fraction_in_boxes(x, y, read_size)
    if rois:
        roi_fraction, best = roi_coverage(rois, x, y, read_size)
        keep = roi_fraction >= params.roi_threshold
        names = np.array([r.label for r in rois] + [""], dtype=object)
        roi_name = names[best]
    else:
        roi_fraction = np.zeros(x.size)
        roi_name = np.full(x.size, "", dtype=object)
        keep = mask_fraction >= params.min_mask_fraction
    level = source.best_level(read_size, params.tile_size)
    return TilePlan(meta.path, mpp, read_size, level, source.level_downsamples[level],
                    x[keep], y[keep], mask_fraction[keep], roi_fraction[keep], roi_name[keep],
                    grid_size=int(x.size), slide_tissue_fraction=mask.tissue_fraction,
                    mask_mode=mask.mode, background_fraction=mask.background_fraction)


# --------------------------------------------------------------------------------------
# index files
# --------------------------------------------------------------------------------------
def index_path_for(slide_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """``<out_dir>/<slide file stem>.parquet``."""
    return Path(out_dir) / (Path(slide_path).stem + ".parquet")


def _rois_sha256(rois: list[Roi] | None) -> str | None:
    """Hash of the ROI geometries and names (what the index depends on), None without ROIs."""
    if not rois:
        return None
    import shapely

    digest = hashlib.sha256()
    for roi in rois:
        digest.update(roi.label.encode("utf-8") + b"\0")
        digest.update(shapely.to_wkb(shapely.normalize(roi.geometry), output_dimension=2))
    return digest.hexdigest()


def _numeric_array(values: np.ndarray, dtype: str):
    """Arrow array straight from a NumPy buffer (``pa.array`` would import pandas, ~0.5 s)."""
    import pyarrow as pa

    arr = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(pa.from_numpy_dtype(arr.dtype), arr.size, [None, pa.py_buffer(arr)])


def _string_array(values: Iterable[str]):
    import pyarrow as pa

    encoded = [str(v).encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    offsets[1:] = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def _column_numpy(table, name: str, dtype) -> np.ndarray:
    """A numeric column without nulls as NumPy, read from the Arrow buffers (no pandas)."""
    parts = []
    for chunk in table.column(name).chunks:
        buf = chunk.buffers()[1]
        parts.append(np.frombuffer(buf, dtype=dtype, count=len(chunk) + chunk.offset)[chunk.offset:])
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _write_table_atomic(table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_tile_index(path: str | os.PathLike[str]):
    """``(DataFrame, metadata dict)`` of a tile index written by :func:`tile_slide`."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError as exc:
        raise UserError(f"tile index {path}: not found") from exc
    except Exception as exc:
        raise UserError(f"tile index {path}: not a readable Parquet file ({exc})") from exc
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    meta = json.loads(raw) if raw else {}
    return table.to_pandas(), meta


def _recorded_metadata(path: Path) -> dict | None:
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    except Exception:
        return None
    return json.loads(raw) if raw else None


# --------------------------------------------------------------------------------------
# tiling one slide
# --------------------------------------------------------------------------------------
def tile_slide(
    slide_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    roi_path: str | os.PathLike[str] | None = None,
    rois: list[Roi] | None = None,
    params: TilingParams = TilingParams(),
    mpp_override: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    index_path: str | os.PathLike[str] | None = None,
) -> TileResult:
    """Tile one slide into ``<out_dir>/<stem>.parquet``; raises UserError on bad input.

    ``progress(done, total)`` is called per chunk; ``cancel()`` returning True stops
    after the current chunk (the run resumes later). ROIs read from ``roi_path`` are
    selected by ``params.roi_classes`` / ``params.exclude_classes``; ``rois`` given
    directly are tiled as they are.
    """
    import openslide
    import pyarrow as pa

    t0 = time.perf_counter()
    slide_path = str(slide_path)
    out = Path(index_path) if index_path else index_path_for(slide_path, out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = read_slide_metadata(slide_path)
    if mpp_override is not None:
        apply_mpp_override(meta, mpp_override)
    mpp = require_mpp(meta)
    selection = None
    if roi_path is not None and rois is None:
        selection = load_roi_selection(roi_path, slide_size=(meta.width, meta.height),
                                       roi_classes=params.roi_classes, exclude_classes=params.exclude_classes)
        rois = selection.rois
    selection_dict = selection.to_dict() if selection is not None else None
    recorded = {
        "version": INDEX_VERSION, "slide": Path(slide_path).name, "slide_path": str(Path(slide_path).resolve()),
        "slide_size": [meta.width, meta.height], "slide_file_size": meta.file_size,
        "slide_mpp": mpp, "mpp_source": "override" if meta.mpp_override is not None else "scanner",
        "params": params.recorded(), "roi_sha256": _rois_sha256(rois),
        "n_rois": len(rois or []), "roi_selection": selection_dict,
    }
    key_fields = ("version", "slide_size", "slide_file_size", "slide_mpp", "params", "roi_sha256", "n_rois")

    def same(other: dict | None) -> bool:
        return other is not None and all(other.get(k) == recorded.get(k) for k in key_fields)

    # temporary files of a run killed while writing (their rename never happened)
    for stale in [*out.parent.glob(out.name + ".tmp*"), out.with_name(out.stem + ".stain.json.tmp")]:
        stale.unlink(missing_ok=True)
    if out.exists():
        previous = _recorded_metadata(out)
        if same(previous) and previous.get("complete"):
            # a run killed after writing its index (the last step) left its chunks behind
            shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
            return TileResult(Path(slide_path).name, "up-to-date", str(out), n_tiles=int(previous.get("n_tiles", 0)),
                              n_candidates=int(previous.get("n_candidates", 0)), seconds=time.perf_counter() - t0,
                              mpp=mpp, read_size=previous.get("read_size"), level=previous.get("level"),
                              stain=previous.get("stain"), roi_selection=selection_dict,
                              mask_mode=previous.get("mask_mode", ""))
    partial = out.with_name(out.name + ".partial")
    state_file = partial / "params.json"
    if partial.exists():
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            state = None
        if not same(state):
            shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    tmp_state = state_file.with_suffix(".tmp")
    tmp_state.write_text(json.dumps(recorded), encoding="utf-8")
    os.replace(tmp_state, state_file)

    with SlideTileSource(slide_path, fast_path=params.fast_path) as source:
        plan = plan_tiles(source, meta, params, rois)
        n = plan.x.size
        if n == 0:
            shutil.rmtree(partial, ignore_errors=True)
            where = "inside the ROI" if rois else "in the tissue mask"
            if selection is not None:
                where += f" ({selection.summary()})"
            raise NoTissueError(f"slide {slide_path}: no tissue {where} (insufficient tissue)")
        chunk = max(1, params.chunk_tiles)
        n_chunks = int(math.ceil(n / chunk))
        done = {int(p.stem.split("_")[1]) for p in partial.glob("chunk_*.parquet")}
        resumed = len(done)
        level, rs, ts = plan.level, plan.read_size, params.tile_size
        slide_name = Path(slide_path).name

        def score(i: int) -> float:
            tile = source.read(int(plan.x[i]), int(plan.y[i]), rs, level, ts)
            return 1.0 - white_fraction(tile, params.white_level)

        fresh: dict[int, Any] = {}  # chunks made by this run stay in memory (small)
        with ThreadPoolExecutor(max_workers=_workers(params.workers)) as pool:
            for c in range(n_chunks):
                if c in done:
                    continue
                if cancel is not None and cancel():
                    return TileResult(slide_name, "cancelled", None, n_candidates=n,
                                      seconds=time.perf_counter() - t0, mpp=mpp, read_size=rs, level=level,
                                      resumed_chunks=resumed, reason="cancelled; run again to resume",
                                      roi_selection=selection_dict, mask_mode=plan.mask_mode)
                idx = np.arange(c * chunk, min(n, (c + 1) * chunk))
                try:
                    tf = np.fromiter(pool.map(score, idx, chunksize=4), dtype=np.float64, count=idx.size)
                except (OSError, openslide.OpenSlideError) as exc:
                    raise UserError(f"slide {slide_path}: corrupt or truncated slide data ({exc})") from exc
                kept = idx[tf >= params.tissue_threshold]
                tfk = tf[tf >= params.tissue_threshold]
                columns = {
                    "slide": _string_array([slide_name] * kept.size),
                    "x": _numeric_array(plan.x[kept], "int64"), "y": _numeric_array(plan.y[kept], "int64"),
                    "level": _numeric_array(np.full(kept.size, level), "int16"),
                    "read_size": _numeric_array(np.full(kept.size, rs), "int32"),
                    "tile_size": _numeric_array(np.full(kept.size, ts), "int32"),
                    "target_mpp": _numeric_array(np.full(kept.size, params.target_mpp), "float32"),
                    "tissue_fraction": _numeric_array(tfk, "float32"),
                    "mask_fraction": _numeric_array(plan.mask_fraction[kept], "float32"),
                    "roi_fraction": _numeric_array(plan.roi_fraction[kept], "float32"),
                    "roi": _string_array(plan.roi_name[kept]),
                }
                table = pa.Table.from_arrays(list(columns.values()), names=list(columns))
                fresh[c] = table
                _write_table_atomic(table, partial / f"chunk_{c:06d}.parquet")
                if progress is not None:
                    progress(c + 1, n_chunks)

        import pyarrow.parquet as pq

        tables = [fresh[c] if c in fresh else pq.read_table(partial / f"chunk_{c:06d}.parquet")
                  for c in range(n_chunks)]
        table = pa.concat_tables(tables)
        n_tiles = table.num_rows
        if n_tiles < params.min_tiles:
            shutil.rmtree(partial, ignore_errors=True)
            raise NoTissueError(f"slide {slide_path}: {n_tiles} tiles with tissue fraction >= "
                                f"{params.tissue_threshold} (insufficient tissue)")
        stain = None
        if params.estimate_stain:
            stain = _estimate_slide_stain(source, table, params)
    recorded.update({"complete": True, "n_tiles": n_tiles, "n_candidates": int(n), "grid_size": plan.grid_size,
                     "read_size": plan.read_size, "level": plan.level, "level_downsample": plan.level_downsample,
                     "slide_tissue_fraction": plan.slide_tissue_fraction, "stain": stain,
                     "mask_mode": plan.mask_mode, "background_fraction": plan.background_fraction,
                     "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    schema_meta = dict(table.schema.metadata or {})
    schema_meta.pop(b"pandas", None)
    schema_meta[METADATA_KEY] = json.dumps(recorded).encode()
    if stain is not None:  # before the index: a complete index means its sidecar exists
        sidecar = out.with_name(out.stem + ".stain.json")
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(json.dumps({"slide": slide_name, **stain}, indent=1), encoding="utf-8")
        os.replace(tmp, sidecar)
    _write_table_atomic(table.replace_schema_metadata(schema_meta), out)
    shutil.rmtree(partial, ignore_errors=True)
    return TileResult(slide_name, "done", str(out), n_tiles=n_tiles, n_candidates=int(n),
                      seconds=time.perf_counter() - t0, mpp=mpp, read_size=plan.read_size, level=plan.level,
                      resumed_chunks=resumed, stain=stain, roi_selection=selection_dict, mask_mode=plan.mask_mode)


def _estimate_slide_stain(source: SlideTileSource, table, params: TilingParams, n_sample: int = 12) -> dict | None:
    """Macenko stain vectors of up to ``n_sample`` evenly spaced kept tiles (at 1/4 size)."""
    import cv2

    from pathomics_desktop.slides.stain import estimate_stain_numpy

    n = table.num_rows
    if n == 0:
        return None
    pick = np.unique(np.linspace(0, n - 1, min(n, n_sample)).round().astype(int))
    xs = _column_numpy(table, "x", np.int64)[pick]
    ys = _column_numpy(table, "y", np.int64)[pick]
    rs = int(_column_numpy(table, "read_size", np.int32)[0])
    level = int(_column_numpy(table, "level", np.int16)[0])
    half = max(32, params.tile_size // 4)
    tiles = [cv2.resize(source.read(int(x), int(y), rs, level, params.tile_size), (half, half),
                        interpolation=cv2.INTER_AREA) for x, y in zip(xs, ys)]
    try:
        ref = estimate_stain_numpy(np.stack(tiles), max_pixels=200_000)
    except UserError:
        return None
    return ref.to_dict()


# --------------------------------------------------------------------------------------
# batches of slides, batches of tiles
# --------------------------------------------------------------------------------------
def tile_slides(
    slides: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    roi_paths: dict[str, str | os.PathLike[str] | None] | None = None,
    params: TilingParams = TilingParams(),
    mpp_overrides: dict[str, float] | None = None,
    on_result: Callable[[TileResult], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[TileResult]:
    """Tile several slides; a slide that fails is recorded (with the reason) and the batch
    goes on. ``roi_paths`` and ``mpp_overrides`` are keyed by slide path as given."""
    results = []
    for slide in slides:
        key = str(slide)
        t0 = time.perf_counter()
        try:
            res = tile_slide(slide, out_dir, roi_path=(roi_paths or {}).get(key), params=params,
                             mpp_override=(mpp_overrides or {}).get(key), cancel=cancel)
        except NoTissueError as exc:
            res = TileResult(Path(key).name, "failed", reason=str(exc), seconds=time.perf_counter() - t0,
                             error_kind="no_tissue")
        except UserError as exc:
            res = TileResult(Path(key).name, "failed", reason=str(exc), seconds=time.perf_counter() - t0,
                             error_kind="bad_input")
        except Exception as exc:  # a corrupt file can fail deep inside a codec
            res = TileResult(Path(key).name, "failed", reason=f"slide {key}: {type(exc).__name__}: {exc}",
                             seconds=time.perf_counter() - t0, error_kind="error")
        results.append(res)
        if on_result is not None:
            on_result(res)
        if cancel is not None and cancel():
            break
    return results


def iter_tile_batches(
    slide_path: str | os.PathLike[str],
    tile_index,
    target_mpp: float | None = None,
    tile_size: int | None = None,
    batch_size: int = 64,
    mpp_override: float | None = None,
    *,
    workers: int = 0,
    fast_path: bool = True,
) -> Iterator[tuple[Any, np.ndarray]]:
    """Yield ``(rows, patches)``: consecutive rows of ``tile_index`` (a DataFrame with
    ``x, y, level, read_size``) and their pixels as uint8 (N, tile_size, tile_size, 3).

    ``tile_size`` defaults to the index's; ``target_mpp`` / ``mpp_override`` recompute
    the read size when they differ from the index (``R = tile_size * target_mpp / mpp``).
    """
    df = tile_index
    if len(df) == 0:
        return
    ts = int(tile_size or df["tile_size"].iloc[0])
    with SlideTileSource(slide_path, fast_path=fast_path) as source:
        read_size = df["read_size"].to_numpy().astype(int)
        levels = df["level"].to_numpy().astype(int)
        if target_mpp is not None or mpp_override is not None:
            meta = read_slide_metadata(slide_path, mpp_override=mpp_override)
            mpp = require_mpp(meta)
            tm = float(target_mpp if target_mpp is not None else df["target_mpp"].iloc[0])
            rs = int(round(ts * tm / mpp))
            read_size = np.full(len(df), rs)
            levels = np.full(len(df), source.best_level(rs, ts))
        xs, ys = df["x"].to_numpy().astype(int), df["y"].to_numpy().astype(int)

        def load(i: int) -> np.ndarray:
            return source.read(xs[i], ys[i], int(read_size[i]), int(levels[i]), ts)

        starts = list(range(0, len(df), batch_size))
        with ThreadPoolExecutor(max_workers=_workers(workers)) as pool:
            def submit(start: int) -> list:
                return [pool.submit(load, i) for i in range(start, min(len(df), start + batch_size))]

            pending = submit(starts[0])
            for k, start in enumerate(starts):
                # the next batch decodes while the caller works on this one (two in flight)
                following = submit(starts[k + 1]) if k + 1 < len(starts) else []
                batch = np.stack([f.result() for f in pending])
                yield df.iloc[start:start + len(batch)], batch
                pending = following


def export_tile_grid_geojson(index_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Write a tile index as QuPath GeoJSON tiles (level-0 squares with tissue fraction)."""
    from pathomics_desktop.slides.roi import tiles_to_geojson, write_geojson

    df, _meta = read_tile_index(index_path)
    doc = tiles_to_geojson(df["x"], df["y"], df["read_size"], df["tissue_fraction"], df["roi"])
    return write_geojson(out_path, doc)
