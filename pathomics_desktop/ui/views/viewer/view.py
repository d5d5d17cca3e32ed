"""The slide viewer view of the main window (view id ``viewer``).

Layout: a slide chooser and the ROI import/export buttons on top; the slide canvas
(:class:`~.scene.SlideGraphicsView`) in the middle; on the right the overview map, one
control group per overlay (visibility, opacity, colour map and colour bar for heatmaps)
and the selected tile (its prediction, the tile as the model saw it, its Grad-CAM); the
cursor position in level-0 pixels, the level and the MPP below.

Everything slow runs off the GUI thread: the slide, its overlays and its reader are opened
by :func:`pathomics_desktop.slides.overlays.load_viewer_slide` through ``ctx.run``; tiles
come from the :class:`~.tile_loader.TileLoader` threads; a selected tile is read and
stain-normalised by :func:`pathomics_desktop.slides.overlays.tile_as_model_saw_it` in a
worker.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QImage, QPixmap, QUndoCommand
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.errors import UserError
from pathomics_desktop.slides.overlays import COLORMAPS
from pathomics_desktop.ui.views.base import View
from pathomics_desktop.ui.views.viewer.overlays import (
    CamLayer,
    ColorBar,
    HeatmapLayer,
    RoiLayer,
    SelectionLayer,
    TileGridLayer,
)
from pathomics_desktop.ui.views.viewer.overview import OverviewMap
from pathomics_desktop.ui.views.viewer.scene import SlideGraphicsView
from pathomics_desktop.ui.views.viewer.tile_loader import TileLoader, rgb_to_qimage

TISSUE_SOURCE = "tissue"


def freeze_heap() -> None:
    """Collect the cyclic garbage there is now, then move every object that survives into
    the collector's permanent generation (``gc.freeze``): the application's modules,
    widgets and the opened slide are never walked again by a full collection, which on
    the whole heap takes 15-100 ms of the GUI thread (measured by ``pathomics bench
    viewer``). Objects made later are collected as usual; ones freed by reference
    counting are freed whatever their generation."""
    gc.collect()
    gc.freeze()


def open_slide_for_viewer(project, registry, slide_id: int):
    """Worker: the slide's overlays and an open tile reader."""
    from pathomics_desktop.slides.overlays import load_viewer_slide
    from pathomics_desktop.slides.viewer_tiles import PyramidTileReader

    slide = load_viewer_slide(project, registry, slide_id)
    return slide, PyramidTileReader(slide.path)


def import_roi_checked(registry, project, slide_id: int, path: str):
    """Worker: validate a QuPath GeoJSON against the slide, keep the previous ROI file's
    bytes (for undo), store the new one (``slides.jobs.import_roi``) and return its ROIs
    (every class, for display) and the summary of the classes that will be tiled."""
    from pathomics_desktop.slides.jobs import import_roi, roi_path_for
    from pathomics_desktop.slides.roi import load_rois

    target = roi_path_for(project, slide_id)
    previous = target.read_bytes() if target.is_file() else None
    result = import_roi(registry, project, slide_id, path)
    stored, selection = result if isinstance(result, tuple) else (result, None)
    summary = selection.summary() if hasattr(selection, "summary") else ""
    return {"path": str(stored), "previous": previous, "rois": load_rois(stored), "summary": summary}


