"""The study's analysis plan on frozen signatures: ``pathomics signature report NAME``.

For every signature named, each endpoint (OS, RFS) and each set (training, internal,
external) the report runs the study's results section (section 2.4-2.6, Figure 4, Figure 5,
Table 2, Tables S2-S6, Figures S2-S6) by calling the package's statistics and nothing else:

* **discrimination** (Figure 4A-F, Table S2): time-dependent AUC (cumulative/dynamic, IPCW;
  :func:`~pathomics_desktop.stats.tdroc.bootstrap_td_auc`) at 1, 3, 5 years (OS) and 1, 2,
  3 years (RFS) with percentile bootstrap CIs and the ROC points
  (:func:`~pathomics_desktop.stats.tdroc.roc_curve_at`), and Harrell's C with a bootstrap CI
  (:func:`~pathomics_desktop.stats.concordance.bootstrap_c`) of the signature score, of TNM
  stage (ordinal I < II < III < IV, the order of :mod:`pathomics_desktop.cohort.staging`) and
  of CA19-9 (U/mL); the signature's C minus each marker's by the paired bootstrap
  (:func:`~pathomics_desktop.stats.concordance.compare_c`, same resamples for both markers,
  ``p = 2 Phi(-|d| / sd_boot)``). Higher values of every marker mean higher risk.
* **risk groups** (Figure 4G-L): Kaplan-Meier per group (low, high: ``score > cut``) with
  the log-rank test (:func:`~pathomics_desktop.stats.km.km_comparison`) and the Cox HR of
  high vs low (:func:`~pathomics_desktop.stats.cox.fit_cox`, Efron ties, Wald 95% CI).
* **Cox models** (Table 2, Tables S3-S5): univariate Cox of each clinicopathological variable
  and of the risk group, then the multivariable model of the variables whose
  likelihood-ratio p < ``threshold`` (0.05) with the risk group always in it
  (:func:`~pathomics_desktop.stats.cox.multivariable_from_screen`).
* **center heterogeneity** (section 2.4; all sets together): Cox model with a Gaussian random
  center intercept (:func:`~pathomics_desktop.stats.frailty.fit_frailty`), the high vs low
  HR in every center (the development center included) and their random-effects (REML)
  meta-analysis of log HRs with I^2, Q, tau^2 and the prediction interval
  (:func:`~pathomics_desktop.stats.meta.meta_analysis`).
* **subgroups** (Figures S2-S5): HR of high vs low risk within each level of age, sex,
  surgery, differentiation, T, N, stage (I-II, III-IV), CA19-9, adjuvant chemotherapy,
  diabetes, hypertension, microvascular and perineural invasion, with n, events and the
  interaction LR p (:func:`~pathomics_desktop.stats.subgroups.subgroup_analysis`).
* **Table S6**: the risk groups against the clinicopathological variables
  (:func:`~pathomics_desktop.stats.table1.baseline_table`).
* **CA19-9 interception** (Figure 5): CA19-9 >= 200 vs < 200 U/mL within each risk group
  (Kaplan-Meier, log-rank, Cox HR) and the CA19-9 x risk-group interaction LR p.
* **chemotherapy benefit** (Figure S6, RFS): adjuvant chemotherapy vs none within each risk
  group and within the CA19-9 groups at the RFS-optimal CA19-9 cut (X-tile single cut on the
  training set, :func:`~pathomics_desktop.stats.cutpoint.xtile`; low: CA19-9 <= cut), with
  the interaction tests; with ``landmark`` L months only patients with RFS time > L enter
  (an event or censoring at or before L leaves a patient out) and time restarts at L:
  ``t' = t - L`` (:func:`landmark_frame`).
* **multiple comparisons**: Bonferroni (statsmodels ``multipletests``), ``p_adj = min(1, m p)``,
  within each named family (:data:`FAMILIES`).

Patients: the included patients of the three sets from the cohort snapshot
(:func:`~pathomics_desktop.analytics.snapshot.cohort_frame`) joined on ``study_id`` with the
signature's scores file; an analysis drops the rows missing one of its values and reports how
many (``n_missing``). An analysis that cannot be computed (e.g. no events in a set) carries a
``notes`` entry instead of numbers; the rest of the report is still computed. Bootstrap
replicates (``n_boot``, default 200) all use the one ``seed``.

JSON keys (``pathomics signature report NAME --json``, also ``report.json`` of ``--out DIR``).
Every key is always present; a value that cannot be computed is ``null`` and the analysis's
``notes`` say why. Times are in months, HRs are exp(Cox coefficient) with Wald 95% CIs.

======================================  ==================================================================
key                                     value
======================================  ==================================================================
``format``                              ``"pathomics-report/1"``
``synthetic``                           true when the cohort is SYNTHETIC
``settings``                            ``n_boot, seed, threshold, alpha, landmark_months,
                                        ca19_9_threshold, age_threshold, auc_times: {os, rfs}``
``patients``                            ``{training, internal, external}``: included patients per set
``ca19_9_rfs_cut``                      ``{value, set, n, chisq, p_raw, rule, note}``: X-tile RFS cut
``signatures.NAME``                     ``{name, fit_endpoint, cut, rule, n_scored, n_without_score,
                                        associations, endpoints}``
``...associations.SET``                 Table S6: ``{figure, n, n_missing, groups, rows: [{variable,
                                        level, summary: {low, high, Overall}, p, test}], notes}``
``...endpoints.EP`` (os, rfs)           ``{endpoint, time_column, event_column, auc_times, sets,
                                        center_heterogeneity}``
``...sets.SET``                         ``{set, n, events, discrimination, km, cox, subgroups,
                                        ca19_9_interception, chemotherapy_benefit}`` (the last null for OS)
``...discrimination``                   ``{figure, times, markers: {signature, tnm_stage, ca19_9},
                                        comparisons}``
``...markers.MARKER``                   ``{marker, n, n_missing, c_index: {c, ci_lower, ci_upper, n},
                                        td_auc: [{time, auc, ci_lower, ci_upper}],
                                        roc: [{time, auc, fpr, tpr, thresholds}], notes}``
``...comparisons[]``                    ``{marker, n, c_signature, c_marker, difference, se, ci_lower,
                                        ci_upper, p, p_bonferroni, note}`` (difference = signature - marker)
``...km``                               ``{figure, n, n_missing, groups: [{group, n, events, median,
                                        median_lower, median_upper, at, curve: {time, survival, lower,
                                        upper, n_risk, n_event}}], logrank: {chisq, df, p},
                                        hr: {term, hr, hr_lower, hr_upper, p}, notes}``
``...cox``                              ``{figure, threshold, forced, n, univariate: [{variable, term, hr,
                                        hr_lower, hr_upper, p, p_term_lr, n, events, error}], selected,
                                        multivariable: {n, events, n_missing, terms: [{term, coef, se, hr,
                                        hr_lower, hr_upper, z, p}]}, notes}``
``...subgroups``                        ``{figure, exposure, n, n_missing, rows: [{variable, level, n,
                                        events, hr, hr_lower, hr_upper, p, p_interaction,
                                        p_interaction_bonferroni, note}], notes}``
``...ca19_9_interception``              ``{figure, exposure, reference, modifier, n, n_missing,
                                        p_interaction, within: [{level, figure, n, events, hr, hr_lower,
                                        hr_upper, p, logrank_p, logrank_p_bonferroni, groups}], notes}``
``...chemotherapy_benefit``             ``{figure, landmark_months, n_before, excluded_event_before_landmark,
                                        excluded_censored_before_landmark, by_risk_group, by_ca19_9_cut}``;
                                        the last two as ``ca19_9_interception``
``...center_heterogeneity``             ``{figure, n, n_missing, mixed_effects: {term, hr, hr_lower,
                                        hr_upper, p, center_variance, centers}, centers: [{center, role, n,
                                        events, log_hr, se, hr, hr_lower, hr_upper, p, note}], meta: {method,
                                        k, estimate, ci_lower, ci_upper, tau2, i2, q, q_p, pi_lower,
                                        pi_upper, hr, hr_lower, hr_upper, pi_hr_lower, pi_hr_upper}, notes}``
``multiple_comparisons[]``              ``{family, method: "bonferroni", alpha, m, tests: [{test, p,
                                        p_adjusted, reject}]}``
======================================  ==================================================================
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.data import clean_json, format_rows
from pathomics_desktop.stats.results import StatResult

FORMAT = "pathomics-report/1"
SETS = ("training", "internal", "external")
ENDPOINT_COLUMNS = {"os": ("os_months", "os_event"), "rfs": ("rfs_months", "rfs_event")}
#: time-dependent AUC times in months: 1, 3, 5 years (OS) and 1, 2, 3 years (RFS)
AUC_TIMES = {"os": (12.0, 36.0, 60.0), "rfs": (12.0, 24.0, 36.0)}
AGE_THRESHOLD = 65  #: years: "<65" vs ">=65" (study Table 1)
CA19_9_THRESHOLD = 200.0  #: U/mL: "<200" vs ">=200" (study Table 1, Figure 5)
DEFAULT_BOOT = 200  # also report_cli.DEFAULT_BOOT (tested equal)
RISK = "risk_group"  #: analysis column of the risk group (levels low, high)
RISK_LEVELS = ("low", "high")
MARKERS = ("signature", "tnm_stage", "ca19_9")
MARKER_COLUMNS = {"signature": "score", "tnm_stage": "tnm_ordinal", "ca19_9": "ca19_9"}

#: Bonferroni families the report makes (one per signature, endpoint and set)
FAMILIES = {
    "c_index": "Table S2: C-index of the signature vs TNM stage and CA19-9",
    "subgroups": "Figures S2-S5: subgroup interaction tests",
    "ca19_9": "Figure 5: CA19-9 log-rank tests within the risk groups",
    "chemotherapy": "Figure S6: chemotherapy log-rank tests within risk and CA19-9 groups",
}

FIG4_ROC = {"os": dict(zip(SETS, ("Figure 4A", "Figure 4B", "Figure 4C"))),
            "rfs": dict(zip(SETS, ("Figure 4D", "Figure 4E", "Figure 4F")))}
FIG4_KM = {"os": dict(zip(SETS, ("Figure 4G", "Figure 4H", "Figure 4I"))),
           "rfs": dict(zip(SETS, ("Figure 4J", "Figure 4K", "Figure 4L")))}
COX_TABLES = dict(zip(SETS, ("Table 2; Table S3", "Table 2; Table S4", "Table 2; Table S5")))
SUBGROUP_FIGURES = {("os", "training"): "Figure S2", ("rfs", "training"): "Figure S3",
                    ("os", "external"): "Figure S4", ("rfs", "external"): "Figure S5"}
FIG5 = {("os", "low"): "Figure 5A", ("rfs", "low"): "Figure 5B",
        ("os", "high"): "Figure 5C", ("rfs", "high"): "Figure 5D"}
FIGS6 = {(RISK, "high"): "Figure S6A", (RISK, "low"): "Figure S6B",
         ("ca19_9_rfs_group", "high"): "Figure S6C", ("ca19_9_rfs_group", "low"): "Figure S6D"}


# ----------------------------------------------------------------------------------------------
# the analysis table
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicalVariable:
    """An analysis column, its label and its level order (the first level is the reference)."""

    column: str
    label: str
    levels: tuple[str, ...]


def clinical_variables() -> list[ClinicalVariable]:
    """The clinicopathological variables of Table 1 / Table 2, levels ordered by the codebook
    (category codes in codebook order, yes/no as no < yes, T3 and T4 merged as the study)."""
    return list(_clinical_variables())


@functools.lru_cache(maxsize=1)
def _clinical_variables() -> tuple[ClinicalVariable, ...]:
    """:func:`clinical_variables`, read once from the built-in codebook (a package file; the
    entries are frozen)."""
    from pathomics_desktop.cohort.staging import STAGE_GROUPS
    from pathomics_desktop.registry.codebook import Codebook

    book = Codebook.builtin()

    def codes(name: str) -> tuple[str, ...]:
        return tuple(book[name].codes)

    t_codes = codes("t_stage")
    yes_no = ("no", "yes")
    return (
        ClinicalVariable("age_group", f"Age (years, <{AGE_THRESHOLD} / >={AGE_THRESHOLD})",
                         (f"<{AGE_THRESHOLD}", f">={AGE_THRESHOLD}")),
        ClinicalVariable("sex", book["sex"].label, codes("sex")),
        ClinicalVariable("surgery_type", book["surgery_type"].label, codes("surgery_type")),
        ClinicalVariable("differentiation", book["differentiation"].label, codes("differentiation")),
        ClinicalVariable("t_group", book["t_stage"].label, (*t_codes[:2], "T3-4")),
        ClinicalVariable("n_stage", book["n_stage"].label, codes("n_stage")),
        ClinicalVariable("tnm_group", "TNM stage", tuple(dict.fromkeys(STAGE_GROUPS.values()))),
        ClinicalVariable("ca19_9_group", f"CA19-9 (U/mL, <{CA19_9_THRESHOLD:g} / >={CA19_9_THRESHOLD:g})",
                         (f"<{CA19_9_THRESHOLD:g}", f">={CA19_9_THRESHOLD:g}")),
        ClinicalVariable("adjuvant_chemotherapy", book["adjuvant_chemotherapy"].label, yes_no),
        ClinicalVariable("diabetes", book["diabetes"].label, yes_no),
        ClinicalVariable("hypertension", book["hypertension"].label, yes_no),
        ClinicalVariable("microvascular_invasion", book["microvascular_invasion"].label, yes_no),
        ClinicalVariable("perineural_invasion", book["perineural_invasion"].label, yes_no),
    )


def subgroup_variables() -> list[ClinicalVariable]:
    """Figures S2-S5: the clinical variables with stage as I-II vs III-IV."""
    out = []
    for var in clinical_variables():
        if var.column == "tnm_group":
            var = ClinicalVariable("stage_2", "TNM stage (I-II / III-IV)", ("I-II", "III-IV"))
        out.append(var)
    return out


def _categorise(values, cut: float, labels: tuple[str, str]):
    """``labels[0]`` where value < cut, ``labels[1]`` where >= cut, None where missing."""
    import pandas as pd

    num = pd.to_numeric(values, errors="coerce")
    return np.where(num.isna(), None, np.where(num < cut, labels[0], labels[1]))


def derive_clinical_columns(cohort):
    """The analysis columns of :func:`clinical_variables` and the ordinal TNM marker, added to
    a copy of the cohort snapshot (``tnm_ordinal``: 1..4 for I..IV)."""
    from pathomics_desktop.cohort.staging import STAGE_GROUPS

    frame = cohort.copy()
    variables = {v.column: v for v in clinical_variables()}
    frame["age_group"] = _categorise(frame["age"], AGE_THRESHOLD, variables["age_group"].levels)
    frame["ca19_9_group"] = _categorise(frame["ca19_9"], CA19_9_THRESHOLD, variables["ca19_9_group"].levels)
    t = frame["t_stage"].astype(object)
    frame["t_group"] = np.where(t.isin(["T3", "T4"]), "T3-4", t.where(t.notna(), None))
    stages = list(dict.fromkeys(STAGE_GROUPS.values()))
    rank = {s: i + 1 for i, s in enumerate(stages)}
    frame["tnm_ordinal"] = frame["tnm_group"].map(rank).astype(float)
    frame["stage_2"] = frame["tnm_group"].map({"I": "I-II", "II": "I-II", "III": "III-IV", "IV": "III-IV"})
    for var in variables.values():
        if var.column in frame:  # a snapshot without the variable (custom codebooks) keeps going
            frame[var.column] = frame[var.column].astype(object).where(frame[var.column].notna(), None)
    return frame


def landmark_frame(frame, time: str, event: str, landmark: float | None):
    """Landmark data at ``landmark`` months: patients with ``time > landmark`` stay, with
    ``time - landmark`` as their time (events unchanged); a patient whose event or censoring is
    at or before the landmark is left out. Returns (frame, excluded events, excluded censored)."""
    if landmark is None:
        return frame, 0, 0
    if not landmark >= 0:
        raise UserError(f"the landmark time must be >= 0 months, got {landmark}")
    before = frame[time] <= landmark
    ev = frame[event].astype(int) == 1
    kept = frame[~before].copy()
    kept[time] = kept[time] - landmark
    return kept.reset_index(drop=True), int((before & ev).sum()), int((before & ~ev).sum())


def _read_scores(project, name: str, signature: dict):
    """The signature's per-patient scores (study_id, score, risk group by the frozen cut)."""
    import pandas as pd

    from pathomics_desktop.signature import fit
    from pathomics_desktop.signature.evaluation import risk_groups

    reader = getattr(fit, "load_scores", None)
    if reader is not None:
        scores = reader(project, name)
    else:
        path = fit.signature_paths(project, name)[1]
        if not path.exists():
            raise UserError(f"signature {name!r} has no scores file ({path}); fit or apply it first")
        try:
            scores = pd.read_parquet(path)
        except Exception as exc:  # a corrupt file is the user's input
            raise UserError(f"cannot read the scores of signature {name!r} ({path}): {exc}") from None
    for col in ("study_id", "score"):
        if col not in scores.columns:
            raise UserError(f"the scores of signature {name!r} have no {col!r} column")
    scores = scores.drop_duplicates("study_id", keep="last")
    group = next((c for c in ("risk_group", "group") if c in scores.columns), None)
    values = scores[group].astype(str) if group else risk_groups(scores["score"].to_numpy(float),
                                                                  float(signature["cut"]["value"]))
    return pd.DataFrame({"study_id": scores["study_id"].astype(str).to_numpy(),
                         "score": scores["score"].to_numpy(float), RISK: np.asarray(values, dtype=object)})


