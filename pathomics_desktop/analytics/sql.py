"""Quoting for the few places where DuckDB SQL text cannot take a bound parameter.

Filter values are always bound parameters (``?``). Only two things are pasted into SQL
text: file paths inside ``read_parquet(...)`` of a view definition (a view cannot hold
parameters) and column/view names (identifiers cannot be parameters). Both are quoted
here, by SQL's doubling rule: ``'`` -> ``''`` inside a string literal, ``"`` -> ``""``
inside a quoted identifier.
"""

from __future__ import annotations

from pathlib import Path


def sql_literal(value: str | Path) -> str:
    """``value`` (a path or text) as a single-quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'
