"""Seed evaluation: CAM -> labels, one-pass threshold sweep == per-threshold confusion matrices, hand-computed
mIoU, the eval_cam CLI, average precision, and the visualize `cams` subcommand."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wsss.cam.io import save_cam
from wsss.data.base import SegDataset
from wsss.data.palette import save_mask
from wsss.eval.cam_eval import (average_precision, cam_to_labels, default_thresholds, evaluate_cam_dir,
                                mean_average_precision)
from wsss.eval.confusion import ConfusionMatrix

from conftest import REPO, subprocess_env

# Two hand-made images, classes: 0 background, 1 'a', 2 'b'
GT1 = np.array([[0, 1, 1], [0, 1, 255]], np.uint8)
KEYS1 = [1]
CAM1 = np.array([[[0.10, 0.90, 0.50], [0.20, 0.05, 0.70]]], np.float32)
GT2 = np.array([[2, 2, 0], [1, 0, 0]], np.uint8)
KEYS2 = [1, 2]
CAM2 = np.array([[[0.00, 0.00, 0.00], [0.60, 0.00, 0.10]],
                 [[0.80, 0.40, 0.30], [0.50, 0.10, 0.00]]], np.float32)


@pytest.fixture()
def handmade(tmp_path: Path) -> tuple[Path, SegDataset]:
    img_dir, mask_dir, cam_dir = tmp_path / "img", tmp_path / "mask", tmp_path / "cams"
    img_dir.mkdir()
    for name, gt, keys, cam in (("i1", GT1, KEYS1, CAM1), ("i2", GT2, KEYS2, CAM2)):
        (img_dir / f"{name}.png").write_bytes(b"")  # images are not read by the evaluation
        save_mask(mask_dir / f"{name}.png", gt)
        save_cam(cam_dir / f"{name}.npz", keys, cam)
    ds = SegDataset(name="hand", split="train", ids=["i1", "i2"], class_names=["background", "a", "b"],
                    image_dir=img_dir, labels={"i1": [1], "i2": [1, 2]}, mask_dir=mask_dir)
    return cam_dir, ds


def test_cam_to_labels_is_argmax_with_background_threshold_ties_to_background():
    assert cam_to_labels(KEYS1, CAM1, 0.15).tolist() == [[0, 1, 1], [1, 0, 1]]
    assert cam_to_labels(KEYS2, CAM2, 0.15).tolist() == [[2, 2, 2], [1, 0, 0]]
    assert cam_to_labels(KEYS2, CAM2, 0.5).tolist() == [[2, 0, 0], [1, 0, 0]]  # 0.5 == threshold -> bg
    assert cam_to_labels(np.zeros(0, np.int64), np.zeros((0, 2, 2), np.float32), 0.1).tolist() == [[0, 0], [0, 0]]


def test_hand_computed_miou_at_015(handmade):
    cam_dir, ds = handmade
    # float16 storage: all values above are exact enough that no pixel sits on a threshold at 0.15
    # i1: pred [[0,1,1],[1,0,1]] vs gt [[0,1,1],[0,1,-]]   i2: pred [[2,2,2],[1,0,0]] vs gt [[2,2,0],[1,0,0]]
    # bg: tp 1+2=3, gt 2+3=5, pred 2+2=4 -> 3/(5+4-3) = 1/2
    # a : tp 2+1=3, gt 3+1=4, pred 3+1=4 -> 3/5
    # b : tp 2,     gt 2,     pred 3     -> 2/3
    expect = (1 / 2 + 3 / 5 + 2 / 3) / 3
    r = evaluate_cam_dir(cam_dir, ds, bg_threshold=0.15)
    assert r["miou"] == pytest.approx(expect, abs=1e-6)
    pc = r["summary"]["per_class"]
    assert pc["a"]["precision"] == pytest.approx(3 / 4) and pc["a"]["recall"] == pytest.approx(3 / 4)
    assert pc["b"]["precision"] == pytest.approx(2 / 3) and pc["b"]["recall"] == pytest.approx(1.0)
    assert r["num_images"] == 2 and r["bg_threshold"] == 0.15


def test_sweep_equals_one_confusion_matrix_per_threshold_and_oracle_is_the_best(handmade):
    cam_dir, ds = handmade
    from wsss.cam.io import load_cam

    r = evaluate_cam_dir(cam_dir, ds, bg_threshold=0.15)
    brute = {}
    for t in default_thresholds():
        cm = ConfusionMatrix(3)
        for i in ds.ids:
            keys, cams = load_cam(cam_dir / f"{i}.npz")
            cm.update(cam_to_labels(keys, cams, t), ds.mask(i))
        brute[t] = cm.miou()
    assert set(r["sweep"]) == {f"{t:.2f}" for t in brute}
    for t, m in brute.items():
        assert r["sweep"][f"{t:.2f}"] == pytest.approx(m, abs=1e-6), t
    best = max(brute.values())
    assert r["oracle"]["miou"] == pytest.approx(best, abs=1e-6)
    assert brute[r["oracle"]["threshold"]] == pytest.approx(best)


def test_threshold_off_the_grid_is_added_and_bad_inputs_name_the_file(handmade):
    cam_dir, ds = handmade
    r = evaluate_cam_dir(cam_dir, ds, bg_threshold=0.33)
    assert "0.33" in r["sweep"] and r["bg_threshold"] == 0.33
    save_cam(cam_dir / "i2.npz", KEYS2, np.zeros((2, 5, 5), np.float32))
    from wsss.errors import InputError
    with pytest.raises(InputError, match="i2.npz"):
        evaluate_cam_dir(cam_dir, ds)
    (cam_dir / "i2.npz").unlink()
    with pytest.raises(InputError, match="i2.npz"):
        evaluate_cam_dir(cam_dir, ds)


def test_average_precision_by_hand():
    # ranks: 0.9 (+) 0.8 (-) 0.7 (+) 0.6 (-): precision at the positives 1/1 and 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    # ties count pessimistically: a tied negative ranks before the positive
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert np.isnan(average_precision([0.3, 0.2], [0, 0]))
    m, ap = mean_average_precision(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3]]),
                                   np.array([[1, 0], [0, 1], [0, 0]]))
    assert ap.tolist() == [1.0, 1.0] and m == 1.0


def _voc_layout(root: Path, handmade_ds: SegDataset, cam_dir: Path) -> None:
    """Write the hand-made case as a VOC-layout dataset (images too) for the CLI tools."""
    import cv2

    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for i in handmade_ds.ids:
        gt = handmade_ds.mask(i)
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.png"), np.full((*gt.shape, 3), 128, np.uint8))
        save_mask(root / "SegmentationClass" / f"{i}.png", gt)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("i1\ni2\n")
    (root / "classes.txt").write_text("background\na\nb\n")
    (root / "labels.json").write_text(json.dumps({"i1": [1], "i2": [1, 2]}))


def _tool(name: str):
    """A tools/ script's main(), run in this process (tools/ is not a package)."""
    return runpy.run_path(str(REPO / "tools" / f"{name}.py"), run_name=f"tools_{name}")["main"]


