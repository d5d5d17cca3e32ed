"""A SYNTHETIC demo cohort shaped like the reference study (never real patients).

Three centers with neutral names: Center A (development: training + internal validation),
Centers B and C (external validation); enrolled 440 / 331 / 102, included 365 and 302 after
exclusions, training 255 / internal 110.

Generative model (all draws from one ``numpy.random.Generator`` seeded by ``seed``):

* a latent tumour aggressiveness ``z ~ N(0, 1)`` per patient (saved alongside, as the
  synthetic ground truth that also drives slide morphology);
* categorical variables follow the marginal distributions of the study's Table 1 (the
  training column for Center A, the external column for B and C); the ordinal ones
  (differentiation, T, N, perineural and microvascular invasion, CA19-9) are cuts of
  ``rho * z + sqrt(1 - rho^2) * e`` at the normal quantiles of their cumulative
  proportions, so they keep their marginals and rise with aggressiveness;
* recurrence time: Weibull (shape 1.2) with linear predictor
  ``lp = 0.85 z + 0.8 [CA19-9 >= 200 and z < 0] + 0.25 (N1/N2) + 0.3 [stage III/IV]
  - 0.55 [adjuvant chemotherapy and z > 0]`` (CA19-9 prognostic in low-risk patients only,
  chemotherapy benefit in high-risk patients only, as the study reports); death follows
  recurrence after a Weibull gap (shape 1.3, partly driven by ``lp``), or comes from a small
  other-cause hazard; scales are calibrated per center group so that the medians of the
  uncensored times are OS 48 / RFS 20 months (Center A) and OS 24 / RFS 12 months (B, C);
* follow-up: surgery 2015-2021, administrative end 2024-12-31, a little random drop-out;
* the study's chance difference between its training and internal sets (median OS 48 vs
  35 months, RFS 20 vs 19) is reproduced by compressing the timelines of the internal-set
  patients (event status unchanged), which is possible because the split is a deterministic
  function of the seed (:func:`pathomics_desktop.cohort.splits.choose_training`).

Everything is labelled synthetic: study ids ``SYN-A-0001``, center names, the project name,
the ``synthetic`` flag on every patient.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from pathomics_desktop.cohort.splits import choose_training
from pathomics_desktop.units import DAYS_PER_MONTH

ADMIN_END = dt.date(2024, 12, 31)
SURGERY_START = dt.date(2015, 1, 1)
SURGERY_END = dt.date(2021, 12, 31)


@dataclass(frozen=True)
class CenterSpec:
    code: str
    name: str
    role: str
    enrolled: int
    included: int
    profile: str  # "development" or "external" column of Table 1
    median_os: float
    median_rfs: float


CENTERS = (
    CenterSpec("A", "Center A (synthetic development center)", "development", 440, 365, "development", 48.0, 20.0),
    CenterSpec("B", "Center B (synthetic external center)", "external", 331, 232, "external", 24.0, 12.0),
    CenterSpec("C", "Center C (synthetic external center)", "external", 102, 70, "external", 24.0, 12.0),
)
INTERNAL_OS_FACTOR = 35.0 / 48.0
INTERNAL_RFS_FACTOR = 19.0 / 20.0

#: Table 1 proportions (training column for the development profile, external column else)
PROFILES: dict[str, dict[str, Any]] = {
    "development": dict(female=0.463, age_mean=66.0, surgery=(0.49, 0.479, 0.031), diff_iii=0.435,
                        t=(0.302, 0.510, 0.160, 0.028), n=(0.604, 0.333, 0.063), m1=0.035,
                        adjuvant=0.867, diabetes=0.286, hypertension=0.416, mvi=0.278, pni=0.788,
                        ca_high=0.31),
    "external": dict(female=0.401, age_mean=63.0, surgery=(0.281, 0.719, 0.0), diff_iii=0.53,
                     t=(0.12, 0.672, 0.178, 0.030), n=(0.609, 0.328, 0.063), m1=0.01,
                     adjuvant=0.709, diabetes=0.248, hypertension=0.334, mvi=0.255, pni=0.758,
                     ca_high=0.477),
}
EXCLUSION_MIX = {"neoadjuvant therapy": 0.30, "concurrent malignancy": 0.15, "insufficient tissue": 0.20,
                 "lost to follow-up within 30 days": 0.15, "incomplete required data": 0.20}
REGIMENS = ("gemcitabine", "gemcitabine + nab-paclitaxel", "S-1", "mFOLFIRINOX")


def _ordinal(rng, z, probs, rho):
    """Category index from a latent cut: keeps the marginal ``probs``, correlation ``rho`` with z."""
    u = rho * z + math.sqrt(1 - rho * rho) * rng.standard_normal(len(z))
    cuts = norm.ppf(np.clip(np.cumsum(probs)[:-1], 1e-9, 1 - 1e-9))
    return np.searchsorted(cuts, u)


def _weibull(rng, shape, scale):
    return scale * (-np.log(rng.uniform(size=len(scale)))) ** (1.0 / shape)


def _solve_scale(target, fn, lo=1e-3, hi=1e4):
    """Scale s such that median(fn(s)) == target (bisection on log s; fn increasing in s)."""
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if np.median(fn(mid)) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def simulate(seed: int = 2024, split_seed: int = 20240101) -> "pandas.DataFrame":  # noqa: F821
    """One row per synthetic patient with every canonical column, the latent ``z`` and the
    intended exclusion reason (``None`` when included)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frames = []
    for spec in CENTERS:
        n = spec.enrolled
        prof = PROFILES[spec.profile]
        z = rng.standard_normal(n)
        sex = np.where(rng.uniform(size=n) < prof["female"], "female", "male")
        age = np.clip(np.round(rng.normal(prof["age_mean"], 9.0, n)), 32, 89).astype(int)
        surgery = np.array(["DP", "PD", "TP"])[rng.choice(3, size=n, p=np.array(prof["surgery"]) / sum(prof["surgery"]))]
        diff = np.array(["I-II", "III"])[_ordinal(rng, z, (1 - prof["diff_iii"], prof["diff_iii"]), 0.45)]
        t = np.array(["T1", "T2", "T3", "T4"])[_ordinal(rng, z, prof["t"], 0.35)]
        nst = np.array(["N0", "N1", "N2"])[_ordinal(rng, z, prof["n"], 0.4)]
        m = np.where(rng.uniform(size=n) < prof["m1"], "M1", "M0")
        mvi = _ordinal(rng, z, (1 - prof["mvi"], prof["mvi"]), 0.3) == 1
        pni = _ordinal(rng, z, (1 - prof["pni"], prof["pni"]), 0.3) == 1
        ca_u = 0.45 * z + math.sqrt(1 - 0.45 ** 2) * rng.standard_normal(n)
        # log CA19-9 ~ normal: P(CA >= 200) equals the profile's proportion
        ca_log_mean = math.log(200) - norm.ppf(1 - prof["ca_high"]) * 1.6
        ca = np.round(np.exp(ca_log_mean + 1.6 * ca_u), 1)
        adjuvant = rng.uniform(size=n) < prof["adjuvant"] - 0.01 * (age - 65).clip(0)
        diabetes = rng.uniform(size=n) < prof["diabetes"]
        hypertension = rng.uniform(size=n) < prof["hypertension"] + 0.01 * (age - 65)
        stage_high = (t == "T4") | (nst == "N2") | (m == "M1")
        lp = (0.85 * z + 0.8 * ((ca >= 200) & (z < 0)) + 0.25 * (nst != "N0") + 0.3 * stage_high
              - 0.55 * (adjuvant & (z > 0)))
        # calibrated latent times (months)
        e_rec = -np.log(rng.uniform(size=n))
        e_gap = -np.log(rng.uniform(size=n))
        other = _weibull(rng, 1.0, np.full(n, 400.0))

        def rec_times(scale):
            return scale * (e_rec * np.exp(-lp)) ** (1 / 1.2)

        def rfs_times(scale):
            return np.minimum(rec_times(scale), other)

        s_rec = _solve_scale(spec.median_rfs, rfs_times)
        rec = rec_times(s_rec)

        def os_times(scale):
            return np.minimum(rec + scale * (e_gap * np.exp(-0.5 * lp)) ** (1 / 1.3), other)

        s_gap = _solve_scale(spec.median_os, os_times)
        death = os_times(s_gap)
        recurred = rec < death
        # follow-up window
        span = (SURGERY_END - SURGERY_START).days
        surgery_day = rng.integers(0, span + 1, n)
        surgery_dates = np.array([SURGERY_START + dt.timedelta(days=int(d)) for d in surgery_day])
        admin = np.array([(ADMIN_END - d).days / DAYS_PER_MONTH for d in surgery_dates])
        dropout = rng.exponential(400.0, n)
        censor = np.minimum(admin, dropout)
        frames.append(pd.DataFrame(dict(
            center=spec.code, z=z, sex=sex, age=age, surgery_date=surgery_dates, surgery_type=surgery,
            differentiation=diff, t_stage=t, n_stage=nst, m_stage=m, microvascular_invasion=mvi,
            perineural_invasion=pni, ca19_9=ca, adjuvant_chemotherapy=adjuvant, diabetes=diabetes,
            hypertension=hypertension, rec_m=rec, death_m=death, recurred=recurred, censor_m=censor)))
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "study_id", [f"SYN-{c}-{i + 1:04d}" for c, i in
                              zip(df["center"], df.groupby("center").cumcount())])
    df["neoadjuvant_therapy"] = False
    df["concurrent_malignancy"] = False
    df["tissue_insufficient"] = False
    df["exclusion"] = None
    # exclusions: exactly enrolled - included per center, reasons by EXCLUSION_MIX
    for spec in CENTERS:
        idx = np.flatnonzero(df["center"].to_numpy() == spec.code)
        k = spec.enrolled - spec.included
        chosen = rng.choice(idx, size=k, replace=False)
        reasons = list(EXCLUSION_MIX)
        counts = np.floor(np.array(list(EXCLUSION_MIX.values())) * k).astype(int)
        counts[-1] += k - counts.sum()
        labels = np.repeat(reasons, counts)
        rng.shuffle(labels)
        df.loc[chosen, "exclusion"] = labels
    df["chemo_regimen"] = [REGIMENS[i] if a else None for i, a in
                           zip(rng.integers(0, len(REGIMENS), len(df)), df["adjuvant_chemotherapy"])]
    df["name"] = [f"Synthetic Person {i + 1}" for i in range(len(df))]
    df["mrn"] = [f"SYN{100000 + i}" for i in range(len(df))]
    df["birth_date"] = [d - dt.timedelta(days=int(a * 365.25 + rng.integers(0, 365))) for d, a in
                        zip(df["surgery_date"], df["age"])]
    _observe(df)
    _apply_exclusions(df, rng)
    _shape_internal_set(df, split_seed)
    return df


