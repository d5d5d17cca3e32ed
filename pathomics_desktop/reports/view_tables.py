"""Every analysis view's numbers as a :class:`~pathomics_desktop.reports.tables.PublicationTable`.

One function per figure description (``pathomics_desktop.figures``) and per report result
(:class:`~pathomics_desktop.signature.report.Discrimination`, the patient flow), looked up by
the description's type in :func:`publication_tables`. Like :mod:`pathomics_desktop.reports.adapters`
they copy numbers from the description and never re-compute them: the HR of a Kaplan-Meier
row is ``KMGroup.hr["hr"]``, the AUC of a ROC row ``MarkerRoc.auc[k]``; the style
(:class:`~pathomics_desktop.reports.tables.TableStyle`) writes them. A description without
its own function becomes a plain table of the view's ``table_data`` header and rows
(:func:`plain_table`), so any table a view shows can be exported.

* Table 1 (:class:`~pathomics_desktop.figures.table1.Table1`): as the view shows it, the
  ``n (%)`` cells as counts with percentages, p per variable, the tests in a footnote.
* Cox (:class:`~pathomics_desktop.figures.cox.CoxTable`): HR (95% CI) and p per level,
  univariate and/or multivariable under spanning headers, the model summary in a footnote.
* Kaplan-Meier (:class:`~pathomics_desktop.figures.km.KMFigure`): n, events, median (95% CI),
  HR (95% CI) and p against the reference per group; log-rank (and trend) p in the notes.
  A second table holds the number at risk at the figure's time breaks.
* Subgroups (:class:`~pathomics_desktop.figures.forest.ForestFigure`): n, events, HR (95% CI), p
  per level, the interaction p on each variable's row.
* Time-dependent ROC, model comparison (:mod:`pathomics_desktop.figures.roc`), the C-index and
  td-AUC comparison (Table S2), the cutpoint, the signature panel and the patient flow.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from pathomics_desktop.reports.tables import (
    Column, Estimate, Number, PValue, PublicationTable, Row, SourceNote, Text, as_cell,
    join_alternatives, p_footnote)

HR_NOTE = "HR, hazard ratio; CI, confidence interval (Wald 95%)."
AUC_DECIMALS = 3  #: C-index and AUC: three decimals (0.712)


def _hr(d: dict | None, keys: tuple[str, str, str] = ("hr", "hr_lower", "hr_upper")) -> Estimate:
    d = d or {}
    return Estimate(d.get(keys[0]), d.get(keys[1]), d.get(keys[2]))


def _p_phrase(p) -> str:
    """``"< 0.001"`` or ``"= 0.012"`` (journal style, :func:`~pathomics_desktop.figures.style.format_p`)."""
    from pathomics_desktop.figures.style import format_p

    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def _p(value) -> PValue | Text:
    return Text("") if value is None else PValue(value)


# --------------------------------------------------------------------------------------
# one function per description
# --------------------------------------------------------------------------------------


def table1_publication(table, source: SourceNote | None = None) -> list[PublicationTable]:
    """Table 1 as the view shows it (:class:`~pathomics_desktop.figures.table1.Table1`)."""
    from pathomics_desktop.reports.adapters import TEST_NAMES, _summary_cell

    columns = [Column("Characteristic")] + [Column(h) for h in table.header()[1:-2]] + [Column("p")]
    rows: list[Row] = []
    categorical: list[str] = []
    continuous: list[str] = []
    for r in table.rows:
        cells = [r.cells.get(c, "") for c in table.columns]
        if r.kind == "count":
            body = [Number(int(r.counts[c])) for c in table.columns]
        elif r.kind == "missing":
            body = [Number(int(v)) if str(v).isdigit() else _summary_cell(str(v)) for v in cells]
        else:
            body = [_summary_cell(str(v)) if v != "" else Text("") for v in cells]
        p = _p(r.p) if r.kind in ("header", "continuous") else Text("")
        if r.test:
            (categorical if r.kind == "header" else continuous).append(TEST_NAMES.get(r.test, r.test))
        rows.append(Row([Text(r.label), *body, p], indent=1 if r.kind in ("level", "missing") else 0))
    notes = ["Values are n (%), mean (SD) or median [Q1, Q3]."]
    note = p_footnote([join_alternatives(list(dict.fromkeys(categorical))),
                       join_alternatives(list(dict.fromkeys(continuous)))])
    if note:
        notes.append(note)
    notes += list(table.notes)
    return [PublicationTable(f"Baseline characteristics by {table.by_label}", columns, rows, number="Table 1",
                             footnotes=notes, source=source)]


def cox_publication(table, source: SourceNote | None = None) -> list[PublicationTable]:
    """The Cox view's table (:class:`~pathomics_desktop.figures.cox.CoxTable`)."""
    uni = table.mode in ("univariate", "screen")
    multi = table.mode in ("multivariate", "screen")
    columns = [Column("Variable")]
    if uni:
        columns += [Column("HR (95% CI)", "Univariate"), Column("p", "Univariate")]
    if multi:
        group = "Multivariate" if uni else None
        columns += [Column("HR (95% CI)", group), Column("p", group)]
    rows: list[Row] = []
    for r in table.rows:
        if r.first and (len([x for x in table.rows if x.variable == r.variable]) > 1 or r.reference):
            rows.append(Row([Text(r.label), *[Text("") for _ in columns[1:]]]))
        label = r.level if (r.reference or not r.first or r.term != r.variable) else f"{r.label}, {r.level}"
        indent = 0 if (r.first and not r.reference and r.term == r.variable) else 1
        cells: list = [Text(label)]
        if uni:
            cells += ([Text("Reference"), Text("")] if r.reference else
                      [Estimate(r.uni_hr, r.uni_lower, r.uni_upper) if r.uni_hr is not None
                       else Text("not estimable" if r.note else ""), _p(r.uni_p)])
        if multi:
            entered = r.selected is not False if table.mode == "screen" else True
            if r.reference:
                cells += [Text("Reference") if entered else Text(""), Text("")]
            else:
                cells += [Estimate(r.multi_hr, r.multi_lower, r.multi_upper) if r.multi_hr is not None
                          else Text(""), _p(r.multi_p)]
        rows.append(Row(cells, indent=indent))
    notes = [HR_NOTE + " p values: Wald test.", table.summary_text()]
    if table.mode == "screen":
        notes.append(f"Multivariate: the variables with univariate likelihood-ratio p < {table.threshold:g}; "
                     "blank: not in the model.")
    notes += list(table.notes)
    title = {"univariate": "Univariate Cox regression", "multivariate": "Multivariate Cox regression",
             "screen": "Univariate and multivariate Cox regression"}[table.mode]
    return [PublicationTable(f"{title} ({table.endpoint.upper()})", columns, rows, footnotes=notes, source=source)]


