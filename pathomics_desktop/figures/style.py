"""How figures and tables write numbers and which colours they use.

``PALETTE`` is the Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008, "Color Universal
Design"), in the order groups are coloured. ``format_p`` writes p as journals do: "< 0.001"
below 0.001, else three decimals.
"""

from __future__ import annotations

import math

#: Okabe-Ito: blue, vermillion, bluish green, reddish purple, orange, sky blue, yellow, black
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def group_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def format_p(p: float | None, digits: int = 3) -> str:
    """``"< 0.001"`` below 0.001 (with ``digits`` = 3), else ``p`` with ``digits`` decimals; "-" if undefined."""
    if not _finite(p):
        return "-"
    floor = 10.0 ** -digits
    return f"< {floor:.{digits}f}" if p < floor else f"{p:.{digits}f}"


def format_estimate_ci(value: float | None, low: float | None, high: float | None, digits: int = 2) -> str:
    """``"3.04 (2.10-4.41)"``; the estimate alone when the interval is undefined; "-" if undefined."""
    if not _finite(value):
        return "-"
    if not (_finite(low) and _finite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"
