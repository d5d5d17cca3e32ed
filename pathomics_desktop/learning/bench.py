"""``pathomics bench inference``: model-only inference throughput (images/s).

Measures each model on random input tensors: fp32 on the CPU; on CUDA (when present) both
plain fp32 and the production path (autocast + channels_last) with the GPU utilisation
sampled during the timed loop. The baseline is ResNet-18 fp32 on the same device in the
same run; every row prints its ratio to it (and, on CUDA, the AMP speed-up over fp32).

End-to-end throughput (``--end-to-end``, on by default) reads the tiles of a synthetic
Aperio slide through the tile index (fast JPEG path, next batch prefetched while the model
runs), Macenko-normalises them in torch on the model's device and runs the model; its
ratio to the same model's model-only speed is printed (goal: at least 0.85x).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

BASELINE = "resnet18"


class GpuUtilisationSampler:
    """Samples GPU utilisation (%) in a thread: torch.cuda.utilization(), else nvidia-smi."""

    def __init__(self, device_index: int = 0, period_s: float = 0.2):
        self.device_index, self.period_s = device_index, period_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        import torch

        try:
            return float(torch.cuda.utilization(self.device_index))
        except Exception:
            pass
        if shutil.which("nvidia-smi"):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                     f"--id={self.device_index}"], capture_output=True, text=True, timeout=5)
                return float(out.stdout.strip().splitlines()[0])
            except Exception:
                return None
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._read()
            if value is None:
                return
            self.samples.append(value)
            self._stop.wait(self.period_s)

    def __enter__(self) -> "GpuUtilisationSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def _synchronise(device: "torch.device") -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_model(model: "nn.Module", device: "torch.device", batch_size: int, input_size: int,
                  iterations: int, warmup: int, amp: bool = False,
                  channels_last: bool = False) -> dict:
    """Images/s of ``model`` on one random batch repeated ``iterations`` times (after warm-up)."""
    import torch

    model = model.to(device).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    images = torch.randn(batch_size, 3, input_size, input_size, device=device)
    images = images.contiguous(memory_format=memory_format)
    amp_dtype = torch.bfloat16 if (device.type == "cuda" and torch.cuda.is_bf16_supported()) \
        else torch.float16
    use_amp = amp and device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            model(images)

    with torch.inference_mode():
        for _ in range(warmup):
            step()
        _synchronise(device)
        sampler = GpuUtilisationSampler(device.index or 0) if device.type == "cuda" else None
        if sampler:
            sampler.__enter__()
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        _synchronise(device)
        seconds = time.perf_counter() - start
        if sampler:
            sampler.__exit__(None, None, None)
    return {
        "images_per_s": batch_size * iterations / seconds,
        "seconds": seconds,
        "gpu_utilisation_pct": sampler.mean if sampler else None,
    }


def end_to_end(model: "nn.Module", batches: Iterable[np.ndarray], device: "torch.device",
               normalise: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
               amp: bool = True, channels_last: bool = True) -> dict:
    """Tiles/s of read + normalise + standardise + infer over ``batches`` of uint8 tiles.

    ``batches``: the slide pipeline's tile batch iterator ((B, H, W, 3) uint8);
    ``normalise``: the torch Macenko normaliser (uint8 (B, H, W, 3) tensor on ``device`` ->
    same). Reading time is included because the iterator is consumed inside the timer.
    """
    from pathomics_desktop.learning.inference import predict_probabilities

    counted: list[int] = []

    def counting(source: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
        for batch in source:
            counted.append(len(batch))
            yield batch

    start = time.perf_counter()
    predict_probabilities(model, counting(batches), device=device, normalise=normalise,
                          amp=amp, channels_last=channels_last)
    _synchronise(device)
    seconds = time.perf_counter() - start
    n_tiles = sum(counted)
    return {"tiles_per_s": n_tiles / seconds if seconds > 0 else float("nan"),
            "tiles": n_tiles, "seconds": seconds}


def synthetic_tile_batches(n_batches: int, batch_size: int, size: int,
                           seed: int = 0) -> Iterable[np.ndarray]:
    """Random uint8 RGB tile batches (for tests of the timing loop only)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        yield rng.integers(0, 256, size=(batch_size, size, size, 3), dtype=np.uint8)


def slide_tile_source(folder, tile_size: int, min_tiles: int):
    """A synthetic 20x Aperio slide tiled at ``tile_size`` px (0.5 um/px): (path, index)."""
    from pathlib import Path

    import pandas as pd

    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide
    from pathomics_desktop.slides.tiling import TilingParams, tile_slide

    folder = Path(folder)
    side = max(2048, tile_size * int(np.ceil(np.sqrt(min_tiles * 2.5))))  # tissue mask needs >= 32 px
    slide = folder / f"bench_e2e_{side}.svs"
    if not slide.exists():
        write_synthetic_slide(slide, width=side, height=side, aggressiveness=0.5, center="B", seed=5,
                              mpp=0.5, app_mag=20)
    params = TilingParams(tile_size=tile_size, target_mpp=0.5, tissue_threshold=0.3, estimate_stain=False)
    result = tile_slide(slide, folder, params=params)
    index = pd.read_parquet(result.index_path)
    if len(index) < min_tiles:  # repeat rows: the timing needs enough batches
        index = pd.concat([index] * int(np.ceil(min_tiles / max(len(index), 1))), ignore_index=True)
    return slide, index.iloc[:min_tiles]


