"""Publication drawings (``reports.figures``): the numbers drawn are the description's numbers,
read back from the matplotlib artists and checked against the description and against counts
done another way (brute force on the snapshot, the cohort table); the written files are opened
with their own readers (PIL for PNG dpi and pixel size, the PDF's font objects, an XML parser
and fontTools for the SVG's text and embedded font). Cohorts are SYNTHETIC."""

from __future__ import annotations

import base64
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.cutpoint import build_cutpoint
from pathomics_desktop.figures.forest import build_forest
from pathomics_desktop.figures.km import build_km
from pathomics_desktop.figures.roc import ModelComparison, ModelRoc, build_td_roc
from pathomics_desktop.reports.figure_style import PNG_DPI, WIDTHS_MM
from pathomics_desktop.reports.figures import SlideHeatmapFigure, draw_figure, flow_boxes, save_figure, slide_figure
from tests.figures.test_forest_figure import frame, source  # noqa: F401 (fixtures: the SYNTHETIC clinical snapshot)

FOOT = "SYNTHETIC cohort. Filter: all patients; snapshot 0123abcd"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def km(source, frame):
    return build_km(source, frame, {"endpoint": "os"})


@pytest.fixture(scope="module")
def forest(source, frame):
    return build_forest(source, frame, {"endpoint": "os", "subgroups": ["sex", "surgery_type", "ca19_9_group"]})


def texts(fig, prefix: str) -> dict[str, str]:
    """gid -> string of every Text artist of ``fig`` whose gid starts with ``prefix``."""
    from matplotlib.text import Text

    return {t.get_gid(): t.get_text() for t in fig.findobj(Text) if (t.get_gid() or "").startswith(prefix)}


def axes(fig, label: str):
    return next(a for a in fig.axes if a.get_label() == label)


def ci_text(v, lo, hi) -> str:
    return f"{v:.2f} ({lo:.2f}-{hi:.2f})"


# ----------------------------------------------------------------------------------------------
# the drawn numbers
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", ["single", "double"])
def test_km_risk_table_is_the_descriptions_on_the_curves_time_axis(km, frame, width):
    fig = draw_figure(km, width=width, footnote=FOOT)
    curves, risk = axes(fig, "km-curves"), axes(fig, "km-risk")
    assert risk.get_shared_x_axes().joined(curves, risk) and risk.get_xlim() == curves.get_xlim()
    drawn = texts(fig, "")
    t, e = frame["os_months"].to_numpy(float), frame["os_event"].to_numpy(bool)
    for group in km.groups:
        rows = {key: [int(drawn[f"{key}:{group.label}:{k}"]) for k in range(len(km.breaks))]
                for key in ("at_risk", "events_by", "censored_by")}
        assert rows == {"at_risk": group.at_risk, "events_by": group.events_by, "censored_by": group.censored_by}
        in_group = (frame["pathomics_os_group"] == group.label).to_numpy()
        assert rows["at_risk"] == [int((t[in_group] >= b).sum()) for b in km.breaks]  # brute force
        assert rows["censored_by"] == [int((~e[in_group] & (t[in_group] < b)).sum()) for b in km.breaks]
        # each count sits at its break on the shared time axis
        xs = [a.get_position()[0] for a in risk.texts if a.get_gid().startswith(f"at_risk:{group.label}:")]
        assert xs == pytest.approx(km.breaks)
        marks = next(ln for ln in curves.lines if ln.get_gid() == f"km-censor:{group.label}")
        assert marks.get_marker() == "+" and np.allclose(marks.get_xdata(), group.censor_time)
    high = km.group_by_label("high")
    legend = texts(fig, "km-legend:")
    row = 1 + km.levels.index("high")
    assert [legend[f"km-legend:{row}:{j}"] for j in range(6)] == [
        "high", str(high.n), str(high.events),
        f"{high.median:.1f} ({high.median_lower:.1f}-{high.median_upper:.1f})",
        ci_text(high.hr["hr"], high.hr["hr_lower"], high.hr["hr_upper"]),
        "< 0.001" if high.hr["p"] < 0.001 else f"{high.hr['p']:.3f}"]
    assert legend[f"km-legend:{1 + km.levels.index('low')}:4"] == "1 (reference)"
    p = km.logrank["p"]
    assert texts(fig, "km-test:")["km-test:0"].startswith(
        f"Log-rank p {'< 0.001' if p < 0.001 else '= ' + format(p, '.3f')} (\u03c7\u00b2 = {km.logrank['chisq']:.2f}")
    assert texts(fig, "footnote")["footnote"] == FOOT


