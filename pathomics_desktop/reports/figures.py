"""Publication drawings of the figure descriptions (Qt-free; matplotlib, Agg canvas, no pyplot).

One figure, two drawings: the GUI's pyqtgraph views and :func:`save_figure` draw the same
description from :mod:`pathomics_desktop.figures` (or :mod:`pathomics_desktop.cohort.flow`),
so a number on screen and on paper cannot differ. Every text drawn here is the description's
own number, formatted with :mod:`pathomics_desktop.figures.style` as the views format it.

=========================================  =====================================================
description                                drawing
=========================================  =====================================================
``figures.km.KMFigure``                    Kaplan-Meier steps, "+" censor marks, 95% CI bands,
                                           legend table (n, events, median, HR, p), log-rank p,
                                           number-at-risk / events / censored table on the
                                           curves' own time axis (a second axes sharing x)
``figures.forest.ForestFigure``            subgroup forest on a log HR axis, boxes (area
                                           proportional to events), whiskers, overall diamond,
                                           text columns, flagged rows grey with a dagger
``figures.roc.TimeDependentRoc``           ROC at each time, AUC (95% CI) in the legends, AUC(t)
``figures.roc.ModelComparison``            patch- and slide-level ROC of the patch models
``figures.cutpoint.CutpointFigure``        maxstat curve, X-tile chi-square map + colour bar,
                                           bootstrap cuts (when resampled)
``cohort.flow.Flow``                       CONSORT-style patient flow (study Figure 1)
:class:`SlideHeatmapFigure`                thumbnail + heatmap, scale bar (um), colour bar
=========================================  =====================================================

Files: ``.png`` (:data:`~pathomics_desktop.reports.figure_style.PNG_DPI` dpi, recorded in the
pHYs chunk), ``.pdf`` (vectors, TrueType fonts embedded) and ``.svg`` (vectors; labels stay
``<text>`` and a subset of the font is embedded as an ``@font-face`` data URL; width and height
in mm). Widths: 89 mm ("single") or 183 mm ("double"); the height follows the content. Files
are written atomically and carry no creation date, so the same description gives the same bytes.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.style import PALETTE, format_estimate_ci, format_p, group_colour
from pathomics_desktop.reports import figure_style as fs

FORMATS = (".png", ".svg", ".pdf")


# ----------------------------------------------------------------------------------------------
# the slide heatmap description
# ----------------------------------------------------------------------------------------------


@dataclass
class SlideHeatmapFigure:
    """A slide thumbnail with a heatmap over it.

    ``rgb``: (h, w, 3) uint8 thumbnail; ``probabilities``: (rows, cols) values in [0, 1], NaN
    where no tile; ``mpp``: micrometres per level-0 pixel; ``downsample``: level-0 pixels per
    thumbnail pixel; the grid's cell ``(r, c)`` covers the level-0 square at ``grid_origin +
    (c, r) * cell`` (``cell`` None: the grid spans the whole thumbnail)."""

    rgb: np.ndarray
    probabilities: np.ndarray
    mpp: float | None
    title: str = ""
    downsample: float = 1.0
    grid_origin: tuple[float, float] = (0.0, 0.0)
    cell: float | None = None
    label: str = "P(poor)"
    colormap: str = "viridis"
    alpha: float = 0.55

    @classmethod
    def from_grid(cls, rgb, grid, mpp: float | None, downsample: float, title: str = "",
                  colormap: str = "viridis") -> "SlideHeatmapFigure":
        """From a viewer :class:`~pathomics_desktop.slides.overlays.HeatmapGrid` (e.g.
        ``ViewerSlide.probability_grid(run)``) and a thumbnail read at ``downsample``."""
        return cls(np.asarray(rgb), np.asarray(grid.values, float), mpp, title, float(downsample),
                   (float(grid.x0), float(grid.y0)), float(grid.cell), grid.label or "P(poor)", colormap)

    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) of the grid in thumbnail pixels (image y points down)."""
        rows, cols = self.probabilities.shape
        h, w = self.rgb.shape[:2]
        if self.cell is None:
            return 0.0, float(w), float(h), 0.0
        x0, y0 = (v / self.downsample for v in self.grid_origin)
        side = self.cell / self.downsample
        return x0, x0 + cols * side, y0 + rows * side, y0

    def scale_bar_um(self) -> float:
        """A 1, 2 or 5 x 10^k um bar close to a fifth of the thumbnail's width."""
        width_um = self.rgb.shape[1] * self.downsample * self.mpp
        target = width_um / 5.0
        k = math.floor(math.log10(target))
        return max(m * 10.0 ** k for m in (1, 2, 5) if m * 10.0 ** k <= target)


def slide_figure(slide, run: str | None = None, *, size: int = 1024, colormap: str = "viridis",
                 title: str | None = None) -> SlideHeatmapFigure:
    """The publication figure of a viewer slide (:func:`~pathomics_desktop.slides.overlays.load_viewer_slide`
    or ``load_viewer_file``): its thumbnail (about ``size`` pixels on the longest side, read by
    OpenSlide), the P(poor) grid of model ``run`` (default: the first run with predictions; the
    tissue fraction when the slide has none), its MPP and name."""
    from pathomics_desktop.slides.reader import open_slide

    if run is None:
        run = next(iter(sorted(slide.predictions)), None)
    grid = slide.probability_grid(run) if run is not None else slide.tissue_grid()
    handle = open_slide(slide.path)
    try:
        w0, h0 = handle.dimensions
        downsample = max(1.0, max(w0, h0) / float(size))
        rgb = np.asarray(handle.get_thumbnail((int(w0 / downsample), int(h0 / downsample))).convert("RGB"))
    finally:
        handle.close()
    downsample = w0 / rgb.shape[1]  # the thumbnail's own scale (rounded to whole pixels)
    name = title if title is not None else (f"{'SYNTHETIC ' if slide.synthetic else ''}{slide.name}: {grid.label}")
    return SlideHeatmapFigure.from_grid(rgb, grid, slide.mpp, downsample, name, colormap)


def scale_label(um: float) -> str:
    """``"500 µm"``; ``"2 mm"`` from 1000 µm on."""
    return f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} \u00b5m"


# ----------------------------------------------------------------------------------------------
# the entry point
# ----------------------------------------------------------------------------------------------


