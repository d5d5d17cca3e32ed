"""Publication tables: the style's text, project.toml settings, and every format read back."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.project import Project
from pathomics_desktop.reports.tables import (
    Column, CountPercent, Estimate, Number, PublicationTable, PValue, Row, SourceNote, TableStyle, Text)
from pathomics_desktop.reports.writers import write_table, write_tables

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def tiny_table() -> PublicationTable:
    table = PublicationTable("Tiny", [Column("Variable"), Column("n", "Training"), Column("%", "Training"),
                                      Column("p")],
                             number="Table 9", footnotes=["p values: chi-square test."],
                             source=SourceNote("included patients", "abc123"))
    table.add_row("Sex", "", "", PValue(0.0123))
    table.add_row("female", Number(12), Number(34.5, 1), "", indent=1)
    table.add_row("CA19-9 ≥ 200 & 50%_x | y", Number(3), Number(7.3, 1), PValue(0.0004))
    return table


def hr_table() -> PublicationTable:
    table = PublicationTable("Cox", [Column("Variable"), Column("HR (95% CI)"), Column("p"), Column("n (%)")])
    table.add_row("Age", Estimate(1.2345, 1.1, 1.4), PValue(0.0004), CountPercent(12, 34.56))
    table.add_row("Stage", Estimate(2.0, 1.5, 2.94), PValue(0.0123), Number(None))
    return table


def project_with_reports(tmp_path, section: dict) -> Project:
    project = Project.create(tmp_path / "study")
    project.settings["reports"] = section
    project.save()
    return Project.load(tmp_path / "study")


# --------------------------------------------------------------------------------------
# the style
# --------------------------------------------------------------------------------------


def test_default_style_text():
    style = TableStyle()
    assert style.text(PValue(0.0004)) == "< 0.001"
    assert style.text(PValue(0.0123)) == "0.012"
    assert style.text(PValue(0.001)) == "0.001"  # the threshold itself is written out
    assert style.text(PValue(float("nan"))) == "-"
    assert style.text(Estimate(4.602, 3.108, 6.816)) == "4.60 (3.11-6.82)"
    assert style.text(Estimate(4.602, None, None)) == "4.60"
    assert style.text(CountPercent(115, 45.098)) == "115 (45.1%)"
    assert style.text(Number(12)) == "12"
    assert style.text(Number(0.71234)) == "0.71"
    assert style.text(Number(0.71234, 3)) == "0.712"
    assert style.text(Number(-0.001)) == "0.00"  # never "-0.00"
    assert style.text(Number(np.int64(12))) == "12" and style.text(Number(np.float64(0.71234))) == "0.71"
    assert style.text(PValue(np.float64(0.0004))) == "< 0.001"


def test_style_from_project_toml(tmp_path):
    assert TableStyle.for_project(Project.create(tmp_path / "plain")) == TableStyle()
    project = project_with_reports(tmp_path, {"p_digits": 2, "p_threshold": 0.01, "p_leading_zero": False,
                                              "decimals": 3, "ci_separator": ", "})
    style = TableStyle.for_project(project)
    assert style.text(PValue(0.0004)) == "< .01"
    assert style.text(PValue(0.0123)) == ".01"
    assert style.text(PValue(0.456)) == ".46"
    assert style.text(Estimate(4.602, 3.108, 6.816)) == "4.602 (3.108, 6.816)"


@pytest.mark.parametrize("section, key", [
    ({"p_digits": "three"}, "p_digits"),
    ({"p_threshold": 2}, "p_threshold"),
    ({"p_threshold": 0.0001}, "p_threshold"),  # finer than 3 digits can show
    ({"p_leading_zero": "no"}, "p_leading_zero"),
    ({"decimals": -1}, "decimals"),
    ({"p_digit": 3}, "p_digit"),  # a typo: unknown key
])
def test_bad_style_settings_name_the_key(tmp_path, section, key):
    project = project_with_reports(tmp_path, section)
    with pytest.raises(UserError) as info:
        TableStyle.for_project(project)
    message = str(info.value)
    assert f"[reports] {key}:" in message and "project.toml" in message


# --------------------------------------------------------------------------------------
# text formats: exact contents
# --------------------------------------------------------------------------------------


def test_csv_contents(tmp_path):
    out = write_table(tiny_table(), tmp_path / "t.csv")
    assert out.read_text(encoding="utf-8") == (
        "Variable,Training n,Training %,p\n"
        "Sex,,,0.012\n"
        "  female,12,34.5,\n"
        "CA19-9 ≥ 200 & 50%_x | y,3,7.3,< 0.001\n")
    with open(out, newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh))[3][3] == "< 0.001"


def test_markdown_contents(tmp_path):
    out = write_table(tiny_table(), tmp_path / "t.md")
    assert out.read_text(encoding="utf-8") == (
        "**Table 9. Tiny**\n"
        "\n"
        "| Variable | Training n | Training % | p |\n"
        "| :--- | ---: | ---: | ---: |\n"
        "| Sex |  |  | 0.012 |\n"
        "| &emsp;female | 12 | 34.5 |  |\n"
        "| CA19-9 ≥ 200 & 50%\\_x \\| y | 3 | 7.3 | < 0.001 |\n"
        "\n"
        "p values: chi-square test.\n"
        "\n"
        "Source: included patients; cohort snapshot abc123.\n")


def test_latex_contents(tmp_path):
    out = write_table(tiny_table(), tmp_path / "t.tex")
    assert out.read_text(encoding="utf-8") == (
        "\\begin{table}[htbp]\n"
        "\\centering\n"
        "\\textbf{Table 9.} Tiny\\par\\smallskip\n"
        "\\begin{tabular}{lrrr}\n"
        "\\toprule\n"
        " & \\multicolumn{2}{c}{Training} &  \\\\\n"
        "\\cmidrule(lr){2-3}\n"
        "Variable & n & \\% & p \\\\\n"
        "\\midrule\n"
        "Sex &  &  & 0.012 \\\\\n"
        "\\quad female & 12 & 34.5 &  \\\\\n"
        "CA19-9 $\\geq$ 200 \\& 50\\%\\_x \\textbar{} y & 3 & 7.3 & \\textless{} 0.001 \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "\\par\\smallskip\n"
        "{\\footnotesize p values: chi-square test.\\par Source: included patients; cohort snapshot abc123.\\par}\n"
        "\\end{table}\n")


# --------------------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------------------


def _edges(element) -> dict[str, str]:
    return {child.tag.replace(W, ""): child.get(f"{W}val") for child in element} if element is not None else {}


def test_docx_three_line_table(tmp_path):
    from docx import Document

    out = write_table(tiny_table(), tmp_path / "t.docx")
    document = Document(str(out))
    assert document.paragraphs[0].text == "Table 9. Tiny"
    assert document.paragraphs[0].runs[0].bold
    (table,) = document.tables
    rows = [[cell.text for cell in row.cells] for row in table.rows]
    assert rows[1] == ["Variable", "n", "%", "p"]
    assert rows[2] == ["Sex", "", "", "0.012"]
    assert rows[3] == ["female", "12", "34.5", ""]
    assert rows[4][3] == "< 0.001"
    assert rows[0][1] == rows[0][2] == "Training"  # one cell spanning two columns
    # borders: the table has a top and a bottom rule and nothing else
    tbl = table._tbl
    table_edges = _edges(tbl.tblPr.find(f"{W}tblBorders"))
    assert table_edges["top"] == "single" and table_edges["bottom"] == "single"
    assert all(table_edges[e] in ("nil", "none") for e in ("left", "right", "insideH", "insideV"))
    # cells: only the last header row has a (bottom) border: the rule under the header
    header_rule = set()
    for r, tr in enumerate(tbl.findall(f"{W}tr")):
        for tc in tr.findall(f"{W}tc"):
            edges = _edges(tc.find(f"{W}tcPr/{W}tcBorders"))
            drawn = {e for e, val in edges.items() if val not in ("nil", "none")}
            assert drawn <= {"bottom"}, (r, edges)  # never a vertical line, nor another rule
            if drawn:
                header_rule.add(r)
    assert header_rule == {1}
    rules = 2 + len(header_rule)  # top + bottom of the table + the header rule
    assert rules == 3
    # footnotes below, smaller than the table text
    notes = [p for p in document.paragraphs if p.text.startswith(("p values", "Source"))]
    assert [p.text for p in notes] == ["p values: chi-square test.",
                                       "Source: included patients; cohort snapshot abc123."]
    body_size = table.rows[2].cells[3].paragraphs[0].runs[0].font.size
    assert all(p.runs[0].font.size < body_size for p in notes)
    # numbers right-aligned, the label column left-aligned, the level indented
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    assert table.rows[3].cells[1].paragraphs[0].alignment == WD_ALIGN_PARAGRAPH.RIGHT
    assert table.rows[3].cells[0].paragraphs[0].alignment == WD_ALIGN_PARAGRAPH.LEFT
    assert table.rows[3].cells[0].paragraphs[0].paragraph_format.left_indent > 0


def test_docx_uses_project_style(tmp_path):
    from docx import Document

    style = TableStyle.for_project(project_with_reports(tmp_path, {"p_digits": 2, "p_threshold": 0.01,
                                                                   "p_leading_zero": False}))
    out = write_table(tiny_table(), tmp_path / "t.docx", style)
    table = Document(str(out)).tables[0]
    assert table.rows[2].cells[3].text == ".01"
    assert table.rows[4].cells[3].text == "< .01"


# --------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------


def test_xlsx_numbers_are_numbers(tmp_path):
    from openpyxl import load_workbook

    out = write_tables([tiny_table(), hr_table()], tmp_path / "t.xlsx")
    workbook = load_workbook(out)
    assert workbook.sheetnames == ["Table 9", "Cox"]
    sheet = workbook["Table 9"]
    assert sheet["A1"].value == "Table 9. Tiny"
    assert sheet["B3"].value == "Training" and "B3:C3" in {str(r) for r in sheet.merged_cells.ranges}
    assert [c.value for c in sheet[4]] == ["Variable", "n", "%", "p"]
    p_cell, n_cell, pct_cell = sheet["D5"], sheet["B6"], sheet["C6"]
    assert p_cell.data_type == "n" and p_cell.value == 0.0123
    assert p_cell.number_format == '[<0.001]"< 0.001";0.000'
    assert n_cell.value == 12 and n_cell.number_format == "0"
    assert pct_cell.value == 34.5 and pct_cell.number_format == "0.0"
    assert sheet["D7"].value == 0.0004 and sheet["D7"].number_format == '[<0.001]"< 0.001";0.000'
    assert sheet["A6"].alignment.indent == 1
    assert sheet["A9"].value == "p values: chi-square test."
    # the three rules: top of the header, under the header, under the last row
    assert sheet["A3"].border.top.style == "medium" and sheet["D4"].border.bottom.style == "thin"
    assert sheet["B7"].border.bottom.style == "medium" and sheet["B5"].border.bottom.style is None
    cox = workbook["Cox"]
    hr, p, count, missing = cox["B4"], cox["C4"], cox["D4"], cox["D5"]
    assert hr.value == 1.2345 and hr.number_format == '0.00" (1.10-1.40)"'
    assert p.value == 0.0004
    assert count.value == 12 and count.number_format == '0" (34.6%)"'
    assert missing.value == "-" and missing.data_type == "s"


def test_xlsx_formats_follow_the_style(tmp_path):
    from openpyxl import load_workbook

    style = TableStyle(p_digits=2, p_threshold=0.01, p_leading_zero=False, decimals=1)
    sheet = load_workbook(write_table(hr_table(), tmp_path / "t.xlsx", style)).active
    assert sheet["C4"].number_format == '[<0.01]"< .01";.00'
    assert sheet["B5"].value == 2.0 and sheet["B5"].number_format == '0.0" (1.5-2.9)"'


# --------------------------------------------------------------------------------------
# errors and atomic writes
# --------------------------------------------------------------------------------------


def test_unknown_extension_lists_formats(tmp_path):
    with pytest.raises(UserError) as info:
        write_table(tiny_table(), tmp_path / "t.pdf")
    message = str(info.value)
    assert "'.pdf'" in message and all(ext in message for ext in (".docx", ".xlsx", ".csv", ".tex", ".md"))
    assert list(tmp_path.iterdir()) == []


def test_several_tables_in_one_csv_is_an_error(tmp_path):
    with pytest.raises(UserError, match="one table"):
        write_tables([tiny_table(), hr_table()], tmp_path / "t.csv")


def test_row_width_is_checked():
    with pytest.raises(UserError, match=r"Table 9\. Tiny.*row 4: 2 cells for 4 columns"):
        tiny_table().add_row("a", "b")


def test_failed_write_leaves_the_old_file(tmp_path):
    out = write_table(tiny_table(), tmp_path / "t.csv")
    before = out.read_bytes()
    broken = tiny_table()
    broken.rows.append(Row([Text("x"), Text(""), Text(""), object()]))  # not a cell: fails mid-way
    with pytest.raises(TypeError):
        write_table(broken, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
