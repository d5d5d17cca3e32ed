"""`report study`: the analysis plan as one folder, in the study's order, all or nothing."""

from __future__ import annotations

import json

import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.reports.study import build_study_bundle
from tests.signature.fitted import NAME, fitted_project


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    project = fitted_project(tmp_path_factory, tmp_path_factory.mktemp("bundle") / "demo")
    out = tmp_path_factory.mktemp("out") / "study"
    return project, build_study_bundle(project, [NAME], out, n_boot=10, width="single")


def test_items_follow_the_study_order(bundle):
    _project, result = bundle
    numbers = [i.number for i in result.items]
    assert numbers[:4] == ["Figure 1", "Table 1", "Table 2", "Table S2"]
    assert numbers.index("Table S4") < numbers.index("Table S5") < numbers.index("Figure 4A")
    assert numbers.index("Figure 4G") < numbers.index("Figure S2") and numbers[-1] == "Table S6"
    folder = result.folder
    for name in ("report.docx", "report.json", "report.txt", "methods.md", "checklists.docx", "tables/tables.xlsx"):
        assert (folder / name).stat().st_size > 0, name
    for item in result.items:
        for path in item.files:
            assert path.exists() and path.parent == folder / "figures"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".study.")]  # no work folder left


def test_document_holds_the_report_numbers(bundle):
    from docx import Document

    _project, result = bundle
    report = json.loads((result.folder / "report.json").read_text())
    document = Document(str(result.folder / "report.docx"))
    text = "\n".join(p.text for p in document.paragraphs)
    assert "SYNTHETIC DATA" in text and "Methods" in text and "LASSO-Cox" in text
    cells = {c.text for t in document.tables for row in t.rows for c in row.cells}
    # the training set's univariate HR of the risk group, as Table 2 prints it (2 decimals)
    sets = report["signatures"][NAME]["endpoints"]["os"]["sets"]
    rows = sets["training"]["cox"]["univariate"]
    risk = next(r for r in rows if r["term"].startswith("risk_group"))
    assert f"{risk['hr']:.2f} ({risk['hr_lower']:.2f}-{risk['hr_upper']:.2f})" in cells
    pictures = [s for s in document.inline_shapes]
    assert len(pictures) == sum(1 for i in result.items if i.kind == "figure")


def test_refusals_leave_nothing(bundle, tmp_path):
    project, _result = bundle
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not an empty folder"):
        build_study_bundle(project, [NAME], busy, n_boot=10)
    with pytest.raises(UserError, match="signature 'nope' not found"):
        build_study_bundle(project, ["nope"], tmp_path / "new", n_boot=10)
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_report_study_command_writes_the_bundle_and_a_ledger_entry(bundle, tmp_path, capsys):
    from pathomics_desktop.cli import main
    from pathomics_desktop.reports.ledger import file_sha256

    project, _result = bundle
    out = tmp_path / "cli-study"
    assert main(["report", "study", "--signature", NAME, "--out", str(out), "--bootstrap", "10",
                 "--width", "single", "--project", str(project.root)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and (out / "report.docx").exists()
    entry = json.loads((project.root / "reports" / "ledger.jsonl").read_text().splitlines()[-1])
    assert entry["command"] == "study" and entry["params"]["signatures"] == [NAME]
    assert entry["output"]["sha256"] == file_sha256(out / "report.docx")
    assert entry["numbers"]["report_json_sha256"] == file_sha256(out / "report.json")