def save_figure(description, path, *, width: str = "single", footnote: str | None = None,
                ci_bands: bool | None = None) -> Path:
    """Draw ``description`` and write it to ``path`` (PNG, SVG or PDF by extension), ``width``
    "single" (89 mm) or "double" (183 mm), with ``footnote`` (e.g. the cohort filter and the
    snapshot id) set small under the figure. ``ci_bands``: the Kaplan-Meier 95% CI bands (None:
    drawn for up to two groups, where they do not hide each other)."""
    from pathomics_desktop.jobs.core import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{path.name}: a figure is written as PNG, SVG or PDF ({', '.join(FORMATS)}); "
                        f"the extension {path.suffix or '(none)'!r} is not one of them")
    fig = draw_figure(description, width=width, footnote=footnote, ci_bands=ci_bands)
    with atomic_path(path) as tmp:
        _write(fig, tmp, suffix[1:])
    return path


def draw_figure(description, *, width: str = "single", footnote: str | None = None,
                ci_bands: bool | None = None):
    """The matplotlib :class:`~matplotlib.figure.Figure` of ``description`` (what
    :func:`save_figure` writes; tests read its artists)."""
    import matplotlib

    if width not in fs.WIDTHS_MM:
        raise UserError(f"figure width must be {' or '.join(repr(w) for w in fs.WIDTHS_MM)} "
                        f"(journal columns of {' / '.join(f'{v:g} mm' for v in fs.WIDTHS_MM.values())}), "
                        f"got {width!r}")
    drawer = _drawer(description)
    with matplotlib.rc_context(fs.RC | {"axes.prop_cycle": fs.prop_cycle()}):
        canvas = _Canvas(fs.WIDTHS_MM[width], footnote)
        if drawer is _draw_km:
            _draw_km(canvas, description, ci_bands=ci_bands)
        else:
            drawer(canvas, description)
        return canvas.figure


def _drawer(description) -> Callable:
    from pathomics_desktop.cohort.flow import Flow
    from pathomics_desktop.figures.cutpoint import CutpointFigure
    from pathomics_desktop.figures.forest import ForestFigure
    from pathomics_desktop.figures.km import KMFigure
    from pathomics_desktop.figures.roc import ModelComparison, TimeDependentRoc

    drawers = {KMFigure: _draw_km, ForestFigure: _draw_forest, TimeDependentRoc: _draw_td_roc,
               ModelComparison: _draw_model_roc, CutpointFigure: _draw_cutpoint, Flow: _draw_flow,
               SlideHeatmapFigure: _draw_slide}
    for kind, drawer in drawers.items():
        if isinstance(description, kind):
            return drawer
    names = ", ".join(k.__name__ for k in drawers)
    raise UserError(f"{type(description).__name__} has no publication drawing; figures are drawn for {names} "
                    "(tables such as Table 1 and the Cox table are exported as DOCX/XLSX/CSV/LaTeX tables)")


def _write(fig, target: Path, fmt: str) -> None:
    """Write ``fig`` as ``fmt`` to ``target`` (without a creation date: same figure, same bytes)."""
    import matplotlib

    with matplotlib.rc_context(fs.RC):
        if fmt == "png":
            fig.savefig(target, format="png", dpi=fs.PNG_DPI, metadata={"Software": "Pathomics Desktop"})
        elif fmt == "pdf":
            fig.savefig(target, format="pdf", metadata={"Creator": "Pathomics Desktop", "CreationDate": None})
        else:
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "Pathomics Desktop"})
            target.write_text(_finish_svg(buffer.getvalue(), fig), encoding="utf-8")


def _finish_svg(svg: str, fig) -> str:
    """Width and height in mm (the viewBox stays in pt), and the fonts of the ``<text>``
    labels embedded as ``@font-face`` data URLs (subsets holding the drawn characters)."""
    w_in, h_in = fig.get_size_inches()
    svg = re.sub(r'(<svg[^>]*?)width="[^"]*"', rf'\1width="{w_in * fs.MM_PER_INCH:.2f}mm"', svg, count=1)
    svg = re.sub(r'(<svg[^>]*?)height="[^"]*"', rf'\1height="{h_in * fs.MM_PER_INCH:.2f}mm"', svg, count=1)
    faces = []
    for weight, chars in _svg_characters(svg).items():
        data = _font_subset(weight, chars)
        faces.append(f"@font-face {{ font-family: '{fs.FONT}'; font-weight: {weight}; "
                     f"src: url(data:font/ttf;base64,{data}) format('truetype'); }}")
    if faces:
        style = "<defs><style type=\"text/css\">" + " ".join(faces) + "</style></defs>"
        svg = re.sub(r"(<svg[^>]*>)", lambda m: m.group(1) + "\n" + style, svg, count=1)
    return svg


def _svg_characters(svg: str) -> dict[int, str]:
    """Characters of the SVG's ``<text>`` elements, by font weight (400 or 700)."""
    import html

    out: dict[int, set[str]] = {}
    for style, body in re.findall(r"<text[^>]*style=\"([^\"]*)\"[^>]*>(.*?)</text>", svg, flags=re.S):
        weight = 700 if re.search(r"\bbold\b|font-weight:\s*(bold|[6-9]00)", style) else 400
        text = html.unescape(re.sub(r"<[^>]+>", "", body))
        out.setdefault(weight, set()).update(text)
    return {w: "".join(sorted(c)) for w, c in out.items()}


