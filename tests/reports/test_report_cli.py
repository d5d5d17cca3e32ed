"""``pathomics report ...``: each table command writes its file, the numbers read back with the
format's own reader (python-docx, openpyxl, csv) equal those of the builder called directly
(and, where cheap, numbers computed another way: group sizes with pandas, Harrell's C with
lifelines); the format follows the extension; a bad extension is a clear error."""

from __future__ import annotations

import csv
import math
import shutil

import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.cli import main
from pathomics_desktop.figures.style import format_p
from pathomics_desktop.project import Project
from pathomics_desktop.reports.tables import TableStyle
from pathomics_desktop.reports.writers import latex_escape


@pytest.fixture
def project(demo_root, tmp_path):
    """A private copy of the demo project (exports append to its ledger)."""
    root = tmp_path / "demo"
    shutil.copytree(demo_root, root)
    return Project.load(root)


@pytest.fixture(scope="session")
def scored_root(demo_root, tmp_path_factory):
    """The demo project with SYNTHETIC OS and RFS scores and risk groups, written through the
    audited path as `signature apply` writes them."""
    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.figures.bench import synthetic_scores
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.signature.apply import write_scores

    root = tmp_path_factory.mktemp("reports-scored") / "demo"
    shutil.copytree(demo_root, root)
    scores, _cut = synthetic_scores(cohort_frame(root))
    registry = open_project_registry(Project.load(root))
    try:
        for endpoint in ("os", "rfs"):
            write_scores(registry, scores, set(scores["study_id"]), endpoint, reason="SYNTHETIC test scores",
                         user="tester")
    finally:
        registry.dispose()
    return root


def run(project, *argv) -> int:
    return main(["report", *argv, "--project", str(project.root)])


def frame_of(project, cohort_filter=CohortFilter()):
    source = AnalysisSource.open(project)
    return source, source.frame(cohort_filter)


def test_table1_docx_holds_the_builder_numbers(project, tmp_path, capsys):
    import docx

    from pathomics_desktop.figures.table1 import build_table1

    out = tmp_path / "table1.docx"
    assert run(project, "table1", "--out", str(out)) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    source, frame = frame_of(project)
    table = build_table1(source, frame, {"by": "split"})
    rows = [[c.text for c in r.cells] for r in docx.Document(str(out)).tables[0].rows]
    assert rows[0] == table.header()[:-1]  # the test is named in the footnote, not a column
    body = rows[1:]
    assert len(body) == len(table.rows)
    for got, want in zip(body, table.rows):
        assert got[0].strip() == want.label
        assert got[1:-1] == [want.cells.get(c, "") for c in table.columns]
        assert got[-1] == (format_p(want.p) if want.kind in ("header", "continuous") else "")
    # the patients row, counted with pandas
    assert body[0][1:-1] == [str(len(frame))] + [str(int((frame["split"] == s).sum()))
                                                  for s in ("training", "internal", "external")]


def test_cox_xlsx_stores_numbers(project, tmp_path):
    import openpyxl

    from pathomics_desktop.figures.cox import build_cox

    out = tmp_path / "cox.xlsx"
    assert run(project, "cox", "--variables", "sex,age,tnm_group", "--mode", "univariate", "--out", str(out)) == 0
    source, frame = frame_of(project)
    table = build_cox(source, frame, {"endpoint": "os", "mode": "univariate", "variables": ["sex", "age", "tnm_group"],
                                      "threshold": 0.05, "center": "none"})
    sheet = openpyxl.load_workbook(str(out)).active
    by_label = {row[0]: row for row in sheet.iter_rows(values_only=True) if row[0]}
    checked = 0
    for r in table.rows:
        if r.uni_hr is None:
            continue
        label = r.level if r.term != r.variable else f"{r.label}, {r.level}"
        hr, p = by_label[label][1], by_label[label][2]
        assert isinstance(hr, float) and math.isclose(hr, r.uni_hr, rel_tol=1e-12)
        assert isinstance(p, float) and math.isclose(p, r.uni_p, rel_tol=1e-12)
        checked += 1
    assert checked == 5  # male vs female, age, II/III/IV vs I


def test_km_csv_numbers_and_group_sizes(project, tmp_path):
    from pathomics_desktop.figures.km import build_km

    out = tmp_path / "km.csv"
    assert run(project, "km", "--group", "ca19_9", "--set", "training", "--out", str(out)) == 0
    flt = CohortFilter(datasets=("training",))
    source, frame = frame_of(project, flt)
    figure = build_km(source, frame, {"endpoint": "os", "group": "ca19_9", "unit": "months"})
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0][1:] == ["n", "Events", "Median, months (95% CI)", "HR (95% CI)", "p"]
    style = TableStyle()
    known = frame[frame["os_months"].notna() & frame["ca19_9"].notna()]
    for got, group in zip(rows[1:], figure.groups):
        high = group.label.startswith(">=")
        members = known[(known["ca19_9"] >= 200) == high]
        assert got[:3] == [group.label, str(len(members)), str(int(members["os_event"].sum()))]
        assert got[3] == style.estimate(group.median, group.median_lower, group.median_upper, decimals=1)
        if high:
            assert got[4] == style.estimate(group.hr["hr"], group.hr["hr_lower"], group.hr["hr_upper"])
            assert got[5] == style.p_value(group.hr["p"])
        else:
            assert got[4:] == ["Reference", ""]
    assert len(rows) == 1 + len(figure.groups)  # CSV: the main table only


