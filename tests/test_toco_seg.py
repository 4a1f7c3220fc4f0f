"""ToCo's segmentation branch: its losses (wsss.refine.seg_losses), the option on the ToCo model, and the
seg_cam stage that writes its predictions as CAM-format npz for make_pseudo / eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from tests.test_toco_model import TINY, _Killed, build, one_thread, toy_batch, train_steps  # noqa: F401  (fixture)
from wsss.errors import WSSSError
from wsss.refine.seg_losses import balanced_seg_loss, dense_energy_loss, dense_gaussian_filter

ROOT = Path(__file__).resolve().parents[1]
SEG = dict(channels=16, dilation=2, start_iter=3, reg=dict(sigma_xy=10.0, weight=1e-4))


# --------------------------------------------------------------------------- losses
def test_balanced_seg_loss_averages_background_and_foreground_means():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 2, 3, generator=g)
    labels = torch.tensor([[[0, 0, 1], [2, 255, 0]]])
    logp = torch.log_softmax(logits, dim=1)[0]
    bg = [-logp[0, 0, 0], -logp[0, 0, 1], -logp[0, 1, 2]]
    fg = [-logp[1, 0, 2], -logp[2, 1, 0]]
    expected = 0.5 * (sum(bg) / 3 + sum(fg) / 2)
    assert balanced_seg_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    only_bg = torch.tensor([[[0, 0, 255], [255, 255, 0]]])
    assert balanced_seg_loss(logits, only_bg).item() == pytest.approx(
        0.5 * (-(logp[0, 0, 0] + logp[0, 0, 1] + logp[0, 1, 2]) / 3).item(), rel=1e-6)


def test_dense_gaussian_filter_matches_the_dense_kernel_matrix():
    g = torch.Generator().manual_seed(1)
    f, v = torch.randn(23, 5, generator=g), torch.rand(23, 4, generator=g)
    kernel = torch.exp(-0.5 * torch.cdist(f.double(), f.double()) ** 2)
    assert torch.allclose(dense_gaussian_filter(f, v, chunk=7).double(), kernel @ v.double(), atol=1e-5)


def _energy_reference(images, probs, labels, sigma_rgb, sigma_xy, ignore=255):
    """Tang et al.'s gated energy written out pixel pair by pixel pair (float64): value and d/dprobs."""
    b, k, h, w = probs.shape
    img, s, lab = images.double().numpy(), probs.detach().double().numpy(), labels.numpy()
    value, grad = 0.0, np.zeros_like(s)
    pos = [(y, x) for y in range(h) for x in range(w)]
    for n in range(b):
        for (yi, xi) in pos:
            gate = 1.0 if lab[n, yi, xi] == ignore else max(0.0, 1.0 - s[n, :, yi, xi].max())
            ws = np.zeros(k)
            for (yj, xj) in pos:
                d_xy = ((yi - yj) ** 2 + (xi - xj) ** 2) / sigma_xy ** 2
                d_rgb = ((img[n, :, yi, xi] - img[n, :, yj, xj]) ** 2).sum() / sigma_rgb ** 2
                ws += np.exp(-0.5 * (d_xy + d_rgb)) * s[n, :, yj, xj]
            value += gate * (s[n, :, yi, xi] * ws).sum()
            grad[n, :, yi, xi] = gate * ws
    return -value / b, -2.0 * grad / b


def test_dense_energy_value_and_gradient_follow_the_gated_formula():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 4, 5, generator=g) * 255
    probs = torch.softmax(torch.randn(2, 3, 4, 5, generator=g), dim=1).requires_grad_(True)
    labels = torch.randint(0, 3, (2, 4, 5), generator=g)
    labels[0, 1, 2] = labels[1, 3, 0] = 255
    loss = dense_energy_loss(images, probs, labels, sigma_rgb=60.0, sigma_xy=3.0, scale_factor=1.0, weight=0.5)
    loss.backward()
    value, grad = _energy_reference(images, probs, labels, 60.0, 3.0)
    assert loss.item() == pytest.approx(0.5 * value, rel=1e-5)
    assert np.allclose(probs.grad.double().numpy(), 0.5 * grad, rtol=1e-4, atol=1e-7)


def test_dense_energy_prefers_predictions_that_follow_colour_edges():
    images = torch.zeros(1, 3, 8, 8)
    images[..., 4:] = 255.0  # left half black, right half white
    follow = torch.zeros(1, 2, 8, 8)
    follow[:, 0, :, :4], follow[:, 1, :, 4:] = 0.9, 0.9
    follow[:, 1, :, :4], follow[:, 0, :, 4:] = 0.1, 0.1
    across = follow.transpose(2, 3).contiguous()  # split top/bottom, cutting each colour region in two
    labels = torch.full((1, 8, 8), 255)
    e = lambda p: dense_energy_loss(images, p, labels, sigma_rgb=15.0, sigma_xy=4.0, scale_factor=1.0,  # noqa: E731
                                    weight=1.0).item()
    assert e(follow) < e(across)


