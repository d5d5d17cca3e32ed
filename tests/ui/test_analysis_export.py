"""A view's Export writes DOCX, XLSX and CSV tables and a PDF figure, read back with their own
readers (python-docx, openpyxl, csv), and records each export in the project's ledger with the
hashes of the snapshot and the file (computed here with hashlib)."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.style import format_p
from pathomics_desktop.ui.views.analysis.km import KaplanMeierView
from pathomics_desktop.ui.views.analysis.table1 import BaselineTableView
from tests.ui.helpers import shown_view


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def ledger(project) -> list[dict]:
    path = project.root / "reports" / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_table1_view_exports_docx_xlsx_and_csv(qtbot, demo_context, tmp_path):
    import docx
    import openpyxl

    view = shown_view(qtbot, BaselineTableView(), demo_context, (1300, 850))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=120000)
    table = view.computed.model
    docx_path = view.export_to(tmp_path / "table1.docx")
    rows = [[c.text for c in r.cells] for r in docx.Document(str(docx_path)).tables[0].rows]
    assert rows[0][1:-1] == table.header()[1:-2]
    for got, want in zip(rows[1:], table.rows):
        assert got[0] == want.label
        assert got[1:-1] == [want.cells.get(c, "") for c in table.columns]
        assert got[-1] == (format_p(want.p) if want.kind in ("header", "continuous") else "")
    sheet = openpyxl.load_workbook(str(view.export_to(tmp_path / "table1.xlsx"))).active
    patients = next(r for r in sheet.iter_rows(values_only=True) if r[0] == "Patients, n")
    assert list(patients[1:1 + len(table.columns)]) == [table.rows[0].counts[c] for c in table.columns]
    assert all(isinstance(v, int) for v in patients[1:1 + len(table.columns)])  # numbers, not text
    lines = list(csv.reader(view.export_to(tmp_path / "table1.csv").open(encoding="utf-8")))
    assert len(lines) == 1 + len(table.rows)
    entries = ledger(demo_context.project)
    assert [e["output"]["format"] for e in entries] == [".docx", ".xlsx", ".csv"]
    snapshot = demo_context.project.root / "analytics" / "cohort.parquet"
    for entry, name in zip(entries, ("table1.docx", "table1.xlsx", "table1.csv")):
        assert entry["command"] == "table1" and entry["origin"] == "gui" and entry["user"] == "tester"
        assert entry["output"]["sha256"] == sha256(tmp_path / name)
        assert entry["inputs"]["snapshot"]["sha256"] == sha256(snapshot)
        assert entry["inputs"]["snapshot"]["sha256"].startswith(view.computed.snapshot_id)
        assert entry["cohort_filter"] == view.computed.cohort_filter.to_dict()
        assert entry["numbers"]["rows"][0]["counts"] == table.rows[0].counts


def test_km_view_exports_a_pdf_and_reproduces(qtbot, demo_context, tmp_path, capsys):
    from pathomics_desktop.cli import main

    view = shown_view(qtbot, KaplanMeierView(), demo_context, (1200, 800))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=120000)
    pdf = view.export_to(tmp_path / "km.pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert b"/FontFile" in data  # the fonts are embedded
    docx_path = view.export_to(tmp_path / "km.docx")
    import docx

    rows = [[c.text for c in r.cells] for r in docx.Document(str(docx_path)).tables[0].rows]
    figure = view.computed.model
    assert [r[:3] for r in rows[1:]] == [[g.label, str(g.n), str(g.events)] for g in figure.groups]
    entries = ledger(demo_context.project)
    assert [(e["command"], e["output"]["sha256"]) for e in entries] == [("km", sha256(pdf)),
                                                                         ("km", sha256(docx_path))]
    assert entries[0]["numbers"] == json.loads(json.dumps(entries[1]["numbers"]))
    assert view.last_ledger_entry["id"] == entries[-1]["id"]
    # the GUI's entry is recomputed by the same builder, headless
    assert main(["reproduce", entries[0]["id"], "--project", str(demo_context.project.root)]) == 0
    assert "numbers match" in capsys.readouterr().out


def test_an_unknown_export_format_is_refused(qtbot, demo_context, tmp_path):
    view = shown_view(qtbot, BaselineTableView(), demo_context, (1300, 850))
    qtbot.waitUntil(lambda: view.computed is not None, timeout=120000)
    with pytest.raises(UserError, match=r"\.docx"):
        view.export_to(tmp_path / "table1.txt")
    assert not (tmp_path / "table1.txt").exists()
    assert ledger(demo_context.project) == []
