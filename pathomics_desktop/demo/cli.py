"""``pathomics demo DIR``: create the SYNTHETIC demo project (``--run-pipeline``: and run the
headless pipeline on it; a failed step stops with its message and exit status 2)."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("demo", help="create a SYNTHETIC demo project shaped like the reference study")
    p.add_argument("dir", help="folder to create")
    p.add_argument("--seed", type=int, default=2024, help="simulation seed (deterministic)")
    p.add_argument("--split-seed", type=int, default=20240101)
    p.add_argument("--database-url", default="", help="PostgreSQL URL (default: embedded SQLite)")
    p.add_argument("--slides", action="store_true",
                   help="also write a synthetic whole-slide image and tumour ROI per patient")
    p.add_argument("--slide-size", type=int, default=1536, help="slide width and height in pixels (at 20x)")
    p.add_argument("--slide-limit", type=int, default=None, help="only the first N patients get slides")
    p.add_argument("--run-pipeline", action="store_true",
                   help="then run the headless pipeline: flow, slides, tiles, patch model, predictions, "
                        "signatures fitted and applied (what `make run` does without a display)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from pathomics_desktop.demo.cohort import create_demo_project

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message}", file=sys.stderr)

    result = create_demo_project(args.dir, seed=args.seed, split_seed=args.split_seed,
                                 database_url=args.database_url, progress=progress)
    if args.slides:
        from pathomics_desktop.demo.cohort_slides import add_demo_slides
        from pathomics_desktop.jobs.core import JobContext
        from pathomics_desktop.project import Project

        ctx = JobContext(on_progress=progress)
        result["slides"] = add_demo_slides(Project.load(result["project"]), size=args.slide_size,
                                           seed=args.seed, limit=args.slide_limit, ctx=ctx)
    if args.json and not args.run_pipeline:
        print(json.dumps(result, indent=2))
    else:
        print(f"SYNTHETIC demo project created at {result['project']}: {result['patients']} synthetic "
              f"patients, training {result['training']}, internal {result['internal']}, "
              f"external {result['external']}", file=sys.stderr if args.run_pipeline else sys.stdout)
    if args.run_pipeline:
        from pathlib import Path

        from pathomics_desktop.demo.pipeline import run_headless_pipeline

        print(run_headless_pipeline(Path(result["project"])))
    return 0
