"""Tiny synthetic slides shared by the slide tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slides")


@pytest.fixture(scope="session")
def slide_a(slide_dir):
    """3072 x 3072 px at 0.25 um/px (40x), center A, aggressive, with a tumour ROI."""
    return write_synthetic_slide(slide_dir / "pat_a.svs", width=3072, height=3072, aggressiveness=1.5,
                                 center="A", seed=1, roi_path=slide_dir / "pat_a.geojson")


@pytest.fixture(scope="session")
def slide_b(slide_dir):
    """Same size, center B, not aggressive (more immune infiltrate), with a tumour ROI."""
    return write_synthetic_slide(slide_dir / "pat_b.svs", width=3072, height=3072, aggressiveness=-1.5,
                                 center="B", seed=2, roi_path=slide_dir / "pat_b.geojson")


@pytest.fixture(scope="session")
def blank_slide(slide_dir) -> Path:
    """A valid Aperio-style TIFF with no tissue at all (white glass)."""
    import tifffile

    path = slide_dir / "blank.svs"
    img = np.full((1024, 1024, 3), 243, np.uint8)
    desc = "Aperio Image Library v12.0.15 \r\n1024x1024 (256x256) JPEG/RGB Q=80|AppMag = 20|MPP = 0.5"
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(256, 256), compression="jpeg", photometric="rgb", description=desc, metadata=None)
        tw.write(img[::4, ::4].copy(), tile=(256, 256), compression="jpeg", photometric="rgb",
                 description=desc, metadata=None)
    return path
