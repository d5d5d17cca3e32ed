"""The one habit of every statistics result object.

Each result (Kaplan-Meier curves and their comparison, log-rank, Cox models, concordance,
time-dependent AUC, cutpoints, meta-analysis, ROC, subgroups, Table 1, the signature's
per-set evaluation) is a dataclass with typed fields and

* ``to_dict()``: plain JSON-ready data, exactly the object ``pathomics analyze ... --json``
  prints for it (NaN/inf become ``null`` when printed), so scripts can rely on the keys;
* ``summary()`` (also ``str(result)``): readable text, the command's text output.

Views and exports read the fields; the CLI prints ``to_dict()`` or ``summary()``.
"""

from __future__ import annotations

from typing import Any


class StatResult:
    """Mixin for result dataclasses: subclasses define :meth:`to_dict`."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def summary(self) -> str:
        """Readable text: scalars as ``key: value``, row lists as aligned tables."""
        from pathomics_desktop.stats.data import clean_json, format_text

        return format_text(clean_json(self.to_dict()))

    def __str__(self) -> str:
        return self.summary()
