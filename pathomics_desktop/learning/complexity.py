"""Model size and compute: parameter counts and multiply-accumulates (MACs).

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` during one forward pass of
a single image on the ``meta`` device (shapes only, no arithmetic, so it is instant even for
CrossFormer-L at 512 px). FlopCounterMode counts 2 FLOPs per multiply-add of convolutions,
linear layers (mm/addmm) and batched matmuls (attention Q K^T and A V, sdpa); we report
MACs = FLOPs / 2. Element-wise work (norms, activations, softmax, pooling) is not counted,
as in the usual "FLOPs" tables of papers (ResNet-50: 4.1 G at 224 px; CrossFormer-S: 4.9 G).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def count_parameters(model: "nn.Module", trainable_only: bool = False) -> int:
    """Number of scalar parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: "nn.Module", input_size: int | tuple[int, int], in_chans: int = 3) -> int:
    """Multiply-accumulates of one forward pass on one ``in_chans`` x H x W image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    first = next(model.parameters(), None)
    if first is None or first.device.type != "meta":
        model = copy.deepcopy(model).to("meta")
    was_training = model.training
    model.eval()
    images = torch.empty(1, in_chans, h, w, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    model.train(was_training)
    return int(counter.get_total_flops()) // 2


def model_info(name: str, num_classes: int = 2, input_size: int = 224) -> dict:
    """``{"name", "params", "gmacs", "input_size", "num_classes"}`` of a named backbone."""
    import torch

    from pathomics_desktop.errors import UserError
    from pathomics_desktop.learning.backbones import create_backbone

    if int(input_size) < 32:
        raise UserError(f"input size must be at least 32 px (got {input_size})")
    with torch.device("meta"):
        model = create_backbone(name, num_classes)
    return {
        "name": name,
        "params": count_parameters(model),
        "gmacs": round(count_macs(model, int(input_size)) / 1e9, 4),
        "input_size": int(input_size),
        "num_classes": int(num_classes),
    }
