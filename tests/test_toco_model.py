"""The ToCo ViT classifier (wsss.models.toco) built through its config: CAM shapes, losses, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import wsss.models.toco  # noqa: F401  (registers type='toco')
from wsss.config import load_config
from wsss.models.registry import build_classifier

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: tiny tensors gain nothing from more, and a busy machine slows them down a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ROOT = Path(__file__).resolve().parents[1]
TINY = dict(pretrained=False, img_size=32, backbone_kwargs=dict(patch_size=8, embed_dim=32, depth=4, num_heads=2),
            aux_layer=-2, num_local_crops=3, local_crop_size=16, proj_dim=32, proj_hidden_dim=32, proj_bottleneck_dim=16,
            pseudo_scales=(1.0,), par=dict(dilations=(1, 2), num_iter=3))


def build(num_fg: int = 3, **overrides):
    """The model of the VOC ToCo config, shrunk to a tiny ViT through --cfg-options style overrides
    (segmentation branch off unless ``seg_head`` is given: it merges into the VOC config's branch)."""
    options = {f"cls_model.{k}": v for k, v in {**TINY, **overrides}.items()}
    cfg = load_config(ROOT / "configs/voc/toco_vit_base.py", cfg_options=options)
    if "seg_head" not in overrides:
        cfg.cls_model.seg_head = None
    torch.manual_seed(0)
    return build_classifier(cfg.cls_model, num_fg)


def toy_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two-class toy images: a bright square (class 1) and/or a dark bar (class 2) on noise."""
    g = torch.Generator().manual_seed(0)
    images = 0.3 * torch.randn(4, 3, 32, 32, generator=g)
    images[0, :, 4:16, 4:16] += 2.0
    images[1, :, 20:28, 2:30] -= 2.0
    images[2, :, 8:24, 8:20] += 2.0
    images[2, :, 26:30, 0:32] -= 2.0
    images[3, :, 14:26, 16:28] += 2.0
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    return images, labels


def test_config_builds_toco_with_paper_defaults():
    cfg = load_config(ROOT / "configs/voc/toco_vit_base.py")
    m = cfg.cls_model
    assert m.type == "toco" and m.backbone == "deit_base_patch16_224" and m.aux_layer == -3  # ToCo's default
    assert m.pretrained is True and cfg.train_cls.augmentation == "toco"
    assert (m.seg_head.start_iter, m.seg_head.weight, m.seg_head.reg_weight) == (2000, 0.1, 0.05)
    assert tuple(m.bg_thresholds) == (0.25, 0.7) and m.ptc_weight == 0.2 and m.ctc_weight == 0.5
    model = build()
    assert type(model).__name__ == "ToCoViT" and model.aux_index == 2  # -2 of 4 blocks


def test_cam_shapes_and_sign():
    model = build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        cam = model.cam(x)
        final, aux = model.cams(x)
        odd = model.cam(torch.randn(1, 3, 40, 24))  # not the training size: dynamic image size
    assert cam.shape == final.shape == aux.shape == (2, 3, 4, 4)
    assert (cam >= 0).all() and (aux >= 0).all()
    assert torch.equal(cam, final)  # cam_source='final'
    assert odd.shape == (1, 3, 5, 3)


def test_cam_source_aux_and_mean():
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        final, aux = build().eval().cams(x)
        aux_cam = build(cam_source="aux").eval().cam(x)
        mean_cam = build(cam_source="mean").eval().cam(x)
    assert torch.allclose(aux_cam, aux)
    assert mean_cam.shape == final.shape and float(mean_cam.max()) <= 1.0 + 1e-6


def test_forward_logits_are_classifier_on_max_pooled_final_tokens():
    model = build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        patches = model.encode(x)["patches"]  # [B, D, h, w]
        pooled = patches.amax(dim=(2, 3))  # global max pooling per channel (ToCo's gmp)
        assert torch.allclose(model(x), pooled @ model.classifier.weight[:, :, 0, 0].T, atol=1e-5)


def test_losses_keys_and_warmup_schedule():
    model = build(2, ptc_start_iter=5, ctc_start_iter=5).train()
    images, labels = toy_batch()
    early = model.losses(images, labels, iteration=0)
    assert set(early) == {"loss", "cls", "cls_aux", "ptc", "ctc"}
    assert early["ptc"].item() == 0.0 and early["ctc"].item() == 0.0
    assert early["loss"].item() == pytest.approx(early["cls"].item() + early["cls_aux"].item(), rel=1e-6)
    late = model.losses(images, labels, iteration=5)
    assert all(torch.isfinite(v) for v in late.values())
    expected = late["cls"] + late["cls_aux"] + 0.2 * late["ptc"] + 0.5 * late["ctc"]
    assert late["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert late["ptc"].item() > 0.0


def test_param_groups_heads_at_10x_and_teacher_excluded():
    model = build()
    groups = model.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-2)]
    ids = {id(p) for g in groups for p in g["params"]}
    assert all(id(p) not in ids for p in model.proj_head_teacher.parameters())
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert ids == trainable
    keys = list(model.state_dict())
    assert any(k.startswith("proj_head_teacher.") for k in keys)
    assert not any(k.startswith("encoder.") for k in keys)  # the ViT is stored once, under backbone.model.


def test_ema_teacher_follows_student():
    model = build(2, momentum=0.9).train()
    images, labels = toy_batch()
    with torch.no_grad():  # make the student differ from the teacher it was copied from
        for p in model.proj_head.parameters():
            p.add_(0.1)
    teacher0 = [p.clone() for p in model.proj_head_teacher.parameters()]
    student0 = [p.clone() for p in model.proj_head.parameters()]
    model.losses(images, labels, iteration=0)
    for t, t0, s0 in zip(model.proj_head_teacher.parameters(), teacher0, student0):
        assert torch.allclose(t, 0.9 * t0 + 0.1 * s0, atol=1e-7)
        assert not t.requires_grad


def train_steps(model, images, labels, lr: float, steps: int, key: str) -> list[float]:
    """AdamW steps on one batch (iteration index = step); returns ``losses()[key]`` of every step."""
    opt = torch.optim.AdamW(model.param_groups(lr), lr=lr)
    values = []
    for it in range(steps):
        out = model.losses(images, labels, it)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        values.append(out[key].item())
    return values


def test_few_training_steps_decrease_total_loss():
    model = build(2).train()
    images, labels = toy_batch()
    totals = train_steps(model, images, labels, lr=2e-4, steps=12, key="loss")
    assert all(torch.isfinite(torch.tensor(totals)))
    assert sum(totals[-3:]) / 3 < 0.8 * sum(totals[:3]) / 3


class _Killed(Exception):
    pass


def test_train_cls_with_toco_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Random local crops, the EMA teacher and the online pseudo labels all resume exactly from last.pth."""
    from stages import train_cls
    from wsss.data.synthetic import generate_synthetic

    generate_synthetic(tmp_path / "data", num_train=6, num_val=0, seed=0, size=40)
    options = {"data.root": str(tmp_path / "data"), "data.val_split": None,
               **{f"cls_model.{k}": v for k, v in TINY.items()},
               "train_cls.iters": 4, "train_cls.batch_size": 2, "train_cls.crop_size": 32,
               "train_cls.ckpt_interval": 2, "train_cls.num_workers": 0, "train_cls.log_interval": 1,
               "train_cls.warmup_iters": 1}

    def cfg(name):
        return load_config(ROOT / "configs/synthetic/toco_vit_tiny.py", cfg_options=options,
                           work_dir=tmp_path / name)

    train_cls.run(cfg("straight"))
    monkeypatch.setenv(train_cls.KILL_ENV, "2")
    monkeypatch.setattr(train_cls.os, "kill", lambda pid, sig: (_ for _ in ()).throw(_Killed()))
    with pytest.raises(_Killed):
        train_cls.run(cfg("resumed"))
    monkeypatch.delenv(train_cls.KILL_ENV)
    train_cls.run(cfg("resumed"), resume=True)

    a = torch.load(tmp_path / "straight/train_cls/final.pth", map_location="cpu")
    b = torch.load(tmp_path / "resumed/train_cls/final.pth", map_location="cpu")
    assert a.keys() == b.keys() and any(k.startswith("proj_head_teacher.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = torch.load(tmp_path / "straight/train_cls/last.pth", map_location="cpu",
                         weights_only=False)["extra"]["history"]
    assert {"cls", "cls_aux", "ptc", "ctc"} <= set(history[-1])  # every loss logged separately
