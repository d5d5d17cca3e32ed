"""The codebook (data dictionary): variables, their types, codes and limits.

The built-in variables are data in ``db/codebook.toml``; user-defined variables live in the
registry (:class:`~pathomics_desktop.registry.models.CodebookVariable`) and are merged in.
Parsing a raw cell goes through :meth:`Variable.parse`, which returns the canonical value or
raises :class:`CellError` (hard problem) and reports soft-limit warnings.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pathomics_desktop.errors import UserError

CODEBOOK_PATH = Path(__file__).resolve().parents[2] / "db" / "codebook.toml"
TYPES = ("text", "integer", "number", "date", "category", "yesno")
MISSING_TOKENS = {"", "na", "n/a", "nan", "null", "none", ".", "-", "missing", "unknown", "nk"}


class CellError(ValueError):
    """A value that cannot be accepted (wrong type, unknown code, outside hard limits)."""


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    type: str
    unit: str = ""
    codes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    min: Any = None
    max: Any = None
    soft_min: Any = None
    soft_max: Any = None
    required: bool = False
    identifier: bool = False
    storage: str = "custom"
    canonical: bool = True
    pattern: str | None = None

    @property
    def is_custom(self) -> bool:
        return self.storage == "custom"

    @property
    def display_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    # -- parsing ---------------------------------------------------------------------
    def __post_init__(self) -> None:
        table: dict[str, str] = {}
        for code, synonyms in self.codes.items():
            table[str(code).strip().lower()] = code
            for syn in synonyms:
                table[str(syn).strip().lower()] = code
        object.__setattr__(self, "_synonyms", table)  # built once: parse() runs per cell

    def _lookup(self) -> dict[str, str]:
        return self._synonyms

    def parse(self, raw: Any) -> tuple[Any, str | None]:
        """Raw cell -> (canonical value or None when missing, soft warning or None).

        Types: ``text`` (stripped string), ``integer``, ``number`` (float), ``date``
        (ISO ``YYYY-MM-DD``; spreadsheet dates accepted), ``category`` (canonical code,
        synonyms matched case-insensitively), ``yesno`` (Python bool).
        """
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return None, None
        if isinstance(raw, str) and raw.strip().lower() in MISSING_TOKENS:
            return None, None
        kind = self.type
        if kind == "text":
            value = str(raw).strip()
            if self.pattern and not re.fullmatch(self.pattern, value):
                raise CellError(f"{value!r} is not an accepted {self.label}")
            return value, None
        if kind == "yesno":
            if isinstance(raw, bool):
                return raw, None
            key = _scalar_text(raw).lower()
            table = _yes_no_lookup()
            if key not in table:
                raise CellError(f"{raw!r} is not yes/no (accepted: yes/no, y/n, 1/0, true/false)")
            return table[key], None
        if kind == "category":
            key = _scalar_text(raw).lower().replace("\u2010", "-").replace("\u2011", "-")
            table = self._lookup()
            if key not in table:
                raise CellError(f"{raw!r} is not a code of {self.name} (accepted: "
                                f"{', '.join(self.codes)})")
            return table[key], None
        if kind in ("integer", "number"):
            value = _to_number(raw)
            if kind == "integer":
                if not float(value).is_integer():
                    raise CellError(f"{raw!r} is not a whole number")
                value = int(value)
            return value, self._check_limits(value, float(value))
        if kind == "date":
            value = _to_date(raw)
            return value, self._check_limits(value, value)
        raise CellError(f"unknown variable type {kind!r}")  # pragma: no cover

    def _limit(self, bound: Any) -> Any:
        if bound is None:
            return None
        if self.type == "date":
            return bound if isinstance(bound, dt.date) else dt.date.fromisoformat(str(bound))
        return float(bound)

    def _check_limits(self, value: Any, comparable: Any) -> str | None:
        lo, hi = self._limit(self.min), self._limit(self.max)
        if lo is not None and comparable < lo:
            raise CellError(f"{value} is below the lower limit {self.min}")
        if hi is not None and comparable > hi:
            raise CellError(f"{value} is above the upper limit {self.max}")
        if self.type == "date" and comparable > dt.date.today():
            raise CellError(f"{value} is in the future")
        slo, shi = self._limit(self.soft_min), self._limit(self.soft_max)
        if slo is not None and comparable < slo:
            return f"{value} is below the expected range (>= {self.soft_min}); accepted, please check"
        if shi is not None and comparable > shi:
            return f"{value} is above the expected range (<= {self.soft_max}); accepted, please check"
        return None

    def format(self, value: Any) -> str | None:
        """Canonical value -> the text written in exports and forms."""
        if value is None:
            return None
        if self.type == "yesno":
            return "yes" if value else "no"
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(value)

    def parse_stored(self, text: str | None) -> Any:
        """Stored text of a user-defined variable -> canonical value."""
        if text is None:
            return None
        if self.type == "yesno":
            return text == "yes"
        return self.parse(text)[0]


def _scalar_text(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw).strip()


@lru_cache(maxsize=1)
def _yes_no_lookup() -> dict[str, bool]:
    sets = _load_builtin_raw()["code_sets"]["yesno"]
    table = {s.lower(): True for s in sets["yes"]}
    table.update({s.lower(): False for s in sets["no"]})
    return table


def _to_number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise CellError(f"{raw!r} is not a number")
    if isinstance(raw, (int, float)):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise CellError(f"{raw!r} is not a finite number")
        return raw
    text = str(raw).strip().replace(",", ".") if str(raw).count(",") == 1 and "." not in str(raw) else str(raw).strip()
    try:
        value = float(text)
    except ValueError:
        raise CellError(f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise CellError(f"{raw!r} is not a finite number")
    return value


_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?)?$")


def _to_date(raw: Any) -> dt.date:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if hasattr(raw, "to_pydatetime"):  # pandas Timestamp
        return raw.to_pydatetime().date()
    text = str(raw).strip()
    match = _ISO_DATE.match(text)
    if not match:
        raise CellError(f"{raw!r} is not an ISO date (YYYY-MM-DD)")
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise CellError(f"{raw!r} is not a valid calendar date") from None


@lru_cache(maxsize=1)
def _load_builtin_raw() -> dict[str, Any]:
    try:
        return tomllib.loads(CODEBOOK_PATH.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:  # pragma: no cover - packaging error
        raise UserError(f"{CODEBOOK_PATH}: cannot read the built-in codebook ({exc})") from exc


def _variable_from_mapping(entry: dict[str, Any], code_sets: dict[str, Any]) -> Variable:
    kind = entry.get("type")
    if kind not in TYPES:
        raise UserError(f"codebook variable {entry.get('name')!r}: unknown type {kind!r} "
                        f"(one of {', '.join(TYPES)})")
    codes_in = entry.get("codes") or {}
    if kind == "yesno":
        codes_in = {"yes": code_sets["yesno"]["yes"], "no": code_sets["yesno"]["no"]}
    codes = {str(k): tuple(str(s) for s in (v or ())) for k, v in codes_in.items()}
    if kind == "category" and not codes:
        raise UserError(f"codebook variable {entry['name']!r}: a category needs codes")
    return Variable(
        name=entry["name"], label=entry.get("label") or entry["name"], type=kind,
        unit=entry.get("unit") or "", codes=codes, min=entry.get("min"), max=entry.get("max"),
        soft_min=entry.get("soft_min"), soft_max=entry.get("soft_max"),
        required=bool(entry.get("required", False)), identifier=bool(entry.get("identifier", False)),
        storage=entry.get("storage", "custom"), canonical=bool(entry.get("canonical", True)),
        pattern=entry.get("pattern"),
    )


class Codebook:
    """Ordered variables by name: the built-in ones, then user-defined ones."""

    def __init__(self, variables: list[Variable]):
        self.variables = {v.name: v for v in variables}

    def __getitem__(self, name: str) -> Variable:
        return self.variables[name]

    def __contains__(self, name: str) -> bool:
        return name in self.variables

    def __iter__(self):
        return iter(self.variables.values())

    @property
    def custom(self) -> list[Variable]:
        return [v for v in self if v.is_custom]

    @property
    def identifiers(self) -> list[Variable]:
        return [v for v in self if v.identifier]

    @classmethod
    def builtin(cls) -> "Codebook":
        raw = _load_builtin_raw()
        return cls([_variable_from_mapping(e, raw["code_sets"]) for e in raw["variables"]])

    @classmethod
    def for_session(cls, session) -> "Codebook":
        """Built-in variables plus the project's user-defined ones."""
        from sqlalchemy import select

        from pathomics_desktop.registry.models import CodebookVariable

        book = cls.builtin()
        raw = _load_builtin_raw()
        for row in session.scalars(select(CodebookVariable).order_by(CodebookVariable.id)):
            book.variables[row.name] = _variable_from_mapping(custom_entry(row), raw["code_sets"])
        return book