def km_publication(figure, source: SourceNote | None = None) -> list[PublicationTable]:
    """Kaplan-Meier (:class:`~pathomics_desktop.figures.km.KMFigure`): the groups, then the
    number at risk."""
    unit = figure.unit
    columns = [Column(figure.group_label if figure.group else "Patients"), Column("n"), Column("Events"),
               Column(f"Median, {unit} (95% CI)"), Column("HR (95% CI)"), Column("p")]
    rows = []
    for g in figure.groups:
        hr = [Text("Reference"), Text("")] if g.label == figure.reference else (
            [_hr(g.hr), _p((g.hr or {}).get("p"))] if g.hr else [Text(""), Text("")])
        median = Estimate(g.median, g.median_lower, g.median_upper, decimals=1) if g.median is not None \
            else Text("not reached")
        rows.append(Row([Text(g.label), Number(g.n), Number(g.events), median, *hr]))
    notes = [HR_NOTE + " Median survival: Kaplan-Meier, 95% CI by the log transform."]
    if figure.logrank:
        notes.append(f"Log-rank test: chi-square = {figure.logrank['chisq']:.2f} on {figure.logrank['df']:g} df, "
                     f"p {_p_phrase(figure.logrank['p'])}.")
    if figure.trend:
        notes.append(f"Log-rank test for trend: chi-square = {figure.trend['chisq']:.2f}, "
                     f"p {_p_phrase(figure.trend['p'])}.")
    if figure.n_missing:
        notes.append(f"{figure.n_missing} patient(s) without {figure.endpoint_label.lower()} or grouping left out.")
    notes += list(figure.notes)
    main = PublicationTable(f"{figure.endpoint_label} by {figure.group_label}", columns, rows,
                            footnotes=notes, source=source)
    risk_columns = [Column(figure.group_label if figure.group else "Patients")] + \
        [Column(f"{t:g}", f"Number at risk ({unit})") for t in figure.breaks]
    risk = PublicationTable(f"{figure.endpoint_label}: number at risk", risk_columns,
                            [Row([Text(g.label), *[Number(int(v)) for v in g.at_risk]]) for g in figure.groups],
                            footnotes=["At risk: patients with follow-up at or beyond the time."], source=source)
    return [main, risk]