@dataclass
class ReportData:
    """The analysis table (included patients of the three sets, derived clinical columns) and,
    per signature, its frozen JSON and per-patient scores."""

    frame: Any
    signatures: dict[str, dict]
    scores: dict[str, Any]

    def signature_frame(self, name: str):
        """The analysis table with this signature's ``score`` and ``risk_group`` (patients
        without a score left out) and the number left out."""
        own = [c for c in ("score", RISK) if c in self.frame.columns]
        merged = self.frame.drop(columns=own).merge(self.scores[name], on="study_id", how="left")
        scored = merged["score"].notna()
        return merged[scored].reset_index(drop=True), int((~scored).sum())


def load_report_data(project, names: Sequence[str]) -> ReportData:
    """Cohort snapshot + frozen signatures + their scores (:class:`ReportData`)."""
    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.signature.fit import load_signature

    if not names:
        raise UserError("name at least one signature")
    signatures = {name: load_signature(project, name) for name in names}
    scores = {name: _read_scores(project, name, sig) for name, sig in signatures.items()}
    cohort = cohort_frame(project.root)
    cohort = cohort[cohort["included"].fillna(False).astype(bool) & cohort["split"].isin(SETS)]
    frame = derive_clinical_columns(cohort.reset_index(drop=True))
    frame["study_id"] = frame["study_id"].astype(str)
    return ReportData(frame, signatures, scores)


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def _attempt(notes: list[str], what: str, fn: Callable[[], Any]):
    """``fn()``, or None with ``"what: message"`` added to ``notes`` on a :class:`UserError`."""
    try:
        return fn()
    except UserError as exc:
        notes.append(f"{what}: {exc}")
        return None


