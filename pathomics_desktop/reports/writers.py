"""Write :class:`~pathomics_desktop.reports.tables.PublicationTable` objects for publication.

``write_table(table, path, style)`` / ``write_tables([...], path, style)`` choose the format from
the extension; every cell's text comes from :meth:`TableStyle.text`, so all formats print the
same characters. Files are written atomically (a temporary file renamed over the target).

* ``.docx`` (python-docx): three-line journal table: a rule above the header, a rule under
  it, a rule under the last row, no vertical lines (table borders top/bottom single,
  left/right/insideH/insideV none; the rule under the header is the bottom border of the
  last header row's cells); the caption ("**Table 2.** Title") above, the footnotes and the
  source note below in a smaller font (8 pt, the table 9 pt); numbers right-aligned (with
  the same decimals in a column that is decimal alignment); levels indented; the header
  rows repeat on every page. Several tables: one after the other, each on its own page.
* ``.xlsx`` (openpyxl): one sheet per table (named after its number or title): the caption,
  the header rows (groups merged), the body, then the notes. Numbers are stored as numbers
  with a number format giving their decimals; a p value is stored as the exact number with
  the conditional format ``[<0.001]"< 0.001";0.000`` (shown "< 0.001", holding 0.0004); an
  HR (95% CI) cell holds the HR with the interval as literal text of its format, an
  ``n (%)`` cell the count (see :meth:`TableStyle.excel`). The same three rules as the DOCX.
* ``.csv``: one header row (a group joins its columns' labels: "Univariate p"), the body
  as text, levels indented by two spaces; no caption or notes (one table per file).
* ``.tex``: a LaTeX ``table`` with a booktabs ``tabular`` (``\\toprule``, ``\\cmidrule`` under a
  group, ``\\midrule``, ``\\bottomrule``), text escaped, levels indented with ``\\quad``, the
  caption as a line above (keeps the journal's number, e.g. "Table S3") and the notes in
  ``\\footnotesize`` below. Needs ``\\usepackage{booktabs}``.
* ``.md``: the bold caption, a pipe table (numbers right-aligned, ``|`` escaped, levels
  indented with ``&emsp;``), the notes as paragraphs.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Callable, Sequence

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import atomic_path
from pathomics_desktop.reports.tables import PublicationTable, TableStyle

FORMATS = {".docx": "Word (three-line journal table)", ".xlsx": "Excel workbook, one sheet per table",
           ".csv": "comma-separated text", ".tex": "LaTeX booktabs", ".md": "Markdown pipe table"}

TABLE_PT = 9
NOTE_PT = 8
RULE_THICK = 12  #: eighths of a point: 1.5 pt (top and bottom rules)
RULE_THIN = 6  #: 0.75 pt (under the header)
CHAR_PT = 5.2  #: width of an average character at TABLE_PT, generous for wide fonts (DejaVu)


def table_format(path: str | os.PathLike) -> str:
    """The format (extension) of ``path``, or a UserError listing the formats."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        listed = ", ".join(f"{k} ({v})" for k, v in FORMATS.items())
        raise UserError(f"{path}: unknown table format {suffix or '(no extension)'!r}; "
                        f"choose the format by the extension: {listed}")
    return suffix


def write_table(table: PublicationTable, path: str | os.PathLike, style: TableStyle | None = None) -> Path:
    """Write one table; the format comes from the extension of ``path``."""
    return write_tables([table], path, style)


def write_tables(tables: Sequence[PublicationTable], path: str | os.PathLike,
                 style: TableStyle | None = None) -> Path:
    """Write several tables to one file (XLSX: a sheet each; DOCX: a page each; TeX/Markdown:
    one after the other). CSV holds one table only."""
    suffix = table_format(path)
    tables = list(tables)
    if not tables:
        raise UserError(f"{path}: no table to write")
    if suffix == ".csv" and len(tables) > 1:
        raise UserError(f"{path}: a CSV file holds one table ({len(tables)} given); "
                        "write each to its own file or use .xlsx (one sheet per table)")
    style = style or TableStyle()
    writer: Callable = {".docx": _write_docx, ".xlsx": _write_xlsx, ".csv": _write_text(csv_text),
                        ".tex": _write_text(latex_text), ".md": _write_text(markdown_text)}[suffix]
    out = Path(path)
    with atomic_path(out) as tmp:
        writer(tables, tmp, style)
    return out


