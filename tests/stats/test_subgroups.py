"""Subgroup HRs and interaction p vs R (coxph within levels; anova of x + S vs x * S).

Reference values: tests/stats/reference/table1_subgroups.json
(tests/stats/r/table1_subgroups_reference.R).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def _levels_frame(seed: int = 8, n: int = 900) -> pd.DataFrame:
    """SYNTHETIC: a numeric exposure, tied times and a subgroup variable whose levels hit
    every path: ordinary levels, one without events, one with a constant exposure, one of a
    single patient, and (``sep``) a level whose deaths all have the larger exposure
    (monotone likelihood), plus a second variable of ordinary levels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    group = rng.choice(np.array(["a", "b", "none", "flat", "sep"], dtype=object), size=n,
                       p=[0.35, 0.35, 0.1, 0.1, 0.1])
    group[0] = "single"
    x[group == "flat"] = 1.5
    time = rng.integers(1, 40, size=n).astype(float)
    event = rng.random(n) < 0.55
    event[group == "none"] = False
    sep = group == "sep"
    event[sep] = x[sep] > 0
    # each death has the largest exposure of its risk set: the larger x, the earlier it dies
    dying = np.flatnonzero(sep & event)
    time[dying[np.argsort(-x[dying])]] = 0.01 * np.arange(1, dying.size + 1)
    mixed = np.where(group == "sep", "b", group)  # the separated rows are not separated within b
    return pd.DataFrame({"t": time, "e": event.astype(int), "x": x, "grp": group, "mixed": mixed,
                         "two": rng.choice(["p", "q"], size=n)})


def test_levels_fitted_together_equal_each_level_fitted_alone(monkeypatch):
    """The joint stratified fit of a variable's levels gives each level's own Cox fit (HR, CI,
    p); levels whose own fit fails keep that fit's message (left out of the joint fit, or all
    fitted alone when it fails: ``grp``'s separated level); the interaction p is the LR test
    of the two models built directly with pandas dummies."""
    import numpy as np

    import pathomics_desktop.stats.subgroups as subgroups
    from pathomics_desktop.stats.cox import fit_cox_arrays, fit_cox_estimate

    joint_fits = []

    def spy(t, e, x, strata, **kwargs):
        joint_fits.append(int(strata.max()) + 1)
        return fit_cox_stratum_slopes(t, e, x, strata, **kwargs)

    fit_cox_stratum_slopes = subgroups.fit_cox_stratum_slopes
    monkeypatch.setattr(subgroups, "fit_cox_stratum_slopes", spy)
    df = _levels_frame()
    res = subgroup_analysis(df, "t", "e", "x", ["grp", "mixed", "two"])
    assert sorted(joint_fits) == [2, 2, 3]  # two, mixed (a, b), grp (a, b, sep: it fails)
    rows = {(r.variable, r.level): r for r in res.rows}
    notes = 0
    for (var, level), row in rows.items():
        if var == "Overall":
            continue
        part = df[df[var] == level]
        assert (row.n, row.events) == (len(part), int(part.e.sum()))
        try:
            alone = fit_cox_estimate(part.t.to_numpy(), part.e.to_numpy(), part[["x"]].to_numpy(), names=["x"]).table()[0]
        except UserError as exc:
            assert row.note == str(exc) and row.hr is None
            notes += 1
            continue
        assert row.note is None
        for key in ("hr", "hr_lower", "hr_upper", "p"):
            assert getattr(row, key) == pytest.approx(alone[key], rel=1e-9)
    assert notes == 7  # none, flat, single and sep of grp; none, flat and single of mixed

    def loglik(design: pd.DataFrame) -> float:
        return fit_cox_arrays(df.t.to_numpy(), df.e.to_numpy(), design.to_numpy(float)).loglik

    for var in ("two",):
        dummies = pd.get_dummies(df[var], drop_first=True, dtype=float)
        reduced = pd.concat([df[["x"]], dummies], axis=1)
        full = pd.concat([reduced, dummies.mul(df.x, axis=0).add_suffix(":x")], axis=1)
        stat = 2 * (loglik(full) - loglik(reduced))
        from scipy.stats import chi2

        assert rows[(var, "p")].p_interaction == pytest.approx(chi2.sf(stat, dummies.shape[1]), rel=1e-7)
    assert np.isfinite(rows[("Overall", "all")].hr)


def test_listed_levels_only_enter_the_interaction_test():
    """With ``subgroup_order``, values not listed are left out of the variable's rows and of
    its interaction models: the p is the LR test on the listed levels' patients alone."""
    from scipy.stats import chi2

    from pathomics_desktop.stats.cox import fit_cox_arrays

    df = colon_two_arms().dropna(subset=["differ"])
    res = subgroup_analysis(df, "time", "status", "rx", ["differ"], reference="Obs",
                            subgroup_order={"differ": ["1", "2"]})
    assert [r.level for r in res.rows[1:]] == ["1", "2"]
    part = df[df.differ.isin([1, 2])]
    x = (part.rx == "Lev+5FU").to_numpy(float)
    d = (part.differ == 2).to_numpy(float)

    def loglik(*cols):
        return fit_cox_arrays(part.time.to_numpy(), part.status.to_numpy(), np.column_stack(cols)).loglik

    expected = chi2.sf(2 * (loglik(x, d, x * d) - loglik(x, d)), 1)
    assert res.rows[1].p_interaction == pytest.approx(expected, rel=1e-7)
