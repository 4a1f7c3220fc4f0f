"""Where a class map's false positives fall: next to the class's own object, on the class's context, elsewhere.

Why: a method against context bias (W-OoD, biased-object removal) can only remove the false positives that lie
on the context; the ones that spill a few pixels around the object (the CAM's resolution, blur of the upsampled
stride-8 grid) are another failure. Splitting the false positives says how much precision context removal could
give at most: the precision each class would have if every context false positive went away.

A pixel predicted as class c is a false positive when its ground truth is another label (ignore pixels, 255,
are skipped). It is *near* when it lies within ``near_px`` pixels (Euclidean) of a ground-truth pixel of c,
*context* when it is not near and the image is one of c's context images (``context_classes``: e.g. the image's
background kind is c's own, in the synthetic generator), *other* otherwise.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

__all__ = ["FP_COLUMNS", "false_positive_counts", "precision_ceiling"]

#: Columns of :func:`false_positive_counts`.
FP_COLUMNS = ("tp", "fp_near", "fp_context", "fp_other")


def false_positive_counts(pred: np.ndarray, gt: np.ndarray, num_classes: int, near_px: float,
                          context_classes: Iterable[int] = ()) -> np.ndarray:
    """[num_classes, 4] int64 pixel counts (tp, fp_near, fp_context, fp_other) of one image; row 0 (background)
    stays zero. ``pred`` / ``gt``: [H, W] label maps (gt 255 = ignore); ``context_classes``: the classes this
    image is a context image of."""
    out = np.zeros((num_classes, len(FP_COLUMNS)), np.int64)
    valid = gt != 255
    context = set(int(c) for c in context_classes)
    for c in np.unique(pred):
        c = int(c)
        if c == 0 or c >= num_classes:
            continue
        hit = (pred == c) & valid
        own = gt == c
        fp = hit & ~own
        out[c, 0] = int((hit & own).sum())
        if own.any():
            near = distance_transform_edt(~own) <= near_px
        else:
            near = np.zeros_like(own)
        out[c, 1] = int((fp & near).sum())
        far = int((fp & ~near).sum())
        out[c, 2 if c in context else 3] = far
    return out


def precision_ceiling(counts: np.ndarray, classes: Sequence[int]) -> dict[str, float]:
    """Mean over ``classes`` of: precision; precision with the context false positives removed (what removing
    the context could give at most); the false-positive pixel counts near / on context / other and their shares
    (pooled over the classes). ``counts``: summed :func:`false_positive_counts` [C, 4]."""
    rows = counts[list(classes)].astype(np.float64)
    tp, near, ctx, other = rows.T
    fp = near + ctx + other
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
    without = np.where(tp + near + other > 0, tp / np.maximum(tp + near + other, 1), 0.0)
    total = max(float(fp.sum()), 1.0)
    return {"precision": float(precision.mean()), "precision_without_context": float(without.mean()),
            "fp_near": float(near.sum()), "fp_context": float(ctx.sum()), "fp_other": float(other.sum()),
            "share_near": float(near.sum() / total), "share_context": float(ctx.sum() / total),
            "share_other": float(other.sum() / total)}
