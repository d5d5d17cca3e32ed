"""Result objects of :mod:`pathomics_desktop.stats` and :mod:`pathomics_desktop.signature` as
:class:`~pathomics_desktop.reports.tables.PublicationTable` objects.

The adapters copy numbers, never re-compute them: the HR, its interval and p of a table cell
are the fields of the result object (``CoxFit.table()`` rows, ``CoxTables.univariate``), and
a Table 1 ``n (%)`` cell is the count and percentage of the ``BaselineTable`` cell it comes
from (kept with the decimals it was computed with). Formatting is left to the style.

* :func:`baseline_publication`: Table 1 from :class:`~pathomics_desktop.stats.table1.BaselineTable`
  (a categorical variable: its row with the p, then its levels indented; a continuous one:
  one row "Age (years), median [Q1, Q3]"; a "Missing" count row where any), with footnotes
  naming the summaries and the tests used.
* :func:`cox_model_publication`: one Cox model (:class:`~pathomics_desktop.stats.cox.CoxModelResult`):
  HR (95% CI) and p per term, n, events and Harrell's C in a footnote.
* :func:`cox_tables_publication`: Table 2 / Tables S3-S5 from
  :class:`~pathomics_desktop.signature.report.CoxTables`: univariate and multivariate
  HR (95% CI) and p side by side under two spanning headers.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from pathomics_desktop.reports.tables import (
    Column, CountPercent, Estimate, Number, PValue, PublicationTable, Row, SourceNote, Text,
    join_alternatives, p_footnote)

#: the tests of :mod:`pathomics_desktop.stats.table1` as a methods section names them
TEST_NAMES = {"Pearson chi-square": "chi-square test", "Fisher's exact test": "Fisher's exact test",
              "Welch t-test": "Welch's t test", "Student t-test": "t test", "Mann-Whitney U": "Mann-Whitney U test",
              "ANOVA": "one-way ANOVA", "Kruskal-Wallis": "Kruskal-Wallis test"}
HR_NOTE = "HR, hazard ratio; CI, confidence interval (Wald 95%)."
RISK_LABEL = "Pathomics risk group"
REFERENCE_CELLS = [Text("Reference"), Text("")]  #: HR and p cells of a reference level

_COUNT_PERCENT = re.compile(r"^(\d+) \((\d+(?:\.(\d+))?)%\)$")


def default_labels() -> dict[str, str]:
    """Column -> label: the codebook's labels (with units), the study's derived analysis
    columns (:func:`pathomics_desktop.signature.report.clinical_variables`) and the
    snapshot's derived columns."""
    from pathomics_desktop.analytics.cohort_filter import DERIVED_LABELS
    from pathomics_desktop.registry.codebook import Codebook
    from pathomics_desktop.signature.report import RISK, clinical_variables

    labels = {v.name: v.display_label for v in Codebook.builtin()}
    labels.update({k: (f"{label} ({unit})" if unit else label) for k, (label, unit) in DERIVED_LABELS.items()})
    labels.update({v.column: v.label for v in clinical_variables()})
    labels.update({"age_group": "Age (years)", "ca19_9_group": "CA19-9 (U/mL)", RISK: RISK_LABEL})
    return labels


def _labeller(labels: Mapping[str, str] | None):
    table = default_labels()
    table.update(labels or {})
    return lambda column: table.get(column, column)


def _empty(n: int) -> list:
    return [Text("") for _ in range(n)]


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


# --------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------


def _summary_cell(text: str):
    """``"12 (34.5%)"`` -> CountPercent(12, 34.5, decimals=1); anything else stays text."""
    match = _COUNT_PERCENT.match(text)
    if match is None:
        return Text(text)
    decimals = len(match.group(3) or "")
    return CountPercent(int(match.group(1)), float(match.group(2)), decimals=decimals)


def _variable_blocks(rows) -> list[list]:
    blocks: list[list] = []
    for row in rows:
        if blocks and blocks[-1][0].variable == row.variable:
            blocks[-1].append(row)
        else:
            blocks.append([row])
    return blocks


