"""Segmentation decoders that turn features into class logits: DeepLabV3+, a SegFormer-style MLP head, LargeFOV.

Both heads take the list of backbone feature maps ``feats`` (finest first, strides e.g. 4/8/16/32) and return
logits at the stride of the finest map they use (4 for both); :class:`wsss.models.seg.Segmentor` upsamples to
the input size. They do not care whether the pyramid came from a CNN (timm ``features_only``) or a ViT adapter.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ASPP", "DeepLabV3PlusHead", "LargeFOVHead", "MLPHead", "default_aspp_rates"]


def default_aspp_rates(output_stride: int) -> tuple[int, ...]:
    """ASPP dilation rates of the DeepLabV3 paper: (6, 12, 18) at output stride 16, doubled at 8."""
    if output_stride <= 8:
        return (12, 24, 36)
    if output_stride >= 32:
        return (3, 6, 9)
    return (6, 12, 18)


def _conv_bn_relu(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _ImagePool(nn.Module):
    """The image-level branch of ASPP: global average, 1x1 conv, broadcast back to the map size.

    BatchNorm on a 1x1 map needs more than one image per batch in training (as in every DeepLab), so the
    training stage requires batch_size >= 2.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = _conv_bn_relu(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(F.adaptive_avg_pool2d(x, 1))
        return y.expand(-1, -1, x.shape[2], x.shape[3])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 conv, three dilated 3x3 convs and image pooling, fused by 1x1.

    x: [B, cin, h, w] -> [B, cout, h, w].
    """

    def __init__(self, cin: int, cout: int = 256, rates: Sequence[int] = (6, 12, 18), dropout: float = 0.1) -> None:
        super().__init__()
        branches = [_conv_bn_relu(cin, cout, 1)]
        branches += [_conv_bn_relu(cin, cout, 3, dilation=r) for r in rates]
        branches.append(_ImagePool(cin, cout))
        self.branches = nn.ModuleList(branches)
        self.fuse = nn.Sequential(_conv_bn_relu(cout * len(branches), cout, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+ decoder: ASPP on the coarse map, fused with a 48-channel projection of the stride-4 map by two
    3x3 convs of ``aspp_channels`` (256 in the paper; smaller for tests).

    ``low_index`` / ``high_index`` pick the two pyramid levels. feats[i]: [B, C_i, H/s_i, W/s_i];
    returns logits [B, num_classes, H/s_low, W/s_low] float.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, low_index: int, high_index: int,
                 aspp_rates: Sequence[int] = (6, 12, 18), aspp_channels: int = 256, low_channels: int = 48,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.low_index, self.high_index = low_index, high_index
        self.aspp = ASPP(in_channels[high_index], aspp_channels, aspp_rates, dropout)
        self.low_proj = _conv_bn_relu(in_channels[low_index], low_channels, 1)
        self.decoder = nn.Sequential(_conv_bn_relu(aspp_channels + low_channels, aspp_channels, 3),
                                     _conv_bn_relu(aspp_channels, aspp_channels, 3))
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        low = self.low_proj(feats[self.low_index])
        high = self.aspp(feats[self.high_index])
        high = F.interpolate(high, size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(self.decoder(torch.cat([high, low], dim=1)))


class MLPHead(nn.Module):
    """SegFormer-style all-MLP decoder: per-level linear projection to ``embed_dim``, upsample to the finest
    level, concatenate, fuse with a 1x1 conv + BN + ReLU, dropout, 1x1 classifier.

    feats[i]: [B, C_i, H/s_i, W/s_i] (finest first) -> logits [B, num_classes, H/s_0, W/s_0].
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, embed_dim, 1) for c in in_channels)  # a per-pixel linear layer
        self.fuse = _conv_bn_relu(embed_dim * len(in_channels), embed_dim, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        ups = [F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if f.shape[2:] != size
               else p(f) for p, f in zip(self.proj, feats)]
        return self.classifier(self.dropout(self.fuse(torch.cat(ups, dim=1))))


class LargeFOVHead(nn.Module):
    """DeepLab-LargeFOV decoder (ToCo's segmentation branch): two dilated 3x3 convs with ReLU, then a 1x1
    classifier; no biases, no normalisation, PyTorch's default initialisation (as ToCo).

    x: [B, in_channels, h, w] -> logits [B, num_classes, h, w] (same resolution; the dilation, ToCo 5,
    widens the field of view on the coarse ViT token grid instead of downsampling).
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512, dilation: int = 5) -> None:
        super().__init__()
        d = int(dilation)
        self.conv6 = nn.Conv2d(in_channels, channels, 3, padding=d, dilation=d, bias=False)
        self.conv7 = nn.Conv2d(channels, channels, 3, padding=d, dilation=d, bias=False)
        self.conv8 = nn.Conv2d(channels, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv6(x))
        x = torch.relu(self.conv7(x))
        return self.conv8(x)
