"""What the whole-slide viewer lays over a slide (no Qt): colour maps, heatmap grids from the
tile index / patch predictions / Grad-CAM outputs, the slide's ROI, and one tile "as the
model saw it".

Files of a project (see :mod:`pathomics_desktop.learning.jobs`):

* tile index ``tiles/<slide_id>.parquet`` (``x, y, read_size, tissue_fraction, ...``);
* predictions ``predictions/<run>/<slide_id>.parquet`` (``x, y, prob, pred``), prob = P(poor);
* Grad-CAM ``gradcam/<run>/<slide_id>/tile_<x>_<y>.npy`` (the map of one tile, [0, 1], at
  the model's input size);
* ROI ``rois/<slide_id>.geojson`` (``pathomics slides roi``), else the QuPath file named by
  the patient's study id ``rois/<study_id>.geojson`` (how the SYNTHETIC demo stores them).

Colour maps are 256-entry RGB lookup tables; value ``v`` in [0, 1] takes entry
``round(255 v)``. viridis and magma are the matplotlib maps (van der Walt & Smith, CC0),
jet is :func:`pathomics_desktop.learning.gradcam.jet_colormap`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pathomics_desktop.errors import UserError

VIRIDIS_HEX = (
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769"
    "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a"
    "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85"
    "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b"
    "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d"
    "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e"
    "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e"
    "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d"
    "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
    "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81"
    "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74"
    "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863"
    "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d"
    "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32"
    "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a"
    "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725"
)
MAGMA_HEX = (
    "00000401000501010601010802010902020b02020d03030f03031204041405041606051806051a07061c08071e090720"
    "0a08220b09240c09260d0a290e0b2b100b2d110c2f120d31130d34140e36150e38160f3b180f3d19103f1a10421c1044"
    "1d11471e114920114b21114e22115024125325125527125829115a2a115c2c115f2d11612f1163311165331067341069"
    "36106b38106c390f6e3b0f703d0f713f0f72400f74420f75440f764510774710784910784a10794c117a4e117b4f127b"
    "51127c52137c54137d56147d57157e59157e5a167e5c167f5d177f5f187f601880621980641a80651a80671b80681c81"
    "6a1c816b1d816d1d816e1e81701f81721f817320817521817621817822817922827b23827c23827e2482802582812581"
    "8326818426818627818827818928818b29818c29818e2a81902a81912b81932b80942c80962c80982d80992d809b2e7f"
    "9c2e7f9e2f7fa02f7fa1307ea3307ea5317ea6317da8327daa337dab337cad347cae347bb0357bb2357bb3367ab5367a"
    "b73779b83779ba3878bc3978bd3977bf3a77c03a76c23b75c43c75c53c74c73d73c83e73ca3e72cc3f71cd4071cf4070"
    "d0416fd2426fd3436ed5446dd6456cd8456cd9466bdb476adc4869de4968df4a68e04c67e24d66e34e65e44f64e55064"
    "e75263e85362e95462ea5661eb5760ec5860ed5a5fee5b5eef5d5ef05f5ef1605df2625df2645cf3655cf4675cf4695c"
    "f56b5cf66c5cf66e5cf7705cf7725cf8745cf8765cf9785df9795df97b5dfa7d5efa7f5efa815ffb835ffb8560fb8761"
    "fc8961fc8a62fc8c63fc8e64fc9065fd9266fd9467fd9668fd9869fd9a6afd9b6bfe9d6cfe9f6dfea16efea36ffea571"
    "fea772fea973feaa74feac76feae77feb078feb27afeb47bfeb67cfeb77efeb97ffebb81febd82febf84fec185fec287"
    "fec488fec68afec88cfeca8dfecc8ffecd90fecf92fed194fed395fed597fed799fed89afdda9cfddc9efddea0fde0a1"
    "fde2a3fde3a5fde5a7fde7a9fde9aafdebacfcecaefceeb0fcf0b2fcf2b4fcf4b6fcf6b8fcf7b9fcf9bbfcfbbdfcfdbf"
)

COLORMAPS = ("viridis", "magma", "jet")


@lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 RGB table of colour map ``name`` (viridis, magma, jet)."""
    if name == "viridis":
        table = np.frombuffer(bytes.fromhex(VIRIDIS_HEX), np.uint8).reshape(256, 3)
    elif name == "magma":
        table = np.frombuffer(bytes.fromhex(MAGMA_HEX), np.uint8).reshape(256, 3)
    elif name == "jet":
        from pathomics_desktop.learning.gradcam import jet_colormap

        table = jet_colormap(np.arange(256) / 255.0)
    else:
        raise UserError(f"colour map {name!r} is not one of {', '.join(COLORMAPS)}")
    table = np.ascontiguousarray(table)
    table.flags.writeable = False
    return table


