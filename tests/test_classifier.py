"""The CAM classifier: shapes, CAM == classifier-weighted features, Grad-CAM, parameter groups, weights."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from wsss.cam.cam import grad_cam
from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss.errors import InputError, WSSSError
from wsss.models.backbones import create_backbone
from wsss.models.registry import build_classifier
from wsss.models.weights import load_backbone_weights, map_by_order, timm_name

torch.set_num_threads(1)


def _model(**kw) -> torch.nn.Module:
    cfg = dict(type="cam_classifier", backbone="test_resnet", pretrained=False)
    cfg.update(kw)
    torch.manual_seed(0)
    return build_classifier(cfg, 5).eval()


@pytest.mark.parametrize("output_stride,grid", [(None, (2, 3)), (16, (4, 5))])
def test_logits_and_cam_shapes_follow_output_stride(output_stride, grid):
    m = _model(output_stride=output_stride)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        assert m(x).shape == (2, 5)
        cam = m.cam(x)
    assert cam.shape == (2, 5, *grid)
    assert (cam >= 0).all()


def test_cam_is_relu_of_classifier_weighted_features_and_averages_to_logits():
    m = _model(output_stride=16, bias=True)
    with torch.no_grad():
        m.classifier.bias.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0, 0.25]))
        x = torch.randn(3, 3, 64, 64)
        feats = m.backbone(x)  # [B, C, h, w]
        w = m.classifier.weight[:, :, 0, 0]  # [K, C]
        by_hand = torch.einsum("kc,bchw->bkhw", w, feats)
        lin = m.linear_cam(x)
        logits = m(x)
        cam = m.cam(x)
    torch.testing.assert_close(lin, by_hand, rtol=1e-5, atol=1e-5)
    # GAP logits = spatial mean of the classifier-weighted features + bias
    torch.testing.assert_close(lin.mean(dim=(2, 3)), logits - m.classifier.bias, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cam, torch.relu(by_hand), rtol=1e-5, atol=1e-5)
    assert (cam == 0).any() and (cam > 0).any()


def test_grad_cam_of_gap_linear_head_is_cam_over_area():
    """For logit_k = mean_hw(W_k . f), d logit / d f = W_k / (h w): Grad-CAM must equal CAM / (h w)."""
    m = _model(output_stride=16)
    g = _model(output_stride=16, cam_method="gradcam")
    g.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        cam = m.cam(x)
        gcam = g.cam(x)
    hw = cam.shape[-1] * cam.shape[-2]
    torch.testing.assert_close(gcam * hw, cam, rtol=1e-4, atol=1e-5)


def test_grad_cam_function_matches_autograd_by_hand():
    feats = torch.randn(2, 4, 3, 3, requires_grad=True)
    w = torch.randn(3, 4)
    logits = (feats ** 2).mean(dim=(2, 3)) @ w.T  # nonlinear in f: gradient depends on f
    maps = grad_cam(feats, logits)
    f = feats.detach()
    alpha = (2 * f / 9).mean(dim=(2, 3))  # d mean(f^2)/df = 2f/9, averaged over space: [B, C]
    for k in range(3):
        expect = torch.relu(((alpha * w[k])[:, :, None, None] * f).sum(1))
        torch.testing.assert_close(maps[:, k], expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        grad_cam(f, logits.detach())


def test_vit_backbone_avg_and_token_pooling():
    x = torch.randn(2, 3, 64, 90)  # 90 is not a multiple of 16: dynamic padding gives a 4 x 6 grid
    avg = _model(backbone="test_vit")
    tok = _model(backbone="test_vit", pool="token")
    assert tok.cam_method == "gradcam"
    with torch.no_grad():
        assert avg(x).shape == (2, 5) and tok(x).shape == (2, 5)
        assert avg.cam(x).shape == (2, 5, 4, 6)
        c = tok.cam(x)
    assert c.shape == (2, 5, 4, 6) and (c >= 0).all() and c.sum() > 0
    with pytest.raises(WSSSError):
        _model(backbone="test_resnet", pool="token")
    with pytest.raises(WSSSError):
        _model(backbone="test_vit", pool="token", cam_method="cam")


def test_losses_is_multilabel_soft_margin_and_param_groups_give_head_10x():
    m = _model()
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.float32)
    out = m.losses(x, y, 0)
    logits = m(x)
    by_hand = -(y * torch.nn.functional.logsigmoid(logits)
                + (1 - y) * torch.nn.functional.logsigmoid(-logits)).mean()
    torch.testing.assert_close(out["loss"], by_hand)
    groups = m.param_groups(0.01)
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.1)]
    n_all = sum(p.numel() for p in m.parameters())
    assert sum(p.numel() for g in groups for p in g["params"]) == n_all
    assert groups[1]["params"][0] is m.classifier.weight


def test_freeze_bn_keeps_backbone_batchnorm_in_eval():
    m = _model(freeze_bn=True).train()
    bns = [x for x in m.backbone.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert bns and all(not b.training for b in bns)
    assert all(not p.requires_grad for b in bns for p in b.parameters())
    groups = m.param_groups(0.1)
    assert not any(p is b.weight for g in groups for p in g["params"] for b in bns)


def test_unknown_type_and_bad_options_are_one_line_errors():
    with pytest.raises(WSSSError, match="unknown cls_model type 'nope'"):
        build_classifier(dict(type="nope"), 3)
    with pytest.raises(WSSSError, match="unknown timm backbone"):
        build_classifier(dict(type="cam_classifier", backbone="no_such_net"), 3)
    with pytest.raises(WSSSError, match="cam_classifier"):
        build_classifier(dict(type="cam_classifier", backbone="test_resnet", colour="red"), 3)


def test_timm_name_resolves_tags():
    assert timm_name("resnet50", True) == ("resnet50", True)
    assert timm_name("resnet50", "a1_in1k") == ("resnet50.a1_in1k", True)
    assert timm_name("resnet50", False) == ("resnet50", False)


def test_local_checkpoint_weights_timm_layout_and_wsss_checkpoint(tmp_path):
    src = _model(output_stride=16)
    # 1) a timm-layout backbone state dict
    torch.save(src.backbone.model.state_dict(), tmp_path / "timm.pth")
    dst = _model(weights=str(tmp_path / "timm.pth"))
    for k, v in src.backbone.model.state_dict().items():
        assert torch.equal(v, dst.backbone.model.state_dict()[k]), k
    # 2) a wsss checkpoint of the whole classifier ({'model': state_dict}, keys under backbone.model.)
    torch.save({"model": src.state_dict(), "iteration": 3}, tmp_path / "wsss.pth")
    dst2 = _model(weights=str(tmp_path / "wsss.pth"))
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(v, dst2.backbone.state_dict()[k]), k
    # 3) another architecture's weights are refused with a message naming the problem
    torch.save(_model(backbone="resnet10t").backbone.model.state_dict(), tmp_path / "other.pth")
    with pytest.raises(WSSSError, match="test_resnet"):
        _model(weights=str(tmp_path / "other.pth"))
    with pytest.raises(InputError, match="not found"):
        _model(weights=str(tmp_path / "missing.pth"))


def test_map_by_order_checks_count_and_shapes():
    tmpl = OrderedDict(a=torch.zeros(2, 3), b=torch.zeros(4), n=torch.zeros((), dtype=torch.long))
    tmpl["n"] = torch.tensor(0)
    src = OrderedDict(x=torch.ones(2, 3), y=torch.full((4,), 2.0))
    out = map_by_order(src, {"a": tmpl["a"], "b": tmpl["b"], "bn.num_batches_tracked": tmpl["n"]})
    assert list(out) == ["a", "b"] and torch.equal(out["b"], src["y"])
    with pytest.raises(WSSSError, match="2 weight tensors, but the timm model expects 1"):
        map_by_order(src, {"a": tmpl["a"]})
    with pytest.raises(WSSSError, match="does not fit"):
        map_by_order(OrderedDict(x=torch.ones(3, 2), y=torch.ones(4)), {"a": tmpl["a"], "b": tmpl["b"]})


def test_lite_package_weights_need_the_matching_backbone():
    m = create_backbone("test_resnet")
    with pytest.raises(WSSSError, match="tf_efficientnet_lite1"):
        load_backbone_weights(m.model, "test_resnet", "efficientnet-lite1-package")


def test_backbone_renormalises_to_its_pretraining_statistics():
    """wsss feeds ImageNet-normalised images; tf_efficientnet_lite0 was trained on (x - 0.5) / 0.5."""
    bb = create_backbone("tf_efficientnet_lite0")
    assert bb.renormalise
    raw = torch.rand(1, 3, 8, 8)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(bb._input((raw - mean) / std), (raw - 0.5) / 0.5)
    assert not create_backbone("resnet10t").renormalise  # timm: ImageNet statistics
