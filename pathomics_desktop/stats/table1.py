"""Baseline characteristics table (study Table 1) with the tests chosen as in the study.

Per variable and group:

* Continuous: mean (SD) when every group passes the Shapiro-Wilk test (p > 0.05, groups
  with 3..5000 values; otherwise treated as non-normal), else median [Q1, Q3] (quartiles
  as R's default ``quantile`` type 7). Test: 2 groups -> Welch t-test (R ``t.test``
  default) or Mann-Whitney U (R ``wilcox.test``: exact when both groups < 50 and no
  ties, else normal approximation with tie and continuity correction); > 2 groups ->
  one-way ANOVA F test or Kruskal-Wallis (tie-corrected, as R ``kruskal.test``).
* Categorical: n (%) of the non-missing values in the group. Test: Pearson chi-square
  *without* continuity correction (R ``chisq.test(correct = FALSE)``; the study does not
  mention Yates' correction and Pearson's statistic is the one named), or Fisher's exact
  test when any expected count is < 5 (2 x 2: conditional exact test as R
  ``fisher.test``; r x c: exact p summing the probabilities of all tables with the
  observed margins that are <= the observed one within a relative 1e-7, as R's FEXACT,
  by a network algorithm (Mehta & Patel 1983): column by column, whole subtrees are
  added or dropped using valid bounds (a Lagrangian-dual bound for the most probable
  completion), and the last two columns are summed with sorted prefix sums; when the
  work exceeds a fixed limit (5 million steps, deterministic) a Monte Carlo p with
  200,000 tables (standard error <= 0.0011), seed 20240607,
  ``(1 + #{P(sim) <= P(obs)}) / (B + 1)``; the test label says which was used).
* Missing values are counted per group (a row "missing" when any) and excluded from tests.
* Standardised mean difference (SMD): continuous ``|m1 - m2| / sqrt((s1^2 + s2^2)/2)``;
  categorical ``sqrt((p1 - p2)' S^-1 (p1 - p2))`` with ``S = (diag-covariance of both
  groups)/2`` over the non-reference levels (Yang & Dalton 2012); for > 2 groups the
  largest pairwise SMD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
from scipy import stats as sps
from scipy.special import digamma, gammaln, polygamma

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.levels import factor
from pathomics_desktop.stats.results import StatResult

MC_SEED = 20240607
MC_TABLES = 200_000
REL_ERR = 1.0 + 1e-7


# --------------------------------------------------------------------------------------
# Fisher's exact test for r x c tables
# --------------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


def _compositions(total: int, caps: tuple[int, ...]) -> np.ndarray:
    """All vectors n with 0 <= n_i <= caps_i and sum n = total (rows of an int array).

    Built part by part with vectorised ragged expansion: part i ranges over
    [max(0, left - sum(caps after i)), min(caps_i, left)], the last part takes what is left.
    """
    k = len(caps)
    caps_arr = np.asarray(caps, dtype=np.int64)
    suffix = np.concatenate([np.cumsum(caps_arr[::-1])[::-1], [0]])
    if total > suffix[0] or total < 0:
        return np.zeros((0, k), dtype=np.int64)
    parts = np.zeros((1, 0), dtype=np.int64)
    left = np.array([total], dtype=np.int64)
    for i in range(k - 1):
        lo = np.maximum(0, left - suffix[i + 1])
        hi = np.minimum(caps_arr[i], left)
        counts = np.maximum(hi - lo + 1, 0)
        rep = np.repeat(np.arange(left.size), counts)
        starts = np.cumsum(counts) - counts
        offset = np.arange(rep.size) - np.repeat(starts, counts)
        value = lo[rep] + offset
        parts = np.column_stack([parts[rep], value])
        left = left[rep] - value
    return np.column_stack([parts, left])


def _count_compositions(total: int, caps: Sequence[int]) -> int:
    """How many vectors _compositions would return (DP over parts; no enumeration)."""
    ways = np.zeros(total + 1)
    ways[0] = 1.0
    for cap in caps:
        csum = np.concatenate(([0.0], np.cumsum(ways)))
        upper = np.arange(total + 1) + 1
        lower = np.maximum(np.arange(total + 1) - cap, 0)
        ways = csum[upper] - csum[lower]
    return int(round(ways[total]))


def _inverse_digamma(s: np.ndarray) -> np.ndarray:
    """y with digamma(y) = s (Newton's method; Minka's starting point)."""
    y = np.where(s >= -2.22, np.exp(np.minimum(s, 700.0)) + 0.5, -1.0 / (s - digamma(1.0)))
    for _ in range(8):
        y = y - (digamma(y) - s) / polygamma(1, y)
    return y


def _log_col(c: int, cells: Sequence[int]) -> float:
    return float(gammaln(c + 1) - sum(gammaln(v + 1) for v in cells))


def fisher_exact_rxc(table: np.ndarray, *, max_work: int = 5_000_000,
                     allow_monte_carlo: bool = True) -> tuple[float, str]:
    """Two-sided Fisher exact p for an r x c table; returns (p, method description).

    P(table) = prod r_i! prod c_j! / (N! prod n_ij!). The p-value is the total
    probability of tables with P <= P(observed) (1e-7 relative tolerance, as R).
    Columns are processed one at a time; a node is the multiset of remaining row totals,
    and a subtree is added whole or dropped whenever bounds on its best/worst completion
    decide it (a simple network algorithm, Mehta & Patel 1983).
    """
    tab = np.asarray(table, dtype=np.int64)
    tab = tab[tab.sum(1) > 0][:, tab.sum(0) > 0]
    if tab.shape[0] < 2 or tab.shape[1] < 2:
        return 1.0, "Fisher's exact test"
    if tab.shape == (2, 2):
        return float(sps.fisher_exact(tab)[1]), "Fisher's exact test"
    # Orientation (measured to be fastest): rows = the smaller dimension; on a tie the
    # margins with the larger spread become the columns, processed largest first.
    if tab.shape[0] > tab.shape[1]:
        tab = tab.T
    elif tab.shape[0] == tab.shape[1]:
        spread = lambda m: float(np.std(m) / max(np.mean(m), 1e-12))  # noqa: E731
        if spread(tab.sum(1)) > spread(tab.sum(0)):
            tab = tab.T
    rows = [int(v) for v in tab.sum(1)]
    cols = sorted((int(v) for v in tab.sum(0)), reverse=True)
    n_total = sum(rows)
    obs_stat = sum(_log_col(int(tab[:, j].sum()), tab[:, j].tolist()) for j in range(tab.shape[1]))
    threshold = obs_stat + math.log(REL_ERR)
    const = float(sum(gammaln(r + 1) for r in rows) - gammaln(n_total + 1))
    try:
        p = _network(rows, cols, threshold, const, max_work)
        return min(1.0, p), "Fisher's exact test"
    except _TooLarge:
        if not allow_monte_carlo:
            raise UserError("the table is too large for an exact Fisher test") from None
        return _fisher_monte_carlo(tab, obs_stat), (
            f"Fisher's exact test (Monte Carlo, {MC_TABLES} tables, seed {MC_SEED})")


def _level_bounds(states: np.ndarray, cols: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Valid bounds on the best (hi) and worst (lo) completion of each node, vectorised.

    ``states`` (S x r, each row sorted ascending) are remaining row totals; ``cols`` the
    remaining column totals. hi = min(each column at its most even split, Lagrangian dual
    bound); lo = each column at its most concentrated split (Schur-convexity of
    sum log n!). Both ignore the coupling between columns, so they can only be loose,
    never wrong.
    """
    S, r = states.shape
    hi_even = np.zeros(S)
    lo = np.zeros(S)
    for c in cols:
        # most even split under caps: water-filling over ascending caps
        left = np.full(S, c, dtype=np.int64)
        even = np.zeros(S)
        for pos in range(r):
            take = np.minimum(states[:, pos], left // (r - pos))
            even += gammaln(take + 1.0)
            left -= take
        # most concentrated split: largest caps first
        left = np.full(S, c, dtype=np.int64)
        conc = np.zeros(S)
        for pos in range(r - 1, -1, -1):
            take = np.minimum(states[:, pos], left)
            conc += gammaln(take + 1.0)
            left -= take
        base = gammaln(c + 1.0)
        hi_even += base - even
        lo += base - conc
    # Lagrangian dual of min sum lgamma(n_ij + 1) with a_i = log r_i, b_j = log(c_j / M)
    rows = states.astype(float)
    c_arr = np.asarray(cols, dtype=float)
    m = rows.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(rows > 0, np.log(rows), -np.inf)
        b = np.log(c_arr[None, :] / m[:, None])
    s = a[:, :, None] + b[:, None, :]
    finite = np.isfinite(s)
    s_f = np.where(finite, s, -10.0)
    x = np.where(finite, np.maximum(_inverse_digamma(s_f) - 1.0, 0.0), 0.0)
    inner = np.where(finite, gammaln(x + 1.0) - s_f * x, 0.0).sum(axis=(1, 2))
    dual = inner + np.where(rows > 0, a, 0.0).__mul__(rows).sum(1) + (b * c_arr[None, :]).sum(1)
    hi_dual = gammaln(c_arr + 1.0).sum() - dual + 1e-9
    return np.minimum(hi_even, hi_dual), lo


def _network(rows: list[int], cols: list[int], threshold: float, const: float,
             max_work: int) -> float:
    """Sum of P(table) over tables with log column factor sum <= threshold (see caller).

    A level holds every reachable node after k columns: the node code (sorted remaining row
    totals in mixed radix), the past log value and the number of paths with that value.
    Per node and past value, the whole subtree is added (closed form
    ``sum of completions = M! / prod r_i!``) when even its best completion is <= the
    threshold, dropped when even its worst one is above, else expanded.
    """
    n_cols = len(cols)
    r = len(rows)
    base = max(rows) + 1
    radix = base ** np.arange(r - 1, -1, -1, dtype=np.int64)
    work = 0
    total = 0.0
    codes = np.array([int(np.sort(rows) @ radix)], dtype=np.int64)
    past = np.zeros(1)
    count = np.ones(1)
    for k in range(n_cols):
        last = k == n_cols - 1
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        node_of = np.cumsum(np.r_[True, codes[1:] != codes[:-1]]) - 1
        states = (codes[starts][:, None] // radix[None, :]) % base
        work += 10 * starts.size
        if work > max_work:
            raise _TooLarge
        if last:
            value = gammaln(cols[k] + 1.0) - gammaln(states + 1.0).sum(axis=1)
            v = value[node_of]
            ok = past + v <= threshold
            total += float(np.sum(count[ok] * np.exp(past[ok] + v[ok] + const)))
            break
        hi, lo = _level_bounds(states, cols[k:])
        all_sum = gammaln(states.sum(axis=1) + 1.0) - gammaln(states + 1.0).sum(axis=1)
        full = past + hi[node_of] <= threshold
        if full.any():
            total += float(np.sum(count[full] * np.exp(past[full] + all_sum[node_of][full] + const)))
        undecided = ~full & (past + lo[node_of] <= threshold)
        if not undecided.any():
            break
        out_codes, out_past, out_count = [], [], []
        und_nodes = np.unique(node_of[undecided])
        ends = np.r_[starts[1:], codes.size]
        for node in und_nodes:  # a node's past values are contiguous (codes are sorted)
            lo_i, hi_i = starts[node], ends[node]
            mask = undecided[lo_i:hi_i]
            past_u, count_u = past[lo_i:hi_i][mask], count[lo_i:hi_i][mask]
            state = tuple(int(v) for v in states[node])
            if work + _count_compositions(cols[k], state) * (past_u.size + 1) > max_work:
                raise _TooLarge  # checked before building a possibly huge array
            comps = _compositions(cols[k], state)
            values = gammaln(cols[k] + 1.0) - gammaln(comps + 1.0).sum(axis=1)
            if k == n_cols - 2:
                # the last column is then fixed: total = values + last column's value;
                # sort the totals once and sum the qualifying ones with a prefix sum
                rest = np.asarray(state) - comps
                totals = values + gammaln(cols[k + 1] + 1.0) - gammaln(rest + 1.0).sum(axis=1)
                totals.sort()
                log_prefix = np.logaddexp.accumulate(totals)  # exact for tiny p-values too
                idx = np.searchsorted(totals, threshold - past_u, side="right")
                ok = idx > 0
                total += float(np.sum(count_u[ok] * np.exp(past_u[ok] + const
                                                           + log_prefix[idx[ok] - 1])))
                work += values.size + past_u.size
                if work > max_work:
                    raise _TooLarge
                continue
            new_codes = np.sort(np.asarray(state) - comps, axis=1) @ radix
            work += values.size * (past_u.size + 1)
            if work > max_work:
                raise _TooLarge
            out_codes.append(np.broadcast_to(new_codes, (past_u.size, new_codes.size)).ravel())
            out_past.append((past_u[:, None] + values[None, :]).ravel())
            out_count.append(np.repeat(count_u, values.size))
        if k == n_cols - 2 or not out_codes:
            break
        all_codes = np.concatenate(out_codes)
        work += all_codes.size
        rounded = np.round(np.concatenate(out_past), 9)
        all_count = np.concatenate(out_count)
        order = np.lexsort((rounded, all_codes))
        all_codes, rounded, all_count = all_codes[order], rounded[order], all_count[order]
        new = np.r_[True, (all_codes[1:] != all_codes[:-1]) | (rounded[1:] != rounded[:-1])]
        group = np.cumsum(new) - 1
        codes = all_codes[new]
        past = rounded[new]
        count = np.bincount(group, weights=all_count)
    _network.last_work = work  # type: ignore[attr-defined]
    return total


def _fisher_monte_carlo(tab: np.ndarray, obs_stat: float) -> float:
    """Monte Carlo Fisher p: random tables with the observed margins (Patefield's algorithm,
    ``scipy.stats.random_table``), counted when P(sim) <= P(obs) (relative 1e-7)."""
    rng = np.random.default_rng(MC_SEED)
    dist = sps.random_table(tab.sum(1), tab.sum(0))
    col_tot = tab.sum(0)
    const = gammaln(col_tot + 1).sum()
    hits = 0
    done = 0
    while done < MC_TABLES:
        size = min(50_000, MC_TABLES - done)
        sims = dist.rvs(size=size, random_state=rng)
        stats_sim = const - gammaln(sims + 1).sum(axis=(1, 2))
        hits += int(np.sum(stats_sim <= obs_stat + math.log(REL_ERR)))
        done += size
    return (1 + hits) / (MC_TABLES + 1)


# --------------------------------------------------------------------------------------
# continuous and categorical tests
# --------------------------------------------------------------------------------------


def mann_whitney(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Wilcoxon rank-sum p with R ``wilcox.test`` defaults."""
    n1, n2 = len(x), len(y)
    ties = len(np.unique(np.concatenate([x, y]))) < n1 + n2
    if n1 < 50 and n2 < 50 and not ties:
        return float(sps.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue)
    return float(sps.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic",
                                  use_continuity=True).pvalue)


def is_normal(groups: Sequence[np.ndarray], alpha: float = 0.05) -> bool:
    """Shapiro-Wilk in every group (3 <= n <= 5000); any failure or untestable -> False."""
    for g in groups:
        if len(g) < 3 or len(g) > 5000 or np.ptp(g) == 0:
            return False
        if sps.shapiro(g).pvalue <= alpha:
            return False
    return True


def continuous_test(groups: Sequence[np.ndarray], normal: bool, *,
                    equal_var: bool = False) -> tuple[float | None, str]:
    """p and test name: t-test (Welch, or Student with ``equal_var``) / ANOVA when normal,
    else Mann-Whitney U / Kruskal-Wallis."""
    groups = [np.asarray(g, float) for g in groups if len(g) > 0]
    if len(groups) < 2:
        return None, "none"
    if len(groups) == 2:
        if normal:
            p = float(sps.ttest_ind(groups[0], groups[1], equal_var=equal_var).pvalue)
            return p, "Student t-test" if equal_var else "Welch t-test"
        return mann_whitney(groups[0], groups[1]), "Mann-Whitney U"
    if normal:
        return float(sps.f_oneway(*groups).pvalue), "ANOVA"
    if np.ptp(np.concatenate(groups)) == 0:
        return None, "none"
    return float(sps.kruskal(*groups).pvalue), "Kruskal-Wallis"


def categorical_test(table: np.ndarray, *, correct: bool = False) -> tuple[float | None, str]:
    """Pearson chi-square, or Fisher's exact test when any expected count < 5."""
    tab = np.asarray(table, float)
    tab = tab[tab.sum(1) > 0][:, tab.sum(0) > 0]
    if tab.shape[0] < 2 or tab.shape[1] < 2:
        return None, "none"
    expected = np.outer(tab.sum(1), tab.sum(0)) / tab.sum()
    if (expected < 5).any():
        p, method = fisher_exact_rxc(tab.astype(np.int64))
        return p, method
    res = sps.chi2_contingency(tab, correction=correct)
    return float(res.pvalue), "Pearson chi-square"


def _smd_continuous(groups: Sequence[np.ndarray]) -> float | None:
    best = None
    for a, b in combinations([g for g in groups if len(g) > 1], 2):
        pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2.0)
        if pooled > 0:
            val = abs(np.mean(a) - np.mean(b)) / pooled
            best = val if best is None else max(best, val)
    return None if best is None else float(best)


def _smd_categorical(props: Sequence[np.ndarray]) -> float | None:
    best = None
    for p1, p2 in combinations(props, 2):
        a, b = p1[1:], p2[1:]
        if a.size == 0:
            continue
        S = (np.diag(a) - np.outer(a, a) + np.diag(b) - np.outer(b, b)) / 2.0
        diff = a - b
        try:
            val = math.sqrt(max(float(diff @ np.linalg.pinv(S) @ diff), 0.0))
        except np.linalg.LinAlgError:
            continue
        best = val if best is None else max(best, val)
    return None if best is None else float(best)


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


#: the keys of one row in ``pathomics analyze table1 --json``
TABLE1_KEYS = ("variable", "level", "summary", "p", "test")


@dataclass
class BaselineRow:
    """One Table 1 row: a continuous variable (``level`` None), one category of a
    categorical variable, or its ``"missing"`` count.

    ``cells``: the text shown per group and for ``"Overall"`` (mean (SD), median [Q1, Q3],
    n (%), or a missing count). ``p``, ``test`` and ``smd`` are on the first row of each
    variable; ``n_missing`` on its last row; ``statistic_kind`` ("mean (SD)" or
    "median [Q1, Q3]") on continuous rows.
    """

    variable: str
    level: str | None
    cells: dict[str, str]
    p: float | None = None
    test: str | None = None
    smd: float | None = None
    n_missing: int | None = None
    statistic_kind: str | None = None

    def to_dict(self) -> dict:
        """The ``table1 --json`` row: TABLE1_KEYS, the cells under ``"summary"``."""
        return {"variable": self.variable, "level": self.level, "summary": dict(self.cells),
                "p": self.p, "test": self.test}


@dataclass
class BaselineTable(StatResult):
    """Table 1: the group labels (columns, then "Overall") and the rows."""

    groups: list[str]
    rows: list[BaselineRow]

    def to_dict(self) -> dict:
        """``{"groups", "rows": [{TABLE1_KEYS}]}`` (``pathomics analyze table1 --json``)."""
        return {"groups": list(self.groups), "rows": [row.to_dict() for row in self.rows]}


def baseline_table(frame, by: str, columns: Sequence[str], *,
                   categorical: Sequence[str] = (), digits: int = 1,
                   group_order: Sequence[str] | None = None,
                   chisq_correct: bool = False, normal_alpha: float = 0.05,
                   equal_var: bool = False) -> BaselineTable:
    """Table 1 of ``columns`` by the groups of ``by`` (see :class:`BaselineRow`).

    ``equal_var=True`` uses Student's instead of Welch's t-test; ``chisq_correct=True``
    applies Yates' correction to 2 x 2 chi-square tests.
    """
    if by not in frame.columns:
        raise UserError(f"group column {by!r} is not in the data")
    group_values = frame[by]
    if group_values.isna().any():
        frame = frame[group_values.notna()]
        group_values = frame[by]
    # group of each row as an index into groups (-1: a value not among group_order)
    group, groups, _ = factor(group_values, list(group_order) if group_order else None)
    if len(groups) < 2:
        raise UserError(f"Table 1 needs at least two groups in {by!r}; found {groups}")
    rows: list[BaselineRow] = []
    for var in columns:
        if var not in frame.columns:
            raise UserError(f"column {var!r} is not in the data")
        series = frame[var]
        missing_per_group = np.bincount(group[series.isna().to_numpy() & (group >= 0)], minlength=len(groups))
        missing = {g: int(missing_per_group[j]) for j, g in enumerate(groups)}
        is_cat = var in categorical or series.dtype == object or str(series.dtype) in (
            "category", "bool", "string")
        if is_cat:
            rows.extend(_categorical_rows(var, series, group, groups, chisq_correct))
        else:
            try:
                numeric = series.astype(float)
            except (TypeError, ValueError):
                raise UserError(f"column {var!r} is not numeric; declare it categorical") from None
            rows.append(_continuous_row(var, numeric, group, groups, digits, normal_alpha,
                                        equal_var))
        if sum(missing.values()):
            cells = {g: str(missing[g]) for g in groups}
            cells["Overall"] = str(sum(missing.values()))
            rows.append(BaselineRow(var, "missing", cells, n_missing=sum(missing.values())))
        elif rows[-1].n_missing is None:
            rows[-1].n_missing = 0
    return BaselineTable(groups, rows)


def _continuous_row(var, numeric, group, groups, digits, alpha, equal_var=False) -> BaselineRow:
    """``group``: each row's index into ``groups`` (-1: in Overall only)."""
    values = numeric.to_numpy()
    recorded = ~np.isnan(values)
    per = [values[(group == j) & recorded] for j in range(len(groups))]
    allv = values[~np.isnan(values)]
    normal = is_normal([g for g in per if len(g)], alpha)
    summary = {}
    for g, arr in zip(groups + ["Overall"], per + [allv]):
        if len(arr) == 0:
            summary[g] = "-"
        elif normal:
            sd = np.std(arr, ddof=1) if len(arr) > 1 else float("nan")
            summary[g] = f"{_fmt(np.mean(arr), digits)} ({_fmt(sd, digits)})"
        else:
            q1, med, q3 = np.percentile(arr, [25, 50, 75])
            summary[g] = f"{_fmt(med, digits)} [{_fmt(q1, digits)}, {_fmt(q3, digits)}]"
    p, test = continuous_test(per, normal, equal_var=equal_var)
    return BaselineRow(var, None, summary, p=p, test=None if test == "none" else test,
                       smd=_smd_continuous(per),
                       statistic_kind="mean (SD)" if normal else "median [Q1, Q3]")


def _categorical_rows(var, series, group, groups, correct) -> list[BaselineRow]:
    """``group``: each row's index into ``groups``; the levels x groups counts by one bincount."""
    level, levels, _ = factor(series)
    if not levels:
        return [BaselineRow(var, None, {g: "-" for g in groups + ["Overall"]})]
    counted = (level >= 0) & (group >= 0)
    table = np.bincount(level[counted] * len(groups) + group[counted],
                        minlength=len(levels) * len(groups)).reshape(len(levels), len(groups)).astype(np.int64)
    p, test = categorical_test(table, correct=correct)
    col_tot = table.sum(0)
    props = [table[:, j] / col_tot[j] for j in range(len(groups)) if col_tot[j] > 0]
    smd = _smd_categorical(props)
    rows = []
    overall = table.sum(1)
    for i, lvl in enumerate(levels):
        summary = {}
        for j, g in enumerate(groups):
            pct = 100.0 * table[i, j] / col_tot[j] if col_tot[j] else float("nan")
            summary[g] = f"{table[i, j]} ({pct:.1f}%)" if col_tot[j] else "0 (-)"
        summary["Overall"] = f"{overall[i]} ({100.0 * overall[i] / overall.sum():.1f}%)"
        first = i == 0
        rows.append(BaselineRow(var, lvl, summary, p=p if first else None,
                                test=(None if test == "none" else test) if first else None,
                                smd=smd if first else None))
    return rows