def lut_index(values: np.ndarray) -> np.ndarray:
    """Lookup-table entry of values in [0, 1]: ``round(255 clip(v, 0, 1))`` (NaN -> 0)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    return np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.intp)


def colorize(values: np.ndarray, name: str, *, alpha: int = 255) -> np.ndarray:
    """(..., 4) uint8 RGBA of ``values`` in [0, 1] through colour map ``name``; NaN cells are
    fully transparent (no tile there), every other cell has opacity ``alpha``."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape + (4,), np.uint8)
    out[..., :3] = colormap_lut(name)[lut_index(values)]
    covered = ~np.isnan(values)
    out[..., 3] = np.where(covered, alpha, 0)
    out[~covered, :3] = 0
    return out


# --------------------------------------------------------------------------------------
# grids
# --------------------------------------------------------------------------------------
@dataclass
class HeatmapGrid:
    """Values on the tile grid: ``values[r, c]`` belongs to the level-0 square at
    ``(x0 + c * cell, y0 + r * cell)`` of side ``cell``; NaN where there is no tile."""

    values: np.ndarray
    x0: int
    y0: int
    cell: int
    label: str = ""

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        rows, cols = self.values.shape
        return self.x0, self.y0, self.x0 + cols * self.cell, self.y0 + rows * self.cell

    def value_at(self, x: float, y: float) -> float:
        """The value of the cell containing level-0 point (x, y) (NaN outside)."""
        c, r = int((x - self.x0) // self.cell), int((y - self.y0) // self.cell)
        rows, cols = self.values.shape
        if 0 <= r < rows and 0 <= c < cols:
            return float(self.values[r, c])
        return float("nan")


def heatmap_grid(table: Any, cell: int, column: str, label: str = "") -> HeatmapGrid:
    """Lay ``column`` of a tile table (``x, y`` = level-0 top-left) on its grid of side
    ``cell`` (:func:`pathomics_desktop.learning.gradcam.slide_probability_map`, which checks
    that every tile sits on the grid, once, with a value in [0, 1])."""
    from pathomics_desktop.learning.gradcam import slide_probability_map

    m = slide_probability_map(table, int(cell), prob_col=column)
    return HeatmapGrid(m.values, m.x0, m.y0, m.tile_size, label)


def grid_cell(tiles, predictions) -> int:
    """The level-0 tile side: the tile index's ``read_size``, else the greatest common
    divisor of the prediction coordinates' steps."""
    if tiles is not None and len(tiles):
        return int(tiles["read_size"].iloc[0])
    xs = np.unique(np.concatenate([np.asarray(predictions["x"]), np.asarray(predictions["y"])]))
    steps = np.diff(xs)
    steps = steps[steps > 0]
    if steps.size == 0:
        raise UserError("predictions hold a single tile position and no tile index gives the tile size")
    return int(np.gcd.reduce(steps.astype(np.int64)))


# --------------------------------------------------------------------------------------
# a slide and its overlays
# --------------------------------------------------------------------------------------
@dataclass
class CamTile:
    """One Grad-CAM map: the tile at level-0 (x, y), side ``size``; ``cam`` (h, w) in [0, 1]."""

    x: int
    y: int
    size: int
    cam: np.ndarray


@dataclass
class ViewerSlide:
    """Everything the viewer shows of one slide, loaded off the GUI thread."""

    path: str
    width: int
    height: int
    mpp: float | None
    mpp_source: str  # override | scanner | none
    mpp_message: str = ""
    slide_id: int | None = None
    study_id: str | None = None
    rois: list = field(default_factory=list)
    roi_path: str | None = None
    tiles: Any = None  # DataFrame of the tile index, or None
    tiles_path: str | None = None
    predictions: dict[str, Any] = field(default_factory=dict)  # run -> DataFrame (x, y, prob, pred)
    gradcam: dict[str, list[CamTile]] = field(default_factory=dict)  # run -> tiles
    stain_vectors: dict | None = None
    synthetic: bool = False

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def cell(self) -> int | None:
        """Level-0 side of a tile-index tile (None without tiles or predictions)."""
        if self.tiles is not None and len(self.tiles):
            return grid_cell(self.tiles, None)
        for frame in self.predictions.values():
            if len(frame):
                return grid_cell(None, frame)
        return None

    def probability_grid(self, run: str) -> HeatmapGrid:
        """P(poor) of every predicted tile of ``run`` on the tile grid."""
        frame = self.predictions.get(run)
        if frame is None or not len(frame):
            raise UserError(f"slide {self.name}: no predictions of model run {run!r}")
        return heatmap_grid(frame, self.cell, "prob", f"P(poor), model {run}")

    def tissue_grid(self) -> HeatmapGrid:
        """The tile index's tissue fraction (1 - white fraction) on the grid: the heatmap
        shown while a slide has no predictions yet."""
        if self.tiles is None or not len(self.tiles):
            raise UserError(f"slide {self.name}: no tile index (tile the slide first)")
        return heatmap_grid(self.tiles, self.cell, "tissue_fraction", "tissue fraction (no predictions yet)")

    def tile_row(self, x: float, y: float) -> dict[str, Any] | None:
        """The tile-index tile containing level-0 point (x, y) with its predictions per run
        (``prob``/``pred`` of the first run, ``predictions`` = {run: prob}); None outside."""
        from pathomics_desktop.slides.viewport import tile_containing

        frame = self.tiles
        source = "tile index"
        if frame is None or not len(frame):
            frame = next((f for f in self.predictions.values() if len(f)), None)
            source = "predictions"
            if frame is None:
                return None
        cell = self.cell
        size = frame["read_size"].to_numpy() if "read_size" in frame else cell
        i = tile_containing(frame["x"].to_numpy(), frame["y"].to_numpy(), size, x, y)
        if i < 0:
            return None
        row = frame.iloc[i]
        out: dict[str, Any] = {"x": int(row["x"]), "y": int(row["y"]),
                               "size": int(row["read_size"]) if "read_size" in frame else int(cell),
                               "source": source}
        for col in ("tissue_fraction", "roi_fraction", "level", "tile_size"):
            if col in frame:
                out[col] = float(row[col]) if col.endswith("fraction") else int(row[col])
        preds = {}
        for run, pf in self.predictions.items():
            hit = pf[(pf["x"] == out["x"]) & (pf["y"] == out["y"])]
            if len(hit):
                preds[run] = {"prob": float(hit["prob"].iloc[0]),
                              "pred": int(hit["pred"].iloc[0]) if "pred" in hit else int(hit["prob"].iloc[0] >= 0.5)}
        out["predictions"] = preds
        return out


_CAM_NAME = re.compile(r"^tile_(\d+)_(\d+)\.npy$")


def load_gradcam_tiles(folder: Path, cell: int | None) -> list[CamTile]:
    """Grad-CAM maps of one slide (``tile_<x>_<y>.npy``) with their level-0 squares."""
    out = []
    if not folder.is_dir() or not cell:
        return out
    for path in sorted(folder.glob("tile_*.npy")):
        match = _CAM_NAME.match(path.name)
        if not match:
            continue
        cam = np.load(path)
        if cam.ndim != 2:
            raise UserError(f"Grad-CAM file {path}: expected a 2-D map, got shape {cam.shape}")
        out.append(CamTile(int(match.group(1)), int(match.group(2)), int(cell), cam.astype(np.float32)))
    return out


def roi_file_for(project, slide_id: int, study_id: str | None) -> Path | None:
    """The slide's ROI file (see the module docstring), or None."""
    from pathomics_desktop.slides.jobs import roi_path_for

    own = roi_path_for(project, slide_id)
    if own.is_file():
        return own
    if study_id:
        demo = project.root / "rois" / f"{study_id}.geojson"
        if demo.is_file():
            return demo
    return None


def load_viewer_slide(project, registry, slide_id: int) -> ViewerSlide:
    """A registered slide with its MPP (override included), ROI, tile index, predictions of
    every model run and Grad-CAM maps (runs in a worker thread)."""
    import pandas as pd

    from pathomics_desktop.registry.models import Patient
    from pathomics_desktop.registry.slides import effective_mpp, get_slide
    from pathomics_desktop.slides.jobs import tile_index_path
    from pathomics_desktop.slides.roi import load_rois
    from pathomics_desktop.slides.tiling import read_tile_index

    with registry.session() as session:
        slide = get_slide(session, int(slide_id))
        patient = session.get(Patient, slide.patient_id) if slide.patient_id else None
        info = {"path": slide.path, "width": slide.width or 0, "height": slide.height or 0,
                "mpp": effective_mpp(slide), "override": slide.mpp_override, "flag": slide.mpp_flag or "",
                "study_id": patient.study_id if patient else None, "stain": slide.stain_vectors,
                "synthetic": bool(slide.synthetic)}
    if not Path(info["path"]).is_file():
        raise UserError(f"slide {slide_id}: file {info['path']} not found (moved? add it again with "
                        "`pathomics slides add`)")
    source = "override" if info["override"] is not None else ("scanner" if info["mpp"] is not None else "none")
    out = ViewerSlide(path=info["path"], width=int(info["width"]), height=int(info["height"]), mpp=info["mpp"],
                      mpp_source=source, mpp_message=info["flag"], slide_id=int(slide_id),
                      study_id=info["study_id"], stain_vectors=info["stain"], synthetic=info["synthetic"])
    roi = roi_file_for(project, int(slide_id), info["study_id"])
    if roi is not None:
        out.rois = load_rois(roi, slide_size=(out.width, out.height) if out.width else None)
        out.roi_path = str(roi)
    index = tile_index_path(project, int(slide_id))
    if index.is_file():
        out.tiles, _meta = read_tile_index(index)
        out.tiles_path = str(index)
    pred_root = project.root / "predictions"
    if pred_root.is_dir():
        for run_folder in sorted(p for p in pred_root.iterdir() if p.is_dir()):
            path = run_folder / f"{int(slide_id)}.parquet"
            if path.is_file():
                try:
                    out.predictions[run_folder.name] = pd.read_parquet(path, columns=None)
                except Exception as exc:
                    raise UserError(f"predictions {path}: not a readable Parquet file ({exc})") from exc
    cell = out.cell
    cam_root = project.root / "gradcam"
    if cam_root.is_dir():
        for run_folder in sorted(p for p in cam_root.iterdir() if p.is_dir()):
            tiles = load_gradcam_tiles(run_folder / str(int(slide_id)), cell)
            if tiles:
                out.gradcam[run_folder.name] = tiles
    return out


def load_viewer_file(path: str | Path, *, mpp_override: float | None = None) -> ViewerSlide:
    """A slide file that is not in a registry (``pathomics bench viewer``, plain files)."""
    from pathomics_desktop.slides.reader import read_slide_metadata

    meta = read_slide_metadata(path, mpp_override=mpp_override)
    source = "override" if meta.mpp_override is not None else ("scanner" if meta.effective_mpp else "none")
    synthetic = "SYNTHETIC" in (meta.properties.get("openslide.comment", "") or "").upper()
    return ViewerSlide(path=str(path), width=meta.width, height=meta.height, mpp=meta.effective_mpp,
                       mpp_source=source, mpp_message=meta.mpp_message, synthetic=synthetic)


# --------------------------------------------------------------------------------------
# one tile as the model saw it
# --------------------------------------------------------------------------------------
def tile_as_model_saw_it(project, slide: ViewerSlide, tile: dict[str, Any], run: str | None) -> dict[str, Any]:
    """The tile at ``tile`` (a :meth:`ViewerSlide.tile_row`) read as inference reads it: the
    tile index's position, level and size, resized to the run's input size and stain-
    normalised by the run's normaliser (:class:`learning.project_data.StreamedTiles`).

    Returns ``raw`` and ``model_input`` (uint8 RGB), ``stain`` (the normaliser's name) and,
    when ``gradcam/<run>/<slide_id>/tile_<x>_<y>.npy`` exists, ``cam`` and ``cam_png`` (the
    overlay rendered by :func:`learning.gradcam.render_cam_overlay`).
    """
    from pathomics_desktop.learning.project_data import StreamedTiles

    spec: dict[str, Any] = {}
    normaliser = None
    stain = "none"
    if run:
        from pathomics_desktop.learning.jobs import run_stain_normaliser, load_run

        try:
            spec = load_run(project, run)
        except UserError:
            spec = {}  # predictions without their run folder: show the raw tile's pipeline
        normaliser = run_stain_normaliser(spec) if spec else None
        stain = spec.get("stain", "macenko") if spec else "none"
    level = int(tile.get("level", 0))
    tile_size = int(tile.get("tile_size", tile["size"]))
    entry = (slide.path, int(tile["x"]), int(tile["y"]), int(tile["size"]), level, tile_size)
    raw_reader = StreamedTiles([entry], input_size=spec.get("input_size"))
    try:
        raw = raw_reader[0]
    finally:
        raw_reader.close()
    model_input = normaliser(raw[None])[0] if normaliser is not None else raw
    out: dict[str, Any] = {"raw": raw, "model_input": model_input, "stain": stain,
                           "input_size": int(model_input.shape[0]), "run": run}
    if run and slide.slide_id is not None:
        cam_path = project.root / "gradcam" / run / str(slide.slide_id) / f"tile_{tile['x']}_{tile['y']}.npy"
        if cam_path.is_file():
            from pathomics_desktop.learning.gradcam import render_cam_overlay

            cam = np.load(cam_path).astype(np.float32)
            if cam.shape != model_input.shape[:2]:
                import cv2

                cam = cv2.resize(cam, model_input.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            out["cam"] = cam
            out["cam_png"] = render_cam_overlay(np.ascontiguousarray(model_input), np.clip(cam, 0, 1))
    return out


# --------------------------------------------------------------------------------------
# the slide list of the viewer
# --------------------------------------------------------------------------------------
def viewer_slide_list(project, registry) -> list[dict[str, Any]]:
    """Registered slides that have a file: id, study id, file name, QC, and whether a tile
    index and predictions exist (the viewer's slide chooser)."""
    from pathomics_desktop.registry.slides import list_slides
    from pathomics_desktop.slides.jobs import tile_index_path

    runs = []
    pred_root = project.root / "predictions"
    if pred_root.is_dir():
        runs = sorted(p for p in pred_root.iterdir() if p.is_dir())
    out = []
    for row in list_slides(registry):
        if not row["width"]:
            continue  # never read (failed at registration)
        sid = int(row["id"])
        out.append({"id": sid, "study_id": row["study_id"], "name": Path(row["path"]).name,
                    "qc_status": row["qc_status"], "tiles": tile_index_path(project, sid).is_file(),
                    "predictions": [r.name for r in runs if (r / f"{sid}.parquet").is_file()]})
    return out


def screenshot_slide(project, registry) -> int | None:
    """The slide the screenshot shows: the first with predictions, else the first with a tile
    index, else the first slide. Nothing is computed or written: a screenshot leaves the
    project as it found it."""
    slides = viewer_slide_list(project, registry)
    if not slides:
        return None
    chosen = (next((s for s in slides if s["predictions"]), None) or next((s for s in slides if s["tiles"]), None)
              or slides[0])
    return int(chosen["id"])