def _write_text(render: Callable[[PublicationTable, TableStyle], str]) -> Callable:
    def write(tables, tmp: Path, style: TableStyle) -> None:
        tmp.write_text("\n".join(render(t, style) for t in tables), encoding="utf-8", newline="\n")

    return write


def _indent(level: int, unit: str) -> str:
    return unit * max(level, 0)


def _label_rows(table: PublicationTable, style: TableStyle, indent_unit: str,
                escape: Callable[[str], str] = lambda s: s) -> list[list[str]]:
    """Body rows as text, the first cell indented by the row's level."""
    out = []
    for row in table.rows:
        cells = [escape(style.text(c)) for c in row.cells]
        cells[0] = _indent(row.indent, indent_unit) + cells[0]
        out.append(cells)
    return out


# --------------------------------------------------------------------------------------
# CSV, Markdown, LaTeX
# --------------------------------------------------------------------------------------


def csv_text(table: PublicationTable, style: TableStyle) -> str:
    """The table as CSV: one header row, then the body (levels indented by two spaces)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.flat_headers())
    writer.writerows(_label_rows(table, style, "  "))
    return buffer.getvalue()


_MD_SPECIAL = re.compile(r"([\\|*_`])")


def _md_escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def markdown_text(table: PublicationTable, style: TableStyle) -> str:
    """The table as Markdown: bold caption, pipe table, notes as paragraphs."""
    numeric = table.numeric_columns()
    lines = [f"**{_md_escape(table.caption)}**", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in table.flat_headers()) + " |")
    lines.append("| " + " | ".join("---:" if n else ":---" for n in numeric) + " |")
    for cells in _label_rows(table, style, "&emsp;", _md_escape):
        lines.append("| " + " | ".join(cells) + " |")
    for note in table.notes():
        lines += ["", _md_escape(note)]
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\textless{}", ">": r"\textgreater{}", "≥": r"$\geq$", "≤": r"$\leq$",
                "|": r"\textbar{}", "±": r"$\pm$", "×": r"$\times$", "−": r"$-$"}
_TEX_PATTERN = re.compile("|".join(re.escape(k) for k in _TEX_SPECIAL))


def latex_escape(text: str) -> str:
    """Text safe in LaTeX text mode (specials, ``<``/``>`` and a few math symbols replaced)."""
    return _TEX_PATTERN.sub(lambda m: _TEX_SPECIAL[m.group(0)], text)


def latex_text(table: PublicationTable, style: TableStyle) -> str:
    """The table as a LaTeX ``table`` float with a booktabs ``tabular``."""
    numeric = table.numeric_columns()
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if table.number:
        lines.append(rf"\textbf{{{latex_escape(table.number)}.}} {latex_escape(table.title)}\par\smallskip")
    else:
        lines.append(rf"{latex_escape(table.title)}\par\smallskip")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if table.has_groups:
        cells, rules = [], []
        for group, start, width in table.group_spans():
            if group:
                cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(group)}}}")
                rules.append(rf"\cmidrule(lr){{{start + 1}-{start + width}}}")
            else:
                cells.extend([""] * width)
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(latex_escape(c.label) for c in table.columns) + r" \\")
    lines.append(r"\midrule")
    for cells in _label_rows(table, style, r"\quad ", latex_escape):
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = table.notes()
    if notes:
        lines.append(r"\par\smallskip")
        lines.append(r"{\footnotesize " + r"\par ".join(latex_escape(n) for n in notes) + r"\par}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------------------


def _border_element(tag: str, edges: dict[str, tuple[str, int]]):
    """``<w:tblBorders>`` / ``<w:tcBorders>`` with ``edge -> (val, size in 1/8 pt)``."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    element = OxmlElement(tag)
    for edge, (val, size) in edges.items():
        child = OxmlElement(f"w:{edge}")
        child.set(qn("w:val"), val)
        child.set(qn("w:sz"), str(size))
        child.set(qn("w:space"), "0")
        child.set(qn("w:color"), "000000" if val != "nil" else "auto")
        element.append(child)
    return element


def _replace_child(parent, element) -> None:
    for old in parent.findall(element.tag):
        parent.remove(old)
    parent.append(element)


