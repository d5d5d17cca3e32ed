"""Subgroup HRs and interaction p vs R (coxph within levels; anova of x + S vs x * S).

Reference values: tests/stats/reference/table1_subgroups.json
(tests/stats/r/table1_subgroups_reference.R).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.subgroups import subgroup_analysis

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "table1_subgroups.json").read_text())
ROW_KEYS = {"variable", "level", "n", "events", "hr", "hr_lower", "hr_upper", "p", "p_interaction"}


def colon_two_arms() -> pd.DataFrame:
    df = pd.read_csv(HERE / "data" / "colon.csv")
    df = df[(df.etype == 2) & df.rx.isin(["Obs", "Lev+5FU"])]
    return df


def check(result: dict, ref: dict):
    by_var: dict[str, list[dict]] = {}
    for row in result.rows:
        assert set(row.to_dict()) == ROW_KEYS
        by_var.setdefault(row.variable, []).append(row)
    for var, expected in ref.items():
        rows = by_var[var]
        assert rows[0].p_interaction == pytest.approx(expected["p_interaction"], rel=1e-6)
        assert all(r.p_interaction is None for r in rows[1:])
        for row in rows:
            lv = expected["levels"][row.level]
            assert row.n == lv["n"] and row.events == lv["events"]
            if lv.get("hr") in (None, {}):
                assert row.hr is None and row.p is None
                continue
            assert row.hr == pytest.approx(lv["hr"], rel=1e-6)
            assert row.hr_lower == pytest.approx(lv["lower"], rel=1e-6)
            assert row.hr_upper == pytest.approx(lv["upper"], rel=1e-6)
            assert row.p == pytest.approx(lv["p"], rel=1e-5)


def test_colon_subgroups_binary_exposure_as_category():
    df = colon_two_arms()
    res = subgroup_analysis(df, "time", "status", "rx", ["sex", "node4", "differ", "obstruct"],
                            reference="Obs")
    assert res.exposure_term == "rx=Lev+5FU"
    overall = res.rows[0]
    assert (overall.variable, overall.level) == ("Overall", "all")
    assert overall.hr == pytest.approx(REF["sg_colon_overall"]["hr"], rel=1e-6)
    check(res, REF["sg_colon"])


def test_lung_subgroups_numeric_exposure_with_unestimable_level():
    df = pd.read_csv(HERE / "data" / "lung_subgroups.csv")
    res = subgroup_analysis(df, "time", "status", "X", ["sex", "age65", "ph.ecog"])
    check(res, REF["sg_lung"])
    lonely = next(r for r in res.rows if r.variable == "ph.ecog" and r.level == "3")
    assert lonely.n == 1 and lonely.note == "covariate X is constant (one value only)"
    assert lonely.hr is None and lonely.p is None
    text = res.summary().splitlines()
    assert text[0] == "exposure: X"
    assert text[-1] == "note: ph.ecog=3: covariate X is constant (one value only)"
    assert res.to_dict() == {"rows": [{k: getattr(r, k) for k in ROW_KEYS} for r in res.rows]}


def test_subgroup_errors():
    df = colon_two_arms()
    with pytest.raises(UserError, match="two levels"):
        subgroup_analysis(pd.read_csv(HERE / "data" / "colon.csv"), "time", "status", "rx", ["sex"])
    with pytest.raises(UserError, match="not in the data"):
        subgroup_analysis(df, "time", "status", "rx", ["nope"], reference="Obs")
    with pytest.raises(UserError, match="categories"):
        subgroup_analysis(df, "time", "status", "rx", ["age"], reference="Obs")
    rows = subgroup_analysis(df.assign(one="x"), "time", "status", "rx", ["one"],
                             reference="Obs").rows
    # one level holding every patient: its HR is the overall one, no interaction test
    assert rows[1].p_interaction is None and rows[1].hr == pytest.approx(rows[0].hr, rel=1e-12)
