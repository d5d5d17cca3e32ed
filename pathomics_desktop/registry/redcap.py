"""REDCap raw exports and data dictionaries, imported in one step.

A REDCap *raw* export (``Export data > CSV (raw data)``) has one row per record and event:

* the record id (the project's first field, usually ``record_id``) -> ``study_id``;
* ``redcap_event_name``, ``redcap_repeat_instrument``, ``redcap_repeat_instance`` say which
  event / repeating instance a row is; ``<form>_complete`` are form-status columns (ignored);
* radio, dropdown, yes/no and true/false fields hold numeric codes, whose labels are in the
  data dictionary (``"1, Female | 2, Male"``);
* a checkbox field ``f`` becomes one 0/1 column per choice, ``f___1``, ``f___2``...

The data dictionary (``Project setup > Data dictionary``, CSV with the standard columns
``Variable / Field Name, Form Name, Field Type, Field Label, Choices, Calculations, OR Slider
Labels, Text Validation Type OR Show Slider Number, Text Validation Min/Max, Identifier?``)
turns this into a :class:`~pathomics_desktop.registry.importer.ColumnMapping` (:func:`plan_redcap`):

* a field named like a codebook variable maps to it by name (``visit_date`` too), one whose
  label equals a codebook label by label, and the record id maps to ``study_id``;
* a checkbox choice whose label names a yes/no variable (``3, Diabetes``) maps to it;
* choice codes are decoded through their labels and the codebook synonyms
  (``1, Female`` -> ``female``, ``1, Whipple`` -> ``PD``); a label that is no code or
  synonym of the variable is reported (add the synonym, or recode it in a mapping);
* the fields of a *visit form* (a form holding the field that maps to ``visit_date``) are
  follow-up visits; every other mapped field is a baseline value of the patient;
* a field that matches nothing is proposed as a user-defined variable
  (:class:`ProposedVariable`) and left out of the import with a warning.

:func:`import_redcap` then writes the patients AND their visits in ONE transaction
(:func:`~pathomics_desktop.registry.importer.import_tables`) and derives each patient's
follow-up summary (last contact, vital status, death, recurrence) from all their visits. The
rows of a record may come in any order. Every error names the export file, the export's row
number, the REDCap field and its raw value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.codebook import CellError, Codebook, Variable
from pathomics_desktop.registry.importer import (
    FOLLOWUP_COLUMNS,
    VISIT_DATE,
    ColumnMapping,
    ImportIssue,
    ImportReport,
    ImportTable,
    import_tables,
    read_spreadsheet,
)

SYSTEM_COLUMNS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
                  "redcap_data_access_group", "redcap_survey_identifier")
VISIT_TARGETS = tuple(c for c in FOLLOWUP_COLUMNS if c != "study_id")
CHOICE_TYPES = ("radio", "dropdown", "checkbox", "yesno", "truefalse")
IMPLICIT_CHOICES = {"yesno": {"1": "Yes", "0": "No"}, "truefalse": {"1": "True", "0": "False"}}

#: dictionary columns: our key -> accepted headers (the CSV download, then the API's names)
DICTIONARY_COLUMNS = {
    "name": ("Variable / Field Name", "field_name"),
    "form": ("Form Name", "form_name"),
    "type": ("Field Type", "field_type"),
    "label": ("Field Label", "field_label"),
    "choices": ("Choices, Calculations, OR Slider Labels", "select_choices_or_calculations"),
    "validation": ("Text Validation Type OR Show Slider Number", "text_validation_type_or_show_slider_number"),
    "min": ("Text Validation Min", "text_validation_min"),
    "max": ("Text Validation Max", "text_validation_max"),
    "identifier": ("Identifier?", "identifier"),
}


# -- the data dictionary -------------------------------------------------------------------
@dataclass(frozen=True)
class RedcapField:
    name: str
    form: str
    type: str  # text, notes, radio, dropdown, checkbox, yesno, truefalse, calc, file, slider, descriptive
    label: str
    choices: dict[str, str] = field(default_factory=dict)  # code -> label, in dictionary order
    validation: str = ""
    min: str = ""
    max: str = ""
    identifier: bool = False

    def checkbox_column(self, code: str) -> str:
        """The export column of one checkbox choice: ``field___code`` (REDCap writes a
        negative or dotted code with ``_``: ``-1`` -> ``field____1``)."""
        return f"{self.name}___{re.sub(r'[^a-z0-9_]', '_', code.lower())}"


@dataclass
class RedcapDictionary:
    file: str
    fields: dict[str, RedcapField]

    @property
    def record_id(self) -> str:
        """The record id field: the first field of a REDCap project."""
        return next(iter(self.fields))

    @property
    def forms(self) -> list[str]:
        return list(dict.fromkeys(f.form for f in self.fields.values()))

    def column_field(self, column: str) -> tuple[RedcapField | None, str | None]:
        """The field (and checkbox choice code) behind an export column."""
        if column in self.fields:
            return self.fields[column], None
        base, sep, _ = column.partition("___")
        if sep and base in self.fields and self.fields[base].type == "checkbox":
            f = self.fields[base]
            for code in f.choices:
                if f.checkbox_column(code) == column:
                    return f, code
        return None, None


def parse_choices(text: str) -> dict[str, str]:
    """``"1, Female | 2, Male"`` -> ``{"1": "Female", "2": "Male"}`` (REDCap's choice syntax)."""
    out: dict[str, str] = {}
    for part in (text or "").split("|"):
        code, sep, label = part.partition(",")
        if code.strip():
            out[code.strip()] = label.strip() if sep else code.strip()
    return out


def read_dictionary(path: str | Path) -> RedcapDictionary:
    """Read a REDCap data dictionary CSV; a missing standard column raises UserError."""
    path = Path(path)
    frame = read_spreadsheet(path)
    lower = {c.strip().lower(): c for c in frame.columns}
    columns: dict[str, str] = {}
    for key, names in DICTIONARY_COLUMNS.items():
        found = next((lower[n.lower()] for n in names if n.lower() in lower), None)
        if found is None and key in ("name", "form", "type", "label"):
            raise UserError(f"{path}: not a REDCap data dictionary (no column {names[0]!r})")
        if found is not None:
            columns[key] = found
    fields: dict[str, RedcapField] = {}
    for index, record in enumerate(frame.to_dict("records")):
        cell = {k: str(record[c]).strip() for k, c in columns.items()}
        name, kind = cell["name"], cell["type"].lower()
        if not name:
            raise UserError(f"{path}, row {index + 2}: the field name is empty")
        if name in fields:
            raise UserError(f"{path}, row {index + 2}: field {name!r} is defined twice")
        if kind == "descriptive":
            continue  # text on a form, never data
        choices = parse_choices(cell.get("choices", "")) if kind in CHOICE_TYPES else {}
        choices = choices or dict(IMPLICIT_CHOICES.get(kind, {}))
        fields[name] = RedcapField(name=name, form=cell["form"], type=kind, label=_plain(cell["label"]),
                                   choices=choices, validation=cell.get("validation", "").lower(),
                                   min=cell.get("min", ""), max=cell.get("max", ""),
                                   identifier=cell.get("identifier", "").lower() in ("y", "yes", "1"))
    if not fields:
        raise UserError(f"{path}: the data dictionary defines no fields")
    return RedcapDictionary(file=path.name, fields=fields)


def _plain(label: str) -> str:
    """A field label without REDCap's HTML tags."""
    return re.sub(r"<[^>]+>", "", label).strip()


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# -- the plan: mapping, decoding, proposed variables ---------------------------------------
@dataclass
class ProposedVariable:
    """A user-defined variable proposed for a REDCap field that matches no codebook variable."""

    name: str
    type: str
    label: str
    source: str  # the REDCap field (or checkbox column)
    codes: dict[str, list[str]] | None = None
    min_value: str | None = None
    max_value: str | None = None
    identifier: bool = False

    def command(self) -> str:
        """The ``pathomics variables add`` command that adds it."""
        import json
        import shlex

        parts = ["pathomics", "variables", "add", self.name, "--type", self.type, "--label", self.label]
        if self.codes:
            parts += ["--codes", json.dumps(self.codes)]
        if self.min_value:
            parts += ["--min", self.min_value]
        if self.max_value:
            parts += ["--max", self.max_value]
        if self.identifier:
            parts.append("--identifier")
        return shlex.join(parts)


@dataclass
class RedcapPlan:
    """How an export's columns become codebook values (see the module docstring)."""

    dictionary: RedcapDictionary
    mapping: ColumnMapping
    record_column: str
    visit_forms: set[str]
    forms: dict[str, str]  # export column -> form name
    choice_labels: dict[str, dict[str, str]]  # export column -> {code: label}
    proposed: list[ProposedVariable] = field(default_factory=list)
    issues: list[ImportIssue] = field(default_factory=list)

    def source_of(self, target: str) -> list[str]:
        return [c for c, t in self.mapping.columns.items() if t == target]


def plan_redcap(dictionary: RedcapDictionary, book: Codebook, columns: list[str], *,
                mapping: ColumnMapping | None = None, export_name: str = "") -> RedcapPlan:
    """Propose the mapping of an export's ``columns``; ``mapping`` (``--mapping``) wins where it
    names a column, and its ``ignore`` list drops columns."""
    user = mapping or ColumnMapping()
    issues: list[ImportIssue] = []
    forms = dictionary.forms

    def warn(column, message, value=None):
        issues.append(ImportIssue("warning", export_name, 1, column, value, message))

    for col in user.columns:
        if col not in columns:
            warn(col, f"mapping {user.name!r} names a column that is not in the export")
    record_column = next((c for c, t in user.columns.items() if t == "study_id" and c in columns), None)
    record_column = record_column or (dictionary.record_id if dictionary.record_id in columns else
                                      ("record_id" if "record_id" in columns else None))
    if record_column is None:
        issues.append(ImportIssue("error", export_name, 1, dictionary.record_id, None,
                                  f"the record id field {dictionary.record_id!r} of {dictionary.file} "
                                  "is not a column of the export"))
    targets = {v.name: v for v in book}
    targets["visit_date"] = VISIT_DATE
    by_label = {_norm(v.label): v.name for v in targets.values()}
    ignore = list(user.ignore)
    columns_out: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}
    form_of: dict[str, str] = {}
    labels_of: dict[str, dict[str, str]] = {}
    proposed: list[ProposedVariable] = []
    unmatched_fields: set[str] = set()
    for column in columns:
        f, code = dictionary.column_field(column)
        if f is not None:
            form_of[column] = f.form
            labels_of[column] = {"1": "Checked", "0": "Unchecked"} if code is not None else f.choices
        if column in user.ignore:
            continue
        if column in SYSTEM_COLUMNS or (column.endswith("_complete") and column[:-9] in forms):
            if column == "redcap_data_access_group" and "center" not in user.columns.values():
                columns_out[column] = "center"  # data access groups are the sites
                continue
            ignore.append(column)
            continue
        if column in user.columns:
            columns_out[column] = user.columns[column]
            continue
        target = None
        if column == record_column:
            target = "study_id"
        elif f is None:
            warn(column, "not a field of the data dictionary (map it or remove it); not imported")
            ignore.append(column)
            continue
        elif code is not None:
            choice = f.choices[code]
            for candidate in (f"{f.name}_{_slug(choice)}", _slug(choice)):
                if candidate in targets and targets[candidate].type == "yesno":
                    target = candidate
                    break
            if target is None and by_label.get(_norm(choice)) in targets \
                    and targets[by_label[_norm(choice)]].type == "yesno":
                target = by_label[_norm(choice)]
        elif f.name in targets:
            target = f.name
        elif _norm(f.label) in by_label:
            target = by_label[_norm(f.label)]
        if target is None:
            ignore.append(column)
            if f.name not in unmatched_fields:
                unmatched_fields.add(f.name)
                proposed.extend(_propose(f, book))
            continue
        columns_out[column] = target
    # decode choices through their labels (the codebook's synonyms)
    for column, target in columns_out.items():
        if target in user.values or target not in targets:
            continue
        f, code = dictionary.column_field(column)
        if f is None or not f.choices:
            continue
        var = targets[target]
        if code is not None:
            values.setdefault(target, {"1": "yes", "0": "no"})
            continue
        recode = values.setdefault(target, {})
        for choice, label in f.choices.items():
            decoded = _decode(var, label)
            if decoded is None:
                issues.append(ImportIssue(
                    "warning", dictionary.file, None, f.name, f"{choice}, {label}",
                    f"choice {choice} ({label!r}) of REDCap field {f.name} matches no code of "
                    f"{target} (accepted: {', '.join(var.codes) or var.type}); add it as a synonym "
                    "or recode it in a mapping"))
            else:
                recode[choice] = decoded
    values.update(user.values)
    visit_forms = {form_of[c] for c, t in columns_out.items() if t == "visit_date" and c in form_of}
    for column, target in columns_out.items():
        if form_of.get(column) in visit_forms and target not in VISIT_TARGETS:
            issues.append(ImportIssue("error", export_name, 1, column, None,
                                      f"field {column} of the follow-up form {form_of[column]!r} maps to "
                                      f"{target}, which is not a visit field ({', '.join(VISIT_TARGETS)})"))
    for p in proposed:
        warn(p.source, f"matches no codebook variable: not imported. To import it, add it to the "
                       f"codebook first: {p.command()}")
    plan_mapping = ColumnMapping(name=user.name or "redcap", columns=columns_out, values=values,
                                 ignore=list(dict.fromkeys(ignore)))
    return RedcapPlan(dictionary=dictionary, mapping=plan_mapping, record_column=record_column or "",
                      visit_forms=visit_forms, forms=form_of, choice_labels=labels_of,
                      proposed=proposed, issues=issues)


