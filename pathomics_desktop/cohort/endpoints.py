"""Survival endpoints derived from surgery and follow-up.

* OS (overall survival): surgery -> death from any cause (event) or last follow-up
  (censored).
* RFS (recurrence-free survival): surgery -> recurrence or death, whichever came first
  (event), else last follow-up (censored).

Times are in months (``days / 30.4375``, :mod:`pathomics_desktop.units`). Follow-up is
summarised over all of a patient's visits: the last follow-up is the latest visit date (or
the death date), death is any recorded death, recurrence the earliest recorded recurrence.

Inconsistent follow-up raises :class:`FollowUpError` naming the patient: death, recurrence or
last follow-up before surgery; recurrence after death; last follow-up after death; dead
without a death date; recurrence without a date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from pathomics_desktop.errors import UserError
from pathomics_desktop.units import days_to_months


class FollowUpError(UserError):
    """Follow-up that contradicts itself or the surgery date."""


@dataclass(frozen=True)
class Visit:
    visit_date: dt.date | None
    vital_status: str | None = None
    recurrence: bool | None = None
    recurrence_date: dt.date | None = None
    death_date: dt.date | None = None


@dataclass(frozen=True)
class FollowUpSummary:
    last_followup_date: dt.date | None
    dead: bool | None
    death_date: dt.date | None
    recurrence: bool | None
    recurrence_date: dt.date | None


@dataclass(frozen=True)
class Endpoints:
    os_days: int
    os_event: int
    rfs_days: int
    rfs_event: int

    @property
    def os_months(self) -> float:
        return days_to_months(self.os_days)

    @property
    def rfs_months(self) -> float:
        return days_to_months(self.rfs_days)


def summarise(visits: Iterable[Visit]) -> FollowUpSummary:
    visits = list(visits)
    dates = [v.visit_date for v in visits if v.visit_date is not None]
    death_dates = [v.death_date for v in visits if v.death_date is not None]
    statuses = [v for v in visits if v.vital_status is not None]
    dead = None
    if statuses:
        dead = any(v.vital_status == "dead" for v in statuses)
    if death_dates:
        dead = True
    rec_known = [v for v in visits if v.recurrence is not None]
    recurrence = any(v.recurrence for v in rec_known) if rec_known else None
    rec_dates = [v.recurrence_date for v in visits if v.recurrence_date is not None]
    if rec_dates:
        recurrence = True
    return FollowUpSummary(
        last_followup_date=max(dates) if dates else None,
        dead=dead,
        death_date=min(death_dates) if death_dates else None,
        recurrence=recurrence,
        recurrence_date=min(rec_dates) if rec_dates else None,
    )


def check_consistency(who: str, surgery_date: dt.date | None, fu: FollowUpSummary) -> list[str]:
    """Every contradiction in a patient's follow-up, as messages naming the patient."""
    problems: list[str] = []
    if fu.dead and fu.death_date is None:
        problems.append(f"{who}: vital status is dead but there is no death date")
    if fu.recurrence and fu.recurrence_date is None:
        problems.append(f"{who}: recurrence is yes but there is no recurrence date")
    if surgery_date is not None:
        for label, date in (("death", fu.death_date), ("recurrence", fu.recurrence_date),
                            ("last follow-up", fu.last_followup_date)):
            if date is not None and date < surgery_date:
                problems.append(f"{who}: {label} date {date} is before surgery ({surgery_date})")
    if fu.death_date is not None:
        if fu.recurrence_date is not None and fu.recurrence_date > fu.death_date:
            problems.append(f"{who}: recurrence date {fu.recurrence_date} is after death ({fu.death_date})")
        if fu.last_followup_date is not None and fu.last_followup_date > fu.death_date:
            problems.append(f"{who}: last follow-up {fu.last_followup_date} is after death ({fu.death_date})")
    return problems


def derive_endpoints(who: str, surgery_date: dt.date | None, fu: FollowUpSummary) -> Endpoints | None:
    """OS and RFS in days with event flags; None when surgery or follow-up is missing.

    Raises :class:`FollowUpError` for inconsistent follow-up.
    """
    problems = check_consistency(who, surgery_date, fu)
    if problems:
        raise FollowUpError("; ".join(problems))
    if surgery_date is None or fu.dead is None:
        return None
    end = fu.death_date if fu.dead else fu.last_followup_date
    if fu.dead and fu.last_followup_date is not None and fu.death_date is not None:
        end = fu.death_date
    if end is None:
        return None
    os_days = (end - surgery_date).days
    os_event = 1 if fu.dead else 0
    if fu.recurrence is None:
        return None
    if fu.recurrence and fu.recurrence_date is not None:
        rfs_days, rfs_event = (fu.recurrence_date - surgery_date).days, 1
    else:
        rfs_days, rfs_event = os_days, os_event
    return Endpoints(os_days=os_days, os_event=os_event, rfs_days=rfs_days, rfs_event=rfs_event)
