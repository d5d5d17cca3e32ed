"""The headless demo pipeline (what ``make run`` does without a display).

The whole road of the study on the SYNTHETIC demo project, each step through the same
services and jobs as the CLI and the GUI (every job recorded in the registry, resumable: a
second run skips what is done):

1. the demo project (created once: ``pathomics demo``);
2. the patient flow (Figure 1) -> ``reports/flow.txt`` / ``flow.json``;
3. the analysis table -> ``reports/cohort.parquet`` / ``cohort.csv`` (no identifiers);
4. survival by data set (Kaplan-Meier medians, log-rank) -> ``reports/survival_by_set.txt``;
5. with slides: a synthetic slide + tumour ROI per patient, tiling (job), a small
   ResNet-18 trained on the study's prognosis labels (job), inference on every tile (job),
   the model comparison (``reports/model_comparison.txt``) and the pathomics signatures for
   OS and RFS
   (``reports/signature.txt``): the study's 206 slide features, correlation filter,
   univariate Cox, LASSO-Cox and the X-tile cut, evaluated in every data set (a job), then
   applied to every center (a job), which writes ``pathomics_os_score`` / ``_group`` and the
   RFS pair to the registry (so into ``reports/cohort.*`` of the next run and ``registry:``).

Failures are loud: a step whose job fails or is cancelled raises :class:`DemoStepFailed`
(a :class:`~pathomics_desktop.errors.UserError` naming the step, the job and its error), so
``make run`` stops with a non-zero exit and that message; a failed step is never printed as
a result.

The demo keeps CPU time small (:class:`DemoSettings`): 1280-px slides, 128-px tiles at
0.5 um/px, a tiny ResNet-18 on 64-px inputs trained for a few epochs with AdamW. Real
projects default to the study's 512-px tiles and settings. Tests run the same road on a
smaller project by passing smaller settings (fewer patients with slides, fewer tiles,
epochs, permutations and bootstrap replicates).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pathomics_desktop.errors import UserError

DEMO_RUN = "demo_resnet18_tiny"


def _tiny_cnn() -> dict:
    from pathomics_desktop.learning.project_cli import TINY_OPTIONS

    return dict(TINY_OPTIONS["cnn"])


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and settings of the demo's slide road (the defaults are what ``make run`` and
    ``pathomics demo DIR --run-pipeline`` use; tests pass smaller ones).

    ``slide_patients``: None gives every included patient of the demo cohort a slide (the
    excluded ones never enter the analysis; ``pathomics demo --slides`` gives everyone one);
    a number N gives slides to N included patients only, a seeded sample spread over the
    centers in proportion to their included patients (``slide_seed``); a mapping
    ``{center: N}`` draws N included patients of each center named. The patch model is trained on at
    most ``max_tiles_per_slide`` tiles of each labelled training slide for ``epochs`` epochs
    (``optimizer``, ``lr``; cosine decay), validated every ``val_interval`` iterations on the
    internal set (the lowest validation loss is kept; stopped after ``early_stopping_patience``
    iterations without improvement). ``xtile_perm``: permutations of the X-tile cut's p;
    ``n_boot``: bootstrap replicates of the analysis-plan report; ``folds``: LASSO folds;
    ``p_threshold``: the univariate Cox screen (the study's 0.05).

    The patch model is a tiny ResNet-18 (one block per stage, from scratch): on two CPU cores
    a tiny CrossFormer trained from scratch stayed at chance (loss ln 2, one probability
    for every patch) within the demo's time, while the tiny ResNet-18 learns the synthetic
    tumour grade in its first epoch. ``backbone="crossformer_t"`` with the CrossFormer's
    tiny options (``pathomics train --tiny``) still runs the same road."""

    slide_size: int = 1280
    slide_patients: int | dict | None = None
    slide_seed: int = 11
    run: str = DEMO_RUN
    backbone: str = "resnet18"
    model_options: dict = field(default_factory=_tiny_cnn)
    input_size: int = 64
    epochs: int = 3
    lr: float = 0.001
    optimizer: str = "adamw"
    batch_size: int = 32
    max_tiles_per_slide: int = 24
    val_interval: int = 100
    early_stopping_patience: int = 400
    seed: int = 7
    folds: int = 10
    p_threshold: float = 0.05
    xtile_perm: int = 1000
    n_boot: int = 200

    def training_params(self) -> dict:
        return {"run": self.run, "backbone": self.backbone, "model_options": dict(self.model_options),
                "epochs": self.epochs, "lr": self.lr, "optimizer": self.optimizer, "batch_size": self.batch_size,
                "input_size": self.input_size, "max_tiles_per_slide": self.max_tiles_per_slide,
                "val_interval": self.val_interval, "early_stopping_patience": self.early_stopping_patience,
                "seed": self.seed}


