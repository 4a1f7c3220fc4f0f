"""Confusion-matrix metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.eval.confusion import ConfusionMatrix, format_table


def test_miou_matches_hand_computation() -> None:
    gt = np.array([[0, 0, 1, 1],
                   [0, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 2, 0, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    # class 0: tp 2 (gt 0 pred 0 twice), gt 3, pred 3 -> 2 / (3 + 3 - 2) = 0.5
    # class 1: tp 2, gt 2, pred 3 (the 255 pixel is ignored) -> 2 / 3
    # class 2: tp 1, gt 2, pred 1 -> 1 / 2
    assert cm.iou() == pytest.approx([0.5, 2 / 3, 0.5])
    assert cm.miou() == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert cm.precision() == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert cm.recall() == pytest.approx([2 / 3, 1.0, 0.5])
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)


def test_predicted_ignore_counts_as_a_miss() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 255, 1, 1]), np.array([0, 0, 1, 1]))
    # class 0: tp 1, gt 2 (one predicted 255), pred 1 -> 1/2; class 1: 2/2
    assert cm.iou() == pytest.approx([0.5, 1.0])
    assert cm.recall() == pytest.approx([0.5, 1.0])


def test_absent_class_is_nan_and_excluded_from_mean() -> None:
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    iou = cm.iou()
    assert np.isnan(iou[2]) and np.isnan(iou[3])
    assert cm.miou() == pytest.approx((0.5 + 0.5) / 2)
    table = format_table(cm.summary(["bg", "a", "b", "c"]))
    assert "mIoU" in table and "50.00" in table


def test_accumulation_over_images_is_not_a_mean_of_images() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1]))  # perfect big image
    cm.update(np.array([0]), np.array([1]))  # one wrong pixel
    assert cm.iou()[1] == pytest.approx(4 / 5)


def test_bad_ground_truth_label_is_rejected() -> None:
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="ground-truth label 5"):
        cm.update(np.array([0]), np.array([5]))


def test_gt_class_mean_differs_from_gt_or_prediction_mean_when_an_absent_class_is_predicted() -> None:
    """GT has classes 0, 1, 2; the prediction also paints class 3 (absent from GT); class 4 appears nowhere.
    By hand: IoU0 = 3 / (4 + 4 - 3) = 3/5, IoU1 = 2/3, IoU2 = 2/3, IoU3 = 0 / (0 + 2 - 0) = 0, IoU4 undefined.
    GT or prediction (wsss): (3/5 + 2/3 + 2/3 + 0) / 4; GT only (ToCo, CLIP-ES): (3/5 + 2/3 + 2/3) / 3."""
    from wsss.eval.confusion import format_table

    gt = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 0, 3, 1, 1, 0, 2, 2, 3])
    cm = ConfusionMatrix(5)
    cm.update(pred, gt)
    assert cm.miou() == pytest.approx((3 / 5 + 2 / 3 + 2 / 3 + 0) / 4, abs=1e-12)
    assert cm.miou_gt_classes() == pytest.approx((3 / 5 + 2 / 3 + 2 / 3) / 3, abs=1e-12)
    s = cm.summary()
    assert s["miou"] == pytest.approx(0.483333, abs=1e-6) and s["miou_gt_classes"] == pytest.approx(0.644444, abs=1e-6)
    table = format_table(s)
    assert "48.33  (classes in GT or prediction)" in table and "mIoU GT classes   64.44" in table
    # when no absent class is predicted the two agree, and the table has one mIoU line
    same = ConfusionMatrix(5)
    same.update(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 2]))
    assert same.miou() == pytest.approx(same.miou_gt_classes(), abs=1e-12)
    assert "GT classes" not in format_table(same.summary())