def _observe(df) -> None:
    """Event indicators and observed times (months) from latent times and censoring."""
    death_obs = df["death_m"] <= df["censor_m"]
    rec_obs = df["recurred"] & (df["rec_m"] <= df["censor_m"])
    df["os_event_sim"] = death_obs.astype(int)
    df["rfs_event_sim"] = (rec_obs | death_obs).astype(int)


def _apply_exclusions(df, rng) -> None:
    ex = df["exclusion"]
    df.loc[ex == "neoadjuvant therapy", "neoadjuvant_therapy"] = True
    df.loc[ex == "concurrent malignancy", "concurrent_malignancy"] = True
    df.loc[ex == "insufficient tissue", "tissue_insufficient"] = True
    lost = ex == "lost to follow-up within 30 days"
    df.loc[lost, "censor_m"] = rng.integers(3, 29, lost.sum()) / DAYS_PER_MONTH
    df.loc[lost, "death_m"] = np.maximum(df.loc[lost, "death_m"], 1.0)
    df.loc[lost, "rec_m"] = np.maximum(df.loc[lost, "rec_m"], 1.0)
    # included patients are followed at least 45 days (so the internal-set compression keeps them)
    keep = ex.isna()
    df.loc[keep, "censor_m"] = np.maximum(df.loc[keep, "censor_m"], 45 / DAYS_PER_MONTH / INTERNAL_OS_FACTOR)
    df["incomplete_field"] = None
    inc = ex == "incomplete required data"
    fields = np.array(["ca19_9", "differentiation", "perineural_invasion", "n_stage"])
    df.loc[inc, "incomplete_field"] = fields[rng.integers(0, len(fields), inc.sum())]
    _observe(df)


