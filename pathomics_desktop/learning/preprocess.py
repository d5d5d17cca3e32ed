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


def numpy_to_tensor(array) -> "torch.Tensor":
    """Tensor sharing the array's memory (a copy only when the array is read-only)."""
    import torch

    array = np.asarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


def tiles_to_tensor(tiles: "np.ndarray | torch.Tensor", device: "str | torch.device" = "cpu",
                    mean: tuple[float, float, float] = IMAGENET_MEAN,
                    std: tuple[float, float, float] = IMAGENET_STD,
                    channels_last: bool = False,
                    dtype: "torch.dtype | None" = None) -> "torch.Tensor":
    """(B, H, W, 3) uint8 RGB tiles -> (B, 3, H, W) standardised float tensor on ``device``.

    The uint8 batch is moved first (4x less transfer than floats), then converted there.
    """
    import torch

    batch = tiles if isinstance(tiles, torch.Tensor) else numpy_to_tensor(tiles)
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


class RandomCropFlip:
    """Training augmentation of the study: random crop and flips in both directions.

    On a (3, H, W) tensor: crop a random ``crop_fraction`` x H by x W window, resize it back
    to H x W (bilinear) so training and test tiles have one size, then flip left-right and
    up-down, each with probability 1/2. Draws from torch's global RNG, which the training
    engine seeds, checkpoints and restores.
    """

    def __init__(self, crop_fraction: float = 0.875, flip_probability: float = 0.5):
        if not 0.0 < crop_fraction <= 1.0:
            raise UserError(f"crop fraction must be in (0, 1] (got {crop_fraction})")
        self.crop_fraction, self.flip_probability = crop_fraction, flip_probability

    def __call__(self, image: "torch.Tensor") -> "torch.Tensor":
        import torch
        import torch.nn.functional as F

        _, h, w = image.shape
        ch, cw = max(1, round(h * self.crop_fraction)), max(1, round(w * self.crop_fraction))
        top = int(torch.randint(0, h - ch + 1, ()).item())
        left = int(torch.randint(0, w - cw + 1, ()).item())
        out = image[:, top:top + ch, left:left + cw]
        if (ch, cw) != (h, w):
            out = F.interpolate(out[None].float(), size=(h, w), mode="bilinear",
                                align_corners=False)[0].to(image.dtype)
        if torch.rand(()).item() < self.flip_probability:
            out = out.flip(-1)
        if torch.rand(()).item() < self.flip_probability:
            out = out.flip(-2)
        return out


class TileDataset:
    """(image tensor, label) pairs from uint8 RGB tiles, for :func:`training.train`.

    ``tiles``: an (N, H, W, 3) uint8 array or any sequence/callable giving one such tile per
    index (e.g. a reader over the tile index); ``labels``: N integers (exposed as
    ``.labels`` so class counts need no image reads); ``transform``: applied to the
    standardised (3, H, W) tensor (e.g. :class:`RandomCropFlip` for training).
    """

    def __init__(self, tiles, labels, transform=None, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.tiles = tiles
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        n = len(tiles) if hasattr(tiles, "__len__") else len(self.labels)
        if n != len(self.labels):
            raise UserError(f"{n} tiles but {len(self.labels)} labels")
        self.transform, self.mean, self.std = transform, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        tile = self.tiles(index) if callable(self.tiles) else self.tiles[index]
        image = tiles_to_tensor(np.asarray(tile)[None], mean=self.mean, std=self.std)[0]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
