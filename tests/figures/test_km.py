"""The Kaplan-Meier figure description: its medians, log-rank and trend p equal ``stats.km``
called directly, its HRs equal ``stats.cox``, and its number-at-risk table equals counts done
by brute force on the snapshot (follow-up >= break at risk; events and censorings before it).
The cohort is a small SYNTHETIC snapshot file read through DuckDB (``AnalysisSource``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.km import build_km, parse_breaks, time_breaks
from pathomics_desktop.stats.cox import fit_cox
from pathomics_desktop.stats.km import km_comparison, logrank_test, logrank_trend

STAGES = ("I", "II", "III", "IV")


def synthetic_snapshot(n: int = 360, seed: int = 11) -> pd.DataFrame:
    """SYNTHETIC cohort: exponential times (hazard rising with stage and the risk group),
    rounded to 0.5 months so that ties fall on the at-risk breaks, uniform censoring."""
    rng = np.random.default_rng(seed)
    stage = rng.choice(len(STAGES), size=n, p=[0.35, 0.35, 0.2, 0.1])
    high = rng.random(n) < 0.5
    hazard = 0.03 * np.exp(0.35 * stage + 0.6 * high)
    event_time = rng.exponential(1.0 / hazard)
    censor_time = rng.uniform(6.0, 90.0, size=n)
    os_months = np.maximum(np.round(np.minimum(event_time, censor_time) * 2.0) / 2.0, 0.5)
    ca19_9 = np.round(rng.lognormal(4.5, 1.4, size=n), 1)
    ca19_9[:3] = [200.0, 199.9, 200.0]  # values at the cut
    ca19_9[3:8] = np.nan  # not recorded
    return pd.DataFrame({
        "study_id": [f"SYN-T-{i:04d}" for i in range(n)],
        "synthetic": True,
        "center": rng.choice(["A", "B", "C"], size=n),
        "split": rng.choice(["training", "internal", "external"], size=n),
        "included": rng.random(n) < 0.95,
        "os_months": os_months,
        "os_event": (event_time <= censor_time).astype(int),
        "rfs_months": np.round(os_months * 0.7, 1),
        "rfs_event": (event_time <= censor_time).astype(int),
        "tnm_group": np.array(STAGES)[stage],
        "t_stage": rng.choice(["T1", "T2", "T3", "T4"], size=n),
        "age": rng.integers(40, 85, size=n),
        "sex": rng.choice(["female", "male"], size=n),
        "ca19_9": ca19_9,
        "adjuvant_chemotherapy": rng.choice(["no", "yes"], size=n),
        "pathomics_os_score": rng.normal(size=n) + high,
        "pathomics_os_group": np.where(high, "high", "low"),
    })


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("km") / "cohort.parquet"
    synthetic_snapshot().to_parquet(path, index=False)
    return AnalysisSource(path)


@pytest.fixture(scope="module")
def frame(source):
    return source.frame(CohortFilter())


def brute_at_risk(times, events, breaks):
    """(at risk: time >= b, events with time < b, censored with time < b) per break."""
    times, events = np.asarray(times, float), np.asarray(events, bool)
    return ([int((times >= b).sum()) for b in breaks],
            [int((events & (times < b)).sum()) for b in breaks],
            [int((~events & (times < b)).sum()) for b in breaks])


def test_risk_groups_equal_stats_km_and_brute_force_counts(source, frame):
    fig = build_km(source, frame, {"endpoint": "os"})
    assert fig.group == "pathomics_os_group"  # the default when the risk group exists
    assert fig.levels == ["low", "high"] and fig.reference == "low"
    direct = km_comparison(frame["os_months"], frame["os_event"], frame["pathomics_os_group"].tolist())
    assert fig.logrank["p"] == pytest.approx(direct.logrank.p, rel=1e-12)
    assert fig.logrank["chisq"] == pytest.approx(direct.logrank.chisq, rel=1e-12)
    assert fig.breaks == [12.0 * i for i in range(int(frame["os_months"].max() // 12) + 1)]
    assert any(((frame["os_months"] == b).any()) for b in fig.breaks[1:])  # ties on a break are tested
    for group in fig.groups:
        part = frame[frame["pathomics_os_group"] == group.label]
        assert (group.median, group.median_lower, group.median_upper) == direct.curves[group.label].median()
        assert (group.n, group.events) == (len(part), int(part["os_event"].sum()))
        at_risk, events_by, censored_by = brute_at_risk(part["os_months"], part["os_event"], fig.breaks)
        assert group.at_risk == at_risk and group.events_by == events_by and group.censored_by == censored_by
        assert sorted(group.study_ids) == sorted(part["study_id"])
    out = fig.to_dict()
    assert [g["at_risk"] for g in out["groups"]] == [g.at_risk for g in fig.groups]
    assert not any(sid in json.dumps(out) for sid in frame["study_id"])  # no patient ids in the numbers


def test_hazard_ratio_equals_stats_cox(source, frame):
    fig = build_km(source, frame, {"endpoint": "os", "group": "pathomics_os_group"})
    fit = fit_cox(frame, "os_months", "os_event", ["pathomics_os_group"], categorical=["pathomics_os_group"],
                  reference={"pathomics_os_group": "low"})
    row = fit.table()[0]
    high = fig.group_by_label("high")
    assert row["term"] == "pathomics_os_group=high"
    assert high.hr == pytest.approx({"hr": row["hr"], "hr_lower": row["hr_lower"],
                                     "hr_upper": row["hr_upper"], "p": row["p"]}, rel=1e-10)
    assert high.hr["hr"] > 1.0  # the SYNTHETIC high group has exp(0.6) times the hazard
    assert fig.group_by_label("low").hr is None
    # another reference: the HR is the inverse
    flipped = build_km(source, frame, {"group": "pathomics_os_group", "reference": "high"})
    assert flipped.group_by_label("low").hr["hr"] == pytest.approx(1.0 / row["hr"], rel=1e-8)


def test_cut_of_a_continuous_variable(source, frame):
    fig = build_km(source, frame, {"group": "ca19_9"})
    assert fig.cut == 200.0 and fig.levels == ["<200", ">=200"]
    upper = frame.loc[frame["ca19_9"] >= 200, "study_id"]
    lower = frame.loc[frame["ca19_9"] < 200, "study_id"]
    assert sorted(fig.group_by_label(">=200").study_ids) == sorted(upper)
    assert sorted(fig.group_by_label("<200").study_ids) == sorted(lower)
    assert {"SYN-T-0000", "SYN-T-0002"} <= set(upper) and "SYN-T-0001" in set(lower)
    assert fig.n_missing == int(frame["ca19_9"].isna().sum()) > 0
    chosen = build_km(source, frame, {"group": "ca19_9", "group_cut": 37})
    assert sorted(chosen.group_by_label(">=37").study_ids) == sorted(frame.loc[frame["ca19_9"] >= 37, "study_id"])
    direct = km_comparison(frame["os_months"][frame["ca19_9"].notna()], frame["os_event"][frame["ca19_9"].notna()],
                           np.where(frame["ca19_9"].dropna() >= 37, "hi", "lo").tolist())
    assert chosen.logrank["p"] == pytest.approx(direct.logrank.p, rel=1e-12)


def test_stage_has_the_trend_test_in_stage_order(source, frame):
    fig = build_km(source, frame, {"group": "tnm_group", "breaks": [0, 6, 12, 36]})
    assert fig.levels == list(STAGES) and fig.reference == "I" and fig.ordered
    trend = logrank_trend(frame["os_months"], frame["os_event"], frame["tnm_group"].tolist(), order=STAGES)
    overall = logrank_test(frame["os_months"], frame["os_event"], frame["tnm_group"].tolist())
    assert fig.trend["p"] == pytest.approx(trend["p"], rel=1e-12)
    assert fig.logrank["p"] == pytest.approx(overall.p, rel=1e-12) and fig.logrank["df"] == 3
    fit = fit_cox(frame, "os_months", "os_event", ["tnm_group"], categorical=["tnm_group"], reference={"tnm_group": "I"})
    for row in fit.table():
        assert fig.group_by_label(row["term"].split("=")[1]).hr["hr"] == pytest.approx(row["hr"], rel=1e-10)
    assert fig.breaks == [0.0, 6.0, 12.0, 36.0]
    for group in fig.groups:
        part = frame[frame["tnm_group"] == group.label]
        assert group.at_risk == brute_at_risk(part["os_months"], part["os_event"], fig.breaks)[0]
    # a two-level grouping has no trend test
    assert build_km(source, frame, {"group": "sex"}).trend is None


def test_years_and_a_filtered_cohort(source):
    flt = CohortFilter(datasets=("training", "internal")).with_categories("sex", ["female"])
    frame = source.frame(flt)
    fig = build_km(source, frame, {"group": "adjuvant_chemotherapy", "unit": "years", "breaks": 2})
    assert fig.levels == ["no", "yes"] and fig.unit == "years"
    years = frame["os_months"] / 12.0
    direct = km_comparison(years, frame["os_event"], frame["adjuvant_chemotherapy"].tolist())
    assert fig.breaks == [2.0 * i for i in range(int(years.max() // 2) + 1)]
    for group in fig.groups:
        part = frame["adjuvant_chemotherapy"] == group.label
        assert group.median == direct.curves[group.label].median()[0]
        assert (group.at_risk, group.events_by, group.censored_by) == brute_at_risk(
            frame.loc[part, "os_months"], frame.loc[part, "os_event"], [12.0 * b for b in fig.breaks])
    assert fig.n == len(frame)


def test_all_patients_when_no_grouping(source, frame):
    fig = build_km(source, frame.drop(columns=["pathomics_os_group"]), {"endpoint": "rfs"})
    assert fig.group is None and fig.levels == ["all"] and fig.logrank is None and fig.reference is None
    direct = km_comparison(frame["rfs_months"], frame["rfs_event"])
    assert fig.groups[0].median == direct.curves["all"].median()[0]
    group = fig.groups[0]
    t = float(group.censor_time[0])
    censored = frame[(frame["rfs_event"] == 0) & np.isclose(frame["rfs_months"], t)]
    assert [r["study_id"] for r in group.censored_at(t)] == sorted(censored["study_id"])
    # S(t) at a time is the step value of the curve (right-continuous)
    value = group.survival_at(24.0)
    expected = direct.curves["all"].at([24.0])[0]
    assert value == pytest.approx((expected["survival"], expected["lower"], expected["upper"]))


def test_bad_input_is_a_clear_error(source, frame):
    with pytest.raises(UserError, match="reference group 'medium'"):
        build_km(source, frame, {"group": "pathomics_os_group", "reference": "medium"})
    # a level of the grouping that the filter left out: HRs against the first level, said in a note
    fig = build_km(source, frame[frame["tnm_group"] != "I"], {"group": "tnm_group", "reference": "I"})
    assert fig.reference == "II" and "the reference I has no patients" in fig.notes[0]
    with pytest.raises(UserError, match="not a column"):
        build_km(source, frame, {"group": "no_such_column"})
    with pytest.raises(UserError, match="endpoint"):
        build_km(source, frame, {"endpoint": "dfs"})
    with pytest.raises(UserError, match="time breaks 'twelve'"):
        parse_breaks("twelve")
    with pytest.raises(UserError, match="step of 0.1 months"):
        time_breaks(0.1, "months", 100.0)
    assert parse_breaks("") is None and parse_breaks("12") == 12.0 and parse_breaks("0, 6; 24") == [0.0, 6.0, 24.0]
