"""``pathomics bench views``: a filter change recomputing each analysis view on 10,000 patients.

The cohort is the SYNTHETIC demo cohort's snapshot resampled with replacement to ``--patients``
rows (new study ids), with SYNTHETIC pathomics OS/RFS scores and risk groups
(:func:`synthetic_scores`). For each view's figure builder (``pathomics_desktop.figures.*``,
the very function the GUI view runs in its worker thread), a scripted sequence of cohort
filters (data sets, centers, an age range, a sex tick, a risk group) is applied, and each
recomputation is timed from the filter to the finished description: the DuckDB filter of the
snapshot (:meth:`AnalysisSource.frame`), then the builder. The baseline, in the same run, is
the naive path: read the whole Parquet file with pandas and filter it in pandas, then the same
builder. Printed per view: median and 95th percentile in ms, the ratio baseline/ours, and
whether the issue's goal (under 100 ms) is met.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

#: view id -> ("module:builder", params) for the bench; every analysis view is listed
VIEW_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "km": ("pathomics_desktop.figures.km:build_km", {"endpoint": "os"}),
    "cox": ("pathomics_desktop.figures.cox:build_cox",
            {"endpoint": "os", "mode": "multivariate", "variables": ["pathomics_os_group", "n_stage", "ca19_9_group"]}),
    "forest": ("pathomics_desktop.figures.forest:build_forest", {"endpoint": "os"}),
    "roc": ("pathomics_desktop.figures.roc:build_td_roc", {"endpoint": "os"}),
    # by adjuvant chemotherapy: the one-data-set filters of the sequence leave one data set
    "table1": ("pathomics_desktop.figures.table1:build_table1", {"by": "adjuvant_chemotherapy"}),
    # the cutpoint search on the filter's patients (bootstrap off, as the view opens)
    "cutpoint": ("pathomics_desktop.figures.cutpoint:build_cutpoint", {"endpoint": "os", "data_set": "all"}),
}

LINE = ("{view:<10} median {med:8.1f} ms | p95 {p95:8.1f} ms | baseline (pandas) median {base:8.1f} ms | "
        "ratio {ratio:5.2f}x | goal < 100 ms: {goal}{refused}")


def synthetic_scores(cohort, seed: int = 20261201):
    """SYNTHETIC pathomics scores: ``0.6 * stage group (1-4) + 0.3 * log(1 + CA19-9) + N(0, 0.8)``,
    risk group "high" where the score is above the training median. Returns (frame of
    study_id/score/risk_group, the cut)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    stage = cohort["tnm_group"].map({"I": 1, "II": 2, "III": 3, "IV": 4}).fillna(2).to_numpy(float)
    ca = np.log1p(pd.to_numeric(cohort["ca19_9"], errors="coerce").fillna(37).to_numpy(float))
    score = 0.6 * stage + 0.3 * ca + rng.normal(scale=0.8, size=len(cohort))
    training = (cohort["split"] == "training").to_numpy()
    cut = float(np.median(score[training])) if training.any() else float(np.median(score))
    group = np.where(score > cut, "high", "low")
    return pd.DataFrame({"study_id": cohort["study_id"].astype(str).to_numpy(), "score": score,
                         "risk_group": group}), cut


def large_snapshot(folder: Path, patients: int, seed: int = 7) -> Path:
    """The demo cohort's snapshot resampled to ``patients`` rows, with synthetic scores."""
    import numpy as np

    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.demo.cohort import create_demo_project

    root = folder / "demo"
    create_demo_project(root)
    base = cohort_frame(root)
    rng = np.random.default_rng(seed)
    frame = base.iloc[rng.integers(0, len(base), patients)].reset_index(drop=True)
    frame["study_id"] = [f"SYN-R-{i:06d}" for i in range(patients)]
    for endpoint in ("os", "rfs"):
        scores, _ = synthetic_scores(frame, seed + (endpoint == "rfs"))
        frame[f"pathomics_{endpoint}_score"] = scores["score"].to_numpy()
        frame[f"pathomics_{endpoint}_group"] = scores["risk_group"].to_numpy()
    path = folder / "cohort.parquet"
    frame.to_parquet(path, index=False)
    return path