def _shape_internal_set(df, split_seed: int) -> None:
    """Compress the timelines of the future internal-validation patients (see module doc)."""
    dev = df["exclusion"].isna() & (df["center"] == "A")
    strata: dict[int, list[str]] = {}
    for sid, ev in zip(df.loc[dev, "study_id"], df.loc[dev, "rfs_event_sim"]):
        strata.setdefault(int(ev), []).append(sid)
    training = choose_training(split_seed, strata, 0.7)
    internal = dev & ~df["study_id"].isin(training)
    for i in np.flatnonzero(internal.to_numpy()):
        row = df.iloc[i]
        death, censor, rec = row["death_m"] * INTERNAL_OS_FACTOR, row["censor_m"] * INTERNAL_OS_FACTOR, row["rec_m"]
        end = min(death, censor)
        rec = min(rec * INTERNAL_RFS_FACTOR, 0.98 * end) if (row["recurred"] and row["rec_m"] <= min(row["death_m"], row["censor_m"])) \
            else max(rec * INTERNAL_RFS_FACTOR, end + 1)
        df.iat[i, df.columns.get_loc("death_m")] = death
        df.iat[i, df.columns.get_loc("censor_m")] = censor
        df.iat[i, df.columns.get_loc("rec_m")] = rec
    _observe(df)


