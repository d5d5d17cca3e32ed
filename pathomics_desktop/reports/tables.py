"""Publication tables: typed cells, a project-wide style, and the one place numbers become text.

A :class:`PublicationTable` holds what a journal table shows: a title with an optional number
("Table 2"), columns (with optional groups: "Univariate" spanning "HR (95% CI)" and "p" makes
two header rows), rows of typed cells (an indent level puts a category under its variable),
footnotes (the tests named) and a source note (the cohort filter and the snapshot id). It
holds numbers, never pre-formatted text: :class:`TableStyle` turns every cell into text
(:meth:`TableStyle.text`) and into an Excel value with a number format
(:meth:`TableStyle.excel`), so the DOCX, XLSX, CSV, LaTeX and Markdown writers
(:mod:`pathomics_desktop.reports.writers`) all print the same characters.

The style is set once per project, in ``project.toml``::

    [reports]
    decimals = 2            # numbers without decimals of their own (HR, C-index, ...)
    percent_decimals = 1    # the % of "n (%)" cells: 12 (34.5%)
    p_digits = 3            # decimals of a p value: 0.012
    p_threshold = 0.001     # below it: "< 0.001"
    p_leading_zero = true   # false: ".012" and "< .001" (APA)
    ci_separator = "-"      # 2.10-4.41; e.g. "–" or ", "
    missing = "-"           # an undefined number

Every key is optional (defaults above); a wrong value is a :class:`UserError` naming the key.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence, Union

from pathomics_desktop.errors import UserError

SETTINGS_SECTION = "reports"


# --------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """Plain text (a label, "Reference", a pre-formatted summary such as "62.0 [55.0, 70.0]")."""

    text: str


@dataclass(frozen=True)
class Number:
    """A number; ``decimals`` None takes the style's (0 for a whole-number type: int, numpy.int64)."""

    value: float | int | None
    decimals: int | None = None


@dataclass(frozen=True)
class PValue:
    """A p value, written with the style's digits and "< threshold" rule."""

    value: float | None


@dataclass(frozen=True)
class Estimate:
    """An estimate with its confidence interval, e.g. a hazard ratio: "2.10 (1.50-2.94)"."""

    value: float | None
    lower: float | None = None
    upper: float | None = None
    decimals: int | None = None


@dataclass(frozen=True)
class CountPercent:
    """``n (%)``: a count and its percentage (0-100); ``decimals`` of the percentage (None: the style's)."""

    count: int
    percent: float | None
    decimals: int | None = None


Cell = Union[Text, Number, PValue, Estimate, CountPercent]
NUMERIC_CELLS = (Number, PValue, Estimate, CountPercent)


