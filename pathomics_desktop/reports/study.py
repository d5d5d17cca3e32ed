"""``pathomics report study --out DIR``: the whole analysis plan as one folder.

The folder holds, in the study's order, ``report.docx`` (title, the SYNTHETIC label where it
applies, the methods, then every table and figure with its caption: Figure 1 flow, Table 1,
Table 2 and Tables S3-S5, Table S2, Figure 4 (td-ROC and Kaplan-Meier per set), Figures
S2-S5 (subgroup forests), Table S6), the figures as PNG (300 dpi) and PDF files under
``figures/``, the tables as XLSX (one sheet each) under ``tables/``, ``methods.md``, the REMARK
and TRIPOD checklists (``checklists.docx``) and the analysis plan as data
(``report.json``/``report.txt``). Every number comes from the same functions as the views and
``signature report``; the folder is written to a temporary sibling and renamed at the end, so
a failure never leaves half a bundle, and one ledger entry records it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pathomics_desktop.errors import UserError

SETS = ("training", "internal", "external")
SET_TITLES = {"training": "training set", "internal": "internal validation set", "external": "external validation set"}


@dataclass
class BundleItem:
    """One table or figure of the bundle, in the study's order."""

    kind: str  #: "table" or "figure"
    number: str
    caption: str
    files: list[Path] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)  #: PublicationTables (tables)


@dataclass
class StudyBundle:
    folder: Path
    items: list[BundleItem]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "notes": list(self.notes),
                "items": [{"kind": i.kind, "number": i.number, "caption": i.caption,
                           "files": [str(p.relative_to(self.folder)) for p in i.files]} for i in self.items]}


def _figure(items, folder: Path, number: str, caption: str, description, stem: str, *, width: str,
            footnote: str) -> None:
    from pathomics_desktop.reports.figures import save_figure

    files = [save_figure(description, folder / "figures" / f"{stem}.{ext}", width=width, footnote=footnote)
             for ext in ("png", "pdf")]
    items.append(BundleItem("figure", number, caption, files))


def _table(items, number: str, caption: str, tables: list) -> None:
    for table in tables:
        table.number = table.number or number
    items.append(BundleItem("table", number, caption, tables=tables))


