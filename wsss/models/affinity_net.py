"""AffinityNet: a per-pixel embedding whose L1 distances give pixel-pair affinities within a radius.

Why this head (AffinityNet's pairwise head, Ahn & Kwak 2018) rather than IRN's boundary branch: the affinity
it predicts for a pair is exactly the number the random walk consumes, ``a_ij = exp(-mean_c |f_i - f_j|)``,
computed offset by offset in the ``[B, E, h, w]`` layout of :func:`wsss.ops.random_walk`. IRN predicts an edge
map and turns it into affinities by a max along the line between the two pixels; that needs path indices per
offset, and its loss acts on the path maxima rather than on the affinities themselves. The pairwise head is
simpler, exact, and trains with the same pair labels.

Architecture: a timm backbone (``features_only``) gives maps at strides 4..32; every level whose stride is at
least ``feature_stride`` (and at most ``max_stride``) is projected by a 1x1 conv + ELU, resized to the
stride-``feature_stride`` grid, concatenated and fused by a 1x1 conv + ELU into the ``embed_dim`` embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss.models.weights import create_timm_model, load_backbone_weights, timm_name

__all__ = ["AffinityNet", "build_affinity_net", "feature_affinity"]


def feature_affinity(feat: torch.Tensor, offsets: Sequence[tuple[int, int]] | torch.Tensor) -> torch.Tensor:
    """Pairwise affinities of an embedding for a set of offsets.

    feat: [B, D, h, w] float; offsets: E pairs ``(dy, dx)``. Returns [B, E, h, w] with
    ``out[b, e, y, x] = exp(-mean_d |feat[b, d, y, x] - feat[b, d, y + dy, x + dx]|)``, 0 where the partner
    lies outside the grid. One offset at a time, so memory is O(D h w) per offset plus what autograd keeps.
    """
    b, _, h, w = feat.shape
    offs = offsets.tolist() if torch.is_tensor(offsets) else offsets
    out = feat.new_zeros(b, len(offs), h, w)
    for e, (dy, dx) in enumerate(offs):
        dy, dx = int(dy), int(dx)
        ys, ye = max(0, -dy), min(h, h - dy)
        xs, xe = max(0, -dx), min(w, w - dx)
        if ys >= ye or xs >= xe:
            continue
        a = feat[:, :, ys:ye, xs:xe]
        o = feat[:, :, ys + dy:ye + dy, xs + dx:xe + dx]
        out[:, e, ys:ye, xs:xe] = torch.exp(-(a - o).abs().mean(1))
    return out


class AffinityNet(nn.Module):
    """Backbone + multi-level 1x1 projections -> embedding at stride ``feature_stride``.

    ``embed(x)``: x [B, 3, H, W] normalised image -> [B, embed_dim, ceil(H / s), ceil(W / s)];
    ``forward(x, offsets)``: -> affinities [B, E, h, w] in (0, 1].
    """

    def __init__(self, backbone: str = "resnet50", pretrained: bool = False, feature_stride: int = 4,
                 embed_dim: int = 128, proj_dim: int = 64, max_stride: int = 32) -> None:
        super().__init__()
        self.backbone = create_timm_model(backbone, pretrained, section="aff_model", features_only=True)
        red = self.backbone.feature_info.reduction()
        chans = self.backbone.feature_info.channels()
        self.levels = [i for i, r in enumerate(red) if feature_stride <= r <= max_stride]
        if not self.levels or red[self.levels[0]] != feature_stride:
            raise ValueError(f"backbone {backbone} has feature strides {red}; none equals feature_stride "
                             f"{feature_stride}")
        self.feature_stride = feature_stride
        # Inputs are ImageNet-normalised everywhere in wsss; backbones trained with other statistics (timm's
        # tf_efficientnet_lite*: mean = std = 0.5) get a fixed affine re-normalisation, as wsss.models.backbones.
        pcfg = getattr(self.backbone, "pretrained_cfg", None) or {}
        mean = torch.tensor(pcfg.get("mean", IMAGENET_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(pcfg.get("std", IMAGENET_STD), dtype=torch.float32).view(1, 3, 1, 1)
        in_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        in_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.renormalise = not (torch.allclose(mean, in_mean) and torch.allclose(std, in_std))
        self.register_buffer("gain", in_std / std, persistent=False)
        self.register_buffer("offset", (in_mean - mean) / std, persistent=False)
        self.max_stride = max(red[i] for i in self.levels)
        self.proj = nn.ModuleList(nn.Conv2d(chans[i], proj_dim, 1, bias=False) for i in self.levels)
        self.fuse = nn.Conv2d(proj_dim * len(self.levels), embed_dim, 1, bias=False)
        for m in self.proj:
            nn.init.kaiming_normal_(m.weight)
        # AffinityNet initialises its last layer with a large gain so initial affinities are spread out.
        nn.init.xavier_uniform_(self.fuse.weight, gain=4)

    @property
    def new_modules(self) -> list[nn.Module]:
        """Layers trained from scratch (they get a larger learning rate than the backbone)."""
        return [*self.proj, self.fuse]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] ImageNet-normalised, H and W multiples of ``max_stride`` -> [B, D, H / s, W / s]."""
        h, w = x.shape[-2:]
        grid = (-(-h // self.feature_stride), -(-w // self.feature_stride))
        if self.renormalise:
            x = x * self.gain.to(x.dtype) + self.offset.to(x.dtype)
        feats = self.backbone(x)
        outs = []
        for proj, i in zip(self.proj, self.levels):
            f = F.elu(proj(feats[i]))
            if f.shape[-2:] != grid:
                f = F.interpolate(f, size=grid, mode="bilinear", align_corners=False)
            outs.append(f)
        return F.elu(self.fuse(torch.cat(outs, 1)))

    def forward(self, x: torch.Tensor, offsets: Sequence[tuple[int, int]] | torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> affinities [B, E, H / s, W / s] for the E ``(dy, dx)`` offsets."""
        return feature_affinity(self.embed(x), offsets)


def build_affinity_net(backbone: str = "resnet50", pretrained: bool | str = False,
                       weights: str | Path | None = None, feature_stride: int = 4, embed_dim: int = 128,
                       proj_dim: int = 64, max_stride: int = 32) -> AffinityNet:
    """An :class:`AffinityNet` from the config's ``aff_model`` section.

    ``pretrained`` / ``weights`` are resolved by :mod:`wsss.models.weights` like every other backbone: timm's
    pretrained tag, a local ``.pth`` (a timm state dict or a wsss checkpoint such as ``train_cls/final.pth``,
    whose backbone tensors are extracted), or ``'efficientnet-lite{n}-package'`` (offline ImageNet weights).
    """
    name, use_pretrained = timm_name(backbone, pretrained)
    if weights is not None:
        use_pretrained = False
    net = AffinityNet(name, use_pretrained, feature_stride, embed_dim, proj_dim, max_stride)
    if weights is not None:
        load_backbone_weights(net.backbone, backbone, weights)
    return net
