"""Small builders shared by the learning tests."""

from __future__ import annotations

#: A CrossFormer small enough for CPU forward passes in tests (all four stages, 64-128 px).
TINY_CROSSFORMER = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
                        drop_path_rate=0.0)


def tiny_crossformer(num_classes: int = 2, **overrides):
    from pathomics_desktop.learning.backbones import create_backbone

    options = dict(TINY_CROSSFORMER)
    options.update(overrides)
    return create_backbone("crossformer_t", num_classes, **options)


def tiny_resnet(num_classes: int = 2):
    """A timm ResNet with one BasicBlock per stage and narrow channels (same layout as resnet18)."""
    from timm.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, (1, 1, 1, 1), num_classes=num_classes, channels=(8, 16, 32, 64))