def _font_subset(weight: int, chars: str) -> str:
    """Base64 of a TrueType subset of :data:`FONT` (``weight``) holding ``chars``."""
    from fontTools import subset
    from fontTools.ttLib import TTFont
    from matplotlib.font_manager import FontProperties, findfont

    path = findfont(FontProperties(family=fs.FONT, weight="bold" if weight >= 600 else "normal"))
    font = TTFont(path, recalcTimestamp=False)  # no save time in the file: same figure, same bytes
    options = subset.Options()
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.drop_tables = [*options.drop_tables, "FFTM"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars + " ")
    subsetter.subset(font)
    buffer = io.BytesIO()
    font.save(buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------------------------
# layout in millimetres
# ----------------------------------------------------------------------------------------------


class _Canvas:
    """A figure laid out top-down in mm: the drawers reserve ``height`` first, then place axes
    and texts at mm positions measured from the top-left corner; :attr:`figure` builds the
    matplotlib figure at the final height (the footnote goes under everything)."""

    def __init__(self, width_mm: float, footnote: str | None):
        self.width = width_mm
        self.footnote = footnote
        self.items: list[Callable] = []
        self.height = 0.0
        self._figure = None

    def reserve(self, height_mm: float) -> float:
        """Reserve ``height_mm`` below what is reserved; returns its top (mm from the top)."""
        top = self.height
        self.height += height_mm
        return top

    def start(self):
        """Create the figure at the reserved height plus the footnote."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        lines = fs.wrap(self.footnote, self.width - 4.0, fs.TINY_PT) if self.footnote else []
        foot = (len(lines) * fs.line_mm(fs.TINY_PT) + 2.0) if lines else 0.0
        self.total = self.height + foot + 1.0
        fig = Figure(figsize=(self.width / fs.MM_PER_INCH, self.total / fs.MM_PER_INCH), dpi=100)
        FigureCanvasAgg(fig)
        if lines:
            self.text(2.0, self.height + 1.5, "\n".join(lines), size=fs.TINY_PT, va="top", ha="left",
                      color="#333333", gid="footnote", linespacing=1.2, fig=fig)
        self._figure = fig
        return fig

    @property
    def figure(self):
        return self._figure

    def axes(self, left: float, top: float, width: float, height: float, label: str, **kw):
        """Axes at mm (left, top, width, height) from the figure's top-left corner."""
        return self._figure.add_axes((left / self.width, 1.0 - (top + height) / self.total,
                                      width / self.width, height / self.total), label=label, **kw)

    def text(self, x: float, y: float, s: str, fig=None, **kw):
        fig = fig or self._figure
        return fig.text(x / self.width, 1.0 - y / self.total, s, **kw)

    def fx(self, x_mm: float) -> float:
        return x_mm / self.width


def _widths(rows: Sequence[Sequence[str]], size: float, bold_first_row: bool = True) -> list[float]:
    """Widest text of each column, mm."""
    out = [0.0] * max(len(r) for r in rows)
    for i, row in enumerate(rows):
        weight = "bold" if bold_first_row and i == 0 else "normal"
        for j, cell in enumerate(row):
            out[j] = max(out[j], fs.text_width_mm(str(cell), size, weight))
    return out


def _hide_spines(ax, *sides: str) -> None:
    for side in sides:
        ax.spines[side].set_visible(False)


def _p_phrase(p) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


# ----------------------------------------------------------------------------------------------
# Kaplan-Meier
# ----------------------------------------------------------------------------------------------

RISK_BLOCKS = (("Number at risk", "at_risk"), ("Cumulative events", "events_by"), ("Censored", "censored_by"))


def km_legend_rows(figure) -> list[list[str]]:
    """The legend table of :func:`pathomics_desktop.figures.km.legend_rows`, without the HR and p
    columns when there is no reference group."""
    from pathomics_desktop.figures.km import legend_rows

    rows = legend_rows(figure)
    if figure.reference is None:
        rows = [r[:4] for r in rows]
    return rows


def km_test_lines(figure) -> list[str]:
    lines = []
    if figure.logrank is not None:
        lr = figure.logrank
        lines.append(f"Log-rank p {_p_phrase(lr['p'])} (\u03c7\u00b2 = {lr['chisq']:.2f}, {lr['df']} df)")
    if figure.trend is not None:
        lines.append(f"Log-rank test for trend p {_p_phrase(figure.trend['p'])} "
                     f"(\u03c7\u00b2 = {figure.trend['chisq']:.2f}, 1 df)")
    return lines


def _step_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of a right-continuous step function through (x_i, y_i)."""
    return np.repeat(x, 2)[1:], np.repeat(y, 2)[:-1]


def _draw_km(canvas: _Canvas, figure, *, ci_bands: bool | None = None) -> None:
    W = canvas.width
    if ci_bands is None:
        ci_bands = len(figure.groups) <= 2
    double = W > 120
    size = fs.SMALL_PT
    legend = km_legend_rows(figure)
    tests = km_test_lines(figure)
    gap = 2.6
    swatch = 4.0
    while True:
        col_w = _widths(legend, size)
        if swatch + sum(col_w) + gap * (len(col_w) - 1) <= W - 4.0 or size <= fs.MIN_PT:
            break
        size -= 0.25
    row_h = fs.line_mm(size, 1.35)
    legend_top = canvas.reserve(1.5)
    canvas.reserve(row_h * (len(legend) + len(tests)) + 1.5)
    label_w = max([fs.text_width_mm(g.label, fs.SMALL_PT) for g in figure.groups]
                  + [fs.text_width_mm(h, fs.SMALL_PT, "bold") - 6.0 for h, _ in RISK_BLOCKS] + [6.0])
    left = max(12.0, label_w + 4.5)
    right = 3.5
    plot_w = W - left - right
    plot_h = 62.0 if double else 48.0
    plot_top = canvas.reserve(plot_h)
    canvas.reserve(8.5)
    blocks = [(title, key) for title, key in RISK_BLOCKS]
    risk_lines = sum(1 + len(figure.groups) for _ in blocks)
    risk_size = fs.SMALL_PT
    risk_h_line = fs.line_mm(risk_size, 1.25)
    risk_top = canvas.reserve(risk_lines * risk_h_line + 1.0)
    fig = canvas.start()

    # legend table
    y = legend_top + row_h * 0.5
    x0 = 2.0
    xs = []
    x = x0 + swatch
    for j, w in enumerate(col_w):
        xs.append(x + (w if j else 0.0))  # first column left-aligned, the others right-aligned
        x += w + gap
    for i, row in enumerate(legend):
        yy = y + i * row_h
        for j, cell in enumerate(row):
            colour = group_colour(figure.groups[i - 1].index) if (i and j == 0) else fs.INK
            canvas.text(xs[j], yy, cell, size=size, ha="left" if j == 0 else "right", va="center",
                        weight="bold" if i == 0 else "normal", color=colour, gid=f"km-legend:{i}:{j}")
        if i:
            colour = group_colour(figure.groups[i - 1].index)
            fig.add_artist(_line_artist(canvas, x0, x0 + swatch - 1.0, yy, colour))
    for k, line in enumerate(tests):
        canvas.text(x0, y + (len(legend) + k) * row_h, line, size=size, ha="left", va="center",
                    gid=f"km-test:{k}")

    # curves
    ax = canvas.axes(left, plot_top, plot_w, plot_h, "km-curves")
    x_min = -0.02 * figure.x_max
    for group in figure.groups:
        colour = group_colour(group.index)
        sx, sy = _step_xy(group.time, group.survival)
        ax.plot(sx, sy, color=colour, lw=0.9, solid_joinstyle="miter", gid=f"km-curve:{group.label}")
        if ci_bands:
            lower = np.where(np.isfinite(group.lower), group.lower, np.nan)
            upper = np.where(np.isfinite(group.upper), group.upper, np.nan)
            ax.fill_between(group.time, lower, upper, step="post", color=colour, alpha=0.15, lw=0)
        if group.censor_time.size:
            ax.plot(group.censor_time, group.censor_survival, ls="none", marker="+", ms=3.0, mew=0.6,
                    color=colour, gid=f"km-censor:{group.label}")
    ax.set_xlim(x_min, figure.x_max * 1.01)
    ax.set_ylim(0.0, 1.02)
    ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0], ["0", "0.25", "0.50", "0.75", "1.00"])
    ax.set_xticks(figure.breaks, [f"{b:g}" for b in figure.breaks])
    ax.set_xlabel(figure.time_label)
    ax.set_ylabel(f"{figure.endpoint_label} probability")
    _hide_spines(ax, "top", "right")

    # the number-at-risk table: the same time axis (shared x)
    risk = canvas.axes(left, risk_top, plot_w, risk_lines * risk_h_line, "km-risk", sharex=ax)
    risk.set_ylim(risk_lines - 0.5, -0.5)
    risk.axis("off")
    spacing = plot_w * (min(np.diff(figure.breaks)) if len(figure.breaks) > 1 else figure.x_max) / (
        figure.x_max * 1.01 - x_min)
    widest = max(fs.text_width_mm(str(v), risk_size) for g in figure.groups for _, k in blocks for v in getattr(g, k))
    while widest > 0.92 * spacing and risk_size > fs.MIN_PT:
        risk_size -= 0.25
        widest = max(fs.text_width_mm(str(v), risk_size) for g in figure.groups for _, k in blocks
                     for v in getattr(g, k))
    from matplotlib.transforms import blended_transform_factory

    label_tf = blended_transform_factory(fig.transFigure, risk.transData)
    row = 0
    for title, key in blocks:
        risk.text(canvas.fx(2.0), row, title, transform=label_tf, size=fs.SMALL_PT, weight="bold", ha="left",
                  va="center", gid=f"km-risk-title:{key}")
        row += 1
        for group in figure.groups:
            colour = group_colour(group.index)
            risk.text(canvas.fx(left - 2.5), row, group.label, transform=label_tf, size=fs.SMALL_PT, ha="right",
                      va="center", color=colour, gid=f"km-risk-label:{key}:{group.label}")
            for k, (b, value) in enumerate(zip(figure.breaks, getattr(group, key))):
                risk.text(b, row, str(value), size=risk_size, ha="center", va="center", clip_on=False,
                          color=colour, gid=f"{key}:{group.label}:{k}")
            row += 1


def _line_artist(canvas: _Canvas, x0: float, x1: float, y: float, colour: str):
    from matplotlib.lines import Line2D

    yf = 1.0 - y / canvas.total
    return Line2D([canvas.fx(x0), canvas.fx(x1)], [yf, yf], transform=canvas.figure.transFigure, color=colour,
                  lw=1.2)


# ----------------------------------------------------------------------------------------------
# forest
# ----------------------------------------------------------------------------------------------


def forest_columns(figure, compact: bool) -> tuple[list[str], list[str], list[list[str]]]:
    """(left columns, right columns, rows: header then one list per description row) of the
    text drawn beside the forest. Full: subgroup, n, events | HR (95% CI), p, interaction p
    (:meth:`ForestRow.texts`). Compact (single column): subgroup, events/n | HR (95% CI), p,
    where a variable's row shows its interaction p (italic)."""
    if compact:
        header = ["Subgroup", "Events/n", "HR (95% CI)", "p"]
        rows = []
        for r in figure.rows:
            t = r.texts()
            if r.kind == "header":
                rows.append([t["subgroup"], "", "", t["p_interaction"]])
            else:
                rows.append([t["subgroup"], f"{t['events']}/{t['n']}", t["hr"], t["p"]])
        return header[:2], header[2:], [header] + rows
    header = ["Subgroup", "n", "Events", "HR (95% CI)", "p", "Interaction p"]
    keys = ("subgroup", "n", "events", "hr", "p", "p_interaction")
    rows = [[r.texts()[k] for k in keys] for r in figure.rows]
    return header[:3], header[3:], [header] + rows


#: the forest's HR axis never reaches beyond these (longer whiskers end in an arrow)
FOREST_AXIS = (0.1, 10.0)


def forest_limits(figure) -> tuple[float, float]:
    """HR axis limits: the estimable rows' CIs with a margin, clipped to :data:`FOREST_AXIS`
    (widened to any point estimate outside it) and always holding 1."""
    rows = [r for r in figure.rows if r.kind != "header" and r.estimable]
    lows = [r.hr_lower for r in rows] or [0.5]
    highs = [r.hr_upper for r in rows] or [2.0]
    hrs = [r.hr for r in rows] or [1.0]
    lo = max(min(min(lows), 1.0) / 1.15, min(FOREST_AXIS[0], min(hrs) / 1.5))
    hi = min(max(max(highs), 1.0) * 1.15, max(FOREST_AXIS[1], max(hrs) * 1.5))
    return lo, hi


def log_ticks(lo: float, hi: float, width_mm: float) -> list[float]:
    """Ticks of a log axis from ``lo`` to ``hi`` drawn ``width_mm`` wide: 1, 2, 5 x 10^k when a
    decade is at least 20 mm wide, 1 and 5 x 10^k from 10 mm, else the decades (1 always)."""
    per_decade = width_mm / max(math.log10(hi / lo), 1e-9)
    mantissas = (1, 2, 5) if per_decade >= 20 else (1, 5) if per_decade >= 10 else (1,)
    ticks = {1.0}
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        ticks.update(m * 10.0 ** k for m in mantissas)
    return sorted(t for t in ticks if lo <= t <= hi)



def _draw_forest(canvas: _Canvas, figure) -> None:
    from matplotlib.patches import Polygon
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    W = canvas.width
    compact = W < 120
    left_heads, _, table = forest_columns(figure, compact)
    n_left = len(left_heads)
    gap = 1.8
    size = fs.SMALL_PT
    min_plot = 22.0
    while True:
        widths = _widths(table, size)
        text_w = sum(widths) + gap * (len(widths) + 1)
        if W - 4.0 - text_w >= min_plot or size <= fs.MIN_PT:
            break
        size -= 0.25
    plot_w = W - 4.0 - text_w
    if plot_w < 15.0:
        raise UserError(f"the forest's text columns need {text_w:.0f} mm; draw it at width='double'")
    n_rows = len(figure.rows)
    row_h = fs.line_mm(size, 1.55)
    top = canvas.reserve(2.0)
    plot_h = row_h * (n_rows + 1.2)
    canvas.reserve(plot_h)
    canvas.reserve(9.0)
    notes = []
    if any(r.flagged for r in figure.rows):
        notes.append(figure.flag_rule)
    if compact:
        notes.append("Italic p on a variable's row: interaction p (likelihood-ratio test).")
    note_lines = [ln for n in notes for ln in fs.wrap(n, W - 4.0, fs.TINY_PT)]
    note_top = canvas.reserve(len(note_lines) * fs.line_mm(fs.TINY_PT) + (1.0 if note_lines else 0.0))
    fig = canvas.start()

    x = 2.0 + gap
    positions = []
    for j, w in enumerate(widths[:n_left]):
        positions.append((x, "left") if j == 0 else (x + w, "right"))
        x += w + gap
    plot_left = x
    x = plot_left + plot_w + gap
    for j, w in enumerate(widths[n_left:]):
        positions.append((x, "left") if j == 0 else (x + w, "right"))
        x += w + gap
    ax = canvas.axes(plot_left, top, plot_w, plot_h, "forest-plot")
    ax.set_ylim(n_rows - 0.4, -1.8)
    ax.set_xscale("log")
    x_lo, x_hi = forest_limits(figure)
    ax.set_xlim(x_lo, x_hi)
    ticks = log_ticks(x_lo, x_hi, plot_w)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.axvline(1.0, color=fs.INK, lw=0.5, ls=(0, (3, 2)), zorder=1)
    ax.yaxis.set_visible(False)
    _hide_spines(ax, "top", "right", "left")
    ax.set_xlabel(f"HR ({figure.exposure_level} vs {figure.reference_level})" if figure.reference_level
                  else f"HR ({figure.exposure_level})")
    max_events = max([r.events or 0 for r in figure.rows if r.kind == "level"] or [1]) or 1
    for i, r in enumerate(figure.rows):
        if r.kind == "header" or not r.estimable:
            continue
        colour = fs.GREY if r.flagged else PALETTE[0]
        lo, hi = max(r.hr_lower, x_lo), min(r.hr_upper, x_hi)
        ax.plot([lo, hi], [i, i], color=colour, lw=0.7, solid_capstyle="butt", gid=f"forest-ci:{i}")
        for edge, clipped, marker in ((lo, r.hr_lower < x_lo, "<"), (hi, r.hr_upper > x_hi, ">")):
            if clipped:
                ax.plot([edge], [i], marker=marker, ms=2.5, color=colour, ls="none")
        if r.kind == "overall":
            half = 0.32
            ax.add_patch(Polygon([(r.hr_lower, i), (r.hr, i - half), (r.hr_upper, i), (r.hr, i + half)],
                                 closed=True, color=fs.INK, lw=0, gid="forest-overall"))
        else:
            side = 1.2 + 3.3 * math.sqrt((r.events or 0) / max_events)  # area proportional to events
            ax.plot([r.hr], [i], marker="s", ms=side, color=colour, ls="none", mew=0, gid=f"forest-box:{i}")
    from matplotlib.transforms import blended_transform_factory

    tf = blended_transform_factory(fig.transFigure, ax.transData)
    for j, heading in enumerate(table[0]):
        xj, ha = positions[j]
        ax.text(canvas.fx(xj), -1.0, heading, transform=tf, size=size, weight="bold", ha=ha, va="center",
                gid=f"forest-head:{j}")
    for i, (r, cells) in enumerate(zip(figure.rows, table[1:])):
        for j, cell in enumerate(cells):
            if not cell:
                continue
            xj, ha = positions[j]
            italic = compact and r.kind == "header" and j == len(cells) - 1
            ax.text(canvas.fx(xj), i, cell, transform=tf, size=size, ha=ha, va="center",
                    weight="bold" if (r.kind != "level" and j == 0) else "normal",
                    style="italic" if italic else "normal", color=fs.GREY if r.flagged else fs.INK,
                    gid=f"forest-cell:{i}:{j}")
    for k, line in enumerate(note_lines):
        canvas.text(2.0, note_top + (k + 0.5) * fs.line_mm(fs.TINY_PT), line, size=fs.TINY_PT, va="center",
                    gid=f"forest-note:{k}")


# ----------------------------------------------------------------------------------------------
# panels (ROC, cutpoint)
# ----------------------------------------------------------------------------------------------


def _panel_grid(canvas: _Canvas, n: int, ncols: int, *, aspect: float = 1.0, left: float = 10.0,
                right: float = 3.0, hgap: float = 11.0, vgap: float = 11.0,
                top_pad: float = 4.0) -> list[tuple[float, float, float, float]]:
    """Reserve rows of ``n`` panels (mm rects: left, top, width, height), ``ncols`` a row."""
    ncols = max(1, min(ncols, n))
    pw = (canvas.width - left - right - hgap * (ncols - 1)) / ncols
    ph = pw * aspect
    rects = []
    for r in range(math.ceil(n / ncols)):
        top = canvas.reserve(top_pad + ph + vgap) + top_pad
        for c in range(ncols):
            if r * ncols + c < n:
                rects.append((left + c * (pw + hgap), top, pw, ph))
    return rects


def _roc_axes(ax, title: str) -> None:
    ax.plot([0, 1], [0, 1], color=fs.GREY, lw=0.5, ls=(0, (3, 2)), zorder=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("Sensitivity")
    ax.set_title(title, size=fs.TEXT_PT)
    _hide_spines(ax, "top", "right")


def _auc_legend(ax, handles, labels, size: float):
    return ax.legend(handles, labels, loc="lower right", fontsize=size, handlelength=1.2, handletextpad=0.4,
                     borderaxespad=0.2, labelspacing=0.25)


def _markers_legend(canvas: _Canvas, top: float, entries: list[tuple[str, str]]) -> None:
    """Coloured line + name per entry, in rows across the figure from mm ``top``."""
    x, y = 2.0, top + fs.line_mm(fs.SMALL_PT) * 0.6
    for k, (label, colour) in enumerate(entries):
        w = 5.0 + fs.text_width_mm(label, fs.SMALL_PT) + 4.0
        if x + w > canvas.width - 2.0 and x > 2.0:
            x, y = 2.0, y + fs.line_mm(fs.SMALL_PT, 1.45)
        canvas.figure.add_artist(_line_artist(canvas, x, x + 4.0, y, colour))
        canvas.text(x + 5.0, y, label, size=fs.SMALL_PT, va="center", gid=f"legend-marker:{k}")
        x += w


def _legend_height(canvas: _Canvas, labels: list[str]) -> float:
    x, lines = 2.0, 1
    for label in labels:
        w = 5.0 + fs.text_width_mm(label, fs.SMALL_PT) + 4.0
        if x + w > canvas.width - 2.0 and x > 2.0:
            x, lines = 2.0, lines + 1
        x += w
    return lines * fs.line_mm(fs.SMALL_PT, 1.45) + 1.0


def td_roc_marker_label(marker) -> str:
    return f"{marker.label} (n = {marker.n}, {marker.events} events)"


def _draw_td_roc(canvas: _Canvas, figure) -> None:
    double = canvas.width > 120
    times = [t for t in figure.times if any(t in m.curves for m in figure.markers)]
    with_grid = any(m.grid_times for m in figure.markers)
    n = len(times) + (1 if with_grid else 0)
    if n == 0:
        raise UserError("the time-dependent ROC has no estimable time to draw")
    entries = [(td_roc_marker_label(m), group_colour(i)) for i, m in enumerate(figure.markers)]
    legend_top = canvas.reserve(_legend_height(canvas, [e[0] for e in entries]))
    rects = _panel_grid(canvas, n, 4 if double else 2)
    canvas.start()
    _markers_legend(canvas, legend_top, entries)
    from matplotlib.lines import Line2D

    for p, t in enumerate(times):
        ax = canvas.axes(*rects[p], f"roc:{t:g}")
        _roc_axes(ax, f"{t:g} months")
        handles, labels = [], []
        for i, m in enumerate(figure.markers):
            k = m.times.index(t)
            if t not in m.curves:
                continue
            curve = m.curves[t]
            ax.plot(curve["fpr"], curve["tpr"], color=group_colour(i), lw=0.8, gid=f"roc-curve:{t:g}:{m.column}")
            handles.append(Line2D([], [], color=group_colour(i), lw=1.0))
            labels.append(f"AUC {m.auc_text(k)}")
        _auc_legend(ax, handles, labels, fs.TINY_PT if len(labels) > 2 else fs.SMALL_PT)
    if with_grid:
        ax = canvas.axes(*rects[-1], "auc-over-time")
        lows = [0.5]
        for i, m in enumerate(figure.markers):
            if m.grid_times:
                ax.plot(m.grid_times, m.grid_auc, color=group_colour(i), lw=0.8, gid=f"auc-t:{m.column}")
                lows += list(m.grid_auc)
            pts = [(t, a) for t, a in zip(m.times, m.auc) if a is not None]
            if pts:
                ax.plot(*zip(*pts), ls="none", marker="o", ms=2.2, color=group_colour(i), gid=f"auc-at:{m.column}")
                lows += [a for _, a in pts]
        ax.axhline(0.5, color=fs.GREY, lw=0.5, ls=(0, (3, 2)))
        ax.set_ylim(max(0.0, math.floor(min(lows) * 10 - 0.5) / 10), 1.0)
        ax.set_xlim(left=0)
        ax.set_xlabel("Time (months)")
        ax.set_ylabel("AUC(t)")
        ax.set_title("AUC over time", size=fs.TEXT_PT)
        _hide_spines(ax, "top", "right")


def _draw_model_roc(canvas: _Canvas, figure) -> None:
    from matplotlib.lines import Line2D

    levels = [lvl for lvl in ("patch", "slide") if any(r.level == lvl and r.auc is not None for r in figure.rocs)]
    if not levels:
        raise UserError("no model run has an AUC to draw (only one prognosis class)")
    rects = _panel_grid(canvas, len(levels), 2, top_pad=5.0)
    canvas.start()
    for p, level in enumerate(levels):
        ax = canvas.axes(*rects[p], f"roc:{level}")
        rocs = [r for r in figure.rocs if r.level == level and r.auc is not None]
        _roc_axes(ax, f"{level.capitalize()} level (n = {rocs[0].n})")
        handles, labels = [], []
        for r in rocs:
            i = figure.runs.index(r.run)
            ax.plot(r.fpr, r.tpr, color=group_colour(i), lw=0.8, gid=f"roc-curve:{level}:{r.run}")
            handles.append(Line2D([], [], color=group_colour(i), lw=1.0))
            labels.append(f"{r.run}: {r.auc_text()}")
        _auc_legend(ax, handles, labels, fs.TINY_PT)


def _draw_cutpoint(canvas: _Canvas, figure) -> None:
    import matplotlib.colors as mcolors

    from pathomics_desktop.figures.km import ENDPOINTS

    double = canvas.width > 120
    n = 3 if figure.bootstrap is not None else 2
    unit = f" ({figure.unit})" if figure.unit else ""
    rects = _panel_grid(canvas, n, n if double else 1, aspect=0.62 if not double else 1.0, left=12.0,
                        right=14.0 if not double else 3.0, hgap=22.0 if double else 11.0, top_pad=11.0)
    canvas.start()
    # maxstat curve
    ax = canvas.axes(*rects[0], "maxstat")
    ax.plot(figure.cuts, figure.statistics, color=PALETTE[0], lw=0.8, gid="maxstat-curve")
    ax.axvline(figure.cutpoint, color=PALETTE[1], lw=0.7, gid="maxstat-cut")
    if figure.chosen_cut != figure.cutpoint:
        ax.axvline(figure.chosen_cut, color=PALETTE[2], lw=0.7, ls=(0, (3, 2)), gid="chosen-cut")
    if figure.reference_cut is not None:
        ax.axvline(figure.reference_cut, color=fs.GREY, lw=0.7, ls=(0, (1, 1.5)), gid="reference-cut")
    ax.set_xlabel(figure.marker_label + unit)
    ax.set_ylabel("Standardized log-rank statistic")
    ax.set_title(f"{ENDPOINTS[figure.endpoint][2]}, {figure.data_set} set (n = {figure.n}, "
                 f"{figure.events} events)\n" + cutpoint_text(figure), size=fs.SMALL_PT, linespacing=1.3)
    _hide_spines(ax, "top", "right")
    # X-tile map
    left, top, w, h = rects[1]
    side = min(w, h)
    ax = canvas.axes(left, top, side, side, "xtile")
    chi2 = np.array([[np.nan if v is None else v for v in row] for row in figure.xtile_chi2], float)
    cuts = np.asarray(figure.xtile_cuts, float)
    cmap = _lut_colormap("viridis")
    mesh = ax.pcolormesh(cuts, cuts, np.ma.masked_invalid(chi2.T), shading="nearest", cmap=cmap,
                         norm=mcolors.Normalize(vmin=0, vmax=np.nanmax(chi2) if np.isfinite(chi2).any() else 1),
                         gid="xtile-map", rasterized=False)
    ax.plot([figure.xtile_pair[0]], [figure.xtile_pair[1]], marker="o", mfc="none", mec="white", mew=0.8, ms=4,
            ls="none", gid="xtile-best")
    ax.set_xlabel(f"Low/mid cut{unit}")
    ax.set_ylabel(f"Mid/high cut{unit}")
    ax.set_title(f"X-tile: best pair {figure.xtile_pair[0]:.3g} / {figure.xtile_pair[1]:.3g}, "
                 f"\u03c7\u00b2 = {figure.xtile_pair_chi2:.1f}", size=fs.SMALL_PT)
    cax = canvas.axes(left + side + 1.5, top, 2.0, side, "xtile-colorbar")
    bar = canvas.figure.colorbar(mesh, cax=cax)
    bar.set_label("\u03c7\u00b2 (2 df)", size=fs.SMALL_PT)
    bar.ax.tick_params(labelsize=fs.TINY_PT, width=0.4, length=1.5)
    bar.outline.set_linewidth(0.4)
    if figure.bootstrap is not None:
        boot = figure.bootstrap
        ax = canvas.axes(*rects[2], "bootstrap")
        ax.hist(boot.cuts, bins=min(30, max(5, len(boot.cuts) // 5)), color=PALETTE[5], edgecolor="white", lw=0.3,
                gid="bootstrap-hist")
        ax.axvline(figure.chosen_cut, color=PALETTE[1], lw=0.7)
        ax.axvspan(figure.chosen_cut - boot.window, figure.chosen_cut + boot.window, color=PALETTE[1], alpha=0.12,
                   lw=0)
        ax.set_xlabel(f"Maxstat cut of the resample{unit}")
        ax.set_ylabel("Resamples")
        ax.set_title(f"Bootstrap: {boot.share_within:.0%} of {boot.reps} cuts\nwithin \u00b1{boot.window:.3g} of "
                     f"{figure.chosen_cut:.4g}", size=fs.SMALL_PT, linespacing=1.3)
        _hide_spines(ax, "top", "right")


def cutpoint_text(figure) -> str:
    """The maxstat summary drawn over the curve: the cut, its statistic and corrected p, and
    at the chosen cut the HR high vs low (``validate_cut``)."""
    line = f"Cut {figure.cutpoint:.4g}: |S| = {figure.statistic:.2f}, p (Lausen 1994) {_p_phrase(figure.p_lau94)}"
    chosen = figure.chosen or {}
    hr = [(chosen.get(k) or [None])[0] for k in ("hr", "hr_lower", "hr_upper")]
    if hr[0] is not None:
        line += f"\nAt {figure.chosen_cut:.4g}: HR high vs low {format_estimate_ci(*hr)}"
    return line


def _lut_colormap(name: str):
    """The viewer's colour map (:func:`pathomics_desktop.slides.overlays.colormap_lut`) for matplotlib."""
    from matplotlib.colors import ListedColormap

    from pathomics_desktop.slides.overlays import colormap_lut

    return ListedColormap(colormap_lut(name) / 255.0, name=f"pathomics-{name}").with_extremes(bad=(0, 0, 0, 0))


# ----------------------------------------------------------------------------------------------
# CONSORT flow
# ----------------------------------------------------------------------------------------------

INDENT = "    "
SETS = (("training", "Training set"), ("internal", "Internal validation set"),
        ("external", "External validation set"), ("unassigned", "Not yet assigned"))


def _count(n: int) -> str:
    """``"(n = 12)"`` with no-break spaces, so a wrapped box title keeps it on one line."""
    return f"(n\u00a0=\u00a0{n})"


def _by_center(flow, get) -> str:
    parts = [f"{c.center} {get(c)}" for c in flow.centers if get(c)]
    return ", ".join(parts)


def flow_boxes(flow) -> dict[str, list[str]]:
    """The text of each box of the flow diagram (first line = the box's title and count)."""
    from pathomics_desktop.cohort.table import EXCLUSION_REASONS

    total = flow.total
    several = len(flow.centers) > 1
    boxes = {"enrolled": [f"Patients enrolled {_count(total.enrolled)}"]}
    if several:
        boxes["enrolled"].append(_by_center(flow, lambda c: c.enrolled))
    excluded = sum(total.excluded.values())
    lines = [f"Excluded {_count(excluded)}"]
    for reason in EXCLUSION_REASONS:
        count = total.excluded.get(reason, 0)
        lines.append(f"{reason}: {count}")
        if several and count:
            lines.append(INDENT + _by_center(flow, lambda c, r=reason: c.excluded.get(r, 0)))
    boxes["excluded"] = lines
    boxes["included"] = [f"Included {_count(total.included)}"]
    if several:
        boxes["included"].append(_by_center(flow, lambda c: c.included))
    for key, title in SETS:
        count = getattr(total, key)
        if key == "unassigned" and not count:
            continue
        boxes[key] = [f"{title} {_count(count)}"]
        if several and count:
            boxes[key].append(_by_center(flow, lambda c, k=key: getattr(c, k)))
    return boxes


def _draw_flow(canvas: _Canvas, flow) -> None:
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    W = canvas.width
    size = fs.SMALL_PT if W > 120 else fs.TINY_PT
    lh = fs.line_mm(size, 1.3)
    pad = 1.5
    boxes = flow_boxes(flow)
    sets = [k for k, _ in SETS if k in boxes]
    main_w = W * 0.42
    side_x = main_w + 8.0
    side_w = W - side_x - 2.0
    bottom_w = (W - 4.0 - 3.0 * (len(sets) - 1)) / len(sets)

    def wrapped(lines: list[str], width: float) -> list[tuple[str, bool, float]]:
        """(text, bold, indent mm) of each drawn line."""
        out = []
        for i, line in enumerate(lines):
            indent = 2.5 if line.startswith(INDENT) else 0.0
            out += [(part, i == 0, indent) for part in fs.wrap(line.strip(), width - 2 * pad - indent, size)]
        return out

    texts = {"enrolled": wrapped(boxes["enrolled"], main_w), "excluded": wrapped(boxes["excluded"], side_w),
             "included": wrapped(boxes["included"], main_w)}
    for key in sets:
        texts[key] = wrapped(boxes[key], bottom_w)

    def height(key):
        return len(texts[key]) * lh + 2 * pad

    top = canvas.reserve(2.0) + 1.0
    y_enrolled = top
    y_excluded = y_enrolled + height("enrolled") + 4.0
    y_included = y_excluded + height("excluded") + 4.0
    y_sets = y_included + height("included") + 6.0
    canvas.reserve(y_sets - top + max(height(k) for k in sets) + 2.0)
    canvas.start()
    ax = canvas.axes(0, 0, W, canvas.total, "flow")
    ax.set_xlim(0, W)
    ax.set_ylim(canvas.total, 0)
    ax.axis("off")
    x_main = 2.0

    def box(key, x, y, w):
        h = height(key)
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="square,pad=0", fc="white", ec=fs.INK, lw=0.6,
                                    gid=f"flow-box:{key}"))
        for i, (line, bold, indent) in enumerate(texts[key]):
            ax.text(x + pad + indent, y + pad + (i + 0.5) * lh, line, size=size, va="center", ha="left",
                    weight="bold" if bold else "normal", gid=f"flow-text:{key}:{i}")
        return h

    def arrow(x0, y0, x1, y1):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=5, lw=0.6,
                                     color=fs.INK, shrinkA=0, shrinkB=0))

    h_enrolled = box("enrolled", x_main, y_enrolled, main_w)
    box("excluded", side_x, y_excluded, side_w)
    box("included", x_main, y_included, main_w)
    cx = x_main + main_w / 2
    arrow(cx, y_enrolled + h_enrolled, cx, y_included)
    branch = y_excluded + min(height("excluded"), 6.0) / 2
    ax.plot([cx, side_x - 0.3], [branch, branch], color=fs.INK, lw=0.6)
    arrow(side_x - 3.0, branch, side_x, branch)
    y_split = y_sets - 3.0
    ax.plot([cx, cx], [y_included + height("included"), y_split], color=fs.INK, lw=0.6)
    centres = [2.0 + k * (bottom_w + 3.0) + bottom_w / 2 for k in range(len(sets))]
    ax.plot([min(centres), max(centres)], [y_split, y_split], color=fs.INK, lw=0.6)
    for k, key in enumerate(sets):
        arrow(centres[k], y_split, centres[k], y_sets)
        box(key, 2.0 + k * (bottom_w + 3.0), y_sets, bottom_w)