def _decode(var: Variable, label: str) -> str | None:
    """A choice label -> the canonical text of ``var`` (None when it is no code of ``var``)."""
    if var.type == "text":
        return label
    try:
        value, _warning = var.parse(label)
    except CellError:
        return None
    return var.format(value)


def _propose(f: RedcapField, book: Codebook) -> list[ProposedVariable]:
    """User-defined variables for an unmatched field (a checkbox: one yes/no per choice)."""
    if f.type == "checkbox":
        return [ProposedVariable(name=_variable_name(f"{f.name}_{_slug(label)}"), type="yesno",
                                 label=f"{f.label}: {label}", source=f.checkbox_column(code))
                for code, label in f.choices.items()]
    kind, codes = "text", None
    if f.type in ("radio", "dropdown"):
        kind, codes = "category", {}
        short = all(len(_slug(label)) <= 20 for label in f.choices.values())
        for code, label in f.choices.items():
            key = (_slug(label) if short else "") or code  # long labels: the REDCap code
            codes[key if key not in codes else f"{key}_{code}"] = [code, label]
    elif f.type in ("yesno", "truefalse"):
        kind = "yesno"
    elif f.type == "calc" or f.validation.startswith("number"):
        kind = "number"
    elif f.validation == "integer":
        kind = "integer"
    elif f.validation.startswith("date"):
        kind = "date"
    limits = kind in ("number", "integer", "date")
    return [ProposedVariable(name=_variable_name(f.name), type=kind, label=f.label or f.name, source=f.name,
                             codes=codes, min_value=(f.min or None) if limits else None,
                             max_value=(f.max or None) if limits else None, identifier=f.identifier)]