def _cell_text(cell, text: str, *, align_right: bool, indent: int = 0, size: float = TABLE_PT) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Cm, Pt

    paragraph = cell.paragraphs[0]
    run = paragraph.add_run(text)
    run.font.size = Pt(size)
    fmt = paragraph.paragraph_format
    fmt.space_before = Pt(1)
    fmt.space_after = Pt(1)
    if indent:
        fmt.left_indent = Cm(0.35 * indent)
    paragraph.alignment = WD_ALIGN_PARAGRAPH.RIGHT if align_right else WD_ALIGN_PARAGRAPH.LEFT


def _docx_table(document, table: PublicationTable, style: TableStyle) -> None:
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt

    caption = document.add_paragraph()
    caption.paragraph_format.space_after = Pt(4)
    caption.paragraph_format.keep_with_next = True
    if table.number:
        bold = caption.add_run(f"{table.number}. ")
        bold.bold = True
        bold.font.size = Pt(TABLE_PT + 1)
    title = caption.add_run(table.title)
    title.font.size = Pt(TABLE_PT + 1)

    numeric = table.numeric_columns()
    header_rows = 2 if table.has_groups else 1
    grid = document.add_table(rows=header_rows + len(table.rows), cols=len(table.columns))
    grid.alignment = WD_TABLE_ALIGNMENT.CENTER
    grid.autofit = False  # fixed layout: the widths of _docx_widths hold in Word and LibreOffice
    tbl_pr = grid._tbl.tblPr
    _replace_child(tbl_pr, _border_element("w:tblBorders", {
        "top": ("single", RULE_THICK), "left": ("nil", 0), "bottom": ("single", RULE_THICK),
        "right": ("nil", 0), "insideH": ("nil", 0), "insideV": ("nil", 0)}))

    if table.has_groups:
        for group, start, width in table.group_spans():
            cell = grid.cell(0, start)
            if width > 1:
                cell = cell.merge(grid.cell(0, start + width - 1))
            if group:
                _cell_text(cell, group, align_right=False)
                cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
    last_header = grid.rows[header_rows - 1]
    for index, column in enumerate(table.columns):
        _cell_text(last_header.cells[index], column.label, align_right=numeric[index])
    for row in grid.rows[:header_rows]:  # repeat the header on every page
        flag = OxmlElement("w:tblHeader")
        flag.set(qn("w:val"), "true")
        row._tr.get_or_add_trPr().append(flag)
    for cell in last_header.cells:  # the rule under the header
        _replace_child(cell._tc.get_or_add_tcPr(), _border_element("w:tcBorders", {
            "bottom": ("single", RULE_THIN)}))

    for r, row in enumerate(table.rows):
        cells = grid.rows[header_rows + r].cells
        for c, value in enumerate(row.cells):
            _cell_text(cells[c], style.text(value), align_right=numeric[c],
                       indent=row.indent if c == 0 else 0)

    _docx_widths(document, grid, table, style)
    for note in table.notes():
        paragraph = document.add_paragraph()
        paragraph.paragraph_format.space_before = Pt(2)
        paragraph.paragraph_format.space_after = Pt(0)
        paragraph.add_run(note).font.size = Pt(NOTE_PT)


def _text_widths(table: PublicationTable, style: TableStyle) -> list[int]:
    """Characters each column needs (its longest text; a level's indent counts 2)."""
    widths = [len(c.label) for c in table.columns]
    for row in table.rows:
        for c, value in enumerate(row.cells):
            widths[c] = max(widths[c], len(style.text(value)) + (2 * row.indent if c == 0 else 0))
    return widths


def _max_indent(table: PublicationTable) -> int:
    return max((r.indent for r in table.rows), default=0)