def test_eval_cam_cli_and_visualize_cams(handmade, tmp_path, capsys):
    cam_dir, ds = handmade
    root = tmp_path / "voc"
    _voc_layout(root, ds, cam_dir)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(f"data = dict(type='voc', root='{root}', train_split='train', cam_split='train')\n"
                   f"cam = dict(bg_threshold=0.15)\nwork_dir = '{tmp_path / 'work'}'\n")
    assert _tool("eval_cam")([str(cfg), "--cam-dir", str(cam_dir)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((cam_dir.parent / "metrics.json").read_text())
    assert metrics["miou"] == pytest.approx((1 / 2 + 3 / 5 + 2 / 3) / 3, abs=1e-6)
    assert "oracle" in out and "mIoU" in out
    vis = tmp_path / "vis"
    assert _tool("visualize")(["cams", str(cfg), "--cam-dir", str(cam_dir), "--out", str(vis)]) == 0
    import cv2
    grid = cv2.imread(str(vis / "grid.png"))
    assert grid is not None and grid.shape[0] > 2 * 100  # two rows of 160-pixel tiles
    assert (vis / "i1.png").is_file() and (vis / "i2.png").is_file()
    capsys.readouterr()
    assert _tool("eval_cam")([str(cfg), "--stage", "nothing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "nothing" in err
    # the shipped CLI really runs as a script
    out = subprocess.run([sys.executable, str(REPO / "tools" / "eval_cam.py"), "--help"], capture_output=True,
                         text=True, env=subprocess_env(), timeout=120)
    assert out.returncode == 0 and "--cam-dir" in out.stdout
