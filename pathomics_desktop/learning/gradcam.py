"""Grad-CAM heatmaps for patch classifiers and slide-level maps of patch probabilities.

Grad-CAM (Selvaraju et al., ICCV 2017): for a target layer with activations A (C x h x w) and
class score y_c (the logit), the channel weights are the spatially averaged gradients
alpha_k = mean_ij dy_c/dA_kij and the map is ReLU(sum_k alpha_k A_k), upsampled bilinearly to
the tile size and divided by its maximum so it lies in [0, 1] (all zeros when nothing is
positive). Target layers: the last convolutional block of the CNNs (ResNet ``layer4``,
DenseNet ``features`` ending with the last norm + ReLU) and, for CrossFormer, the
normalised output tokens of the last stage laid out on their grid (``model.feature_map``).
CrossFormer's last stage attends globally (its map is at most a few groups wide) and its
cross-scale embeddings have large kernels, so evidence spreads to neighbouring cells more
than in a CNN; ``method="hirescam"`` keeps the gradient per position (any token layer).

Rendering uses numpy and Pillow only: a "jet" colormap (blue = low, red = high) blended over
the tile, and a slide map with one pixel block per tile (transparent where there is no tile).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pathomics_desktop.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


def default_cam_layer(model: "nn.Module") -> "nn.Module":
    """The module whose output Grad-CAM uses for a backbone of this project.

    CrossFormer: ``feature_map``, the normalised last-stage tokens on their grid. As the
    logit is z_c = mean_ij(w_c . f_ij) + b_c, its Grad-CAM equals the exact per-token
    contribution ReLU(w_c . f_ij) (class activation mapping, Zhou et al. 2016). The inputs of
    the last block's attention (``blocks[-1].norm1``, a common choice for Swin) miss the
    residual stream and gave maps unrelated to the evidence in our tests.
    """
    if hasattr(model, "feature_map") and hasattr(model, "last_grid"):  # CrossFormer
        return model.feature_map
    if hasattr(model, "layer4"):  # ResNet family
        return model.layer4
    if hasattr(model, "features"):  # DenseNet family
        return model.features
    raise ValueError(f"no default Grad-CAM layer for {type(model).__name__}; pass target_layer")


def tokens_to_map(tokens: "torch.Tensor", grid: tuple[int, int]) -> "torch.Tensor":
    """(B, h*w, C) tokens in row-major grid order -> (B, C, h, w) map."""
    h, w = grid
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


def grad_cam(model: "nn.Module", images: "torch.Tensor", target_class: int | list[int] | None = None,
             target_layer: "nn.Module | None" = None, method: str = "gradcam",
             output_size: tuple[int, int] | None = None,
             score: str = "centered_logit") -> np.ndarray:
    """Class activation maps (B, H, W) float32 in [0, 1] at the input (or ``output_size``) size.

    ``images``: normalised (B, 3, H, W) batch on the model's device. ``target_class``: one
    class for all images, one per image, or None for each image's predicted class.
    ``method``: "gradcam" (Selvaraju et al. 2017, the study's method) or "hirescam"
    (Draelos & Carin 2020: ReLU(sum_k dy_c/dA_k * A_k) element-wise, without averaging the
    gradient over space; it differs from Grad-CAM only where the gradient varies across
    positions, i.e. not at CrossFormer's ``feature_map``, whose gradient is uniform).
    ``score``: the differentiated class score, "centered_logit" y_c = z_c - mean_k z_k
    (default) or the raw "logit" z_c. Softmax probabilities do not change when the same
    amount is added to every logit, so the raw logit of a softmax classifier carries an
    arbitrary shared part (in a 2-class model z_1 can fall where the evidence for class 1
    rises, as long as z_0 falls faster); the centred logit removes it (for 2 classes it is
    (z_1 - z_0) / 2, the log-odds up to a factor). The model is run in eval mode; its
    parameter gradients are left untouched.
    """
    import torch
    import torch.nn.functional as F

    if method not in ("gradcam", "hirescam"):
        raise UserError(f"CAM method must be 'gradcam' or 'hirescam' (got {method!r})")
    if score not in ("centered_logit", "logit"):
        raise UserError(f"CAM score must be 'centered_logit' or 'logit' (got {score!r})")

    layer = target_layer if target_layer is not None else default_cam_layer(model)
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            # an input that requires grad keeps the graph even when the model is frozen
            logits = model(images.detach().requires_grad_(True))
            if not captured or captured[-1].ndim not in (3, 4):
                raise ValueError("Grad-CAM target layer must output a (B, C, h, w) map "
                                 "or (B, h*w, C) tokens")
            activations = captured[-1]
            b = logits.shape[0]
            if target_class is None:
                targets = logits.argmax(dim=1)
            elif isinstance(target_class, int):
                targets = torch.full((b,), int(target_class), device=logits.device)
            else:
                targets = torch.as_tensor(list(target_class), device=logits.device)
            if targets.shape != (b,) or int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]:
                raise UserError(f"Grad-CAM target class {target_class} is not one of the "
                                f"model's {logits.shape[1]} classes")
            if score == "centered_logit":  # softmax ignores a shift shared by all logits
                logits = logits - logits.mean(dim=1, keepdim=True)
            target_score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(target_score, activations)
    finally:
        handle.remove()
        model.train(was_training)
    if activations.ndim == 3:  # tokens (B, h*w, C) in row-major grid order -> (B, C, h, w)
        grid = _token_grid(model, activations.shape[1])
        activations, grads = tokens_to_map(activations, grid), tokens_to_map(grads, grid)
    if method == "hirescam":  # element-wise gradient x activation
        cam = torch.relu((grads.float() * activations.detach().float()).sum(dim=1, keepdim=True))
    else:  # Grad-CAM: channel weights = spatial mean of the gradient
        weights = grads.float().mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * activations.detach().float()).sum(dim=1, keepdim=True))
    size = tuple(output_size) if output_size is not None else tuple(images.shape[-2:])
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    cam = cam[:, 0].clamp_min(0)
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
    return cam.cpu().numpy().astype(np.float32)


def _token_grid(model: "nn.Module", n_tokens: int) -> tuple[int, int]:
    grid = getattr(model, "last_grid", None)
    if grid is not None and grid[0] * grid[1] == n_tokens:
        return int(grid[0]), int(grid[1])
    side = int(round(n_tokens ** 0.5))
    if side * side != n_tokens:
        raise ValueError(f"cannot lay {n_tokens} tokens on a grid; use a map-shaped layer")
    return side, side


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 RGB, piecewise-linear "jet" (0 dark blue, 0.5 green, 1 dark red).

    channel(v) = clip(1.5 - |4 v - c|, 0, 1) with c = 3 (red), 2 (green), 1 (blue).
    """
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)
    rgb = np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)
    return np.round(rgb * 255).astype(np.uint8)


def _check_heatmap(heatmap: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise UserError(f"heatmap must be 2-D (got shape {heatmap.shape})")
    if shape is not None and heatmap.shape != shape:
        raise UserError(f"heatmap shape {heatmap.shape} differs from the tile's {shape}")
    if not np.isfinite(heatmap).all():
        raise UserError("heatmap contains NaN or infinite values")
    return heatmap


def _png_bytes(image, path: str | Path | None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def render_cam_overlay(tile: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
                       path: str | Path | None = None) -> bytes:
    """PNG bytes of the tile (H, W, 3 uint8) blended with a jet heatmap (H, W in [0, 1]).

    pixel = (1 - alpha) * tile + alpha * jet(heatmap); written to ``path`` when given.
    """
    from PIL import Image

    tile = np.asarray(tile)
    if tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8:
        raise UserError(f"tile must be an (H, W, 3) uint8 RGB array (got {tile.shape} {tile.dtype})")
    heat = _check_heatmap(heatmap, tile.shape[:2])
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"overlay alpha must be in [0, 1] (got {alpha})")
    blend = (1.0 - alpha) * tile.astype(np.float32) + alpha * jet_colormap(heat).astype(np.float32)
    return _png_bytes(Image.fromarray(np.round(blend).astype(np.uint8), "RGB"), path)


@dataclass
class SlideProbabilityMap:
    """Patch probabilities on the slide's tile grid.

    ``values[r, c]`` is the probability of the tile whose top-left corner is
    (x0 + c * tile_size, y0 + r * tile_size) in slide pixels; NaN marks grid cells without a
    tile (background), never a failed prediction.
    """

    values: np.ndarray
    x0: int
    y0: int
    tile_size: int

    @property
    def covered(self) -> np.ndarray:
        return ~np.isnan(self.values)


def _column(table: Any, name: str) -> np.ndarray:
    try:
        column = table[name]
    except (KeyError, IndexError, TypeError, ValueError):
        raise UserError(f"tile table has no column {name!r}") from None
    return np.asarray(column)


def slide_probability_map(table: Any, tile_size: int, x_col: str = "x", y_col: str = "y",
                          prob_col: str = "prob") -> SlideProbabilityMap:
    """Lay a table of tiles (x, y = top-left slide pixel, prob in [0, 1]) on their grid.

    ``table`` is anything indexable by column name (pandas/pyarrow table, dict of arrays).
    Grid cell = ((y - min y) / tile_size, (x - min x) / tile_size); coordinates must sit on
    that grid and each cell may hold one tile.
    """
    if int(tile_size) <= 0:
        raise UserError(f"tile size must be positive (got {tile_size})")
    tile_size = int(tile_size)
    xs, ys = _column(table, x_col), _column(table, y_col)
    probs = _column(table, prob_col).astype(np.float64)
    if len(xs) == 0:
        raise UserError("tile table is empty: no tiles to map")
    if not (np.issubdtype(xs.dtype, np.number) and np.issubdtype(ys.dtype, np.number)):
        raise UserError(f"tile columns {x_col!r}/{y_col!r} must be numeric pixel coordinates")
    bad = np.flatnonzero(~np.isfinite(probs) | (probs < 0) | (probs > 1))
    if bad.size:
        i = int(bad[0])
        raise UserError(f"tile table row {i} (x={xs[i]}, y={ys[i]}): {prob_col}={probs[i]} "
                        f"is not a probability in [0, 1] ({bad.size} such rows)")
    x0, y0 = int(xs.min()), int(ys.min())
    cols_f, rows_f = (xs - x0) / tile_size, (ys - y0) / tile_size
    cols, rows = np.round(cols_f).astype(np.int64), np.round(rows_f).astype(np.int64)
    off = np.flatnonzero((np.abs(cols_f - cols) > 1e-6) | (np.abs(rows_f - rows) > 1e-6))
    if off.size:
        i = int(off[0])
        raise UserError(f"tile table row {i}: (x={xs[i]}, y={ys[i]}) is not on the "
                        f"{tile_size}-px tile grid starting at ({x0}, {y0})")
    values = np.full((int(rows.max()) + 1, int(cols.max()) + 1), np.nan, dtype=np.float32)
    flat = rows * values.shape[1] + cols
    unique, first, counts = np.unique(flat, return_index=True, return_counts=True)
    if (counts > 1).any():
        i = int(first[np.argmax(counts > 1)])
        raise UserError(f"tile table has more than one tile at (x={xs[i]}, y={ys[i]})")
    values[rows, cols] = probs
    return SlideProbabilityMap(values=values, x0=x0, y0=y0, tile_size=tile_size)


def render_slide_map(slide_map: SlideProbabilityMap, pixels_per_tile: int = 4,
                     path: str | Path | None = None) -> bytes:
    """PNG bytes (RGBA) of a slide probability map: jet colours, transparent where no tile."""
    from PIL import Image

    if int(pixels_per_tile) < 1:
        raise UserError(f"pixels per tile must be at least 1 (got {pixels_per_tile})")
    values = slide_map.values
    rgba = np.zeros(values.shape + (4,), dtype=np.uint8)
    covered = slide_map.covered
    rgba[..., :3] = jet_colormap(np.nan_to_num(values, nan=0.0))
    rgba[..., 3] = np.where(covered, 255, 0)
    rgba[~covered, :3] = 0
    k = int(pixels_per_tile)
    rgba = np.repeat(np.repeat(rgba, k, axis=0), k, axis=1)
    return _png_bytes(Image.fromarray(rgba, "RGBA"), path)