def forest_publication(figure, source: SourceNote | None = None) -> list[PublicationTable]:
    """Subgroups (:class:`~pathomics_desktop.figures.forest.ForestFigure`)."""
    columns = [Column("Subgroup"), Column("n"), Column("Events"), Column("HR (95% CI)"), Column("p"),
               Column("p for interaction")]
    rows = []
    for r in figure.rows:
        if r.kind == "header":
            rows.append(Row([Text(r.label), Text(""), Text(""), Text(""), Text(""), _p(r.p_interaction)]))
            continue
        label = r.level if r.kind == "level" else r.label
        hr = _hr({"hr": r.hr, "hr_lower": r.hr_lower, "hr_upper": r.hr_upper}) if r.estimable else Text("not estimable")
        rows.append(Row([Text(label + (" \u2020" if r.flagged else "")), Number(r.n), Number(r.events), hr,
                         _p(r.p), Text("")], indent=1 if r.kind == "level" else 0))
    comparison = f"{figure.exposure_label}, {figure.exposure_level} vs {figure.reference_level}".rstrip(", vs")
    notes = [HR_NOTE + " p: Wald test; p for interaction: likelihood-ratio test of exposure x subgroup.",
             figure.flag_rule + "."] + list(figure.notes)
    return [PublicationTable(f"Subgroup analysis: {comparison} ({figure.endpoint.upper()})", columns, rows,
                             footnotes=notes, source=source)]


def td_roc_publication(figure, source: SourceNote | None = None) -> list[PublicationTable]:
    """Time-dependent ROC (:class:`~pathomics_desktop.figures.roc.TimeDependentRoc`)."""
    columns = [Column("Marker"), Column("n"), Column("Events")] + \
        [Column(f"{t:g} months", "AUC(t) (95% CI)") for t in figure.times]
    rows = [Row([Text(m.label), Number(m.n), Number(m.events),
                 *[Estimate(m.auc[k], m.ci_lower[k], m.ci_upper[k], decimals=AUC_DECIMALS)
                   for k in range(len(figure.times))]]) for m in figure.markers]
    ci = (f"percentile bootstrap CI, {figure.bootstrap} resamples, seed {figure.seed}" if figure.bootstrap
          else "no CI (no bootstrap)")
    notes = [f"Cumulative/dynamic AUC(t) with inverse-probability-of-censoring weights (Uno); {ci}."]
    notes += list(figure.notes) + [f"{m.label}: {n}" for m in figure.markers for n in m.notes]
    return [PublicationTable(f"Time-dependent AUC: {figure.endpoint_label.lower()}", columns, rows,
                             footnotes=notes, source=source)]


def model_roc_publication(figure, source: SourceNote | None = None) -> list[PublicationTable]:
    """Model comparison, Table S1 (:class:`~pathomics_desktop.figures.roc.ModelComparison`)."""
    columns = [Column("Model"), Column("Level"), Column("n"), Column("Poor prognosis"), Column("AUC (95% CI)"),
               Column("Sensitivity"), Column("Specificity")]
    rows = [Row([Text(r.run), Text(r.level), Number(r.n), Number(r.positives),
                 Estimate(r.auc, r.ci_lower, r.ci_upper, decimals=AUC_DECIMALS) if r.auc is not None
                 else Text(r.note or ""), Number(r.sensitivity, AUC_DECIMALS), Number(r.specificity, AUC_DECIMALS)])
            for r in figure.rocs]
    out = [PublicationTable("Patch-model comparison", columns, rows, number="Table S1",
                            footnotes=["AUC with the DeLong 95% CI; sensitivity and specificity at the Youden "
                                       "cut. Poor prognosis: recurrence within 12 months; good: recurrence-free "
                                       "beyond 36 months.", *figure.notes], source=source)]
    if figure.tests:
        test_columns = [Column("Level"), Column("Model A"), Column("Model B"), Column("AUC A"), Column("AUC B"),
                        Column("Difference"), Column("z"), Column("p")]
        test_rows = [Row([Text(t["level"]), Text(t["a"]), Text(t["b"]), Number(t["auc1"], AUC_DECIMALS),
                          Number(t["auc2"], AUC_DECIMALS), Number(t["difference"], AUC_DECIMALS),
                          Number(t["z"]), _p(t["p"])]) for t in figure.tests]
        out.append(PublicationTable("Pairwise DeLong tests of the patch models", test_columns, test_rows,
                                    number="Table S1b", footnotes=["DeLong test of correlated AUCs."],
                                    source=source))
    return out