# ----------------------------------------------------------------------------------------------
# slide thumbnail + heatmap
# ----------------------------------------------------------------------------------------------


def _draw_slide(canvas: _Canvas, figure: SlideHeatmapFigure) -> None:
    import matplotlib.colors as mcolors
    from matplotlib.cm import ScalarMappable
    from matplotlib.patches import Rectangle

    rgb = np.asarray(figure.rgb)
    probs = np.asarray(figure.probabilities, float)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UserError(f"slide figure {figure.title!r}: the thumbnail must be an RGB image (h, w, 3), "
                        f"got shape {rgb.shape}")
    if probs.ndim != 2:
        raise UserError(f"slide figure {figure.title!r}: the heatmap must be a 2-D grid, got shape {probs.shape}")
    if figure.mpp is None or not (figure.mpp > 0):
        raise UserError(f"slide figure {figure.title!r}: the scale bar needs the slide's MPP (micrometres per "
                        "pixel); set it in the slide list (MPP override) and export again")
    W = canvas.width
    h, w = rgb.shape[:2]
    bar_room = 13.0
    img_w = W - 4.0 - bar_room
    img_h = img_w * h / w
    if img_h > 1.2 * W:
        img_h = 1.2 * W
        img_w = img_h * w / h
    title_top = canvas.reserve(fs.line_mm(fs.TEXT_PT, 1.5) if figure.title else 1.0)
    img_top = canvas.reserve(img_h + 2.0)
    canvas.start()
    if figure.title:
        canvas.text(2.0, title_top + fs.line_mm(fs.TEXT_PT, 1.5) / 2, figure.title, size=fs.TEXT_PT, va="center",
                    gid="slide-title")
    ax = canvas.axes(2.0, img_top, img_w, img_h, "slide")
    ax.imshow(rgb.astype(np.uint8), interpolation="antialiased", gid="slide-rgb")
    cmap = _lut_colormap(figure.colormap)
    norm = mcolors.Normalize(0.0, 1.0)
    ax.imshow(np.ma.masked_invalid(probs), cmap=cmap, norm=norm, alpha=figure.alpha, extent=figure.extent(),
              interpolation="nearest", gid="slide-heatmap")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    um = figure.scale_bar_um()
    length = um / (figure.mpp * figure.downsample)
    x0, y0 = 0.04 * w, 0.94 * h
    thick = max(h * 0.012, 1.0)
    ax.add_patch(Rectangle((x0 - 0.01 * w, y0 - 0.075 * h), length + 0.02 * w, 0.075 * h + thick + 0.01 * h,
                           fc="white", ec="none", alpha=0.8))
    ax.add_patch(Rectangle((x0, y0), length, thick, fc=fs.INK, ec="none", gid="scale-bar"))
    ax.text(x0 + length / 2, y0 - 0.012 * h, scale_label(um), size=fs.SMALL_PT, ha="center", va="bottom",
            gid="scale-label")
    cax = canvas.axes(2.0 + img_w + 2.0, img_top + img_h * 0.1, 2.2, img_h * 0.8, "slide-colorbar")
    bar = canvas.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    bar.set_label(figure.label, size=fs.SMALL_PT)
    bar.set_ticks([0, 0.25, 0.5, 0.75, 1.0])
    bar.ax.tick_params(labelsize=fs.TINY_PT, width=0.4, length=1.5)
    bar.outline.set_linewidth(0.4)


__all__ = ["FORMATS", "SlideHeatmapFigure", "draw_figure", "save_figure", "scale_label", "slide_figure"]