# --------------------------------------------------------------------------- the model option
def test_seg_branch_is_off_before_its_start_iteration():
    model = build(2, seg_head=SEG).train()
    images, labels = toy_batch()
    early = model.losses(images, labels, iteration=2)
    assert early["seg"].item() == 0.0 and early["reg"].item() == 0.0
    parts = early["cls"] + early["cls_aux"] + 0.2 * early["ptc"] + 0.5 * early["ctc"]
    assert early["loss"].item() == pytest.approx(parts.item(), rel=1e-6)
    early["loss"].backward()
    assert all(p.grad is None for p in model.seg_head.parameters())  # not even computed
    model.zero_grad(set_to_none=True)
    late = model.losses(images, labels, iteration=3)
    assert late["seg"].item() > 0.0 and late["reg"].item() < 0.0
    expected = late["cls"] + late["cls_aux"] + 0.2 * late["ptc"] + 0.5 * late["ctc"] + 0.1 * late["seg"] \
        + 0.05 * late["reg"]
    assert late["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    late["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.seg_head.parameters())


def test_seg_branch_learns_its_pseudo_labels():
    model = build(2, seg_head={**SEG, "start_iter": 0}).train()
    images, labels = toy_batch()
    seg = train_steps(model, images, labels, lr=5e-4, steps=20, key="seg")
    assert sum(seg[-3:]) / 3 < 0.6 * sum(seg[:3]) / 3


def test_seg_pseudo_labels_follow_the_two_thresholds_without_par():
    model = build(1, seg_head={**SEG, "use_par": False})
    cam = torch.tensor([[[[0.1, 0.5, 0.9]]]])
    labels = model.seg_pseudo_labels(torch.zeros(1, 3, 1, 3), cam, torch.ones(1, 1))
    assert labels.tolist() == [[[0, 255, 1]]]  # <= 0.25 background, > 0.7 class, ignored in between


def test_seg_head_options_param_group_and_bad_keys():
    model = build(2, seg_head={**SEG, "lr_mult": 4.0})
    groups = {g["name"]: g for g in model.param_groups(1e-3)}
    assert groups["seg_head"]["lr"] == pytest.approx(4e-3)
    assert {id(p) for p in groups["seg_head"]["params"]} == {id(p) for p in model.seg_head.parameters()}
    assert model.seg_logits(torch.randn(1, 3, 32, 32)).shape == (1, 3, 4, 4)  # bg + 2 classes on the token grid
    with pytest.raises(WSSSError, match="seg_head: unknown keys"):
        build(2, seg_head={**SEG, "start": 5})
    with pytest.raises(WSSSError, match="no segmentation branch"):
        build(2).seg_logits(torch.randn(1, 3, 32, 32))


