"""``pathomics bench tiling``: the tiler against a naive OpenSlide loop and the decode bound.

On one synthetic Aperio slide (default 40,000 x 40,000 px at 0.25 um/px) it measures, in
one run:

* **tiler**: :func:`tile_slide` end to end (tissue mask, ROI-free grid, pixel reads,
  per-tile background check, Parquet index, stain estimate) in a child process, as
  tissue tiles per second, with the child's peak resident memory;
* **naive**: one process looping ``OpenSlide.read_region`` over the same candidate tiles
  (evenly spaced sample), converting to RGB, resampling and computing the same tissue
  fraction;
* **decode bound**: decoding exactly the stored JPEG tiles the tiler needs, on all cores
  (threads, libjpeg through OpenCV), nothing else; reported as tissue tiles per second
  (kept tiles / decode time). A second bound uses libjpeg's DCT scaling where the tiler
  does.

Optionally (``--memory-size``, default 100,000) it tiles a second, larger synthetic slide
in a child process and reports the peak memory. Ratios are printed against the baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, resource, sys, time
from pathomics_desktop.slides.tiling import TilingParams, tile_slide
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
res = tile_slide(args["slide"], args["out"], params=TilingParams(workers=args["workers"], estimate_stain=args["stain"]))
dt = time.perf_counter() - t0
# VmHWM: this process's own peak resident memory (ru_maxrss would include the parent's
# peak inherited through fork/exec)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
peak = int(hwm[0].split()[1]) / 1024.0 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"seconds": dt, "n_tiles": res.n_tiles, "n_candidates": res.n_candidates,
                  "status": res.status, "index": res.index_path, "read_size": res.read_size, "level": res.level,
                  "peak_rss_mb": peak}))
"""


def bench_slide(cache: Path, size: int, mpp: float, seed: int = 11) -> Path:
    """A synthetic pyramidal slide of ``size`` x ``size`` px at ``mpp``, written once into
    ``cache`` and reused (the tiling and viewer benchmarks)."""
    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"bench_{size}_{mpp:g}_{seed}.svs"
    stamp = path.with_suffix(".json")
    if path.is_file() and stamp.is_file():
        return path
    t0 = time.perf_counter()
    info = write_synthetic_slide(path, width=size, height=size, aggressiveness=0.5, center="BENCH", seed=seed,
                                 mpp=mpp, app_mag=round(10.0 / mpp), tile=256)
    stamp.write_text(json.dumps({"seconds": time.perf_counter() - t0, **info.to_dict()}), encoding="utf-8")
    print(f"made synthetic slide {path} ({size} x {size} px at {mpp} um/px) in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return path


def _run_tiler_child(slide: Path, out: Path, workers: int, stain: bool) -> dict:
    arg = json.dumps({"slide": str(slide), "out": str(out), "workers": workers, "stain": stain})
    proc = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True)
    if proc.returncode != 0:
        from pathomics_desktop.errors import UserError

        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"bench tiling: the tiler failed on {slide}: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _naive(slide: Path, xs: np.ndarray, ys: np.ndarray, read_size: int, level: int, tile_size: int,
           white_level: int, threshold: float) -> tuple[int, float]:
    """One process, ``read_region`` per tile: (kept, seconds)."""
    import cv2
    import openslide

    from pathomics_desktop.slides.tissue import white_fraction

    s = openslide.OpenSlide(str(slide))
    d = s.level_downsamples[level]
    rl = int(round(read_size / d))
    kept = 0
    t0 = time.perf_counter()
    for x, y in zip(xs, ys):
        rgba = np.asarray(s.read_region((int(x), int(y)), level, (rl, rl)))
        rgb = np.ascontiguousarray(rgba[..., :3])
        if rl != tile_size:
            rgb = cv2.resize(rgb, (tile_size, tile_size), interpolation=cv2.INTER_AREA)
        if 1.0 - white_fraction(rgb, white_level) >= threshold:
            kept += 1
    dt = time.perf_counter() - t0
    s.close()
    return kept, dt