def slide_batches(slide, index, batch_size: int) -> Iterable[np.ndarray]:
    from pathomics_desktop.slides.tiling import iter_tile_batches

    for _rows, patches in iter_tile_batches(slide, index, batch_size=batch_size):
        yield patches


def macenko_on(device):
    from pathomics_desktop.slides.stain import builtin_reference, macenko_normalize

    reference = builtin_reference()
    return lambda tiles: macenko_normalize(tiles, reference, device=device).images


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pathomics bench inference",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,crossformer_s",
                        help="comma-separated backbones (baseline resnet18 is always added)")
    parser.add_argument("--device", default="auto", help="auto (CPU + CUDA if present), cpu, cuda")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default 8 on CPU, 64 on CUDA)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed batches (default 3 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--num-classes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True,
                        help="also time slide tiles -> Macenko -> infer (default on)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def main(argv: list[str] | None = None) -> int:
    import torch

    from pathomics_desktop.errors import UserError
    from pathomics_desktop.learning.backbones import BACKBONES, create_backbone

    args = build_parser().parse_args(argv or [])
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKBONES]
    if unknown:
        raise UserError(f"unknown model(s) {unknown}; choose from {', '.join(BACKBONES)}")
    if BASELINE not in names:
        names.insert(0, BASELINE)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("--device cuda requested but CUDA is not available")

    import tempfile

    rows: list[dict] = []
    slide_source = None
    workdir = tempfile.mkdtemp(prefix="pathomics-bench-inference-")
    for device_name in devices:
        device = torch.device(device_name)
        cuda = device.type == "cuda"
        batch = args.batch_size or (64 if cuda else 8)
        iters = args.iterations or (20 if cuda else 6)
        modes = [("fp32", False, False)] + ([("amp+channels_last", True, True)] if cuda else [])
        baseline_speed: float | None = None
        for name in names:
            torch.manual_seed(0)
            model = create_backbone(name, args.num_classes)
            fp32_speed = None
            for mode, amp, channels_last in modes:
                result = measure_model(model, device, batch, args.input_size, iters,
                                       args.warmup, amp=amp, channels_last=channels_last)
                speed = result["images_per_s"]
                if name == BASELINE and mode == "fp32":
                    baseline_speed = speed
                if mode == "fp32":
                    fp32_speed = speed
                rows.append({
                    "model": name, "device": str(device), "mode": mode, "batch_size": batch,
                    "input_size": args.input_size, "iterations": iters,
                    "images_per_s": round(speed, 2),
                    "ratio_to_resnet18_fp32": round(speed / baseline_speed, 3),
                    "speedup_over_fp32": round(speed / fp32_speed, 3),
                    "gpu_utilisation_pct": result["gpu_utilisation_pct"],
                })
            if args.end_to_end:
                if slide_source is None:
                    slide_source = slide_tile_source(workdir, args.input_size, batch * (iters + args.warmup))
                slide, index = slide_source
                end_to_end(model, slide_batches(slide, index.iloc[:batch * args.warmup], batch), device,
                           normalise=macenko_on(device))  # warm-up
                e2e = end_to_end(model, slide_batches(slide, index.iloc[batch * args.warmup:], batch), device,
                                 normalise=macenko_on(device), amp=cuda, channels_last=cuda)
                best_model_only = rows[-1]["images_per_s"]
                rows.append({"model": name, "device": str(device),
                             "mode": "end-to-end (read+Macenko+infer)", "batch_size": batch,
                             "input_size": args.input_size, "iterations": iters,
                             "images_per_s": round(e2e["tiles_per_s"], 2),
                             "ratio_to_resnet18_fp32": round(e2e["tiles_per_s"] / baseline_speed, 3),
                             "speedup_over_fp32": None, "gpu_utilisation_pct": None,
                             "ratio_to_model_only": round(e2e["tiles_per_s"] / best_model_only, 3)})
            del model
    shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "rows": rows}, indent=2))
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; baseline: "
              f"{BASELINE} fp32 on the same device")
        print(f"{'model':<15} {'device':<6} {'mode':<20} {'batch':>5} {'px':>4} "
              f"{'img/s':>9} {'vs base':>8} {'vs fp32':>8} {'GPU %':>6}")
        for r in rows:
            gpu = "" if r["gpu_utilisation_pct"] is None else f"{r['gpu_utilisation_pct']:.0f}"
            fp = "" if r["speedup_over_fp32"] is None else f"{r['speedup_over_fp32']:.2f}x"
            e2e = f"  end-to-end / model-only = {r['ratio_to_model_only']:.2f}x (goal >= 0.85)" \
                if "ratio_to_model_only" in r else ""
            print(f"{r['model']:<15} {r['device']:<6} {r['mode'][:20]:<20} {r['batch_size']:>5} "
                  f"{r['input_size']:>4} {r['images_per_s']:>9.1f} "
                  f"{r['ratio_to_resnet18_fp32']:>7.2f}x {fp:>8} {gpu:>6}{e2e}")
    return 0