def test_forest_columns_are_the_descriptions_rows(forest):
    fig = draw_figure(forest, width="double")
    cells = texts(fig, "forest-cell:")
    keys = ("subgroup", "n", "events", "hr", "p", "p_interaction")
    for i, row in enumerate(forest.rows):
        drawn = [cells.get(f"forest-cell:{i}:{j}", "") for j in range(len(keys))]
        assert drawn == [row.texts()[k] for k in keys]
        if row.kind == "level" and row.estimable:
            assert drawn[3] == ci_text(row.hr, row.hr_lower, row.hr_upper)
    assert list(texts(fig, "forest-head:").values()) == ["Subgroup", "n", "Events", "HR (95% CI)", "p",
                                                          "Interaction p"]
    plot = axes(fig, "forest-plot")
    assert plot.get_xscale() == "log" and any(list(ln.get_xdata()) == [1.0, 1.0] for ln in plot.lines)
    boxes = {int(ln.get_gid().split(":")[1]): ln for ln in plot.lines if (ln.get_gid() or "").startswith("forest-box")}
    level_rows = [i for i, r in enumerate(forest.rows) if r.kind == "level" and r.estimable]
    assert sorted(boxes) == level_rows
    for i in level_rows:
        assert boxes[i].get_xdata()[0] == pytest.approx(forest.rows[i].hr) and boxes[i].get_ydata()[0] == i
    # box area grows with the events: side ~ sqrt(events)
    by_events = sorted(level_rows, key=lambda i: forest.rows[i].events)
    assert [boxes[i].get_markersize() for i in by_events] == sorted(boxes[i].get_markersize() for i in by_events)
    overall = forest.rows[0]
    diamond = next(p for p in plot.patches if p.get_gid() == "forest-overall").get_xy()
    assert diamond[:, 0].min() == pytest.approx(overall.hr_lower)
    assert diamond[:, 0].max() == pytest.approx(overall.hr_upper)
    flagged = [i for i, r in enumerate(forest.rows) if r.flagged]
    assert flagged and all(cells[f"forest-cell:{i}:0"].endswith("\u2020") for i in flagged)  # TP: < 10 events
    assert " ".join(texts(fig, "forest-note:").values()) == forest.flag_rule


def test_forest_single_column_merges_events_and_n(forest):
    fig = draw_figure(forest, width="single")
    cells = texts(fig, "forest-cell:")
    for i, row in enumerate(forest.rows):
        if row.kind == "header":
            assert cells[f"forest-cell:{i}:3"] == row.texts()["p_interaction"]
        else:
            assert cells[f"forest-cell:{i}:1"] == f"{row.events}/{row.n}"
            assert cells[f"forest-cell:{i}:2"] == row.texts()["hr"]


def test_td_roc_legends_hold_the_auc_of_the_description(source, frame):
    fig_desc = build_td_roc(source, frame, {"endpoint": "os", "markers": ["pathomics_os_score", "ca19_9"],
                                            "times": [12, 36], "bootstrap": 10, "grid": True})
    fig = draw_figure(fig_desc, width="double")
    for k, t in enumerate(fig_desc.times):
        ax = axes(fig, f"roc:{t:g}")
        labels = [x.get_text() for x in ax.get_legend().get_texts()]
        expected = []
        for m in fig_desc.markers:
            lo, hi = m.ci_lower[k], m.ci_upper[k]
            expected.append(f"AUC {m.auc[k]:.3f} ({lo:.3f}-{hi:.3f})")
            curve = next(ln for ln in ax.lines if ln.get_gid() == f"roc-curve:{t:g}:{m.column}")
            assert np.allclose(curve.get_xdata(), m.curves[t]["fpr"])
            assert np.allclose(curve.get_ydata(), m.curves[t]["tpr"])
        assert labels == expected
        diagonal = ax.lines[0]
        assert list(diagonal.get_xdata()) == [0, 1] and list(diagonal.get_ydata()) == [0, 1]
    over_time = axes(fig, "auc-over-time")
    score = fig_desc.markers[0]
    line = next(ln for ln in over_time.lines if ln.get_gid() == f"auc-t:{score.column}")
    assert np.allclose(line.get_xdata(), score.grid_times) and np.allclose(line.get_ydata(), score.grid_auc)
    names = texts(fig, "legend-marker:")
    assert names["legend-marker:0"] == f"Pathomics signature (n = {score.n}, {score.events} events)"


