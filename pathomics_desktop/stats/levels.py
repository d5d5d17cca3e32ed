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


def label_array(values) -> np.ndarray:
    """``level_label`` of every value as an object array, computed once per distinct value
    (hash-based: 10,000 patients have a handful of levels). ``None`` stays ``None``-labelled
    as :func:`level_label` writes it ("None"), NaN as "nan"."""
    import pandas as pd

    values = list(values)
    if not values:
        return np.array([], dtype=object)
    if any(v is None for v in values):
        return np.array([level_label(v) for v in values], dtype=object)
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    return np.asarray([level_label(v) for v in uniques], dtype=object)[codes]
