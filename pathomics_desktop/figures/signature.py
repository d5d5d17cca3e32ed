"""The signature panel: how a frozen signature performs on the filtered cohort. Qt-free; the
GUI's signature view and the publication exports draw the same :class:`SignaturePanel`.

Every number comes from the report's own analyses (:mod:`pathomics_desktop.signature.report`),
called on the filtered cohort joined with the signature's scores (risk group: score > the
frozen cut), so the panel and ``pathomics signature report`` agree on the same patients:

* per set: Harrell's C and the time-dependent AUC at the report's times with bootstrap CIs
  (:func:`~pathomics_desktop.signature.report.marker_discrimination`, ``n_boot`` resamples);
  Kaplan-Meier per risk group with n, events, medians, log-rank p and the Cox HR high vs low
  (:func:`~pathomics_desktop.signature.report.risk_group_survival`);
* center heterogeneity over every filtered set together: per-center HR high vs low, their
  random-effects (REML) meta-analysis with I^2, Q, tau^2 and the prediction interval, and the
  Cox model with a Gaussian random center intercept
  (:func:`~pathomics_desktop.signature.report.center_heterogeneity`);
* CA19-9 interception (Figure 5): CA19-9 >= 200 vs < 200 U/mL within each risk group and the
  interaction p (:func:`~pathomics_desktop.signature.report.interaction`, Bonferroni over the
  within-group log-rank tests);
* chemotherapy benefit (Figure S6, RFS): adjuvant chemotherapy within the risk groups and
  within the CA19-9 groups at the RFS-optimal CA19-9 cut of the filtered training set
  (:func:`~pathomics_desktop.signature.report.chemotherapy_benefit`,
  :func:`~pathomics_desktop.signature.report.ca19_9_rfs_cut`).

``params``: ``project`` (the project folder, required), ``name`` (default: the first
signature by name), ``endpoint`` (default: the signature's own), ``n_boot`` (50, at least
10), ``seed`` (0), ``landmark`` (months, none by default), ``alpha`` (0.05).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathomics_desktop.errors import UserError

DEFAULT_BOOT = 50
NO_SIGNATURE = ("No signature has been fitted in this project. Fit one from a model run's predictions with "
                "`pathomics signature fit --model RUN --endpoint os` (or Jobs > New job > Signature fit), "
                "then score the patients with `pathomics signature apply NAME --all`.")


def list_signatures(project_root: str | Path) -> list[dict[str, Any]]:
    """The project's current frozen signatures (``signature/<name>.json``): name, endpoint,
    version and cut, sorted by name."""
    import json

    folder = Path(project_root) / "signature"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if not str(data.get("format", "")).startswith("pathomics-signature/"):
            continue
        cut = data.get("cut") or {}
        out.append({"name": path.stem, "endpoint": data.get("endpoint"), "version": data.get("version", 1),
                    "cut": cut.get("value"), "cut_method": cut.get("method")})
    return out


@dataclass
class SetPanel:
    """One data set of the panel: discrimination and the risk-group survival."""

    set: str
    discrimination: Any  #: report.MarkerDiscrimination of the score
    survival: Any  #: report.GroupSurvival
    ca19_9: Any  #: report.Interaction (Figure 5)
    chemotherapy: Any = None  #: report.ChemotherapyBenefit (Figure S6), RFS

    def to_dict(self) -> dict[str, Any]:
        return {"set": self.set, "discrimination": self.discrimination.to_dict(),
                "km": self.survival.to_dict(), "km_row": self.survival.table_row(),
                "ca19_9_interception": self.ca19_9.to_dict(),
                "chemotherapy_benefit": None if self.chemotherapy is None else self.chemotherapy.to_dict()}


@dataclass
class SignaturePanel:
    """What the signature view shows (see the module docstring)."""

    name: str
    version: int
    fit_endpoint: str
    endpoint: str
    cut: float
    cut_method: str
    n_scored: int
    n_without_score: int
    auc_times: list[float]
    n_boot: int
    sets: list[SetPanel]
    centers: Any  #: report.CenterHeterogeneity
    ca19_9_rfs_cut: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def set_panel(self, name: str) -> SetPanel:
        return next(s for s in self.sets if s.set == name)

    def discrimination_rows(self) -> list[dict[str, Any]]:
        """One row per set: n, C (95% CI) and AUC(t) (95% CI) at each time."""
        rows = []
        for s in self.sets:
            d = s.discrimination
            c = d.c_index
            row = {"set": s.set, "n": d.n, "c": None if c is None else c.c,
                   "c_lower": None if c is None else c.ci_lower, "c_upper": None if c is None else c.ci_upper}
            for t in self.auc_times:
                a = d.auc_at(t)
                row[f"auc_{t:g}"] = a["auc"]
                row[f"auc_{t:g}_lower"], row[f"auc_{t:g}_upper"] = a["ci_lower"], a["ci_upper"]
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        from pathomics_desktop.stats.data import clean_json

        return clean_json({
            "name": self.name, "version": self.version, "fit_endpoint": self.fit_endpoint,
            "endpoint": self.endpoint, "cut": self.cut, "cut_method": self.cut_method,
            "rule": "high risk: score > cut", "n_scored": self.n_scored, "n_without_score": self.n_without_score,
            "auc_times": list(self.auc_times), "n_boot": self.n_boot,
            "discrimination": self.discrimination_rows(),
            "sets": {s.set: s.to_dict() for s in self.sets},
            "center_heterogeneity": self.centers.to_dict(), "ca19_9_rfs_cut": dict(self.ca19_9_rfs_cut),
            "notes": list(self.notes)})


def signature_frame(project, name: str, frame):
    """The filtered cohort with signature ``name``'s ``score`` and ``risk_group`` (patients
    without a score left out), the number left out, and the frozen signature."""
    from pathomics_desktop.signature import report
    from pathomics_desktop.signature.fit import load_signature

    signature = load_signature(project, name)
    scores = report._read_scores(project, name, signature)
    data = report.ReportData(frame.assign(study_id=frame["study_id"].astype(str)), {name: signature},
                             {name: scores})
    merged, without = data.signature_frame(name)
    return merged, without, signature


def _ca19_9_interception(part, endpoint: str, set_name: str, alpha: float, label: str):
    """Figure 5 of one set, as the report's set analysis makes it (Bonferroni within the set)."""
    from pathomics_desktop.signature import report as r

    time, event = r.ENDPOINT_COLUMNS[endpoint]
    levels = next(v.levels for v in r.clinical_variables() if v.column == "ca19_9_group")
    result = r.interaction(part, time, event, exposure="ca19_9_group", reference=levels[0], modifier=r.RISK,
                           modifier_levels=r.RISK_LEVELS, figure="Figure 5",
                           panels={lvl: r.FIG5[(endpoint, lvl)] for lvl in r.RISK_LEVELS})
    tests = [(result.test_label(lvl), result.logrank_p(lvl)) for lvl in result.km]
    result.family = r.ComparisonFamily.bonferroni(f"{r.FAMILIES['ca19_9']} ({label})", tests, alpha)
    return result


