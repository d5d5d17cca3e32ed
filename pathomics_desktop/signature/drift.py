"""Data drift between a signature's training patients and the patients it is applied to.

Per selected feature (and for the score itself), the frozen signature keeps the training
distribution (:func:`training_distribution`): the training values and the interior decile
edges. A new set of patients is compared with it by

* the **population-stability index** over the training deciles
  ``PSI = sum_b (q_b - p_b) ln(q_b / p_b)``, ``p_b`` the training and ``q_b`` the new share of
  patients in bin b (bins ``(-inf, e_1], (e_1, e_2], ..., (e_k, inf)`` on the distinct training
  deciles; a share is floored at ``1e-4`` so that an empty bin stays finite). Thresholds (the
  usual credit-scoring ones): **PSI > 0.25 major drift, PSI > 0.1 moderate**, else none;
* the two-sample **Kolmogorov-Smirnov** test (``scipy.stats.ks_2samp``, two-sided): the
  statistic ``D = sup |F_train - F_new|`` and its p; **p < 0.01** flags a shift.

A feature drifts when its PSI is moderate or major, or its KS p < 0.01; each drifting
feature gives one warning line.

Stain vectors (Macenko, stored per slide by the tiling job as ``{"he": 3 x 2 [H, E columns],
"max_c": [...]}``): the training slides' mean H and E optical-density directions are kept
with each training slide's angle to them (degrees). The applied slides' angles to the same
training directions are compared with the training angles: **a stain drifts when the median
angle of the applied slides exceeds the 95th percentile of the training slides' angles**
(the typical new slide is further from the training stain than 95% of the training slides);
the KS test of the two angle samples is reported beside it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
KS_ALPHA = 0.01
PSI_BINS = 10
PSI_FLOOR = 1e-4
STAIN_PERCENTILE = 95.0


# ----------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------


def decile_edges(values: np.ndarray, bins: int = PSI_BINS) -> list[float]:
    """The distinct interior quantile edges ``q_{1/bins}, ..., q_{(bins-1)/bins}`` of the training values."""
    x = np.asarray(values, dtype=float)
    qs = np.quantile(x, np.arange(1, bins) / bins)
    return [float(v) for v in np.unique(qs)]


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of ``values`` in each bin ``(-inf, e_1], (e_1, e_2], ..., (e_k, inf)``."""
    x = np.asarray(values, dtype=float)
    idx = np.searchsorted(np.asarray(edges, dtype=float), x, side="left")
    return np.bincount(idx, minlength=len(edges) + 1) / max(x.size, 1)


def psi(expected: np.ndarray, actual: np.ndarray, *, floor: float = PSI_FLOOR) -> float:
    """Population-stability index ``sum (q - p) ln(q / p)`` of two share vectors (each floored)."""
    p = np.maximum(np.asarray(expected, dtype=float), floor)
    q = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_level(value: float) -> str:
    """``major`` (> 0.25), ``moderate`` (> 0.1) or ``none``."""
    return "major" if value > PSI_MAJOR else "moderate" if value > PSI_MODERATE else "none"


def training_distribution(names: Sequence[str], x: np.ndarray) -> dict[str, Any]:
    """The drift reference stored in the frozen signature: per column its training values
    and decile edges (``x``: training patients x columns)."""
    x = np.asarray(x, dtype=float)
    return {
        "method": f"PSI over the training deciles (> {PSI_MODERATE} moderate, > {PSI_MAJOR} major; shares "
                  f"floored at {PSI_FLOOR}) and two-sample KS test (p < {KS_ALPHA})",
        "n": int(x.shape[0]),
        "columns": {name: {"edges": decile_edges(x[:, j]), "values": [float(v) for v in x[:, j]]}
                    for j, name in enumerate(names)},
    }


