"""Category labels shared by the statistics: how a value is written and how levels are ordered."""

from __future__ import annotations

import numpy as np


def level_label(value) -> str:
    """A category value as written in the file (1.0 read by pandas is shown as "1")."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def sorted_levels(values) -> list[str]:
    """Distinct labels, numeric ones in numeric order (as R's factor() on numbers)."""
    labels = {level_label(v) for v in values}

    def key(lbl: str):
        try:
            return (0, float(lbl), lbl)
        except ValueError:
            return (1, 0.0, lbl)

    return sorted(labels, key=key)
