"""Units used everywhere, defined once.

Months are calendar-average months: ``months = days / 30.4375`` (365.25 / 12). Every
survival time shown, exported or analysed in months is derived with :func:`days_to_months`.
"""

from __future__ import annotations

DAYS_PER_MONTH = 30.4375
DAYS_PER_YEAR = 365.25


def days_to_months(days: float) -> float:
    """Days -> months (``days / 30.4375``)."""
    return days / DAYS_PER_MONTH


def months_to_days(months: float) -> float:
    """Months -> days (``months * 30.4375``)."""
    return months * DAYS_PER_MONTH