class _ConvSeg(nn.Module):
    """Stand-in classifier whose seg logits are a 1x1 conv of the image (full resolution)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def seg_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * x[:, :1].cumsum(-1)  # position-dependent, so the flip matters


def test_fused_seg_probs_softmax_over_background_and_labelled_classes():
    from stages.seg_cam import fused_seg_probs
    from wsss.cam.multiscale import normalise_images

    model = _ConvSeg()
    images = torch.randint(0, 256, (2, 6, 5, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = fused_seg_probs(model, images, [[2], [1, 3]], scales=[1.0], flip=True, amp=False)
        x = normalise_images(images)
        logits = torch.maximum(model.seg_logits(x), model.seg_logits(x.flip(-1)).flip(-1))
    assert out[0].shape == (1, 6, 5) and out[1].shape == (2, 6, 5)
    p0 = torch.softmax(logits[0, [0, 2]], dim=0)[1:]
    p1 = torch.softmax(logits[1, [0, 1, 3]], dim=0)[1:]
    assert np.allclose(out[0], p0.numpy(), atol=1e-6) and np.allclose(out[1], p1.numpy(), atol=1e-6)
    assert all(0.0 <= o.min() and o.max() <= 1.0 for o in out)
    # labels='predicted' (held-out evaluation): no image labels, softmax over all classes, keys = argmax winners
    with torch.no_grad():
        free = fused_seg_probs(model, images, None, scales=[1.0], flip=True, amp=False)
    for b, (keys, maps) in enumerate(free):
        probs = torch.softmax(logits[b], dim=0)
        winners = sorted(set(probs.argmax(dim=0).flatten().tolist()) - {0})
        assert keys == winners and np.allclose(maps, probs[winners].numpy(), atol=1e-6)


# --------------------------------------------------------------------------- stages
def _options(root: Path) -> dict:
    return {"data.root": str(root / "data"), "data.val_split": None,
            **{f"cls_model.{k}": v for k, v in TINY.items()},
            "cls_model.seg_head.start_iter": 2, "cls_model.seg_head.channels": 16,
            "train_cls.iters": 4, "train_cls.batch_size": 2, "train_cls.crop_size": 32,
            "train_cls.ckpt_interval": 2, "train_cls.num_workers": 0, "train_cls.log_interval": 1,
            "train_cls.warmup_iters": 1, "cam.scales": [1.0], "cam.num_workers": 0,
            "seg_cam.scales": [1.0], "seg_cam.num_workers": 0,
            "pseudo.input": "seg_cam", "pseudo.conf_fg": None, "pseudo.conf_bg": None,
            "pseudo.bg_threshold": 0.5, "pseudo.num_workers": 1}


def test_toco_seg_trains_resumes_and_feeds_make_pseudo(tmp_path, monkeypatch):
    """ToCo's augmentation + seg branch through the real stages: a killed train_cls resumes bit for bit;
    seg_cam writes CAM-format probabilities that make_pseudo turns into masks and that are evaluated."""
    from stages import make_pseudo, seg_cam, train_cls
    from wsss.cam.io import load_cam
    from wsss.config import load_config
    from wsss.data.build import build_dataset
    from wsss.data.palette import load_mask
    from wsss.data.synthetic import generate_synthetic

    generate_synthetic(tmp_path / "data", num_train=6, num_val=0, seed=0, size=40)

    def cfg(name):
        return load_config(ROOT / "configs/synthetic/toco_vit_tiny_seg.py", cfg_options=_options(tmp_path),
                           work_dir=tmp_path / name)

    train_cls.run(cfg("straight"))
    monkeypatch.setenv(train_cls.KILL_ENV, "3")  # killed after the branch switched on (iteration 2)
    monkeypatch.setattr(train_cls.os, "kill", lambda pid, sig: (_ for _ in ()).throw(_Killed()))
    with pytest.raises(_Killed):
        train_cls.run(cfg("resumed"))
    monkeypatch.delenv(train_cls.KILL_ENV)
    train_cls.run(cfg("resumed"), resume=True)
    a = torch.load(tmp_path / "straight/train_cls/final.pth", map_location="cpu")
    b = torch.load(tmp_path / "resumed/train_cls/final.pth", map_location="cpu")
    assert any(k.startswith("seg_head.") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = torch.load(tmp_path / "straight/train_cls/last.pth", map_location="cpu",
                         weights_only=False)["extra"]["history"]
    assert history[0]["seg"] == 0.0 and history[-1]["seg"] > 0.0

    c = cfg("straight")
    manifest = seg_cam.run(c)
    assert manifest["status"] == "complete" and "miou" in manifest["metrics"]
    ds = build_dataset(c.data, c.data.train_split)
    for i in ds.ids:
        keys, cams = load_cam(tmp_path / "straight/seg_cam/cams" / f"{i}.npz")
        assert list(keys) == list(ds.labels[i]) and cams.shape[1:] == ds.image(i).shape[:2]
        assert cams.min() >= 0.0 and cams.max() <= 1.0
    make_pseudo.run(c)
    for i in ds.ids:
        mask = load_mask(tmp_path / "straight/make_pseudo/masks" / f"{i}.png")
        assert set(np.unique(mask)) <= {0, 255, *ds.labels[i]}
    metrics = json.loads((tmp_path / "straight/make_pseudo/metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0
    assert seg_cam.run(c)["status"] == "complete"  # complete with a matching hash: a no-op
    held_out = load_config(ROOT / "configs/synthetic/toco_vit_tiny_seg.py", work_dir=tmp_path / "straight",
                           cfg_options={**_options(tmp_path), "seg_cam.labels": "predicted"})
    assert seg_cam.run(held_out, force=True)["status"] == "complete"
    for i in ds.ids:
        keys, cams = load_cam(tmp_path / "straight/seg_cam/cams" / f"{i}.npz")
        assert set(keys) <= set(range(1, ds.num_classes)) and cams.shape[0] == len(keys)


def test_seg_cam_refuses_a_model_without_branch():
    from stages import seg_cam
    from wsss.config import load_config

    cfg = load_config(ROOT / "configs/synthetic/toco_vit_tiny.py")
    with pytest.raises(WSSSError, match="cls_model.seg_head"):
        seg_cam.settings(cfg)


def test_missing_pretrained_weights_fail_with_one_line(monkeypatch):
    """Offline, timm cannot fetch ToCo's DeiT-B weights: one WSSSError line naming the backbone."""
    import timm

    from wsss.models.backbones import create_backbone

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your network")
        raise AssertionError("not reached")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WSSSError) as e:
        create_backbone("deit_base_patch16_224", pretrained=True)
    msg = str(e.value)
    assert "\n" not in msg and "deit_base_patch16_224" in msg and "weights=" in msg
