"""A small SYNTHETIC cohort snapshot with the study's clinical variables, for the Cox and
forest figure tests (read through DuckDB by ``AnalysisSource``, as the views read theirs)."""

from __future__ import annotations

import numpy as np
import pandas as pd

STAGES = ("I", "II", "III", "IV")


def clinical_snapshot(n: int = 420, seed: int = 23) -> pd.DataFrame:
    """SYNTHETIC: exponential OS times whose hazard rises with stage, N stage, CA19-9 and the
    risk group (age, sex, diabetes have no effect); uniform censoring; a rare surgery type
    (TP, ~2%) so that a forest subgroup has fewer than 10 events."""
    rng = np.random.default_rng(seed)
    stage = rng.choice(len(STAGES), size=n, p=[0.4, 0.35, 0.17, 0.08])
    n_stage = rng.choice(3, size=n, p=[0.55, 0.33, 0.12])
    high = rng.random(n) < 0.5
    ca19_9 = np.round(rng.lognormal(4.8, 1.3, size=n), 1)
    ca19_9[5:9] = np.nan
    hazard = 0.02 * np.exp(0.3 * stage + 0.35 * n_stage + 0.5 * high + 0.3 * (np.nan_to_num(ca19_9) >= 200))
    event_time = rng.exponential(1.0 / hazard)
    censor_time = rng.uniform(12.0, 96.0, size=n)
    os_months = np.maximum(np.round(np.minimum(event_time, censor_time), 1), 0.1)
    rfs_event_time = event_time * rng.uniform(0.3, 0.9, size=n)
    surgery = rng.choice(["PD", "DP", "TP"], size=n, p=[0.6, 0.38, 0.02])
    return pd.DataFrame({
        "study_id": [f"SYN-F-{i:04d}" for i in range(n)],
        "synthetic": True,
        "center": rng.choice(["A", "B", "C"], size=n, p=[0.5, 0.3, 0.2]),
        "split": rng.choice(["training", "internal", "external"], size=n),
        "included": rng.random(n) < 0.96,
        "os_months": os_months,
        "os_event": (event_time <= censor_time).astype(int),
        "rfs_months": np.maximum(np.round(np.minimum(rfs_event_time, censor_time), 1), 0.1),
        "rfs_event": (rfs_event_time <= censor_time).astype(int),
        "tnm_group": np.array(STAGES)[stage],
        "t_stage": rng.choice(["T1", "T2", "T3", "T4"], size=n, p=[0.25, 0.5, 0.2, 0.05]),
        "n_stage": np.array(["N0", "N1", "N2"])[n_stage],
        "age": rng.integers(38, 86, size=n),
        "sex": rng.choice(["female", "male"], size=n),
        "surgery_type": surgery,
        "differentiation": rng.choice(["I-II", "III"], size=n),
        "ca19_9": ca19_9,
        "adjuvant_chemotherapy": rng.choice(["no", "yes"], size=n, p=[0.3, 0.7]),
        "diabetes": rng.choice(["no", "yes"], size=n, p=[0.75, 0.25]),
        "hypertension": rng.choice(["no", "yes"], size=n, p=[0.6, 0.4]),
        "microvascular_invasion": rng.choice(["no", "yes"], size=n, p=[0.7, 0.3]),
        "perineural_invasion": rng.choice(["no", "yes"], size=n, p=[0.2, 0.8]),
        "pathomics_os_score": rng.normal(size=n) + high,
        "pathomics_os_group": np.where(high, "high", "low"),
    })
