"""No-model baselines: label maps made from the image labels alone, the floor every quality table carries.

Why: a CAM, pseudo mask or segmentation figure means little until it is set against what no model at all
scores on the same images. A stage that does not beat "the first label on a centred ellipse" has learned
nothing about where the objects are. The rules are fixed (nothing here is tuned on ground truth):

* ``all background``: every pixel 0;
* ``labels, whole image``: every pixel of a labelled image is its first (lowest-index) class;
* ``first label, centred ellipse``: the same inside ``(dy/(H/2))^2 + (dx/(W/2))^2 < 0.5``, background outside.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from wsss.eval.confusion import ConfusionMatrix

__all__ = ["BASELINE_RULES", "baseline_mask", "label_baselines"]

BASELINE_RULES: tuple[str, ...] = ("all background", "first label, whole image", "first label, centred ellipse")


def baseline_mask(rule: str, shape: tuple[int, int], labels: Sequence[int]) -> np.ndarray:
    """The [H, W] uint8 label map of ``rule`` for an image of ``shape`` with image-level ``labels``."""
    h, w = shape
    first = int(sorted(labels)[0]) if labels else 0
    if rule == BASELINE_RULES[0]:
        return np.zeros((h, w), np.uint8)
    if rule == BASELINE_RULES[1]:
        return np.full((h, w), first, np.uint8)
    if rule == BASELINE_RULES[2]:
        yy, xx = np.mgrid[0:h, 0:w]
        inside = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 < 0.5
        return np.where(inside, first, 0).astype(np.uint8)
    raise ValueError(f"unknown baseline rule '{rule}'; expected one of {BASELINE_RULES}")


def label_baselines(ds: Any, ids: Iterable[str] | None = None,
                    rules: Sequence[str] = BASELINE_RULES) -> dict[str, ConfusionMatrix]:
    """Confusion matrices of each baseline rule over ``ids`` (default: all) of a dataset with masks.

    ``ds`` needs ``num_classes``, ``ids``, ``labels`` ({id: [class]}) and ``mask(id)`` (a SegDataset).
    """
    cms = {r: ConfusionMatrix(ds.num_classes) for r in rules}
    labels: Mapping[str, Sequence[int]] = ds.labels
    for i in (ds.ids if ids is None else ids):
        gt = ds.mask(i)
        for r in rules:
            cms[r].update(baseline_mask(r, gt.shape, labels.get(i) or []), gt)
    return cms