def _date(surgery: dt.date, months: float) -> dt.date:
    return surgery + dt.timedelta(days=max(1, int(round(months * DAYS_PER_MONTH))))


def to_spreadsheets(df) -> tuple["pandas.DataFrame", "pandas.DataFrame"]:  # noqa: F821
    """The canonical patient sheet and the long follow-up sheet (visits every 3-6 months)."""
    import pandas as pd

    rng = np.random.default_rng(7)
    patients, visits = [], []
    yn = {True: "yes", False: "no"}
    for row in df.itertuples(index=False):
        surgery = row.surgery_date
        death_obs = row.os_event_sim == 1
        rec_obs = row.recurred and row.rec_m <= min(row.death_m, row.censor_m)
        end_m = row.death_m if death_obs else row.censor_m
        last = _date(surgery, end_m)
        death_date = last if death_obs else None
        rec_date = _date(surgery, row.rec_m) if rec_obs else None
        if rec_date is not None and rec_date >= last:
            rec_date = last - dt.timedelta(days=1) if (last - surgery).days > 2 else None
            rec_obs = rec_date is not None
        record = {
            "study_id": row.study_id, "center": row.center, "sex": row.sex, "age": int(row.age),
            "surgery_date": surgery.isoformat(), "surgery_type": row.surgery_type,
            "differentiation": row.differentiation, "t_stage": row.t_stage, "n_stage": row.n_stage,
            "m_stage": row.m_stage, "neoadjuvant_therapy": yn[bool(row.neoadjuvant_therapy)],
            "adjuvant_chemotherapy": yn[bool(row.adjuvant_chemotherapy)],
            "diabetes": yn[bool(row.diabetes)], "hypertension": yn[bool(row.hypertension)],
            "microvascular_invasion": yn[bool(row.microvascular_invasion)],
            "perineural_invasion": yn[bool(row.perineural_invasion)], "ca19_9": row.ca19_9,
            "recurrence": yn[bool(rec_obs)], "recurrence_date": rec_date.isoformat() if rec_date else "",
            "vital_status": "dead" if death_obs else "alive",
            "death_date": death_date.isoformat() if death_date else "",
            "last_followup_date": last.isoformat(),
            "concurrent_malignancy": yn[bool(row.concurrent_malignancy)],
            "tissue_insufficient": yn[bool(row.tissue_insufficient)],
            "chemo_regimen": row.chemo_regimen or "",
            "name": row.name, "mrn": row.mrn, "birth_date": row.birth_date.isoformat(),
        }
        if row.incomplete_field:
            record[row.incomplete_field] = ""
        patients.append(record)
        day = 0
        while True:
            day += int(rng.integers(90, 184))
            visit = surgery + dt.timedelta(days=day)
            if visit >= last:
                break
            visits.append({"study_id": row.study_id, "visit_date": visit.isoformat(), "vital_status": "alive",
                           "recurrence": yn[bool(rec_date is not None and visit >= rec_date)]})
    return pd.DataFrame(patients), pd.DataFrame(visits)


