"""Scoring pseudo masks (which may leave pixels undecided = 255) against ground truth.

Why two mIoUs: a pseudo mask that ignores every hard pixel looks perfect if ignored pixels are simply
dropped, and a segmentation net trained on it sees fewer labels. So we report both views plus how much was
ignored:

* ``miou``: ignored pixels excluded (as the training loss sees the mask: 255 pixels carry no label);
* ``miou_ignore_as_wrong``: ignored pixels count as misses of their true class (the mask as a segmentation);
* ``ignored_share``: fraction of all predicted pixels that are 255.

Ground-truth 255 pixels (VOC boundaries) are excluded from both mIoUs, as everywhere in wsss.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from wsss.data.palette import IGNORE_INDEX, load_mask
from wsss.errors import InputError
from wsss.eval.confusion import ConfusionMatrix

log = logging.getLogger(__name__)


class MaskScorer:
    """Accumulates both confusion matrices and the ignore counts over a split."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.excluded = ConfusionMatrix(num_classes)     # predicted 255 pixels dropped
        self.as_wrong = ConfusionMatrix(num_classes)     # predicted 255 pixels count as misses
        self.ignored = 0
        self.ignored_labelled = 0                        # ignored where the ground truth has a label
        self.pixels = 0
        self.labelled = 0
        self.images = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred, gt: [H, W] uint8 (0 bg, 1..C-1 classes, 255 ignore)."""
        pred = np.asarray(pred, dtype=np.uint8)
        gt = np.asarray(gt, dtype=np.uint8)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ")
        undecided = pred == IGNORE_INDEX
        labelled = gt != IGNORE_INDEX
        self.as_wrong.update(pred, gt)
        self.excluded.update(pred, np.where(undecided, np.uint8(IGNORE_INDEX), gt))
        self.ignored += int(undecided.sum())
        self.ignored_labelled += int((undecided & labelled).sum())
        self.pixels += pred.size
        self.labelled += int(labelled.sum())
        self.images += 1

    def reduce(self) -> None:
        """Sum everything over all ranks (no-op in one process); integer counts, so exact."""
        from wsss import dist
        if not dist.is_distributed():
            return
        self.excluded.reduce()
        self.as_wrong.reduce()
        counts = torch.tensor([self.ignored, self.ignored_labelled, self.pixels, self.labelled, self.images],
                              dtype=torch.int64)
        dist.all_reduce_sum(counts)
        self.ignored, self.ignored_labelled, self.pixels, self.labelled, self.images = (int(v) for v in counts)

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """Scalars (``miou``, ``miou_ignore_as_wrong``, ``ignored_share``, ...) and both per-class tables."""
        ex = self.excluded.summary(class_names)
        wr = self.as_wrong.summary(class_names)

        def share(a: int, b: int) -> float | None:
            return round(a / b, 6) if b else None

        return {
            "miou": ex["miou"],
            "miou_gt_classes": ex["miou_gt_classes"],  # ToCo / CLIP-ES convention (wsss.eval.confusion)
            "miou_ignore_as_wrong": wr["miou"],
            "pixel_accuracy": ex["pixel_accuracy"],
            "ignored_share": share(self.ignored, self.pixels),
            "ignored_share_of_labelled": share(self.ignored_labelled, self.labelled),
            "images": self.images,
            "per_class": ex["per_class"],
            "per_class_ignore_as_wrong": wr["per_class"],
        }


def scalar_metrics(summary: dict) -> dict:
    """The scalar part of a :meth:`MaskScorer.summary` (what goes into a stage manifest)."""
    return {k: v for k, v in summary.items() if not isinstance(v, dict)}


def describe(summary: dict) -> str:
    """One line for logs: both mIoUs and the ignored share."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}"
    return (f"mIoU {pct(summary['miou'])} (ignore excluded), {pct(summary['miou_ignore_as_wrong'])} "
            f"(ignore counted wrong), {pct(summary['ignored_share'])}% of pixels ignored, "
            f"{summary['images']} images")


def evaluate_mask_dirs(pred_dir: str | Path, gt_dir: str | Path, num_classes: int,
                       ids: Iterable[str] | None = None, class_names: Sequence[str] | None = None,
                       progress: bool = True) -> dict:
    """Score ``pred_dir/<id>.png`` against ``gt_dir/<id>.png`` for ``ids`` (default: every PNG in pred_dir).

    A ground-truth file missing for a prediction, or a size mismatch, is a one-line InputError.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    if not gt_dir.is_dir():
        raise InputError(gt_dir, "ground-truth folder not found")
    if ids is None:
        ids = sorted(p.stem for p in pred_dir.glob("*.png") if not p.name.startswith("."))
    ids = list(ids)
    if not ids:
        raise InputError(pred_dir, "no PNG masks to evaluate")
    scorer = MaskScorer(num_classes)
    for image_id in tqdm(ids, desc="eval masks", disable=not progress, leave=False):
        pred_path = pred_dir / f"{image_id}.png"
        pred = load_mask(pred_path, num_classes)
        gt = load_mask(gt_dir / f"{image_id}.png", num_classes)
        if pred.shape != gt.shape:
            raise InputError(pred_path, f"mask is {pred.shape[0]}x{pred.shape[1]} but ground truth is "
                                        f"{gt.shape[0]}x{gt.shape[1]}")
        scorer.update(pred, gt)
    return scorer.summary(class_names)


def infer_num_classes(mask_dirs: Sequence[str | Path]) -> int:
    """1 + the largest label (other than 255) in the PNGs of the given folders (when nobody said how many)."""
    top = 0
    for d in mask_dirs:
        for p in Path(d).glob("*.png"):
            if p.name.startswith("."):
                continue
            m = load_mask(p)
            vals = m[m != IGNORE_INDEX]
            if vals.size:
                top = max(top, int(vals.max()))
    return top + 1