def filter_sequence():
    """The scripted filter changes (each one a recomputation)."""
    from pathomics_desktop.analytics.cohort_filter import CohortFilter

    base = CohortFilter()
    return [
        base,
        CohortFilter(datasets=("training",)),
        CohortFilter(datasets=("training", "internal")),
        CohortFilter(centers=("A", "B")),
        base.with_range("age", 45, 75),
        base.with_categories("sex", ["female"]),
        base.with_categories("pathomics_os_group", ["high"]),
        CohortFilter(datasets=("external",)).with_range("ca19_9", None, 1000),
        CohortFilter(included_only=False),
        base,
    ]


def _pandas_filter(frame, flt):
    """The baseline: the same filter in pandas on the whole table (then the derived columns)."""
    import pandas as pd

    from pathomics_desktop.signature.report import derive_clinical_columns

    keep = pd.Series(True, index=frame.index)
    if flt.included_only:
        keep &= frame["included"].astype(bool)
    if flt.datasets:
        keep &= frame["split"].isin(flt.datasets)
    if flt.centers:
        keep &= frame["center"].isin(flt.centers)
    for col, low, high in flt.ranges:
        keep &= frame[col].notna()
        if low is not None:
            keep &= frame[col] >= low
        if high is not None:
            keep &= frame[col] <= high
    for col, levels in flt.categories:
        keep &= frame[col].astype(str).isin(levels) & frame[col].notna()
    return derive_clinical_columns(frame[keep].reset_index(drop=True))


def builder(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def time_view(source, parquet: Path, target: str, params: dict, repeat: int) -> dict[str, float]:
    import pandas as pd

    from pathomics_desktop.errors import UserError

    build = builder(target)
    filters = filter_sequence()
    build(source, source.frame(filters[0]), dict(params))  # warm-up (imports, numba)
    ours, base = [], []
    refused = 0
    for _ in range(repeat):
        for flt in filters:
            start = time.perf_counter()
            try:
                build(source, source.frame(flt), dict(params))
            except UserError:  # the view shows the message (e.g. one risk group left): not timed
                refused += 1
                continue
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            build(source, _pandas_filter(pd.read_parquet(parquet), flt), dict(params))
            base.append(time.perf_counter() - start)
    ours.sort()
    med = statistics.median(ours)
    return {"median_ms": med * 1000, "p95_ms": ours[int(0.95 * (len(ours) - 1))] * 1000,
            "baseline_median_ms": statistics.median(base) * 1000,
            "ratio": statistics.median(base) / med if med > 0 else float("inf"), "refused": refused}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pathomics bench views", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2, help="passes over the filter sequence")
    parser.add_argument("--views", nargs="*", default=None, help="view ids (default: all)")
    args = parser.parse_args(argv)

    from pathomics_desktop.analytics.cohort_filter import AnalysisSource

    views = args.views or list(VIEW_BUILDERS)
    unknown = [v for v in views if v not in VIEW_BUILDERS]
    if unknown:
        parser.error(f"unknown view(s) {', '.join(unknown)}; known: {', '.join(VIEW_BUILDERS)}")
    with tempfile.TemporaryDirectory() as tmp:
        parquet = large_snapshot(Path(tmp), args.patients)
        source = AnalysisSource(parquet)
        print(f"bench views: {args.patients} SYNTHETIC patients, {len(filter_sequence())} filter changes "
              f"x {args.repeat}; filter + figure description per change")
        results = {}
        for view in views:
            target, params = VIEW_BUILDERS[view]
            r = time_view(source, parquet, target, params, args.repeat)
            results[view] = r
            print(LINE.format(view=view, med=r["median_ms"], p95=r["p95_ms"], base=r["baseline_median_ms"],
                              ratio=r["ratio"], goal="met" if r["median_ms"] < 100 else "NOT met",
                              refused=f" ({r['refused']} filter(s) answered with a message)" if r["refused"] else ""),
                  flush=True)
    return 0
