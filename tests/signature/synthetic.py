"""Fake patch predictions for a demo project (no slides): prob depends on the latent z."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_fake_predictions(project_root: Path, run: str, *, seed: int = 7, patches: int = 120,
                           signal: float = 1.0, second_slide_every: int = 5) -> dict[str, str]:
    """One Parquet per made-up slide under ``predictions/<run>/``; every fifth patient gets a
    second slide. Patch logit ~ N(signal * z - 0.3, 1.3^2): aggressive tumours (high z) have
    more patches with high P(poor prognosis). Returns the slide -> study id map."""
    import pandas as pd

    latent = pd.read_parquet(project_root / "demo_data" / "synthetic_latent.parquet")
    latent = latent[latent["exclusion"].isna()].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    out_dir = project_root / "predictions" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    mapping: dict[str, str] = {}
    slide_id = 1000
    for i, row in enumerate(latent.itertuples(index=False)):
        for _ in range(2 if i % second_slide_every == 0 else 1):
            slide_id += 1
            n = int(rng.integers(patches // 2, patches * 3 // 2))
            logit = rng.normal(signal * row.z - 0.3, 1.3, size=n)
            prob = (1.0 / (1.0 + np.exp(-logit))).astype("float32")
            frame = pd.DataFrame({"slide_id": slide_id, "x": np.arange(n) * 512, "y": 0, "prob": prob,
                                  "pred": (prob > 0.5).astype("int8")})
            frame.to_parquet(out_dir / f"{slide_id}.parquet", index=False)
            mapping[str(slide_id)] = row.study_id
    return mapping


def shift_predictions(project_root: Path, run: str, slides, delta: float) -> None:
    """Move the patch probabilities of ``slides`` by ``delta`` on the logit scale (a center
    whose predictions drift), labels recomputed at 0.5."""
    import pandas as pd

    for slide in slides:
        path = project_root / "predictions" / run / f"{slide}.parquet"
        frame = pd.read_parquet(path)
        p = frame["prob"].to_numpy(dtype=float).clip(1e-6, 1 - 1e-6)
        prob = (1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + delta)))).astype("float32")
        frame.assign(prob=prob, pred=(prob > 0.5).astype("int8")).to_parquet(path, index=False)
