"""Table 1 (baseline characteristics) and its tests vs R.

Reference values: tests/stats/reference/table1_subgroups.json
(tests/stats/r/table1_subgroups_reference.R): Shapiro-Wilk per group, t.test (Welch),
wilcox.test, aov, kruskal.test, chisq.test(correct = FALSE), fisher.test (r x c).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats import table1

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "table1_subgroups.json").read_text())


def data(name: str) -> pd.DataFrame:
    return pd.read_csv(HERE / "data" / f"{name}.csv")


def as_list(value):
    return value if isinstance(value, list) else [value]


SETS = {
    "t1_pbc": (lambda: data("pbc").dropna(subset=["trt"]), "trt",
               ["age", "bili", "albumin", "chol"], ["sex", "stage", "edema", "ascites"]),
    "t1_colon": (lambda: data("colon").query("etype == 2"), "rx", ["age", "nodes"],
                 ["sex", "differ", "extent", "obstruct"]),
    "t1_lung": (lambda: data("lung"), "sex", ["age", "wt.loss", "inst"], ["ph.ecog"]),
}


@pytest.mark.parametrize("key", list(SETS))
def test_table1_tests_match_r(key):
    make, by, continuous, categorical = SETS[key]
    df = make()
    ref = REF[key]
    table = table1.baseline_table(df, by, continuous + categorical, categorical=categorical)
    first = {}
    for row in table.rows:
        first.setdefault(row.variable, row)
    for var in continuous:
        r = ref[var]
        normal = all(p is not None and p > 0.05 for p in as_list(r["shapiro"]))
        row = first[var]
        if len(table.groups) == 2:
            expected_test, expected_p = ("Welch t-test", r["welch"]) if normal else ("Mann-Whitney U", r["wilcox"])
        else:
            expected_test, expected_p = ("ANOVA", r["anova"]) if normal else ("Kruskal-Wallis", r["kruskal"])
        assert row.test == expected_test, var
        assert row.p == pytest.approx(expected_p, rel=1e-9), var
    for var in categorical:
        r = ref[var]
        row = first[var]
        if r["min_expected"] < 5:
            assert row.test.startswith("Fisher"), var
            assert row.p == pytest.approx(r["fisher"], rel=1e-7), var
        else:
            assert row.test == "Pearson chi-square", var
            assert row.p == pytest.approx(r["chisq"], rel=1e-9), var


def test_summaries_missing_rows_and_smd():
    df = data("pbc").dropna(subset=["trt"])
    table = table1.baseline_table(df, "trt", ["age", "chol", "sex"], categorical=["sex"])
    assert table.groups == ["1", "2"]
    rows = table.rows
    age = rows[0]
    a1 = df.age[df.trt == 1]
    a2 = df.age[df.trt == 2]
    if age.statistic_kind == "mean (SD)":
        assert age.cells["1"] == f"{a1.mean():.1f} ({a1.std():.1f})"
    smd = abs(a1.mean() - a2.mean()) / np.sqrt((a1.var() + a2.var()) / 2)
    assert age.smd == pytest.approx(smd)
    missing = next(r for r in rows if r.variable == "chol" and r.level == "missing")
    assert [int(missing.cells[g]) for g in ("1", "2")] == as_list(REF["t1_pbc"]["missing_chol"])
    chol = next(r for r in rows if r.variable == "chol" and r.level is None)
    c1 = df.chol[df.trt == 1].dropna()
    q1, med, q3 = np.percentile(c1, [25, 50, 75])
    assert chol.cells["1"] == f"{med:.1f} [{q1:.1f}, {q3:.1f}]"
    sex = [r for r in rows if r.variable == "sex"]
    assert [r.level for r in sex] == ["f", "m"]
    n_f1 = int(((df.sex == "f") & (df.trt == 1)).sum())
    assert sex[0].cells["1"] == f"{n_f1} ({100 * n_f1 / (df.trt == 1).sum():.1f}%)"
    assert sex[1].p is None and sex[0].p is not None


@pytest.mark.parametrize("name", list(REF["fisher"]))
def test_fisher_rxc_matches_fisher_test(name):
    ref = REF["fisher"][name]
    p, method = table1.fisher_exact_rxc(np.array(ref["table"]))
    assert method == "Fisher's exact test"
    assert p == pytest.approx(ref["p"], rel=1e-7)


def test_fisher_monte_carlo_fallback_is_seeded():
    tab = np.array([[1, 2, 1, 0], [3, 3, 6, 1], [10, 10, 14, 9], [6, 7, 12, 11]])
    p1, method = table1.fisher_exact_rxc(tab, max_work=1000)
    p2, _ = table1.fisher_exact_rxc(tab, max_work=1000)
    assert "Monte Carlo" in method and p1 == p2
    assert p1 == pytest.approx(REF["fisher"]["job"]["p"], abs=0.02)


def test_wilcox_exact_branch():
    r = REF["wilcox_exact"]
    assert table1.mann_whitney(np.array(r["a"]), np.array(r["b"])) == pytest.approx(r["p"], rel=1e-9)


def test_table1_degenerate_inputs():
    df = pd.DataFrame({"g": ["a"] * 5, "x": [1.0, 2, 3, 4, 5]})
    with pytest.raises(UserError, match="two groups"):
        table1.baseline_table(df, "g", ["x"])
    with pytest.raises(UserError, match="not in the data"):
        table1.baseline_table(df.assign(g=["a", "b"] * 2 + ["a"]), "g", ["nope"])
    # a constant variable: identical groups (rank test p = 1), no chi-square for one level, no NaN
    const = pd.DataFrame({"g": ["a", "b"] * 4, "x": 1.0, "c": "same"})
    out = table1.baseline_table(const, "g", ["x", "c"], categorical=["c"])
    x, c = out.rows
    assert (x.p, x.test, x.cells) == (1.0, "Mann-Whitney U", dict.fromkeys(["a", "b", "Overall"], "1.0 [1.0, 1.0]"))
    assert (c.level, c.p, c.test) == ("same", None, None)
    assert c.cells == {"a": "4 (100.0%)", "b": "4 (100.0%)", "Overall": "8 (100.0%)"}
    assert out.to_dict() == {"groups": ["a", "b"], "rows": [
        {"variable": "x", "level": None, "summary": x.cells, "p": 1.0, "test": "Mann-Whitney U"},
        {"variable": "c", "level": "same", "summary": c.cells, "p": None, "test": None}]}


def _brute_force_fisher(tab: np.ndarray) -> float:
    """Enumerate every table with the margins of ``tab`` (tiny tables only)."""
    from itertools import product
    from math import factorial, prod

    rows, cols = tab.sum(1), tab.sum(0)
    n = int(tab.sum())

    def prob(t):
        return (prod(factorial(int(v)) for v in rows) * prod(factorial(int(v)) for v in cols)
                / (factorial(n) * prod(factorial(int(v)) for v in t.ravel())))

    p_obs = prob(tab)
    total = 0.0
    r, c = tab.shape
    for cells in product(*[range(min(rows[i], cols[j]) + 1) for i in range(r - 1) for j in range(c - 1)]):
        t = np.zeros((r, c), dtype=int)
        t[: r - 1, : c - 1] = np.array(cells).reshape(r - 1, c - 1)
        t[: r - 1, c - 1] = rows[: r - 1] - t[: r - 1, : c - 1].sum(1)
        t[r - 1, :] = cols - t[: r - 1, :].sum(0)
        if (t < 0).any():
            continue
        pt = prob(t)
        if pt <= p_obs * (1 + 1e-7):
            total += pt
    return total


def test_fisher_rxc_matches_brute_force_enumeration():
    rng = np.random.default_rng(7)
    for _ in range(25):
        shape = tuple(rng.integers(2, 4, size=2))
        tab = rng.integers(0, 4, size=shape)
        if (tab.sum(0) == 0).any() or (tab.sum(1) == 0).any():
            continue
        p, _ = table1.fisher_exact_rxc(tab)
        assert p == pytest.approx(_brute_force_fisher(tab), rel=1e-9), tab