def column_drift(reference: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    """PSI (with its level) and the KS test of new ``values`` against one stored training column."""
    from scipy.stats import ks_2samp

    train = np.asarray(reference["values"], dtype=float)
    new = np.asarray(values, dtype=float)
    edges = reference["edges"]
    value = psi(bin_shares(train, edges), bin_shares(new, edges))
    ks = ks_2samp(train, new)
    level = psi_level(value)
    return {"n": int(new.size), "psi": value, "psi_level": level, "ks_statistic": float(ks.statistic),
            "ks_p": float(ks.pvalue), "drift": level != "none" or float(ks.pvalue) < KS_ALPHA}


def feature_drift(reference: Mapping[str, Any], frame, *, label: str) -> tuple[dict[str, Any], list[str]]:
    """Drift of every stored column present in ``frame`` (a features/scores frame of the new
    patients); returns (per column results, warning lines naming ``label``)."""
    results: dict[str, Any] = {}
    warnings: list[str] = []
    for name, ref in reference["columns"].items():
        if name not in frame.columns:
            continue
        r = column_drift(ref, frame[name].to_numpy(dtype=float))
        results[name] = r
        if r["drift"]:
            warnings.append(f"{label}: {name} drifts from training (PSI {r['psi']:.3f}, {r['psi_level']}; "
                            f"KS D {r['ks_statistic']:.3f}, p {r['ks_p']:.2g}; n {r['n']} vs {reference['n']})")
    return results, warnings


# ----------------------------------------------------------------------------------------------
# stain vectors
# ----------------------------------------------------------------------------------------------


def _unit_stains(stains: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Unit H and E vectors (rows) of stored stain records; malformed records are skipped."""
    h, e = [], []
    for record in stains:
        try:
            he = np.asarray(record["he"], dtype=float)
        except (KeyError, TypeError, ValueError):
            continue
        if he.shape != (3, 2) or not np.isfinite(he).all():
            continue
        norms = np.linalg.norm(he, axis=0)
        if (norms <= 0).any():
            continue
        h.append(he[:, 0] / norms[0])
        e.append(he[:, 1] / norms[1])
    return np.array(h).reshape(-1, 3), np.array(e).reshape(-1, 3)


def _angles(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Angle (degrees) of each unit row vector to a unit direction."""
    return np.degrees(np.arccos(np.clip(vectors @ direction, -1.0, 1.0)))


def stain_reference(stains: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Training stain reference: mean H/E directions and each training slide's angle to them
    (None when no training slide has stain vectors)."""
    h, e = _unit_stains(stains)
    if len(h) == 0:
        return None
    out: dict[str, Any] = {"slides": int(len(h))}
    for key, vecs in (("h", h), ("e", e)):
        mean = vecs.mean(axis=0)
        mean = mean / np.linalg.norm(mean)
        angles = _angles(vecs, mean)
        out[key] = {"mean": [float(v) for v in mean], "angles": [float(a) for a in angles],
                    f"p{STAIN_PERCENTILE:.0f}": float(np.percentile(angles, STAIN_PERCENTILE))}
    return out


def stain_drift(reference: Mapping[str, Any] | None, stains: Sequence[Mapping[str, Any]], *,
                label: str) -> tuple[dict[str, Any], list[str]]:
    """Angles of the applied slides' H and E vectors to the training directions, against the
    training slides' angles (see the module docstring); (result, warning lines)."""
    from scipy.stats import ks_2samp

    if reference is None:
        return {"checked": False, "reason": "the training slides have no stain vectors"}, []
    h, e = _unit_stains(stains)
    if len(h) == 0:
        return {"checked": False, "reason": "the applied slides have no stain vectors"}, []
    result: dict[str, Any] = {"checked": True, "slides": int(len(h))}
    warnings = []
    key_p = f"p{STAIN_PERCENTILE:.0f}"
    for key, vecs, stain in (("h", h, "haematoxylin"), ("e", e, "eosin")):
        ref = reference[key]
        angles = _angles(vecs, np.asarray(ref["mean"], dtype=float))
        median = float(np.median(angles))
        train_angles = np.asarray(ref["angles"], dtype=float)
        ks = ks_2samp(train_angles, angles) if len(train_angles) > 0 else None
        drift = median > ref[key_p]
        result[key] = {"median_angle": median, "training_" + key_p: ref[key_p],
                       "ks_statistic": None if ks is None else float(ks.statistic),
                       "ks_p": None if ks is None else float(ks.pvalue), "drift": bool(drift)}
        if drift:
            warnings.append(f"{label}: the {stain} stain vector drifts from training (median angle "
                            f"{median:.1f} deg to the training mean, above the training slides' "
                            f"{STAIN_PERCENTILE:.0f}th percentile {ref[key_p]:.1f} deg; {len(angles)} slides)")
    return result, warnings
