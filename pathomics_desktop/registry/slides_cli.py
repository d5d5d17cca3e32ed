"""Registry-backed slide commands: ``pathomics slides add|list|set-mpp|qc|roi|tile``."""

from __future__ import annotations

import json
import sys

from pathomics_desktop.registry.cli import add_project_option, opened_registry


def register(sub) -> None:
    from pathomics_desktop.cli import command_group
    from pathomics_desktop.slides.cli import add_roi_class_options

    ssub = command_group(sub, "slides", "whole-slide images: registry, metadata, QC, tiling")

    p = ssub.add_parser("add", help="register slide files (or folders) to patients")
    p.add_argument("paths", nargs="+")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--mapping", help="CSV with columns path (or file) and study_id")
    how.add_argument("--pattern", help="regular expression with a (?P<study_id>...) group, matched on the file name")
    p.add_argument("--no-thumbnails", action="store_true")
    p.add_argument("--json", action="store_true")
    add_project_option(p)
    p.set_defaults(func=cmd_add)

    p = ssub.add_parser("list", help="registered slides")
    p.add_argument("--json", action="store_true")
    add_project_option(p)
    p.set_defaults(func=cmd_list)

    p = ssub.add_parser("set-mpp", help="store a per-slide MPP override (um/px); 'none' clears it")
    p.add_argument("slide", help="slide id or path")
    p.add_argument("mpp")
    p.add_argument("--reason")
    add_project_option(p)
    p.set_defaults(func=cmd_set_mpp)

    p = ssub.add_parser("qc", help="set slide QC: ok, or excluded with a reason")
    p.add_argument("slide", help="slide id or path")
    p.add_argument("status", choices=["ok", "excluded", "pending"])
    p.add_argument("--reason")
    add_project_option(p)
    p.set_defaults(func=cmd_qc)

    p = ssub.add_parser("roi", help="attach a QuPath GeoJSON tumour ROI to a registered slide "
                                    "(lists its classes and which are tiled: [slides] roi_classes)")
    p.add_argument("slide", help="slide id or path")
    p.add_argument("geojson")
    p.add_argument("--json", action="store_true", help="the stored path and the classes as JSON")
    add_project_option(p)
    p.set_defaults(func=cmd_roi)

    p = ssub.add_parser("tile", help="tile the registered slides (a job: resumable, one slide fails alone)")
    p.add_argument("--slide", type=int, action="append", dest="slide_ids", help="slide id (repeatable; default all)")
    p.add_argument("--tile-size", type=int)
    p.add_argument("--mpp", type=float, dest="target_mpp")
    p.add_argument("--tissue-threshold", type=float)
    add_roi_class_options(p, default="the project's [slides] roi_classes")
    add_project_option(p)
    p.set_defaults(func=cmd_tile)


def cmd_add(args) -> int:
    from pathomics_desktop.jobs.cli import _echo
    from pathomics_desktop.jobs.core import JobContext
    from pathomics_desktop.registry.slides import add_slides, load_slide_mapping

    with opened_registry(args) as (project, registry):
        mapping = load_slide_mapping(args.mapping) if args.mapping else None
        report = add_slides(registry, project, args.paths, mapping=mapping, pattern=args.pattern,
                            thumbnails=not args.no_thumbnails, ctx=JobContext(on_progress=_echo))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for o in report.outcomes:
            print(f"{o.status:<10} {o.path}" + (f" -> {o.study_id}" if o.study_id else "")
                  + (f"  ({o.message})" if o.message else ""))
        print(report.summary())
    return 1 if report.failed else 0


def cmd_list(args) -> int:
    from pathomics_desktop.registry.slides import list_slides

    with opened_registry(args) as (_project, registry):
        rows = list_slides(registry)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            mpp = r["mpp_override"] or r["mpp_x"]
            print(f"{r['id']:>5}  {r['study_id'] or '-':<14} {r['qc_status']:<9} "
                  f"{(r['width'] or 0)}x{(r['height'] or 0)} mpp {mpp if mpp else '-'}  {r['path']}"
                  + (f"  [{r['mpp_flag']}]" if r["mpp_flag"] else "") + (f"  ({r['qc_reason']})" if r["qc_reason"] else ""))
    return 0


def cmd_set_mpp(args) -> int:
    from pathomics_desktop.errors import UserError
    from pathomics_desktop.registry.slides import set_mpp_override

    value = None
    if args.mpp.lower() != "none":
        try:
            value = float(args.mpp)
        except ValueError:
            raise UserError(f"MPP {args.mpp!r} is not a number") from None
    with opened_registry(args) as (_project, registry):
        slide = set_mpp_override(registry, args.slide, value, reason=args.reason)
    print(f"slide {slide.id}: MPP override {slide.mpp_override if slide.mpp_override else 'cleared'}")
    return 0


def cmd_qc(args) -> int:
    from pathomics_desktop.registry.slides import set_slide_qc

    with opened_registry(args) as (_project, registry):
        set_slide_qc(registry, args.slide, args.status, args.reason)
    print(f"slide {args.slide}: QC {args.status}")
    return 0


def cmd_roi(args) -> int:
    from pathomics_desktop.slides.jobs import import_roi

    with opened_registry(args) as (project, registry):
        target, selection = import_roi(registry, project, args.slide, args.geojson)
    if args.json:
        print(json.dumps({"path": str(target), **selection.to_dict()}, indent=2))
    else:
        print(f"ROI stored as {target}")
        print(f"  {selection.summary()}")
    return 0


def cmd_tile(args) -> int:
    from pathomics_desktop.jobs.cli import run_in_foreground

    with opened_registry(args) as (project, registry):
        params = {k: v for k, v in {"slide_ids": args.slide_ids, "tile_size": args.tile_size,
                                    "target_mpp": args.target_mpp, "tissue_threshold": args.tissue_threshold,
                                    "roi_classes": args.roi_class, "exclude_classes": args.exclude_class}.items()
                  if v is not None}
        code = run_in_foreground(project, registry, "tiling", params)
        from pathomics_desktop.jobs.runner import list_jobs

        job = list_jobs(registry, limit=1)[0]
    if job.result:
        from pathomics_desktop.slides.roi import selection_summary

        print(json.dumps(job.result["counts"]))
        for slide_id, selection in (job.result.get("rois") or {}).items():
            print(f"slide {slide_id}: ROI {selection_summary(selection)}")
        for line in job.result["failures"]:
            print(line, file=sys.stderr)
        if job.result["failures"]:
            return 1
    return code
