"""The multi-label CAM classifier: a timm backbone, global average pooling and a 1x1-conv classifier.

Why this shape: with a linear classifier on average-pooled features, the class-k logit is the spatial mean of
``W_k . f`` (plus a bias), so the CAM read from the classifier weights is exactly the evidence the classifier
used (IRN's ``Net``/``CAM`` pair). When pooling is the ViT class token (``pool='token'``) that identity no
longer holds and ``cam()`` uses Grad-CAM on the patch tokens entering the last block instead.

Config (``cls_model``)::

    dict(type='cam_classifier', backbone='resnet50', pretrained=False, weights=None, output_stride=16,
         pool='avg', cam_method='auto', bias=False, head_lr_mult=10.0, freeze_bn=False, drop_path_rate=0.0,
         freeze_backbone=False, unfreeze_last=0, head_init=None, imagenet_map=None, class_names=None)

Small-data mode (issue 16, docs/real_photos.md): ``freeze_backbone`` trains only the CAM head on fixed
pretrained features (the whole backbone in eval mode: BatchNorm statistics and dropout fixed), optionally with
the last ``unfreeze_last`` backbone units trainable again (their BatchNorm statistics still fixed);
``head_init='imagenet'`` starts each class's head row from its ImageNet counterparts
(:mod:`wsss.models.imagenet_head`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from wsss.cam.cam import cam_from_weights, grad_cam, linear_cam
from wsss.errors import WSSSError
from wsss.models.backbones import create_backbone
from wsss.models.registry import CLASSIFIERS

log = logging.getLogger(__name__)


@CLASSIFIERS.register_module(name="cam_classifier")
class CamClassifier(nn.Module):
    """Multi-label classifier whose CAMs come from its own classifier weights.

    Args:
        num_classes: foreground classes (C-1); logit j is class j + 1.
        backbone, pretrained, weights, output_stride, drop_path_rate: see
            :func:`wsss.models.backbones.create_backbone`.
        pool: ``'avg'`` (global average pooling of the feature map) or ``'token'`` (ViT class token).
        cam_method: ``'cam'`` (classifier weights), ``'gradcam'`` or ``'auto'`` (cam for avg, gradcam for token).
        bias: give the classifier a bias (IRN has none; the CAM never includes it).
        head_lr_mult: learning-rate multiplier of the classifier over the backbone.
        freeze_bn: keep the backbone's BatchNorm statistics and affine parameters fixed (small batches on
            a pretrained backbone).
        freeze_backbone: no backbone parameter trains and the backbone stays in eval mode.
        unfreeze_last: with ``freeze_backbone``, this many of the backbone's last units train again
            (:meth:`wsss.models.backbones.Backbone.units`: for EfficientNet the head conv, then blocks).
        head_init: None (normal init, std 0.01) or ``'imagenet'`` (mean of the mapped ImageNet rows, see
            :func:`wsss.models.imagenet_head.mapped_head`; needs ``weights`` with the ImageNet classifier).
        imagenet_map: mapping CSV for ``head_init='imagenet'`` (default ``wsss/models/voc_imagenet_map.csv``).
        class_names: the dataset's class names (background first) for the mapping; default VOC.
        backbone_kwargs: extra ``timm.create_model`` arguments.
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained: bool | str = False,
                 weights: str | Path | None = None, output_stride: int | None = None, pool: str = "avg",
                 cam_method: str = "auto", bias: bool = False, head_lr_mult: float = 10.0,
                 freeze_bn: bool = False, drop_path_rate: float = 0.0,
                 backbone_kwargs: dict[str, Any] | None = None, freeze_backbone: bool = False,
                 unfreeze_last: int = 0, head_init: str | None = None, imagenet_map: str | Path | None = None,
                 class_names: list[str] | None = None) -> None:
        super().__init__()
        if pool not in ("avg", "token"):
            raise WSSSError(f"cls_model.pool must be 'avg' or 'token', got '{pool}'")
        if cam_method == "auto":
            cam_method = "cam" if pool == "avg" else "gradcam"
        if cam_method not in ("cam", "gradcam"):
            raise WSSSError(f"cls_model.cam_method must be 'cam', 'gradcam' or 'auto', got '{cam_method}'")
        if pool == "avg" and cam_method == "cam":
            pass
        elif pool == "token" and cam_method == "cam":
            raise WSSSError("cls_model.pool='token' has no spatial classifier map: use cam_method='gradcam'")
        self.backbone = create_backbone(backbone, pretrained=pretrained, weights=weights,
                                        output_stride=output_stride, drop_path_rate=drop_path_rate,
                                        **(backbone_kwargs or {}))
        if pool == "token" and not (self.backbone.is_vit and self.backbone.model.num_prefix_tokens > 0):
            raise WSSSError(f"cls_model.pool='token' needs a ViT with a class token, not '{backbone}'")
        self.num_classes = int(num_classes)
        self.pool = pool
        self.cam_method = cam_method
        self.head_lr_mult = float(head_lr_mult)
        self.freeze_bn = bool(freeze_bn)
        self.classifier = nn.Conv2d(self.backbone.out_channels, self.num_classes, 1, bias=bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        if bias:
            nn.init.zeros_(self.classifier.bias)
        if self.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.requires_grad_(False)
        self.freeze_backbone = bool(freeze_backbone)
        self.unfreeze_last = int(unfreeze_last or 0)
        if self.unfreeze_last and not self.freeze_backbone:
            raise WSSSError("cls_model.unfreeze_last needs cls_model.freeze_backbone=True")
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
            units = self.backbone.units()
            if not 0 <= self.unfreeze_last <= len(units):
                raise WSSSError(f"cls_model.unfreeze_last={self.unfreeze_last}: backbone '{backbone}' has "
                                f"{len(units)} units")
            for unit in units[len(units) - self.unfreeze_last:]:
                unit.requires_grad_(True)
            if self.freeze_bn:  # freeze_bn keeps BatchNorm affine parameters fixed in unfrozen units too
                for m in self.backbone.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.requires_grad_(False)
        # Test / stage hook: the training loss on [B, K] logits (train_cls.loss); None = multi-label soft margin.
        self.loss_fn = None
        if head_init not in (None, "none", "imagenet"):
            raise WSSSError(f"cls_model.head_init must be None or 'imagenet', got '{head_init}'")
        if head_init == "imagenet":
            self._init_head_from_imagenet(weights, imagenet_map, class_names)

    def _init_head_from_imagenet(self, weights, imagenet_map, class_names) -> None:
        from wsss.models.imagenet_head import class_names_for, mapped_head, read_imagenet_map
        from wsss.models.weights import imagenet_classifier

        if self.pool != "avg":
            raise WSSSError("cls_model.head_init='imagenet' needs pool='avg' (ImageNet heads read pooled features)")
        w1000, b1000 = imagenet_classifier(self.backbone.arch, weights)
        if w1000.shape[1] != self.backbone.out_channels:
            raise WSSSError(f"ImageNet classifier has {w1000.shape[1]} inputs, backbone gives "
                            f"{self.backbone.out_channels} channels")
        mapping = read_imagenet_map(imagenet_map, class_names_for(self.num_classes, class_names))
        w, b = mapped_head(w1000, b1000, mapping, self.num_classes)
        with torch.no_grad():
            self.classifier.weight.copy_(w[:, :, None, None])
            if self.classifier.bias is not None:
                self.classifier.bias.copy_(b)
        log.info("head initialised from ImageNet rows for %d of %d classes%s",
                 sum(1 for v in mapping.values() if v), self.num_classes,
                 "" if self.classifier.bias is not None else " (no bias: cls_model.bias=False)")

    @property
    def head_only(self) -> bool:
        """True when only the classifier trains: frozen backbone, no unfrozen units (features can be cached)."""
        return self.freeze_backbone and self.unfreeze_last == 0 and self.pool == "avg"

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> average-pooled backbone features [B, C] (what the head reads)."""
        return self.backbone(images).mean(dim=(2, 3))

    def head_losses(self, pooled: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training loss on pooled features [B, C] (cached-feature training of a frozen backbone)."""
        return self._loss(self._logits(pooled), labels)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.loss_fn is None:
            loss = F.multilabel_soft_margin_loss(logits.float(), labels.float())
        else:
            loss = self.loss_fn(logits, labels)
        return {"loss": loss, "loss_cls": loss.detach()}

    # --- the classifier interface ------------------------------------------------------------------------
    def _logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled: [B, C] -> logits [B, K]."""
        return self.classifier(pooled[:, :, None, None]).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, 3, H, W] ImageNet-normalised -> logits [B, C-1]."""
        if self.pool == "token":
            tokens, _ = self.backbone.vit_tokens_before_last_block(images)
            return self._logits(self.backbone.vit_last_block(tokens)[:, 0])
        return self._logits(self.backbone(images).mean(dim=(2, 3)))

    def losses(self, images: torch.Tensor, labels: torch.Tensor, iteration: int = 0) -> dict[str, torch.Tensor]:
        """Multi-label soft-margin loss (= mean binary cross-entropy over classes) on ``labels`` [B, C-1], or
        ``loss_fn`` when the stage set one (``train_cls.loss``)."""
        return self._loss(self(images), labels)

    def linear_cam(self, images: torch.Tensor) -> torch.Tensor:
        """``pool='avg'`` only: classifier-weighted features before the ReLU, [B, C-1, h, w]; their spatial
        mean is ``forward(images)`` minus the classifier bias."""
        if self.pool != "avg":
            raise WSSSError("linear_cam needs pool='avg'")
        return linear_cam(self.backbone(images), self.classifier.weight)

    def cam(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, 3, H, W] -> [B, C-1, h, w] non-negative class activations at feature resolution."""
        if self.cam_method == "cam":
            return cam_from_weights(self.backbone(images), self.classifier.weight)
        with torch.enable_grad():
            if self.pool == "token":
                tokens, grid = self.backbone.vit_tokens_before_last_block(images)
                tokens = tokens.detach().requires_grad_(True)
                logits = self._logits(self.backbone.vit_last_block(tokens)[:, 0])
                feats = self.backbone.tokens_to_map(tokens, grid)
                maps = _token_grad_cam(tokens, logits, feats, self.backbone.model.num_prefix_tokens, grid)
            else:
                feats = self.backbone(images).detach().requires_grad_(True)
                maps = grad_cam(feats, self._logits(feats.mean(dim=(2, 3))))
        return maps.to(images.dtype) if images.dtype.is_floating_point else maps

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Backbone at ``lr``, classifier at ``lr * head_lr_mult``; frozen parameters left out."""
        bb = [p for p in self.backbone.parameters() if p.requires_grad]
        head = [p for p in self.classifier.parameters() if p.requires_grad]
        return [{"params": bb, "lr": lr, "name": "backbone"},
                {"params": head, "lr": lr * self.head_lr_mult, "name": "head"}]

    def train(self, mode: bool = True) -> "CamClassifier":
        super().train(mode)
        if mode and self.freeze_backbone:
            self.backbone.eval()
        if mode and self.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


def _token_grad_cam(tokens: torch.Tensor, logits: torch.Tensor, feats: torch.Tensor, prefix: int,
                    grid: tuple[int, int]) -> torch.Tensor:
    """Grad-CAM over the patch part of ViT tokens [B, N, C] (gradients w.r.t. the tokens entering the last
    block, where the class token still attends to the patches). Returns [B, K, h, w] float32."""
    k = logits.shape[1]
    b, c = tokens.shape[0], tokens.shape[2]
    maps = []
    for j in range(k):
        (g,) = torch.autograd.grad(logits[:, j].sum(), tokens, retain_graph=j < k - 1)
        g = g[:, prefix:].transpose(1, 2).reshape(b, c, grid[0], grid[1]).float()
        alpha = g.mean(dim=(2, 3), keepdim=True)
        maps.append(torch.relu((alpha * feats.detach().float()).sum(dim=1)))
    return torch.stack(maps, dim=1)
