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
  ``fisher.test``; r x c: exact p by a network-style enumeration of all tables with the
  observed margins, summing the probabilities <= the observed one within a relative
  1e-7, as R's FEXACT; when the enumeration exceeds a fixed work limit (about 5 million steps,
  a few seconds) a Monte Carlo p with 100,000
  tables and seed 20240607, ``(1 + #{P(sim) <= P(obs)}) / (B + 1)``).
* Missing values are counted per group (a row "missing" when any) and excluded from tests.
* Standardised mean difference (SMD): continuous ``|m1 - m2| / sqrt((s1^2 + s2^2)/2)``;
  categorical ``sqrt((p1 - p2)' S^-1 (p1 - p2))`` with ``S = (diag-covariance of both
  groups)/2`` over the non-reference levels (Yang & Dalton 2012); for > 2 groups the
  largest pairwise SMD.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Sequence

import numpy as np
from scipy import stats as sps
from scipy.special import gammaln

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.cox import level_label, sorted_levels

MC_SEED = 20240607
MC_TABLES = 100_000
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


def _even_fill(total: int, caps: Sequence[int]) -> list[int]:
    """Most even allocation of ``total`` under caps (maximises -sum log n_i!): water-filling."""
    alloc = [0] * len(caps)
    order = sorted(range(len(caps)), key=lambda i: caps[i])
    left = total
    for pos, i in enumerate(order):
        take = min(caps[i], left // (len(caps) - pos))
        alloc[i] = take
        left -= take
    return alloc


def _concentrated_fill(total: int, caps: Sequence[int]) -> list[int]:
    """Most concentrated allocation (minimises -sum log n_i!): largest capacities first."""
    alloc = [0] * len(caps)
    left = total
    for i in sorted(range(len(caps)), key=lambda i: -caps[i]):
        take = min(caps[i], left)
        alloc[i] = take
        left -= take
    return alloc


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


def _network(rows: list[int], cols: list[int], threshold: float, const: float,
             max_work: int) -> float:
    """Sum of P(table) over tables with log column factor sum <= threshold (see caller).

    A level holds every reachable node after k columns: the node code (sorted remaining row
    totals in mixed radix), the past log value and the number of paths with that value.
    """
    n_cols = len(cols)
    r = len(rows)
    base = max(rows) + 1
    radix = base ** np.arange(r - 1, -1, -1, dtype=np.int64)

    def decode(code: int) -> tuple[int, ...]:
        return tuple(int(v) for v in (code // radix) % base)

    comp_cache: dict = {}
    bound_cache: dict = {}

    work = [0]  # deterministic effort counter: compositions generated + (past x move) pairs

    def spend(amount: int) -> None:
        work[0] += amount
        if work[0] > max_work:
            raise _TooLarge

    def expansions(k: int, state: tuple[int, ...]):
        key = (k, state)
        if key not in comp_cache:
            comps = _compositions(cols[k], state)
            spend(comps.shape[0])
            values = gammaln(cols[k] + 1) - gammaln(comps + 1).sum(axis=1)
            new_codes = np.sort(np.asarray(state) - comps, axis=1) @ radix
            comp_cache[key] = (values, new_codes)
        return comp_cache[key]

    def bounds(k: int, code: int) -> tuple[float, float]:
        """Exact longest and shortest remaining path (max/min future log value)."""
        key = (k, code)
        if key in bound_cache:
            return bound_cache[key]
        state = decode(code)
        if k == n_cols - 1:
            value = _log_col(cols[k], state)
            result = (value, value)
        else:
            values, new_codes = expansions(k, state)
            nxt = np.array([bounds(k + 1, int(c)) for c in new_codes])
            result = (float(np.max(values + nxt[:, 0])), float(np.min(values + nxt[:, 1])))
        bound_cache[key] = result
        return result

    total = 0.0
    codes = np.array([int(np.sort(rows) @ radix)], dtype=np.int64)
    past = np.zeros(1)
    count = np.ones(1)
    for k in range(n_cols):
        last = k == n_cols - 1
        out_codes, out_past, out_count = [], [], []
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        ends = np.r_[starts[1:], codes.size]
        for s0, s1 in zip(starts, ends):
            state = decode(int(codes[s0]))
            p_state, c_state = past[s0:s1], count[s0:s1]
            spend(1)
            # cheap bounds first (each column at its own best/worst), exact ones if needed
            hi = sum(_log_col(c, _even_fill(c, state)) for c in cols[k:])
            lo = sum(_log_col(c, _concentrated_fill(c, state)) for c in cols[k:])
            if not last and np.any((p_state + hi > threshold) & (p_state + lo <= threshold)):
                hi, lo = bounds(k, int(codes[s0]))
            full = p_state + hi <= threshold
            if full.any():
                all_sum = float(gammaln(sum(state) + 1) - sum(gammaln(v + 1) for v in state))
                total += float(np.sum(c_state[full] * np.exp(p_state[full] + all_sum + const)))
            undecided = ~full & (p_state + lo <= threshold)
            if not undecided.any():
                continue
            past_u, count_u = p_state[undecided], c_state[undecided]
            if last:
                value = _log_col(cols[k], state)
                ok = past_u + value <= threshold
                total += float(np.sum(count_u[ok] * np.exp(past_u[ok] + value + const)))
                continue
            values, new_codes = expansions(k, state)
            spend(values.size * past_u.size)
            out_codes.append(np.broadcast_to(new_codes, (past_u.size, new_codes.size)).ravel())
            out_past.append((past_u[:, None] + values[None, :]).ravel())
            out_count.append(np.repeat(count_u, values.size))
        if last or not out_codes:
            break
        all_codes = np.concatenate(out_codes)
        all_past = np.concatenate(out_past)
        all_count = np.concatenate(out_count)
        rounded = np.round(all_past, 9)
        order = np.lexsort((rounded, all_codes))
        all_codes, rounded, all_count = all_codes[order], rounded[order], all_count[order]
        new = np.r_[True, (all_codes[1:] != all_codes[:-1]) | (rounded[1:] != rounded[:-1])]
        group = np.cumsum(new) - 1
        codes = all_codes[new]
        past = rounded[new]
        count = np.bincount(group, weights=all_count)
    _network.last_work = work[0]  # type: ignore[attr-defined]
    return total


def _fisher_monte_carlo(tab: np.ndarray, obs_stat: float) -> float:
    rng = np.random.default_rng(MC_SEED)
    dist = sps.random_table(tab.sum(1), tab.sum(0))
    sims = dist.rvs(size=MC_TABLES, random_state=rng)
    col_tot = tab.sum(0)
    stats_sim = (gammaln(col_tot + 1).sum() - gammaln(sims + 1).sum(axis=(1, 2)))
    hits = int(np.sum(stats_sim <= obs_stat + math.log(REL_ERR)))
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


def continuous_test(groups: Sequence[np.ndarray], normal: bool) -> tuple[float | None, str]:
    groups = [np.asarray(g, float) for g in groups if len(g) > 0]
    if len(groups) < 2:
        return None, "none"
    if len(groups) == 2:
        if normal:
            return float(sps.ttest_ind(groups[0], groups[1], equal_var=False).pvalue), "Welch t-test"
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


def baseline_table(frame, by: str, columns: Sequence[str], *,
                   categorical: Sequence[str] = (), digits: int = 1,
                   group_order: Sequence[str] | None = None,
                   chisq_correct: bool = False, normal_alpha: float = 0.05) -> dict:
    """Table 1: ``{"groups": [...], "rows": [...]}``.

    Each row: variable, level (None for a continuous variable; a category; "missing"),
    summary {group: text, "Overall": text}, p, test (on the first row of each variable),
    plus smd and n_missing for the GUI/exports.
    """
    if by not in frame.columns:
        raise UserError(f"group column {by!r} is not in the data")
    group_values = frame[by]
    if group_values.isna().any():
        frame = frame[group_values.notna()]
        group_values = frame[by]
    labels = np.array([level_label(v) for v in group_values.tolist()], dtype=object)
    groups = list(group_order) if group_order else sorted_levels(group_values.tolist())
    if len(groups) < 2:
        raise UserError(f"Table 1 needs at least two groups in {by!r}; found {groups}")
    rows: list[dict] = []
    for var in columns:
        if var not in frame.columns:
            raise UserError(f"column {var!r} is not in the data")
        series = frame[var]
        missing = {g: int(series[labels == g].isna().sum()) for g in groups}
        is_cat = var in categorical or series.dtype == object or str(series.dtype) in (
            "category", "bool", "string")
        if is_cat:
            rows.extend(_categorical_rows(var, series, labels, groups, chisq_correct))
        else:
            try:
                numeric = series.astype(float)
            except (TypeError, ValueError):
                raise UserError(f"column {var!r} is not numeric; declare it categorical") from None
            rows.append(_continuous_row(var, numeric, labels, groups, digits, normal_alpha))
        if sum(missing.values()):
            summary = {g: str(missing[g]) for g in groups}
            summary["Overall"] = str(sum(missing.values()))
            rows.append({"variable": var, "level": "missing", "summary": summary, "p": None,
                         "test": None, "smd": None, "n_missing": sum(missing.values())})
        else:
            rows[-1].setdefault("n_missing", 0)
    return {"groups": groups, "rows": rows}


def _continuous_row(var, numeric, labels, groups, digits, alpha) -> dict:
    values = numeric.to_numpy()
    per = [values[(labels == g) & ~np.isnan(values)] for g in groups]
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
    p, test = continuous_test(per, normal)
    return {"variable": var, "level": None, "summary": summary, "p": p,
            "test": None if test == "none" else test, "smd": _smd_continuous(per),
            "statistic_kind": "mean (SD)" if normal else "median [Q1, Q3]"}


def _categorical_rows(var, series, labels, groups, correct) -> list[dict]:
    present = series.notna().to_numpy()
    values = np.array([level_label(v) if ok else None for v, ok in zip(series.tolist(), present)],
                      dtype=object)
    levels = sorted_levels(series.dropna().tolist())
    if not levels:
        summary = {g: "-" for g in groups + ["Overall"]}
        return [{"variable": var, "level": None, "summary": summary, "p": None, "test": None,
                 "smd": None}]
    table = np.array([[np.sum((values == lvl) & (labels == g)) for g in groups] for lvl in levels],
                     dtype=np.int64)
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
        rows.append({"variable": var, "level": lvl, "summary": summary,
                     "p": p if first else None, "test": (None if test == "none" else test) if first else None,
                     "smd": smd if first else None})
    return rows
