"""Confusion-matrix segmentation metrics (mIoU, per-class IoU, precision, recall).

Accumulated with ``torch.bincount`` over all pixels of a split (never a mean of per-image IoUs, which is what
the field reports); the matrix is a plain tensor so it can be summed across ranks with ``all_reduce``.

Which classes the mean runs over is a convention, and two are in use:

* ``miou`` (wsss's headline number): classes present in the ground truth OR the prediction. A class predicted
  but absent from the ground truth has IoU 0 and pulls the mean down (false positives of an absent class count);
* ``miou_gt_classes`` (ToCo's and CLIP-ES's ``scores``: ``valid = hist.sum(axis=1) > 0``): classes present in
  the ground truth only; a hallucinated absent class costs nothing beyond the pixels it takes from others.

On PASCAL VOC val every class occurs, so the two agree; on small or custom sets they can differ, and
:func:`format_table` prints both whenever they do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from wsss.data.palette import IGNORE_INDEX


class ConfusionMatrix:
    """Rows = ground truth, columns = prediction, ``num_classes`` x ``num_classes`` int64."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        # ground-truth pixels predicted as something outside the class range (255 = undecided), per class
        self.missed = torch.zeros(num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> None:
        """Add a prediction/ground-truth pair (any matching shape, integer labels).

        Ground-truth pixels equal to ``ignore_index`` are skipped. Predicted ``ignore_index`` pixels (pseudo
        masks leave some undecided) count as wrong for every class: use :meth:`update` on masked arrays to
        exclude them instead.
        """
        pred = torch.as_tensor(np.asarray(pred) if not isinstance(pred, torch.Tensor) else pred)
        gt = torch.as_tensor(np.asarray(gt) if not isinstance(gt, torch.Tensor) else gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ")
        pred = pred.reshape(-1).long().cpu()
        gt = gt.reshape(-1).long().cpu()
        n = self.num_classes
        # One bincount over an (n+1) x (n+1) grid, no boolean indexing (which is slow with several threads):
        # ignored ground truth goes to row n (dropped), a predicted label outside the class range (e.g. 255 =
        # undecided) to column n, which counts as a miss for the true class and a false positive for none.
        bad_gt = (gt >= n) & (gt != self.ignore_index)
        if bool(bad_gt.any()):
            raise ValueError(f"ground-truth label {int(gt[bad_gt].max())} >= num_classes {n}")
        gt = torch.where(gt == self.ignore_index, torch.full_like(gt, n), gt)
        pred = torch.where((pred < 0) | (pred >= n), torch.full_like(pred, n), pred)
        counts = torch.bincount(gt * (n + 1) + pred, minlength=(n + 1) ** 2).reshape(n + 1, n + 1)
        self.mat += counts[:n, :n]
        self.missed += counts[:n, n]

    def reduce(self) -> None:
        """Sum the matrix over all ranks of an initialised process group (no-op otherwise)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from wsss import dist
            both = torch.cat([self.mat.reshape(-1), self.missed])
            dist.all_reduce_sum(both)  # on the rank's GPU under NCCL
            n = self.num_classes
            self.mat = both[: n * n].reshape(n, n)
            self.missed = both[n * n:]

    def _gt_totals(self) -> torch.Tensor:
        return self.mat.sum(1) + self.missed

    def iou(self) -> np.ndarray:
        """Per-class IoU [C]; NaN for a class absent from both ground truth and prediction."""
        tp = self.mat.diag().double()
        union = self._gt_totals().double() + self.mat.sum(0).double() - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return (tp / union).numpy()

    def precision(self) -> np.ndarray:
        tp = self.mat.diag().double()
        with np.errstate(invalid="ignore", divide="ignore"):
            return (tp / self.mat.sum(0).double()).numpy()

    def recall(self) -> np.ndarray:
        tp = self.mat.diag().double()
        with np.errstate(invalid="ignore", divide="ignore"):
            return (tp / self._gt_totals().double()).numpy()

    def miou(self) -> float:
        """Mean IoU over classes that occur in ground truth or prediction (wsss's convention, see module doc)."""
        v = self.iou()
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    def miou_gt_classes(self) -> float:
        """Mean IoU over classes that occur in the ground truth only (ToCo's / CLIP-ES's convention)."""
        present = (self._gt_totals() > 0).numpy()
        return float(self.iou()[present].mean()) if present.any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = int(self._gt_totals().sum())
        return float(self.mat.diag().sum()) / total if total else float("nan")

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """Everything ``metrics.json`` needs: mIoU, pixel accuracy, and per-class IoU/precision/recall."""
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        iou, prec, rec = self.iou(), self.precision(), self.recall()

        def f(x: float) -> float | None:
            return None if not np.isfinite(x) else round(float(x), 6)

        return {
            "miou": f(self.miou()),
            "miou_gt_classes": f(self.miou_gt_classes()),
            "pixel_accuracy": f(self.pixel_accuracy()),
            "per_class": {names[i]: {"iou": f(iou[i]), "precision": f(prec[i]), "recall": f(rec[i]),
                                     "gt_pixels": int(self._gt_totals()[i])}
                          for i in range(self.num_classes)},
        }


def format_table(summary: dict, title: str = "") -> str:
    """A fixed-width per-class table (IoU / precision / recall in percent) for logs and READMEs."""
    lines = [title] if title else []
    lines.append(f"{'class':<16}{'IoU':>8}{'prec':>8}{'recall':>8}")
    for name, row in summary["per_class"].items():
        cells = ["   -   " if row[k] is None else f"{100 * row[k]:7.2f}" for k in ("iou", "precision", "recall")]
        lines.append(f"{name:<16}" + "".join(f"{c:>8}" for c in cells))
    m = summary.get("miou")
    lines.append(f"{'mIoU':<16}{'-' if m is None else f'{100 * m:7.2f}':>8}")
    g = summary.get("miou_gt_classes")
    if g is not None and m is not None and round(100 * g, 2) != round(100 * m, 2):
        lines[-1] += "  (classes in GT or prediction)"
        lines.append(f"{'mIoU GT classes':<16}{100 * g:7.2f}  (classes in GT only, as ToCo / CLIP-ES report)")
    return "\n".join(lines)


def write_metrics(path: str | Path, metrics: dict) -> None:
    """Write ``metrics.json`` atomically."""
    from wsss.artifacts import write_json_atomic
    write_json_atomic(Path(path), metrics)