def _variable_name(text: str) -> str:
    name = _slug(text)[:63]
    return name if re.match(r"[a-z]", name) else f"v_{name}"[:63]


# -- splitting the export into patients and visits -----------------------------------------
@dataclass
class _Cell:
    value: str
    row: int
    column: str
    weak: bool = False  # an unchecked checkbox: never contradicts a checked one


def split_export(frame, plan: RedcapPlan, report: ImportReport):
    """The export as two canonical tables (patients, visits), with the export row numbers and
    each cell's origin ``{(table row number, target): (export row, REDCap column, raw value)}``."""
    import pandas as pd

    mapping = plan.mapping
    instrument_col = "redcap_repeat_instrument" if "redcap_repeat_instrument" in frame.columns else None
    mapped = [c for c in frame.columns if c in mapping.columns and c != plan.record_column]
    baseline: dict[str, dict[str, _Cell]] = {}
    first_row: dict[str, int] = {}
    visits: list[tuple[int, dict[str, _Cell]]] = []
    skipped: dict[str, int] = {}
    for index, raw in enumerate(frame.to_dict("records")):
        number = index + 2  # header is row 1
        record = _text(raw.get(plan.record_column))
        if not record:
            report.error(number, plan.record_column, None, "the record id is empty")
            continue
        instrument = _text(raw.get(instrument_col)) if instrument_col else ""
        if instrument and instrument not in plan.visit_forms:
            skipped[instrument] = skipped.get(instrument, 0) + 1
            continue
        base_cells: dict[str, _Cell] = {}
        visit_cells: dict[str, _Cell] = {}
        for column in mapped:
            value = _text(raw.get(column))
            form = plan.forms.get(column)
            if value == "" or (instrument and form != instrument):
                continue
            target = mapping.columns[column]
            weak = "___" in column and value == "0"
            cells = visit_cells if form in plan.visit_forms else base_cells
            cells[target] = _Cell(value, number, column, weak)
        if visit_cells:
            visits.append((number, {"study_id": _Cell(record, number, plan.record_column), **visit_cells}))
        if base_cells:
            merged = baseline.setdefault(record, {})
            first_row.setdefault(record, number)
            for target, cell in base_cells.items():
                old = merged.get(target)
                if old is None or (old.weak and not cell.weak):
                    merged[target] = cell
                elif not cell.weak and not old.weak and old.value != cell.value:
                    report.error(number, cell.column, cell.value,
                                 f"record {record}: {cell.column} is {old.value!r} in row {old.row} "
                                 f"and {cell.value!r} here")
    for instrument, n in skipped.items():
        report.warning(None, "redcap_repeat_instrument", instrument,
                       f"the repeating instrument {instrument!r} is not a follow-up form (it has no "
                       f"field mapped to visit_date): its {n} rows are not imported")

    origin: dict[tuple[int, str], tuple[int, str, str]] = {}

    def table(rows: list[tuple[int, dict[str, _Cell]]], targets: list[str]):
        records, numbers = [], []
        for number, cells in rows:
            out = {}
            for target in targets:
                cell = cells.get(target)
                if cell is None:
                    out[target] = ""
                    continue
                out[target] = mapping.values.get(target, {}).get(cell.value, cell.value)
                origin.setdefault((number, target), (cell.row, cell.column, cell.value))
            records.append(out)
            numbers.append(number)
        return pd.DataFrame(records, columns=targets, dtype=object), numbers

    base_targets = ["study_id"] + list(dict.fromkeys(
        t for c, t in mapping.columns.items() if c in mapped and plan.forms.get(c) not in plan.visit_forms))
    visit_targets = ["study_id"] + list(dict.fromkeys(
        t for c, t in mapping.columns.items() if c in mapped and plan.forms.get(c) in plan.visit_forms))
    patient_rows = [(first_row[r], {"study_id": _Cell(r, first_row[r], plan.record_column), **cells})
                    for r, cells in baseline.items()]
    patients = table(patient_rows, base_targets)
    visit_table = table(sorted(visits, key=lambda v: v[0]), visit_targets)
    return patients, visit_table, origin


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "date") and hasattr(value, "isoformat"):  # Excel dates
        return value.date().isoformat() if hasattr(value, "hour") else value.isoformat()
    return str(value).strip()