class OverlayControl(QGroupBox):
    """Visibility, opacity and (for heatmaps) colour map + colour bar of one overlay."""

    def __init__(self, title: str, *, opacity: int, colormap: str | None = None, parent=None):
        super().__init__(title, parent)
        self.setCheckable(True)
        self.setChecked(False)
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(opacity)
        self.opacity_label = QLabel(f"{opacity} %")
        self.opacity_label.setMinimumWidth(40)
        self.opacity.valueChanged.connect(lambda v: self.opacity_label.setText(f"{v} %"))
        grid.addWidget(QLabel("Opacity"), 0, 0)
        grid.addWidget(self.opacity, 0, 1)
        grid.addWidget(self.opacity_label, 0, 2)
        self.source = QComboBox()
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setMinimumContentsLength(12)
        self.source_label = QLabel("Source")
        grid.addWidget(self.source_label, 1, 0)
        grid.addWidget(self.source, 1, 1, 1, 2)
        self.source_label.setVisible(False)
        self.source.setVisible(False)
        self.colormap = self.colorbar = None
        if colormap is not None:
            self.colormap = QComboBox()
            self.colormap.addItems(list(COLORMAPS))
            self.colormap.setCurrentText(colormap)
            grid.addWidget(QLabel("Colour map"), 2, 0)
            grid.addWidget(self.colormap, 2, 1, 1, 2)
            self.colorbar = ColorBar(colormap)
            self.colormap.currentTextChanged.connect(self.colorbar.set_colormap)
            grid.addWidget(self.colorbar, 3, 0, 1, 3)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #666;")
        grid.addWidget(self.note, 4, 0, 1, 3)

    def set_sources(self, items: list[tuple[str, str]]) -> None:
        """(data, label) choices of the overlay's data (e.g. model runs)."""
        self.source.blockSignals(True)
        self.source.clear()
        for data, label in items:
            self.source.addItem(label, data)
        self.source.blockSignals(False)
        self.source.setVisible(len(items) > 1)
        self.source_label.setVisible(len(items) > 1)

    def state(self) -> dict[str, Any]:
        out = {"visible": self.isChecked() and self.isEnabled(), "opacity": self.opacity.value() / 100.0}
        if self.colormap is not None:
            out["colormap"] = self.colormap.currentText()
        if self.source.count():
            out["source"] = self.source.currentData()
        return out


