"""Study data sets: training / internal validation / external validation.

The included patients of the development center(s) are split ``train_fraction : 1 -
train_fraction`` (7:3 by default) into training and internal validation, stratified by the
RFS event; the included patients of every other center form the external validation set.

The split is stored per patient and frozen. A patient's draw order is its rank by
``SHA-256(f"{seed}:{study_id}")`` inside its stratum, so it depends only on the recorded
seed and the patient, never on who else is in the registry. When patients are added, the
per-stratum training targets are recomputed for the new total and only the new patients
fill the gaps; nobody already assigned moves.

Targets: the overall training count is ``floor(train_fraction * n)`` (255 of 365 in the
reference study), shared between strata by largest remainder of ``train_fraction * n_s``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from sqlalchemy.orm import Session

from pathomics_desktop.cohort.table import assess_patient, load_patients
from pathomics_desktop.registry.codebook import Codebook


def draw_key(seed: int, study_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{study_id}".encode()).digest()[:8], "big")


def stratum_targets(sizes: dict[int, int], fraction: float) -> dict[int, int]:
    """Training count per stratum (largest-remainder apportionment of floor(fraction*n))."""
    total = sum(sizes.values())
    overall = math.floor(fraction * total + 1e-9)
    exact = {s: fraction * n for s, n in sizes.items()}
    targets = {s: math.floor(v + 1e-9) for s, v in exact.items()}
    leftover = overall - sum(targets.values())
    for s in sorted(exact, key=lambda s: (-(exact[s] - targets[s]), s))[:max(leftover, 0)]:
        targets[s] += 1
    return targets


def choose_training(seed: int, strata: dict[int, list[str]], fraction: float,
                    already: dict[str, str] | None = None) -> set[str]:
    """Study ids of the *unassigned* members that go to training (the rest: internal).

    ``strata`` maps each stratum (the RFS event) to all its included members; ``already``
    gives the frozen split of those assigned before.
    """
    already = already or {}
    targets = stratum_targets({s: len(m) for s, m in strata.items()}, fraction)
    chosen: set[str] = set()
    for stratum, members in strata.items():
        have = sum(1 for sid in members if already.get(sid) == "training")
        fresh = sorted((sid for sid in members if sid not in already), key=lambda sid: draw_key(seed, sid))
        chosen.update(fresh[:max(0, targets[stratum] - have)])
    return chosen


@dataclass
class SplitResult:
    training: int
    internal: int
    external: int
    newly_assigned: int
    cleared: int
    seed: int


def assign_splits(session: Session, *, seed: int, train_fraction: float = 0.7) -> SplitResult:
    """Assign data sets to every included patient without one; clear excluded patients."""
    if not 0 < train_fraction < 1:
        raise ValueError("train_fraction must lie strictly between 0 and 1")
    book = Codebook.for_session(session)
    patients = load_patients(session)
    newly = cleared = 0
    development: dict[int, list] = {}
    for patient in patients:
        outcome = assess_patient(patient, book)
        if not outcome.included:
            if patient.split is not None:
                patient.split, patient.split_seed = None, None
                cleared += 1
            continue
        if patient.center.role != "development":
            if patient.split != "external":
                patient.split, patient.split_seed = "external", seed
                newly += 1
            continue
        if patient.split == "external":  # center became a development center
            patient.split = None
        development.setdefault(outcome.endpoints.rfs_event, []).append(patient)
    chosen = choose_training(
        seed, {s: [p.study_id for p in members] for s, members in development.items()},
        train_fraction,
        already={p.study_id: p.split for members in development.values() for p in members if p.split})
    for members in development.values():
        for patient in members:
            if patient.split is None:
                patient.split = "training" if patient.study_id in chosen else "internal"
                patient.split_seed = seed
                newly += 1
    session.flush()
    counts = {"training": 0, "internal": 0, "external": 0}
    for patient in patients:
        if patient.split in counts:
            counts[patient.split] += 1
    return SplitResult(training=counts["training"], internal=counts["internal"],
                       external=counts["external"], newly_assigned=newly, cleared=cleared, seed=seed)
