"""Endpoints (OS, RFS in months = days / 30.4375) and AJCC 8th stage."""

from __future__ import annotations

import datetime as dt

import pytest

from pathomics_desktop.cohort.endpoints import FollowUpError, Visit, derive_endpoints, summarise
from pathomics_desktop.cohort.staging import ajcc8_stage, stage_group
from pathomics_desktop.units import DAYS_PER_MONTH, days_to_months

D = dt.date


def test_months_are_days_over_30_4375():
    assert DAYS_PER_MONTH == 30.4375
    assert days_to_months(365.25) == pytest.approx(12.0)


def test_os_and_rfs_with_recurrence_then_death():
    fu = summarise([Visit(D(2019, 1, 1), "alive", False), Visit(D(2020, 1, 1), "dead", True, D(2019, 6, 1), D(2020, 1, 1))])
    ep = derive_endpoints("p", D(2018, 1, 1), fu)
    assert (ep.os_days, ep.os_event) == (730, 1)
    assert (ep.rfs_days, ep.rfs_event) == (516, 1)
    assert ep.os_months == pytest.approx(730 / 30.4375)


def test_rfs_event_is_death_without_recurrence_and_censoring_otherwise():
    ep = derive_endpoints("p", D(2018, 1, 1), summarise([Visit(D(2019, 1, 1), "dead", False, None, D(2019, 1, 1))]))
    assert (ep.rfs_days, ep.rfs_event, ep.os_event) == (365, 1, 1)
    ep = derive_endpoints("p", D(2018, 1, 1), summarise([Visit(D(2021, 1, 1), "alive", False)]))
    assert (ep.os_days, ep.os_event, ep.rfs_days, ep.rfs_event) == (1096, 0, 1096, 0)


def test_latest_visit_and_earliest_recurrence_win():
    fu = summarise([Visit(D(2019, 1, 1), "alive", True, D(2018, 9, 1)),
                    Visit(D(2020, 1, 1), "alive", True, D(2018, 10, 1)),
                    Visit(D(2019, 6, 1), "alive", True, None)])
    assert fu.last_followup_date == D(2020, 1, 1) and fu.recurrence_date == D(2018, 9, 1)


@pytest.mark.parametrize("visit,text", [
    (Visit(D(2019, 1, 1), "dead", False), "no death date"),
    (Visit(D(2017, 1, 1), "alive", False), "before surgery"),
    (Visit(D(2019, 1, 1), "dead", True, D(2019, 6, 1), D(2019, 1, 1)), "after death"),
    (Visit(D(2019, 6, 1), "dead", False, None, D(2019, 1, 1)), "after death"),
    (Visit(D(2019, 1, 1), "alive", True, None), "no recurrence date"),
])
def test_inconsistent_followup_raises_naming_the_patient(visit, text):
    with pytest.raises(FollowUpError, match=text) as info:
        derive_endpoints("patient X9", D(2018, 1, 1), summarise([visit]))
    assert "patient X9" in str(info.value)


@pytest.mark.parametrize("t,n,m,stage,group", [
    ("T1", "N0", "M0", "IA", "I"), ("T2", "N0", "M0", "IB", "I"), ("T3", "N0", "M0", "IIA", "II"),
    ("T1", "N1", "M0", "IIB", "II"), ("T3", "N1", "M0", "IIB", "II"), ("T4", "N0", "M0", "III", "III"),
    ("T2", "N2", "M0", "III", "III"), ("T4", "N2", "M0", "III", "III"), ("T1", "N0", "M1", "IV", "IV"),
    ("T4", None, "M0", "III", "III"), (None, "N0", "M0", None, None), ("T2", "N0", None, None, None),
])
def test_ajcc8_stage(t, n, m, stage, group):
    assert ajcc8_stage(t, n, m) == stage
    assert stage_group(stage) == group
