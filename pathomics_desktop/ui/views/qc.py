"""The slide QC queue: pending slides first, each with its thumbnail, its tissue mask
(:func:`pathomics_desktop.registry.slide_list.tissue_preview`, computed in a worker and drawn
semi-transparent over the slide) and its MPP warning; accept, or exclude with a reason.

Each decision is a :class:`SlideQCCommand` (a :class:`~pathomics_desktop.ui.commands.RegistryCommand`)
on the context's undo stack; it calls the
registry's slide QC service (:func:`pathomics_desktop.registry.slides.set_slide_qc`, the same
as ``pathomics slides qc ID ok|excluded --reason ...``), and undo restores the previous
status and reason through the same service.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.registry.slide_list import count_by_status, qc_queue
from pathomics_desktop.ui.commands import RegistryCommand, push
from pathomics_desktop.ui.models.slides import SLIDE_ID_ROLE, THUMB_SIZE, SlideTableModel
from pathomics_desktop.ui.views.common import row_table, show_message
from pathomics_desktop.ui.views.slides import SlideRowsView

#: reasons offered for an exclusion (any text may be typed)
EXCLUSION_REASONS = ("insufficient tissue", "out of focus", "folded or torn tissue", "pen marks over tumour",
                     "wrong stain", "not the resection specimen")
#: tissue overlay colour (RGBA) and contour colour (RGB)
MASK_RGBA = (25, 170, 84, 110)
CONTOUR_RGB = (10, 110, 50)
PREVIEW_PX = 460
QC_COLUMNS_SHOWN = (0, 1, 3, 5)  # thumbnail, patient, MPP, QC status


def qc_preview_images(registry, slide_id: int) -> dict[str, Any]:
    """Worker function: the slide's low-resolution image, and the same image with its tissue
    mask drawn over it (tissue tinted, outline drawn), as QImages."""
    import cv2
    import numpy as np

    from pathomics_desktop.registry.slide_list import tissue_preview

    preview = tissue_preview(registry, slide_id)
    h, w = preview.mask.shape
    rgb = np.ascontiguousarray(preview.rgb)
    plain = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
    overlay = np.zeros((h, w, 4), np.uint8)
    overlay[preview.mask] = MASK_RGBA
    contours, _ = cv2.findContours(preview.mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(overlay, contours, -1, (*CONTOUR_RGB, 255), max(1, round(max(h, w) / 300)))
    mask_image = QImage(overlay.data, w, h, 4 * w, QImage.Format_RGBA8888).copy()
    composed = plain.convertToFormat(QImage.Format_ARGB32)
    painter = QPainter(composed)
    painter.drawImage(0, 0, mask_image)
    painter.end()
    return {"slide_id": slide_id, "plain": plain, "overlay": composed, "tissue_fraction": preview.tissue_fraction,
            "downsample": preview.downsample, "mask_pixels": int(preview.mask.sum()), "size": (w, h)}


class SlideQCCommand(RegistryCommand):
    """Set a slide's QC (``ok``, or ``excluded`` with a reason) through the registry's slide
    QC service; undo restores the previous status and reason the same way.

    The service stores its ``reason`` argument as the slide's QC reason (and as the audit
    reason), so undo and redo pass the QC reasons themselves, not "undo: ..." texts.
    """

    what = "slides"

    def __init__(self, ctx, slide_id: int, label: str, new: tuple[str, str | None], old: tuple[str, str | None]):
        super().__init__(ctx, label, f"Slide QC {label}: {new[0]}" + (f" ({new[1]})" if new[1] else ""),
                         reason=new[1])
        self.slide_id, self.new, self.old = slide_id, new, old

    def _write(self, status: str, reason: str | None) -> None:
        from pathomics_desktop.registry.slides import set_slide_qc

        set_slide_qc(self.ctx.registry, self.slide_id, status, reason, user=self.ctx.user)

    def apply(self, reason: str | None = None) -> None:
        self._write(*self.new)

    def revert(self, reason: str | None) -> None:
        self._write(*self.old)


class QCQueueView(SlideRowsView):

    #: action -> widgets that do it (greyed out when the role lacks it: ui/permissions.py)
    PERMISSIONS = {"edit_slides": ("accept_button", "exclude_button")}
    view_id = "qc"
    title = "QC"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = SlideTableModel(self)
        self.preview: dict[str, Any] | None = None
        self.last_message = ""
        self._select_first_pending = False
        self._want_slide: int | None = None
        self._preview_pending: int | None = None  # slide whose mask is being computed

        self.counts_label = QLabel("")
        self.table = row_table(self.model, sortable=False, row_height=THUMB_SIZE + 6)  # in queue order
        self.table.horizontalHeader().setStretchLastSection(True)
        for col in range(len(SlideTableModel.COLUMNS)):
            self.table.setColumnHidden(col, col not in QC_COLUMNS_SHOWN)
        for col, width in ((0, THUMB_SIZE + 12), (1, 110), (3, 130)):
            self.table.horizontalHeader().resizeSection(col, width)
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._selection_changed())
        self.table.doubleClicked.connect(self._double_clicked)
        self.table.setToolTip("Double-click: the patient column opens the patient, any other opens the slide viewer")
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Pending slides first"))
        ll.addWidget(self.table)
        ll.addWidget(self.counts_label)

        self.slide_title = QLabel("Select a slide")
        self.slide_title.setStyleSheet("font-weight: bold;")
        self.image_label = QLabel("")
        self.image_label.setAlignment(Qt.AlignCenter)
        self.image_label.setMinimumSize(PREVIEW_PX, PREVIEW_PX)
        self.image_label.setFrameShape(QFrame.StyledPanel)
        self.show_mask = QCheckBox("Show tissue mask")
        self.show_mask.setChecked(True)
        self.show_mask.toggled.connect(self._draw_preview)
        self.tissue_label = QLabel("")
        self.mpp_label = QLabel("")
        self.mpp_label.setWordWrap(True)
        self.mpp_label.setStyleSheet("QLabel { background: #fff3cd; color: #664d03; padding: 4px;"
                                     " border: 1px solid #ffecb5; }")
        self.mpp_label.setVisible(False)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.reason = QComboBox()
        self.reason.setEditable(True)
        self.reason.addItems(EXCLUSION_REASONS)
        self.reason.setCurrentText("")
        self.reason.lineEdit().setPlaceholderText("reason for the exclusion (required)")
        self.accept_button = QPushButton("&Accept")
        self.accept_button.setToolTip("QC ok: the slide is tiled and analysed")
        self.accept_button.clicked.connect(lambda: self.set_qc("ok"))
        self.exclude_button = QPushButton("E&xclude")
        self.exclude_button.setToolTip("Exclude the slide (feeds the exclusion 'insufficient tissue'); needs a reason")
        self.exclude_button.clicked.connect(lambda: self.set_qc("excluded"))
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_button)
        buttons.addWidget(QLabel("Reason:"))
        buttons.addWidget(self.reason, 1)
        buttons.addWidget(self.exclude_button)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.addWidget(self.slide_title)
        rl.addWidget(self.image_label, 1)
        row = QHBoxLayout()
        row.addWidget(self.show_mask)
        row.addWidget(self.tissue_label, 1)
        rl.addLayout(row)
        rl.addWidget(self.mpp_label)
        rl.addWidget(self.status_label)
        rl.addLayout(buttons)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("qcSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setSizes([420, 560])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)
        self._update_buttons()

    # -- rows -------------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.model.set_rows([])
        self.preview = None
        self.image_label.clear()

    def _rows_loaded(self, result: dict[str, Any]) -> None:
        selected = self._want_slide or self.selected_slide_id()
        self._want_slide = None
        rows = qc_queue(result["rows"])
        self.model.set_rows(rows, result["images"])
        counts = count_by_status(rows)
        self.counts_label.setText(", ".join(f"{n} {s}" for s, n in counts.items()))
        if selected is not None and self.select_slide(selected):
            pass
        elif self._select_first_pending and rows:
            self._select_first_pending = False
            self.table.setCurrentIndex(self.model.index(0, 0))
        self._selection_changed()

    def selected_row(self):
        index = self.table.currentIndex()
        return self.model.row_at(index.row()) if index.isValid() else None

    def selected_slide_id(self) -> int | None:
        index = self.table.currentIndex()
        return index.data(SLIDE_ID_ROLE) if index.isValid() else None

    def select_slide(self, slide_id: int) -> bool:
        for i, r in enumerate(self.model.rows):
            if r.slide_id == slide_id:
                self.table.setCurrentIndex(self.model.index(i, 0))
                return True
        return False

    def _double_clicked(self, index) -> None:
        row = self.model.row_at(index.row())
        if index.column() == 1 and row.study_id:
            self.ctx.request_patient.emit(row.study_id)
        else:
            self.ctx.request_slide.emit(row.slide_id)

    def find(self, text: str) -> None:
        for i, r in enumerate(self.model.rows):
            if text.lower() in (r.study_id or "").lower():
                self.table.setCurrentIndex(self.model.index(i, 0))
                return

    # -- the selected slide -------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        row = self.selected_row()
        self._update_buttons()
        if row is None:
            self.slide_title.setText("Select a slide")
            return
        self.slide_title.setText(f"{row.study_id or '(unassigned)'} - slide {row.slide_id} - {row.size_text} px"
                                 + (" - SYNTHETIC" if row.synthetic else ""))
        self.mpp_label.setText(row.mpp_warning or "")
        self.mpp_label.setVisible(bool(row.mpp_warning))
        self.status_label.setText(f"QC: {row.qc_status}" + (f" ({row.qc_reason})" if row.qc_reason else ""))
        if (self.preview is None or self.preview["slide_id"] != row.slide_id) and self._preview_pending != row.slide_id:
            self._preview_pending = row.slide_id
            self.tissue_label.setText("computing the tissue mask...")
            self.run_task("mask", qc_preview_images, self.ctx.registry, row.slide_id,
                       on_done=self._preview_ready, on_error=self._preview_failed)

    def _preview_ready(self, preview: dict[str, Any]) -> None:
        self._preview_pending = None
        self.preview = preview
        self.tissue_label.setText(f"tissue {preview['tissue_fraction']:.1%} of the slide "
                                  f"(mask at {preview['downsample']:.3g} level-0 px per pixel)")
        self._draw_preview()

    def _preview_failed(self, message: str, _trace: str) -> None:
        self._preview_pending = None
        self.preview = None
        self.image_label.setText("no preview")
        self.tissue_label.setText(message)

    def _draw_preview(self, *_args) -> None:
        if self.preview is None:
            return
        image = self.preview["overlay" if self.show_mask.isChecked() else "plain"]
        box = self.image_label.size().boundedTo(QSize(2 * PREVIEW_PX, 2 * PREVIEW_PX)).expandedTo(
            QSize(PREVIEW_PX, PREVIEW_PX))
        self.image_label.setPixmap(QPixmap.fromImage(image).scaled(box - QSize(8, 8), Qt.KeepAspectRatio,
                                                                   Qt.SmoothTransformation))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._draw_preview()

    def _update_buttons(self) -> None:
        row = self.selected_row()
        decidable = bool(row and row.qc_status != "failed")
        self.accept_button.setEnabled(decidable and row.qc_status != "ok")
        self.exclude_button.setEnabled(decidable)
        if row is not None and row.qc_status == "failed":
            tip = "This slide failed to read or tile; fix the file and add it again"
            self.accept_button.setToolTip(tip)
            self.exclude_button.setToolTip(tip)

    # -- decisions -----------------------------------------------------------------------------------
    def set_qc(self, status: str) -> bool:
        """Accept (``ok``) or exclude (with the reason typed or picked) the selected slide,
        as a command on the undo stack. Returns whether it was applied."""
        from pathomics_desktop.errors import UserError

        row = self.selected_row()
        if row is None:
            return False
        reason = self.reason.currentText().strip() or None if status == "excluded" else None
        if status == "excluded" and not reason:
            show_message(self, "A reason is needed", "Excluding a slide needs a reason: pick one in 'Reason' or "
                                                     "type your own, then press Exclude again.")
            return False
        command = SlideQCCommand(self.ctx, row.slide_id, row.study_id or f"slide {row.slide_id}", (status, reason),
                                 (row.qc_status, row.qc_reason))
        try:
            push(self.ctx, command)  # writes once, then enters the undo stack; emits data_changed
        except UserError as exc:
            show_message(self, "Slide QC not changed", str(exc))
            return False
        self.reason.setCurrentText("")
        self._want_slide = self._next_pending(row.slide_id)  # the reload after data_changed selects it
        return True

    def _next_pending(self, after: int) -> int:
        """The next pending slide after ``after`` in the queue (else ``after`` itself)."""
        rows = self.model.rows
        ids = [r.slide_id for r in rows]
        start = ids.index(after) + 1 if after in ids else 0
        for r in rows[start:] + rows[:start]:
            if r.qc_status == "pending" and r.slide_id != after:
                return r.slide_id
        return after

    # -- shell hooks ------------------------------------------------------------------------------------
    def prepare_screenshot(self) -> None:
        self.show_mask.setChecked(True)
        if self.model.rows:
            self.table.setCurrentIndex(self.model.index(0, 0))
        else:
            self._select_first_pending = True

    def snapshot(self) -> dict[str, Any]:
        row = self.selected_row()
        selected = None
        if row is not None:
            shown = self.preview if self.preview and self.preview["slide_id"] == row.slide_id else None
            selected = {"patient": row.study_id, "qc_status": row.qc_status, "qc_reason": row.qc_reason,
                        "mpp_warning": row.mpp_warning, "mask_shown": bool(shown and self.show_mask.isChecked()),
                        "tissue_fraction": shown["tissue_fraction"] if shown else None}
        return {"view": self.view_id, "counts": count_by_status(self.model.rows),
                "rows": [{k: r[k] for k in ("patient", "qc_status", "qc_reason", "mpp_warning", "thumbnail")}
                         for r in self.model.shown_rows()], "selected": selected}
