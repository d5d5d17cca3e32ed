"""Tile batches -> model input tensors (the study's per-channel Z-score standardisation).

x = (tile / 255 - mean_c) / std_c per RGB channel, with ImageNet statistics by default
(mean 0.485/0.456/0.406, std 0.229/0.224/0.225), the statistics the pretrained backbones
expect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pathomics_desktop.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tiles_to_tensor(tiles: "np.ndarray | torch.Tensor", device: "str | torch.device" = "cpu",
                    mean: tuple[float, float, float] = IMAGENET_MEAN,
                    std: tuple[float, float, float] = IMAGENET_STD,
                    channels_last: bool = False,
                    dtype: "torch.dtype | None" = None) -> "torch.Tensor":
    """(B, H, W, 3) uint8 RGB tiles -> (B, 3, H, W) standardised float tensor on ``device``.

    The uint8 batch is moved first (4x less transfer than floats), then converted there.
    """
    import torch

    batch = torch.as_tensor(np.asarray(tiles)) if not isinstance(tiles, torch.Tensor) else tiles
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != torch.uint8:
        raise UserError(f"tiles must be a (B, H, W, 3) uint8 batch (got {tuple(batch.shape)} "
                        f"{batch.dtype})")
    batch = batch.to(device, non_blocking=True).permute(0, 3, 1, 2)
    dtype = dtype or torch.float32
    mean_t = torch.tensor(mean, device=batch.device, dtype=dtype).view(1, 3, 1, 1) * 255.0
    std_t = torch.tensor(std, device=batch.device, dtype=dtype).view(1, 3, 1, 1) * 255.0
    images = (batch.to(dtype) - mean_t) / std_t
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return images.contiguous(memory_format=memory_format)