class DemoStepFailed(UserError):
    """A step of the headless demo failed; the message names the step, the job and why."""


def run_demo_job(project, registry, job_type: str, params: dict, *, step: str):
    """Submit and run one job of the demo; raises :class:`DemoStepFailed` unless it is done."""
    from pathomics_desktop.jobs.runner import run_job, submit

    started = time.perf_counter()
    job = run_job(project, registry, submit(registry, job_type, params, user="demo"), echo=_echo)
    print(f"    {step}: {job.status} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if job.status != "done":
        lines = (job.error or "").strip().splitlines()
        reason = lines[0] if lines else job.status
        raise DemoStepFailed(f"demo step '{step}' failed: job {job.id} ({job_type}) {job.status}: {reason} "
                             f"(details: `pathomics jobs show {job.id} --project {project.root}`)")
    return job


def ensure_demo_project(root: Path) -> None:
    from pathomics_desktop.demo.cohort import create_demo_project
    from pathomics_desktop.project import PROJECT_FILE

    if (root / PROJECT_FILE).exists():
        return
    print(f"creating the SYNTHETIC demo project in {root} ...", file=sys.stderr)
    create_demo_project(root, progress=lambda f, m: print(f"  [{f:4.0%}] {m}", file=sys.stderr))


def _echo(fraction, message) -> None:
    if fraction is None:
        print(f"    {message}", file=sys.stderr)
    else:
        print(f"  [{fraction:6.1%}] {message}", file=sys.stderr)


def run_headless_pipeline(root: Path, *, slides: bool = True, slide_size: int | None = None,
                          settings: DemoSettings | None = None) -> str:
    """Run the demo road on the demo project at ``root`` (see the module docstring) and return
    its printed summary; ``slide_size`` overrides ``settings.slide_size``."""
    from pathomics_desktop.cohort.flow import patient_flow
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry

    project = Project.load(root)
    reports = project.folder("reports")
    registry = open_project_registry(project)
    try:
        with registry.session() as session:
            flow = patient_flow(session)
        (reports / "flow.txt").write_text(flow.to_text() + "\n", encoding="utf-8")
        (reports / "flow.json").write_text(json.dumps(flow.to_dict(), indent=2), encoding="utf-8")
    finally:
        registry.dispose()
    cohort = export_cohort_files(project)
    survival = survival_by_set(cohort)
    (reports / "survival_by_set.txt").write_text(survival + "\n", encoding="utf-8")
    sections = ["SYNTHETIC DATA (generated by `pathomics demo`; not real patients)", "", flow.to_text(), "",
                survival]
    if slides:
        settings = settings or DemoSettings()
        if slide_size is not None:
            from dataclasses import replace

            settings = replace(settings, slide_size=slide_size)
        sections += ["", run_slide_pipeline(project, settings=settings)]
        export_cohort_files(project)  # again, now with the applied scores and risk groups
    sections += ["", f"Output: {reports}",
                 "  flow.txt / flow.json, cohort.parquet / cohort.csv, survival_by_set.txt"
                 + (", model_comparison.txt, signature.txt, analysis_plan/report.txt|json" if slides else ""),
                 f"Open it in the desktop app with: .venv/bin/pathomics-desktop {project.root}"]
    return "\n".join(sections)


def export_cohort_files(project) -> Path:
    """``reports/cohort.parquet`` and ``cohort.csv`` (no identifiers); returns the Parquet path."""
    from pathomics_desktop.registry.service import export_cohort, open_project_registry

    reports = project.folder("reports")
    registry = open_project_registry(project)
    try:
        path = export_cohort(registry, reports / "cohort.parquet")
        export_cohort(registry, reports / "cohort.csv")
    finally:
        registry.dispose()
    return path


def slide_study_ids(project, settings: DemoSettings) -> list[str]:
    """The patients who get a synthetic slide, in study-id order: every included patient, or
    ``settings.slide_patients`` of them drawn with ``settings.slide_seed``, spread over the
    centers in proportion to their included patients (largest remainders)."""
    import numpy as np
    import pandas as pd

    latent = pd.read_parquet(project.root / "demo_data" / "synthetic_latent.parquet")
    included = latent[latent["exclusion"].isna()]
    if settings.slide_patients is None:
        return sorted(str(s) for s in included["study_id"])
    sizes = included.groupby("center").size()
    if isinstance(settings.slide_patients, dict):
        counts = pd.Series({c: min(int(settings.slide_patients.get(c, 0)), int(n)) for c, n in sizes.items()})
    else:
        want = min(int(settings.slide_patients), len(included))
        quota = sizes / sizes.sum() * want
        counts = np.floor(quota).astype(int)
        for center in (quota - counts).sort_values(ascending=False).index[: want - int(counts.sum())]:
            counts[center] += 1
    rng = np.random.default_rng(settings.slide_seed)
    chosen = []
    for center, group in included.groupby("center"):
        chosen += list(rng.choice(group["study_id"].to_numpy(), size=int(counts[center]), replace=False))
    return sorted(str(s) for s in chosen)


def run_slide_pipeline(project, *, settings: DemoSettings | None = None) -> str:
    """Slides -> tiles -> model -> predictions -> comparison, signatures fitted and applied,
    the analysis-plan report (all jobs)."""
    from pathomics_desktop.demo.cohort_slides import add_demo_slides
    from pathomics_desktop.jobs.core import JobContext
    from pathomics_desktop.learning.comparison import compare_runs, comparison_table
    from pathomics_desktop.registry.service import open_project_registry

    settings = settings or DemoSettings()
    print("  synthetic slides and tumour ROIs", file=sys.stderr)
    started = time.perf_counter()
    add_demo_slides(project, size=settings.slide_size, study_ids=slide_study_ids(project, settings),
                    ctx=JobContext(on_progress=_echo))
    print(f"    slides: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    registry = open_project_registry(project)
    try:
        steps = [("tiling", {}), ("training", settings.training_params()), ("inference", {"run": settings.run})]
        for job_type, params in steps:
            if job_type == "training" and (project.root / "models" / settings.run / "best.pt").exists():
                continue
            print(f"  {job_type}", file=sys.stderr)
            run_demo_job(project, registry, job_type, params, step=job_type)
    finally:
        registry.dispose()
    comparison = comparison_table(compare_runs(project, [settings.run]))
    reports = project.folder("reports")
    (reports / "model_comparison.txt").write_text(comparison + "\n", encoding="utf-8")
    signatures = [signature_text(project, registry_endpoint, settings=settings) for registry_endpoint in ("os", "rfs")]
    (reports / "signature.txt").write_text("\n\n".join(signatures) + "\n", encoding="utf-8")
    analysis_plan_report(project, n_boot=settings.n_boot)
    return (f"Patch model (tiny {settings.backbone}, synthetic slides):\n" + comparison
            + "\n\nPathomics signatures:\n" + "\n\n".join(signatures))


def signature_text(project, endpoint: str, *, settings: DemoSettings | None = None) -> str:
    """Fit (job) the demo's pathomics signature for an endpoint, apply it to every center
    (job: the scores go to the registry) and format both summaries. A signature already
    fitted on the demo run is kept (a second run skips what is done) and applied again,
    which writes nothing when the scores are unchanged. Raises :class:`DemoStepFailed`."""
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.signature.cli import APPLY_JOB, format_apply
    from pathomics_desktop.signature.evaluation import SignatureSummary
    from pathomics_desktop.signature.fit import load_signature, signature_paths

    name = f"demo_{endpoint}"
    label = endpoint.upper()
    settings = settings or DemoSettings()
    registry = open_project_registry(project)
    try:
        existing = signature_paths(project, name)[0]
        if not (existing.exists() and load_signature(project, name).get("run") == settings.run):
            print(f"  signature ({label})", file=sys.stderr)
            run_demo_job(project, registry, "signature",
                         {"run": settings.run, "endpoint": endpoint, "name": name, "seed": settings.seed,
                          "folds": settings.folds, "p_threshold": settings.p_threshold,
                          "xtile_perm": settings.xtile_perm,
                          "replace": existing.exists()}, step=f"signature fit ({label})")
        print(f"  signature apply ({label}, every center)", file=sys.stderr)
        applied = run_demo_job(project, registry, APPLY_JOB, {"name": name, "all": True},
                               step=f"signature apply ({label})")
    finally:
        registry.dispose()
    return (SignatureSummary.from_signature(load_signature(project, name)).summary() + "\n"
            + format_apply(applied.result))


def analysis_plan_report(project, *, n_boot: int | None = None) -> Path:
    """``reports/analysis_plan/report.{json,txt}``: the study's analysis plan on the demo's
    OS and RFS signatures (:func:`pathomics_desktop.signature.report.signature_report`;
    ``n_boot`` bootstrap replicates, the report's default when None)."""
    from pathomics_desktop.signature.report import signature_report, write_report

    print("  signature report (the study's analysis plan)", file=sys.stderr)
    out = project.folder("reports") / "analysis_plan"
    options = {} if n_boot is None else {"n_boot": int(n_boot)}
    started = time.perf_counter()
    write_report(signature_report(project, ["demo_os", "demo_rfs"], **options), out)
    print(f"    signature report: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return out


def _fmt(value) -> str:
    return "not reached" if value is None else f"{value:.1f}"


def survival_by_set(cohort_path: Path) -> str:
    """Median OS and RFS (Kaplan-Meier) per data set, with the log-rank test across sets."""
    import pandas as pd

    from pathomics_desktop.stats.km import kaplan_meier, logrank_test

    frame = pd.read_parquet(cohort_path)
    frame = frame[frame["included"]]
    lines = [f"{'data set':<12}{'n':>6}{'median OS (months)':>22}{'median RFS (months)':>22}"]
    for split in ("training", "internal", "external"):
        g = frame[frame["split"] == split]
        if g.empty:
            continue
        os_median = kaplan_meier(g.os_months, g.os_event).median()[0]
        rfs_median = kaplan_meier(g.rfs_months, g.rfs_event).median()[0]
        lines.append(f"{split:<12}{len(g):>6}{_fmt(os_median):>22}{_fmt(rfs_median):>22}")
    for label, t, e in (("OS", "os_months", "os_event"), ("RFS", "rfs_months", "rfs_event")):
        test = logrank_test(frame[t], frame[e], frame["split"])
        lines.append(f"log-rank across data sets ({label}): chi-square {test.chisq:.2f}, p = {test.p:.2g}")
    return "\n".join(lines)


def demo_pipeline_job(project, params: dict, ctx) -> dict:
    """Job form of the headless pipeline (``pathomics jobs``; the GUI runs it in a worker)."""
    ctx.progress(0.1, "flow, cohort export and survival by data set")
    ctx.check_cancelled()
    summary = run_headless_pipeline(project.root)
    ctx.log(summary.splitlines()[0])
    return {"reports": str(project.root / "reports")}
