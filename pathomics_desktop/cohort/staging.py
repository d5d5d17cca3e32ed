"""AJCC 8th edition stage for pancreatic adenocarcinoma (exocrine pancreas).

=========  =======================================
stage      T / N / M
=========  =======================================
IA         T1 N0 M0
IB         T2 N0 M0
IIA        T3 N0 M0
IIB        T1-T3 N1 M0
III        T4 any N M0, or any T N2 M0
IV         any T any N M1
=========  =======================================

Stage groups: I (IA, IB), II (IIA, IIB), III, IV. Reference: Amin MB et al. AJCC Cancer
Staging Manual, 8th ed. Springer; 2017 (chapter 28, exocrine pancreas).
"""

from __future__ import annotations

STAGE_GROUPS = {"IA": "I", "IB": "I", "IIA": "II", "IIB": "II", "III": "III", "IV": "IV"}


def ajcc8_stage(t: str | None, n: str | None, m: str | None) -> str | None:
    """Stage from canonical codes (``T1``-``T4``, ``N0``-``N2``, ``M0``/``M1``); None when
    the stage cannot be determined from what is known."""
    if m == "M1":
        return "IV"
    if m != "M0":
        return None
    if t == "T4" or n == "N2":
        return "III"
    if t is None or n is None:
        return None
    if n == "N1":
        return "IIB"
    return {"T1": "IA", "T2": "IB", "T3": "IIA"}.get(t)


def stage_group(stage: str | None) -> str | None:
    """IA/IB -> I, IIA/IIB -> II, III -> III, IV -> IV."""
    return STAGE_GROUPS.get(stage) if stage else None