def build_study_bundle(project, names: Sequence[str], out: str | os.PathLike, *, n_boot: int = 200, seed: int = 0,
                       width: str = "double", progress: Callable[[float, str], None] = lambda f, m: None
                       ) -> StudyBundle:
    """Write the bundle of ``names`` (the first signature's applied risk groups drive the
    figures) into the folder ``out`` (must not exist, or be empty)."""
    from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter, footnote
    from pathomics_desktop.figures.forest import build_forest
    from pathomics_desktop.figures.km import build_km
    from pathomics_desktop.figures.roc import build_td_roc
    from pathomics_desktop.figures.table1 import build_table1
    from pathomics_desktop.reports import adapters, view_tables
    from pathomics_desktop.reports.methods import checklist_table, methods_text, write_methods
    from pathomics_desktop.reports.tables import SourceNote, TableStyle
    from pathomics_desktop.reports.writers import write_tables
    from pathomics_desktop.signature.report import signature_report, write_report

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder; choose a new folder")
    if not names:
        raise UserError("name at least one signature (`pathomics signature list` shows them)")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (work / "figures").mkdir()
        (work / "tables").mkdir()
        style = TableStyle.for_project(project)
        progress(0.02, "the analysis plan (bootstrap)")
        report = signature_report(project, list(names), n_boot=n_boot, seed=seed)
        write_report(report, work)
        first = report.signatures[names[0]]
        source = AnalysisSource.open(project)
        everyone = CohortFilter()
        items: list[BundleItem] = []
        notes: list[str] = []

        progress(0.5, "Figure 1 and Table 1")
        flow = _patient_flow(project)
        _figure(items, work, "Figure 1", "Patient flow: enrolment, exclusions per reason and center, data sets",
                flow, "figure1_flow", width=width, footnote=footnote(CohortFilter(included_only=False), source.snapshot_id))
        table1 = build_table1(source, source.frame(everyone), {"by": "split"})
        _table(items, "Table 1", "Baseline characteristics by data set",
               view_tables.table1_publication(table1, SourceNote.of(everyone, source)))

        progress(0.6, "Tables 2, S2-S6")
        ep_report = first.endpoints.get(first.fit_endpoint or "os") or next(iter(first.endpoints.values()))
        for set_name in SETS:
            set_report = ep_report.sets[set_name]
            flt = CohortFilter(datasets=(set_name,))
            number = set_report.cox.figure.split(";")[0].strip() if set_name == "training" else \
                set_report.cox.figure.split(";")[-1].strip()
            _table(items, number, f"Univariate and multivariate Cox regression, {SET_TITLES[set_name]} "
                                  f"({ep_report.endpoint.upper()})",
                   [adapters.cox_tables_publication(set_report.cox, number=number, source=SourceNote.of(flt, source))])
            _table(items, "Table S2", f"Discrimination, {SET_TITLES[set_name]} ({ep_report.endpoint.upper()})",
                   view_tables.discrimination_publication(set_report.discrimination, SourceNote.of(flt, source)))

        progress(0.7, "Figure 4 and Figures S2-S5")
        endpoint = ep_report.endpoint
        group = f"pathomics_{endpoint}_group"
        if group not in source.columns:
            notes.append(f"the registry holds no {group}: apply the signature (`pathomics signature apply "
                         f"{names[0]} --all`) for the Kaplan-Meier and forest figures")
        for set_name in SETS:
            flt = CohortFilter(datasets=(set_name,))
            frame = source.frame(flt)
            note = footnote(flt, source.snapshot_id, len(frame))
            try:
                roc = build_td_roc(source, frame, {"endpoint": endpoint})
                _figure(items, work, ep_report.sets[set_name].discrimination.figure.split(";")[0].strip(),
                        f"Time-dependent ROC, {SET_TITLES[set_name]}", roc, f"figure4_roc_{set_name}",
                        width=width, footnote=note)
            except UserError as exc:
                notes.append(f"td-ROC, {set_name}: {exc}")
            if group in source.columns:
                km = build_km(source, frame, {"endpoint": endpoint, "group": group})
                _figure(items, work, ep_report.sets[set_name].km.figure,
                        f"Kaplan-Meier by pathomics risk group, {SET_TITLES[set_name]}", km,
                        f"figure4_km_{set_name}", width=width, footnote=note)
                if set_name in ("training", "external"):
                    forest = build_forest(source, frame, {"endpoint": endpoint})
                    _figure(items, work, ep_report.sets[set_name].subgroups.figure,
                            f"Subgroup analysis of the risk group, {SET_TITLES[set_name]}", forest,
                            f"forest_{set_name}", width=width, footnote=note)
        for set_name in SETS:
            assoc = first.associations[set_name]
            if assoc.table is not None:
                _table(items, "Table S6", f"Risk group and clinicopathological variables, {SET_TITLES[set_name]}",
                       [adapters.baseline_publication(assoc.table, title="Clinicopathological variables by risk group",
                                                      number="Table S6",
                                                      source=SourceNote.of(CohortFilter(datasets=(set_name,)), source))])

        progress(0.85, "methods, checklists and the document")
        methods = methods_text(project, list(names))
        write_methods(methods, work / "methods.md")
        all_tables = [t for item in items if item.kind == "table" for t in item.tables]
        write_tables(all_tables, work / "tables" / "tables.xlsx", style)
        write_tables([checklist_table("remark"), checklist_table("tripod")], work / "checklists.docx", style)
        _write_document(work / "report.docx", items, methods, report.synthetic, style, width)
        bundle = StudyBundle(out, items, notes)
        if out.exists():
            out.rmdir()
        os.replace(work, out)
        for item in items:  # the files now live under ``out``
            item.files = [out / p.relative_to(work) for p in item.files]
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    progress(1.0, f"bundle written to {out}")
    return bundle


def _patient_flow(project):
    from pathomics_desktop.cohort.flow import patient_flow
    from pathomics_desktop.registry.service import open_project_registry

    registry = open_project_registry(project)
    try:
        with registry.session() as session:
            return patient_flow(session)
    finally:
        registry.dispose()


def _write_document(path: Path, items: list[BundleItem], methods, synthetic: bool, style, width: str) -> None:
    """report.docx: title, methods, then every item with its caption, in order."""
    from docx import Document
    from docx.shared import Mm, Pt

    from pathomics_desktop.reports.writers import append_docx_table

    document = Document()
    document.add_heading("Pathomics signature: results of the analysis plan", level=1)
    if synthetic:
        para = document.add_paragraph()
        run = para.add_run("SYNTHETIC DATA: generated records of the demo project, not real patients.")
        run.bold = True
    document.add_heading("Methods", level=2)
    for title, body in methods.paragraphs:
        para = document.add_paragraph()
        para.add_run(f"{title}. ").bold = True
        para.add_run(body)
    figure_width = Mm(183 if width == "double" else 89)
    for item in items:
        document.add_page_break()
        if item.kind == "figure":
            png = next(p for p in item.files if p.suffix == ".png")
            document.add_picture(str(png), width=min(figure_width, Mm(165)))
            caption = document.add_paragraph()
            caption.add_run(f"{item.number}. ").bold = True
            caption.add_run(item.caption)
            for run in caption.runs:
                run.font.size = Pt(9)
        else:
            for table in item.tables:
                append_docx_table(document, table, style)
    with open(path, "wb") as fh:
        document.save(fh)
