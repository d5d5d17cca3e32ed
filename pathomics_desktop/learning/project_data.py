"""Tiles of a project's slides as training and inference data, labelled as in the study.

Prognosis labels (study section 5.4): **poor** (class 1) = recurrence or death within 12
months of surgery (RFS event with RFS <= 12 months); **good** (class 0) = recurrence-free for
more than 36 months (RFS > 36 months); every other patient is not used for training. Every
tile inherits its patient's label. Data sets come from the registry's frozen split.

Tiles are streamed from the slides through the tile index (``tiles/<slide_id>.parquet``)
and, optionally, the Macenko stain normaliser; no patch image is ever written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathomics_desktop.errors import UserError

POOR_MONTHS = 12.0
GOOD_MONTHS = 36.0


def prognosis_label(rfs_months: float | None, rfs_event: int | None) -> int | None:
    """1 = poor (event within 12 months), 0 = good (event-free beyond 36 months), else None."""
    if rfs_months is None or rfs_event is None or rfs_months != rfs_months:
        return None
    if rfs_event == 1 and rfs_months <= POOR_MONTHS:
        return 1
    if rfs_months > GOOD_MONTHS:
        return 0
    return None


@dataclass
class SlideTiles:
    slide_id: int
    study_id: str
    split: str | None
    label: int | None
    path: str
    index_path: Path
    n_tiles: int


def project_slides(project) -> list[SlideTiles]:
    """Included patients' slides with QC ok and a tile index, with label and data set."""
    import pandas as pd
    from sqlalchemy import select

    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.jobs.sites import local_path  # the worker's site path map
    from pathomics_desktop.registry.models import Patient, Slide
    from pathomics_desktop.registry.service import open_project_registry

    cohort = cohort_frame(project.root)
    cohort = cohort[cohort["included"]].set_index("study_id")
    registry = open_project_registry(project)
    try:
        with registry.session() as session:
            rows = session.execute(select(Slide.id, Slide.path, Patient.study_id).join(Patient)
                                   .where(Slide.qc_status == "ok").order_by(Slide.id)).all()
    finally:
        registry.dispose()
    out = []
    for slide_id, path, study_id in rows:
        if study_id not in cohort.index:
            continue
        index_path = project.root / "tiles" / f"{slide_id}.parquet"
        if not index_path.exists():
            continue
        patient = cohort.loc[study_id]
        label = prognosis_label(None if pd.isna(patient["rfs_months"]) else float(patient["rfs_months"]),
                                None if pd.isna(patient["rfs_event"]) else int(patient["rfs_event"]))
        n = _index_rows(index_path)
        out.append(SlideTiles(slide_id, study_id, patient["split"], label, local_path(path), index_path, n))
    return out


def _index_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


class StreamedTiles:
    """Random access to tiles of several slides: ``tiles[i]`` is a uint8 (S, S, 3) array read
    from the slide at the indexed position (fast JPEG path where possible), resized to
    ``input_size`` and stain-normalised when a normaliser is given."""

    def __init__(self, entries: list[tuple[str, int, int, int, int, int]], *, input_size: int | None = None,
                 normaliser=None, max_open: int = 16):
        self.entries = entries  # (slide path, x, y, read_size, level, tile_size)
        self.input_size = input_size
        self.normaliser = normaliser
        self.max_open = max_open
        self._sources: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _source(self, path: str):
        from pathomics_desktop.slides.tiling import SlideTileSource

        src = self._sources.get(path)
        if src is None:
            if len(self._sources) >= self.max_open:
                oldest = next(iter(self._sources))
                self._sources.pop(oldest).close()
            src = self._sources[path] = SlideTileSource(path)
        return src

    def _raw(self, i: int) -> np.ndarray:
        path, x, y, read_size, level, tile_size = self.entries[i]
        tile = self._source(path).read(x, y, read_size, level, tile_size)
        if self.input_size and self.input_size != tile.shape[0]:
            import cv2

            tile = cv2.resize(tile, (self.input_size, self.input_size), interpolation=cv2.INTER_AREA)
        return tile

    def __getitem__(self, i: int) -> np.ndarray:
        tile = self._raw(i)
        return self.normaliser(tile[None])[0] if self.normaliser is not None else tile

    def batch(self, indices) -> np.ndarray:
        """Several tiles as one (B, S, S, 3) array, stain-normalised as one batch."""
        tiles = np.stack([self._raw(i) for i in indices])
        return self.normaliser(tiles) if self.normaliser is not None else tiles

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))

    def __getstate__(self):  # sources hold file handles: reopen in worker processes
        state = dict(self.__dict__)
        state["_sources"] = {}
        return state

    def close(self) -> None:
        for src in self._sources.values():
            src.close()
        self._sources.clear()


def macenko_numpy_normaliser(reference=None):
    """uint8 (B, H, W, 3) numpy -> Macenko-normalised uint8 numpy (torch on the CPU)."""
    def normalise(batch: np.ndarray) -> np.ndarray:
        import torch

        from pathomics_desktop.slides.stain import macenko_normalize

        result = macenko_normalize(torch.from_numpy(np.ascontiguousarray(batch)), reference)
        images = result.images
        return images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    return normalise


def tile_entries(slides: list[SlideTiles], *, max_tiles_per_slide: int | None, seed: int) -> tuple[list, list[int], list[int]]:
    """(entries, labels, slide ids) of the slides' tiles, at most ``max_tiles_per_slide`` each
    (a seeded random sample, the same every run)."""
    import pandas as pd

    entries, labels, owners = [], [], []
    rng = np.random.default_rng(seed)
    for s in slides:
        frame = pd.read_parquet(s.index_path, columns=["x", "y", "read_size", "level", "tile_size"])
        if max_tiles_per_slide is not None and len(frame) > max_tiles_per_slide:
            keep = np.sort(rng.choice(len(frame), size=max_tiles_per_slide, replace=False))
            frame = frame.iloc[keep]
        for row in frame.itertuples(index=False):
            entries.append((s.path, int(row.x), int(row.y), int(row.read_size), int(row.level), int(row.tile_size)))
            labels.append(-1 if s.label is None else int(s.label))
            owners.append(s.slide_id)
    return entries, labels, owners


def labelled(slides: list[SlideTiles], split: str) -> list[SlideTiles]:
    chosen = [s for s in slides if s.split == split and s.label is not None]
    return chosen


def require_two_classes(slides: list[SlideTiles], split: str) -> None:
    labels = {s.label for s in slides}
    if len(slides) == 0:
        raise UserError(f"no labelled slides in the {split} set (tile the slides and check the split first)")
    if labels != {0, 1}:
        raise UserError(f"the {split} set needs both prognosis classes (poor: event within 12 months, "
                        f"good: event-free beyond 36 months); it has only {sorted(labels)}")
