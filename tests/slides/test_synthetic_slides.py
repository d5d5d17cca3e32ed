"""Synthetic slides: opened by OpenSlide as Aperio, consistent pyramid, biology follows the latent."""

from __future__ import annotations

import numpy as np
import openslide

from pathomics_desktop.demo.synthetic_slides import center_stain, write_synthetic_slide
from pathomics_desktop.slides.reader import read_slide_metadata
from pathomics_desktop.slides.roi import load_rois


def test_openslide_reads_synthetic_slide_as_aperio(slide_a):
    s = openslide.OpenSlide(slide_a.path)
    assert s.properties["openslide.vendor"] == "aperio"
    assert s.dimensions == (3072, 3072)
    assert s.level_count >= 2 and s.level_downsamples[1] == 4.0
    assert float(s.properties["openslide.mpp-x"]) == 0.25
    assert float(s.properties["openslide.objective-power"]) == 40
    assert s.properties["aperio.Synthetic"] == "yes"  # always labelled synthetic
    s.close()


def test_pyramid_levels_agree(slide_a):
    """Level 1 shows the same tissue as a 4x downsampled level 0."""
    import cv2

    s = openslide.OpenSlide(slide_a.path)
    lvl0 = np.asarray(s.read_region((1024, 1024), 0, (1024, 1024)))[..., :3]
    lvl1 = np.asarray(s.read_region((1024, 1024), 1, (256, 256)))[..., :3].astype(float)
    small = cv2.resize(lvl0, (256, 256), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(small - lvl1).mean() < 6.0
    s.close()


def test_aggressiveness_drives_morphology(slide_a, slide_b):
    """Aggressive: more dense stroma and necrosis; indolent: more immune infiltrate."""
    agg, ind = slide_a.class_fractions, slide_b.class_fractions
    assert agg["dense_stroma"] + agg["necrosis"] > ind["dense_stroma"] + ind["necrosis"]
    assert ind["immune"] > agg["immune"]


def test_tumour_nuclei_larger_and_darker_when_aggressive(slide_dir):
    """Same layout seed, latent +2 vs -2: tumour texture holds more very dark (nuclear) pixels."""
    from pathomics_desktop.demo import synthetic_slides as ss

    def dark_fraction(a: float) -> float:
        rng = np.random.default_rng(5)
        ch, _ = ss._render_class(ss.TUMOUR, rng, 0.25, a)
        return float((ch > 0.6).mean())

    assert dark_fraction(2.0) > 1.3 * dark_fraction(-2.0)


def test_center_stain_is_deterministic_and_differs():
    assert center_stain("A") == center_stain("A")
    a, b = center_stain("A"), center_stain("B")
    assert np.abs(np.subtract(a.h_vector, b.h_vector)).max() > 0.005 or abs(a.h_intensity - b.h_intensity) > 0.02


def test_tumour_roi_inside_slide(slide_a, slide_dir):
    rois = load_rois(slide_dir / "pat_a.geojson", slide_size=(slide_a.width, slide_a.height))
    assert len(rois) >= 1 and rois[0].classification == "Tumor"
    minx, miny, maxx, maxy = rois[0].geometry.bounds
    assert 0 <= minx < maxx <= slide_a.width and 0 <= miny < maxy <= slide_a.height
    assert rois[0].geometry.area > 0.05 * slide_a.width * slide_a.height


def test_missing_and_implausible_mpp_are_written_as_asked(slide_dir):
    p1 = slide_dir / "no_mpp.svs"
    write_synthetic_slide(p1, width=512, height=512, mpp=None, app_mag=40, seed=3)
    assert read_slide_metadata(p1).mpp_status == "missing"
    p2 = slide_dir / "bad_mpp.svs"
    write_synthetic_slide(p2, width=512, height=512, mpp=0.23, app_mag=20, seed=3)
    meta = read_slide_metadata(p2)
    assert meta.mpp_x == 0.23 and meta.objective_power == 20 and meta.mpp_status == "implausible"


def test_roi_can_be_written_separately_with_same_geometry(slide_a, slide_dir, tmp_path):
    from pathomics_desktop.demo.synthetic_slides import write_tumour_roi_geojson

    bbox = write_tumour_roi_geojson(tmp_path / "again.geojson", width=3072, height=3072, aggressiveness=1.5, seed=1)
    assert bbox == slide_a.roi_bbox
    a = load_rois(slide_dir / "pat_a.geojson")[0].geometry
    b = load_rois(tmp_path / "again.geojson")[0].geometry
    assert a.equals(b)


def test_many_slides_in_parallel_processes(tmp_path):
    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slides

    specs = [{"path": tmp_path / f"p{i}.svs", "width": 1024, "height": 1024, "aggressiveness": z,
              "center": c, "seed": i, "roi_path": tmp_path / f"p{i}.geojson"}
             for i, (z, c) in enumerate([(0.5, "A"), (-0.5, "B"), (1.0, "C")])]
    infos = write_synthetic_slides(specs, processes=2)
    assert [i.center for i in infos] == ["A", "B", "C"]
    for info in infos:
        assert openslide.OpenSlide(info.path).properties["openslide.vendor"] == "aperio"


def test_thumbnail(slide_a, tmp_path):
    from pathomics_desktop.slides.reader import read_thumbnail, write_thumbnail

    thumb = read_thumbnail(slide_a.path, 256)
    assert thumb.shape == (256, 256, 3) and thumb.dtype == np.uint8
    assert write_thumbnail(slide_a.path, tmp_path / "t.png", 128).stat().st_size > 100
