"""W-OoD (Lee et al., "Weakly Supervised Semantic Segmentation using Out-of-Distribution Data", CVPR 2022):
the pieces as pure functions over tensors. The training loop lives in stages/train_cls.py (``train_cls.wood``).

Out-of-distribution (OoD) images hold none of the classes but look like their context (rails without a train).
W-OoD (1) trains the classifier on them as all-negative, and (2) adds a metric-learning loss on globally pooled
features: with class prototypes (mean feature of the in-distribution images of each class) and OoD cluster
centres (k-means of the OoD images' features), an in-distribution image's feature is pulled towards the
prototypes of its classes and pushed away from the OoD centres that are near it. Only the hard OoD images, the
ones the classifier scores positive, are worth it: :func:`mine_hard_ood` keeps the K with the highest max class
score.

Following naver-ai/w-ood (read, not copied): Euclidean distances, the pull term is the mean over [B, K] of the
labelled distances scaled by K / M, the push term the mean over [B, M] of the distances below the
``(1 - near_fraction)``-th largest one (the near OoD centres), loss = pull - push. Before their all-negative loss
the reference moves the OoD images one step up the classifier's top score (:func:`adversarial_climb`), so that
the negatives it trains on are harder than the images themselves.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["adversarial_climb", "all_negative_loss", "class_prototypes", "mine_hard_ood", "near_mask",
           "wood_metric_loss"]


def class_prototypes(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of the images of each class.

    features: [N, D] float; labels: [N, K] multi-hot. Returns (prototypes [K, D] float32, present [K] bool);
    a class without any image gets a zero prototype and present=False (the loss ignores it)."""
    lab = labels.float()
    counts = lab.sum(0)
    protos = (lab.T @ features.float()) / counts.clamp(min=1)[:, None]
    return protos, counts > 0


def all_negative_loss(logits: torch.Tensor) -> torch.Tensor:
    """W-OoD's loss of the OoD images: multi-label soft margin of their logits [B, K] against all-zero targets
    (they hold none of the classes)."""
    logits = logits.float()
    return F.multilabel_soft_margin_loss(logits, torch.zeros_like(logits))


def mine_hard_ood(scores: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Indices of the ``top_k`` hardest OoD candidates, hardest first.

    scores: [N, K] class probabilities (or logits) of N candidate images. Hardness = the max over classes: the
    image the classifier most believes to hold some class. Ties keep the lower index first. ``top_k`` None or
    >= N keeps all N (sorted by hardness)."""
    hardness = scores.float().max(dim=1).values
    order = sorted(range(hardness.numel()), key=lambda i: (-float(hardness[i]), i))
    k = len(order) if top_k is None else max(0, min(int(top_k), len(order)))
    return torch.tensor(order[:k], dtype=torch.int64)


def near_mask(dist: torch.Tensor, near_fraction: float) -> torch.Tensor:
    """[B, M] bool: distances strictly below the k-th largest one, k = max(1, int(numel * (1 - near_fraction)));
    i.e. about the ``near_fraction`` nearest (image, OoD centre) pairs of the batch."""
    flat = dist.detach().flatten()
    k = max(1, int(flat.numel() * (1.0 - float(near_fraction))))
    thresh = torch.topk(flat, k).values[-1]
    return dist.detach() < thresh


def wood_metric_loss(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                     ood_centers: torch.Tensor, near_fraction: float = 0.2,
                     present: torch.Tensor | None = None) -> torch.Tensor:
    """W-OoD's metric-learning loss of a batch.

    features: [B, D] pooled features of in-distribution images; labels: [B, K] multi-hot; prototypes [K, D];
    ood_centers [M, D]; present [K] bool (classes with a prototype; default all).
    Returns mean_{B,K}(|f - p_k| * y_k) * K / M - mean_{B,M}(|f - c_m| * near), near from :func:`near_mask`.
    """
    f = features.float()
    lab = labels.float()
    if present is not None:
        lab = lab * present.float()[None]
    d_fg = torch.cdist(f, prototypes.float())  # [B, K]
    d_ood = torch.cdist(f, ood_centers.float())  # [B, M]
    k, m = prototypes.shape[0], ood_centers.shape[0]
    pull = (d_fg * lab).mean() * (k / m)
    push = (d_ood * near_mask(d_ood, near_fraction)).mean()
    return pull - push


def adversarial_climb(classifier: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                      step: float) -> torch.Tensor:
    """One step of the images up their highest class logit, as W-OoD does to its OoD batch before training it as
    all-negative: ``x + step * g / max|g|`` with g the gradient of the batch's summed max logit w.r.t. the
    (normalised) images, clamped to the batch's own value range. Returns a detached tensor; the classifier's
    parameters get no gradient from this (autograd.grad w.r.t. the images only). ``step`` 0 returns the images.

    Why: an OoD image the classifier already scores low teaches little; pushed towards "looks like class k" it
    is the hard negative that removes the context from class k's evidence."""
    if step == 0:
        return images
    x = images.detach().requires_grad_(True)
    with torch.enable_grad():
        top = classifier(x).float().max(dim=1).values.sum()
        (grad,) = torch.autograd.grad(top, x)
    moved = x.detach() + float(step) * grad / (grad.abs().max() + 1e-12)
    return moved.clamp(images.min().item(), images.max().item())