def _complete(frame, columns: Sequence[str]):
    """Rows with every column present, and how many were dropped."""
    sub = frame.dropna(subset=list(columns))
    return sub.reset_index(drop=True), int(len(frame) - len(sub))


def _present(frame, var: ClinicalVariable) -> list[str]:
    values = set(frame[var.column].dropna().astype(str))
    return [lvl for lvl in var.levels if lvl in values]


def _references(frame, variables: Sequence[ClinicalVariable]) -> dict[str, str]:
    """Reference level of each variable: its first level (codebook order) present in ``frame``."""
    out = {}
    for var in variables:
        present = _present(frame, var)
        if present:
            out[var.column] = present[0]
    return out


def _labels(set_name: str | None, endpoint: str | None) -> dict:
    """Leading ``set`` / ``endpoint`` columns of a text row (left out when not given)."""
    out = {}
    if set_name is not None:
        out["set"] = set_name
    if endpoint is not None:
        out["endpoint"] = endpoint.upper()
    return out


def _hr_row(row: dict | None) -> dict | None:
    if row is None:
        return None
    return {"term": row["term"], "hr": row["hr"], "hr_lower": row["hr_lower"], "hr_upper": row["hr_upper"],
            "p": row["p"]}


def _p_text(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _hr_text(hr, lo, hi) -> str:
    if hr is None or not np.isfinite(hr):
        return "-"
    return f"{hr:.3f} ({lo:.3f}-{hi:.3f})"


def _ci_text(value, lo, hi) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{value:.3f}"
    return f"{value:.3f} ({lo:.3f}-{hi:.3f})"


def _with_notes(rows: list[dict], notes: Sequence[str]) -> str:
    """An aligned text table followed by its ``note:`` lines."""
    return format_rows(rows) + "".join(f"\nnote: {n}" for n in notes)


def _section(title: str, body: str) -> str:
    return f"{title}\n{'-' * len(title)}\n{body}"


# ----------------------------------------------------------------------------------------------
# multiple comparisons
# ----------------------------------------------------------------------------------------------


@dataclass
class ComparisonFamily(StatResult):
    """A named family of tests with Bonferroni-adjusted p (statsmodels ``multipletests``):
    ``p_adjusted = min(1, m p)`` with m the number of tests that have a p-value."""

    family: str
    labels: list[str]
    p: list[float]
    p_adjusted: list[float]
    reject: list[bool]
    alpha: float = 0.05

    @classmethod
    def bonferroni(cls, family: str, tests: Sequence[tuple[str, float | None]],
                   alpha: float = 0.05) -> "ComparisonFamily":
        from statsmodels.stats.multitest import multipletests

        kept = [(label, float(p)) for label, p in tests if p is not None and np.isfinite(p)]
        if not kept:
            return cls(family, [], [], [], [], alpha)
        reject, adjusted, _, _ = multipletests([p for _, p in kept], alpha=alpha, method="bonferroni")
        return cls(family, [lbl for lbl, _ in kept], [p for _, p in kept], [float(v) for v in adjusted],
                   [bool(v) for v in reject], alpha)

    def adjusted(self, label: str) -> float | None:
        return self.p_adjusted[self.labels.index(label)] if label in self.labels else None

    def to_dict(self) -> dict:
        return {"family": self.family, "method": "bonferroni", "alpha": self.alpha, "m": len(self.p),
                "tests": [{"test": lbl, "p": p, "p_adjusted": pa, "reject": r}
                          for lbl, p, pa, r in zip(self.labels, self.p, self.p_adjusted, self.reject)]}

    def rows(self) -> list[dict]:
        return [{"family": self.family, "test": lbl, "p": _p_text(p), "p_bonferroni": _p_text(pa),
                 "m": len(self.p)} for lbl, p, pa in zip(self.labels, self.p, self.p_adjusted)]


# ----------------------------------------------------------------------------------------------
# discrimination: td-AUC and C-index (Figure 4A-F, Table S2)
# ----------------------------------------------------------------------------------------------


@dataclass
class MarkerDiscrimination(StatResult):
    """Harrell's C (bootstrap CI) and td-AUC (bootstrap CIs, ROC points) of one marker."""

    marker: str
    n: int
    n_missing: int
    times: list[float]
    c_index: Any = None  #: ConcordanceResult
    td_auc: Any = None  #: TimeDependentAUC at the estimable times
    roc: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def auc_at(self, time: float) -> dict:
        row = {"time": time, "auc": None, "ci_lower": None, "ci_upper": None}
        if self.td_auc is not None:
            hits = np.flatnonzero(np.isclose(self.td_auc.times, time))
            if hits.size:
                k = int(hits[0])
                for key, arr in (("auc", self.td_auc.auc), ("ci_lower", self.td_auc.ci_lower),
                                 ("ci_upper", self.td_auc.ci_upper)):
                    row[key] = None if arr is None else float(arr[k])
        return row

    def to_dict(self) -> dict:
        return {"marker": self.marker, "n": self.n, "n_missing": self.n_missing,
                "c_index": None if self.c_index is None else self.c_index.to_dict(),
                "td_auc": [self.auc_at(t) for t in self.times],
                "roc": [{"time": r["time"], "auc": r["auc"], "fpr": r["fpr"], "tpr": r["tpr"],
                         "thresholds": r["thresholds"]} for r in self.roc],
                "notes": list(self.notes)}


def _estimable_times(t: np.ndarray, e: np.ndarray, times: Sequence[float]) -> list[float]:
    """Times with at least one case (event at or before) and one control (time beyond)."""
    return [float(tk) for tk in times if np.any(e & (t <= tk)) and np.any(t > tk)]


def marker_discrimination(frame, time: str, event: str, marker: str, column: str, times: Sequence[float], *,
                          n_boot: int, seed: int) -> MarkerDiscrimination:
    from pathomics_desktop.stats.concordance import bootstrap_c
    from pathomics_desktop.stats.tdroc import bootstrap_td_auc, roc_curve_at

    sub, dropped = _complete(frame, [time, event, column])
    res = MarkerDiscrimination(marker, len(sub), dropped, [float(x) for x in times])
    if len(sub) == 0:
        res.notes.append("no patients with this marker")
        return res
    t, e, x = sub[time].to_numpy(float), sub[event].to_numpy(int) == 1, sub[column].to_numpy(float)
    res.c_index = _attempt(res.notes, "C-index", lambda: bootstrap_c(t, e, x, n_boot=n_boot, seed=seed))
    usable = _estimable_times(t, e, times)
    for tk in times:
        if float(tk) not in usable:
            res.notes.append(f"AUC({tk:g}): no cases or no controls at this time")
    if usable:
        res.td_auc = _attempt(res.notes, "td-AUC",
                              lambda: bootstrap_td_auc(t, e, x, usable, n_boot=n_boot, seed=seed))
        for tk in usable:
            roc = _attempt(res.notes, f"ROC at {tk:g}", lambda tk=tk: roc_curve_at(t, e, x, tk))
            if roc is not None:
                res.roc.append({"time": tk, **roc})
    return res


@dataclass
class Discrimination(StatResult):
    """Figure 4A-F / Table S2 of one set and endpoint: the three markers and the paired
    bootstrap differences of C (signature minus marker), Bonferroni over the comparisons."""

    figure: str
    times: list[float]
    markers: dict[str, MarkerDiscrimination]
    comparisons: list[dict]  #: {"marker", "n", "result": PairedConcordance | None, "note"}
    family: ComparisonFamily

    def to_dict(self) -> dict:
        rows = []
        for comp in self.comparisons:
            r = comp["result"]
            rows.append({"marker": comp["marker"], "n": comp["n"],
                         "c_signature": None if r is None else r.c1, "c_marker": None if r is None else r.c2,
                         "difference": None if r is None else r.difference, "se": None if r is None else r.se,
                         "ci_lower": None if r is None else r.ci_lower, "ci_upper": None if r is None else r.ci_upper,
                         "p": None if r is None else r.p_value,
                         "p_bonferroni": self.family.adjusted(f"signature vs {comp['marker']}"),
                         "note": comp["note"]})
        return {"figure": self.figure, "times": list(self.times),
                "markers": {k: m.to_dict() for k, m in self.markers.items()}, "comparisons": rows}

    def table_rows(self, set_name: str | None = None, endpoint: str | None = None) -> list[dict]:
        comps = {c["marker"]: c for c in self.to_dict()["comparisons"]}
        rows = []
        for key, m in self.markers.items():
            c = m.c_index
            c_text = "-" if c is None else _ci_text(c.c, c.ci_lower, c.ci_upper)
            row = _labels(set_name, endpoint) | {"marker": key, "n": m.n, "C (95% CI)": c_text}
            for t in self.times:
                a = m.auc_at(t)
                row[f"AUC {t / 12:g}y"] = _ci_text(a["auc"], a["ci_lower"], a["ci_upper"])
            comp = comps.get(key)
            row["dC vs sig."] = "-" if comp is None or comp["difference"] is None else f"{-comp['difference']:.3f}"
            row["p"] = "-" if comp is None else _p_text(comp["p"])
            row["p Bonf."] = "-" if comp is None else _p_text(comp["p_bonferroni"])
            rows.append(row)
        return rows

    def notes(self) -> list[str]:
        return [f"{key}: {n}" for key, m in self.markers.items() for n in m.notes] + [
            f"signature vs {c['marker']}: {c['note']}" for c in self.comparisons if c["note"]]

    def summary(self) -> str:
        return _with_notes(self.table_rows(), self.notes())


def discrimination(frame, time: str, event: str, times: Sequence[float], *, figure: str, family: str,
                   n_boot: int, seed: int, alpha: float) -> Discrimination:
    from pathomics_desktop.stats.concordance import compare_c

    markers = {m: marker_discrimination(frame, time, event, m, MARKER_COLUMNS[m], times, n_boot=n_boot, seed=seed)
               for m in MARKERS}
    comparisons = []
    for m in MARKERS[1:]:
        sub, _ = _complete(frame, [time, event, "score", MARKER_COLUMNS[m]])
        notes: list[str] = []
        result = None
        if len(sub):
            result = _attempt(notes, "paired bootstrap", lambda: compare_c(
                sub[time].to_numpy(float), sub[event].to_numpy(int), sub["score"].to_numpy(float),
                sub[MARKER_COLUMNS[m]].to_numpy(float), method="bootstrap", n_boot=n_boot, seed=seed))
        comparisons.append({"marker": m, "n": len(sub), "result": result, "note": "; ".join(notes) or None})
    fam = ComparisonFamily.bonferroni(family, [(f"signature vs {c['marker']}", None if c["result"] is None
                                          else c["result"].p_value) for c in comparisons], alpha)
    return Discrimination(figure, [float(x) for x in times], markers, comparisons, fam)


# ----------------------------------------------------------------------------------------------
# Kaplan-Meier with HR (Figure 4G-L), Cox tables (Table 2, S3-S5)
# ----------------------------------------------------------------------------------------------


def _curve(km) -> dict:
    """A Kaplan-Meier curve's points for plotting (step function at the distinct times)."""
    return {"time": km.time, "survival": km.survival, "lower": km.lower, "upper": km.upper,
            "n_risk": km.n_risk, "n_event": km.n_event}


def _km_groups(km) -> list[dict]:
    if km is None:
        return []
    rows = km.to_dict()["groups"]
    for row in rows:
        row["curve"] = _curve(km.curves[row["group"]])
    return rows


@dataclass
class PatientAnalysis(StatResult):
    """Common fields of an analysis on a set of patients: the study figure or table it
    stands for, the patients used (n), those dropped for a missing value (n_missing) and
    notes on what could not be computed."""

    figure: str
    n: int
    n_missing: int
    notes: list[str] = field(default_factory=list)


@dataclass
class GroupSurvival(PatientAnalysis):
    """Figure 4G-L: Kaplan-Meier per risk group, log-rank test and the Cox HR high vs low."""

    km: Any = None  #: KaplanMeierComparison
    hr: dict | None = None

    def to_dict(self) -> dict:
        return {"figure": self.figure, "n": self.n, "n_missing": self.n_missing, "groups": _km_groups(self.km),
                "logrank": None if self.km is None or self.km.logrank is None else self.km.logrank.to_dict(),
                "hr": self.hr, "notes": list(self.notes)}

    def table_row(self, set_name: str | None = None, endpoint: str | None = None) -> dict:
        row = _labels(set_name, endpoint) | {"n": self.n}
        for g in _km_groups(self.km):
            row[f"{g['group']}: n/events"] = f"{g['n']}/{g['events']}"
            row[f"{g['group']}: median"] = "NR" if g["median"] is None else f"{g['median']:.1f}"
        hr = self.hr or {}
        row["HR high vs low (95% CI)"] = _hr_text(hr.get("hr"), hr.get("hr_lower"), hr.get("hr_upper"))
        lr = None if self.km is None or self.km.logrank is None else self.km.logrank.p
        row["log-rank p"] = _p_text(lr)
        return row

    def summary(self) -> str:
        return _with_notes([self.table_row()], self.notes)


def _group_cox(frame, time: str, event: str, column: str, reference: str, notes: list[str]) -> dict | None:
    from pathomics_desktop.stats.cox import fit_cox

    fit = _attempt(notes, "Cox HR", lambda: fit_cox(frame, time, event, [column], categorical=[column],
                                                      reference={column: reference}))
    return None if fit is None else _hr_row(fit.table()[0])


def risk_group_survival(frame, time: str, event: str, *, figure: str, at: Sequence[float]) -> GroupSurvival:
    from pathomics_desktop.stats.km import km_comparison

    sub, dropped = _complete(frame, [time, event, RISK])
    res = GroupSurvival(figure, len(sub), dropped)
    if len(sub) == 0:
        res.notes.append("no patients")
        return res
    res.km = _attempt(res.notes, "Kaplan-Meier", lambda: km_comparison(
        sub[time].to_numpy(float), sub[event].to_numpy(int), sub[RISK].tolist(), at=at))
    res.hr = _group_cox(sub, time, event, RISK, RISK_LEVELS[0], res.notes)
    return res


@dataclass
class CoxTables(StatResult):
    """Table 2 / Tables S3-S5: univariate Cox of every variable and the risk group, then the
    multivariable model of those with LR p < threshold (the risk group always in it)."""

    figure: str
    threshold: float
    n: int
    univariate: list[dict] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    multivariable: Any = None  #: CoxFit
    forced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        from pathomics_desktop.stats.cox import COX_TERM_KEYS

        uni = [{"variable": r["variable"], "term": r["term"], "hr": r.get("hr"), "hr_lower": r.get("hr_lower"),
                "hr_upper": r.get("hr_upper"), "p": r.get("p"), "p_term_lr": r.get("p_term_lr"),
                "n": r.get("n"), "events": r.get("events"), "error": r.get("error")} for r in self.univariate]
        multi = None
        if self.multivariable is not None:
            fit = self.multivariable
            multi = {"n": fit.n, "events": fit.events, "n_missing": self.n - fit.n,
                     "terms": [{k: row[k] for k in COX_TERM_KEYS} for row in fit.table()]}
        return {"figure": self.figure, "threshold": self.threshold, "forced": list(self.forced), "n": self.n,
                "univariate": uni, "selected": list(self.selected), "multivariable": multi,
                "notes": list(self.notes)}

    def table_rows(self) -> list[dict]:
        multi = {} if self.multivariable is None else {r["term"]: r for r in self.multivariable.table()}
        rows = []
        for r in self.univariate:
            m = multi.get(r["term"])
            rows.append({"variable": r["variable"], "term": r["term"],
                         "univariate HR (95% CI)": "error" if r.get("error") else
                         _hr_text(r.get("hr"), r.get("hr_lower"), r.get("hr_upper")),
                         "p": _p_text(r.get("p")), "p (LR, variable)": _p_text(r.get("p_term_lr")),
                         "multivariable HR (95% CI)": "-" if m is None else
                         _hr_text(m["hr"], m["hr_lower"], m["hr_upper"]),
                         "p (multi)": "-" if m is None else _p_text(m["p"])})
        return rows

    def summary(self) -> str:
        return _with_notes(self.table_rows(), self.notes)


#: variables shown in the univariate table but never candidates of the multivariable model
NOT_MULTIVARIABLE = {"tnm_group": "TNM stage is a function of T, N and M stage (collinear with them): "
                                  "univariate only, not a multivariable candidate"}


def cox_tables(frame, time: str, event: str, *, figure: str, threshold: float) -> CoxTables:
    from pathomics_desktop.stats.cox import multivariable_from_screen, univariate_screen

    variables = clinical_variables()
    columns = [v.column for v in variables] + [RISK]
    candidates = [c for c in columns if c not in NOT_MULTIVARIABLE]
    sub, _ = _complete(frame, [time, event, RISK])
    res = CoxTables(figure, threshold, len(sub), forced=[RISK], notes=list(NOT_MULTIVARIABLE.values()))
    refs = _references(sub, variables) | {RISK: RISK_LEVELS[0]}
    out = _attempt(res.notes, "Cox models", lambda: multivariable_from_screen(
        sub, time, event, candidates, threshold=threshold, categorical=columns, reference=refs, forced=[RISK]))
    if out is None:
        return res
    extra = univariate_screen(sub, time, event, list(NOT_MULTIVARIABLE), categorical=columns, reference=refs)
    rows = out["univariate"] + extra
    res.univariate = [r for c in columns for r in rows if r["variable"] == c]
    res.selected, res.multivariable = out["selected"], out["multivariable"]
    return res


# ----------------------------------------------------------------------------------------------
# subgroups (Figures S2-S5), Table S6, interactions (Figure 5, Figure S6)
# ----------------------------------------------------------------------------------------------


@dataclass
class SubgroupForest(PatientAnalysis):
    """Figures S2-S5: HR of high vs low risk per subgroup level, n, events, interaction p."""

    analysis: Any = None  #: SubgroupAnalysis
    family: ComparisonFamily | None = None

    def rows(self) -> list[dict]:
        if self.analysis is None:
            return []
        out = []
        for row in self.analysis.rows:
            d = row.to_dict() | {"note": row.note}
            d["p_interaction_bonferroni"] = (None if row.p_interaction is None or self.family is None
                                             else self.family.adjusted(row.variable))
            out.append(d)
        return out

    def to_dict(self) -> dict:
        return {"figure": self.figure, "exposure": f"{RISK}=high", "n": self.n, "n_missing": self.n_missing,
                "rows": self.rows(), "notes": list(self.notes)}

    def table_rows(self) -> list[dict]:
        return [{"variable": r["variable"], "level": r["level"], "n": r["n"], "events": r["events"],
                 "HR high vs low (95% CI)": _hr_text(r["hr"], r["hr_lower"], r["hr_upper"]), "p": _p_text(r["p"]),
                 "p interaction": _p_text(r["p_interaction"]),
                 "p int. Bonf.": _p_text(r["p_interaction_bonferroni"])} for r in self.rows()]

    def summary(self) -> str:
        return _with_notes(self.table_rows(), self.notes)


def subgroup_forest(frame, time: str, event: str, *, figure: str, family: str, alpha: float) -> SubgroupForest:
    from pathomics_desktop.stats.subgroups import subgroup_analysis

    sub, dropped = _complete(frame, [time, event, RISK])
    res = SubgroupForest(figure, len(sub), dropped)
    variables = subgroup_variables()
    order = {v.column: _present(sub, v) for v in variables}
    res.analysis = _attempt(res.notes, "subgroups", lambda: subgroup_analysis(
        sub, time, event, RISK, [v.column for v in variables], reference=RISK_LEVELS[0], subgroup_order=order))
    if res.analysis is not None:
        res.family = ComparisonFamily.bonferroni(family, [(r.variable, r.p_interaction) for r in res.analysis.rows
                                                    if r.variable != "Overall"], alpha)
    return res


@dataclass
class Associations(PatientAnalysis):
    """Table S6: the clinicopathological variables by risk group (Table 1 machinery)."""

    table: Any = None  #: BaselineTable

    def to_dict(self) -> dict:
        d = self.table.to_dict() if self.table is not None else {"groups": [], "rows": []}
        return {"figure": self.figure, "n": self.n, "n_missing": self.n_missing, "groups": d["groups"],
                "rows": d["rows"], "notes": list(self.notes)}

    def table_rows(self) -> list[dict]:
        return [{"variable": r["variable"], "level": r["level"], **r["summary"], "p": _p_text(r["p"]),
                 "test": r["test"] or ""} for r in self.to_dict()["rows"]]

    def summary(self) -> str:
        return _with_notes(self.table_rows(), self.notes)


def associations(frame) -> Associations:
    from pathomics_desktop.stats.table1 import baseline_table

    sub, dropped = _complete(frame, [RISK])
    res = Associations("Table S6", len(sub), dropped)
    columns = [v.column for v in clinical_variables()]
    groups = [g for g in RISK_LEVELS if g in set(sub[RISK])]
    res.table = _attempt(res.notes, "Table S6", lambda: baseline_table(sub, RISK, columns, categorical=columns,
                                                                      group_order=groups))
    return res


@dataclass
class Interaction(StatResult):
    """An exposure's effect within each level of a modifier (Kaplan-Meier, log-rank, Cox HR of
    the exposure) and the exposure x modifier interaction LR p (Figure 5, Figure S6)."""

    figure: str
    exposure: str
    reference: str
    modifier: str
    n: int
    n_missing: int
    analysis: Any = None  #: SubgroupAnalysis (exposure within each modifier level)
    km: dict[str, Any] = field(default_factory=dict)  #: modifier level -> KaplanMeierComparison
    panels: dict[str, str] = field(default_factory=dict)  #: modifier level -> figure panel
    family: ComparisonFamily | None = None
    notes: list[str] = field(default_factory=list)

    def logrank_p(self, level: str) -> float | None:
        km = self.km.get(level)
        return None if km is None or km.logrank is None else float(km.logrank.p)

    def within(self) -> list[dict]:
        if self.analysis is None:
            return []
        rows = []
        for r in self.analysis.rows:
            if r.variable != self.modifier:
                continue
            rows.append({"level": r.level, "figure": self.panels.get(r.level), "n": r.n, "events": r.events,
                         "hr": r.hr, "hr_lower": r.hr_lower, "hr_upper": r.hr_upper, "p": r.p,
                         "logrank_p": self.logrank_p(r.level),
                         "logrank_p_bonferroni": None if self.family is None else
                         self.family.adjusted(self.test_label(r.level)),
                         "groups": _km_groups(self.km.get(r.level))})
        return rows

    def test_label(self, level: str) -> str:
        return f"{self.exposure} within {self.modifier}={level}"

    @property
    def p_interaction(self) -> float | None:
        if self.analysis is None:
            return None
        return next((r.p_interaction for r in self.analysis.rows if r.variable == self.modifier), None)

    def to_dict(self) -> dict:
        return {"figure": self.figure, "exposure": self.exposure, "reference": self.reference,
                "modifier": self.modifier, "n": self.n, "n_missing": self.n_missing,
                "p_interaction": self.p_interaction, "within": self.within(), "notes": list(self.notes)}

    def table_rows(self) -> list[dict]:
        term = self.analysis.exposure_term if self.analysis is not None else self.exposure
        rows = []
        for r in self.within():
            meds = {g["group"]: ("NR" if g["median"] is None else f"{g['median']:.1f}") for g in r["groups"]}
            rows.append({"figure": r["figure"] or "", "within": f"{self.modifier}={r['level']}", "n": r["n"],
                         "events": r["events"], "medians": ", ".join(f"{k}: {v}" for k, v in meds.items()),
                         f"HR {term} vs {self.reference} (95% CI)": _hr_text(r["hr"], r["hr_lower"], r["hr_upper"]),
                         "log-rank p": _p_text(r["logrank_p"]), "p Bonf.": _p_text(r["logrank_p_bonferroni"]),
                         "p interaction": _p_text(self.p_interaction)})
        return rows

    def summary(self) -> str:
        return _with_notes(self.table_rows(), self.notes)


def interaction(frame, time: str, event: str, *, exposure: str, reference: str, modifier: str,
                modifier_levels: Sequence[str], panels: dict[str, str], figure: str) -> Interaction:
    """Exposure (``reference`` vs the other level) within each level of ``modifier``."""
    from pathomics_desktop.stats.km import km_comparison
    from pathomics_desktop.stats.subgroups import subgroup_analysis

    sub, dropped = _complete(frame, [time, event, exposure, modifier])
    res = Interaction(figure, exposure, reference, modifier, len(sub), dropped, panels=dict(panels))
    levels = [lvl for lvl in modifier_levels if lvl in set(sub[modifier].astype(str))]
    if not levels:
        res.notes.append(f"no patients with {exposure} and {modifier}")
        return res
    res.analysis = _attempt(res.notes, "interaction", lambda: subgroup_analysis(
        sub, time, event, exposure, [modifier], reference=reference, subgroup_order={modifier: levels}))
    for lvl in levels:
        part = sub[sub[modifier].astype(str) == lvl]
        res.km[lvl] = _attempt(res.notes, f"Kaplan-Meier in {modifier}={lvl}", lambda part=part: km_comparison(
            part[time].to_numpy(float), part[event].to_numpy(int), part[exposure].tolist()))
    return res


@dataclass
class ChemotherapyBenefit(StatResult):
    """Figure S6: adjuvant chemotherapy vs none on RFS within the risk groups and within the
    CA19-9 groups at its RFS-optimal cut, optionally from a landmark time on."""

    landmark: float | None
    n_before: int
    excluded_event: int
    excluded_censored: int
    by_risk_group: Interaction
    by_ca19_9_cut: Interaction | None
    family: ComparisonFamily

    def to_dict(self) -> dict:
        return {"figure": "Figure S6", "landmark_months": self.landmark, "n_before": self.n_before,
                "excluded_event_before_landmark": self.excluded_event,
                "excluded_censored_before_landmark": self.excluded_censored,
                "by_risk_group": self.by_risk_group.to_dict(),
                "by_ca19_9_cut": None if self.by_ca19_9_cut is None else self.by_ca19_9_cut.to_dict()}

    def parts(self) -> list[Interaction]:
        return [p for p in (self.by_risk_group, self.by_ca19_9_cut) if p is not None]

    def summary(self) -> str:
        rows = [r for part in self.parts() for r in part.table_rows()]
        landmark = "" if self.landmark is None else (
            f"landmark {self.landmark:g} months: {self.excluded_event} patients with an event and "
            f"{self.excluded_censored} censored at or before it left out\n")
        return landmark + _with_notes(rows, [n for part in self.parts() for n in part.notes])


def chemotherapy_benefit(frame, *, landmark: float | None, ca19_9_cut: float | None, family: str,
                         alpha: float) -> ChemotherapyBenefit:
    time, event = ENDPOINT_COLUMNS["rfs"]
    base, _ = _complete(frame, [time, event])
    data, ex_event, ex_cens = landmark_frame(base, time, event, landmark)
    order = ("high", "low")
    by_risk = interaction(data, time, event, exposure="adjuvant_chemotherapy", reference="no", modifier=RISK,
                          modifier_levels=order, panels={lvl: FIGS6[(RISK, lvl)] for lvl in order},
                          figure="Figure S6A-B")
    by_ca = None
    if ca19_9_cut is not None:
        data = data.copy()
        num = data["ca19_9"].astype(float)
        data["ca19_9_rfs_group"] = np.where(num.isna(), None, np.where(num > ca19_9_cut, "high", "low"))
        by_ca = interaction(data, time, event, exposure="adjuvant_chemotherapy", reference="no",
                            modifier="ca19_9_rfs_group", modifier_levels=order,
                            panels={lvl: FIGS6[("ca19_9_rfs_group", lvl)] for lvl in order}, figure="Figure S6C-D")
    parts = [p for p in (by_risk, by_ca) if p is not None]
    tests = [(p.test_label(lvl), p.logrank_p(lvl)) for p in parts for lvl in p.km]
    fam = ComparisonFamily.bonferroni(family, tests, alpha)
    for p in parts:
        p.family = fam
    return ChemotherapyBenefit(landmark, len(base), ex_event, ex_cens, by_risk, by_ca, fam)


# ----------------------------------------------------------------------------------------------
# center heterogeneity (mixed-effects Cox, per-center HRs, meta-analysis)
# ----------------------------------------------------------------------------------------------


@dataclass
class CenterHeterogeneity(StatResult):
    """All sets together: frailty Cox (random center intercept), the HR high vs low in every
    center and their random-effects (REML) meta-analysis of log HRs."""

    n: int
    n_missing: int
    frailty: Any = None  #: FrailtyFit
    centers: list[dict] = field(default_factory=list)
    meta: Any = None  #: MetaResult
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        mixed = None
        if self.frailty is not None:
            row = self.frailty.table()[0]
            mixed = {**_hr_row(row), "center_variance": float(self.frailty.variance),
                     "centers": list(self.frailty.centers)}
        meta = None
        if self.meta is not None:
            m = self.meta
            meta = {"method": m.method, "k": m.k, **m.to_dict(), "hr": float(np.exp(m.estimate)),
                    "hr_lower": float(np.exp(m.ci_lower)), "hr_upper": float(np.exp(m.ci_upper)),
                    "pi_hr_lower": float(np.exp(m.pi_lower)), "pi_hr_upper": float(np.exp(m.pi_upper))}
        return {"figure": "Section 2.4: mixed-effects Cox and center meta-analysis", "n": self.n,
                "n_missing": self.n_missing, "mixed_effects": mixed, "centers": list(self.centers), "meta": meta,
                "notes": list(self.notes)}

    def summary(self) -> str:
        d = self.to_dict()
        rows = [{"center": c["center"], "role": c["role"] or "", "n": c["n"], "events": c["events"],
                 "HR high vs low (95% CI)": _hr_text(c["hr"], c["hr_lower"], c["hr_upper"]), "p": _p_text(c["p"])}
                for c in d["centers"]]
        lines = [format_rows(rows)]
        if d["meta"]:
            m = d["meta"]
            lines.append(f"random-effects meta-analysis (REML, k = {m['k']}): "
                         f"HR {_hr_text(m['hr'], m['hr_lower'], m['hr_upper'])}, "
                         f"I^2 = {m['i2']:.1f}%, Q = {m['q']:.3f} (p = {_p_text(m['q_p'])}), tau^2 = {m['tau2']:.4f}, "
                         f"prediction interval {m['pi_hr_lower']:.3f}-{m['pi_hr_upper']:.3f}")
        if d["mixed_effects"]:
            x = d["mixed_effects"]
            lines.append(f"mixed-effects Cox (random center intercept): "
                         f"HR {_hr_text(x['hr'], x['hr_lower'], x['hr_upper'])}, "
                         f"p = {_p_text(x['p'])}, center variance = {x['center_variance']:.4f}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def center_heterogeneity(frame, time: str, event: str) -> CenterHeterogeneity:
    from pathomics_desktop.stats.cox import fit_cox
    from pathomics_desktop.stats.frailty import fit_frailty
    from pathomics_desktop.stats.levels import sorted_levels
    from pathomics_desktop.stats.meta import meta_analysis

    sub, dropped = _complete(frame, [time, event, RISK, "center"])
    res = CenterHeterogeneity(len(sub), dropped)
    sub = sub.assign(center=sub["center"].astype(str))
    res.frailty = _attempt(res.notes, "mixed-effects Cox", lambda: fit_frailty(
        sub, time, event, [RISK], "center", categorical=[RISK], reference={RISK: RISK_LEVELS[0]}))
    roles = dict(zip(sub["center"], sub["center_role"])) if "center_role" in sub.columns else {}
    log_hr, se = [], []
    for center in sorted_levels(sub["center"].tolist()):
        part = sub[sub["center"] == center]
        notes: list[str] = []
        fit = _attempt(notes, f"center {center}", lambda part=part: fit_cox(
            part, time, event, [RISK], categorical=[RISK], reference={RISK: RISK_LEVELS[0]}))
        row = None if fit is None else fit.table()[0]
        res.centers.append({"center": center, "role": roles.get(center), "n": len(part),
                            "events": int(part[event].sum()), "log_hr": None if row is None else row["coef"],
                            "se": None if row is None else row["se"], "hr": None if row is None else row["hr"],
                            "hr_lower": None if row is None else row["hr_lower"],
                            "hr_upper": None if row is None else row["hr_upper"],
                            "p": None if row is None else row["p"], "note": "; ".join(notes) or None})
        if row is not None and np.isfinite(row["se"]) and row["se"] > 0:
            log_hr.append(row["coef"])
            se.append(row["se"])
    res.meta = _attempt(res.notes, "meta-analysis", lambda: meta_analysis(log_hr, se, method="reml"))
    return res


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------


@dataclass
class SetReport(StatResult):
    """One signature, endpoint and set."""

    set: str
    endpoint: str
    n: int
    events: int
    discrimination: Discrimination
    km: GroupSurvival
    cox: CoxTables
    subgroups: SubgroupForest
    ca19_9: Interaction
    chemotherapy: ChemotherapyBenefit | None = None

    def families(self) -> list[ComparisonFamily]:
        out = [self.discrimination.family, self.subgroups.family, self.ca19_9.family]
        if self.chemotherapy is not None:
            out.append(self.chemotherapy.family)
        return [f for f in out if f is not None]

    def to_dict(self) -> dict:
        return {"set": self.set, "n": self.n, "events": self.events, "discrimination": self.discrimination.to_dict(),
                "km": self.km.to_dict(), "cox": self.cox.to_dict(), "subgroups": self.subgroups.to_dict(),
                "ca19_9_interception": self.ca19_9.to_dict(),
                "chemotherapy_benefit": None if self.chemotherapy is None else self.chemotherapy.to_dict()}

    def summary(self) -> str:
        ep = self.endpoint.upper()
        parts = [f"{self.set} set, {ep}: {self.n} patients, {self.events} events",
                 _section(f"{self.discrimination.figure}: C-index and td-AUC", self.discrimination.summary()),
                 _section(f"{self.km.figure}: risk groups", self.km.summary()),
                 _section(f"{self.cox.figure}: Cox models", self.cox.summary()),
                 _section(f"{self.subgroups.figure}: subgroups", self.subgroups.summary()),
                 _section("Figure 5: CA19-9 within the risk groups", self.ca19_9.summary())]
        if self.chemotherapy is not None:
            parts.append(_section("Figure S6: chemotherapy benefit", self.chemotherapy.summary()))
        return "\n\n".join(parts)


@dataclass
class EndpointReport(StatResult):
    endpoint: str
    sets: dict[str, SetReport]
    centers: CenterHeterogeneity

    def to_dict(self) -> dict:
        time, event = ENDPOINT_COLUMNS[self.endpoint]
        return {"endpoint": self.endpoint, "time_column": time, "event_column": event,
                "auc_times": list(AUC_TIMES[self.endpoint]),
                "sets": {s: r.to_dict() for s, r in self.sets.items()}, "center_heterogeneity": self.centers.to_dict()}

    def summary(self) -> str:
        return "\n\n".join([r.summary() for r in self.sets.values()]
                           + [_section(f"Center heterogeneity, {self.endpoint.upper()} (all sets)",
                                       self.centers.summary())])


@dataclass
class SignatureReport(StatResult):
    name: str
    fit_endpoint: str
    cut: float
    n_scored: int
    n_without_score: int
    associations: dict[str, Associations]
    endpoints: dict[str, EndpointReport]

    def to_dict(self) -> dict:
        return {"name": self.name, "fit_endpoint": self.fit_endpoint, "cut": self.cut,
                "rule": "high risk: score > cut (higher score = higher risk)", "n_scored": self.n_scored,
                "n_without_score": self.n_without_score,
                "associations": {s: a.to_dict() for s, a in self.associations.items()},
                "endpoints": {e: r.to_dict() for e, r in self.endpoints.items()}}

    def summary(self) -> str:
        head = (f"Signature {self.name!r} (fitted on {self.fit_endpoint.upper()}; cut {self.cut:.4g}, "
                f"high risk: score > cut); {self.n_scored} patients scored, {self.n_without_score} without a score")
        parts = [head, "=" * len(head)]
        km, km_notes = [], []
        for ep, er in self.endpoints.items():
            s2, notes = [], []
            for s, sr in er.sets.items():
                s2 += sr.discrimination.table_rows(s, ep)
                notes += [f"{s}: {n}" for n in sr.discrimination.notes()]
                km.append(sr.km.table_row(s, ep))
                km_notes += [f"{s}, {ep.upper()}: {n}" for n in sr.km.notes]
            panels = "Figure 4A-C" if ep == "os" else "Figure 4D-F"
            parts.append(_section(f"Table S2 / {panels}: {ep.upper()} C-index and time-dependent AUC (bootstrap "
                                  "95% CI); dC = marker C minus signature C (paired bootstrap)",
                                  _with_notes(s2, notes)))
        parts.append(_section("Figure 4G-L: risk groups (Kaplan-Meier medians in months, Cox HR, log-rank)",
                              _with_notes(km, km_notes)))
        for ep, er in self.endpoints.items():
            for s, sr in er.sets.items():
                cox = sr.cox
                title = (f"{cox.figure}: Cox models, {ep.upper()}, {s} set (n = {cox.n}; multivariable: "
                         f"LR p < {cox.threshold:g} in the univariate model, risk group always in)")
                parts.append(_section(title, cox.summary()))
        for ep, er in self.endpoints.items():
            parts.append(_section(f"Center heterogeneity, {ep.upper()} (all sets)", er.centers.summary()))
        for ep, er in self.endpoints.items():
            for s, sr in er.sets.items():
                f = sr.subgroups
                parts.append(_section(f"{f.figure}: subgroups, HR high vs low risk, {ep.upper()}, {s} set",
                                      f.summary()))
        for s, a in self.associations.items():
            parts.append(_section(f"Table S6: clinicopathological variables by risk group, {s} set (n = {a.n})",
                                  a.summary()))
        rows5, rows6, notes5, notes6 = [], [], [], []
        for ep, er in self.endpoints.items():
            for s, sr in er.sets.items():
                rows5 += [_labels(s, ep) | r for r in sr.ca19_9.table_rows()]
                notes5 += [f"{s}, {ep.upper()}: {n}" for n in sr.ca19_9.notes]
                if sr.chemotherapy is not None:
                    for part in sr.chemotherapy.parts():
                        rows6 += [_labels(s, None) | r for r in part.table_rows()]
                        notes6 += [f"{s}: {n}" for n in part.notes]
        parts.append(_section(f"Figure 5: CA19-9 >={CA19_9_THRESHOLD:g} vs <{CA19_9_THRESHOLD:g} U/mL within the "
                              "risk groups", _with_notes(rows5, notes5)))
        landmark = next((sr.chemotherapy.landmark for er in self.endpoints.values() for sr in er.sets.values()
                         if sr.chemotherapy is not None), None)
        parts.append(_section("Figure S6: adjuvant chemotherapy (yes vs no) on RFS within the risk groups and the "
                              "CA19-9 groups at the RFS-optimal cut"
                              + (f", landmark {landmark:g} months" if landmark is not None else ""),
                              _with_notes(rows6, notes6)))
        return "\n\n".join(parts)

    def families(self) -> list[ComparisonFamily]:
        return [f for er in self.endpoints.values() for sr in er.sets.values() for f in sr.families()]


@dataclass
class AnalysisReport(StatResult):
    """The whole report: settings, patients, the CA19-9 RFS cut, one :class:`SignatureReport`
    per signature and the Bonferroni families."""

    settings: dict
    patients: dict
    synthetic: bool
    ca19_9_cut: dict
    signatures: dict[str, SignatureReport]

    def families(self) -> list[ComparisonFamily]:
        return [f for s in self.signatures.values() for f in s.families()]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "synthetic": self.synthetic, "settings": dict(self.settings),
                "patients": dict(self.patients), "ca19_9_rfs_cut": dict(self.ca19_9_cut),
                "signatures": {n: s.to_dict() for n, s in self.signatures.items()},
                "multiple_comparisons": [f.to_dict() for f in self.families()]}

    def summary(self) -> str:
        s = self.settings
        title = "Pathomics signature report (the study's analysis plan)"
        head = [("SYNTHETIC DATA - " if self.synthetic else "") + title,
                "patients: " + ", ".join(f"{k} {v}" for k, v in self.patients.items()),
                f"bootstrap replicates {s['n_boot']} (seed {s['seed']}); univariate screen LR p < {s['threshold']:g}; "
                f"Bonferroni alpha {s['alpha']:g}; landmark "
                + ("none" if s["landmark_months"] is None else f"{s['landmark_months']:g} months"),
                "CA19-9 RFS-optimal cut (X-tile, training set): "
                + ("-" if self.ca19_9_cut["value"] is None else f"{self.ca19_9_cut['value']:g} U/mL (high: > cut)")
                + (f"; note: {self.ca19_9_cut['note']}" if self.ca19_9_cut.get("note") else "")]
        parts = ["\n".join(head)]
        parts += [sig.summary() for sig in self.signatures.values()]
        mc = [r for f in self.families() for r in f.rows()]
        parts.append(_section("Multiple comparisons (Bonferroni within each family)", format_rows(mc)))
        return "\n\n".join(parts)


def ca19_9_rfs_cut(frame, *, minprop: float = 0.1) -> dict:
    """The RFS-optimal CA19-9 cut: X-tile single cut on the training set (low: <= cut)."""
    from pathomics_desktop.stats.cutpoint import xtile

    time, event = ENDPOINT_COLUMNS["rfs"]
    train, _ = _complete(frame[frame["split"] == "training"], [time, event, "ca19_9"])
    out = {"value": None, "set": "training", "n": len(train), "chisq": None, "p_raw": None,
           "rule": "high: CA19-9 > cut (U/mL)", "note": None}
    notes: list[str] = []
    res = None
    if len(train):
        res = _attempt(notes, "CA19-9 cut", lambda: xtile(train[time].to_numpy(float), train[event].to_numpy(int),
                                                          train["ca19_9"].to_numpy(float), minprop=minprop, n_perm=0))
    else:
        notes.append("no training patients with CA19-9 and RFS")
    if res is not None:
        out.update(value=float(res.cutpoint), chisq=float(res.statistic), p_raw=float(res.p_raw))
    out["note"] = "; ".join(notes) or None
    return out


def _set_report(frame, set_name: str, endpoint: str, *, n_boot: int, seed: int, threshold: float, alpha: float,
                landmark: float | None, ca_cut: float | None, label: str) -> SetReport:
    time, event = ENDPOINT_COLUMNS[endpoint]
    times = AUC_TIMES[endpoint]
    part = frame[frame["split"] == set_name].reset_index(drop=True)
    tag = f"{label}, {endpoint.upper()}, {set_name}"
    disc = discrimination(part, time, event, times, figure=f"{FIG4_ROC[endpoint][set_name]}; Table S2",
                          family=f"{FAMILIES['c_index']} ({tag})", n_boot=n_boot, seed=seed, alpha=alpha)
    km = risk_group_survival(part, time, event, figure=FIG4_KM[endpoint][set_name], at=times)
    cox = cox_tables(part, time, event, figure=COX_TABLES[set_name], threshold=threshold)
    forest = subgroup_forest(part, time, event, figure=SUBGROUP_FIGURES.get((endpoint, set_name),
                                                                           "not in the study (as Figures S2-S5)"),
                             family=f"{FAMILIES['subgroups']} ({tag})", alpha=alpha)
    ca_levels = next(v.levels for v in clinical_variables() if v.column == "ca19_9_group")
    ca = interaction(part, time, event, exposure="ca19_9_group", reference=ca_levels[0], modifier=RISK,
                     modifier_levels=RISK_LEVELS, panels={lvl: FIG5[(endpoint, lvl)] for lvl in RISK_LEVELS},
                     figure="Figure 5")
    ca.family = ComparisonFamily.bonferroni(f"{FAMILIES['ca19_9']} ({tag})",
                                      [(ca.test_label(lvl), ca.logrank_p(lvl)) for lvl in ca.km], alpha)
    chemo = None
    if endpoint == "rfs":
        chemo = chemotherapy_benefit(part, landmark=landmark, ca19_9_cut=ca_cut,
                                     family=f"{FAMILIES['chemotherapy']} ({label}, RFS, {set_name})", alpha=alpha)
    valid, _ = _complete(part, [time, event])
    return SetReport(set_name, endpoint, len(valid), int(valid[event].sum()) if len(valid) else 0,
                     disc, km, cox, forest, ca, chemo)


def build_report(data: ReportData, *, n_boot: int = DEFAULT_BOOT, seed: int = 0, threshold: float = 0.05,
                 alpha: float = 0.05, landmark: float | None = None,
                 progress: Callable[[float, str], None] = lambda f, m: None) -> AnalysisReport:
    """Run the analysis plan on :class:`ReportData` (see the module docstring)."""
    if n_boot < 10:
        raise UserError(f"the bootstrap needs at least 10 replicates, got {n_boot}")
    if not 0 < threshold <= 1:
        raise UserError(f"the screening threshold must be in (0, 1], got {threshold}")
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be in (0, 1), got {alpha}")
    if landmark is not None and not landmark >= 0:
        raise UserError(f"the landmark time must be >= 0 months, got {landmark}")
    frame = data.frame
    cut = ca19_9_rfs_cut(frame)
    settings = {"n_boot": n_boot, "seed": seed, "threshold": threshold, "alpha": alpha, "landmark_months": landmark,
                "ca19_9_threshold": CA19_9_THRESHOLD, "age_threshold": AGE_THRESHOLD,
                "auc_times": {k: list(v) for k, v in AUC_TIMES.items()}}
    patients = {s: int((frame["split"] == s).sum()) for s in SETS}
    synthetic = bool(frame["synthetic"].fillna(False).astype(bool).any()) if "synthetic" in frame.columns else False
    reports = {}
    steps = len(data.signatures) * len(ENDPOINT_COLUMNS) * len(SETS)
    done = 0
    for name, signature in data.signatures.items():
        sig_frame, without = data.signature_frame(name)
        assoc = {s: associations(sig_frame[sig_frame["split"] == s].reset_index(drop=True)) for s in SETS}
        endpoints = {}
        for ep in ENDPOINT_COLUMNS:
            sets = {}
            for s in SETS:
                progress(done / steps, f"{name}: {ep.upper()}, {s} set")
                sets[s] = _set_report(sig_frame, s, ep, n_boot=n_boot, seed=seed, threshold=threshold, alpha=alpha,
                                      landmark=landmark, ca_cut=cut["value"], label=name)
                done += 1
            endpoints[ep] = EndpointReport(ep, sets, center_heterogeneity(sig_frame, *ENDPOINT_COLUMNS[ep]))
        reports[name] = SignatureReport(name, str(signature.get("endpoint", "")), float(signature["cut"]["value"]),
                                        len(sig_frame), without, assoc, endpoints)
    progress(1.0, "report done")
    return AnalysisReport(settings, patients, synthetic, cut, reports)


def signature_report(project, names: Sequence[str], **options) -> AnalysisReport:
    """Load the data of ``names`` and build the report (options as :func:`build_report`)."""
    return build_report(load_report_data(project, names), **options)


def write_report(report: AnalysisReport, out_dir) -> tuple[Any, Any]:
    """Write ``report.json`` and ``report.txt`` into ``out_dir`` (each atomically)."""
    import json
    from pathlib import Path

    from pathomics_desktop.jobs.core import atomic_path

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    text_json = json.dumps(clean_json(report.to_dict()), indent=1, allow_nan=False)
    text = report.summary() + "\n"
    json_path, txt_path = out / "report.json", out / "report.txt"
    with atomic_path(json_path) as tmp:
        tmp.write_text(text_json, encoding="utf-8")
    with atomic_path(txt_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return json_path, txt_path
