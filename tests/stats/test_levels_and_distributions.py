"""The fast helpers of the statistics against what they replace: ``factor`` / ``level_codes``
against per-value ``level_label`` and ``sorted_levels``, and ``chi2_sf`` /
``normal_two_sided_p`` against ``scipy.stats`` (bit for bit)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pathomics_desktop.stats.distributions import chi2_sf, normal_two_sided_p
from pathomics_desktop.stats.levels import factor, level_codes, level_label, sorted_levels

CASES = [
    pd.Series(["b", "a", None, "a", np.nan, "c"], dtype=object),
    pd.Series([1.0, 2.0, np.nan, 10.0, 2.0]),  # numeric labels in numeric order: 1 < 2 < 10
    pd.Series([True, False, None, 1, 0], dtype=object),  # True and 1 hash alike; labels differ
    pd.Series(["yes", "no", "no"]),
    pd.Series([], dtype=object),
]


@pytest.mark.parametrize("values", CASES)
def test_factor_equals_labels_one_by_one(values):
    code, levels, known = factor(values)
    present = [v for v in values.tolist() if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    assert levels == sorted_levels(present)
    assert known.tolist() == [not (v is None or (isinstance(v, float) and math.isnan(v))) for v in values.tolist()]
    expected = [levels.index(level_label(v)) if k else -1 for v, k in zip(values.tolist(), known.tolist())]
    assert code.tolist() == expected


def test_level_codes_with_given_levels_mark_unlisted_values():
    values = pd.Series(["II", "I", None, "IV", "I"], dtype=object)
    code, known = level_codes(values, ["I", "II", "III"])
    assert code.tolist() == [1, 0, -1, -1, 0]  # IV is not listed, None is missing
    assert known.tolist() == [True, True, False, True, True]


@pytest.mark.parametrize("stat, df", [(0.0, 1), (3.84, 1), (7.5, 2), (40.0, 3), (1e-8, 4), (3.0, 2.5), (-1.0, 1),
                                      (math.inf, 2)])
def test_chi2_tail_is_scipy_bit_for_bit(stat, df):
    assert chi2_sf(stat, df) == float(stats.chi2.sf(stat, df))


def test_chi2_tail_of_no_degrees_of_freedom_is_nan():
    assert math.isnan(chi2_sf(3.0, 0))


@pytest.mark.parametrize("z", [0.0, 0.5, -1.96, 3.2, -8.0, 40.0])
def test_normal_two_sided_p_is_scipy_bit_for_bit(z):
    assert normal_two_sided_p(z) == float(2 * stats.norm.sf(abs(z)))
