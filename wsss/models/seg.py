"""The segmentation network trained on pseudo masks: a timm backbone, a feature pyramid, a decoder head.

``build_segmentor(seg_model_cfg, num_classes)`` is the one entry point. Config shape::

    seg_model = dict(type='deeplabv3plus' | 'segformer_head', backbone='resnet50', pretrained=False,
                     weights=None, output_stride=16, aspp_rates=None, head_channels=256, dropout=0.1,
                     vit_depths=None, backbone_kwargs={})

Backbones: any timm CNN that supports ``features_only`` (ResNet-50/101, EfficientNet-Lite, ...) gives its
stride-4..32 maps directly; a timm ViT (``vit_*``, ``deit_*``, ``eva*``, ``beit*``) goes through
:class:`ViTPyramid`, which reshapes the patch tokens of four depths into maps and resizes them to strides
4/8/16/32 (the simple feature pyramid of ViTDet / BEiT segmentation). Either head runs on either pyramid.
Weights are resolved by :mod:`wsss.models.weights`: ``pretrained=True`` (or a tag such as ``'a1_in1k'``) uses
timm's pretrained weights (network at first use); ``weights=`` a local ``.pth`` (a timm backbone state dict or a
wsss checkpoint such as ``train_cls/final.pth``) or ``'efficientnet-lite0-package'`` (offline ImageNet weights)
loads into the backbone only. The segmentor's own checkpoints are loaded by the stages.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import get_arch_name, is_model_in_modules

from wsss.errors import WSSSError
from wsss.models.seg_heads import DeepLabV3PlusHead, MLPHead, default_aspp_rates
from wsss.models.weights import create_timm_model, load_backbone_weights, timm_name

log = logging.getLogger(__name__)

__all__ = ["SEG_MODEL_DEFAULTS", "SEG_TYPES", "CNNPyramid", "ViTPyramid", "Segmentor", "build_segmentor",
           "build_backbone", "is_vit"]

SEG_TYPES = ("deeplabv3plus", "segformer_head")
VIT_MODULES = ["vision_transformer", "deit", "eva", "beit", "vision_transformer_sam"]

SEG_MODEL_DEFAULTS: dict[str, Any] = dict(
    type="deeplabv3plus", backbone="resnet50", pretrained=False, weights=None, output_stride=16,
    aspp_rates=None, head_channels=256, dropout=0.1, vit_depths=None, backbone_kwargs={},
)


def is_vit(backbone: str) -> bool:
    """True when timm builds ``backbone`` from one of its plain-ViT modules (tokens, not feature maps)."""
    try:
        return bool(is_model_in_modules(get_arch_name(backbone), VIT_MODULES))
    except Exception:  # unknown name: let timm.create_model raise its own message
        return False


class CNNPyramid(nn.Module):
    """A timm ``features_only`` CNN: x [B, 3, H, W] -> list of maps [B, C_i, H/s_i, W/s_i], finest first.

    The stride-2 stem map is dropped; with ``output_stride`` 16 or 8 the last stages are dilated, so two
    levels can share a stride (the heads pick levels by index, see :func:`_pick_levels`).
    """

    size_divisor = 1

    def __init__(self, name: str, pretrained: bool, output_stride: int, **kwargs: Any) -> None:
        super().__init__()
        self.body = create_timm_model(name, pretrained, section="seg_model", features_only=True,
                                      output_stride=output_stride, **kwargs)
        info = self.body.feature_info
        keep = [i for i, r in enumerate(info.reduction()) if r >= 4]
        if not keep:
            raise WSSSError(f"backbone '{name}' has no feature map at stride >= 4")
        self.keep = keep
        self.channels = [info.channels()[i] for i in keep]
        self.reductions = [info.reduction()[i] for i in keep]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        return [feats[i] for i in self.keep]

    def weight_target(self) -> nn.Module:
        """The module a backbone state dict (classification checkpoint keys) loads into."""
        return self.body


class ViTPyramid(nn.Module):
    """A timm ViT turned into a 4-level pyramid: tokens of four depths -> maps at strides 4/8/16/32.

    Depth ``d_k`` (default: evenly spaced, the last block included) gives a [B, D, H/p, W/p] map of patch
    tokens (p = patch size, 16 for ``*_patch16_*``); levels are resized to p/4, p/2, p, 2p with 2x2
    transposed convs (two with BN + GELU between for p/4, one for p/2), identity, and 2x2 max-pooling.
    Inputs whose sides are not multiples of p are zero-padded by :class:`Segmentor` (``size_divisor``).
    """

    def __init__(self, name: str, pretrained: bool, depths: Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__()
        kwargs.setdefault("dynamic_img_size", True)
        self.vit = create_timm_model(name, pretrained, section="seg_model", num_classes=0, **kwargs)
        if not hasattr(self.vit, "forward_intermediates"):
            raise WSSSError(f"backbone '{name}' has no forward_intermediates; use a timm ViT or a CNN")
        n = len(self.vit.blocks)
        self.depths = list(depths) if depths else [max(0, round(n * k / 4) - 1) for k in (1, 2, 3, 4)]
        if len(self.depths) != 4 or not all(0 <= d < n for d in self.depths):
            raise WSSSError(f"vit_depths must be 4 block indices in 0..{n - 1}, got {self.depths}")
        # Blocks after the deepest tap, the final norm and the classifier would hold parameters that get no
        # gradient (DDP refuses those); drop them.
        self.vit.prune_intermediate_layers(self.depths, prune_norm=True, prune_head=True)
        d = self.vit.embed_dim
        patch = self.vit.patch_embed.patch_size
        self.size_divisor = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.resize = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(d, d, 2, stride=2), nn.BatchNorm2d(d), nn.GELU(),
                          nn.ConvTranspose2d(d, d, 2, stride=2)),
            nn.ConvTranspose2d(d, d, 2, stride=2),
            nn.Identity(),
            nn.MaxPool2d(2, ceil_mode=True),
        ])
        self.channels = [d] * 4
        self.reductions = [self.size_divisor // 4, self.size_divisor // 2, self.size_divisor,
                           self.size_divisor * 2]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.vit.forward_intermediates(x, indices=self.depths, intermediates_only=True, norm=False)
        return [r(m) for r, m in zip(self.resize, maps)]

    def weight_target(self) -> nn.Module:
        return self.vit


class Segmentor(nn.Module):
    """Backbone pyramid + head; x [B, 3, H, W] float (normalised) -> logits [B, num_classes, H, W] float.

    ``backbone_parameters()`` / ``head_parameters()`` split the weights for the usual 1x / 10x learning rates
    (the ViT adapter's resize layers are new, so they count as head).
    """

    def __init__(self, backbone: CNNPyramid | ViTPyramid, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.size_divisor = int(getattr(backbone, "size_divisor", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        s = self.size_divisor
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        logits = self.head(self.backbone(x))
        logits = F.interpolate(logits, size=(h + ph, w + pw), mode="bilinear", align_corners=False)
        return logits[:, :, :h, :w]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.weight_target().parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        pre = {id(p) for p in self.backbone_parameters()}
        return [p for p in self.parameters() if id(p) not in pre]


def _pick_levels(reductions: Sequence[int]) -> tuple[int, int]:
    """(low, high) pyramid indices for DeepLabV3+: the stride-4 map and the deepest map."""
    low = next((i for i, r in enumerate(reductions) if r == 4), 0)
    return low, len(reductions) - 1


def _segformer_levels(reductions: Sequence[int]) -> list[int]:
    """Indices of the last map at each distinct stride (dilated stages share a stride; keep the deepest)."""
    last: dict[int, int] = {}
    for i, r in enumerate(reductions):
        last[r] = i
    return [last[r] for r in sorted(last)]


class _Select(nn.Module):
    """Feeds a head only some pyramid levels (the deepest one per stride)."""

    def __init__(self, head: nn.Module, levels: Sequence[int]) -> None:
        super().__init__()
        self.head, self.levels = head, list(levels)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head([feats[i] for i in self.levels])


def build_backbone(cfg: Mapping[str, Any]) -> CNNPyramid | ViTPyramid:
    """The pyramid of ``cfg['backbone']`` (timm name), with its weights (resolved by :mod:`wsss.models.weights`)."""
    name, pretrained = timm_name(str(cfg["backbone"]), cfg.get("pretrained", False))
    kwargs = dict(cfg.get("backbone_kwargs") or {})
    if is_vit(name):
        if cfg.get("output_stride", 16) not in (None, 16):
            log.info("ViT backbone %s: output_stride is fixed by the patch size; ignoring %s", name,
                     cfg.get("output_stride"))
        backbone: CNNPyramid | ViTPyramid = ViTPyramid(name, pretrained, cfg.get("vit_depths"), **kwargs)
    else:
        backbone = CNNPyramid(name, pretrained, int(cfg.get("output_stride", 16)), **kwargs)
    if cfg.get("weights"):
        load_backbone_weights(backbone.weight_target(), name, cfg["weights"])
    return backbone


def build_segmentor(seg_model_cfg: Mapping[str, Any], num_classes: int) -> Segmentor:
    """Build the segmentation network described by ``seg_model_cfg`` (see the module doc) for ``num_classes``
    classes (background included). Output: logits [B, num_classes, H, W] at the input size.
    """
    cfg = {**SEG_MODEL_DEFAULTS, **dict(seg_model_cfg or {})}
    kind = str(cfg["type"])
    if kind not in SEG_TYPES:
        raise WSSSError(f"unknown seg_model.type '{kind}'; expected one of {', '.join(SEG_TYPES)}")
    backbone = build_backbone(cfg)
    red, ch = backbone.reductions, backbone.channels
    if kind == "deeplabv3plus":
        low, high = _pick_levels(red)
        rates = cfg["aspp_rates"] or default_aspp_rates(red[high])
        head: nn.Module = DeepLabV3PlusHead(ch, num_classes, low, high, aspp_rates=rates,
                                            aspp_channels=int(cfg["head_channels"]), dropout=float(cfg["dropout"]))
    else:
        levels = _segformer_levels(red)
        head = _Select(MLPHead([ch[i] for i in levels], num_classes, embed_dim=int(cfg["head_channels"]),
                               dropout=float(cfg["dropout"])), levels)
    return Segmentor(backbone, head, num_classes)
