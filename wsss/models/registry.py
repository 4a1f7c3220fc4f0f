"""The classifier registry: stages build whatever ``cls_model.type`` names, through one function.

Every registered classifier takes ``num_classes`` (foreground classes, C-1) plus its config keys, and
implements the interface ``train_cls`` and ``make_cam`` rely on (and nothing more):

* ``forward(images [B, 3, H, W] ImageNet-normalised) -> logits [B, C-1]`` (logit j is class j + 1);
* ``losses(images, labels [B, C-1] multi-hot, iteration: int) -> dict[str, Tensor]``, ``'loss'`` = total,
  other entries are logged;
* ``cam(images) -> [B, C-1, h, w]`` raw non-negative activations at feature resolution (called under
  ``torch.no_grad()``, never ``inference_mode``, so Grad-CAM style models may re-enable grad inside);
* ``param_groups(lr) -> list[dict]`` optimiser groups (the head usually at 10x the backbone lr).
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

import torch.nn as nn
from mmengine.registry import Registry

from wsss.errors import WSSSError

CLASSIFIERS = Registry("classifier")

# Modules that register classifiers; imported on first build so configs work without importing them by hand.
_PROVIDERS = ("wsss.models.classifier", "wsss.models")


def _import_providers() -> None:
    for name in _PROVIDERS:
        importlib.import_module(name)


def build_classifier(model_cfg: Mapping[str, Any], num_classes_fg: int) -> nn.Module:
    """Build the classifier described by a config's ``cls_model`` section for ``num_classes_fg`` classes.

    ``model_cfg``: ``dict(type='cam_classifier', backbone='resnet50', pretrained=False, weights=None, ...)``.
    """
    _import_providers()
    cfg = dict(model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else model_cfg)
    kind = cfg.pop("type", None)
    if kind is None:
        raise WSSSError("cls_model needs a 'type' (e.g. type='cam_classifier')")
    cls = CLASSIFIERS.get(kind)
    if cls is None:
        known = ", ".join(sorted(CLASSIFIERS.module_dict))
        raise WSSSError(f"unknown cls_model type '{kind}'; registered: {known}")
    try:
        return cls(num_classes=int(num_classes_fg), **cfg)
    except TypeError as e:
        raise WSSSError(f"cls_model type '{kind}': {e}") from e
