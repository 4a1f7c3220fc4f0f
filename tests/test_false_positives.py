"""False-positive split of a class map (near its object / on its context / other) on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.eval.false_positives import false_positive_counts, precision_ceiling


def test_counts_split_false_positives_by_distance_and_context() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[2:4, 2:4] = 1  # class 1's object: 4 pixels
    gt[8, 8] = 2
    gt[0, 9] = 255
    pred = np.zeros_like(gt)
    pred[2:4, 2:5] = 1  # 4 tp + 2 pixels at column 4, 1 px from the object: near
    pred[9, 0:3] = 1  # 3 pixels far from the object (distance >= 5.8)
    pred[8, 8] = 1  # on class 2's object, far from class 1's: context in a class-1 context image, else other
    pred[0, 9] = 1  # ignore pixel: not counted
    ctx = false_positive_counts(pred, gt, 3, near_px=1.5, context_classes=[1])
    assert ctx[1].tolist() == [4, 2, 4, 0] and ctx[0].tolist() == [0, 0, 0, 0] and ctx[2].sum() == 0
    plain = false_positive_counts(pred, gt, 3, near_px=1.5)
    assert plain[1].tolist() == [4, 2, 0, 4]
    # a class predicted where it has no object: every false positive is far
    assert false_positive_counts(np.full((4, 4), 2, np.uint8), np.zeros((4, 4), np.uint8), 3, 2.0, [2])[2].tolist() \
        == [0, 0, 16, 0]


def test_precision_ceiling_removes_only_the_context_false_positives() -> None:
    counts = np.array([[0, 0, 0, 0], [4, 2, 4, 0], [6, 0, 0, 2]])
    r = precision_ceiling(counts, [1, 2])
    assert r["precision"] == pytest.approx((4 / 10 + 6 / 8) / 2)
    assert r["precision_without_context"] == pytest.approx((4 / 6 + 6 / 8) / 2)
    assert (r["share_near"], r["share_context"], r["share_other"]) == pytest.approx((2 / 8, 4 / 8, 2 / 8))
    assert (r["fp_near"], r["fp_context"], r["fp_other"]) == (2.0, 4.0, 2.0)