def discrimination_publication(result, source: SourceNote | None = None) -> list[PublicationTable]:
    """The C-index and td-AUC comparison, Table S2
    (:class:`~pathomics_desktop.signature.report.Discrimination`): Harrell's C and AUC(t) with
    bootstrap CIs per marker, the signature's C minus each marker's with its p."""
    d = result.to_dict()
    comparisons = {c["marker"]: c for c in d["comparisons"]}
    labels = {"signature": "Pathomics signature", "tnm_stage": "TNM stage", "ca19_9": "CA19-9"}
    columns = [Column("Marker"), Column("n"), Column("C-index (95% CI)")] + \
        [Column(f"{t / 12:g} year" + ("s" if t != 12 else ""), "AUC(t) (95% CI)") for t in result.times] + \
        [Column("Difference in C", "vs signature"), Column("p", "vs signature"), Column("p (Bonferroni)", "vs signature")]
    rows = []
    for key, m in result.markers.items():
        c = m.c_index
        cells: list = [Text(labels.get(key, key)), Number(m.n),
                       Estimate(c.c, c.ci_lower, c.ci_upper, decimals=AUC_DECIMALS) if c is not None else Text("")]
        for t in result.times:
            a = m.auc_at(t)
            cells.append(Estimate(a["auc"], a["ci_lower"], a["ci_upper"], decimals=AUC_DECIMALS))
        comp = comparisons.get(key)
        if comp is None:
            cells += [Text("Reference"), Text(""), Text("")]
        else:
            cells += [Number(comp["difference"], AUC_DECIMALS), _p(comp["p"]), _p(comp["p_bonferroni"])]
        rows.append(Row(cells))
    notes = ["Harrell's C and cumulative/dynamic AUC(t) (IPCW) with percentile bootstrap 95% CIs; "
             "difference in C: signature minus marker, paired bootstrap on the same resamples, "
             "p = 2 Phi(-|d| / SD); Bonferroni over the comparisons.", *result.notes()]
    return [PublicationTable("Discrimination of the pathomics signature, TNM stage and CA19-9", columns, rows,
                             number="Table S2", footnotes=notes, source=source)]


def cutpoint_publication(figure, source: SourceNote | None = None) -> list[PublicationTable]:
    """The cutpoint explorer (:class:`~pathomics_desktop.figures.cutpoint.CutpointFigure`): the
    chosen cut, the maximally selected log-rank statistic and the X-tile cuts."""
    rows = [Row([Text("Maximally selected log-rank cut"), Number(figure.cutpoint, 4)]),
            Row([Text("Standardized log-rank statistic"), Number(figure.statistic)]),
            Row([Text("p (unadjusted)"), PValue(figure.p_raw)]),
            Row([Text("p (Lausen-Sauerbrei-Schumacher 1994)"), PValue(figure.p_lau94)]),
            Row([Text("X-tile single cut"), Number(figure.xtile_single_cut, 4)]),
            Row([Text("X-tile single-cut chi-square"), Number(figure.xtile_single_chi2)]),
            Row([Text("Chosen cut"), Number(figure.chosen_cut, 4)])]
    chosen = figure.chosen or {}
    sizes = chosen.get("n") or []
    if len(sizes) == 2:
        rows += [Row([Text("Patients, low (marker <= cut)"), Number(int(sizes[0]))]),
                 Row([Text("Patients, high"), Number(int(sizes[1]))])]
    if chosen.get("hr"):
        rows.append(Row([Text("HR high vs low (95% CI)"),
                         Estimate(chosen["hr"][0], chosen["hr_lower"][0], chosen["hr_upper"][0])]))
        rows.append(Row([Text("Log-rank p at the chosen cut"), PValue(chosen.get("logrank_p"))]))
    title = f"Cutpoint of {figure.marker_label} ({figure.endpoint.upper()}, {figure.data_set}; n = {figure.n}, " \
            f"{figure.events} events)"
    return [PublicationTable(title, [Column("Quantity"), Column("Value")], rows,
                             footnotes=[f"Smallest group: {figure.minprop:.0%} of the patients.", *figure.notes],
                             source=source)]


def signature_publication(panel, source: SourceNote | None = None) -> list[PublicationTable]:
    """The signature panel (:class:`~pathomics_desktop.figures.signature.SignaturePanel`): C and
    AUC(t) per set."""
    columns = [Column("Data set"), Column("n"), Column("C-index (95% CI)")] + \
        [Column(f"{t:g} months", "AUC(t) (95% CI)") for t in panel.auc_times]
    rows = []
    for r in panel.discrimination_rows():
        cells = [Text(r["set"]), Number(r["n"]), Estimate(r["c"], r["c_lower"], r["c_upper"], decimals=AUC_DECIMALS)]
        cells += [Estimate(r[f"auc_{t:g}"], r[f"auc_{t:g}_lower"], r[f"auc_{t:g}_upper"], decimals=AUC_DECIMALS)
                  for t in panel.auc_times]
        rows.append(Row(cells))
    notes = [f"Signature {panel.name} (version {panel.version}), high risk: score > {panel.cut:.4g}; "
             f"percentile bootstrap CIs ({panel.n_boot} resamples).", *panel.notes]
    return [PublicationTable(f"Signature {panel.name}: discrimination ({panel.endpoint.upper()})", columns, rows,
                             footnotes=notes, source=source)]