def baseline_publication(table, *, title: str = "Baseline characteristics of the patients",
                         number: str | None = "Table 1", labels: Mapping[str, str] | None = None,
                         group_labels: Mapping[str, str] | None = None,
                         group_n: Mapping[str, int] | None = None, include_smd: bool = False,
                         source: SourceNote | None = None) -> PublicationTable:
    """Table 1 from a :class:`~pathomics_desktop.stats.table1.BaselineTable`.

    ``group_labels`` rename the group columns ("training" -> "Training cohort"); ``group_n``
    adds "(n = 255)" to them; ``include_smd`` adds the standardised mean difference column.
    """
    label = _labeller(labels)
    keys = list(table.groups) + ["Overall"]
    names = {g: (group_labels or {}).get(g, g) for g in keys}
    columns = [Column("Characteristic")]
    for g in keys:
        n = (group_n or {}).get(g)
        columns.append(Column(f"{names[g]} (n = {n})" if n is not None else names[g]))
    columns.append(Column("p"))
    if include_smd:
        columns.append(Column("SMD"))
    width = len(keys)
    rows: list[Row] = []
    kinds: list[str] = []
    categorical_tests: list[str] = []
    continuous_tests: list[str] = []

    def tail(first) -> list:
        out = [PValue(first.p) if first.p is not None else Text("")]
        if include_smd:
            out.append(Number(first.smd) if first.smd is not None else Text(""))
        return out

    for block in _variable_blocks(table.rows):
        first = block[0]
        levels = [r for r in block if r.level is not None and r.level != "missing"]
        missing = [r for r in block if r.level == "missing"]
        if levels:
            kinds.append("n (%)")
            if first.test:
                categorical_tests.append(TEST_NAMES.get(first.test, first.test))
            rows.append(Row([Text(label(first.variable)), *_empty(width), *tail(first)]))
            for lvl in levels:
                rows.append(Row([Text(lvl.level), *[_summary_cell(lvl.cells[g]) for g in keys],
                                 *_empty(len(tail(first)))], indent=1))
        else:
            kind = first.statistic_kind
            if kind:
                kinds.append(kind)
            if first.test:
                continuous_tests.append(TEST_NAMES.get(first.test, first.test))
            head = f"{label(first.variable)}, {kind}" if kind else label(first.variable)
            rows.append(Row([Text(head), *[Text(first.cells[g]) for g in keys], *tail(first)]))
        for miss in missing:
            rows.append(Row([Text("Missing"), *[Number(int(miss.cells[g])) for g in keys],
                             *_empty(len(tail(first)))], indent=1))
    footnotes = []
    if kinds:
        shown = list(dict.fromkeys(kinds))
        footnotes.append("Values are " + (", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1
                                          else shown[0]) + ".")
    note = p_footnote([join_alternatives(categorical_tests), join_alternatives(continuous_tests)])
    if note:
        footnotes.append(note)
    if include_smd:
        footnotes.append("SMD, standardised mean difference (largest pairwise).")
    return PublicationTable(title, columns, rows, number=number, footnotes=footnotes, source=source)


# --------------------------------------------------------------------------------------
# Cox models
# --------------------------------------------------------------------------------------


def _term_level(variable: str, term: str) -> str | None:
    prefix = f"{variable}="
    return term[len(prefix):] if term.startswith(prefix) else None


def _hr_cells(row: Mapping[str, Any] | None) -> list:
    if row is None:
        return [Text(""), Text("")]
    return [Estimate(row.get("hr"), row.get("hr_lower"), row.get("hr_upper")), PValue(row.get("p"))]


def _variable_rows(variable: str, terms: Sequence[str], label: str, reference: str | None,
                   cells_of, reference_cells: list) -> list[Row]:
    """Rows of one variable: a numeric one (term == variable) on one row; a binary one
    "Sex, male vs female" on one row; more levels: the variable, its reference and levels."""
    levels = [_term_level(variable, t) for t in terms]
    if len(terms) == 1 and levels[0] is None:
        return [Row([Text(label), *cells_of(terms[0])])]
    if len(terms) == 1:
        head = f"{label}, {levels[0]} vs {reference}" if reference else f"{label}: {levels[0]}"
        return [Row([Text(head), *cells_of(terms[0])])]
    width = len(cells_of(terms[0]))
    rows = [Row([Text(label), *_empty(width)])]
    if reference:
        rows.append(Row([Text(reference), *reference_cells], indent=1))
    for term, level in zip(terms, levels):
        rows.append(Row([Text(level if level is not None else term), *cells_of(term)], indent=1))
    return rows


