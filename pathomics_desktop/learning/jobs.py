"""Patch-model jobs on a project: training, inference, Grad-CAM (Qt-free, resumable).

A *run* lives in ``<project>/models/<run>/``: ``run.json`` (backbone, model options, input
size, stain normalisation, training settings, seeds, label counts), ``last.pt`` (checkpoint
every epoch, resumable) and ``best.pt`` (best validation weights). Inference writes
``<project>/predictions/<run>/<slide_id>.parquet`` with ``slide_id, x, y, prob, pred``
(prob = P(poor prognosis)), one atomic file per slide, skipping slides already done.
Grad-CAM writes ``<project>/gradcam/<run>/<slide_id>/``: tile heatmaps (``.npy`` + overlay
PNG) of the most confident tiles and the slide-level probability map (``.npy`` + PNG).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import atomic_path, remove_stale_temporaries

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def run_dir(project, run: str) -> Path:
    if not RUN_NAME.match(run or ""):
        raise UserError(f"model run name {run!r}: use letters, digits, '.', '_' and '-'")
    return project.root / "models" / run


def load_run(project, run: str) -> dict[str, Any]:
    path = run_dir(project, run) / "run.json"
    if not path.exists():
        raise UserError(f"model run {run!r} not found ({path}); train it with `pathomics train`")
    return json.loads(path.read_text(encoding="utf-8"))


def run_stain_normaliser(spec: dict[str, Any]):
    """The stain normalisation a model run was trained with (its spec's ``stain``): Macenko,
    or ``None`` for "none"; training, inference and the viewer's "as the model saw it" use it."""
    if spec.get("stain", "macenko") == "none":
        return None
    from pathomics_desktop.learning.project_data import macenko_numpy_normaliser

    return macenko_numpy_normaliser()


def training_job(project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Job ``training``: fine-tune a backbone on the training set, select on internal
    validation. ``params``: ``run``, ``backbone``, optional ``preset`` ("study"),
    ``epochs``, ``lr``, ``batch_size``, ``seed``, ``weights`` (local pretrained file),
    ``model_options`` (constructor options, e.g. a small CrossFormer), ``input_size``,
    ``max_tiles_per_slide``, ``stain`` ("macenko" | "none"), ``imbalance``, ``device``."""
    from pathomics_desktop.learning.backbones import create_backbone
    from pathomics_desktop.learning.distributed import is_main_process
    from pathomics_desktop.learning.preprocess import RandomCropFlip, TileDataset
    from pathomics_desktop.learning.project_data import (
        StreamedTiles, labelled, project_slides, require_two_classes, tile_entries)
    from pathomics_desktop.learning.training import seed_everything, study_preset, train

    backbone = params["backbone"]
    run = params.get("run") or backbone
    folder = run_dir(project, run)
    config = study_preset(backbone)
    for key in ("epochs", "lr", "batch_size", "seed", "imbalance", "device", "optimizer",
                "early_stopping_patience", "val_interval"):
        if params.get(key) is not None:
            setattr(config, key, type(getattr(config, key))(params[key]) if getattr(config, key) is not None
                    else params[key])
    seed = int(config.seed)
    spec = {"run": run, "backbone": backbone, "model_options": params.get("model_options") or {},
            "input_size": params.get("input_size"), "stain": params.get("stain", "macenko"),
            "max_tiles_per_slide": params.get("max_tiles_per_slide", 64), "weights": params.get("weights"),
            "config": asdict(config), "labels": {"poor": "RFS event within 12 months", "good": "RFS > 36 months"}}
    ctx.progress(0.01, "collecting labelled tiles")
    slides = project_slides(project)
    train_slides, val_slides = labelled(slides, "training"), labelled(slides, "internal")
    require_two_classes(train_slides, "training")
    normaliser = run_stain_normaliser(spec)
    datasets = {}
    for name, chosen, augment in (("training", train_slides, True), ("internal", val_slides, False)):
        entries, labels, _owners = tile_entries(chosen, max_tiles_per_slide=spec["max_tiles_per_slide"], seed=seed)
        tiles = StreamedTiles(entries, input_size=spec["input_size"], normaliser=normaliser)
        datasets[name] = TileDataset(tiles, labels, transform=RandomCropFlip() if augment else None) if entries else None
        spec[f"{name}_tiles"] = len(entries)
        spec[f"{name}_slides"] = {"poor": sum(s.label == 1 for s in chosen), "good": sum(s.label == 0 for s in chosen)}
    folder.mkdir(parents=True, exist_ok=True)
    if is_main_process():  # under torchrun, rank 0 writes; the other ranks only train
        remove_stale_temporaries(folder)  # of a run killed while writing a checkpoint
        with atomic_path(folder / "run.json") as tmp:
            tmp.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    ctx.log(f"training {backbone} on {spec['training_tiles']} tiles ({spec['training_slides']}), "
            f"validating on {spec['internal_tiles']} tiles")
    seed_everything(seed)
    model = create_backbone(backbone, 2, pretrained_weights=params.get("weights"), **spec["model_options"])
    result = train(model, datasets["training"], datasets["internal"], config, folder, num_classes=2,
                   progress=lambda f, m="": ctx.progress(0.02 + 0.98 * f, m), cancel=ctx.token, resume=True)
    summary = {"run": run, "epochs": result.epochs_completed, "steps": result.steps,
               "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
               "resumed_from_epoch": result.resumed_from_epoch, "device": result.device,
               "first_loss": result.history[0].get("train_loss") if result.history else None,
               "last_loss": result.history[-1].get("train_loss") if result.history else None}
    spec["result"] = summary
    if is_main_process():
        with atomic_path(folder / "run.json") as tmp:
            tmp.write_text(json.dumps(spec, indent=2, default=str), encoding="utf-8")
    return summary


def load_trained_model(project, run: str):
    """The run's best weights (else its last checkpoint) in its architecture."""
    import torch

    from pathomics_desktop.learning.backbones import create_backbone

    spec = load_run(project, run)
    folder = run_dir(project, run)
    model = create_backbone(spec["backbone"], 2, **spec.get("model_options", {}))
    for name in ("best.pt", "last.pt"):
        path = folder / name
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=True)
            weights = state.get("model", state) if isinstance(state, dict) else state
            model.load_state_dict(weights)
            return model, spec
    raise UserError(f"model run {run!r} has no weights yet (training not finished)")


def inference_job(project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Job ``inference``: predict every tile of every tiled slide; one Parquet per slide,
    skipping slides already done. ``params``: ``run``, optional ``batch_size``, ``device``."""
    import pandas as pd

    from pathomics_desktop.learning.inference import predict_probabilities
    from pathomics_desktop.learning.project_data import StreamedTiles, project_slides, tile_entries

    run = params["run"]
    model, spec = load_trained_model(project, run)
    out_dir = project.root / "predictions" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)  # of a run killed while writing a slide's predictions
    slides = project_slides(project)
    normaliser = run_stain_normaliser(spec)
    batch_size = int(params.get("batch_size", 32))
    done = skipped = 0
    for i, slide in enumerate(slides):
        ctx.check_cancelled()
        target = out_dir / f"{slide.slide_id}.parquet"
        if target.exists():
            skipped += 1
            continue
        ctx.progress(i / max(len(slides), 1), f"slide {slide.slide_id}: {slide.n_tiles} tiles")
        entries, _labels, _owners = tile_entries([slide], max_tiles_per_slide=None, seed=0)
        tiles = StreamedTiles(entries, input_size=spec.get("input_size"), normaliser=normaliser)
        probs = predict_probabilities(model, tiles.batches(batch_size), device=params.get("device", "auto"),
                                      cancel=ctx.token)
        tiles.close()
        frame = pd.DataFrame({"slide_id": slide.slide_id, "x": [e[1] for e in entries],
                              "y": [e[2] for e in entries], "prob": probs[:, 1].astype("float32"),
                              "pred": probs.argmax(axis=1).astype("int8")})
        with atomic_path(target) as tmp:
            frame.to_parquet(tmp, index=False)
        done += 1
    ctx.progress(1.0, f"{done} slides predicted, {skipped} already done")
    return {"run": run, "predicted": done, "skipped": skipped, "folder": str(out_dir)}


def gradcam_job(project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Job ``gradcam``: heatmaps of the ``top`` most confident tiles of each chosen slide
    (``params["slide_ids"]``, default all predicted) and the slide probability map."""
    import pandas as pd
    import torch

    from pathomics_desktop.learning.gradcam import grad_cam, render_cam_overlay, render_slide_map, slide_probability_map
    from pathomics_desktop.learning.preprocess import tiles_to_tensor
    from pathomics_desktop.learning.project_data import StreamedTiles, project_slides

    run = params["run"]
    model, spec = load_trained_model(project, run)
    model.eval()
    top = int(params.get("top", 4))
    pred_dir = project.root / "predictions" / run
    slides = {s.slide_id: s for s in project_slides(project)}
    wanted = params.get("slide_ids") or sorted(int(p.stem) for p in pred_dir.glob("*.parquet"))
    if not wanted:
        raise UserError(f"no predictions for run {run!r}: run `pathomics infer --model {run}` first")
    written = []
    for i, slide_id in enumerate(wanted):
        ctx.check_cancelled()
        ctx.progress(i / len(wanted), f"Grad-CAM slide {slide_id}")
        if slide_id not in slides or not (pred_dir / f"{slide_id}.parquet").exists():
            raise UserError(f"slide {slide_id} has no predictions for run {run!r}")
        preds = pd.read_parquet(pred_dir / f"{slide_id}.parquet")
        index = pd.read_parquet(slides[slide_id].index_path)
        tile_size = int(index["read_size"].iloc[0])
        out = project.root / "gradcam" / run / str(slide_id)
        out.mkdir(parents=True, exist_ok=True)
        slide_map = slide_probability_map(preds, tile_size)
        with atomic_path(out / "slide_map.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, slide_map.values)
        with atomic_path(out / "slide_map.png") as tmp:
            render_slide_map(slide_map, path=tmp)
        chosen = preds.assign(confidence=(preds["prob"] - 0.5).abs()).nlargest(top, "confidence")
        merged = chosen.merge(index, on=["x", "y"], how="left")
        entries = [(slides[slide_id].path, int(r.x), int(r.y), int(r.read_size), int(r.level), int(r.tile_size))
                   for r in merged.itertuples(index=False)]
        tiles = StreamedTiles(entries, input_size=spec.get("input_size"), normaliser=run_stain_normaliser(spec))
        images = tiles.batch(range(len(tiles)))
        tiles.close()
        batch = tiles_to_tensor(images)
        with torch.enable_grad():
            cams = grad_cam(model, batch, target_class=1)
        for j, row in enumerate(merged.itertuples(index=False)):
            stem = f"tile_{int(row.x)}_{int(row.y)}"
            with atomic_path(out / f"{stem}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, cams[j])
            with atomic_path(out / f"{stem}.png") as tmp:
                render_cam_overlay(images[j], cams[j], path=tmp)
        written.append(str(out))
    ctx.progress(1.0, f"Grad-CAM for {len(written)} slides")
    return {"run": run, "folders": written}
