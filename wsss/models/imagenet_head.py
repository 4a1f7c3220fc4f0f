"""VOC classes from ImageNet-1k classes: the mapping file, head initialisation, and a zero-training classifier.

Why: an ImageNet classifier already knows 'tabby' and 'sports car'; on a small dataset the CAM head can start
from those rows instead of from noise: ``cls_model.head_init='imagenet'`` (cam_classifier: each class's row is
the mean of its mapped rows) or ``cls_model.type='imagenet_mapped'`` (the mapped rows themselves, max-pooled
per class). The latter with no training at all is the baseline a trained head has to beat.

The mapping file (default ``wsss/models/voc_imagenet_map.csv``, documented in its header) has one row per
ImageNet class: ``voc_class,imagenet_index,imagenet_name``; lines starting with ``#`` are comments. A VOC class
may have no row ('person'): its head row starts at zero and its zero-training CAM is zero.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from wsss.cam.cam import cam_from_weights
from wsss.errors import InputError, WSSSError
from wsss.models.backbones import create_backbone
from wsss.models.multilabel_loss import bce_loss
from wsss.models.registry import CLASSIFIERS
from wsss.models.weights import imagenet_classifier

log = logging.getLogger(__name__)

DEFAULT_MAP = Path(__file__).with_name("voc_imagenet_map.csv")
NUM_IMAGENET = 1000


def read_imagenet_map(path: str | Path | None, class_names: Sequence[str]) -> dict[int, list[int]]:
    """{foreground class index 0..K-1 (class_names[1:]): sorted ImageNet indices} from a mapping CSV.

    ``class_names`` is the dataset's full list (background first). Errors name the file and line: unknown
    class, index outside 0..999, an ImageNet class given twice.
    """
    path = Path(path) if path else DEFAULT_MAP
    if not path.is_file():
        raise InputError(path, "ImageNet mapping file not found")
    fg = {n: k for k, n in enumerate(class_names[1:])}
    out: dict[int, list[int]] = {k: [] for k in range(len(fg))}
    seen: dict[int, int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            row = next(csv.reader([line]))
            if row[0].strip() == "voc_class":
                continue
            if len(row) < 2:
                raise InputError(path, f"line {n}: expected 'voc_class,imagenet_index[,imagenet_name]'")
            name, index = row[0].strip(), row[1].strip()
            if name not in fg:
                raise InputError(path, f"line {n}: class '{name}' is not a foreground class of the dataset")
            try:
                idx = int(index)
            except ValueError:
                raise InputError(path, f"line {n}: ImageNet index '{index}' is not an integer") from None
            if not 0 <= idx < NUM_IMAGENET:
                raise InputError(path, f"line {n}: ImageNet index {idx} outside 0..{NUM_IMAGENET - 1}")
            if idx in seen:
                raise InputError(path, f"line {n}: ImageNet index {idx} already mapped on line {seen[idx]}")
            seen[idx] = n
            out[fg[name]].append(idx)
    return {k: sorted(v) for k, v in out.items()}


def mapped_head(weight: torch.Tensor, bias: torch.Tensor, mapping: dict[int, list[int]],
                num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CAM-head rows from ImageNet rows: class k gets the mean of its mapped rows (weight [1000, C] and bias
    [1000] -> [K, C], [K]); unmapped classes get zeros. With a linear head on average-pooled features, class k's
    logit is then the mean of its ImageNet classes' logits, and its CAM the mean of their CAMs."""
    w = torch.zeros(num_classes, weight.shape[1], dtype=torch.float32)
    b = torch.zeros(num_classes, dtype=torch.float32)
    for k, rows in mapping.items():
        if rows:
            w[k] = weight[rows].float().mean(0)
            b[k] = bias[rows].float().mean()
    return w, b