# -- the one-step import -------------------------------------------------------------------
def load_export(registry, export: str | Path, dictionary: str | Path | RedcapDictionary, *,
                mapping: ColumnMapping | None = None):
    """Read the export and the dictionary and plan the mapping: ``(frame, plan)``.
    Raises UserError for a file that cannot be read."""
    export = Path(export)
    if not isinstance(dictionary, RedcapDictionary):
        dictionary = read_dictionary(dictionary)
    frame = read_spreadsheet(export)
    with registry.session() as session:
        book = Codebook.for_session(session)
    plan = plan_redcap(dictionary, book, list(frame.columns), mapping=mapping, export_name=export.name)
    return frame, plan


def import_redcap(registry, export: str | Path, dictionary: str | Path | RedcapDictionary, *,
                  mapping: ColumnMapping | None = None, dry_run: bool = False, user: str = "",
                  reason: str | None = None, development_center: str = "",
                  synthetic: bool = False) -> ImportReport:
    """Validate and import a REDCap raw export: patients from the baseline rows, follow-up
    visits from the visit-form rows, all in ONE transaction (nothing is written when any row
    of either has an error); each patient's follow-up summary is derived from the visits."""
    export = Path(export)
    report = ImportReport(file=export.name, kind="redcap", dry_run=dry_run)
    try:
        frame, plan = load_export(registry, export, dictionary, mapping=mapping)
    except UserError as exc:
        report.issues.append(ImportIssue("error", export.name, None, None, None, str(exc)))
        return report
    report.rows = len(frame)
    report.issues.extend(plan.issues)
    (patients, patient_numbers), (visits, visit_numbers), origin = split_export(frame, plan, report)
    if report.errors:
        return _remap(report, plan, origin)
    tables = []
    if len(patients):
        tables.append(ImportTable("patients", patients, patient_numbers))
    if len(visits):
        tables.append(ImportTable("followup", visits, visit_numbers, counts="visits_"))
    if not tables:
        report.error(None, None, None, "no row of the export has a mapped value")
        return report
    import_tables(registry, report, tables, dry_run=dry_run, user=user, reason=reason,
                  development_center=development_center, synthetic=synthetic, derive_summary=True)
    return _remap(report, plan, origin)


