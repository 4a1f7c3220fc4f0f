"""Multi-label classification losses for the CAM classifier (``train_cls.loss``).

Why more than plain BCE: on a small real set one class dominates the labels (coco128-voc: 'person' on 46 of 96
training photos, most other classes on 1-9). Plain BCE then gets most of its positive signal from that class;
the two options here shift weight to the rare positives:

* ``balanced_bce``: BCE with a per-class positive weight ``w_k = n_neg_k / n_pos_k`` from the training label
  counts (clipped to ``pos_weight_max``; 1 for a class without positives), so each class's positives and
  negatives weigh the same in total.
* ``asl``: asymmetric loss (Ridnik et al., ICCV 2021): negatives are focused (``p_m ** gamma_neg``) after a
  probability shift ``p_m = max(p - clip, 0)`` that discards easy negatives; positives keep
  ``(1 - p) ** gamma_pos``.

Every loss is the mean over the [B, K] elements (the scale of ``multilabel_soft_margin_loss``, which ``bce``
equals), so learning rates carry over between them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from wsss.errors import WSSSError

LOSSES = ("bce", "balanced_bce", "asl")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def positive_weights(label_matrix: np.ndarray, max_weight: float | None = None) -> np.ndarray:
    """Per-class positive weights from a multi-hot label matrix [N, K]: ``(N - n_k) / n_k`` for ``n_k > 0``,
    1 otherwise, clipped to ``max_weight`` when given. Returns float32 [K]."""
    y = np.asarray(label_matrix, dtype=np.float64)
    n = y.shape[0]
    pos = y.sum(axis=0)
    w = np.where(pos > 0, (n - pos) / np.maximum(pos, 1), 1.0)
    if max_weight is not None:
        w = np.minimum(w, float(max_weight))
    return w.astype(np.float32)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits, labels: [B, K] -> scalar mean binary cross-entropy."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def balanced_bce_loss(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``-(w_k y log p + (1 - y) log(1 - p))`` over [B, K]; pos_weight: [K]."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float(),
                                              pos_weight=pos_weight.to(logits.device, torch.float32))


def asymmetric_loss(logits: torch.Tensor, labels: torch.Tensor, gamma_neg: float = 4.0, gamma_pos: float = 0.0,
                    clip: float = 0.05, eps: float = 1e-8) -> torch.Tensor:
    """Asymmetric loss, mean over [B, K]:
    ``-(y (1-p)^gp log p + (1-y) p_m^gn log(1-p_m))`` with ``p = sigmoid(x)``, ``p_m = max(p - clip, 0)``."""
    x, y = logits.float(), labels.float()
    p = torch.sigmoid(x)
    p_m = (p - clip).clamp(min=0) if clip and clip > 0 else p
    loss_pos = y * (1 - p).pow(gamma_pos) * torch.log(p.clamp(min=eps))
    loss_neg = (1 - y) * p_m.pow(gamma_neg) * torch.log((1 - p_m).clamp(min=eps))
    return -(loss_pos + loss_neg).mean()


def build_loss(kind: str, label_matrix: np.ndarray | None = None, pos_weight_max: float | None = None,
               asl: dict | None = None) -> LossFn:
    """The ``train_cls.loss`` function ``(logits [B, K], labels [B, K]) -> scalar``.

    ``label_matrix`` [N, K] (the training labels) is needed for ``balanced_bce``.
    """
    if kind == "bce":
        return bce_loss
    if kind == "balanced_bce":
        if label_matrix is None:
            raise WSSSError("train_cls.loss='balanced_bce' needs the training labels")
        w = torch.from_numpy(positive_weights(label_matrix, pos_weight_max))
        return lambda logits, labels: balanced_bce_loss(logits, labels, w)
    if kind == "asl":
        opts = dict(gamma_neg=4.0, gamma_pos=0.0, clip=0.05)
        unknown = sorted(set(asl or {}) - set(opts))
        if unknown:
            raise WSSSError(f"train_cls.asl: unknown keys {unknown}; known: {sorted(opts)}")
        opts.update(asl or {})
        return lambda logits, labels: asymmetric_loss(logits, labels, **{k: float(v) for k, v in opts.items()})
    raise WSSSError(f"train_cls.loss must be one of {', '.join(LOSSES)}, got '{kind}'")
