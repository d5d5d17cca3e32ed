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


def factor(values, levels=None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """R's ``factor()``: (code, levels, known). ``code`` indexes ``levels`` (given, or the
    :func:`sorted_levels` of the present values' :func:`level_label` s), -1 where the value is
    missing or not listed; ``known``: the value is present. One hash pass
    (``pandas.factorize``), the labels computed per distinct value only."""
    import pandas as pd

    arr = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else label_array(values)
    kind = pd.api.types.infer_dtype(arr, skipna=True) if len(arr) else "empty"
    if "boolean" in kind or kind in ("mixed", "mixed-integer", "unknown-array"):  # True == 1 when hashed
        known = ~np.asarray(pd.isna(arr), dtype=bool)
        codes, uniques = pd.factorize(label_array(arr))
        labels = [str(u) for u in uniques]
        present_codes = np.unique(codes[known])
        listed = [labels[c] for c in present_codes]
    else:
        codes, uniques = pd.factorize(arr)  # None and NaN: code -1
        known = codes >= 0
        labels = [level_label(u) for u in uniques]
        listed = labels
    levels = list(levels) if levels is not None else sorted_levels(listed)
    lookup = {lvl: i for i, lvl in enumerate(levels)}
    code_of = np.array([lookup.get(lbl, -1) for lbl in labels] + [-1], dtype=np.int64)
    return np.where(known, code_of[codes], -1), levels, known


def level_codes(values, levels) -> tuple[np.ndarray, np.ndarray]:
    """(code, known) of :func:`factor` with the given ``levels``."""
    code, _, known = factor(values, levels)
    return code, known
