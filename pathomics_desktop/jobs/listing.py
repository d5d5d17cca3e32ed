"""Rows for a jobs panel, and the parameters a user can give each job type (Qt-free).

:func:`job_rows` reads the registry's ``jobs`` table (without the potentially long log; of the
error, its first line) and adds the elapsed time and an estimate of the time remaining. The estimate
assumes progress is linear in time since the job started:

    remaining = elapsed * (1 - f) / f        (seconds; f = progress fraction, 0 < f <= 1)

and is ``None`` for a job that is not running or has not reported progress yet (f = 0).

:data:`JOB_FORMS` describes, per job type, the parameters its job function takes
(:mod:`pathomics_desktop.slides.jobs`, :mod:`pathomics_desktop.learning.jobs`,
:mod:`pathomics_desktop.signature.jobs`), so that a GUI can build a form from it and
:func:`build_params` turns the form's text values into the job's ``params`` dict, with a
:class:`~pathomics_desktop.errors.UserError` naming the field on bad input.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry.models import Job, utcnow

STATUSES = ("queued", "running", "done", "failed", "cancelled")


def estimate_remaining(elapsed_s: float | None, fraction: float | None) -> float | None:
    """Seconds left, ``elapsed * (1 - f) / f``; None when nothing can be said (f <= 0)."""
    if elapsed_s is None or fraction is None or fraction <= 0.0:
        return None
    f = min(float(fraction), 1.0)
    return max(float(elapsed_s), 0.0) * (1.0 - f) / f


_USER_ERROR_PREFIX = re.compile(r"^(UserError|ValidationFailed|NoTissueError): ")


def error_summary(error: str | None) -> str:
    """The first line of a job's recorded error, without the class name of a user error
    (the runner records ``"<class>: <message>"`` and the traceback)."""
    text = (error or "").strip()
    return _USER_ERROR_PREFIX.sub("", text.split("\n", 1)[0]) if text else ""


def format_duration(seconds: float | None) -> str:
    """``1 h 05 min``, ``3 min 07 s``, ``12 s``; empty for None."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


