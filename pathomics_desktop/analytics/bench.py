"""``pathomics bench analytics``: the interactive path (filter, then Kaplan-Meier per group and
the log-rank test) on a 10,000-patient cohort snapshot in DuckDB, against pandas filtering
plus lifelines on the same data, in one run. Goal: well under 100 ms per recomputation."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def synthetic_snapshot(path: Path, n: int, seed: int = 3) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "study_id": [f"SYN-{i:06d}" for i in range(n)],
        "center": rng.choice(["A", "B", "C"], n),
        "split": rng.choice(["training", "internal", "external"], n),
        "included": rng.uniform(size=n) < 0.8,
        "age": rng.integers(35, 90, n),
        "ca19_9": np.round(np.exp(rng.normal(4.5, 1.6, n)), 1),
        "risk_group": rng.choice(["low", "high"], n),
        "os_months": np.round(rng.exponential(40, n), 3),
        "os_event": (rng.uniform(size=n) < 0.6).astype(int),
    })
    frame.to_parquet(path, index=False)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pathomics bench analytics")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)

    import pandas as pd
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    from pathomics_desktop.analytics.snapshot import CohortQuery, Filter

    with tempfile.TemporaryDirectory() as tmp:
        parquet = synthetic_snapshot(Path(tmp) / "cohort.parquet", args.patients)
        query = CohortQuery(parquet)
        frame = pd.read_parquet(parquet)
        filters = [Filter("included", "=", True), Filter("age", ">=", 50), Filter("center", "in", ["A", "B"])]

        def ours():
            return query.survival("os_months", "os_event", "risk_group", filters)

        def peer():
            d = frame[frame["included"] & (frame["age"] >= 50) & frame["center"].isin(["A", "B"])]
            fits = {g: KaplanMeierFitter().fit(s["os_months"], s["os_event"]) for g, s in d.groupby("risk_group")}
            test = multivariate_logrank_test(d["os_months"], d["risk_group"], d["os_event"])
            return fits, test

        def best(fn):
            fn()
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            return min(times), sorted(times)[len(times) // 2], out

        t_ours, med_ours, res = best(ours)
        t_peer, med_peer, (_fits, test) = best(peer)
        query.close()
    agree = abs(res.logrank.chisq - test.test_statistic) < 1e-6 * max(1.0, test.test_statistic)
    print(f"bench analytics: filter + KM by group + log-rank, {args.patients} patients "
          f"({res.n} after filters), best/median of {args.repeat}")
    print(f"  DuckDB snapshot + pathomics stats   {t_ours * 1000:8.2f} ms / {med_ours * 1000:8.2f} ms")
    print(f"  pandas + lifelines (peer)           {t_peer * 1000:8.2f} ms / {med_peer * 1000:8.2f} ms")
    print(f"  ratio (peer / ours, median)         {med_peer / med_ours:8.2f}x   log-rank agrees: {agree}")
    print(f"  goal: well under 100 ms per recomputation -> {'met' if med_ours < 0.1 else 'NOT met'}")
    return 0
