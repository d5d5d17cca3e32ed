"""Project-level model commands: ``pathomics train``, ``infer``, ``gradcam``,
``models compare`` (each a job recorded in the registry)."""

from __future__ import annotations

import json

from pathomics_desktop.registry.cli import add_project_option, opened_registry

TINY_OPTIONS = {
    "crossformer": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 2, 4], "drop_path_rate": 0.0},
    "cnn": {"layers": [1, 1, 1, 1]},
}


def register(sub) -> None:
    p = sub.add_parser("train", help="train a patch model on the training set (a resumable job)")
    p.add_argument("--backbone", required=True, help="resnet18 | resnet50 | densenet121 | crossformer_t/s/b/l")
    p.add_argument("--run", "--run-name", dest="run",
                   help="model run name (default: the backbone); under torchrun write --run-name "
                        "(torchrun reads --run as its own --run-path)")
    p.add_argument("--preset", choices=["study"], default="study",
                   help="study: CNNs lr 0.01 x 8 epochs; CrossFormer lr 0.001 x 16 epochs, early stopping 128 it.")
    p.add_argument("--weights", help="local pretrained weights (.pth/.safetensors); never downloaded")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--input-size", type=int, help="resize tiles to this size before the model (default: tile size)")
    p.add_argument("--max-tiles-per-slide", type=int, default=64)
    p.add_argument("--stain", choices=["macenko", "none"], default="macenko")
    p.add_argument("--imbalance", choices=["none", "class_weights", "weighted_sampler"])
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--tiny", action="store_true", help="a very small variant of the backbone (CPU demos and tests)")
    p.add_argument("--gpus", default="1",
                   help="GPUs to train on, a number or 'all': more than one re-launches the command through "
                        "torchrun, one data-parallel process per GPU; --batch-size stays the global batch")
    add_project_option(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("infer", help="predict every tile of every tiled slide (skips slides already done)")
    p.add_argument("--model", required=True, dest="run", help="model run name")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device")
    add_project_option(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("gradcam", help="Grad-CAM heatmaps and slide probability maps of a model run")
    p.add_argument("--model", required=True, dest="run")
    p.add_argument("--slide", type=int, action="append", dest="slide_ids")
    p.add_argument("--top", type=int, default=4, help="tiles per slide (most confident)")
    add_project_option(p)
    p.set_defaults(func=cmd_gradcam)

    from pathomics_desktop.cli import command_group

    msub = command_group(sub, "models", "patch-model backbones")
    c = msub.add_parser("compare", help="patch- and slide-level ROC AUC (DeLong CI, tests) of model runs per set")
    c.add_argument("runs", nargs="+")
    c.add_argument("--json", action="store_true")
    add_project_option(c)
    c.set_defaults(func=cmd_compare)


def _run(args, job_type: str, params: dict) -> int:
    from pathomics_desktop.jobs.cli import run_in_foreground
    from pathomics_desktop.jobs.runner import list_jobs

    with opened_registry(args) as (project, registry):
        code = run_in_foreground(project, registry, job_type, params)
        job = list_jobs(registry, limit=1)[0]
    if job.result:
        print(json.dumps(job.result, indent=2, default=str))
    return code


TRAIN_OPTIONS = ("backbone", "run", "preset", "weights", "epochs", "lr", "batch_size", "seed", "input_size",
                 "max_tiles_per_slide", "stain", "imbalance", "device")


def cmd_train(args) -> int:
    """Train as a job; with ``--gpus N`` > 1 re-launch through torchrun. Under torchrun, rank 0
    records the job and writes the outputs; the other ranks train with it and record nothing."""
    from pathomics_desktop.learning import distributed
    from pathomics_desktop.learning.backbones import backbone_family

    if not distributed.launched_by_torchrun():
        processes = distributed.requested_processes(args.gpus)
        if processes > 1:
            return distributed.relaunch_with_torchrun(processes, train_arguments(args))
    params = {k: v for k, v in vars(args).items()
              if k in TRAIN_OPTIONS and k != "preset" and v is not None}
    params["preset"] = args.preset
    if args.tiny:
        params["model_options"] = TINY_OPTIONS[backbone_family(args.backbone)]
    if not distributed.is_main_process():
        return _train_as_secondary_rank(args, params)
    return _run(args, "training", params)


def train_arguments(args) -> list[str]:
    """The ``pathomics train`` command line of ``args`` without ``--gpus`` (what each torchrun
    process runs)."""
    argv = ["train"]
    for key in TRAIN_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:  # --run-name: torchrun would take --run for its --run-path
            argv += ["--run-name" if key == "run" else f"--{key.replace('_', '-')}", str(value)]
    if args.tiny:
        argv.append("--tiny")
    if getattr(args, "project", None) is not None:
        argv += ["--project", str(args.project)]
    return argv


def _train_as_secondary_rank(args, params: dict) -> int:
    from pathomics_desktop.jobs.core import Cancelled, JobContext
    from pathomics_desktop.learning.jobs import training_job
    from pathomics_desktop.project import open_project

    try:
        training_job(open_project(args.project), params, JobContext())
    except Cancelled:
        return 130
    return 0


def cmd_infer(args) -> int:
    params = {k: v for k, v in {"run": args.run, "batch_size": args.batch_size, "device": args.device}.items() if v}
    return _run(args, "inference", params)


def cmd_gradcam(args) -> int:
    return _run(args, "gradcam", {"run": args.run, "slide_ids": args.slide_ids, "top": args.top})


def cmd_compare(args) -> int:
    from pathomics_desktop.learning.comparison import compare_runs, comparison_table

    from pathomics_desktop.project import open_project

    result = compare_runs(open_project(args.project), args.runs)
    print(json.dumps(result, indent=2) if args.json else comparison_table(result))
    return 0
