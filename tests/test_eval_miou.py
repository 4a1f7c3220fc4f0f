"""Scoring PNG mask folders: both mIoUs and the ignored share, by hand; the eval_miou CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, subprocess_env
from wsss.data.palette import IGNORE_INDEX, save_mask
from wsss.errors import InputError
from wsss.eval.mask_eval import MaskScorer, evaluate_mask_dirs, infer_num_classes

I = IGNORE_INDEX
GT = np.array([[0, 0, 1], [1, 2, I]], np.uint8)
PRED = np.array([[0, I, 1], [2, 2, 1]], np.uint8)
# Ignore excluded: the 4 pixels decided and labelled are (0->0), (1->1), (1->2), (2->2):
#   IoU bg 1/1, class 1 1/2 (one missed), class 2 1/2 (one false positive) -> mIoU 2/3.
# Ignore counted wrong: the undecided background pixel is a miss of class 0 -> IoU bg 1/2 -> mIoU 1/2.
# Ignored share: 1 of 6 pixels; of the 5 labelled pixels: 1/5.


def test_mask_scorer_matches_hand_computed_values():
    s = MaskScorer(3)
    s.update(PRED, GT)
    out = s.summary(["background", "a", "b"])
    assert out["miou"] == pytest.approx(2 / 3, abs=1e-6)
    assert out["miou_ignore_as_wrong"] == pytest.approx(0.5, abs=1e-6)
    assert out["ignored_share"] == pytest.approx(1 / 6, abs=1e-6)
    assert out["ignored_share_of_labelled"] == pytest.approx(1 / 5, abs=1e-6)
    assert out["per_class"]["background"]["iou"] == pytest.approx(1.0)
    assert out["per_class_ignore_as_wrong"]["background"]["iou"] == pytest.approx(0.5)
    assert out["per_class"]["b"]["iou"] == pytest.approx(0.5)
    assert out["images"] == 1


def test_mask_scorer_accumulates_over_images_not_per_image_mean():
    s = MaskScorer(2)
    s.update(np.array([[1, 1]], np.uint8), np.array([[1, 1]], np.uint8))         # class 1: 2/2
    s.update(np.array([[1, 0, 0, 0]], np.uint8), np.array([[1, 1, 1, 1]], np.uint8))  # class 1: 1/4
    iou1 = s.summary()["per_class"]["1"]["iou"]
    assert iou1 == pytest.approx(3 / 6)  # pooled pixels: 3 TP of 6 gt, no FP


def _folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    save_mask(pred / "a.png", PRED)
    save_mask(gt / "a.png", GT)
    save_mask(pred / "b.png", np.zeros((2, 2), np.uint8))
    save_mask(gt / "b.png", np.zeros((2, 2), np.uint8))
    return pred, gt


def test_evaluate_mask_dirs_and_class_inference(tmp_path):
    pred, gt = _folders(tmp_path)
    assert infer_num_classes([pred, gt]) == 3
    out = evaluate_mask_dirs(pred, gt, 3, progress=False)
    # b adds 4 correct background pixels: bg IoU 5/5 excluded, 5/6 counted wrong.
    assert out["per_class"]["0"]["iou"] == pytest.approx(1.0)
    assert out["per_class_ignore_as_wrong"]["0"]["iou"] == pytest.approx(5 / 6)
    assert out["ignored_share"] == pytest.approx(1 / 10)
    assert out["images"] == 2


def test_missing_ground_truth_names_the_file(tmp_path):
    pred, gt = _folders(tmp_path)
    (gt / "b.png").unlink()
    with pytest.raises(InputError, match=r"b\.png: mask file not found"):
        evaluate_mask_dirs(pred, gt, 3, progress=False)


def _eval_tool():
    spec = importlib.util.spec_from_file_location("eval_miou_tool", REPO / "tools" / "eval_miou.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_eval_miou_cli(tmp_path, capsys):
    main = _eval_tool()
    pred, gt = _folders(tmp_path)
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\ndog\n")
    out_json = tmp_path / "m.json"
    assert main([str(pred), str(gt), "--classes", str(classes), "--out", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "ignored pixels excluded" in out and "dog" in out
    # a + b: bg 5/5 -> 100, cat 1/2, dog 1/2 -> 66.67 excluded; bg 5/6 counted wrong -> 61.11; 1 of 10 ignored.
    assert "mIoU 66.67 (ignore excluded), 61.11 (ignore counted wrong), 10.00% of pixels ignored" in out
    m = json.loads(out_json.read_text())
    assert m["miou"] == pytest.approx(2 / 3, abs=1e-6)

    assert main([str(pred), str(gt), "--ignore-as-wrong"]) == 0  # class count inferred: 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ignored pixels counted wrong"
    assert lines[-2].startswith("mIoU") and "61.11" in lines[-2]  # the table's mIoU row

    (gt / "a.png").unlink()
    assert main([str(pred), str(gt), "--num-classes", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and err.endswith("a.png: mask file not found")


def test_eval_miou_tool_runs_as_a_script(tmp_path):
    pred, gt = _folders(tmp_path)
    r = subprocess.run([sys.executable, str(REPO / "tools" / "eval_miou.py"), str(pred), str(gt), "--num-classes",
                        "3"], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "mIoU 66.67 (ignore excluded)" in r.stdout
