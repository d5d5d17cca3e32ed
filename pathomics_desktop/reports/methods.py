"""The methods paragraph, written from what was actually run, and the REMARK and TRIPOD
checklists filled in with where each item is answered.

Sources, never typed by hand: the project settings (tile size, target MPP, tissue threshold,
ROI classes), the model run's ``run.json`` (backbone, input size, stain normalisation,
training settings and tile counts), the frozen signature JSON (features and their layout,
every selection step with its threshold and counts, LASSO folds, rule and lambda, the cut's
method and value, the permutation p, seeds, software versions and content hashes) and the
tests the analysis plan runs (:mod:`pathomics_desktop.signature.report`). A fact that is not
in the project is written as "not recorded", never guessed.

REMARK: McShane et al., J Natl Cancer Inst 2005;97:1180-4 (20 items). TRIPOD: Collins et al.,
BMJ 2015;350:g7594 (22 main items; items 10c, 10e, 12, 13c, 17, 19a apply to validation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pathomics_desktop.errors import UserError

NOT_RECORDED = "not recorded"


def _g(value: Any, digits: int = 3) -> str:
    if value is None:
        return NOT_RECORDED
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


@dataclass
class MethodsText:
    """The paragraphs (``title``, ``text``) and the facts they were written from."""

    paragraphs: list[tuple[str, str]]
    facts: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return "\n\n".join(f"{title}. {body}" for title, body in self.paragraphs)

    def markdown(self) -> str:
        return "\n\n".join(f"**{title}.** {body}" for title, body in self.paragraphs) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"paragraphs": [{"title": t, "text": b} for t, b in self.paragraphs], "facts": self.facts}


def _load_run(project, run: str | None) -> dict[str, Any] | None:
    if not run:
        return None
    path = project.root / "models" / run / "run.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def _stain_method(run: dict[str, Any] | None) -> str:
    stain = (run or {}).get("stain")
    if stain is None:
        return NOT_RECORDED
    return {"macenko": "Macenko stain normalisation (Macenko et al. 2009) to the project reference",
            "none": "no stain normalisation"}.get(stain, str(stain))


def methods_text(project, signatures: Sequence[str]) -> MethodsText:
    """The methods paragraphs for the frozen ``signatures`` of ``project``."""
    from pathomics_desktop.signature.fit import load_signature

    if not signatures:
        raise UserError("name at least one signature for the methods text")
    sigs = {name: load_signature(project, name) for name in signatures}
    first = next(iter(sigs.values()))
    run = _load_run(project, first.get("run"))
    tiling = project.settings.get("tiling", {})
    slides = project.settings.get("slides", {})
    facts: dict[str, Any] = {
        "tile_size": tiling.get("tile_size"), "target_mpp": tiling.get("target_mpp"),
        "tissue_threshold": tiling.get("tissue_threshold"), "roi_classes": list(slides.get("roi_classes", [])),
        "run": first.get("run"), "backbone": (run or {}).get("backbone"), "input_size": (run or {}).get("input_size"),
        "stain": (run or {}).get("stain"), "training": dict((run or {}).get("config", {})),
        "labels": dict((run or {}).get("labels", {})), "training_tiles": (run or {}).get("training_tiles"),
        "training_slides": (run or {}).get("training_slides"), "signatures": {},
        "software": dict(first.get("provenance", {}).get("software", {})),
    }
    paragraphs: list[tuple[str, str]] = []
    patients = first.get("patients", {})
    paragraphs.append(("Patients", (
        f"The training set held {_g(patients.get('training'))} patients, the internal validation set "
        f"{_g(patients.get('internal'))} and the external validation set {_g(patients.get('external'))}; "
        "the patient flow (enrolment, exclusions per reason and center, data sets) is given in Figure 1.")))
    classes = ", ".join(facts["roi_classes"]) or NOT_RECORDED
    paragraphs.append(("Whole-slide images", (
        f"Tiles of {_g(facts['tile_size'])} x {_g(facts['tile_size'])} pixels at {_g(facts['target_mpp'])} "
        f"um per pixel were cut inside the pathologist's tumour regions (QuPath classes {classes}); a tile "
        f"was kept when at least {_g(facts['tissue_threshold'])} of it was tissue. Tiles were processed with "
        f"{_stain_method(run)}.")))
    if run is not None:
        cfg = facts["training"]
        labels = facts["labels"]
        slides_n = facts["training_slides"] or {}
        paragraphs.append(("Patch model", (
            f"A {_g(run.get('backbone'))} network (input {_g(run.get('input_size'))} pixels"
            + (", initialised from local pretrained weights" if run.get("weights") else ", trained from scratch")
            + f") was trained to classify patches as poor ({labels.get('poor', NOT_RECORDED)}) or good prognosis "
            f"({labels.get('good', NOT_RECORDED)}), on {_g(facts['training_tiles'])} tiles of "
            f"{_g(slides_n.get('poor'))} poor- and {_g(slides_n.get('good'))} good-prognosis training slides, for "
            f"{_g(cfg.get('epochs'))} epochs ({_g(cfg.get('optimizer'))}, learning rate {_g(cfg.get('lr'))}, "
            f"batch size {_g(cfg.get('batch_size'))}, weight decay {_g(cfg.get('weight_decay'))}, class imbalance: "
            f"{_g(cfg.get('imbalance'))}, seed {_g(cfg.get('seed'))}).")))
    else:
        paragraphs.append(("Patch model", f"The model run {first.get('run')!r}: its training record is {NOT_RECORDED} "
                                          "in this project."))
    for name, sig in sigs.items():
        sel = sig.get("selection", {})
        feats = sig.get("features", {})
        corr = sel.get("correlation", {})
        uni = sel.get("univariate", {})
        lasso = sel.get("lasso", {})
        cut = sig.get("cut", {})
        layout = feats.get("layout", {})
        n_const = len(sel.get("constant_removed", []) or [])
        facts["signatures"][name] = {
            "endpoint": sig.get("endpoint"), "features_in": sel.get("features_in"), "constant_removed": n_const,
            "correlation_threshold": corr.get("threshold"), "correlation_kept": corr.get("kept"),
            "univariate_threshold": uni.get("threshold"), "univariate_kept": len(uni.get("kept", []) or []),
            "lasso_folds": lasso.get("folds"), "lasso_rule": lasso.get("rule"), "lambda": lasso.get("lambda"),
            "selected": len(lasso.get("selected", []) or []), "cut_method": cut.get("method"),
            "cut_value": cut.get("value"), "cut_p_permutation": cut.get("p_permutation"),
            "cut_minprop": cut.get("minprop"), "seeds": dict(sig.get("seeds", {})),
        }
        f = facts["signatures"][name]
        layout_text = ", ".join(f"{k} {v}" for k, v in layout.items()) or NOT_RECORDED
        paragraphs.append((f"Pathomics signature {name} ({str(sig.get('endpoint', '')).upper()})", (
            f"Patch predictions were aggregated per slide into {_g(feats.get('features'))} features ({layout_text}: "
            f"{feats.get('histogram', 'probability histograms')}; bag-of-words {feats.get('tfidf', 'TF-IDF')}), "
            f"averaged per patient. Of {_g(f['features_in'])} features, {n_const} without variation in the training "
            f"set were removed; of pairs with |r| > {_g(f['correlation_threshold'])} ({corr.get('method', 'pearson')}) "
            f"one was dropped, leaving {_g(f['correlation_kept'])}; {_g(f['univariate_kept'])} had a univariate Cox "
            f"p < {_g(f['univariate_threshold'])}; LASSO-Cox with {_g(f['lasso_folds'])}-fold cross-validation "
            f"(lambda.{_g(f['lasso_rule'])} = {_g(f['lambda'])}) selected {f['selected']}. The score is "
            f"{sig.get('score', 'the linear predictor')}. The risk cut ({_g(cut.get('method'))}; smallest group "
            f"{_g(f['cut_minprop'])} of the patients) is {_g(f['cut_value'], 4)}, {cut.get('rule', 'high risk: score > cut')}"
            + (f"; permutation p = {_g(f['cut_p_permutation'])}" if f["cut_p_permutation"] is not None else "")
            + f". Seeds: {', '.join(f'{k} {v}' for k, v in f['seeds'].items()) or NOT_RECORDED}.")))
    paragraphs.append(("Statistical analysis", (
        "Survival was estimated with the Kaplan-Meier method and compared with the log-rank test; hazard "
        "ratios come from Cox proportional-hazards models (Efron ties) with the Grambsch-Therneau test of "
        "proportional hazards; variables with univariate p < 0.05 entered the multivariable model. "
        "Discrimination was measured with Harrell's C and the cumulative/dynamic time-dependent AUC (Uno's "
        "inverse-probability-of-censoring weights) with bootstrap 95% confidence intervals and paired bootstrap "
        "differences. Center heterogeneity: per-center hazard ratios pooled by a random-effects meta-analysis "
        "(REML; I², Q, tau² and the 95% prediction interval) and a Cox model with a center random effect "
        "(gamma frailty). Baseline characteristics: chi-square or Fisher's exact test; t-test/ANOVA or "
        "Mann-Whitney/Kruskal-Wallis after the Shapiro-Wilk test. Families of tests were corrected by "
        "Bonferroni. Two-sided p < 0.05 was significant.")))
    software = facts["software"]
    paragraphs.append(("Software", (
        "Pathomics Desktop " + _g(software.get("pathomics")) + " (Python " + _g(software.get("python"))
        + "; " + ", ".join(f"{k} {v}" for k, v in software.items() if k not in ("pathomics", "python"))
        + "). Every number can be recomputed from the recorded snapshot and signature hashes "
        "(`pathomics reproduce`).")))
    return MethodsText(paragraphs, facts)


# ----------------------------------------------------------------------------------------------
# checklists
# ----------------------------------------------------------------------------------------------

#: REMARK (McShane 2005): (item, what it asks, where this project's report answers it)
REMARK = [
    ("1", "State the marker examined, the study objectives and any pre-specified hypotheses.", "Methods: Pathomics signature"),
    ("2", "Describe the characteristics of the study patients, including their source and inclusion and exclusion criteria.", "Figure 1 (flow); Table 1"),
    ("3", "Describe treatments received and how chosen.", "Table 1 (adjuvant chemotherapy); Figure S6"),
    ("4", "Describe type of biological material used and methods of preservation and storage.", "Methods: Whole-slide images (author to add fixation and storage)"),
    ("5", "Specify the assay method used and provide a detailed protocol.", "Methods: Whole-slide images; Patch model"),
    ("6", "State the method of case selection, including prospective or retrospective, and any stratification or matching.", "Figure 1; Methods: Patients"),
    ("7", "Precisely define all clinical endpoints examined.", "Methods: Statistical analysis (OS, RFS)"),
    ("8", "List all candidate variables initially examined or considered for inclusion in models.", "Table 2 (univariate)"),
    ("9", "Give rationale for sample size; if the study was designed to detect a specified effect size, give the target power and effect size.", "author (not computed by the software)"),
    ("10", "All statistical methods, including details of any variable selection procedures and other model-building issues, how model assumptions were verified, and how missing data were handled.", "Methods: Pathomics signature; Statistical analysis"),
    ("11", "Clarify how marker values were handled in the analyses; if relevant, describe methods used for cutpoint determination.", "Methods: Pathomics signature (risk cut)"),
    ("12", "Describe the flow of patients through the study, including the number of patients included in each stage of the analysis and the reasons for dropout.", "Figure 1"),
    ("13", "Report distributions of basic demographic characteristics, standard prognostic variables and tumour marker, including numbers of missing values.", "Table 1"),
    ("14", "Show the relation of the marker to standard prognostic variables.", "Table S6"),
    ("15", "Present univariable analyses showing the relation between the marker and outcome, with the estimated effect.", "Figure 4G-L; Table 2"),
    ("16", "For key multivariable analyses, report estimated effects with confidence intervals for the marker and, at least for the final model, all other variables in the model.", "Table 2; Tables S3-S5"),
    ("17", "Among reported results, provide estimated effects with confidence intervals from an analysis in which the marker and standard prognostic variables are included, regardless of their statistical significance.", "Tables S3-S5"),
    ("18", "If done, report results of further investigations, such as checking assumptions, sensitivity analyses, and internal validation.", "Internal and external validation sets; PH tests; Figures S2-S5"),
    ("19", "Interpret the results in the context of the pre-specified hypotheses and other relevant studies.", "author (Discussion)"),
    ("20", "Discuss implications for future research and clinical value.", "author (Discussion)"),
]

#: TRIPOD (Collins 2015), main items
TRIPOD = [
    ("1", "Title: identify the study as developing and/or validating a multivariable prediction model.", "author (title)"),
    ("2", "Abstract: summary of objectives, study design, setting, participants, sample size, predictors, outcome, statistical analysis, results and conclusions.", "author (abstract)"),
    ("3a", "Background: medical context and rationale.", "author (introduction)"),
    ("3b", "Objectives, including whether the study describes development or validation.", "Methods: Pathomics signature"),
    ("4a", "Source of data: study design or source of data.", "Methods: Patients; Figure 1"),
    ("4b", "Key study dates: start, end of accrual and end of follow-up.", "Table 1 (surgery dates); author"),
    ("5a", "Participants: key elements of the study setting, including number and location of centres.", "Figure 1 (per center)"),
    ("5b", "Eligibility criteria for participants.", "Figure 1 (exclusion reasons)"),
    ("5c", "Details of treatments received, if relevant.", "Table 1; Figure S6"),
    ("6a", "Outcome: clearly define the outcome, including how and when assessed.", "Methods: Statistical analysis"),
    ("6b", "Report any actions to blind assessment of the outcome.", "author"),
    ("7a", "Predictors: clearly define all predictors, including how and when measured.", "Methods: Whole-slide images; Patch model; Pathomics signature"),
    ("7b", "Report any actions to blind assessment of predictors.", "author"),
    ("8", "Sample size: explain how the study size was arrived at.", "author (not computed by the software)"),
    ("9", "Missing data: describe how missing data were handled.", "Table 1 (missing counts); complete-case analysis"),
    ("10a", "Describe how predictors were handled in the analyses.", "Methods: Pathomics signature"),
    ("10b", "Specify type of model, all model-building procedures and method for internal validation.", "Methods: Pathomics signature (LASSO-Cox, cross-validation)"),
    ("10d", "Specify all measures used to assess model performance and to compare multiple models.", "Methods: Statistical analysis; Table S2"),
    ("11", "Provide details on how risk groups were created, if done.", "Methods: Pathomics signature (risk cut)"),
    ("13a", "Describe the flow of participants through the study.", "Figure 1"),
    ("13b", "Describe the characteristics of the participants, including the number with missing data.", "Table 1"),
    ("14a", "Specify the number of participants and outcome events in each analysis.", "Table 2; Figure 4"),
    ("15a", "Present the full prediction model (all coefficients) to allow predictions for individuals.", "signature JSON (coefficients, cut)"),
    ("15b", "Explain how to use the prediction model.", "`pathomics signature apply`"),
    ("16", "Report performance measures (with CIs) for the prediction model.", "Table S2; Figure 4"),
    ("18", "Discuss any limitations of the study.", "author (Discussion)"),
    ("20", "Give an overall interpretation of the results.", "author (Discussion)"),
    ("21", "Provide information about the availability of supplementary resources.", "the report bundle; reproducibility ledger"),
    ("22", "Give the source of funding and the role of the funders.", "author"),
]

CHECKLISTS = {"remark": ("REMARK", REMARK), "tripod": ("TRIPOD", TRIPOD)}


def checklist(name: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(title, rows of item / recommendation / where answered) of ``remark`` or ``tripod``."""
    key = name.lower()
    if key not in CHECKLISTS:
        raise UserError(f"unknown checklist {name!r}; choose remark or tripod")
    return CHECKLISTS[key]


def checklist_table(name: str):
    """The checklist as a :class:`~pathomics_desktop.reports.tables.PublicationTable`."""
    from pathomics_desktop.reports import tables

    title, rows = checklist(name)
    table = tables.PublicationTable(title=f"{title} checklist",
                                    columns=["Item", "Recommendation", "Where answered"])
    for item, what, where in rows:
        table.add_row(tables.Text(item), tables.Text(what), tables.Text(where))
    table.footnotes.append("Where answered: the section, table or figure of the report bundle; "
                           "\"author\" marks what the authors write themselves.")
    return table


def write_methods(text: MethodsText, path: str | Path) -> Path:
    """The methods as ``.md``, ``.txt`` or ``.json`` (atomically)."""
    from pathomics_desktop.jobs.core import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".md":
        body = text.markdown()
    elif suffix == ".txt":
        body = text.text() + "\n"
    elif suffix == ".json":
        body = json.dumps(text.to_dict(), indent=2, default=str) + "\n"
    else:
        raise UserError(f"{path.name}: write the methods as .md, .txt or .json")
    with atomic_path(path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return path
