"""W-OoD: the metric-learning loss on hand-made features, hard-OoD mining, k-means, and train_cls with OoD data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wsss.cluster import kmeans, nearest_center
from wsss.losses.wood import class_prototypes, mine_hard_ood, near_mask, wood_metric_loss

F = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
PROTOS = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
LABELS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_metric_loss_equals_the_hand_computed_value() -> None:
    # labelled distances: |f0 - p0| = 3, |f1 - p1| = 4 -> pull = (3 + 4) / 4 * K/M
    # OoD distances [[0, 10], [5, 5]]; near_fraction 0.75 keeps those below the largest (10): push = 10 / 4
    centers = torch.tensor([[0.0, 0.0], [6.0, 8.0]])
    loss = wood_metric_loss(F, LABELS, PROTOS, centers, near_fraction=0.75)
    assert loss.item() == pytest.approx(7 / 4 * 1.0 - 10 / 4)
    # one OoD centre (6, 8): distances [10, 5]; k = 1 -> below 10 keeps 5; pull scaled by K/M = 2
    loss = wood_metric_loss(F, LABELS, PROTOS, centers[1:], near_fraction=0.5)
    assert loss.item() == pytest.approx(7 / 4 * 2 - 5 / 2)
    # a class without prototype contributes nothing to the pull
    loss = wood_metric_loss(F, LABELS, PROTOS, centers[1:], 0.5, present=torch.tensor([True, False]))
    assert loss.item() == pytest.approx(3 / 4 * 2 - 5 / 2)


def test_metric_loss_gradient_pulls_to_prototypes_and_pushes_from_near_ood() -> None:
    f = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = wood_metric_loss(f, torch.tensor([[1.0]]), torch.tensor([[3.0, 0.0]]),
                            torch.tensor([[0.0, 0.0], [-9.0, 0.0]]), near_fraction=0.5)
    loss.backward()
    # pull: d|f - p|/df = (f - p)/|f - p| = (-1, 0), times K/M = 1/2; push: only the near centre (0, 0),
    # -d|f - c|/df / (B*M) = -(1, 0) / 2 -> total (-1, 0): gradient descent moves f to +x, to p, away from c
    assert f.grad[0].tolist() == pytest.approx([-1.0, 0.0])


def test_prototypes_are_class_means() -> None:
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    protos, present = class_prototypes(feats, labels)
    assert protos.tolist() == [[2.0, 1.0], [4.0, 3.5], [0.0, 0.0]] and present.tolist() == [True, True, False]


def test_mining_keeps_the_top_k_by_max_class_score() -> None:
    scores = torch.tensor([[0.1, 0.9], [0.5, 0.2], [0.95, 0.0], [0.9, 0.3]])
    assert mine_hard_ood(scores, 2).tolist() == [2, 0]
    assert mine_hard_ood(scores, 3).tolist() == [2, 0, 3]  # tie 0.9: the lower index first
    assert mine_hard_ood(scores, None).tolist() == [2, 0, 3, 1]
    assert near_mask(torch.tensor([[0.0, 10.0], [5.0, 5.0]]), 0.75).tolist() == [[True, False], [True, True]]


def test_kmeans_separates_two_blobs_deterministically() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 3, generator=g) * 0.1, torch.randn(30, 3, generator=g) * 0.1 + 5.0])
    a, c = kmeans(x, 2, seed=3)
    assert len(set(a[:20].tolist())) == 1 and len(set(a[20:].tolist())) == 1 and a[0] != a[20]
    assert torch.allclose(c[a[0]], x[:20].mean(0)) and torch.allclose(c[a[20]], x[20:].mean(0))
    a2, c2 = kmeans(x, 2, seed=3)
    assert torch.equal(a, a2) and torch.equal(c, c2)
    assert nearest_center(torch.tensor([[4.0, 4.0, 4.0]]), c).item() == int(a[20])