class ImportRoiCommand(QUndoCommand):
    """Undoable ROI import: redo stores the new file (done by the worker the first time),
    undo puts the previous file back (or removes the ROI the import added)."""

    def __init__(self, view: "SlideViewerView", slide_id: int, source: str, result: dict):
        super().__init__(f"import ROI {Path(source).name} for slide {slide_id}")
        self.view, self.slide_id, self.source = view, slide_id, source
        self.target = Path(result["path"])
        self.previous = result["previous"]
        self.new = self.target.read_bytes()
        self.first = True

    def _write(self, data: bytes | None) -> None:
        if data is None:
            self.target.unlink(missing_ok=True)
        else:
            tmp = self.target.with_name(f".{self.target.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(self.target)
        self.view.reload_roi_file(self.slide_id)

    def redo(self) -> None:
        if self.first:
            self.first = False
            return
        self._write(self.new)

    def undo(self) -> None:
        self._write(self.previous)


class SlideViewerView(View):
    view_id = "viewer"
    title = "Slide viewer"

    #: (callback, argument) to run on the GUI thread (task results arrive on worker threads)
    _on_gui = Signal(object, object)

    def __init__(self, parent: QWidget | None = None, *, workers: int = 2):
        super().__init__(parent)
        self.workers = workers
        self.slide = None
        self.loader: TileLoader | None = None
        self.layers: dict[str, Any] = {}
        self.selected: dict[str, Any] | None = None
        self.selected_images: dict[str, Any] = {}
        self._slides: list[dict] = []
        self._loading = 0  # viewer tasks in flight (stale ones included)
        self._generation: dict[str, int] = {}
        self._on_gui.connect(self._call_on_gui)
        self._after_open = None

        self.chooser = QComboBox()
        self.chooser.setMinimumWidth(260)
        self.chooser.activated.connect(self._chosen)
        self.fit_button = QPushButton("Fit")
        self.import_button = QPushButton("Import ROI…")
        self.export_button = QPushButton("Export ROI…")
        self.fit_button.clicked.connect(lambda: self.canvas.fit())
        self.import_button.clicked.connect(self._ask_import)
        self.export_button.clicked.connect(self._ask_export)
        self.banner = QLabel("")
        self.banner.setStyleSheet("color: #664d03; background: #fff3cd; padding: 2px 6px; font-weight: bold;")
        self.banner.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(QLabel("Slide"))
        top.addWidget(self.chooser)
        top.addWidget(self.fit_button)
        top.addStretch(1)
        top.addWidget(self.banner)
        top.addWidget(self.import_button)
        top.addWidget(self.export_button)

        self.canvas = SlideGraphicsView()
        self.canvas.cursor_moved.connect(self._cursor_moved)
        self.canvas.clicked.connect(self._clicked)
        self.canvas.viewport_changed.connect(self._update_status)
        self.overview = OverviewMap()
        self.overview.set_view(self.canvas)
        self.overview.move_requested.connect(lambda x, y: self.canvas.set_view((x, y), self.canvas.downsample()))

        self.roi_control = OverlayControl("QuPath ROI", opacity=90)
        self.grid_control = OverlayControl("Tile grid", opacity=60)
        self.prob_control = OverlayControl("Heatmap: patch probability", opacity=55, colormap="viridis")
        self.cam_control = OverlayControl("Heatmap: Grad-CAM", opacity=60, colormap="jet")
        self.controls = {"roi": self.roi_control, "grid": self.grid_control,
                         "probability": self.prob_control, "gradcam": self.cam_control}
        for name, control in self.controls.items():
            control.toggled.connect(lambda _on, n=name: self._apply(n))
            control.opacity.valueChanged.connect(lambda _v, n=name: self._apply(n))
            control.source.currentIndexChanged.connect(lambda _i, n=name: self._rebuild(n))
            if control.colormap is not None:
                control.colormap.currentTextChanged.connect(lambda _t, n=name: self._recolor(n))

        self.tile_title = QLabel("Click a tile to see its prediction")
        self.tile_title.setWordWrap(True)
        self.tile_image = QLabel()
        self.cam_image = QLabel()
        for label in (self.tile_image, self.cam_image):
            label.setFixedSize(132, 132)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setStyleSheet("background: #f4f4f4; border: 1px solid #ccc;")
        self.tile_caption = QLabel("")
        self.tile_caption.setWordWrap(True)
        self.tile_caption.setStyleSheet("color: #555;")
        tile_box = QGroupBox("Selected tile")
        tl = QGridLayout(tile_box)
        tl.addWidget(self.tile_title, 0, 0, 1, 2)
        tl.addWidget(QLabel("Model input"), 1, 0)
        tl.addWidget(QLabel("Grad-CAM"), 1, 1)
        tl.addWidget(self.tile_image, 2, 0)
        tl.addWidget(self.cam_image, 2, 1)
        tl.addWidget(self.tile_caption, 3, 0, 1, 2)

        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(4, 0, 4, 0)
        sl.addWidget(self.overview)
        for control in self.controls.values():
            sl.addWidget(control)
        sl.addWidget(tile_box)
        sl.addStretch(1)
        side.setMaximumWidth(330)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(350)
        scroll.setMaximumWidth(350)
        splitter = QSplitter()
        splitter.addWidget(self.canvas)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)

        self.status = QLabel("No slide")
        self.cursor_label = QLabel("")
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.cursor_label)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        layout.addLayout(bottom)
        self._enable_overlays()

    # -- project ---------------------------------------------------------------------
    def set_context(self, ctx) -> None:
        if ctx is None:
            self.close_slide()
        super().set_context(ctx)

    @Slot(object, object)
    def _call_on_gui(self, callback, argument) -> None:
        callback(*argument)

    def _run(self, purpose: str, fn, *args, on_done, on_error=None, discard=None) -> None:
        """``ctx.run`` with stale results dropped: only the latest task of a ``purpose``
        reports back; an older one's result goes to ``discard`` (e.g. to close a reader).
        Results are handed to the GUI thread through a queued signal of this view (the
        context's callbacks may run on the worker's thread)."""
        gen = self._generation[purpose] = self._generation.get(purpose, 0) + 1
        self._loading += 1

        def done(result) -> None:
            self._loading -= 1
            if self._generation.get(purpose) != gen:
                if discard is not None:
                    discard(result)
                return
            on_done(result)

        def failed(message: str, trace: str) -> None:
            self._loading -= 1
            if self._generation.get(purpose) == gen:
                (on_error or self._failed(purpose))(message, trace)

        def relay_done(result) -> None:
            self._on_gui.emit(done, (result,))

        def relay_failed(message: str, trace: str) -> None:
            self._on_gui.emit(failed, (message, trace))

        self.ctx.run(fn, *args, on_done=relay_done, on_error=relay_failed)

    def refresh(self) -> None:
        """Re-list the slides; an open slide is reloaded (new tiles, predictions, ROI) and
        keeps its view."""
        if self.ctx is None:
            return
        from pathomics_desktop.slides.overlays import viewer_slide_list

        if self.slide is not None and self.slide.slide_id is not None and self._after_open is None:
            keep = (self.canvas.center(), self.canvas.downsample())
            self._after_open = lambda: self.canvas.set_view(*keep)
            self.show_slide(self.slide.slide_id)
        self._run("Slide list", viewer_slide_list, self.ctx.project, self.ctx.registry, on_done=self._slides_listed)

    def _slides_listed(self, slides: list[dict]) -> None:
        self._slides = slides
        self.chooser.blockSignals(True)
        self.chooser.clear()
        for s in slides:
            extra = ", predictions" if s["predictions"] else (", tiled" if s["tiles"] else "")
            self.chooser.addItem(f"#{s['id']} {s['study_id'] or 'unassigned'} ({s['name']}{extra})", s["id"])
        if self.slide is not None and self.slide.slide_id is not None:
            i = self.chooser.findData(self.slide.slide_id)
            if i >= 0:
                self.chooser.setCurrentIndex(i)
        self.chooser.blockSignals(False)

    def _chosen(self, index: int) -> None:
        slide_id = self.chooser.itemData(index)
        if slide_id is not None:
            self.show_slide(int(slide_id))

    def _failed(self, title: str):
        def report(message: str, trace: str) -> None:
            if self.ctx is not None:
                self.ctx.task_failed.emit(title, message, trace)
            else:  # pragma: no cover - the view always has a context in the app
                QMessageBox.warning(self, title, message)
        return report

    # -- opening a slide ----------------------------------------------------------------
    def show_slide(self, slide_id: int) -> None:
        """Open registered slide ``slide_id`` (read in a worker; tiles in the loader)."""
        if self.ctx is None:
            raise UserError("open a project before opening a slide")
        self.status.setText(f"Opening slide {slide_id} …")
        self._run("Slide", open_slide_for_viewer, self.ctx.project, self.ctx.registry, int(slide_id),
                  on_done=self._opened, on_error=self._failed(f"Slide {slide_id}"),
                  discard=lambda result: result[1].close())

    def _opened(self, result) -> None:
        slide, reader = result
        self.install(slide, reader)
        after, self._after_open = self._after_open, None
        if after is not None:
            after()

    def show_file(self, path: str | Path, *, mpp_override: float | None = None, synchronous: bool = False) -> None:
        """Open a slide file that is not registered (benchmarks, plain files). The file's
        metadata is read here; tiles still come from the loader (or, with ``synchronous``,
        the naive baseline of ``pathomics bench viewer``)."""
        from pathomics_desktop.slides.overlays import load_viewer_file
        from pathomics_desktop.slides.viewer_tiles import PyramidTileReader

        self.install(load_viewer_file(path, mpp_override=mpp_override), PyramidTileReader(path),
                     synchronous=synchronous)

    def install(self, slide, reader, *, synchronous: bool = False) -> None:
        """Show ``slide`` (a :class:`~pathomics_desktop.slides.overlays.ViewerSlide`) read by
        ``reader`` (a :class:`~pathomics_desktop.slides.viewer_tiles.PyramidTileReader`)."""
        self.close_slide()
        self.slide = slide
        self.loader = TileLoader(reader, workers=self.workers, synchronous=synchronous, parent=self)
        self.loader.tiles_ready.connect(self._tiles_ready)
        self.canvas.set_loader(self.loader, slide.mpp)
        freeze_heap()  # before the tiles start coming: no full GC pass over the app while the slide is viewed
        self.banner.setText("SYNTHETIC slide" if slide.synthetic else "")
        self.banner.setVisible(bool(slide.synthetic))
        self._build_layers()
        if slide.slide_id is not None:
            i = self.chooser.findData(slide.slide_id)
            if i >= 0:
                self.chooser.setCurrentIndex(i)
        self._update_status()

    def close_slide(self) -> None:
        scene = self.canvas.scene()
        for layer in self.layers.values():
            if layer is not None and layer.scene() is scene:
                scene.removeItem(layer)
        self.layers = {}
        self.selected, self.selected_images = None, {}
        self._clear_tile_panel()
        if self.loader is not None:
            self.loader.close()
            self.loader.deleteLater()
            self.loader = None
        self.canvas.clear_slide()
        self.slide = None

    # -- overlays ---------------------------------------------------------------------
    def _build_layers(self) -> None:
        slide = self.slide
        scene = self.canvas.scene()
        for layer in self.layers.values():
            if layer is not None and layer.scene() is scene:
                scene.removeItem(layer)
        self.layers = {"roi": None, "grid": None, "probability": None, "gradcam": None, "selection": SelectionLayer()}
        scene.addItem(self.layers["selection"])
        if slide.rois:
            self.layers["roi"] = RoiLayer(slide.rois)
        if slide.tiles is not None and len(slide.tiles):
            self.layers["grid"] = TileGridLayer(slide.tiles["x"], slide.tiles["y"], slide.tiles["read_size"])
        sources = [(run, f"P(poor), model {run}") for run in slide.predictions]
        if slide.tiles is not None and len(slide.tiles):
            sources.append((TISSUE_SOURCE, "tissue fraction (tile index)"))
        self.prob_control.set_sources(sources)
        self.cam_control.set_sources([(run, f"model {run}") for run in slide.gradcam])
        self._rebuild("probability")
        self._rebuild("gradcam")
        for name, z in (("grid", 20), ("probability", 10), ("gradcam", 15), ("roi", 30)):
            if self.layers.get(name) is not None:
                self.layers[name].setZValue(z)
                if self.layers[name].scene() is None:
                    scene.addItem(self.layers[name])
        self._enable_overlays()
        for name in self.controls:
            self._apply(name)

    def _rebuild(self, name: str) -> None:
        """(Re)make a heatmap layer for its control's source."""
        if self.slide is None or name not in ("probability", "gradcam"):
            return
        control = self.controls[name]
        old = self.layers.get(name)
        if old is not None and old.scene() is not None:
            old.scene().removeItem(old)
        self.layers[name] = None
        source = control.source.currentData()
        colormap = control.colormap.currentText()
        if name == "probability" and source is not None:
            grid = self.slide.tissue_grid() if source == TISSUE_SOURCE else self.slide.probability_grid(source)
            control.setTitle("Heatmap: tissue fraction" if source == TISSUE_SOURCE else "Heatmap: patch probability")
            self.layers[name] = HeatmapLayer(grid, colormap)
            control.note.setText(grid.label + ("; patch predictions appear after `pathomics infer`"
                                               if source == TISSUE_SOURCE else ""))
            control.colorbar.low, control.colorbar.high = ("0", "1")
        elif name == "gradcam" and source is not None:
            self.layers[name] = CamLayer(self.slide.gradcam[source], colormap)
            control.note.setText(f"{len(self.slide.gradcam[source])} tiles with a Grad-CAM map (model {source})")
        if self.layers[name] is not None:
            self.layers[name].setZValue(10 if name == "probability" else 15)
            self.canvas.scene().addItem(self.layers[name])
            self._apply(name)

    def _recolor(self, name: str) -> None:
        layer = self.layers.get(name)
        if layer is not None:
            layer.set_colormap(self.controls[name].colormap.currentText())
        self._refresh_selected_text()

    def _apply(self, name: str) -> None:
        layer = self.layers.get(name)
        control = self.controls[name]
        if layer is not None:
            layer.setVisible(control.isChecked())
            layer.setOpacity(control.opacity.value() / 100.0)

    def _enable_overlays(self) -> None:
        notes = {
            "roi": "no ROI for this slide: import a QuPath GeoJSON",
            "grid": "no tile index: tile the slide (Jobs, or `pathomics slides tile`)",
            "probability": "no predictions and no tile index yet",
            "gradcam": "no Grad-CAM maps: run `pathomics gradcam --model RUN`",
        }
        for name, control in self.controls.items():
            has = self.layers.get(name) is not None
            control.setEnabled(has)
            if not has:
                control.note.setText(notes[name] if self.slide is not None else "")
            elif name == "roi":
                control.note.setText(f"{len(self.slide.rois)} ROI(s) from {Path(self.slide.roi_path).name}"
                                     if self.slide.roi_path else f"{len(self.slide.rois)} ROI(s)")
            elif name == "grid":
                control.note.setText(f"{len(self.slide.tiles)} tiles of {self.slide.cell} level-0 px")
        self.export_button.setEnabled(self.slide is not None and bool(self.slide.rois))
        self.import_button.setEnabled(self.slide is not None)

    def set_overlay(self, name: str, visible: bool, opacity: float | None = None, colormap: str | None = None,
                    source: str | None = None) -> None:
        """Script an overlay (as its controls would): visibility, opacity in [0, 1], map."""
        control = self.controls[name]
        if source is not None:
            i = control.source.findData(source)
            if i < 0:
                raise UserError(f"overlay {name}: no source {source!r}")
            control.source.setCurrentIndex(i)
        if colormap is not None and control.colormap is not None:
            control.colormap.setCurrentText(colormap)
        if opacity is not None:
            control.opacity.setValue(int(round(opacity * 100)))
        control.setChecked(bool(visible))
        self._apply(name)

    # -- ROI files ----------------------------------------------------------------------
    def _ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a QuPath GeoJSON ROI", "",
                                              "GeoJSON (*.geojson *.json);;All files (*)")
        if path:
            self.import_roi_file(path)

    def _ask_export(self) -> None:
        default = f"{Path(self.slide.path).stem}_roi.geojson" if self.slide else "roi.geojson"
        path, _ = QFileDialog.getSaveFileName(self, "Export the ROI as QuPath GeoJSON", default,
                                              "GeoJSON (*.geojson)")
        if path:
            self.export_roi_file(path)

    def import_roi_file(self, path: str | Path) -> None:
        """Validate and store a QuPath GeoJSON as the slide's ROI (registered slides:
        ``slides.jobs.import_roi`` in a worker, undoable; plain files: shown only)."""
        if self.slide is None:
            return
        if self.slide.slide_id is None or self.ctx is None:
            from pathomics_desktop.slides.roi import load_rois

            try:
                self.slide.rois = load_rois(path, slide_size=(self.slide.width, self.slide.height))
            except UserError as exc:
                QMessageBox.warning(self, "ROI not imported", f"{exc}\n\nChoose a QuPath GeoJSON export of this slide.")
                return
            self.slide.roi_path = str(path)
            self._build_layers()
            self.set_overlay("roi", True)
            return
        slide_id = self.slide.slide_id

        def done(result: dict) -> None:
            self.ctx.undo_stack.push(ImportRoiCommand(self, slide_id, str(path), result))
            self._set_rois(slide_id, result["rois"], result["path"])
            self.ctx.data_changed.emit("slides")
            summary = f" ({result['summary']})" if result.get("summary") else ""
            self.ctx.status_message.emit(f"ROI of slide {slide_id} imported from {Path(path).name}{summary}")

        def failed(message: str, _trace: str) -> None:
            QMessageBox.warning(self, "ROI not imported",
                                f"{message}\n\nChoose a QuPath GeoJSON export (level-0 pixel coordinates) of this slide.")

        self._run("ROI import", import_roi_checked, self.ctx.registry, self.ctx.project, slide_id, str(path),
                  on_done=done, on_error=failed)

    def reload_roi_file(self, slide_id: int) -> None:
        """Re-read the slide's ROI file (after undo/redo of an import)."""
        from pathomics_desktop.slides.overlays import roi_file_for
        from pathomics_desktop.slides.roi import load_rois

        if self.slide is None or self.slide.slide_id != slide_id or self.ctx is None:
            return
        path = roi_file_for(self.ctx.project, slide_id, self.slide.study_id)
        self._set_rois(slide_id, load_rois(path) if path else [], str(path) if path else None)

    def _set_rois(self, slide_id: int, rois: list, path: str | None) -> None:
        if self.slide is None or self.slide.slide_id != slide_id:
            return
        self.slide.rois, self.slide.roi_path = list(rois), path
        old = self.layers.get("roi")
        if old is not None and old.scene() is not None:
            old.scene().removeItem(old)
        self.layers["roi"] = RoiLayer(rois) if rois else None
        if self.layers["roi"] is not None:
            self.layers["roi"].setZValue(30)
            self.canvas.scene().addItem(self.layers["roi"])
            self.roi_control.setChecked(True)
        self._enable_overlays()
        self._apply("roi")

    def export_roi_file(self, path: str | Path) -> Path | None:
        """Write the slide's ROIs as a QuPath GeoJSON FeatureCollection (atomic)."""
        from pathomics_desktop.slides.roi import rois_to_geojson, write_geojson

        if self.slide is None or not self.slide.rois:
            QMessageBox.information(self, "No ROI", "This slide has no ROI to export.")
            return None
        try:
            out = write_geojson(path, rois_to_geojson(self.slide.rois))
        except OSError as exc:
            QMessageBox.warning(self, "ROI not exported", f"Cannot write {path}: {exc}\n\nChoose another folder.")
            return None
        if self.ctx is not None:
            self.ctx.status_message.emit(f"ROI exported to {out}")
        return out

    # -- selection ------------------------------------------------------------------------
    def current_run(self) -> str | None:
        source = self.prob_control.source.currentData()
        if source not in (None, TISSUE_SOURCE):
            return source
        return next(iter(self.slide.predictions), None) if self.slide is not None else None

    # Slots connected to signals return None: PySide6 mishandles a slot's return value
    # (a lambda returning a bool crashed with "deallocating True or False").
    def _tiles_ready(self, keys: list) -> None:
        if self.loader is not None and any(key[0] == self.loader.top_level for key in keys):
            self.overview.update()

    def _clicked(self, x: float, y: float) -> None:
        self.select_at(x, y)

    def select_at(self, x: float, y: float) -> dict[str, Any] | None:
        """Select the tile-index tile whose square contains level-0 (x, y); show its
        prediction now and the tile as the model saw it when the worker has read it."""
        if self.slide is None:
            return None
        row = self.slide.tile_row(x, y)
        self.selected, self.selected_images = row, {}
        self._clear_tile_panel()
        selection = self.layers.get("selection")
        if row is None:
            if selection is not None:
                selection.setVisible(False)
            self.tile_title.setText(f"No tile at ({x:,.0f}, {y:,.0f})")
            return None
        selection.select(row["x"], row["y"], row["size"])
        self._refresh_selected_text()
        if self.ctx is not None:
            from pathomics_desktop.slides.overlays import tile_as_model_saw_it

            run = self.current_run()
            self.tile_caption.setText("reading the tile…")
            self._run("Tile", tile_as_model_saw_it, self.ctx.project, self.slide, row, run,
                      on_done=self._show_tile_images, on_error=self._tile_failed)
        return row

    def _refresh_selected_text(self) -> None:
        row = self.selected
        if row is None:
            return
        run = self.current_run()
        pred = row["predictions"].get(run) if run else None
        head = f"Tile at ({row['x']:,}, {row['y']:,}), {row['size']} level-0 px"
        if pred is not None:
            mpp = f" = {row['size'] * self.slide.mpp:.0f} µm" if self.slide.mpp else ""
            head = (f"Tile at ({row['x']:,}, {row['y']:,}), {row['size']} px{mpp}\n"
                    f"P(poor) = {pred['prob']:.3f} → {'poor' if pred['pred'] == 1 else 'good'} (model {run})")
        elif "tissue_fraction" in row:
            head += f"\ntissue fraction {row['tissue_fraction']:.2f}; no prediction yet"
        self.tile_title.setText(head)

    def _show_tile_images(self, images: dict) -> None:
        self.selected_images = images
        self.tile_image.setPixmap(QPixmap.fromImage(rgb_to_qimage(images["model_input"])).scaled(
            128, 128, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
        caption = (f"{images['input_size']} px input, stain: {images['stain']}"
                   + (" (Macenko to the reference)" if images["stain"] == "macenko" else ""))
        if images.get("cam_png"):
            cam = QImage.fromData(images["cam_png"], "PNG")
            self.cam_image.setPixmap(QPixmap.fromImage(cam).scaled(
                128, 128, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
        else:
            self.cam_image.setText("no Grad-CAM\nfor this tile")
            caption += "; Grad-CAM is kept for the most confident tiles (`pathomics gradcam --top N`)"
        self.tile_caption.setText(caption)

    def _tile_failed(self, message: str, _trace: str) -> None:
        self.tile_caption.setText(f"could not read the tile: {message}")

    def _clear_tile_panel(self) -> None:
        self.tile_image.clear()
        self.cam_image.clear()
        self.tile_caption.setText("")
        self.tile_title.setText("Click a tile to see its prediction")

    # -- status ---------------------------------------------------------------------------
    def _cursor_moved(self, x: float, y: float) -> None:
        self.cursor_label.setText(f"x {x:,.0f}  y {y:,.0f} px (level 0)")

    def _update_status(self) -> None:
        if self.slide is None or self.canvas.grid is None:
            self.status.setText("No slide")
            return
        s = self.slide
        mpp = (f"{s.mpp:.4g} µm/px" + (" (override)" if s.mpp_source == "override" else "")) if s.mpp else \
            f"no MPP ({s.mpp_message or 'missing'})"
        level = self.canvas.target_level()
        self.status.setText(f"{s.name}: {s.width:,} x {s.height:,} px, {mpp}; level {level} "
                            f"(downsample {self.canvas.grid.downsamples[level]:g}), view 1:{self.canvas.downsample():.3g}")

    # -- shell protocol -------------------------------------------------------------------
    def tiles_ready(self) -> bool:
        """Every visible tile of the right level is cached (or failed)."""
        if self.loader is None:
            return True
        return all(self.loader.has(k) or k in self.loader.failed for k in self.canvas.visible_tiles())

    def busy(self) -> bool:
        """Tasks in flight, visible tiles missing, or the view not yet repainted smoothly
        after its last move (so that a screenshot shows the final frame)."""
        return super().busy() or self._loading > 0 or not self.tiles_ready() or self.canvas.moving

    def prepare_screenshot(self) -> None:
        """The first slide with predictions (else one with a tile index, else the first), with
        its ROI and the probability heatmap (tissue fraction when there are no predictions
        yet) and the tile grid when there is no heatmap; nothing is written to the project."""
        if self.ctx is None:
            return
        from pathomics_desktop.slides.overlays import screenshot_slide

        def chosen(slide_id):
            if slide_id is None:
                return
            self._after_open = self._screenshot_overlays
            self.refresh()
            self.show_slide(slide_id)

        self._run("Slide viewer screenshot", screenshot_slide, self.ctx.project, self.ctx.registry, on_done=chosen)

    def _screenshot_overlays(self) -> None:
        self.set_overlay("roi", self.layers.get("roi") is not None)
        has_heat = self.layers.get("probability") is not None
        self.set_overlay("probability", has_heat)
        self.set_overlay("grid", not has_heat and self.layers.get("grid") is not None)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"view": self.view_id}
        if self.slide is None or self.canvas.grid is None:
            out["slide"] = None
            return out
        s, c = self.slide, self.canvas
        level = c.target_level()
        x0, y0, x1, y1 = c.visible_rect()
        bar = c.scale_bar()
        lp = c.last_paint
        out.update({
            "slide_id": s.slide_id, "file": s.name, "synthetic": s.synthetic,
            "size": [s.width, s.height], "level": level, "level_downsample": c.grid.downsamples[level],
            "downsample": round(c.downsample(), 6), "viewport": [round(v, 1) for v in (x0, y0, x1, y1)],
            "mpp": s.mpp, "mpp_source": s.mpp_source,
            "scale_bar_um": bar[0] if bar else None, "scale_bar_px": round(bar[1], 4) if bar else None,
            "reader": self.loader.reader.backend if self.loader else None,
            "tiles_visible": len(c.visible_tiles()), "tiles_drawn": len(lp["drawn"]) if lp["level"] == level else 0,
            "tiles_fallback": lp["fallback"], "tiles_ready": self.tiles_ready(),
            "overlays": {name: {**control.state(), "available": self.layers.get(name) is not None}
                         for name, control in self.controls.items()},
            "n_rois": len(s.rois), "n_tiles": int(len(s.tiles)) if s.tiles is not None else 0,
            "prediction_runs": list(s.predictions), "gradcam_runs": list(s.gradcam),
        })
        heat = self.layers.get("probability")
        if heat is not None:
            out["heatmap"] = {"label": heat.grid.label, "cells": int((~np.isnan(heat.grid.values)).sum()),
                              "cell_px": heat.grid.cell}
        if self.selected is not None:
            sel = {k: v for k, v in self.selected.items()}
            if self.selected_images:
                sel["model_input_px"] = self.selected_images.get("input_size")
                sel["stain"] = self.selected_images.get("stain")
                sel["gradcam"] = bool(self.selected_images.get("cam_png"))
            out["selected_tile"] = sel
        return out

