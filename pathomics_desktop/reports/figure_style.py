"""Print sizes, fonts and measuring for the publication figures (Qt-free, matplotlib only).

Sizes are in millimetres (journal columns: 89 mm single, 183 mm double, as Nature and Cell
Press specify) and font sizes in points (7 pt text, 6 pt tick labels and tables, never under
5 pt at print size). The font is DejaVu Sans, which ships with matplotlib, so a figure draws the
same on every machine; PDF embeds it as TrueType (``pdf.fonttype = 42``), SVG keeps labels as
``<text>`` and embeds a subset of the font as an ``@font-face`` data URL.
"""

from __future__ import annotations

from functools import lru_cache

from pathomics_desktop.figures.style import PALETTE

MM_PER_INCH = 25.4
PT_PER_MM = 72.0 / MM_PER_INCH
#: journal column widths, mm
WIDTHS_MM = {"single": 89.0, "double": 183.0}
#: PNG resolution (line art; journals ask 300 dpi or more)
PNG_DPI = 600
FONT = "DejaVu Sans"
TEXT_PT = 7.0
SMALL_PT = 6.0
TINY_PT = 5.5
MIN_PT = 5.0
GREY = "#8C8C8C"
INK = "#000000"

RC = {
    "font.family": FONT, "font.size": TEXT_PT, "text.parse_math": False,
    "axes.linewidth": 0.5, "axes.labelsize": TEXT_PT, "axes.titlesize": TEXT_PT, "axes.titlepad": 3.0,
    "axes.edgecolor": INK, "axes.labelcolor": INK, "axes.labelpad": 2.0,
    "xtick.labelsize": SMALL_PT, "ytick.labelsize": SMALL_PT, "xtick.major.width": 0.5,
    "ytick.major.width": 0.5, "xtick.major.size": 2.0, "ytick.major.size": 2.0, "xtick.minor.size": 1.2,
    "ytick.minor.size": 1.2, "xtick.minor.width": 0.4, "ytick.minor.width": 0.4, "xtick.major.pad": 1.5,
    "ytick.major.pad": 1.5, "lines.linewidth": 0.9, "legend.fontsize": SMALL_PT, "legend.frameon": False,
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "pathomics-figure",
    "image.cmap": "viridis", "savefig.facecolor": "white", "figure.facecolor": "white",
}


def prop_cycle():
    from cycler import cycler

    return cycler(color=list(PALETTE))


@lru_cache(maxsize=4096)
def text_width_mm(text: str, size: float, weight: str = "normal", style: str = "normal") -> float:
    """Width of ``text`` set in :data:`FONT` at ``size`` pt, in mm (measured by Agg at 72 dpi,
    where one pixel is one point)."""
    from matplotlib.font_manager import FontProperties

    if not text:
        return 0.0
    renderer = _renderer()
    width, _, _ = renderer.get_text_width_height_descent(
        text, FontProperties(family=FONT, size=size, weight=weight, style=style), ismath=False)
    return width / PT_PER_MM


@lru_cache(maxsize=1)
def _renderer():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return FigureCanvasAgg(Figure(dpi=72)).get_renderer()


def line_mm(size: float, spacing: float = 1.3) -> float:
    """Height of one text line of ``size`` pt, mm."""
    return size * spacing / PT_PER_MM


def wrap(text: str, width_mm: float, size: float) -> list[str]:
    """Greedy word wrap of ``text`` into lines at most ``width_mm`` wide at ``size`` pt."""
    lines: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}" if line else word
            if line and text_width_mm(trial, size) > width_mm:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines
