"""Patch inference: uint8 tile batches -> class probabilities (softmax of the logits).

Each batch goes (optionally) through a stain normaliser, then the per-channel Z-score
standardisation of :mod:`pathomics_desktop.learning.preprocess`, then the model in eval mode
under ``torch.inference_mode``; on CUDA with autocast (bf16 when supported, else fp16) and
channels_last memory layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from pathomics_desktop.jobs.core import CancelToken
    from pathomics_desktop.learning.training import ProgressCallback


def predict_probabilities(model: "nn.Module", batches: Iterable[np.ndarray],
                          device: "str | torch.device" = "auto",
                          normalise: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
                          amp: bool = True, channels_last: bool = True,
                          total_tiles: int | None = None,
                          progress: "ProgressCallback | None" = None,
                          cancel: "CancelToken | None" = None) -> np.ndarray:
    """(N, K) float32 softmax probabilities for all tiles of ``batches``.

    ``batches``: (B, H, W, 3) uint8 RGB arrays or tensors (any device).
    ``normalise`` maps a uint8 (B, H, W, 3) tensor on the device to the same (e.g. Macenko).
    ``progress(fraction, message)`` needs ``total_tiles`` for the fraction; ``cancel`` is
    checked before every batch (raises :class:`~pathomics_desktop.learning.training.Cancelled`).
    """
    import torch

    from pathomics_desktop.learning.preprocess import numpy_to_tensor, tiles_to_tensor
    from pathomics_desktop.learning.training import Cancelled, resolve_device

    device = resolve_device(device) if isinstance(device, str) else device
    cuda = device.type == "cuda"
    use_amp = amp and cuda
    amp_dtype = torch.bfloat16 if (use_amp and torch.cuda.is_bf16_supported()) else torch.float16
    layout = torch.channels_last if (channels_last and cuda) else torch.contiguous_format
    model = model.to(device).eval().to(memory_format=layout)
    outputs: list[np.ndarray] = []
    done = 0
    with torch.inference_mode():
        for batch in batches:
            if cancel is not None and cancel.cancelled:
                raise Cancelled(f"inference cancelled after {done} tiles")
            tiles = batch if isinstance(batch, torch.Tensor) else numpy_to_tensor(batch)
            tiles = tiles.to(device, non_blocking=cuda)
            if normalise is not None:
                tiles = normalise(tiles)
            images = tiles_to_tensor(tiles, device=device,
                                     channels_last=layout == torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(images)
            outputs.append(logits.float().softmax(dim=1).cpu().numpy())
            done += len(images)
            if progress is not None:
                fraction = done / total_tiles if total_tiles else 0.0
                progress(min(fraction, 1.0), f"{done} tiles")
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)
