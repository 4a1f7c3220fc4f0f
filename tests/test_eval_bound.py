"""The bound rule: a ratio only to a converged fully supervised bound; the no-model baselines by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from wsss.eval.baselines import BASELINE_RULES, baseline_mask, label_baselines
from wsss.eval.bound import (NOT_CONVERGED, bound_ratio, bound_verdict, curve_converged, curve_window,
                             format_ratio)


def test_ratio_to_a_converged_bound_is_the_quotient() -> None:
    ious = {"background": 0.95, "disc": 0.80, "star": 0.71}
    assert bound_ratio(0.6, 0.82, ious) == pytest.approx(0.6 / 0.82)
    assert format_ratio(bound_ratio(0.6, 0.8, ious)) == "75.0 % of fully supervised"
    assert bound_verdict(0.6, 0.82, ious).converged


def test_a_class_at_iou_zero_means_not_converged() -> None:
    # the case: 4 of 8 classes at 0, the network on pseudo masks 48.8 vs a "bound" of 37.0
    ious = [0.9, 0.0, 0.6, 0.0, 0.5]
    assert bound_ratio(0.30, 0.37, ious) == NOT_CONVERGED
    v = bound_verdict(0.30, 0.37, {"bg": 0.9, "cross": 0.0, "star": 0.6})
    assert not v.converged and "cross" in v.reason and "star" not in v.reason


def test_classes_absent_from_ground_truth_are_not_zero() -> None:
    # None / NaN: no ground truth and no prediction for that class on this split; not a failure of the bound
    assert bound_ratio(0.5, 0.8, [0.9, None, float("nan"), 0.7]) == pytest.approx(0.625)


def test_beaten_bound_is_not_a_bound() -> None:
    assert bound_ratio(0.488, 0.370, [0.9, 0.4]) == NOT_CONVERGED
    assert "beats" in bound_verdict(0.488, 0.370, [0.9, 0.4]).reason
    assert bound_ratio(0.5, 0.5, [0.9, 0.4]) == pytest.approx(1.0)  # equal is allowed


def test_explicit_curve_verdict_and_missing_bound() -> None:
    assert bound_ratio(0.5, 0.8, [0.9], converged=False) == NOT_CONVERGED
    assert bound_ratio(0.5, 0.8, [0.9], converged=True) == pytest.approx(0.625)
    assert bound_ratio(0.5, None) == NOT_CONVERGED and bound_ratio(0.5, 0.0) == NOT_CONVERGED
    assert bound_ratio(None, 0.8) is None and format_ratio(None) == "-"
    assert format_ratio(NOT_CONVERGED) == NOT_CONVERGED


def test_curve_flat_at_the_end() -> None:
    assert curve_converged([0.40, 0.70, 0.805, 0.812]) is True
    assert curve_converged([0.40, 0.60, 0.70, 0.75]) is False      # still rising by 5 points
    assert curve_converged([0.40, 0.70, 0.80, 0.78]) is False      # falling by 2
    assert curve_converged([0.40, 0.70, 0.80, 0.81]) is True       # exactly 1 point
    assert curve_converged([0.40, 0.70, 0.80, 0.78], tol=0.03) is True
    assert curve_converged([0.5]) is None and curve_converged([]) is None
    assert curve_converged([0.5, None, math.nan, 0.505]) is True   # missing points skipped


def test_curve_of_eight_points_compares_averaged_quarters() -> None:
    assert [curve_window(n) for n in (2, 3, 4, 7, 8, 12)] == [1, 1, 1, 1, 2, 3]
    # The last point alone rises 3.6 over the one before, but the last quarter's mean (0.871) is 0.6 above the
    # mean of the quarter before (0.865): a noisy flat end is flat.
    noisy_flat = [0.70, 0.78, 0.82, 0.84, 0.86, 0.87, 0.853, 0.889]
    assert curve_converged(noisy_flat) is True
    assert curve_converged(noisy_flat[-2:]) is False               # what the two-point rule would say
    # Steady rise of 1 point per eighth: (0.88 + 0.89) / 2 - (0.86 + 0.87) / 2 = 2 points.
    assert curve_converged([0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89]) is False
    assert curve_converged([0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89], tol=0.02) is True


def test_baseline_masks_by_hand() -> None:
    bg, whole, ellipse = (baseline_mask(r, (4, 6), [3, 2]) for r in BASELINE_RULES)
    assert (bg == 0).all() and (whole == 2).all()  # lowest-index label
    # centre pixel inside, corners outside the ellipse (dy/2)^2 + (dx/3)^2 < 0.5
    assert ellipse[2, 3] == 2 and ellipse[0, 0] == 0 and ellipse[3, 5] == 0
    yy, xx = np.mgrid[0:4, 0:6]
    want = np.where(((yy - 2) / 2) ** 2 + ((xx - 3) / 3) ** 2 < 0.5, 2, 0)
    assert (ellipse == want).all()
    assert (baseline_mask(BASELINE_RULES[1], (2, 2), []) == 0).all()  # unlabelled image: background
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_mask("nope", (2, 2), [1])


def test_label_baselines_miou_by_hand() -> None:
    # one 4x4 image, class 1 fills the left half: all-background IoU bg = 8/16, class 1 = 0 -> mIoU 0.25;
    # whole image as class 1: bg 0, class 1 = 8/16 -> 0.25
    gt = np.zeros((4, 4), np.uint8)
    gt[:, :2] = 1
    ds = SimpleNamespace(num_classes=2, ids=["a"], labels={"a": [1]}, mask=lambda i: gt)
    cms = label_baselines(ds)
    assert cms[BASELINE_RULES[0]].miou() == pytest.approx(0.25)
    assert cms[BASELINE_RULES[1]].miou() == pytest.approx(0.25)
    ell = baseline_mask(BASELINE_RULES[2], (4, 4), [1])
    tp1 = int(((ell == 1) & (gt == 1)).sum()); u1 = int(((ell == 1) | (gt == 1)).sum())
    tp0 = int(((ell == 0) & (gt == 0)).sum()); u0 = int(((ell == 0) | (gt == 0)).sum())
    assert cms[BASELINE_RULES[2]].miou() == pytest.approx((tp1 / u1 + tp0 / u0) / 2)


def test_pipeline_summary_prints_the_verdict_not_a_ratio() -> None:
    from wsss.pipeline import quality_of

    assert quality_of({"metrics": {"miou": 0.368, "ratio_to_full": 0.5614}}) == "mIoU 36.8, 56.1 % of full"
    assert quality_of({"metrics": {"miou": 0.488, "ratio_to_full": NOT_CONVERGED}}) == \
        "mIoU 48.8, bound not converged"
    assert "%" not in quality_of({"metrics": {"miou": 0.488, "ratio_to_full": NOT_CONVERGED}})


def test_mean_std_and_paired_gain_by_hand() -> None:
    from wsss.eval.seeds import mean_std, paired_gain

    s = mean_std([0.50, 0.52, 0.54, None])
    assert s.n == 3 and s.mean == pytest.approx(0.52) and s.std == pytest.approx(0.02)  # sample std, ddof 1
    assert s.format() == "52.0 ± 2.0" and mean_std([0.5]).format() == "50.0" and mean_std([]).format() == "-"
    # seeds 0.40/0.45/0.50 -> 0.44/0.48/0.55: gains 4/3/5 points, mean 4, std 1 -> shown
    g = paired_gain([0.44, 0.48, 0.55], [0.40, 0.45, 0.50])
    assert g.stats.mean == pytest.approx(0.04) and g.stats.std == pytest.approx(0.01) and g.shown is True
    assert g.format() == "+4.0 ± 1.0"
    # gains +2, -1, +2: mean 1, std sqrt(3) -> within twice the spread
    g = paired_gain([0.42, 0.44, 0.52], [0.40, 0.45, 0.50])
    assert g.shown is False and g.format().startswith("not shown (+1.0 ± 1.7")
    assert paired_gain([0.5], [0.4]).shown is None and "1 seed" in paired_gain([0.5], [0.4]).format()
    assert paired_gain([0.5, None], [0.4, 0.3]).stats.n == 1