def _decode_bound(slide: Path, xs: np.ndarray, ys: np.ndarray, read_size: int, level: int, tile_size: int,
                  workers: int, scaled: bool) -> tuple[int, float]:
    """Decode the stored tiles covering the given tiles on all cores: (n stored tiles, seconds)."""
    import openslide

    from pathomics_desktop.slides.fastread import JpegTiffReader

    s = openslide.OpenSlide(str(slide))
    dims = [tuple(d) for d in s.level_dimensions]
    d = s.level_downsamples[level]
    s.close()
    reader = JpegTiffReader.open(slide, dims)
    if reader is None:
        raise RuntimeError("bench slide is not a JPEG TIFF")
    rl = int(round(read_size / d))
    scale = 1
    if scaled:
        for f in (8, 4, 2):
            if rl / tile_size / f >= 0.95:
                scale = f
                break
    stored: list[int] = []
    for x, y in zip(xs, ys):
        stored.extend(reader.stored_tiles(level, int(round(x / d)), int(round(y / d)), rl, rl))
    blobs_idx = np.unique(np.array(stored, dtype=np.int64))
    from concurrent.futures import ThreadPoolExecutor

    def work(chunk: np.ndarray) -> int:
        for i in chunk:
            reader.decode_tile(level, int(i), scale)
        return len(chunk)

    chunks = np.array_split(blobs_idx, max(1, len(blobs_idx) // 64))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, chunks))
    dt = time.perf_counter() - t0
    reader.close()
    return int(blobs_idx.size), dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pathomics bench tiling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=40000, help="synthetic slide side in px (default 40000)")
    ap.add_argument("--slide-mpp", type=float, default=0.25, help="synthetic slide um/px (0.25 = 40x)")
    ap.add_argument("--slide", default=None, help="use this slide instead of a synthetic one")
    ap.add_argument("--memory-size", type=int, default=100000, help="side of the memory-test slide (0: skip)")
    ap.add_argument("--memory-mpp", type=float, default=0.5, help="um/px of the memory-test slide")
    ap.add_argument("--naive-sample", type=int, default=400, help="tiles read by the naive loop (evenly spaced)")
    ap.add_argument("--workers", type=int, default=0, help="threads (default: CPU cores)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repeats; the best time of each is used")
    ap.add_argument("--cache", default=None, help="folder for synthetic bench slides (kept between runs)")
    ap.add_argument("--no-stain", action="store_true", help="leave the stain estimate out of the tiler run")
    ap.add_argument("--quick", action="store_true", help="small smoke run (4096 px at 0.5 um/px, no memory slide)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.slide_mpp, args.memory_size, args.naive_sample, args.repeat = 4096, 0.5, 0, 16, 1
    workers = args.workers or (os.cpu_count() or 1)
    cache = Path(args.cache or Path(tempfile.gettempdir()) / "pathomics-bench")

    from pathomics_desktop.slides.reader import read_slide_metadata
    from pathomics_desktop.slides.tiling import SlideTileSource, TilingParams, plan_tiles

    slide = Path(args.slide) if args.slide else bench_slide(cache, args.size, args.slide_mpp)
    params = TilingParams(workers=workers)
    meta = read_slide_metadata(slide)
    with SlideTileSource(slide) as src:
        plan = plan_tiles(src, meta, params)
    n_cand = int(plan.x.size)

    pick = np.unique(np.linspace(0, n_cand - 1, min(n_cand, args.naive_sample)).round().astype(int))
    runs: dict[str, list[float]] = {"tiler": [], "naive": [], "decode": [], "decode_scaled": []}
    ours: dict = {}
    kept_naive = n_stored = 0
    for _rep in range(max(1, args.repeat)):  # interleaved repeats, best of each (shared, noisy cores)
        with tempfile.TemporaryDirectory(prefix="pathomics-bench-") as tmp:
            run = _run_tiler_child(slide, Path(tmp) / "ours", workers, not args.no_stain)
        if not ours or run["seconds"] < ours["seconds"]:
            ours = run
        runs["tiler"].append(run["seconds"])
        kept_naive, t = _naive(slide, plan.x[pick], plan.y[pick], plan.read_size, plan.level,
                               params.tile_size, params.white_level, params.tissue_threshold)
        runs["naive"].append(t)
        n_stored, t = _decode_bound(slide, plan.x, plan.y, plan.read_size, plan.level, params.tile_size, workers, False)
        runs["decode"].append(t)
        _, t = _decode_bound(slide, plan.x, plan.y, plan.read_size, plan.level, params.tile_size, workers, True)
        runs["decode_scaled"].append(t)
    t_naive, t_dec, t_dec_s = min(runs["naive"]), min(runs["decode"]), min(runs["decode_scaled"])
    ours_rate = ours["n_tiles"] / ours["seconds"]
    naive_rate = kept_naive / t_naive if t_naive > 0 else float("nan")
    bound_rate = ours["n_tiles"] / t_dec
    bound_rate_s = ours["n_tiles"] / t_dec_s

    result = {
        "slide": str(slide), "size": [meta.width, meta.height], "slide_mpp": meta.effective_mpp,
        "tile_size": params.tile_size, "target_mpp": params.target_mpp, "read_size": plan.read_size,
        "level": plan.level, "cores": os.cpu_count(), "workers": workers,
        "grid_tiles": plan.grid_size, "candidate_tiles": n_cand, "tissue_tiles": ours["n_tiles"],
        "tiler_seconds": round(ours["seconds"], 3), "tiler_tiles_per_s": round(ours_rate, 2),
        "tiler_peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "naive_sampled_tiles": int(pick.size), "naive_kept": kept_naive, "naive_seconds": round(t_naive, 3),
        "naive_tiles_per_s": round(naive_rate, 2),
        "decode_stored_tiles": n_stored, "decode_seconds": round(t_dec, 3), "decode_bound_tiles_per_s": round(bound_rate, 2),
        "decode_scaled_seconds": round(t_dec_s, 3), "decode_scaled_bound_tiles_per_s": round(bound_rate_s, 2),
        "ratio_vs_naive": round(ours_rate / naive_rate, 2) if naive_rate > 0 else None,
        "ratio_vs_decode_bound": round(ours_rate / bound_rate, 2),
        "ratio_vs_scaled_decode_bound": round(ours_rate / bound_rate_s, 2),
        "repeats": {k: [round(v, 3) for v in vals] for k, vals in runs.items()},
    }
    print(f"slide {slide.name}: {meta.width} x {meta.height} px at {meta.effective_mpp} um/px; "
          f"tiles {params.tile_size} px at {params.target_mpp} um/px = {plan.read_size} level-0 px from level {plan.level}")
    print(f"grid {plan.grid_size} tiles, {n_cand} candidates (tissue mask), {ours['n_tiles']} tissue tiles kept")
    print(f"tiler (end to end, {workers} threads): {ours['seconds']:.2f} s, {ours_rate:.1f} tissue tiles/s, "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB")
    print(f"naive read_region loop (1 process, {pick.size} sampled candidates): {naive_rate:.1f} tissue tiles/s")
    print(f"decode bound ({n_stored} stored JPEG tiles, full decode, {workers} threads): {t_dec:.2f} s = "
          f"{bound_rate:.1f} tissue tiles/s")
    print(f"decode bound with DCT scaling as the tiler uses: {t_dec_s:.2f} s = {bound_rate_s:.1f} tissue tiles/s")
    print(f"ratio tiler / naive = {result['ratio_vs_naive']}x (goal >= 4)")
    print(f"(best of {max(1, args.repeat)} interleaved runs each; all times: {result['repeats']})")
    print(f"ratio tiler / decode bound = {result['ratio_vs_decode_bound']}x (goal >= 0.7); "
          f"vs scaled-decode bound = {result['ratio_vs_scaled_decode_bound']}x")

    if args.memory_size > 0:
        big = bench_slide(cache, args.memory_size, args.memory_mpp)
        with tempfile.TemporaryDirectory(prefix="pathomics-bench-") as tmp:
            mem = _run_tiler_child(big, Path(tmp) / "mem", workers, not args.no_stain)
        result["memory_slide"] = str(big)
        result["memory_slide_size"] = args.memory_size
        result["memory_tiler_seconds"] = round(mem["seconds"], 2)
        result["memory_tiles"] = mem["n_tiles"]
        result["memory_peak_rss_mb"] = round(mem["peak_rss_mb"], 1)
        print(f"memory: tiling {args.memory_size} x {args.memory_size} px ({mem['n_tiles']} tissue tiles, "
              f"{mem['seconds']:.1f} s): peak RSS {mem['peak_rss_mb']:.0f} MB (goal < 1024 MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