def _docx_widths(document, grid, table: PublicationTable, style: TableStyle) -> None:
    """Column widths: each column's natural width (its longest text, at most 40 characters
    for the label column and 22 for the others, CHAR_PT a character at 9 pt plus the cell
    margins), stretched to the page's text width; when they do not fit, a column narrower
    than an equal share of what is left keeps its width and the others share the rest (their
    text wraps)."""
    from docx.shared import Pt

    section = document.sections[-1]
    total = int(section.page_width - section.left_margin - section.right_margin)
    need = _text_widths(table, style)
    natural = [int(Pt(CHAR_PT * min(w, 40 if i == 0 else 22) + 14)) for i, w in enumerate(need)]
    if sum(natural) <= total:
        widths = [int(w * total / sum(natural)) for w in natural]
    else:  # max-min fair: a column narrower than an equal share keeps its width
        widths = list(natural)
        left, open_cols = total, list(range(len(natural)))
        while open_cols:
            share = left / len(open_cols)
            small = [i for i in open_cols if natural[i] <= share]
            if not small:
                for i in open_cols:
                    widths[i] = int(share)
                break
            for i in small:
                left -= natural[i]
                open_cols.remove(i)
        words = [w for row in table.rows for w in style.text(row.cells[0]).split()] + table.columns[0].label.split()
        longest = int(Pt(CHAR_PT * max((len(w) for w in words), default=1) + 14 + 10 * _max_indent(table)))
        donors = [i for i in range(1, len(widths)) if widths[i] < natural[i]] or list(range(1, len(widths)))
        if widths[0] < longest and donors:  # a label never breaks inside a word: wrapped columns give way
            pool = sum(widths[i] for i in donors)
            deficit = min(longest - widths[0], pool // 2)
            widths[0] += deficit
            for i in donors:
                widths[i] = int(widths[i] - deficit * widths[i] / pool)
    for index, width in enumerate(widths):
        grid.columns[index].width = width
        for cell in grid.columns[index].cells:
            cell.width = width


def _write_docx(tables: Sequence[PublicationTable], tmp: Path, style: TableStyle) -> None:
    from docx import Document

    document = Document()
    for index, table in enumerate(tables):
        if index:
            document.add_page_break()
        _docx_table(document, table, style)
    document.save(str(tmp))


# --------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------


def _unique_sheet_names(tables: Sequence[PublicationTable]) -> list[str]:
    names: list[str] = []
    for table in tables:
        base = name = table.sheet_name
        k = 2
        while name.lower() in (n.lower() for n in names):
            suffix = f" ({k})"
            name = base[:31 - len(suffix)] + suffix
            k += 1
        names.append(name)
    return names


def _xlsx_sheet(sheet, table: PublicationTable, style: TableStyle) -> None:
    from openpyxl.styles import Alignment, Border, Font, Side
    from openpyxl.utils import get_column_letter

    thick, thin = Side(style="medium"), Side(style="thin")
    numeric = table.numeric_columns()
    width = len(table.columns)
    sheet.cell(row=1, column=1, value=table.caption).font = Font(bold=True)
    top = 3
    row_index = top
    if table.has_groups:
        for group, start, span in table.group_spans():
            if group:
                sheet.cell(row=row_index, column=start + 1, value=group).alignment = Alignment(horizontal="center")
                if span > 1:
                    sheet.merge_cells(start_row=row_index, start_column=start + 1,
                                      end_row=row_index, end_column=start + span)
        row_index += 1
    for c, column in enumerate(table.columns):
        cell = sheet.cell(row=row_index, column=c + 1, value=column.label)
        cell.alignment = Alignment(horizontal="right" if numeric[c] else "left")
    header_last = row_index
    for row in table.rows:
        row_index += 1
        for c, value in enumerate(row.cells):
            data, number_format = style.excel(value)
            cell = sheet.cell(row=row_index, column=c + 1, value=data)
            if number_format:
                cell.number_format = number_format
            cell.alignment = Alignment(horizontal="right" if numeric[c] else "left",
                                       indent=row.indent if c == 0 else 0)
    body_last = row_index
    for c in range(1, width + 1):  # the three rules
        sheet.cell(row=top, column=c).border = Border(top=thick)
        below = sheet.cell(row=header_last, column=c)
        below.border = Border(top=below.border.top, bottom=thin)
        last = sheet.cell(row=body_last, column=c)
        last.border = Border(top=last.border.top, bottom=thick)
    for offset, note in enumerate(table.notes()):
        sheet.cell(row=body_last + 2 + offset, column=1, value=note).font = Font(size=NOTE_PT)
    for c, length in enumerate(_text_widths(table, style)):
        sheet.column_dimensions[get_column_letter(c + 1)].width = min(max(length + 2, 6), 60)


def _write_xlsx(tables: Sequence[PublicationTable], tmp: Path, style: TableStyle) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for table, name in zip(tables, _unique_sheet_names(tables)):
        _xlsx_sheet(workbook.create_sheet(title=name), table, style)
    workbook.save(str(tmp))


def append_docx_table(document, table: PublicationTable, style: TableStyle | None = None) -> None:
    """Add ``table`` (caption, three-line table, footnotes) to an open python-docx document
    (the study bundle's report.docx puts tables and figures in one document)."""
    _docx_table(document, table, style or TableStyle())