def class_names_for(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """Full class list (background first) for ``num_classes`` foreground classes; VOC when not given."""
    if class_names is None:
        from wsss.data.classes import VOC_CLASSES
        class_names = VOC_CLASSES
    names = list(class_names)
    if len(names) != num_classes + 1:
        raise WSSSError(f"the ImageNet mapping needs the {num_classes} foreground class names "
                        f"(cls_model.class_names), got {len(names)} names")
    return names


@CLASSIFIERS.register_module(name="imagenet_mapped")
class ImageNetMappedClassifier(nn.Module):
    """A CAM head made of the pretrained ImageNet rows, grouped per VOC class, on a frozen backbone.

    Class k's logit is ``reduce`` (max or mean) over its rows' logits ``W_r . mean(f) + b_r``; its CAM the same
    reduction over the rows' CAMs ``relu(W_r . f)`` (bias excluded, as in every CAM). A class without ImageNet
    counterpart ('person') gets one row of its own, initialised at zero (CAM 0 until trained).

    Two uses: with ``train_cls.iters=0`` it is the zero-training baseline (the ImageNet head read through the
    mapping); trained, it is the 'max-pooled CAM over the mapped rows' head init of issue 16: every row stays
    trainable and with ``reduce='max'`` each sample's gradient goes to its best-matching row of each class.
    The backbone is always frozen (eval mode), so ``train_cls.cache_views`` applies.

    Config: ``dict(type='imagenet_mapped', backbone='tf_efficientnet_lite0', weights='efficientnet-lite0-package',
    output_stride=16, reduce='max', imagenet_map=None, class_names=None, head_lr_mult=10.0)``.
    """

    def __init__(self, num_classes: int, backbone: str = "tf_efficientnet_lite0", pretrained: bool | str = False,
                 weights: str | Path | None = None, output_stride: int | None = None, reduce: str = "max",
                 imagenet_map: str | Path | None = None, class_names: Sequence[str] | None = None,
                 head_lr_mult: float = 10.0) -> None:
        super().__init__()
        if reduce not in ("max", "mean"):
            raise WSSSError(f"cls_model.reduce must be 'max' or 'mean', got '{reduce}'")
        self.backbone = create_backbone(backbone, pretrained=pretrained, weights=weights, output_stride=output_stride)
        self.backbone.requires_grad_(False)
        self.num_classes, self.reduce = int(num_classes), reduce
        self.head_lr_mult = float(head_lr_mult)
        mapping = read_imagenet_map(imagenet_map, class_names_for(num_classes, class_names))
        if weights is not None:
            w, b = imagenet_classifier(self.backbone.arch, weights)
        else:  # structure only (make_cam rebuilds the model, then loads final.pth)
            w, b = torch.zeros(NUM_IMAGENET, self.backbone.out_channels), torch.zeros(NUM_IMAGENET)
        rows_w, rows_b, self.groups = [], [], []
        for k in range(self.num_classes):
            rows = mapping[k]
            start = sum(len(g) for g in self.groups)
            if rows:
                rows_w.append(w[rows])
                rows_b.append(b[rows])
                self.groups.append(list(range(start, start + len(rows))))
            else:
                rows_w.append(torch.zeros(1, w.shape[1]))
                rows_b.append(torch.zeros(1))
                self.groups.append([start])
        self.rows_weight = nn.Parameter(torch.cat(rows_w).float().clone())
        self.rows_bias = nn.Parameter(torch.cat(rows_b).float().clone())
        self.loss_fn = None  # set by train_cls (train_cls.loss); None = mean BCE

    head_only = True

    def train(self, mode: bool = True) -> "ImageNetMappedClassifier":
        super().train(mode)
        self.backbone.eval()
        return self

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, R, ...] per row -> [B, K, ...] per class."""
        if self.reduce == "max":
            return torch.stack([x[:, g].amax(dim=1) for g in self.groups], dim=1)
        return torch.stack([x[:, g].mean(dim=1) for g in self.groups], dim=1)

    def _logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled [B, C] -> logits [B, K]."""
        return self._reduce(pooled.float() @ self.rows_weight.t() + self.rows_bias)

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> logits [B, K]."""
        return self._logits(self.pooled_features(images))

    def cam(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> [B, K, h, w] non-negative maps."""
        feats = self.backbone(images)
        return self._reduce(cam_from_weights(feats, self.rows_weight.to(feats.dtype)[:, :, None, None]))

    def head_losses(self, pooled: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self._logits(pooled)
        loss = (self.loss_fn or bce_loss)(logits, labels)
        return {"loss": loss, "loss_cls": loss.detach()}

    def losses(self, images: torch.Tensor, labels: torch.Tensor, iteration: int = 0) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            pooled = self.pooled_features(images)
        return self.head_losses(pooled, labels)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [], "lr": lr, "name": "backbone"},
                {"params": [self.rows_weight, self.rows_bias], "lr": lr * self.head_lr_mult, "name": "head"}]
