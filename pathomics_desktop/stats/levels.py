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
    (hash-based, vectorised: 10,000 patients have a handful of levels). ``None`` is labelled
    "None" and NaN "nan", as :func:`level_label` writes them."""
    import pandas as pd

    if isinstance(values, pd.Series):
        arr = values.to_numpy(dtype=object)
    else:
        seq = values if isinstance(values, np.ndarray) else list(values)
        arr = np.empty(len(seq), dtype=object)
        arr[:] = seq
    out = np.empty(len(arr), dtype=object)
    if not len(arr):
        return out
    kind = pd.api.types.infer_dtype(arr, skipna=True)  # one pass in C
    if "boolean" in kind or kind in ("mixed", "mixed-integer", "unknown-array"):  # True == 1 when hashed
        return np.asarray([level_label(v) for v in arr], dtype=object)
    missing = np.asarray(pd.isna(arr), dtype=bool)
    present = ~missing
    codes, uniques = pd.factorize(arr[present])
    out[present] = np.asarray([level_label(u) for u in uniques], dtype=object)[codes]
    for i in np.flatnonzero(missing):  # usually few: None and NaN keep their own labels
        out[i] = level_label(arr[i])
    return out
