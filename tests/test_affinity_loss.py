"""The AffinityNet loss on a toy pair set, the embedding -> affinity map, and the affinity network's shapes."""

from __future__ import annotations

import math

import pytest
import torch

from wsss.models.affinity_net import build_affinity_net, feature_affinity
from wsss.refine.affinity_loss import affinity_loss


def test_loss_on_toy_pairs_matches_hand_computation():
    # one image, two offsets, a 1x3 grid: six pair affinities
    aff = torch.tensor([[[[0.9, 0.5, 0.2]], [[0.8, 0.1, 0.6]]]])
    bg = torch.tensor([[[[1, 0, 0]], [[1, 0, 0]]]], dtype=torch.bool)    # 0.9, 0.8
    fg = torch.tensor([[[[0, 1, 0]], [[0, 0, 0]]]], dtype=torch.bool)    # 0.5
    neg = torch.tensor([[[[0, 0, 1]], [[0, 1, 1]]]], dtype=torch.bool)   # 0.2, 0.1, 0.6
    out = affinity_loss(aff, bg, fg, neg)
    exp_bg = -(math.log(0.9) + math.log(0.8)) / 2
    exp_fg = -math.log(0.5)
    exp_neg = -(math.log(1 - 0.2) + math.log(1 - 0.1) + math.log(1 - 0.6)) / 3
    assert out["bg"].item() == pytest.approx(exp_bg, abs=1e-4)
    assert out["fg"].item() == pytest.approx(exp_fg, abs=1e-4)
    assert out["neg"].item() == pytest.approx(exp_neg, abs=1e-4)
    assert out["loss"].item() == pytest.approx(exp_bg / 4 + exp_fg / 4 + exp_neg / 2, abs=1e-4)


def test_loss_without_pairs_of_a_kind_is_finite_and_pulls_the_right_way():
    aff = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    pos = torch.tensor([[[[1, 0], [0, 0]]]], dtype=torch.bool)
    neg = torch.tensor([[[[0, 0], [0, 1]]]], dtype=torch.bool)
    none = torch.zeros_like(pos)
    out = affinity_loss(aff, none, pos, neg)
    assert out["bg"].item() == 0.0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    g = aff.grad[0, 0]
    assert g[0, 0] < 0 < g[1, 1]          # positives pushed up, negatives pushed down
    assert g[0, 1] == 0 and g[1, 0] == 0  # unlabelled pairs get no gradient


def test_feature_affinity_hand_computed():
    # two channels on a 1x3 grid
    f = torch.tensor([[[[0.0, 1.0, 3.0]], [[0.0, 0.0, 2.0]]]])
    out = feature_affinity(f, [(0, 1), (0, 2), (1, 0)])
    assert out.shape == (1, 3, 1, 3)
    # (0,1): |0-1|,|0-0| -> mean 0.5; |1-3|,|0-2| -> mean 2; last pixel has no partner
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([math.exp(-0.5), math.exp(-2.0), 0.0]))
    torch.testing.assert_close(out[0, 1, 0], torch.tensor([math.exp(-2.5), 0.0, 0.0]))
    assert (out[0, 2] == 0).all()   # the partner one row down is outside a 1-row grid


def test_affinity_net_shapes_and_range():
    torch.manual_seed(0)
    net = build_affinity_net("resnet18", feature_stride=4, embed_dim=8, proj_dim=8).eval()
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        emb = net.embed(x)
        aff = net(x, [(0, 1), (1, -1), (2, 0)])
    assert emb.shape == (1, 8, 8, 16)
    assert aff.shape == (1, 3, 8, 16)
    inside = aff[:, :, :-2, 1:-1]
    assert (inside > 0).all() and (aff <= 1).all()
    assert (aff[:, 2, -2:] == 0).all()  # partner two rows down is outside the last two rows


def test_affinity_net_rejects_a_stride_the_backbone_lacks():
    with pytest.raises(ValueError, match="feature_stride"):
        build_affinity_net("resnet18", feature_stride=6)