def build_signature_panel(source, frame, params: dict[str, Any]) -> SignaturePanel:
    """The signature panel of the filtered cohort (see the module docstring)."""
    from pathomics_desktop.project import Project
    from pathomics_desktop.signature import report as r

    root = params.get("project")
    if not root:
        raise UserError("the signature panel needs the project folder (params['project'])")
    known = list_signatures(root)
    if not known:
        raise UserError(NO_SIGNATURE)
    name = str(params.get("name") or known[0]["name"])
    project = Project.load(Path(root))
    merged, without, signature = signature_frame(project, name, frame)
    if len(merged) == 0:
        raise UserError(f"No patient in the cohort filter has a score of signature {name!r}. Widen the filter, "
                        f"or score the patients with `pathomics signature apply {name} --all`.")
    endpoint = str(params.get("endpoint") or signature.get("endpoint") or "os")
    if endpoint not in r.ENDPOINT_COLUMNS:
        raise UserError(f"endpoint must be 'os' or 'rfs', got {endpoint!r}")
    n_boot = int(params.get("n_boot") or DEFAULT_BOOT)
    if n_boot < 10:
        raise UserError(f"the bootstrap needs at least 10 resamples, got {n_boot}")
    seed, alpha = int(params.get("seed") or 0), float(params.get("alpha") or 0.05)
    landmark = params.get("landmark")
    time, event = r.ENDPOINT_COLUMNS[endpoint]
    times = r.AUC_TIMES[endpoint]
    ca_cut = r.ca19_9_rfs_cut(merged)
    sets = []
    for set_name in [s for s in r.SETS if (merged["split"] == s).any()]:
        part = merged[merged["split"] == set_name].reset_index(drop=True)
        label = f"{name}, {endpoint.upper()}, {set_name}"
        sets.append(SetPanel(
            set=set_name,
            discrimination=r.marker_discrimination(part, time, event, "signature", r.MARKER_COLUMNS["signature"],
                                                   times, n_boot=n_boot, seed=seed),
            survival=r.risk_group_survival(part, time, event, figure=r.FIG4_KM[endpoint][set_name], at=times),
            ca19_9=_ca19_9_interception(part, endpoint, set_name, alpha, label),
            chemotherapy=r.chemotherapy_benefit(
                part, landmark=None if landmark is None else float(landmark), ca19_9_cut=ca_cut["value"],
                family=f"{r.FAMILIES['chemotherapy']} ({name}, RFS, {set_name})", alpha=alpha)))
    notes = [] if sets else ["no patient of the filter is in the training, internal or external set"]
    cut = signature.get("cut") or {}
    return SignaturePanel(
        name=name, version=int(signature.get("version") or 1), fit_endpoint=str(signature.get("endpoint")),
        endpoint=endpoint, cut=float(cut.get("value")), cut_method=str(cut.get("method") or ""),
        n_scored=len(merged), n_without_score=without, auc_times=[float(t) for t in times], n_boot=n_boot,
        sets=sets, centers=r.center_heterogeneity(merged, time, event), ca19_9_rfs_cut=ca_cut, notes=notes)
