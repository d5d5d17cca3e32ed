"""The whole-slide viewer: tiles read in worker threads from the right pyramid level
(:mod:`.tile_loader`, :mod:`.scene`), overlays (:mod:`.overlays`), the overview map
(:mod:`.overview`) and the view of the main window (:mod:`.view`)."""

from pathomics_desktop.ui.views.viewer.view import SlideViewerView

__all__ = ["SlideViewerView"]