def create_demo_project(root: str | Path, *, seed: int = 2024, split_seed: int = 20240101,
                        database_url: str = "", progress=None) -> dict[str, Any]:
    """Create a project at ``root`` holding the synthetic cohort, imported through the normal
    validated import path; returns counts and paths."""
    from pathomics_desktop.cohort.splits import assign_splits
    from pathomics_desktop.errors import UserError
    from pathomics_desktop.registry.importer import import_file
    from pathomics_desktop.registry.models import Center
    from pathomics_desktop.registry.service import init_project, open_project_registry
    from sqlalchemy import select

    report = progress or (lambda fraction, message: None)
    root = Path(root)
    report(0.05, "simulating the synthetic cohort")
    df = simulate(seed=seed, split_seed=split_seed)
    project = init_project(root, name="SYNTHETIC demo project (not real patients)", database_url=database_url,
                           development_center="A", synthetic=True)
    project.settings["study"]["split_seed"] = split_seed
    project.settings["demo"] = {"seed": seed, "note": "all data in this project are synthetic"}
    project.save()
    data_dir = project.folder("demo_data")
    patients, visits = to_spreadsheets(df)
    patients_csv, visits_csv = data_dir / "synthetic_patients.csv", data_dir / "synthetic_followup.csv"
    patients.to_csv(patients_csv, index=False)
    visits.to_csv(visits_csv, index=False)
    df[["study_id", "center", "z", "exclusion"]].to_parquet(data_dir / "synthetic_latent.parquet", index=False)
    (data_dir / "README.txt").write_text(
        "SYNTHETIC DATA. Every record in this folder and in this project was generated by\n"
        "`pathomics demo` (pathomics_desktop/demo/cohort.py). None of it describes a real person.\n",
        encoding="utf-8")
    registry = open_project_registry(project)
    try:
        report(0.3, "importing the synthetic patients (validated import)")
        first = import_file(registry, patients_csv, user="demo", reason="synthetic demo cohort",
                            development_center="A", synthetic=True)
        if first.errors:
            raise UserError("demo import failed: " + "; ".join(map(str, first.errors[:5])))
        report(0.6, "importing the synthetic follow-up visits")
        second = import_file(registry, visits_csv, user="demo", reason="synthetic demo follow-up")
        if second.errors:
            raise UserError("demo follow-up import failed: " + "; ".join(map(str, second.errors[:5])))
        with registry.session(user="demo", reason="synthetic demo centers") as session:
            for center in session.scalars(select(Center)):
                spec = next(s for s in CENTERS if s.code == center.code)
                center.name, center.role = spec.name, spec.role
        report(0.8, "assigning the data sets")
        with registry.session(user="demo", reason="data-set split") as session:
            split = assign_splits(session, seed=split_seed, train_fraction=0.7)
    finally:
        registry.dispose()
    report(1.0, "done")
    return {"project": str(project.root), "patients": len(patients), "visits": len(visits),
            "training": split.training, "internal": split.internal, "external": split.external}
