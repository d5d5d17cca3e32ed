"""The whole-slide viewer, driven offscreen on real synthetic pyramidal TIFFs (OpenSlide /
stored JPEG tiles) and a real SQLite demo registry."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest

from tests.ui.helpers import shown_view


@pytest.fixture(scope="module")
def slide_4096(tmp_path_factory):
    """A SYNTHETIC 4096 x 4096 px slide at 0.25 um/px (levels 4096, 1024, 256)."""
    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("viewer")
    return write_synthetic_slide(folder / "v4096.svs", width=4096, height=4096, aggressiveness=0.8, center="A",
                                 seed=4, mpp=0.25, app_mag=40, roi_path=folder / "v4096.geojson")


@pytest.fixture
def viewer(qtbot):
    from pathomics_desktop.ui.views.viewer import SlideViewerView

    view = SlideViewerView()
    qtbot.addWidget(view)
    view.resize(1100, 760)
    view.show()
    qtbot.waitExposed(view)
    yield view
    view.close_slide()


def wait_drawn(qtbot, view, timeout=15000):
    qtbot.waitUntil(lambda: view.canvas.is_complete(), timeout=timeout)


def expected_visible(canvas, level):
    """Tiles of ``level`` overlapping the viewport, from Qt's own view -> scene mapping and
    the level's size (not the viewer's tile functions)."""
    from PySide6.QtCore import QPoint

    tl = canvas.mapToScene(QPoint(0, 0))
    br = canvas.mapToScene(QPoint(canvas.viewport().width(), canvas.viewport().height()))
    w, h = canvas.grid.level_dimensions[level]
    d = canvas.grid.downsamples[level]
    t = 256
    out = set()
    for c in range(math.ceil(w / t)):
        for r in range(math.ceil(h / t)):
            x0, y0, x1, y1 = c * t * d, r * t * d, min((c + 1) * t, w) * d, min((r + 1) * t, h) * d
            if x0 < br.x() and x1 > tl.x() and y0 < br.y() and y1 > tl.y():
                out.add((level, c, r))
    return out


def test_viewer_draws_the_visible_tiles_read_in_worker_threads(qtbot, viewer, slide_4096):
    viewer.show_file(slide_4096.path)
    canvas = viewer.canvas
    wait_drawn(qtbot, viewer)
    for center, ds, level in (((2000.0, 1500.0), 1.7, 0), ((1200.0, 2900.0), 5.0, 1), ((3000.0, 800.0), 0.6, 0)):
        canvas.set_view(center, ds)
        assert canvas.target_level() == level
        wait_drawn(qtbot, viewer)
        drawn = {k[:3] for k in canvas.last_paint["drawn"]}
        assert drawn == expected_visible(canvas, level)
    log = viewer.loader.read_log
    gui = threading.get_ident()
    assert log and all(thread != gui for _key, thread in log)
    read = {k[:3] for k, _t in log}
    assert drawn <= read  # every drawn tile came from a worker read
    snap = viewer.snapshot()
    assert snap["tiles_drawn"] == len(drawn) == snap["tiles_visible"]
    assert snap["reader"] == "stored-jpeg" and snap["synthetic"] is True


def test_missing_tiles_are_covered_by_a_coarser_level(qtbot, viewer, slide_4096):
    viewer.show_file(slide_4096.path)
    canvas = viewer.canvas
    wait_drawn(qtbot, viewer)
    assert canvas.target_level() == 2 or canvas.target_level() == 1
    canvas.set_view((2048.0, 2048.0), 1.0)  # level 0: nothing of it cached yet
    canvas.viewport().repaint()  # paints now, before any worker result is delivered
    lp = canvas.last_paint
    assert lp["level"] == 0 and lp["drawn"] == [] and lp["fallback"] == len(lp["visible"]) > 0
    image = canvas.viewport().grab().toImage()
    centre = image.pixelColor(image.width() // 2, image.height() // 2)
    assert (centre.red(), centre.green(), centre.blue()) != (255, 255, 255)  # never blank: stretched tissue
    wait_drawn(qtbot, viewer)
    assert {k[:3] for k in canvas.last_paint["drawn"]} == expected_visible(canvas, 0)


def test_stale_requests_are_dropped(qtbot, viewer, slide_4096):
    viewer.show_file(slide_4096.path)
    wait_drawn(qtbot, viewer)
    loader = viewer.loader
    canvas = viewer.canvas
    for k in range(12):  # pans faster than the tiles arrive
        canvas.set_view((300.0 + 300.0 * k, 300.0 + 280.0 * k), 0.5)
    wait_drawn(qtbot, viewer)
    final = {k[:3] for k in canvas.last_paint["drawn"]}
    assert final == expected_visible(canvas, 0)
    read = [k[:3] for k, _t in loader.read_log]
    assert loader.dropped > 0
    assert len(read) == len(set(read))  # no tile read twice


def test_wheel_zoom_keeps_the_point_under_the_cursor(qtbot, viewer, slide_4096):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    viewer.show_file(slide_4096.path)
    canvas = viewer.canvas
    canvas.set_view((2100.0, 1900.0), 4.0)
    for pos, notches in ((QPointF(213.0, 171.0), 1), (QPointF(500.0, 420.0), -1), (QPointF(90.0, 300.0), 2)):
        before = canvas.mapToScene(pos.toPoint())
        ds = canvas.downsample()
        event = QWheelEvent(pos, canvas.viewport().mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * notches),
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                            False)
        QApplication.sendEvent(canvas.viewport(), event)
        expected_ds = ds / (2 ** 0.5) ** notches
        assert canvas.downsample() == pytest.approx(expected_ds, rel=1e-9)
        after = canvas.mapToScene(pos.toPoint())
        # scroll positions are whole screen pixels: the point stays within one pixel
        assert abs(after.x() - before.x()) <= expected_ds + 1e-6
        assert abs(after.y() - before.y()) <= expected_ds + 1e-6


def test_scale_bar_and_cursor_position(qtbot, viewer, slide_4096):
    from PySide6.QtCore import QPoint

    viewer.show_file(slide_4096.path)
    canvas = viewer.canvas
    for ds in (0.5, 1.3, 7.0):
        canvas.set_view((2000.0, 2000.0), ds)
        snap = viewer.snapshot()
        assert snap["mpp"] == 0.25
        assert snap["scale_bar_um"] == pytest.approx(snap["scale_bar_px"] * 0.25 * snap["downsample"], rel=1e-5)
    qtbot.mouseMove(canvas.viewport(), QPoint(100, 80))
    p = canvas.mapToScene(QPoint(100, 80))
    assert viewer.cursor_label.text() == f"x {p.x():,.0f}  y {p.y():,.0f} px (level 0)"


def test_overview_click_moves_the_view(qtbot, viewer, slide_4096):
    from PySide6.QtCore import QPoint, Qt

    viewer.show_file(slide_4096.path)
    viewer.canvas.set_view((1000.0, 1000.0), 1.0)
    ov = viewer.overview
    rect, k = ov._frame()
    target = QPoint(int(rect.left() + 3000 * k), int(rect.top() + 1200 * k))
    qtbot.mouseClick(ov, Qt.MouseButton.LeftButton, pos=target)
    cx, cy = viewer.canvas.center()
    assert abs(cx - (target.x() - rect.left()) / k) <= 2 and abs(cy - (target.y() - rect.top()) / k) <= 2
    box = ov.viewport_box()
    assert abs(box.center().x() - target.x()) <= 1.5 and abs(box.center().y() - target.y()) <= 1.5


# -- registered slides: ROI, tile index, predictions ------------------------------------
@pytest.fixture
def predicted_slide(demo_project):
    """Slide 1 of the demo project tiled (128-px tiles) with a predictions Parquet of a
    run whose spec asks for Macenko and 64-px inputs, and one Grad-CAM map."""
    import pandas as pd

    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.slides.jobs import tile_index_path
    from pathomics_desktop.slides.tiling import TilingParams, tile_slide

    registry = open_project_registry(demo_project)
    with registry.session() as session:
        from pathomics_desktop.registry.models import Slide

        slide = session.get(Slide, 1)
        path = slide.path
    registry.dispose()
    tile_slide(path, demo_project.folder("tiles"), params=TilingParams(tile_size=128, estimate_stain=False),
               index_path=tile_index_path(demo_project, 1))
    index = pd.read_parquet(tile_index_path(demo_project, 1))
    prob = ((index["x"] * 7 + index["y"] * 3) % 1000 / 1000.0).astype("float32")
    preds = pd.DataFrame({"slide_id": 1, "x": index["x"], "y": index["y"], "prob": prob,
                          "pred": (prob >= 0.5).astype("int8")})
    folder = demo_project.root / "predictions" / "testrun"
    folder.mkdir(parents=True)
    preds.to_parquet(folder / "1.parquet", index=False)
    run = demo_project.root / "models" / "testrun"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run": "testrun", "stain": "macenko", "input_size": 64}))
    cam_dir = demo_project.root / "gradcam" / "testrun" / "1"
    cam_dir.mkdir(parents=True)
    first = index.iloc[len(index) // 2]
    cam = np.outer(np.linspace(0, 1, 64), np.linspace(1, 0, 64)).astype(np.float32)
    np.save(cam_dir / f"tile_{int(first.x)}_{int(first.y)}.npy", cam)
    return {"path": path, "index": index, "preds": preds, "cam_tile": (int(first.x), int(first.y)), "cam": cam}


@pytest.fixture
def context_viewer(qtbot, demo_context):
    from pathomics_desktop.ui.views.viewer import SlideViewerView

    view = shown_view(qtbot, SlideViewerView(), demo_context, (1100, 760))
    qtbot.waitUntil(lambda: not view.busy(), timeout=15000)
    yield view
    view.close_slide()


def test_click_selects_the_tile_with_its_prediction_and_model_input(qtbot, context_viewer, predicted_slide):
    import cv2
    import openslide
    import torch
    from PySide6.QtCore import QPointF, Qt

    from pathomics_desktop.slides.stain import macenko_normalize

    view = context_viewer
    view.show_slide(1)
    qtbot.waitUntil(lambda: view.slide is not None and not view.busy(), timeout=15000)
    index, preds = predicted_slide["index"], predicted_slide["preds"]
    cx, cy = predicted_slide["cam_tile"]
    size = int(index["read_size"].iloc[0])
    view.canvas.set_view((cx + size / 2, cy + size / 2), 0.5)
    click = QPointF(cx + 0.8 * size, cy + 0.3 * size)
    qtbot.mouseClick(view.canvas.viewport(), Qt.MouseButton.LeftButton, pos=view.canvas.mapFromScene(click))
    pos = view.canvas.mapToScene(view.canvas.mapFromScene(click))
    contains = index[(index.x <= pos.x()) & (pos.x() < index.x + index.read_size)
                     & (index.y <= pos.y()) & (pos.y() < index.y + index.read_size)]
    assert len(contains) == 1
    sel = view.selected
    assert (sel["x"], sel["y"], sel["size"]) == (int(contains.x.iloc[0]), int(contains.y.iloc[0]), size)
    expected = preds[(preds.x == sel["x"]) & (preds.y == sel["y"])]["prob"].iloc[0]
    assert sel["predictions"]["testrun"]["prob"] == pytest.approx(float(expected), abs=0)
    assert f"P(poor) = {expected:.3f}" in view.tile_title.text()
    qtbot.waitUntil(lambda: bool(view.selected_images), timeout=60000)
    images = view.selected_images
    # the model's view, computed another way: OpenSlide read, area resize, Macenko
    slide = openslide.OpenSlide(predicted_slide["path"])
    raw = np.asarray(slide.read_region((sel["x"], sel["y"]), 0, (size, size)))[..., :3]
    slide.close()
    raw = cv2.resize(np.ascontiguousarray(raw), (64, 64), interpolation=cv2.INTER_AREA)
    normalised = macenko_normalize(torch.from_numpy(raw[None].copy())).images[0].numpy()
    assert images["model_input"].shape == (64, 64, 3) and images["stain"] == "macenko"
    assert np.abs(images["model_input"].astype(int) - normalised.astype(int)).mean() < 3.0
    assert np.abs(images["model_input"].astype(int) - raw.astype(int)).mean() > 3.0  # normalisation did act
    assert np.array_equal(images["cam"], predicted_slide["cam"]) and images["cam_png"][:4] == b"\x89PNG"
    snap = view.snapshot()
    assert snap["selected_tile"]["x"] == sel["x"] and snap["selected_tile"]["gradcam"] is True


def test_heatmap_colour_is_the_colour_map_lookup(qtbot, context_viewer, predicted_slide):
    from pathomics_desktop.learning.gradcam import jet_colormap

    view = context_viewer
    view.show_slide(1)
    qtbot.waitUntil(lambda: view.slide is not None and not view.busy(), timeout=15000)
    view.set_overlay("probability", True, opacity=0.4, colormap="jet", source="testrun")
    layer = view.layers["probability"]
    assert layer.isVisible() and layer.opacity() == pytest.approx(0.4)
    image = layer.pixmap().toImage()
    preds = predicted_slide["preds"]
    size = int(predicted_slide["index"]["read_size"].iloc[0])
    x0, y0 = int(preds.x.min()), int(preds.y.min())
    for row in preds.itertuples():
        colour = image.pixelColor((row.x - x0) // size, (row.y - y0) // size)
        expected = jet_colormap(np.rint(float(row.prob) * 255) / 255)
        assert [colour.red(), colour.green(), colour.blue(), colour.alpha()] == [*expected.tolist(), 255]
    covered = {((r.x - x0) // size, (r.y - y0) // size) for r in preds.itertuples()}
    empty = [(c, r) for c in range(image.width()) for r in range(image.height()) if (c, r) not in covered]
    assert all(image.pixelColor(c, r).alpha() == 0 for c, r in empty)
    # the probability under a slide point is that tile's prediction
    view.set_overlay("probability", True, colormap="magma")
    assert layer.colormap == "magma" and view.prob_control.colorbar.colormap == "magma"
    snap = view.snapshot()
    assert snap["overlays"]["probability"] == {"visible": True, "opacity": 0.4, "colormap": "magma",
                                               "source": "testrun", "available": True}
    assert snap["heatmap"]["cells"] == len(preds) and snap["prediction_runs"] == ["testrun"]
    assert snap["gradcam_runs"] == ["testrun"]


def test_geojson_export_then_import_round_trips_the_roi(qtbot, context_viewer, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from pathomics_desktop.slides.jobs import roi_path_for

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: shown.append((title, text)))
    from pathomics_desktop.slides.roi import load_rois

    view = context_viewer
    view.show_slide(2)
    qtbot.waitUntil(lambda: view.slide is not None and not view.busy(), timeout=15000)
    original = [r.geometry for r in view.slide.rois]
    assert original and view.layers["roi"] is not None  # the demo's QuPath ROI
    own = roi_path_for(view.ctx.project, 2)
    before = own.read_bytes() if own.exists() else None
    # a ROI with a hole, imported into the registry, then exported and imported again
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
        "classification": {"name": "Tumor", "color": [200, 0, 0]}}, "geometry": {"type": "Polygon", "coordinates": [
            [[100, 100], [900, 100], [900, 900], [100, 900], [100, 100]],
            [[400, 400], [600, 400], [600, 600], [400, 600], [400, 400]]]}}]}
    holed = tmp_path / "holed.geojson"
    holed.write_text(json.dumps(doc))
    view.import_roi_file(holed)
    qtbot.waitUntil(lambda: not view.busy(), timeout=15000)
    assert shown == []
    assert roi_path_for(view.ctx.project, 2).is_file()
    item = view.layers["roi"].items[0]
    from PySide6.QtCore import QPointF

    assert item.path().contains(QPointF(200, 200)) and not item.path().contains(QPointF(500, 500))  # the hole
    out = view.export_roi_file(tmp_path / "out.geojson")
    again = load_rois(out)
    assert len(again) == 1 and again[0].geometry.equals(load_rois(holed)[0].geometry)
    assert again[0].classification == "Tumor"
    view.import_roi_file(out)
    qtbot.waitUntil(lambda: not view.busy(), timeout=15000)
    assert view.slide.rois[0].geometry.equals(load_rois(holed)[0].geometry)
    # undo twice: back to the demo ROI, byte for byte
    view.ctx.undo_stack.undo()
    view.ctx.undo_stack.undo()
    assert (own.read_bytes() if own.exists() else None) == before
    assert [r.geometry.equals(g) for r, g in zip(view.slide.rois, original)] == [True] * len(original)


def test_bad_roi_file_is_refused_with_a_message(qtbot, context_viewer, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from pathomics_desktop.slides.jobs import roi_path_for

    view = context_viewer
    view.show_slide(2)
    qtbot.waitUntil(lambda: view.slide is not None and not view.busy(), timeout=15000)
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: shown.append((title, text)))
    own = roi_path_for(view.ctx.project, 2)
    before = own.read_bytes() if own.exists() else None
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    view.import_roi_file(bad)
    qtbot.waitUntil(lambda: bool(shown), timeout=15000)
    assert shown[0][0] == "ROI not imported" and "malformed JSON" in shown[0][1] and str(bad) in shown[0][1]
    assert (own.read_bytes() if own.exists() else None) == before  # nothing half-written
    assert view.ctx.undo_stack.count() == 0


def test_mpp_override_from_the_registry_sets_the_scale_bar(qtbot, context_viewer):
    from pathomics_desktop.registry.slides import set_mpp_override

    set_mpp_override(context_viewer.ctx.registry, 3, 0.3, user="tester", reason="recalibrated")
    view = context_viewer
    view.show_slide(3)
    qtbot.waitUntil(lambda: view.slide is not None and not view.busy(), timeout=15000)
    view.canvas.set_view((500.0, 500.0), 2.0)
    snap = view.snapshot()
    assert snap["mpp"] == 0.3 and snap["mpp_source"] == "override"
    assert snap["scale_bar_um"] == pytest.approx(snap["scale_bar_px"] * 0.3 * snap["downsample"], rel=1e-5)


def test_prepare_screenshot_shows_a_tiled_slide_with_roi_and_heatmap_and_writes_nothing(qtbot, context_viewer):
    from pathomics_desktop.jobs.core import JobContext
    from pathomics_desktop.slides.jobs import tile_index_path, tiling_job

    view = context_viewer
    project = view.ctx.project
    tiling_job(project, {"slide_ids": [2], "tile_size": 128}, JobContext())
    audit_before = _audit_count(view.ctx.registry)
    view.prepare_screenshot()
    qtbot.waitUntil(lambda: view.slide is not None and not view.busy(), timeout=60000)
    snap = view.snapshot()
    # no predictions in the demo template: the first slide with a tile index (2) and its
    # tissue fraction are shown; slide 1 is not tiled for the picture, nothing is written
    assert snap["slide_id"] == 2 and snap["n_tiles"] > 0
    assert not tile_index_path(project, 1).exists() and _audit_count(view.ctx.registry) == audit_before
    assert snap["overlays"]["roi"]["visible"] and snap["overlays"]["probability"]["visible"]
    assert snap["overlays"]["probability"]["source"] == "tissue"
    assert snap["heatmap"]["label"] == "tissue fraction (no predictions yet)"
    assert snap["heatmap"]["cells"] == snap["n_tiles"]
    assert snap["tiles_ready"] and snap["tiles_visible"] > 0
    json.dumps(snap)


def _audit_count(registry) -> int:
    from sqlalchemy import func, select

    from pathomics_desktop.registry.models import AuditEvent

    with registry.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent))


def test_refresh_reloads_the_open_slide_and_keeps_the_view(qtbot, context_viewer, predicted_slide):
    import shutil

    view = context_viewer
    shutil.rmtree(view.ctx.project.root / "predictions")
    view.show_slide(1)
    qtbot.waitUntil(lambda: view.slide is not None and not view.busy(), timeout=15000)
    assert view.slide.predictions == {}
    view.canvas.set_view((700.0, 600.0), 1.5)
    folder = view.ctx.project.root / "predictions" / "later"
    folder.mkdir(parents=True)
    predicted_slide["preds"].to_parquet(folder / "1.parquet", index=False)
    view.refresh()
    qtbot.waitUntil(lambda: not view.busy() and "later" in view.slide.predictions, timeout=15000)
    assert view.canvas.center() == pytest.approx((700.0, 600.0), abs=2 * 1.5)
    assert view.canvas.downsample() == pytest.approx(1.5)


# -- painting cost: fast while moving, smooth when still; tiles in batches -------------
def _settled(canvas) -> bool:
    return canvas.is_complete() and canvas.last_paint["smooth"] and not canvas.moving


def test_paints_fast_while_moving_then_once_smoothly_when_still(qtbot, viewer, slide_4096):
    from pathomics_desktop.ui.views.viewer.scene import SETTLE_MS

    viewer.show_file(slide_4096.path)
    canvas = viewer.canvas
    view = ((2000.0, 1500.0), 2.5)  # level 0 decoded at 1/2, drawn at 0.8 screen px per pixel
    canvas.set_view(*view)
    qtbot.waitUntil(lambda: _settled(canvas), timeout=15000)
    smooth = canvas.viewport().grab().toImage()
    canvas.set_view(*view)  # a move to the same place: every tile is cached
    canvas.viewport().repaint()
    assert canvas.moving and canvas.is_complete() and canvas.last_paint["smooth"] is False
    fast = canvas.viewport().grab().toImage()
    n0 = len(canvas.paint_log)
    qtbot.waitUntil(lambda: _settled(canvas), timeout=15000)
    qtbot.wait(3 * SETTLE_MS)
    after = list(canvas.paint_log)[n0:]
    # without any input: exactly one more paint, the smooth one, and nothing after it
    assert [p[3] for p in after] == [True]
    again = canvas.viewport().grab().toImage()
    a, b, c = (np.frombuffer(im.constBits(), np.uint8).reshape(im.height(), im.bytesPerLine()).astype(int)
               for im in (smooth, fast, again))
    assert np.array_equal(a, c)  # the settled frame is the smooth frame of before
    diff = np.abs(a - b)
    assert diff.max() > 0  # nearest-neighbour scaling really was used while moving
    assert diff.mean() < 12  # ... of the same tiles at the same places


def test_tiles_read_meanwhile_arrive_in_one_batch_with_one_repaint(qtbot, viewer, slide_4096):
    import time

    from pathomics_desktop.ui.views.viewer.scene import SETTLE_MS

    viewer.show_file(slide_4096.path)
    canvas, loader = viewer.canvas, viewer.loader
    qtbot.waitUntil(lambda: _settled(canvas) and loader.pending() == 0, timeout=15000)
    batches = []
    loader.tiles_ready.connect(lambda keys: batches.append(list(keys)))
    canvas.set_view((2048.0, 2048.0), 1.0)  # level 0: nothing of it cached
    canvas.viewport().repaint()  # the move's own paint (coarser tiles stretched)
    wanted = {k[:3] for k in canvas.visible_tiles()}
    n_batch, n_paint = len(loader.batch_log), len(canvas.paint_log)
    # the workers read every tile while the GUI thread handles no event at all
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with loader._cond:
            if len(loader._arrived) == len(wanted):
                break
        time.sleep(0.01)
    time.sleep(SETTLE_MS / 1000.0 + 0.05)  # and the view has been still for longer than SETTLE_MS
    qtbot.waitUntil(lambda: len(canvas.paint_log) > n_paint, timeout=5000)
    qtbot.wait(2 * SETTLE_MS)
    assert len(batches) == 1 and {k[:3] for k in batches[0]} == wanted  # one signal for all
    new = list(loader.batch_log)[n_batch:]
    assert [n for _s, _e, n in new] == [len(wanted)]
    stored = new[0][1]
    paints = [p for p in list(canvas.paint_log)[n_paint:] if p[0] >= stored]
    # one repaint for the whole batch (the last tile of a still view: painted smoothly at once)
    assert len(paints) == 1 and paints[0][3] is True and paints[0][6] == len(wanted)
    assert canvas.is_complete()
    assert {k[:3] for k in canvas.last_paint["drawn"]} == wanted == expected_visible(canvas, 0)


def test_reader_threads_run_at_a_lower_cpu_priority(qtbot, viewer, slide_4096):
    import os

    from pathomics_desktop.ui.views.viewer.tile_loader import WORKER_NICE

    viewer.show_file(slide_4096.path)
    threads = viewer.loader._threads
    assert len(threads) == viewer.workers == 2
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    qtbot.waitUntil(lambda: all(os.getpriority(os.PRIO_PROCESS, t.native_id) == max(gui, WORKER_NICE)
                                for t in threads), timeout=5000)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == gui  # the GUI thread keeps its own


def test_opening_a_slide_freezes_the_heap_and_later_garbage_is_still_collected(qtbot, viewer, slide_4096):
    import gc
    import weakref

    gc.unfreeze()
    viewer.show_file(slide_4096.path)
    assert gc.get_freeze_count() > 0
    freed = []

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle made after the freeze
    weakref.finalize(a, freed.append, "a")
    del a, b
    gc.collect()
    assert freed == ["a"]


def test_overview_picture_is_composed_once_not_per_move(qtbot, viewer, slide_4096):
    viewer.show_file(slide_4096.path)
    wait_drawn(qtbot, viewer)
    ov = viewer.overview
    ov.repaint()
    first = ov._picture
    top = viewer.loader.top_level
    assert first is not None and viewer.loader.cached_count(top) == len(
        viewer.canvas.grid.tiles_in_rect(top, 0, 0, *viewer.canvas.grid.size))
    for k in range(4):
        viewer.canvas.set_view((800.0 + 700.0 * k, 900.0 + 500.0 * k), 1.5)
        ov.repaint()
        assert ov._picture is first
    # the picture is the coarsest level scaled down: the same mean colour as its tiles

    def rgb(im):
        im = im.convertToFormat(im.Format.Format_RGB32)
        arr = np.frombuffer(im.constBits(), np.uint8).reshape(im.height(), im.bytesPerLine() // 4, 4)
        return arr[:, :im.width(), :3].reshape(-1, 3).astype(float)

    grid = viewer.canvas.grid
    tiles = [rgb(viewer.loader.any_entry(top, c, r)[1]) for c, r in grid.tiles_in_rect(top, 0, 0, *grid.size)]
    mosaic_mean = np.concatenate(tiles).mean(axis=0)  # every tile decoded at the same scale
    assert {viewer.loader.any_entry(top, c, r)[0] for c, r in grid.tiles_in_rect(top, 0, 0, *grid.size)} == {1}
    assert np.abs(rgb(first).mean(axis=0) - mosaic_mean).max() < 3.0
