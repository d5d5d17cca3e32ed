"""CrossFormer vision transformer, written for this project from the paper.

Reference: W. Wang, L. Yao, L. Chen, B. Lin, D. Cai, X. He, W. Liu. "CrossFormer: A Versatile
Vision Transformer Hinging on Cross-scale Attention", ICLR 2022 (arXiv:2108.00154).

Building blocks (paper section 3):

* Cross-scale embedding layer (CEL): several convolutions with different kernel sizes and the
  same stride sample the same positions; their outputs are concatenated along channels. Stage
  1 uses kernels 4/8/16/32 at stride 4 (channels D/2, D/4, D/8, D/8), stages 2-4 use kernels
  2/4 at stride 2 (channels C, C for an output of 2C). Padding is (kernel - stride) / 2 so all
  branches give the same grid.
* Long/short distance attention (LSDA): blocks alternate SDA (attention inside G x G groups of
  adjacent embeddings) and LDA (embeddings sampled with a fixed interval I form a group).
  G = 7 in all stages; I = 8/4/2/1 for stages 1-4 (so at 224 px each LDA group is 7 x 7).
* Dynamic position bias (DPB): an MLP maps a relative offset (dy, dx) to one bias per head:
  Linear(2, d) -> [LayerNorm, ReLU, Linear(d, d)] x 2 -> LayerNorm, ReLU, Linear(d, heads),
  with d = dim / 16. Being a function of the offset, it works for any group size.

Input sizes other than 224 px (the study's 512 px tiles, small test images) follow the rule of
the official detection/segmentation backbone: when a stage's map is no larger than the group
size, the block uses SDA with the group size shrunk to the map; otherwise the map is padded
(bottom/right) to a multiple of G (SDA) or I (LDA) and padded embeddings are masked out as
keys. Cross-scale merging pads an odd map by one zero row/column so no position is dropped.

The parameter and buffer names follow the official implementation (``patch_embed.projs.0``,
``layers.0.blocks.0.attn.pos.pos_proj``, ``layers.0.downsample.reductions.0``, ``norm``,
``head``) so that the official ImageNet checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CROSSFORMER_VARIANTS",
    "CrossFormer",
    "CrossFormerConfig",
    "build_crossformer",
]


@dataclass(frozen=True)
class CrossFormerConfig:
    """Hyper-parameters of one CrossFormer (paper table 1 / official configs)."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    group_size: tuple[int, ...] = (7, 7, 7, 7)
    crs_interval: tuple[int, ...] = (8, 4, 2, 1)
    patch_kernels: tuple[int, ...] = (4, 8, 16, 32)
    merge_kernels: tuple[tuple[int, ...], ...] = ((2, 4), (2, 4), (2, 4))
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    drop_path_rate: float = 0.2
    in_chans: int = 3

    def as_dict(self) -> dict:
        return asdict(self)


#: Paper variants (ImageNet-1K, 224 px): params 27.8M / 30.7M / 52.0M / 92.0M.
#: Drop-path rates are those of the official ImageNet training configs.
CROSSFORMER_VARIANTS: dict[str, CrossFormerConfig] = {
    "crossformer_t": CrossFormerConfig(
        embed_dim=64, depths=(1, 1, 8, 6), num_heads=(2, 4, 8, 16), drop_path_rate=0.1
    ),
    "crossformer_s": CrossFormerConfig(
        embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2
    ),
    "crossformer_b": CrossFormerConfig(
        embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3
    ),
    "crossformer_l": CrossFormerConfig(
        embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5
    ),
}