def test_model_roc_legend_equals_delong_auc():
    from sklearn.metrics import roc_curve

    from pathomics_desktop.stats.roc import roc_analysis

    rng = np.random.default_rng(3)  # SYNTHETIC patch probabilities of two runs
    label = rng.random(200) < 0.4
    rocs = []
    for k, run in enumerate(("run_a", "run_b")):
        score = (1.2 - 0.8 * k) * label + rng.normal(size=label.size)
        res = roc_analysis(label.astype(int), score)
        fpr, tpr, _ = roc_curve(label, score)
        rocs.append(ModelRoc(run, "slide", label.size, int(label.sum()), res.auc, res.ci_lower, res.ci_upper,
                             res.se, fpr=fpr.tolist(), tpr=tpr.tolist()))
    comparison = ModelComparison(["run_a", "run_b"], rocs, [], 200, 200)
    fig = draw_figure(comparison)
    labels = [t.get_text() for t in axes(fig, "roc:slide").get_legend().get_texts()]
    assert labels == [f"{r.run}: {r.auc:.3f} ({r.ci_lower:.3f}-{r.ci_upper:.3f})" for r in rocs]


def test_xtile_map_is_the_chi_square_matrix_with_a_colour_bar(source, frame):
    cut = build_cutpoint(source, frame, {"endpoint": "os", "xtile_cuts": 12})
    fig = draw_figure(cut, width="double")
    xtile = axes(fig, "xtile")
    mesh = next(c for c in xtile.collections if c.get_gid() == "xtile-map")
    chi2 = np.array([[np.nan if v is None else v for v in row] for row in cut.xtile_chi2], float)
    drawn = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(chi2.T.shape)
    assert np.allclose(drawn, chi2.T, equal_nan=True)  # rows: mid/high cut, columns: low/mid cut
    assert mesh.norm.vmax == pytest.approx(np.nanmax(chi2))
    assert axes(fig, "xtile-colorbar").get_ylabel() == "\u03c7\u00b2 (2 df)"
    best = next(ln for ln in xtile.lines if ln.get_gid() == "xtile-best")
    assert (best.get_xdata()[0], best.get_ydata()[0]) == pytest.approx(cut.xtile_pair)
    curve = next(ln for ln in axes(fig, "maxstat").lines if ln.get_gid() == "maxstat-curve")
    assert np.allclose(curve.get_xdata(), cut.cuts) and np.allclose(curve.get_ydata(), cut.statistics)
    assert f"Cut {cut.cutpoint:.4g}: |S| = {cut.statistic:.2f}" in axes(fig, "maxstat").get_title()