def custom_entry(row) -> dict[str, Any]:
    """A :class:`CodebookVariable` row as a codebook mapping."""
    def num(v):
        return None if v is None else v
    return {
        "name": row.name, "label": row.label or row.name, "type": row.type, "unit": row.unit or "",
        "codes": row.codes or {}, "min": num(row.min_value), "max": num(row.max_value),
        "soft_min": num(row.soft_min), "soft_max": num(row.soft_max), "required": row.required,
        "identifier": row.identifier, "storage": "custom",
    }


RESERVED_NAMES = {"id", "patient_id", "split", "included", "exclusion_reason", "os_months",
                  "os_event", "rfs_months", "rfs_event", "tnm_stage", "tnm_group"}


def validate_new_variable(book: Codebook, *, name: str, type: str, codes: dict | None,
                          min_value: Any, max_value: Any, soft_min: Any, soft_max: Any) -> None:
    """Checks for a user-defined variable before it is added to the codebook."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name or ""):
        raise UserError(f"variable name {name!r}: use lower-case letters, digits and _ "
                        "(starting with a letter)")
    if name in book or name in RESERVED_NAMES:
        raise UserError(f"variable {name!r} already exists in the codebook")
    if type not in TYPES:
        raise UserError(f"variable {name!r}: unknown type {type!r} (one of {', '.join(TYPES)})")
    if type == "category" and not codes:
        raise UserError(f"variable {name!r}: a category needs codes")
    probe = Variable(name=name, label=name, type=type)
    for label, bound in (("min", min_value), ("max", max_value), ("soft_min", soft_min),
                         ("soft_max", soft_max)):
        if bound is None:
            continue
        if type not in ("integer", "number", "date"):
            raise UserError(f"variable {name!r}: limits apply to numbers and dates only")
        try:
            probe._limit(bound)
        except (ValueError, TypeError):
            raise UserError(f"variable {name!r}: {label} {bound!r} is not a valid limit") from None