def cross_scale_channels(total: int, n_kernels: int) -> list[int]:
    """Channels per kernel of a cross-scale embedding: total/2, total/4, ..., last two equal.

    Small kernels get more channels (cheaper), e.g. 64 -> [32, 16, 8, 8] for four kernels and
    2C -> [C, C] for two (paper section 3.1).
    """
    dims = [total // 2 ** (i + 1) for i in range(n_kernels - 1)] + [total // 2 ** (n_kernels - 1)]
    if sum(dims) != total:
        raise ValueError(
            f"embedding width {total} cannot be split over {n_kernels} kernels "
            f"(needs a multiple of {2 ** (n_kernels - 1)})"
        )
    return dims


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch per sample with probability ``p`` (train only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class CrossScalePatchEmbed(nn.Module):
    """Stage-1 cross-scale embedding: convs of several kernels at one stride, then LayerNorm."""

    def __init__(self, in_chans: int, embed_dim: int, kernels: tuple[int, ...]):
        super().__init__()
        stride = kernels[0]
        self.stride = stride
        self.projs = nn.ModuleList(
            nn.Conv2d(in_chans, ch, kernel_size=k, stride=stride, padding=(k - stride) // 2)
            for k, ch in zip(kernels, cross_scale_channels(embed_dim, len(kernels)))
        )
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(B, 3, H, W) -> tokens (B, H/4 * W/4, D) and the grid (H/4, W/4)."""
        h, w = images.shape[-2:]
        pad_h, pad_w = (-h) % self.stride, (-w) % self.stride
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        maps = [proj(images) for proj in self.projs]
        grid_h, grid_w = maps[0].shape[-2:]
        tokens = torch.cat(maps, dim=1).flatten(2).transpose(1, 2)
        return self.norm(tokens), grid_h, grid_w


class CrossScaleMerging(nn.Module):
    """Cross-scale embedding between stages: LayerNorm, then convs of kernels 2/4 at stride 2."""

    def __init__(self, dim: int, kernels: tuple[int, ...], stride: int = 2):
        super().__init__()
        self.stride = stride
        self.norm = nn.LayerNorm(dim)
        self.reductions = nn.ModuleList(
            nn.Conv2d(dim, ch, kernel_size=k, stride=stride, padding=(k - stride) // 2)
            for k, ch in zip(kernels, cross_scale_channels(2 * dim, len(kernels)))
        )

    def forward(self, tokens: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int]:
        b, _, c = tokens.shape
        grid = self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)
        pad_h, pad_w = (-h) % self.stride, (-w) % self.stride
        if pad_h or pad_w:
            grid = F.pad(grid, (0, pad_w, 0, pad_h))
        maps = [conv(grid) for conv in self.reductions]
        out_h, out_w = maps[0].shape[-2:]
        return torch.cat(maps, dim=1).flatten(2).transpose(1, 2), out_h, out_w


class DynamicPosBias(nn.Module):
    """DPB: MLP from a relative offset (dy, dx) to one attention bias per head."""

    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        self.pos_proj = nn.Linear(2, hidden)
        self.pos1 = nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.pos2 = nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.pos3 = nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, num_heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        """(M, 2) float offsets -> (M, heads) biases."""
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


def relative_offsets(gh: int, gw: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """All offsets of a gh x gw group and the index of each token pair into them.

    Returns ``offsets`` ((2gh-1)(2gw-1), 2) with rows (dy, dx) in row-major order over
    dy in [-(gh-1), gh-1], dx in [-(gw-1), gw-1], and ``index`` (gh*gw, gh*gw) where
    index[p, q] = (y_p - y_q + gh - 1) * (2gw - 1) + (x_p - x_q + gw - 1).
    """
    dy = torch.arange(1 - gh, gh, device=device)
    dx = torch.arange(1 - gw, gw, device=device)
    offsets = torch.stack(torch.meshgrid(dy, dx, indexing="ij")).flatten(1).t().float()
    ys, xs = torch.meshgrid(
        torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij"
    )
    ys, xs = ys.flatten(), xs.flatten()
    index = (ys[:, None] - ys[None, :] + gh - 1) * (2 * gw - 1) + (xs[:, None] - xs[None, :] + gw - 1)
    return offsets, index


class GroupAttention(nn.Module):
    """Multi-head self-attention inside groups, plus the dynamic position bias.

    attention = softmax(Q K^T / sqrt(d_head) + B_dpb [+ mask]) V, with B_dpb[p, q] =
    DPB(y_p - y_q, x_p - x_q).
    """

    def __init__(self, dim: int, num_heads: int, group_size: int, qkv_bias: bool = True,
                 drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.group_size = group_size
        self.pos = DynamicPosBias(dim // 16, num_heads)
        offsets, index = relative_offsets(group_size, group_size)
        # Kept under the official names for checkpoint compatibility; recomputed on load.
        self.register_buffer("biases", offsets)
        self.register_buffer("relative_position_index", index)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        self._offset_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.register_load_state_dict_pre_hook(GroupAttention._refresh_derived_buffers)

    @staticmethod
    def _refresh_derived_buffers(module, state_dict, prefix, *args) -> None:
        # ``biases`` and ``relative_position_index`` are functions of the group size only;
        # a checkpoint made at another input size (or without them) gets ours.
        for name in ("biases", "relative_position_index"):
            state_dict[prefix + name] = getattr(module, name).clone()

    def position_bias(self, gh: int, gw: int) -> torch.Tensor:
        """(heads, gh*gw, gh*gw) bias for a gh x gw group."""
        if (gh, gw) == (self.group_size, self.group_size):
            offsets, index = self.biases, self.relative_position_index
        else:  # other group shapes (small maps, LDA on large inputs): cached per shape/device
            key = (gh, gw, str(self.biases.device))
            if key not in self._offset_cache:
                self._offset_cache[key] = relative_offsets(gh, gw, device=self.biases.device)
            offsets, index = self._offset_cache[key]
        table = self.pos(offsets.to(self.pos.pos_proj.weight.dtype))
        n = gh * gw
        return table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, gh: int, gw: int,
                key_padding: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, groups, N, C) with N = gh*gw; key_padding: (groups, N) bool, True = padded."""
        b, g, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(b, g, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, groups, heads, N, d)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        logits = logits + self.position_bias(gh, gw).to(logits.dtype)
        if key_padding is not None:
            logits = logits.masked_fill(key_padding[:, None, None, :], torch.finfo(logits.dtype).min)
        out = logits.softmax(dim=-1) @ v
        out = out.transpose(2, 3).reshape(b, g, n, c)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """Feed-forward: Linear(C, rC) -> GELU -> Linear(rC, C)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class CrossFormerBlock(nn.Module):
    """Pre-norm transformer block whose attention is SDA (``long_distance=False``) or LDA."""

    def __init__(self, dim: int, num_heads: int, group_size: int, interval: int,
                 long_distance: bool, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.group_size = group_size
        self.interval = interval
        self.long_distance = long_distance
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GroupAttention(dim, num_heads, group_size, qkv_bias=qkv_bias, drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def grouping(self, h: int, w: int) -> tuple[bool, int, int, int]:
        """(long_distance, step, padded_h, padded_w) used for an h x w map.

        SDA: step = G, groups are G x G adjacent tiles. LDA: step = I, a group is every I-th
        embedding. A map no larger than G uses SDA with G shrunk to min(h, w).
        """
        if min(h, w) <= self.group_size:
            step, lda = min(h, w), False
        elif self.long_distance:
            step, lda = self.interval, True
        else:
            step, lda = self.group_size, False
        return lda, step, h + (-h) % step, w + (-w) % step

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        lda, step, hp, wp = self.grouping(h, w)
        y = self.norm1(x).reshape(b, h, w, c)
        padded = (hp, wp) != (h, w)
        if padded:
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        if lda:  # position (a*I + i, b*I + j) -> group (i, j), member (a, b)
            gh, gw = hp // step, wp // step
            layout = (b, gh, step, gw, step, c)
            order = (0, 2, 4, 1, 3, 5)
        else:  # position (i*G + a, j*G + b) -> group (i, j), member (a, b)
            gh = gw = step
            layout = (b, hp // step, step, wp // step, step, c)
            order = (0, 1, 3, 2, 4, 5)
        groups = y.reshape(layout).permute(order).reshape(b, -1, gh * gw, c)
        key_padding = None
        if padded:
            pad = torch.ones(hp, wp, dtype=torch.bool, device=x.device)
            pad[:h, :w] = False
            key_padding = pad.reshape(layout[1:5]).permute(tuple(i - 1 for i in order[1:5]))
            key_padding = key_padding.reshape(-1, gh * gw)
        y = self.attn(groups, gh, gw, key_padding)
        inverse = [order.index(i) for i in range(6)]
        y = y.reshape(tuple(layout[i] for i in order)).permute(inverse).reshape(b, hp, wp, c)
        if padded:
            y = y[:, :h, :w, :]
        x = x + self.drop_path(y.reshape(b, n, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stage(nn.Module):
    """Blocks alternating SDA/LDA, then (except the last stage) a cross-scale merging layer."""

    def __init__(self, dim: int, depth: int, num_heads: int, group_size: int, interval: int,
                 mlp_ratio: float, qkv_bias: bool, drop: float, drop_path: list[float],
                 merge_kernels: tuple[int, ...] | None):
        super().__init__()
        self.blocks = nn.ModuleList(
            CrossFormerBlock(dim, num_heads, group_size, interval, long_distance=bool(i % 2),
                             mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop,
                             drop_path=drop_path[i])
            for i in range(depth)
        )
        self.downsample = CrossScaleMerging(dim, merge_kernels) if merge_kernels else None

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int]:
        for block in self.blocks:
            x = block(x, h, w)
        if self.downsample is not None:
            x, h, w = self.downsample(x, h, w)
        return x, h, w


class CrossFormer(nn.Module):
    """CrossFormer classifier: CEL -> 4 stages -> LayerNorm -> global average -> Linear head.

    ``last_stage_input`` and ``feature_map`` are identity modules applied to the last stage's
    input embeddings and to the normalised output tokens, laid out as (B, C, h, w) maps, so
    hooks (Grad-CAM) can reach them; ``last_grid`` is that stage's (h, w) of the latest call.
    """

    def __init__(self, config: CrossFormerConfig = CrossFormerConfig(), num_classes: int = 1000):
        super().__init__()
        cfg = config
        n_stages = len(cfg.depths)
        if not (len(cfg.num_heads) == len(cfg.group_size) == len(cfg.crs_interval) == n_stages
                and len(cfg.merge_kernels) == n_stages - 1):
            raise ValueError("CrossFormer config lists must have one entry per stage")
        self.config = cfg
        self.num_classes = num_classes
        self.num_features = cfg.embed_dim * 2 ** (n_stages - 1)
        self.patch_embed = CrossScalePatchEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_kernels)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        total = sum(cfg.depths)
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(cfg.depths):
            start = sum(cfg.depths[:i])
            self.layers.append(Stage(
                dim=cfg.embed_dim * 2 ** i, depth=depth, num_heads=cfg.num_heads[i],
                group_size=cfg.group_size[i], interval=cfg.crs_interval[i],
                mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, drop=cfg.drop_rate,
                drop_path=rates[start:start + depth],
                merge_kernels=cfg.merge_kernels[i] if i < n_stages - 1 else None,
            ))
        self.norm = nn.LayerNorm(self.num_features)
        self.last_grid: tuple[int, int] | None = None  # (h, w) of the last stage, set by forward
        self.last_stage_input = nn.Identity()
        self.feature_map = nn.Identity()
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            self._init_weights(self.head)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, ceil(H/32), ceil(W/32)) map of normalised last-stage tokens."""
        x, h, w = self.patch_embed(images)
        x = self.pos_drop(x)
        last = len(self.layers) - 1
        for i, stage in enumerate(self.layers):
            if i == last:  # expose the last stage's input embeddings as a map (Grad-CAM)
                self.last_grid = (h, w)
                b, _, c = x.shape
                grid = self.last_stage_input(x.transpose(1, 2).reshape(b, c, h, w))
                x = grid.flatten(2).transpose(1, 2)
            x, h, w = stage(x, h, w)
        x = self.norm(x)
        return self.feature_map(x.transpose(1, 2).reshape(x.shape[0], -1, h, w))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


def build_crossformer(variant: str | CrossFormerConfig, num_classes: int = 1000,
                      **overrides) -> CrossFormer:
    """Build a CrossFormer from a variant name (``crossformer_t/s/b/l``) or a config."""
    if isinstance(variant, CrossFormerConfig):
        config = variant
    else:
        try:
            config = CROSSFORMER_VARIANTS[variant]
        except KeyError:
            raise ValueError(f"unknown CrossFormer variant {variant!r}; "
                             f"choose one of {sorted(CROSSFORMER_VARIANTS)}") from None
    if overrides:
        config = replace(config, **{k: _tuplify(v) for k, v in overrides.items()})
    return CrossFormer(config, num_classes=num_classes)


def _tuplify(value):
    """Lists (e.g. from JSON) -> nested tuples, so configs stay hashable."""
    return tuple(_tuplify(v) for v in value) if isinstance(value, (list, tuple)) else value