def test_flow_boxes_count_the_cohort_snapshot(demo_root, demo_snapshot):
    from pathomics_desktop.cohort.flow import patient_flow
    from pathomics_desktop.cohort.table import EXCLUSION_REASONS
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry

    registry = open_project_registry(Project.load(demo_root))
    try:
        with registry.session() as session:
            flow = patient_flow(session)
    finally:
        registry.dispose()
    fig = draw_figure(flow, width="double")
    drawn = texts(fig, "flow-text:")
    box = {key: [v for k, v in drawn.items() if k.startswith(f"flow-text:{key}:")] for key in flow_boxes(flow)}
    _, snapshot, _ = demo_snapshot  # the same patients counted from the cohort snapshot
    nbsp = "\u00a0"
    assert box["enrolled"][0] == f"Patients enrolled (n{nbsp}={nbsp}{len(snapshot)})"
    assert box["included"][0] == f"Included (n{nbsp}={nbsp}{int(snapshot['included'].sum())})"
    counts = snapshot["exclusion_reason"].value_counts()
    assert [line for line in box["excluded"] if ":" in line and not line.startswith("A ")] == [
        f"{reason}: {int(counts.get(reason, 0))}" for reason in EXCLUSION_REASONS]
    included = snapshot[snapshot["included"]]
    external = int((included["split"] == "external").sum())
    assert box["external"][0] == f"External validation set (n{nbsp}={nbsp}{external})"
    per_center = included[included["split"] == "training"]["center"].value_counts().sort_index()
    assert box["training"][1] == ", ".join(f"{c} {n}" for c, n in per_center.items())


def synthetic_slide() -> SlideHeatmapFigure:
    """SYNTHETIC: a pink tissue blob on white, a 6 x 8 probability grid (NaN off tissue)."""
    rgb = np.full((300, 400, 3), 240, np.uint8)
    rgb[60:240, 80:330] = (205, 120, 170)
    probs = np.full((6, 8), np.nan)
    probs[1:5, 2:7] = np.linspace(0, 1, 20).reshape(4, 5)
    return SlideHeatmapFigure(rgb, probs, mpp=0.5, title="SYNTHETIC slide, P(poor)", downsample=32.0)


def test_slide_heatmap_scale_bar_in_micrometres_and_colour_bar():
    slide = synthetic_slide()
    fig = draw_figure(slide)
    ax = axes(fig, "slide")
    # 400 px x 32 x 0.5 um = 6400 um wide; a fifth is 1280 um -> a 1000 um bar = 62.5 thumbnail px
    bar = next(p for p in ax.patches if p.get_gid() == "scale-bar")
    assert bar.get_width() == pytest.approx(1000 / (0.5 * 32)) and texts(fig, "scale-label")["scale-label"] == "1 mm"
    heat = next(im for im in ax.images if im.get_gid() == "slide-heatmap")
    assert heat.get_extent() == [0.0, 400.0, 300.0, 0.0]
    assert np.allclose(np.ma.filled(heat.get_array(), np.nan), slide.probabilities, equal_nan=True)
    assert axes(fig, "slide-colorbar").get_ylabel() == "P(poor)"
    with pytest.raises(UserError, match="MPP"):
        draw_figure(SlideHeatmapFigure(slide.rgb, slide.probabilities, mpp=None))


def test_slide_figure_of_a_real_slide_and_its_predictions(tmp_path):
    import pandas as pd

    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide
    from pathomics_desktop.slides.overlays import load_viewer_file

    path = tmp_path / "SYNTHETIC_slide.svs"  # a pyramidal TIFF read by OpenSlide
    write_synthetic_slide(path, width=1024, height=768, aggressiveness=0.5, mpp=0.25, seed=3)
    slide = load_viewer_file(path)
    xy = [(x, y) for x in (256, 512) for y in (0, 256, 512)]  # SYNTHETIC predictions of 256-px tiles
    probs = [0.1, 0.2, 0.3, 0.6, 0.8, 0.95]
    slide.predictions["run_a"] = pd.DataFrame({"x": [p[0] for p in xy], "y": [p[1] for p in xy], "prob": probs})
    figure = slide_figure(slide, size=256)
    assert figure.rgb.shape == (192, 256, 3) and figure.downsample == pytest.approx(4.0) and figure.mpp == 0.25
    assert figure.extent() == pytest.approx((64.0, 192.0, 192.0, 0.0))  # level-0 x 256..768, y 0..768 over 4
    assert np.allclose(figure.probabilities, np.array(probs).reshape(2, 3).T)  # rows: y, columns: x
    assert figure.title.startswith("SYNTHETIC")
    # 256 px x 4 x 0.25 um = 256 um wide; a fifth is 51.2 um -> a 50 um bar = 50 thumbnail px
    fig = draw_figure(figure)
    bar = next(p for p in axes(fig, "slide").patches if p.get_gid() == "scale-bar")
    assert bar.get_width() == pytest.approx(50.0) and texts(fig, "scale-label")["scale-label"] == "50 \u00b5m"