def test_roc_markdown_and_subgroups_latex(project, tmp_path):
    from pathomics_desktop.figures.forest import build_forest
    from pathomics_desktop.figures.roc import build_td_roc

    md = tmp_path / "roc.md"
    assert run(project, "roc", "--markers", "ca19_9,tnm_ordinal", "--times", "12,36", "--out", str(md)) == 0
    source, frame = frame_of(project)
    roc = build_td_roc(source, frame, {"endpoint": "os", "markers": ["ca19_9", "tnm_ordinal"], "times": [12, 36]})
    lines = [line for line in md.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    for marker in roc.markers:
        line = next(row for row in lines if row.startswith(f"| {marker.label} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1:] == [str(marker.n), str(marker.events)] + [f"{a:.3f}" for a in marker.auc]

    tex = tmp_path / "subgroups.tex"
    assert run(project, "subgroups", "--exposure", "adjuvant_chemotherapy", "--subgroups", "sex",
               "--out", str(tex)) == 0
    forest = build_forest(source, frame, {"endpoint": "os", "exposure": "adjuvant_chemotherapy",
                                          "subgroups": ["sex"]})
    text = tex.read_text(encoding="utf-8")
    assert "\\toprule" in text and "\\bottomrule" in text
    style = TableStyle()
    for row in forest.rows:
        if row.kind == "level":
            assert f"\\quad {row.level} & {row.n} & {row.events} & " \
                   f"{style.estimate(row.hr, row.hr_lower, row.hr_upper)} & {latex_escape(style.p_value(row.p))}" \
                   in text
        if row.kind == "header":
            assert f"{row.label} &  &  &  &  & {latex_escape(style.p_value(row.p_interaction))}" in text


def test_cindex_table_s2(scored_root, tmp_path):
    import openpyxl
    from lifelines.utils import concordance_index

    from pathomics_desktop.reports.cli import build_cindex

    root = tmp_path / "scored"
    shutil.copytree(scored_root, root)
    project = Project.load(root)
    out = tmp_path / "cindex.xlsx"
    assert run(project, "cindex", "--set", "training", "--bootstrap", "20", "--out", str(out)) == 0
    flt = CohortFilter(datasets=("training",))
    source, frame = frame_of(project, flt)
    result = build_cindex(source, frame, {"endpoint": "os", "bootstrap": 20, "seed": 0})
    sheet = openpyxl.load_workbook(str(out))["Table S2"]
    rows = {row[0]: row for row in sheet.iter_rows(values_only=True) if row[0]}
    c_sig = rows["Pathomics signature"][2]
    assert math.isclose(c_sig, result.markers["signature"].c_index.c, rel_tol=1e-12)
    # Harrell's C computed another way (lifelines; higher score = higher risk)
    sub = frame.dropna(subset=["os_months", "os_event", "pathomics_os_score"])
    assert math.isclose(c_sig, concordance_index(sub["os_months"], -sub["pathomics_os_score"], sub["os_event"]),
                        rel_tol=1e-9)
    comparison = {c["marker"]: c for c in result.to_dict()["comparisons"]}
    assert math.isclose(rows["TNM stage"][6], comparison["tnm_stage"]["difference"], rel_tol=1e-12)


def test_the_format_follows_the_extension(project, tmp_path):
    import docx
    import openpyxl

    for name in ("flow.docx", "flow.xlsx", "flow.csv", "flow.tex", "flow.md"):
        assert run(project, "flow", "--out", str(tmp_path / name)) == 0
    assert docx.Document(str(tmp_path / "flow.docx")).tables[0].rows[1].cells[0].text == "Enrolled"
    sheet = openpyxl.load_workbook(str(tmp_path / "flow.xlsx")).active
    enrolled = next(r for r in sheet.iter_rows(values_only=True) if r[0] == "Enrolled")
    assert enrolled[-1] == 873 and isinstance(enrolled[-1], int)  # the demo enrols 873 patients
    assert next(csv.reader((tmp_path / "flow.csv").open()))[-1] == "Total"
    assert (tmp_path / "flow.tex").read_text().startswith("\\begin{table}")
    assert (tmp_path / "flow.md").read_text().startswith("**Figure 1 (table). Patient flow**")


def test_a_bad_extension_is_a_clear_error(project, tmp_path, capsys):
    from pathomics_desktop.reports.ledger import read_entries

    assert run(project, "km", "--out", str(tmp_path / "km.txt")) == 2
    err = capsys.readouterr().err
    assert "km.txt" in err and "'.txt'" not in err and ".txt" in err and ".docx" in err and ".pdf" in err
    assert run(project, "table1", "--out", str(tmp_path / "table1.png")) == 2
    err = capsys.readouterr().err
    assert "cannot write .png" in err and ".docx" in err
    assert not list(tmp_path.glob("km.*")) and not list(tmp_path.glob("table1.*"))
    assert read_entries(project) == []  # nothing recorded either


def test_figure_commands_write_vector_and_raster_files(project, tmp_path):
    """KM as SVG (labels are text), PDF and PNG (300 dpi), through reports.figures.save_figure."""
    import xml.etree.ElementTree as ET

    from PIL import Image

    from pathomics_desktop.figures.km import build_km

    svg, pdf, png = tmp_path / "km.svg", tmp_path / "km.pdf", tmp_path / "km.png"
    for out in (svg, pdf, png):
        assert run(project, "km", "--group", "sex", "--out", str(out), "--width", "double") == 0
    source, frame = frame_of(project)
    figure = build_km(source, frame, {"endpoint": "os", "group": "sex", "unit": "months"})
    texts = " ".join("".join(el.itertext()) for el in ET.parse(svg).iter() if el.tag.endswith("text"))
    for group in figure.groups:
        assert group.label in texts
        assert str(group.at_risk[0]) in texts  # the number-at-risk table is text too
    assert pdf.read_bytes().startswith(b"%PDF")
    with Image.open(png) as image:
        assert round(image.info["dpi"][0]) >= 300


@pytest.fixture
def predicted(demo_root, tmp_path):
    """A copy of the demo project with slides for three poor- and three good-prognosis training
    patients (QC ok) and the SYNTHETIC patch predictions of two model runs."""
    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.demo.cohort_slides import add_demo_slides
    from pathomics_desktop.figures.roc import prognosis_labels
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.registry.slides import list_slides, set_slide_qc
    from tests.figures.test_roc_figure import write_synthetic_predictions

    root = tmp_path / "predicted"
    shutil.copytree(demo_root, root)
    project = Project.load(root)
    cohort = cohort_frame(root)
    chosen = prognosis_labels(cohort[cohort["included"] & (cohort["split"] == "training")]).groupby("label").head(3)
    add_demo_slides(project, size=512, study_ids=chosen["study_id"])
    registry = open_project_registry(project)
    try:
        slides = list_slides(registry)
        for slide in slides:
            set_slide_qc(registry, slide["id"], "ok", user="tester")
    finally:
        registry.dispose()
    label_of = dict(zip(chosen["study_id"], chosen["label"]))
    write_synthetic_predictions(root, {s["id"]: int(label_of[s["study_id"]]) for s in slides})
    return Project.load(root)


def test_models_table_s1_and_its_prediction_hashes(predicted, tmp_path):
    import hashlib

    import openpyxl
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from pathomics_desktop.reports.ledger import read_entries

    out = tmp_path / "models.xlsx"
    assert run(predicted, "models", "--out", str(out)) == 0
    sheet = openpyxl.load_workbook(str(out))["Table S1"]
    rows = {(r[0], r[1]): r for r in sheet.iter_rows(values_only=True) if r[1] in ("patch", "slide")}
    assert sorted(rows) == [("run_a", "patch"), ("run_a", "slide"), ("run_b", "patch"), ("run_b", "slide")]
    label = {}
    for run_name in ("run_a", "run_b"):
        # the AUC computed another way: sklearn on the prediction files joined by hand
        files = sorted((predicted.root / "predictions" / run_name).glob("*.parquet"))
        tiles = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        if not label:
            from pathomics_desktop.registry.service import open_project_registry
            from pathomics_desktop.registry.slides import list_slides

            registry = open_project_registry(predicted)
            try:
                slide_patient = {s["id"]: s["study_id"] for s in list_slides(registry)}
            finally:
                registry.dispose()
            frame = frame_of(predicted)[1].set_index("study_id")
            label = {sid: int(frame.loc[p, "rfs_event"] == 1 and frame.loc[p, "rfs_months"] <= 12)
                     for sid, p in slide_patient.items()}
        y = tiles["slide_id"].map(label)
        assert rows[(run_name, "patch")][4] == pytest.approx(roc_auc_score(y, tiles["prob"]), abs=1e-12)
        assert rows[(run_name, "patch")][2] == len(tiles)
    entry = read_entries(predicted)[-1]
    recorded = entry["inputs"]["predictions"]
    files = sorted((predicted.root / "predictions").glob("*/*.parquet"))
    assert recorded == {f.relative_to(predicted.root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
                        for f in files}