def _remap(report: ImportReport, plan: RedcapPlan, origin) -> ImportReport:
    """Name the export's row, REDCap field and raw value in every issue of the export."""
    out = []
    for issue in report.issues:
        if issue.file != report.file or issue.row is None or issue.column is None or issue.row == 1:
            out.append(issue)
            continue
        fields, raws, rows = [], [], []
        for target in issue.column.split(","):
            found = origin.get((issue.row, target))
            if found is None:
                sources = [s for s in plan.source_of(target) if s not in plan.mapping.ignore]
                fields.append(sources[0] if len(sources) == 1 else target)
                continue
            rows.append(found[0])
            fields.append(found[1])
            raws.append(found[2])
        message = issue.message
        named = ",".join(fields)
        if named != issue.column:
            message = f"{named} -> {issue.column}: {message}"
        value = issue.value
        if len(raws) == 1:
            value = raws[0]
            choices = plan.choice_labels.get(fields[0], {})
            label = choices.get(raws[0])
            if label is not None and label != raws[0]:
                message += f" (REDCap choice {raws[0]} = {label!r})"
            elif choices and label is None:
                listed = ", ".join(f"{c} = {lab}" for c, lab in choices.items())
                message = f"{raws[0]!r} is not a choice of REDCap field {fields[0]} (choices: {listed})"
        out.append(ImportIssue(issue.severity, issue.file, rows[0] if len(set(rows)) == 1 else issue.row,
                               named, value, message))
    report.issues = out
    return report