# ----------------------------------------------------------------------------------------------
# the files
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", ["single", "double"])
def test_png_records_its_dpi_and_has_the_column_width_in_pixels(km, tmp_path, width):
    from PIL import Image

    path = save_figure(km, tmp_path / "km.png", width=width, footnote=FOOT)
    with Image.open(path) as image:
        dpi = image.info["dpi"]
        size = image.size
    assert PNG_DPI >= 300 and dpi[0] == pytest.approx(PNG_DPI, abs=0.01)
    assert abs(size[0] - WIDTHS_MM[width] / 25.4 * PNG_DPI) < 1.0  # whole pixels
    fig = draw_figure(km, width=width, footnote=FOOT)
    assert abs(size[1] - fig.get_size_inches()[1] * PNG_DPI) < 1.0


def test_pdf_embeds_truetype_fonts_at_the_column_width(forest, tmp_path):
    data = save_figure(forest, tmp_path / "forest.pdf", width="double").read_bytes()
    assert data.startswith(b"%PDF") and b"/FontFile2" in data and b"/Type3" not in data
    media = re.search(rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]", data)
    assert float(media.group(1)) / 72 * 25.4 == pytest.approx(183.0)


def test_svg_keeps_labels_as_text_and_embeds_the_font(forest, tmp_path):
    from fontTools.ttLib import TTFont

    path = save_figure(forest, tmp_path / "forest.svg", width="single", footnote=FOOT)
    root = ET.parse(path).getroot()
    assert root.get("width") == "89.00mm"
    drawn = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert FOOT in drawn and all(r.texts()["hr"] in drawn for r in forest.rows if r.kind == "level")
    style = "".join(s.text or "" for s in root.iter(f"{SVG}style"))
    fonts = re.findall(r"font-weight: (\d+); src: url\(data:font/ttf;base64,([A-Za-z0-9+/=]+)\)", style)
    assert {w for w, _ in fonts} == {"400", "700"}
    import io

    covered = set()
    for _, data in fonts:
        covered |= set(TTFont(io.BytesIO(base64.b64decode(data))).getBestCmap())
    assert {ord(c) for text in drawn for c in text} <= covered  # every drawn character has its glyph


def test_same_description_same_bytes(forest, tmp_path):
    for ext in ("pdf", "svg"):
        a = save_figure(forest, tmp_path / f"a.{ext}", width="double").read_bytes()
        b = save_figure(forest, tmp_path / f"b.{ext}", width="double").read_bytes()
        assert a == b


def test_bad_requests_are_user_errors_and_leave_no_file(km, tmp_path):
    with pytest.raises(UserError, match=r"\.png, \.svg, \.pdf"):
        save_figure(km, tmp_path / "km.jpg")
    with pytest.raises(UserError, match="single"):
        save_figure(km, tmp_path / "km.png", width="triple")
    with pytest.raises(UserError, match="KMFigure"):
        save_figure({"not": "a description"}, tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []
    assert math.isclose(WIDTHS_MM["single"], 89.0) and math.isclose(WIDTHS_MM["double"], 183.0)


def test_pdf_text_read_back_holds_the_numbers_of_the_description(km, tmp_path):
    """A PDF reader (pypdf) finds the legend's medians, the at-risk counts and the footnote in
    the exported Kaplan-Meier PDF: the text is text, with the description's numbers."""
    from pypdf import PdfReader

    path = save_figure(km, tmp_path / "km.pdf", width="double", footnote=FOOT)
    text = " ".join(page.extract_text() for page in PdfReader(str(path)).pages)
    words = text.split()
    high = km.group_by_label("high")
    assert f"{high.median:.1f}" in text and str(high.n) in words
    for group in km.groups:
        for count in group.at_risk:
            assert str(count) in words
    assert "SYNTHETIC cohort." in text and "Number at risk" in text