@dataclass
class JobRow:
    """One line of the jobs panel (plain data)."""

    job_id: int
    type: str
    status: str
    progress: float
    message: str
    user: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    elapsed_s: float | None
    remaining_s: float | None
    params: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    error: str = ""            # the first line of the error of a failed job

    @property
    def can_cancel(self) -> bool:
        return self.status in ("queued", "running") and not self.cancel_requested

    @property
    def can_resume(self) -> bool:
        return self.status in ("failed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(microsecond=0).isoformat() + "Z" if value else None


def job_rows(registry, *, limit: int = 200, now: dt.datetime | None = None) -> list[JobRow]:
    """The newest ``limit`` jobs, newest first, with elapsed and remaining seconds."""
    now = now or utcnow()
    cols = (Job.id, Job.type, Job.status, Job.progress, Job.message, Job.user, Job.created_at, Job.started_at,
            Job.finished_at, Job.params, Job.cancel_requested, Job.error)
    with registry.session() as session:
        records = session.execute(select(*cols).order_by(Job.id.desc()).limit(limit)).all()
    rows = []
    for (job_id, job_type, status, progress, message, user, created, started, finished, params, cancel,
         error) in records:
        elapsed = None
        if started is not None:
            elapsed = ((finished or now) - started).total_seconds()
        remaining = estimate_remaining(elapsed, progress) if status == "running" else None
        rows.append(JobRow(job_id, job_type, status, float(progress or 0.0), message or "", user or "",
                           _iso(created), _iso(started), _iso(finished), elapsed, remaining, dict(params or {}),
                           bool(cancel), error_summary(error)))
    return rows


def job_detail(registry, job_id: int) -> dict[str, Any]:
    """Everything about one job, including its log, error (traceback) and result."""
    from pathomics_desktop.jobs.runner import get_job

    job = get_job(registry, job_id)
    return {"job_id": job.id, "type": job.type, "status": job.status, "params": job.params or {},
            "result": job.result, "log": job.log or "", "error": job.error or "", "message": job.message or ""}


def count_by_status(rows: list[JobRow]) -> dict[str, int]:
    """``{status: number of rows}`` for every status (zeros included)."""
    counts = Counter(r.status for r in rows)
    return {s: counts.get(s, 0) for s in STATUSES}


# -- the parameters of each job type ---------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a job function.

    ``kind``: ``int``, ``float``, ``str``, ``bool``, ``choice`` (one of ``choices``), ``ids`` (a
    comma-separated list of integers), ``names`` (a comma-separated list of names),
    ``device`` (filled with :func:`device_choices`) or ``run`` (a model run of the project). ``default`` None means "the job's own default"
    (the parameter is left out of ``params``).
    """

    name: str
    label: str
    kind: str = "str"
    default: Any = None
    choices: tuple[str, ...] = ()
    required: bool = False
    help: str = ""


def _backbones() -> tuple[str, ...]:
    from pathomics_desktop.learning.backbones import list_backbones

    return tuple(list_backbones())


def job_forms() -> dict[str, tuple[str, list[ParamSpec]]]:
    """``job type -> (title, parameters)`` for the jobs a user starts by hand."""
    return {
        "tiling": ("Tiling", [
            ParamSpec("slide_ids", "Slides", "ids", help="slide ids, comma-separated (empty: every registered slide)"),
            ParamSpec("tile_size", "Tile size (px)", "int", help="default: the project's setting (512)"),
            ParamSpec("target_mpp", "Target MPP (um/px)", "float", help="default: the project's setting (0.5)"),
            ParamSpec("tissue_threshold", "Tissue threshold", "float",
                      help="minimum tissue fraction (1 - white fraction) of a kept tile (default 0.5)"),
            ParamSpec("roi_classes", "ROI classes", "names",
                      help="QuPath classes to tile, comma-separated (default: the project's [slides] roi_classes)"),
            ParamSpec("exclude_classes", "Excluded ROI classes", "names",
                      help="QuPath classes cut out of the ROI, comma-separated"),
        ]),
        "training": ("Training", [
            ParamSpec("backbone", "Backbone", "choice", "resnet18", _backbones(), required=True),
            ParamSpec("run", "Run name", "str", help="default: the backbone's name"),
            ParamSpec("preset", "Preset", "choice", "study", ("study",),
                      help="the study's settings for the backbone (optimizer, lr, epochs, early stopping)"),
            ParamSpec("device", "Device", "device", "cpu"),
            ParamSpec("epochs", "Epochs", "int", help="default: the preset's"),
            ParamSpec("lr", "Learning rate", "float", help="default: the preset's"),
            ParamSpec("batch_size", "Batch size", "int", help="default: the preset's (32)"),
            ParamSpec("seed", "Seed", "int", help="default 0"),
            ParamSpec("max_tiles_per_slide", "Tiles per slide", "int", 64),
            ParamSpec("stain", "Stain normalisation", "choice", "macenko", ("macenko", "none")),
            ParamSpec("imbalance", "Class imbalance", "choice", "class_weights",
                      ("class_weights", "weighted_sampler", "none")),
            ParamSpec("weights", "Pretrained weights file", "str", help="local .pth/.safetensors; never downloaded"),
            ParamSpec("tiny", "Small variant (CPU demos)", "bool", False,
                      help="a very small model of the backbone's family, as `pathomics train --tiny`"),
        ]),
        "inference": ("Inference", [
            ParamSpec("run", "Model run", "run", required=True),
            ParamSpec("device", "Device", "device", "cpu"),
            ParamSpec("batch_size", "Batch size", "int", 32),
        ]),
        "gradcam": ("Grad-CAM", [
            ParamSpec("run", "Model run", "run", required=True),
            ParamSpec("slide_ids", "Slides", "ids", help="slide ids, comma-separated (empty: every predicted slide)"),
            ParamSpec("top", "Tiles per slide", "int", 4, help="the most confident tiles"),
        ]),
        "signature": ("Signature fit", [
            ParamSpec("run", "Model run", "run", required=True, help="the run whose predictions are used"),
            ParamSpec("endpoint", "Endpoint", "choice", "os", ("os", "rfs")),
            ParamSpec("name", "Signature name", "str", help="default: <run>_<endpoint>"),
            ParamSpec("folds", "CV folds", "int", 10),
            ParamSpec("seed", "Seed", "int", 0),
            ParamSpec("rule", "Lambda rule", "choice", "min", ("min", "1se")),
            ParamSpec("replace", "New version (replace)", "bool", False,
                      help="fit again under an existing name, keeping the earlier versions"),
        ]),
        "signature-apply": ("Apply a signature", [
            ParamSpec("name", "Signature name", "str", required=True),
            ParamSpec("center", "Center", "str", help="score this center's included patients"),
            ParamSpec("all", "All centers", "bool", False, help="score every included patient"),
        ]),
        # demo projects only (the job says so on any other project): the whole road on the
        # SYNTHETIC slides, as `make run` does without a display
        "demo-pipeline": ("SYNTHETIC demo: slides, tiles, model, signatures", []),
    }


def build_params(job_type: str, values: dict[str, Any]) -> dict[str, Any]:
    """The job's ``params`` from form values (text or already typed); empty values are left
    out so the job function's defaults apply. Raises UserError naming the field."""
    forms = job_forms()
    if job_type not in forms:
        raise UserError(f"job type {job_type!r} has no form (known: {', '.join(forms)})")
    title, specs = forms[job_type]
    params: dict[str, Any] = {}
    for spec in specs:
        raw = values.get(spec.name)
        if spec.kind == "bool":
            if raw in (True, "true", "1", "yes"):
                params.update(_bool_param(job_type, spec.name, params))
            continue
        text = raw.strip() if isinstance(raw, str) else raw
        if text is None or text == "" or text == []:
            if spec.required:
                raise UserError(f"{title}: '{spec.label}' is required")
            continue
        try:
            if spec.kind == "int":
                params[spec.name] = int(text)
            elif spec.kind == "float":
                params[spec.name] = float(text)
            elif spec.kind == "ids":
                items = text if isinstance(text, list) else [p for p in str(text).replace(";", ",").split(",")]
                params[spec.name] = [int(str(p).strip()) for p in items if str(p).strip()]
            elif spec.kind == "names":
                items = text if isinstance(text, list) else str(text).split(",")
                params[spec.name] = [str(p).strip() for p in items if str(p).strip()]
            elif spec.kind == "choice" and str(text) not in spec.choices:
                raise UserError(f"{title}: '{spec.label}' must be one of {', '.join(spec.choices)}, not {text!r}")
            else:
                params[spec.name] = str(text)
        except ValueError:
            noun = {"int": "a whole number", "float": "a number", "ids": "slide ids separated by commas"}[spec.kind]
            raise UserError(f"{title}: '{spec.label}' must be {noun}, not {text!r}") from None
    return params


def _bool_param(job_type: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """What a ticked box adds to ``params``: training's ``tiny`` is the CLI's ``--tiny``."""
    if (job_type, name) == ("training", "tiny"):
        from pathomics_desktop.learning.backbones import backbone_family
        from pathomics_desktop.learning.project_cli import TINY_OPTIONS

        return {"model_options": TINY_OPTIONS[backbone_family(params["backbone"])]}
    return {name: True}


def device_choices() -> list[str]:
    """``["cpu"]``, plus ``"cuda"`` when PyTorch sees a CUDA device (imports torch: call it
    in a worker thread)."""
    try:
        import torch
    except ImportError:
        return ["cpu"]
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def model_runs(project) -> list[str]:
    """Names of the project's model runs (folders of ``models/`` with a ``run.json``)."""
    folder = project.root / "models"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "run.json").is_file())
