"""The fully supervised bound: when a "N % of fully supervised" ratio may be printed, and when it may not.

Why: a WSSS result is quoted as a share of the same network trained on ground truth. That share means something
only when the bound itself is trained to convergence. A bound that a network on pseudo masks beats, or that
scores IoU 0 on a class it has ground truth for, is an under-trained network, not a ceiling: dividing by it
gives figures like "128 % of fully supervised". Every report (pipeline summary, eval_seg, benchmark tables)
goes through :func:`bound_ratio`, so the rule lives in one place.

Convergence from the bound's own curve (val mIoU at evenly spaced points of its schedule, written by train_seg
with ``train_seg.eval_points``): :func:`curve_converged` says the curve is flat at the end when the mean of its
last quarter of points differs from the mean of the quarter before by at most ``tol`` (1 mIoU point by
default). With 4 points a quarter is one point (the last two points are compared); with 8 it is two, which
halves the variance of the difference: a single evaluation on a small val split moves by 1-2 points from one
checkpoint to the next, so a one-point comparison calls a converged curve rising (or a rising one flat) by chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

__all__ = ["NOT_CONVERGED", "BoundVerdict", "bound_verdict", "bound_ratio", "curve_converged", "curve_window",
           "format_ratio"]

#: What a report prints instead of a ratio to an unconverged bound.
NOT_CONVERGED = "bound not converged"

#: Default flatness tolerance of the bound's curve: 1 mIoU point (mIoU as a fraction).
CURVE_TOL = 0.01


@dataclass(frozen=True)
class BoundVerdict:
    """Whether a bound may be divided by, and if not, the first reason found (for logs and tables)."""

    converged: bool
    reason: str = ""


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))


def curve_window(n_points: int) -> int:
    """How many points make the "last quarter" of a curve of ``n_points``: ``n // 4``, at least 1."""
    return max(1, int(n_points) // 4)


def curve_converged(points: Sequence[float | None], tol: float = CURVE_TOL) -> bool | None:
    """True when the mean of the last quarter of a val-mIoU curve is within ``tol`` of the mean of the quarter
    before it (:func:`curve_window` points each); None with < 2 points.

    ``points`` are mIoU fractions in schedule order (e.g. at 12.5, 25, ..., 100 % of the iterations). A rising or
    falling end by more than ``tol`` says more (or differently scheduled) training would change the bound.
    """
    vals = [float(p) for p in points if _finite(p)]
    if len(vals) < 2:
        return None
    w = curve_window(len(vals))
    last, before = vals[-w:], vals[-2 * w:-w]
    return abs(sum(last) / w - sum(before) / w) <= tol + 1e-12


def bound_verdict(wsss_miou: float | None, bound_miou: float | None,
                  bound_class_iou: Mapping[str, float | None] | Sequence[float | None] | None = None,
                  converged: bool | None = None) -> BoundVerdict:
    """Is the bound a bound? Checks, in order:

    * ``bound_miou`` missing / not finite / 0 -> no bound;
    * ``converged`` False (an explicit verdict, e.g. :func:`curve_converged` of the bound's curve);
    * any class of ``bound_class_iou`` at IoU 0 (classes whose IoU is None/NaN, i.e. absent from ground truth
      and prediction, are skipped): the bound never learned that class;
    * ``wsss_miou`` > ``bound_miou``: the network on pseudo masks beats the network on ground truth.
    """
    if not _finite(bound_miou) or float(bound_miou) <= 0:
        return BoundVerdict(False, "no fully supervised result")
    if converged is False:
        return BoundVerdict(False, "its val curve is not flat at the end")
    items = (bound_class_iou.items() if isinstance(bound_class_iou, Mapping)
             else enumerate(bound_class_iou or ()))
    zero = [str(name) for name, iou in items if _finite(iou) and float(iou) <= 0.0]
    if zero:
        return BoundVerdict(False, f"IoU 0 on class(es) {', '.join(zero)}")
    if _finite(wsss_miou) and float(wsss_miou) > float(bound_miou):
        return BoundVerdict(False, f"the WSSS result ({100 * float(wsss_miou):.1f}) beats it "
                                   f"({100 * float(bound_miou):.1f})")
    return BoundVerdict(True)


def bound_ratio(wsss_miou: float | None, bound_miou: float | None,
                bound_class_iou: Mapping[str, float | None] | Sequence[float | None] | None = None,
                converged: bool | None = None) -> float | str | None:
    """``wsss_miou / bound_miou`` when the bound passes :func:`bound_verdict`, else :data:`NOT_CONVERGED`.

    None when there is no WSSS figure to divide (nothing to report either way).
    """
    if not _finite(wsss_miou):
        return None
    verdict = bound_verdict(wsss_miou, bound_miou, bound_class_iou, converged)
    if not verdict.converged:
        return NOT_CONVERGED
    return float(wsss_miou) / float(bound_miou)


def format_ratio(ratio: float | str | None, suffix: str = " of fully supervised") -> str:
    """'68.5 %' + suffix for a number, the text itself for :data:`NOT_CONVERGED`, '-' for None."""
    if ratio is None:
        return "-"
    if isinstance(ratio, str):
        return ratio
    return f"{100 * ratio:.1f} %{suffix}"