def flow_publication(flow, source: SourceNote | None = None) -> list[PublicationTable]:
    """The patient flow, Figure 1 as a table (:class:`~pathomics_desktop.cohort.flow.Flow`)."""
    d = flow.to_dict()
    centers = d["centers"] + [d["total"]]
    columns = [Column("")] + [Column("Total" if c["center"] == "all" else c["center"]) for c in centers]
    rows = [Row([Text("Enrolled"), *[Number(c["enrolled"]) for c in centers]])]
    for reason in d["reasons"]:
        rows.append(Row([Text(f"Excluded: {reason}"), *[Number(c["excluded"][reason]) for c in centers]], indent=1))
    rows.append(Row([Text("Included"), *[Number(c["included"]) for c in centers]]))
    for key, label in (("training", "Training set"), ("internal", "Internal validation set"),
                       ("external", "External validation set")):
        rows.append(Row([Text(label), *[Number(c[key]) for c in centers]], indent=1))
    if any(c["unassigned"] for c in centers):
        rows.append(Row([Text("Not yet assigned"), *[Number(c["unassigned"]) for c in centers]], indent=1))
    note = SourceNote("all enrolled patients of the registry (the cohort filter does not apply)",
                      source.snapshot_id if source is not None else "")
    return [PublicationTable("Patient flow", columns, rows, number="Figure 1 (table)", source=note)]


# --------------------------------------------------------------------------------------
# lookup by description type
# --------------------------------------------------------------------------------------


def _adapters() -> list[tuple[type, Callable]]:
    from pathomics_desktop.cohort.flow import Flow
    from pathomics_desktop.figures.cox import CoxTable
    from pathomics_desktop.figures.cutpoint import CutpointFigure
    from pathomics_desktop.figures.forest import ForestFigure
    from pathomics_desktop.figures.km import KMFigure
    from pathomics_desktop.figures.roc import ModelComparison, TimeDependentRoc
    from pathomics_desktop.figures.signature import SignaturePanel
    from pathomics_desktop.figures.table1 import Table1
    from pathomics_desktop.signature.report import Discrimination

    return [(Table1, table1_publication), (CoxTable, cox_publication), (KMFigure, km_publication),
            (ForestFigure, forest_publication), (TimeDependentRoc, td_roc_publication),
            (ModelComparison, model_roc_publication), (Discrimination, discrimination_publication),
            (CutpointFigure, cutpoint_publication), (SignaturePanel, signature_publication),
            (Flow, flow_publication)]


def adapter_for(description) -> Callable | None:
    """The table function of a description's type (None: no table function)."""
    for kind, fn in _adapters():
        if isinstance(description, kind):
            return fn
    return None


def plain_table(title: str, header: Sequence[Any], rows: Sequence[Sequence[Any]],
                source: SourceNote | None = None) -> PublicationTable:
    """A view's ``table_data`` (header, rows) as a table: numbers stay numbers (:func:`as_cell`);
    an empty row (a separator in Copy data) is dropped and short rows are padded."""
    header = [str(h) for h in header] or ["Value"]
    width = max([len(header)] + [len(r) for r in rows if r])
    columns = [Column(h) for h in header] + [Column("") for _ in range(width - len(header))]
    body = [Row([as_cell(v) for v in list(r) + [None] * (width - len(r))]) for r in rows if r]
    return PublicationTable(title, columns, body, source=source)


def publication_tables(description, source: SourceNote | None = None, *, title: str = "",
                       table_data: tuple[Sequence[Any], Sequence[Sequence[Any]]] | None = None
                       ) -> list[PublicationTable]:
    """The tables of a description: its own table function, else ``table_data`` as a plain
    table (:func:`plain_table`); a UserError when there is neither."""
    from pathomics_desktop.errors import UserError

    fn = adapter_for(description)
    if fn is not None:
        return fn(description, source)
    if table_data is not None and (table_data[0] or table_data[1]):
        return [plain_table(title or "Table", table_data[0], table_data[1], source)]
    raise UserError(f"{title or type(description).__name__}: this result has no table to export; "
                    "export it as a figure (.png, .svg or .pdf)")


__all__ = ["publication_tables", "plain_table", "adapter_for"]
