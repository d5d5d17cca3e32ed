"""``pathomics slides info`` and ``pathomics tile``: the whole-slide pipeline on files.

Heavy libraries (OpenSlide, pandas, pyarrow, torch) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pathomics_desktop.errors import UserError

SLIDE_SUFFIXES = {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm"}


def _slides_info(args: argparse.Namespace) -> int:
    from pathomics_desktop.slides.reader import read_slide_metadata

    status = 0
    for slide in args.slide:
        try:
            meta = read_slide_metadata(slide, mpp_override=args.mpp_override)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        if args.json:
            print(json.dumps(meta.to_dict(with_properties=args.properties)))
        else:
            print(f"{meta.path}")
            print(f"  vendor: {meta.vendor}   scanner: {meta.scanner}")
            print(f"  size: {meta.width} x {meta.height} px, {meta.levels} levels "
                  f"(downsamples {', '.join(f'{d:g}' for d in meta.level_downsamples)})")
            print(f"  MPP: {meta.mpp_x} x {meta.mpp_y} um/px   objective: {meta.objective_power}x")
            print(f"  MPP status: {meta.mpp_status}{' - ' + meta.mpp_message if meta.mpp_message else ''}")
    return status


def _tiles_geojson(args: argparse.Namespace) -> int:
    from pathomics_desktop.slides.tiling import export_tile_grid_geojson

    out = export_tile_grid_geojson(args.index, args.out)
    print(f"wrote {out}")
    return 0


def _expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in SLIDE_SUFFIXES))
        else:
            out.append(p)
    return out


def _roi_for(slide: Path, roi: str | None, n_slides: int) -> str | None:
    if roi is None:
        return None
    r = Path(roi)
    if r.is_dir():
        for suffix in (".geojson", ".json"):
            cand = r / (slide.stem + suffix)
            if cand.is_file():
                return str(cand)
        raise UserError(f"slide {slide}: no ROI file {slide.stem}.geojson in {r}")
    if n_slides > 1:
        raise UserError(f"--roi {r} is one file but {n_slides} slides were given; pass a folder of <slide>.geojson")
    return str(r)


def _tile(args: argparse.Namespace) -> int:
    from pathomics_desktop.slides.tiling import TilingParams, tile_slide
    from pathomics_desktop.slides.tissue import TissueMaskParams

    slides = _expand(args.slide)
    if not slides:
        raise UserError("no slides given (files or folders of slides)")
    stems: dict[str, Path] = {}
    for slide in slides:  # one index per file stem in --out
        if slide.stem in stems and stems[slide.stem] != slide:
            raise UserError(f"slides {stems[slide.stem]} and {slide} would share the index "
                            f"{slide.stem}.parquet; tile them into different --out folders")
        stems[slide.stem] = slide
    class_options = {"roi_classes": tuple(args.roi_class)} if args.roi_class else {}
    params = TilingParams(tile_size=args.tile_size, target_mpp=args.mpp, tissue_threshold=args.tissue_threshold,
                          roi_threshold=args.roi_threshold, white_level=args.white_level,
                          mask=TissueMaskParams(mask_downsample=args.mask_downsample),
                          workers=args.workers, fast_path=not args.no_fast_path,
                          estimate_stain=not args.no_stain, exclude_classes=tuple(args.exclude_class or ()),
                          **class_options)
    if args.tile_size < 16 or args.mpp <= 0:
        raise UserError("--tile-size must be >= 16 and --mpp > 0")
    failed = 0
    for slide in slides:
        try:
            roi = _roi_for(slide, args.roi, len(slides))
            res = tile_slide(slide, args.out, roi_path=roi, params=params, mpp_override=args.mpp_override)
        except UserError as exc:
            failed += 1
            print(f"FAILED {slide}: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # a corrupt file can fail inside a codec: report, go on
            failed += 1
            print(f"FAILED {slide}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(res.to_dict()))
        else:
            extra = f", resumed {res.resumed_chunks} chunks" if res.resumed_chunks else ""
            print(f"{res.status:10s} {slide}: {res.n_tiles} tiles of {res.n_candidates} candidates "
                  f"(read {res.read_size} px at level {res.level}, {res.seconds:.1f} s{extra}) -> {res.index_path}")
            if res.roi_selection is not None:
                from pathomics_desktop.slides.roi import selection_summary

                print(f"           ROI {roi}: {selection_summary(res.roi_selection)}")
        if args.geojson and res.index_path:
            from pathomics_desktop.slides.tiling import export_tile_grid_geojson

            export_tile_grid_geojson(res.index_path, Path(res.index_path).with_suffix(".tiles.geojson"))
    if failed:
        print(f"{failed} of {len(slides)} slides failed", file=sys.stderr)
        return 1
    return 0


def add_roi_class_options(parser, default: str = "Tumor, Tumour, Region*") -> None:
    """``--roi-class`` and ``--exclude-class`` (repeatable), shared by the tiling commands."""
    parser.add_argument("--roi-class", action="append", metavar="NAME",
                        help=f"QuPath class to tile (glob, case-insensitive; repeatable; default {default})")
    parser.add_argument("--exclude-class", action="append", metavar="NAME",
                        help="QuPath class subtracted from the tiled region besides Ignore* (repeatable)")


def register(subparsers) -> None:
    """Add ``slides info`` and ``tile`` to the ``pathomics`` command."""
    from pathomics_desktop.cli import command_group

    ssub = command_group(subparsers, "slides", "whole-slide images: registry, metadata, QC, tiling")
    info = ssub.add_parser("info", help="print a slide's metadata (vendor, size, levels, MPP, objective)")
    info.add_argument("slide", nargs="+", help="slide file(s)")
    info.add_argument("--json", action="store_true", help="one JSON object per slide")
    info.add_argument("--properties", action="store_true", help="include all OpenSlide properties (with --json)")
    info.add_argument("--mpp-override", type=float, default=None, help="use this MPP (um/px) instead of the scanner's")
    info.set_defaults(func=_slides_info)
    tg = ssub.add_parser("tiles-geojson", help="export a tile index as QuPath GeoJSON tiles")
    tg.add_argument("index", help="tile index (<slide>.parquet written by `pathomics tile`)")
    tg.add_argument("--out", required=True, help="GeoJSON file to write")
    tg.set_defaults(func=_tiles_geojson)

    tile = subparsers.add_parser("tile", help="tile slides into Parquet tile indexes (resumable)")
    tile.add_argument("slide", nargs="+", help="slide files or folders")
    tile.add_argument("--roi", default=None, help="QuPath GeoJSON ROI file (one slide) or folder of <slide>.geojson")
    tile.add_argument("--tile-size", type=int, default=512, help="tile side in pixels (default 512)")
    tile.add_argument("--mpp", type=float, default=0.5, help="target um/px (default 0.5, i.e. 20x)")
    tile.add_argument("--mpp-override", type=float, default=None, help="slide MPP (um/px) to use instead of the scanner's")
    tile.add_argument("--tissue-threshold", type=float, default=0.5, help="minimum non-white fraction of a tile")
    tile.add_argument("--roi-threshold", type=float, default=0.5, help="minimum fraction of a tile inside an ROI")
    add_roi_class_options(tile)
    tile.add_argument("--white-level", type=int, default=210, help="a pixel is white when R, G, B >= this")
    tile.add_argument("--mask-downsample", type=float, default=64.0, help="level-0 px per tissue-mask pixel")
    tile.add_argument("--workers", type=int, default=0, help="reader threads (default: CPU cores)")
    tile.add_argument("--no-fast-path", action="store_true", help="read through OpenSlide only")
    tile.add_argument("--no-stain", action="store_true", help="skip the per-slide Macenko stain estimate")
    tile.add_argument("--geojson", action="store_true", help="also export the kept tiles as QuPath GeoJSON")
    tile.add_argument("--json", action="store_true", help="one JSON result per slide")
    tile.add_argument("--out", required=True, help="output folder for <slide>.parquet")
    tile.set_defaults(func=_tile)
