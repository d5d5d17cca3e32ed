"""CrossFormer: paper parameter counts, official checkpoint layout, grouping, any input size."""

from __future__ import annotations

import math

import pytest
import torch

from pathomics_desktop.learning.crossformer import (
    CROSSFORMER_VARIANTS,
    build_crossformer,
    relative_offsets,
)
from tests.learning.helpers import tiny_crossformer

# Paper, table 1 (ImageNet-1K, 224 px): parameters in millions and FLOPs (= MACs) in G.
PAPER = {
    "crossformer_t": (27.8, 2.9),
    "crossformer_s": (30.7, 4.9),
    "crossformer_b": (52.0, 9.2),
    "crossformer_l": (92.0, 16.1),
}

# Official configs (cheerss/CrossFormer configs/*_patch4_group7_224.yaml).
OFFICIAL = {
    "crossformer_t": dict(embed_dim=64, depths=(1, 1, 8, 6), num_heads=(2, 4, 8, 16)),
    "crossformer_s": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "crossformer_b": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "crossformer_l": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}


def official_state_shapes(embed_dim, depths, num_heads, num_classes=1000, group=7,
                          patch_kernels=(4, 8, 16, 32), merge_kernels=(2, 4)):
    """Key -> shape of a checkpoint of the official implementation at 224 px.

    Written from the official naming: CEL convs ``patch_embed.projs.i`` (channels D/2, D/4,
    D/8, D/8) + ``patch_embed.norm``; per block norm1, attn.pos (DPB with pos_dim = dim/16:
    pos_proj, pos1/pos2/pos3 = [LayerNorm, ReLU, Linear]), attn.biases and
    attn.relative_position_index buffers, attn.qkv, attn.proj, norm2, mlp.fc1/fc2; merging
    ``layers.i.downsample`` = norm + reductions (kernels 2, 4 -> C, C); final norm and head.
    """
    shapes = {}
    k = len(patch_kernels)
    dims = [embed_dim // 2 ** (i + 1) for i in range(k - 1)] + [embed_dim // 2 ** (k - 1)]
    for i, (kernel, ch) in enumerate(zip(patch_kernels, dims)):
        shapes[f"patch_embed.projs.{i}.weight"] = (ch, 3, kernel, kernel)
        shapes[f"patch_embed.projs.{i}.bias"] = (ch,)
    shapes["patch_embed.norm.weight"] = shapes["patch_embed.norm.bias"] = (embed_dim,)
    for s, (depth, heads) in enumerate(zip(depths, num_heads)):
        dim = embed_dim * 2 ** s
        pos = dim // 16
        for b in range(depth):
            p = f"layers.{s}.blocks.{b}."
            shapes[p + "norm1.weight"] = shapes[p + "norm1.bias"] = (dim,)
            shapes[p + "attn.pos.pos_proj.weight"] = (pos, 2)
            shapes[p + "attn.pos.pos_proj.bias"] = (pos,)
            for j in (1, 2, 3):
                shapes[p + f"attn.pos.pos{j}.0.weight"] = shapes[p + f"attn.pos.pos{j}.0.bias"] = (pos,)
                out = heads if j == 3 else pos
                shapes[p + f"attn.pos.pos{j}.2.weight"] = (out, pos)
                shapes[p + f"attn.pos.pos{j}.2.bias"] = (out,)
            shapes[p + "attn.biases"] = ((2 * group - 1) ** 2, 2)
            shapes[p + "attn.relative_position_index"] = (group * group, group * group)
            shapes[p + "attn.qkv.weight"] = (3 * dim, dim)
            shapes[p + "attn.qkv.bias"] = (3 * dim,)
            shapes[p + "attn.proj.weight"] = (dim, dim)
            shapes[p + "attn.proj.bias"] = (dim,)
            shapes[p + "norm2.weight"] = shapes[p + "norm2.bias"] = (dim,)
            shapes[p + "mlp.fc1.weight"] = (4 * dim, dim)
            shapes[p + "mlp.fc1.bias"] = (4 * dim,)
            shapes[p + "mlp.fc2.weight"] = (dim, 4 * dim)
            shapes[p + "mlp.fc2.bias"] = (dim,)
        if s < len(depths) - 1:
            p = f"layers.{s}.downsample."
            shapes[p + "norm.weight"] = shapes[p + "norm.bias"] = (dim,)
            for r, kernel in enumerate(merge_kernels):
                shapes[p + f"reductions.{r}.weight"] = (dim, dim, kernel, kernel)
                shapes[p + f"reductions.{r}.bias"] = (dim,)
    final = embed_dim * 2 ** (len(depths) - 1)
    shapes["norm.weight"] = shapes["norm.bias"] = (final,)
    shapes["head.weight"] = (num_classes, final)
    shapes["head.bias"] = (num_classes,)
    return shapes


def fake_official_checkpoint(shapes, seed=0):
    """{"model": state} with random float tensors and the official index buffers."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):
            state[key] = relative_offsets(7, 7)[1]
        elif key.endswith("attn.biases"):
            state[key] = relative_offsets(7, 7)[0]
        else:
            state[key] = torch.randn(shape, generator=gen)
    return {"model": state}


@pytest.mark.parametrize("name", list(PAPER))
def test_parameter_count_matches_paper(name):
    with torch.device("meta"):
        model = build_crossformer(name, num_classes=1000)
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 1) == PAPER[name][0]


@pytest.mark.parametrize("name", list(PAPER))
def test_variant_hyperparameters_are_the_official_ones(name):
    cfg = CROSSFORMER_VARIANTS[name]
    for field, value in OFFICIAL[name].items():
        assert getattr(cfg, field) == value
    assert cfg.group_size == (7, 7, 7, 7) and cfg.crs_interval == (8, 4, 2, 1)
    assert cfg.patch_kernels == (4, 8, 16, 32) and cfg.merge_kernels == ((2, 4),) * 3


@pytest.mark.parametrize("name", ["crossformer_t", "crossformer_l"])
def test_state_dict_layout_equals_official(name):
    with torch.device("meta"):
        model = build_crossformer(name, num_classes=1000)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_state_shapes(**OFFICIAL[name])


def test_official_checkpoint_loads_strict_and_is_used():
    cfg = dict(embed_dim=32, depths=(2, 1, 2, 1), num_heads=(2, 2, 4, 4))
    checkpoint = fake_official_checkpoint(official_state_shapes(**cfg, num_classes=5))
    model = build_crossformer("crossformer_s", num_classes=5, drop_path_rate=0.0, **cfg)
    result = model.load_state_dict(checkpoint["model"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for key in ("layers.0.blocks.0.attn.pos.pos_proj.weight",
                "layers.2.downsample.reductions.1.weight", "patch_embed.projs.3.weight",
                "head.weight"):
        assert torch.equal(model.state_dict()[key], checkpoint["model"][key])


def test_checkpoint_buffers_from_other_input_size_are_recomputed():
    # the official code shrinks the group of a stage whose map is smaller than 7 (e.g. 3x3
    # at 96 px): its buffers then have other shapes; they are functions of G, so we refill.
    cfg = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))
    state = fake_official_checkpoint(official_state_shapes(**cfg, num_classes=2))["model"]
    offsets, index = relative_offsets(3, 3)
    state["layers.3.blocks.0.attn.biases"] = offsets
    state["layers.3.blocks.0.attn.relative_position_index"] = index
    model = build_crossformer("crossformer_t", num_classes=2, **cfg)
    model.load_state_dict(state, strict=True)
    assert model.layers[3].blocks[0].attn.biases.shape == (169, 2)


@pytest.mark.parametrize("size", [(64, 64), (96, 96), (64, 96), (100, 72)])
def test_forward_any_input_size(size):
    torch.manual_seed(0)
    model = tiny_crossformer(num_classes=3).eval()
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        logits = model(images)
        features = model.forward_features(images)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    def last_stage(n):  # stride-4 embedding, then three stride-2 merges (odd maps padded)
        n = math.ceil(n / 4)
        for _ in range(3):
            n = math.ceil(n / 2)
        return n

    expected = (last_stage(size[0]), last_stage(size[1]))
    assert features.shape[-2:] == expected
    assert model.last_grid == expected


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = tiny_crossformer(num_classes=2)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_three_stage_config_runs():
    model = tiny_crossformer(num_classes=2, depths=(1, 1, 1), num_heads=(1, 2, 2),
                             group_size=(7, 7, 7), crs_interval=(8, 4, 2),
                             merge_kernels=((2, 4), (2, 4)))
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2)
    assert model.last_grid == (4, 4)


def _influence(block, h, w, source):
    """Tokens whose block output changes when only token ``source`` changes (attention path)."""
    torch.manual_seed(1)
    x = torch.randn(1, h * w, block.norm1.normalized_shape[0])
    with torch.no_grad():
        base = block(x, h, w)
        y = x.clone()
        y[0, source] += 5.0 * torch.randn(x.shape[-1])  # not a constant: LayerNorm removes those
        changed = (block(y, h, w) - base).abs().amax(dim=-1)[0] > 1e-6
    return {(int(i) // w, int(i) % w) for i in torch.nonzero(changed).flatten()}


def test_sda_groups_adjacent_tokens_and_lda_groups_strided_tokens():
    from pathomics_desktop.learning.crossformer import CrossFormerBlock

    torch.manual_seed(0)
    sda = CrossFormerBlock(16, 2, group_size=7, interval=2, long_distance=False).eval()
    lda = CrossFormerBlock(16, 2, group_size=7, interval=2, long_distance=True).eval()
    # 14 x 14 map: SDA groups are 7 x 7 tiles; LDA (interval 2) groups every 2nd token.
    source = 3 * 14 + 9  # (row 3, col 9)
    assert _influence(sda, 14, 14, source) == {(r, c) for r in range(7) for c in range(7, 14)}
    assert _influence(lda, 14, 14, source) == {(r, c) for r in range(1, 14, 2)
                                               for c in range(1, 14, 2)}


def test_padded_groups_ignore_padding():
    """9 x 9 map, G = 7: the bottom-right group holds 2 x 2 real tokens and 45 padded ones;
    its output must equal attention over those 4 tokens alone (a 2 x 2 group)."""
    from pathomics_desktop.learning.crossformer import CrossFormerBlock

    torch.manual_seed(0)
    block = CrossFormerBlock(16, 2, group_size=7, interval=2, long_distance=False).eval()
    x = torch.randn(1, 81, 16)
    with torch.no_grad():
        out = block(x, 9, 9).reshape(1, 9, 9, 16)[0, 7:, 7:].reshape(4, 16)
        corner = x.reshape(1, 9, 9, 16)[0, 7:, 7:].reshape(1, 1, 4, 16)
        attn = block.attn(block.norm1(corner), 2, 2)
        mid = corner + attn
        expected = (mid + block.mlp(block.norm2(mid))).reshape(4, 16)
    torch.testing.assert_close(out, expected)
    assert _influence(block, 9, 9, 8 * 9 + 8) == {(r, c) for r in (7, 8) for c in (7, 8)}


def test_small_maps_use_one_group():
    from pathomics_desktop.learning.crossformer import CrossFormerBlock

    block = CrossFormerBlock(16, 2, group_size=7, interval=1, long_distance=True)
    assert block.grouping(4, 4) == (False, 4, 4, 4)
    assert block.grouping(7, 7) == (False, 7, 7, 7)
    assert block.grouping(16, 16) == (True, 1, 16, 16)
    assert CrossFormerBlock(16, 2, 7, 8, False).grouping(128, 128) == (False, 7, 133, 133)


def test_unknown_variant_and_bad_width_rejected():
    with pytest.raises(ValueError):
        build_crossformer("crossformer_xl")
    with pytest.raises(ValueError):
        build_crossformer("crossformer_t", embed_dim=20)  # not divisible over 4 kernels



@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_and_channels_last(dtype):
    """The CUDA path runs under autocast with channels_last inputs; check the same on CPU
    (padding masks use the dtype's minimum, which must stay finite after softmax)."""
    torch.manual_seed(0)
    model = tiny_crossformer(num_classes=2)
    images = torch.randn(2, 3, 72, 72).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=dtype):
        logits = model(images)
    assert torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        reference = model(images.contiguous())
    torch.testing.assert_close(logits.float(), reference, atol=0.1, rtol=0.1)
