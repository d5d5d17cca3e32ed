"""Tail probabilities of the chi-square and normal distributions without scipy.stats overhead.

``scipy.stats.chi2.sf`` and ``norm.sf`` validate their arguments in Python (~0.1 ms a call)
and then call the Cephes functions ``chdtrc`` and ``ndtr``; a forest plot asks for hundreds of
p values per filter change, so these call the same functions directly: the values are
identical, bit for bit (tested), including ``chi2.sf(x < 0) = 1`` and ``nan`` for ``df <= 0``.
"""

from __future__ import annotations

import math

from scipy import special


def chi2_sf(stat: float, df: float) -> float:
    """P(X > stat) for X ~ chi-square(df): ``chdtrc(df, stat)`` (1 for stat < 0)."""
    if not df > 0:
        return math.nan
    if stat < 0:
        return 1.0
    return float(special.chdtrc(df, stat))


def normal_two_sided_p(z: float) -> float:
    """2 P(Z > |z|) for Z ~ N(0, 1): ``2 ndtr(-|z|)`` (no cancellation in the tail)."""
    return float(2.0 * special.ndtr(-abs(z)))