def as_cell(value: Any) -> Cell:
    """A cell from a plain value: str -> Text, a number (numpy's too) -> Number, None -> empty Text."""
    if isinstance(value, (Text, Number, PValue, Estimate, CountPercent)):
        return value
    if value is None:
        return Text("")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, numbers.Integral):
        return Number(int(value))
    if isinstance(value, numbers.Real):
        return Number(float(value))
    return Text(str(value))


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column header; columns next to each other with the same ``group`` share a spanning header."""

    label: str
    group: str | None = None


@dataclass
class Row:
    """A body row: its cells (one per column; the first is the row label) and its indent level
    (0: a variable, 1: a level under it)."""

    cells: list[Cell]
    indent: int = 0


@dataclass(frozen=True)
class SourceNote:
    """Where the numbers come from: the cohort filter in words and the snapshot id
    (:attr:`pathomics_desktop.analytics.cohort_filter.AnalysisSource.snapshot_id`)."""

    cohort: str
    snapshot_id: str = ""

    @classmethod
    def of(cls, cohort_filter, source) -> "SourceNote":
        """From a :class:`~pathomics_desktop.analytics.cohort_filter.CohortFilter` (its
        ``describe()``) and the :class:`~pathomics_desktop.analytics.cohort_filter.AnalysisSource`
        the numbers came from (its ``snapshot_id``)."""
        return cls(cohort_filter.describe() if cohort_filter is not None else "",
                   getattr(source, "snapshot_id", "") or "")

    def text(self) -> str:
        out = f"Source: {self.cohort}" if self.cohort else "Source:"
        if self.snapshot_id:
            out += f"; cohort snapshot {self.snapshot_id}"
        return out + "."


@dataclass
class PublicationTable:
    """A table as a journal prints it (see the module docstring)."""

    title: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    number: str | None = None  #: "Table 1", "Table S3"
    footnotes: list[str] = field(default_factory=list)
    source: SourceNote | None = None

    def __post_init__(self) -> None:
        self.columns = [c if isinstance(c, Column) else Column(str(c)) for c in self.columns]
        if not self.columns:
            raise UserError(f"table {self.caption!r} has no columns")
        for index, row in enumerate(self.rows):
            self._check(row, index)

    def _check(self, row: Row, index: int) -> None:
        if len(row.cells) != len(self.columns):
            raise UserError(f"table {self.caption!r}, row {index + 1}: {len(row.cells)} cells for "
                            f"{len(self.columns)} columns")
        if row.indent < 0:
            raise UserError(f"table {self.caption!r}, row {index + 1}: negative indent")

    def add_row(self, *values: Any, indent: int = 0) -> Row:
        """Append a row of plain values or cells (see :func:`as_cell`)."""
        row = Row([as_cell(v) for v in values], indent=indent)
        self._check(row, len(self.rows))
        self.rows.append(row)
        return row

    @property
    def caption(self) -> str:
        """``"Table 2. Title"`` (the title alone without a number)."""
        return f"{self.number}. {self.title}" if self.number else self.title

    @property
    def has_groups(self) -> bool:
        return any(c.group for c in self.columns)

    def group_spans(self) -> list[tuple[str | None, int, int]]:
        """Runs of equal ``group``: (group or None, first column index, number of columns)."""
        spans: list[tuple[str | None, int, int]] = []
        for index, column in enumerate(self.columns):
            if spans and column.group and spans[-1][0] == column.group:
                group, start, width = spans[-1]
                spans[-1] = (group, start, width + 1)
            else:
                spans.append((column.group, index, 1))
        return spans

    def flat_headers(self) -> list[str]:
        """One header row (CSV, Markdown): "Univariate HR (95% CI)" for grouped columns."""
        return [f"{c.group} {c.label}".strip() if c.group else c.label for c in self.columns]

    def numeric_columns(self) -> list[bool]:
        """Per column: does it hold numbers (aligned right)? The first column never does."""
        out = []
        for index in range(len(self.columns)):
            out.append(index > 0 and any(isinstance(r.cells[index], NUMERIC_CELLS) for r in self.rows))
        return out

    def notes(self) -> list[str]:
        """The lines under the table: footnotes, then the source note."""
        return list(self.footnotes) + ([self.source.text()] if self.source else [])

    @property
    def sheet_name(self) -> str:
        """A worksheet name (Excel: at most 31 characters, none of ``[]:*?/\\``)."""
        name = self.number or self.title or "Table"
        return re.sub(r"[\[\]:*?/\\]", " ", name).strip()[:31] or "Table"


# --------------------------------------------------------------------------------------
# the style: the one place numbers become text
# --------------------------------------------------------------------------------------


def _plain_decimal(value: float) -> str:
    """``0.001`` (never ``1e-03``)."""
    return format(Decimal(repr(float(value))).normalize(), "f")


def _finite(value: Any) -> bool:
    """A real number (numpy's too), not NaN or infinite; never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _excel_quote(text: str) -> str:
    """Text as an Excel number-format literal (inside double quotes; a quote cannot appear)."""
    return '"' + text.replace('"', "'") + '"'


@dataclass(frozen=True)
class TableStyle:
    """How numbers are written (the ``[reports]`` keys of ``project.toml``)."""

    decimals: int = 2
    percent_decimals: int = 1
    p_digits: int = 3
    p_threshold: float = 0.001
    p_leading_zero: bool = True
    ci_separator: str = "-"
    missing: str = "-"

    def __post_init__(self) -> None:
        for name in ("decimals", "percent_decimals", "p_digits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
                raise UserError(f"[{SETTINGS_SECTION}] {name}: must be a whole number 0..10, got {value!r}")
        if self.p_digits < 1:
            raise UserError(f"[{SETTINGS_SECTION}] p_digits: must be at least 1, got {self.p_digits!r}")
        if isinstance(self.p_threshold, bool) or not isinstance(self.p_threshold, (int, float)) \
                or not 0 < self.p_threshold < 1:
            raise UserError(f"[{SETTINGS_SECTION}] p_threshold: must be a number between 0 and 1, "
                            f"got {self.p_threshold!r}")
        if self.p_threshold < 10.0 ** -self.p_digits * (1 - 1e-9):
            raise UserError(f"[{SETTINGS_SECTION}] p_threshold: {self.p_threshold!r} is smaller than "
                            f"p_digits = {self.p_digits} can show (at least {10.0 ** -self.p_digits:g})")
        if not isinstance(self.p_leading_zero, bool):
            raise UserError(f"[{SETTINGS_SECTION}] p_leading_zero: must be true or false, "
                            f"got {self.p_leading_zero!r}")
        for name in ("ci_separator", "missing"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > 5 or "\n" in value:
                raise UserError(f"[{SETTINGS_SECTION}] {name}: must be a short text (up to 5 characters), "
                                f"got {value!r}")

    # -- settings ------------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, *, where: str = "project.toml") -> "TableStyle":
        """The style of a ``[reports]`` table (a missing key takes its default)."""
        section = dict(settings or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise UserError(f"{where}: [{SETTINGS_SECTION}] {unknown[0]}: unknown key "
                            f"(known: {', '.join(sorted(known))})")
        try:
            return cls(**section)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None

    @classmethod
    def for_project(cls, project) -> "TableStyle":
        """The style of a :class:`~pathomics_desktop.project.Project` (its ``[reports]`` table)."""
        section = project.settings.get(SETTINGS_SECTION, {})
        where = str(project.settings_path)
        if not isinstance(section, Mapping):
            raise UserError(f"{where}: [{SETTINGS_SECTION}] must be a table of settings")
        return cls.from_settings(section, where=where)

    def to_settings(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # -- text ----------------------------------------------------------------------------
    def number(self, value: float | int | None, decimals: int | None = None) -> str:
        if not _finite(value):
            return self.missing
        if decimals is None:
            decimals = 0 if _whole(value) else self.decimals
        text = f"{value:.{decimals}f}"
        return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text

    def _p_number(self, text: str) -> str:
        return text if self.p_leading_zero or not text.startswith("0.") else text[1:]

    def p_value(self, p: float | None) -> str:
        """``"< 0.001"`` below the threshold, else ``p`` with ``p_digits`` decimals ("0.012")."""
        if not _finite(p):
            return self.missing
        if p < self.p_threshold:
            return "< " + self._p_number(_plain_decimal(self.p_threshold))
        return self._p_number(f"{p:.{self.p_digits}f}")

    def estimate(self, value, lower=None, upper=None, decimals: int | None = None) -> str:
        """``"2.10 (1.50-2.94)"``; the estimate alone without a finite interval."""
        if not _finite(value):
            return self.missing
        d = self.decimals if decimals is None else decimals
        head = f"{value:.{d}f}"
        if not (_finite(lower) and _finite(upper)):
            return head
        return f"{head} ({lower:.{d}f}{self.ci_separator}{upper:.{d}f})"

    def count_percent(self, count: int, percent: float | None, decimals: int | None = None) -> str:
        if not _finite(percent):
            return f"{count} ({self.missing})"
        d = self.percent_decimals if decimals is None else decimals
        return f"{count} ({percent:.{d}f}%)"

    def text(self, cell: Cell) -> str:
        """The text of any cell: what every writer prints."""
        if isinstance(cell, Text):
            return cell.text
        if isinstance(cell, Number):
            return self.number(cell.value, cell.decimals)
        if isinstance(cell, PValue):
            return self.p_value(cell.value)
        if isinstance(cell, Estimate):
            return self.estimate(cell.value, cell.lower, cell.upper, cell.decimals)
        if isinstance(cell, CountPercent):
            return self.count_percent(cell.count, cell.percent, cell.decimals)
        raise TypeError(f"not a table cell: {cell!r}")

    # -- Excel ---------------------------------------------------------------------------
    @staticmethod
    def _decimals_format(decimals: int, leading_zero: bool = True) -> str:
        body = "0." + "0" * decimals if decimals else "0"
        return body if leading_zero or not decimals else body[1:]

    def excel(self, cell: Cell) -> tuple[Any, str | None]:
        """(value, number format) of a cell in a worksheet: numbers stay numbers.

        * Number: the value, format ``0.00`` (its decimals);
        * PValue: the value, conditional format ``[<0.001]"< 0.001";0.000``, so a p below
          the threshold is *shown* as "< 0.001" while the cell holds the exact p;
        * Estimate: the estimate, with the interval as literal text of the format
          (``0.00" (1.50-2.94)"``): shown as in the DOCX, the cell holds the estimate;
        * CountPercent: the count, the percentage as literal text (``0" (34.5%)"``);
        * Text, or an undefined number: the text (no format).
        """
        if isinstance(cell, Number) and _finite(cell.value):
            d = cell.decimals if cell.decimals is not None else (0 if _whole(cell.value) else self.decimals)
            return (int(cell.value) if _whole(cell.value) else float(cell.value)), self._decimals_format(d)
        if isinstance(cell, PValue) and _finite(cell.value):
            small = _excel_quote("< " + self._p_number(_plain_decimal(self.p_threshold)))
            body = self._decimals_format(self.p_digits, self.p_leading_zero)
            return float(cell.value), f"[<{_plain_decimal(self.p_threshold)}]{small};{body}"
        if isinstance(cell, Estimate) and _finite(cell.value):
            d = self.decimals if cell.decimals is None else cell.decimals
            rest = self.estimate(cell.value, cell.lower, cell.upper, d)[len(f"{cell.value:.{d}f}"):]
            return float(cell.value), self._decimals_format(d) + (_excel_quote(rest) if rest else "")
        if isinstance(cell, CountPercent):
            rest = self.count_percent(cell.count, cell.percent, cell.decimals)[len(str(cell.count)):]
            return int(cell.count), "0" + _excel_quote(rest)
        return self.text(cell), None


def p_footnote(tests: Iterable[str]) -> str:
    """``"p values: chi-square test or Fisher's exact test; t test or Mann-Whitney U test."``
    from the tests in the order given (each named once; ";" between the kinds as given)."""
    names = [t for t in dict.fromkeys(t for t in tests if t)]
    return "p values: " + "; ".join(names) + "." if names else ""


def join_alternatives(names: Sequence[str]) -> str:
    """``"chi-square test or Fisher's exact test"`` (each once, in order)."""
    return " or ".join(dict.fromkeys(n for n in names if n))
