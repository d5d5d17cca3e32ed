"""Patch preprocessing as in the study (section 5.3): z-score RGB standardisation and
training augmentation (random crop, horizontal and vertical flips), batched in torch.

Test patches get only the normalisation; training patches are augmented first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: ImageNet channel statistics (RGB in [0, 1]) for ImageNet-pretrained backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of RGB in [0, 1]."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        return asdict(self)


def channel_stats(batches) -> ChannelStats:
    """Mean and std of each RGB channel over an iterable of (N, H, W, 3) uint8 batches
    (streaming sums, float64): ``mu = S1 / n``, ``sd = sqrt(S2 / n - mu^2)``."""
    s1 = np.zeros(3)
    s2 = np.zeros(3)
    n = 0
    for batch in batches:
        x = np.asarray(batch, dtype=np.float64).reshape(-1, 3) / 255.0
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
        n += x.shape[0]
    if n == 0:
        raise ValueError("no pixels")
    mu = s1 / n
    sd = np.sqrt(np.maximum(s2 / n - mu * mu, 1e-12))
    return ChannelStats(tuple(float(v) for v in mu), tuple(float(v) for v in sd))


def standardize(images, stats: ChannelStats = ChannelStats(), device=None):
    """(N, H, W, 3) uint8 -> float32 (N, 3, H, W): ``z = (x / 255 - mean) / std``."""
    import torch

    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x[None]
    x = x.to(device=device or x.device).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(stats.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(stats.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(images, crop_size: int, *, generator=None, flips: bool = True):
    """Training augmentation of an (N, C, H, W) tensor: one random ``crop_size`` crop per
    patch and independent horizontal and vertical flips (probability 1/2 each)."""
    import torch

    n, c, h, w = images.shape
    if crop_size > min(h, w):
        raise ValueError(f"crop {crop_size} larger than patch {h} x {w}")
    g = generator
    ys = torch.randint(0, h - crop_size + 1, (n,), generator=g)
    xs = torch.randint(0, w - crop_size + 1, (n,), generator=g)
    out = torch.stack([images[i, :, ys[i]:ys[i] + crop_size, xs[i]:xs[i] + crop_size] for i in range(n)])
    if flips:
        hflip = torch.rand(n, generator=g) < 0.5
        vflip = torch.rand(n, generator=g) < 0.5
        out[hflip] = out[hflip].flip(-1)
        out[vflip] = out[vflip].flip(-2)
    return out


def center_crop(images, crop_size: int):
    """Deterministic centre crop of an (N, C, H, W) tensor (evaluation counterpart)."""
    h, w = images.shape[-2:]
    y0, x0 = (h - crop_size) // 2, (w - crop_size) // 2
    return images[..., y0:y0 + crop_size, x0:x0 + crop_size]