def infer_references(variables: Mapping[str, Sequence[str]],
                     levels: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Reference level of each categorical variable: the first of its known levels (codebook
    order, :func:`~pathomics_desktop.signature.report.clinical_variables` by default) that has
    no model term. ``variables``: variable -> its terms (``"var=level"``)."""
    if levels is None:
        from pathomics_desktop.signature.report import RISK, RISK_LEVELS, clinical_variables

        levels = {v.column: v.levels for v in clinical_variables()} | {RISK: RISK_LEVELS}
    out = {}
    for variable, terms in variables.items():
        have = {_term_level(variable, t) for t in terms}
        for level in levels.get(variable, ()):
            if level not in have:
                out[variable] = level
                break
    return out


def _fit_terms(fit) -> dict[str, list[str]]:
    terms = getattr(fit, "terms", None) or {name: [j] for j, name in enumerate(fit.names)}
    return {var: [fit.names[j] for j in cols] for var, cols in terms.items()}


def cox_model_publication(result, *, title: str = "Cox proportional hazards model", number: str | None = None,
                          labels: Mapping[str, str] | None = None, references: Mapping[str, str] | None = None,
                          source: SourceNote | None = None) -> PublicationTable:
    """One Cox model (:class:`~pathomics_desktop.stats.cox.CoxModelResult`, a frailty model too):
    HR (95% CI) and p of each term; n, events and Harrell's C in the footnotes."""
    fit = result.fit
    label = _labeller(labels)
    by_term = {row["term"]: row for row in fit.table()}
    variables = _fit_terms(fit)
    refs = infer_references(variables) | dict(references or {})
    rows: list[Row] = []
    for variable, terms in variables.items():
        rows += _variable_rows(variable, terms, label(variable), refs.get(variable),
                               lambda term: _hr_cells(by_term[term]), REFERENCE_CELLS)
    notes = [HR_NOTE + " p values: Wald test."]
    model = f"n = {fit.n}, {fit.events} events"
    if _finite(result.concordance):
        model += f"; Harrell's C = {result.concordance:.3f}"
    notes.append(model + ".")
    if result.frailty_variance is not None:
        notes.append(f"Gaussian random center effect (frailty), variance = {result.frailty_variance:.4g}.")
    table = PublicationTable(title, [Column("Variable"), Column("HR (95% CI)"), Column("p")], rows,
                             number=number, footnotes=notes, source=source)
    return table


def cox_tables_publication(tables, *, title: str = "Univariate and multivariate Cox regression analyses",
                           number: str | None = None, labels: Mapping[str, str] | None = None,
                           references: Mapping[str, str] | None = None,
                           source: SourceNote | None = None) -> PublicationTable:
    """Table 2 (and Tables S3-S5) from :class:`~pathomics_desktop.signature.report.CoxTables`.

    ``number`` defaults to the first name of ``tables.figure`` ("Table 2; Table S3" -> "Table 2").
    A variable left out of the multivariate model has empty multivariate cells.
    """
    label = _labeller(labels)
    uni_by_term = {r["term"]: r for r in tables.univariate}
    multi = {} if tables.multivariable is None else {r["term"]: r for r in tables.multivariable.table()}
    variables: dict[str, list[str]] = {}
    for r in tables.univariate:
        variables.setdefault(r["variable"], []).append(r["term"])
    refs = infer_references(variables) | dict(references or {})
    rows: list[Row] = []
    errors = []
    for variable, terms in variables.items():
        first = uni_by_term[terms[0]]
        if first.get("error"):
            rows.append(Row([Text(label(variable)), Text("not estimable"), Text(""), Text(""), Text("")]))
            errors.append(f"{label(variable)}: {first['error']}")
            continue
        in_model = any(term in multi for term in terms)
        rows += _variable_rows(variable, terms, label(variable), refs.get(variable),
                               lambda term: _hr_cells(uni_by_term[term]) + _hr_cells(multi.get(term)),
                               REFERENCE_CELLS + (REFERENCE_CELLS if in_model else _empty(2)))
    if number is None and tables.figure:
        number = tables.figure.split(";")[0].strip() or None
    forced = ", ".join(label(f) for f in tables.forced)
    notes = [HR_NOTE + " p values: Wald test."]
    notes.append(f"Univariate: one Cox model per variable (n = {tables.n}).")
    if tables.multivariable is not None:
        fit = tables.multivariable
        notes.append(f"Multivariate: one Cox model of the variables with univariate likelihood-ratio "
                     f"p < {tables.threshold:g}" + (f" and {forced}, always entered" if forced else "")
                     + f" (n = {fit.n}, {fit.events} events); blank: not in the model.")
    notes += [*errors, *tables.notes]
    columns = [Column("Variable"), Column("HR (95% CI)", "Univariate"), Column("p", "Univariate"),
               Column("HR (95% CI)", "Multivariate"), Column("p", "Multivariate")]
    return PublicationTable(title, columns, rows, number=number, footnotes=notes, source=source)
