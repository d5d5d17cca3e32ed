"""The slide QC queue on the demo project (4 SYNTHETIC slides): pending first, the tissue
mask drawn over the slide, accept / exclude with a reason through the slide QC service, and
undo / redo of each decision."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.helpers import shown_view


@pytest.fixture
def qc_view(qtbot, demo_context):
    from pathomics_desktop.ui.views.qc import QCQueueView

    view = shown_view(qtbot, QCQueueView(), demo_context, (1000, 620))
    qtbot.waitUntil(lambda: len(view.model.rows) == 4, timeout=10000)
    return view


def _registry_qc(ctx, slide_id):
    from pathomics_desktop.registry.slides import list_slides

    row = next(r for r in list_slides(ctx.registry) if r["id"] == slide_id)
    return row["qc_status"], row["qc_reason"]


def _wait_rows(qtbot, view, statuses):
    qtbot.waitUntil(lambda: {r.slide_id: r.qc_status for r in view.model.rows} == statuses, timeout=10000)


def _image_array(image):
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    return np.frombuffer(bytes(image.constBits()), np.uint8).reshape(h, stride)[:, :3 * w].reshape(h, w, 3)


def test_pending_slides_come_first(qtbot, demo_context):
    from pathomics_desktop.registry.slides import set_slide_qc
    from pathomics_desktop.ui.views.qc import QCQueueView

    set_slide_qc(demo_context.registry, 1, "ok")
    set_slide_qc(demo_context.registry, 3, "excluded", "pen marks over tumour")
    view = QCQueueView()
    qtbot.addWidget(view)
    view.set_context(demo_context)
    qtbot.waitUntil(lambda: len(view.model.rows) == 4, timeout=10000)
    assert [(r.slide_id, r.qc_status) for r in view.model.rows] == [(2, "pending"), (4, "pending"),
                                                                     (3, "excluded"), (1, "ok")]
    snap = view.snapshot()
    assert snap["counts"] == {"pending": 2, "ok": 1, "excluded": 1, "failed": 0}
    assert [r["patient"] for r in snap["rows"]] == ["SYN-A-0002", "SYN-A-0004", "SYN-A-0003", "SYN-A-0001"]
    assert snap["rows"][2]["qc_reason"] == "pen marks over tumour"


def test_the_tissue_mask_is_drawn_over_the_slide(qtbot, qc_view):
    from pathomics_desktop.registry.slide_list import PREVIEW_SIZE
    from pathomics_desktop.slides.reader import open_slide
    from pathomics_desktop.slides.tissue import TissueMaskParams, compute_tissue_mask
    from pathomics_desktop.ui.views.qc import MASK_RGBA

    view = qc_view
    view.prepare_screenshot()
    qtbot.waitUntil(lambda: view.preview is not None and not view.busy(), timeout=20000)
    slide_id = view.selected_slide_id()
    assert slide_id == view.model.rows[0].slide_id
    # the tiling mask function, called directly at the preview's scale (1024 px slide / 512)
    from pathomics_desktop.registry.slides import list_slides

    path = next(r["path"] for r in list_slides(view.ctx.registry) if r["id"] == slide_id)
    handle = open_slide(path)
    try:
        expected = compute_tissue_mask(handle, TissueMaskParams(mask_downsample=1024 / PREVIEW_SIZE)).mask
    finally:
        handle.close()
    preview = view.preview
    assert preview["size"] == (512, 512) and preview["downsample"] == 2.0
    assert preview["mask_pixels"] == int(expected.sum()) > 0
    assert preview["tissue_fraction"] == pytest.approx(expected.mean())
    plain, overlay = _image_array(preview["plain"]).astype(float), _image_array(preview["overlay"]).astype(float)
    # inside the tissue (away from the outline): source-over blend with the tint, alpha = 110/255
    inner = expected & np.roll(expected, 6, 0) & np.roll(expected, -6, 0) & np.roll(expected, 6, 1) & np.roll(
        expected, -6, 1)
    alpha = MASK_RGBA[3] / 255.0
    blended = plain[inner] * (1 - alpha) + np.array(MASK_RGBA[:3], float) * alpha
    assert np.abs(overlay[inner] - blended).max() <= 2.0
    far = ~expected & ~np.roll(expected, 6, 0) & ~np.roll(expected, -6, 0) & ~np.roll(expected, 6, 1) & ~np.roll(
        expected, -6, 1)
    assert np.array_equal(overlay[far], plain[far])  # background untouched
    assert view.snapshot()["selected"]["mask_shown"] is True
    assert view.image_label.pixmap() is not None and not view.image_label.pixmap().isNull()


def test_exclude_needs_a_reason_and_undo_restores_the_previous_status(qtbot, qc_view):
    from pathomics_desktop.registry.service import audit_history

    view, ctx = qc_view, qc_view.ctx
    assert view.select_slide(2)
    view.reason.setCurrentText("")
    assert view.set_qc("excluded") is False
    assert view.last_message.startswith("Excluding a slide needs a reason")
    assert _registry_qc(ctx, 2) == ("pending", None) and ctx.undo_stack.count() == 0

    view.reason.setCurrentText("out of focus")
    view.exclude_button.click()
    assert _registry_qc(ctx, 2) == ("excluded", "out of focus")
    _wait_rows(qtbot, view, {1: "pending", 2: "excluded", 3: "pending", 4: "pending"})
    assert view.selected_slide_id() == 3  # on to the next pending slide
    events = [e for e in audit_history(ctx.registry, table="slides", record_id="2") if e.field == "qc_status"]
    assert [(e.old_value, e.new_value, e.reason, e.user) for e in events] == [
        ("pending", "excluded", "out of focus", "tester")]

    view.accept_button.click()
    assert _registry_qc(ctx, 3) == ("ok", None)
    assert ctx.undo_stack.count() == 2

    ctx.undo_stack.undo()
    assert _registry_qc(ctx, 3) == ("pending", None)
    ctx.undo_stack.undo()
    assert _registry_qc(ctx, 2) == ("pending", None)
    _wait_rows(qtbot, view, {1: "pending", 2: "pending", 3: "pending", 4: "pending"})
    ctx.undo_stack.redo()
    assert _registry_qc(ctx, 2) == ("excluded", "out of focus")
    _wait_rows(qtbot, view, {1: "pending", 2: "excluded", 3: "pending", 4: "pending"})
